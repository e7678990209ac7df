//! An error body (RFC 6749 §5.2) with any status: two bytes of status, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let status = 100 + u16::from_be_bytes([input[0], input[1]]) % 500;
    tokenwarden::fuzzing::oauth_error_body(status, &input[2..]);
});
