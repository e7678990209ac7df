//! The CLI's configuration file: parsed, then every profile read and checked.
//! The CLI's own modules are mounted here; it has no library to link.
#![no_main]
#![allow(dead_code)]

#[path = "../../tokenwarden-cli/src/config/mod.rs"]
mod config;
#[path = "../../tokenwarden-cli/src/exit.rs"]
mod exit;

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(parsed) = config::Config::parse(Path::new("fuzz.toml"), text.to_owned()) else {
        return;
    };
    let names: Vec<String> = parsed.names().map(str::to_owned).collect();
    for name in names {
        if let Err(error) = parsed.profile(&name) {
            assert!(!error.message.is_empty());
        }
    }
});
