#!/usr/bin/env bash
# Runs each fuzz target (or those named) for SECONDS, or for RUNS executions
# with `--runs`, from the committed seeds plus the local corpus, and prints
# one line per target: executions, time, and the corpus size.
#   fuzz/run.sh 30                      # every target, 30 s each (what CI does)
#   fuzz/run.sh --runs 10000000 config  # one target, 10 million executions
# Needs a nightly toolchain and cargo-fuzz; a crash stops it with libFuzzer's report
# and the input saved under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
limit=(-max_total_time="${1:-30}")
if [ "${1:-}" = "--runs" ]; then
    limit=(-runs="$2")
    shift 2
else
    shift || true
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build -O >/dev/null
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    if ! cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        "${limit[@]}" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED (log above; the input is under fuzz/artifacts/$target)"
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "?")
    units=$(ls "corpus/$target" | wc -l)
    echo "fuzz: $target: $runs executions in ${secs}s, no crash (corpus: $units inputs)"
    rm -f "$log"
done
