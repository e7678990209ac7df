//! A private key file, as `private_key` in a profile or `JwtSigner::from_pem_key`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    tokenwarden::fuzzing::private_key_pem(input);
});
