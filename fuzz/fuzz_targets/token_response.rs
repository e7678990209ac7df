//! A token endpoint's answer: two bytes of status, then header lines
//! (`name: value`) up to an empty line, then the body. Read as an OAuth2 token
//! response, a device authorization response and a login API's answer
//! (JSON fields and `Set-Cookie`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let status = 100 + u16::from_be_bytes([input[0], input[1]]) % 500;
    let rest = &input[2..];
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (&rest[..0], rest),
    };
    let headers: Vec<(&[u8], &[u8])> = head
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let at = line.iter().position(|b| *b == b':')?;
            let value = &line[at + 1..];
            Some((&line[..at], value.strip_prefix(b" ").unwrap_or(value)))
        })
        .collect();
    tokenwarden::fuzzing::token_response(status, &headers, head, body);
});
