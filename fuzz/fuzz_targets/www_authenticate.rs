//! A `WWW-Authenticate` header value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(value) = std::str::from_utf8(input) {
        tokenwarden::fuzzing::www_authenticate(value);
    }
});
