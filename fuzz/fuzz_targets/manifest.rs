#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hpn_fuzz::manifest::check(data));
