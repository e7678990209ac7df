//! Fault injection against real servers, processes and file systems on this
//! machine. One test binary (tests/faults/); `tests/faults/README.md` lists every
//! fault and where its test lives, including those in the Redis crate.
//!
//! Every test secret contains `TOPSECRET`; all tracing output is captured at
//! TRACE level and any line containing it fails the tests.

#[allow(dead_code)] // the scripted sources and event helpers serve tests/all
#[path = "../all/common.rs"]
mod common;

mod endpoint;
mod file_faults;
mod file_kill;
