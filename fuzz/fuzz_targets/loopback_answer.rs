//! A request reaching the loopback listener of a browser sign-in (anyone on the
//! machine can send one): this login's answer or not, and from which issuer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    tokenwarden::fuzzing::loopback_answer(input);
});
