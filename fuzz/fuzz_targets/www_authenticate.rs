#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hpn_fuzz::www_authenticate::check(data));
