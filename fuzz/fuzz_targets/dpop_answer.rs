//! A server's answer as DPoP reads it: `DPoP-Nonce`, `WWW-Authenticate: DPoP
//! error="use_dpop_nonce"`, and a stored DPoP key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    tokenwarden::fuzzing::dpop_answer(input);
});
