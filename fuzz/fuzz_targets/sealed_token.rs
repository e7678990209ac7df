//! The encrypted file format: the input opened as a sealed token file, and
//! sealed as a plaintext with a valid key, then opened.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    tokenwarden::fuzzing::sealed_token(input);
});
