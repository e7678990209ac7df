//! A discovery document: the issuer on the first line, the document after it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some(at) = input.iter().position(|b| *b == b'\n') else {
        return;
    };
    let Ok(issuer) = std::str::from_utf8(&input[..at]) else {
        return;
    };
    tokenwarden::fuzzing::discovery(issuer, &input[at + 1..]);
});
