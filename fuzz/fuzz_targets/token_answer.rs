#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hpn_fuzz::token_answer::check(data));
