//! The `www_authenticate` fuzz target's seeds and regression inputs (tests/fuzz/), through the
//! very check the target runs (tests/fuzz/www_authenticate.rs, which fuzz/ includes), so they
//! run on every `cargo test`.

#[path = "fuzz/www_authenticate.rs"]
mod www_authenticate;

use hpn_testkit::fuzz;

#[test]
fn www_authenticate_inputs_pass_the_fuzz_check() {
    let fuzz_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    assert!(fuzz::replay(&fuzz_dir, "www_authenticate", www_authenticate::check) >= 15);
}
