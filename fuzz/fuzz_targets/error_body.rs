#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hpn_fuzz::error_body::check(data));
