//! Every input the core takes from outside, fed the fuzzer's bytes (see
//! `../harness.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../harness.rs");

fuzz_target!(|data: &[u8]| exercise(data));
