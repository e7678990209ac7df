//! The `Cookie` headers a token's cookie goes into (a replay's, holding the
//! rejected token's cookie and the caller's own).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    tokenwarden::fuzzing::cookie_placement(input);
});
