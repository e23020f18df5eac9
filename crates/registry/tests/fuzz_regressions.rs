//! The seeds and regression inputs (tests/fuzz/) of the fuzz targets of this crate's parsers,
//! through the very checks the targets run (tests/fuzz/<target>.rs, which fuzz/ includes), so
//! they run on every `cargo test`.

#[path = "fuzz/error_body.rs"]
mod error_body;
#[path = "fuzz/token_answer.rs"]
mod token_answer;
#[path = "fuzz/www_authenticate.rs"]
mod www_authenticate;

use hpn_testkit::fuzz;

#[test]
fn www_authenticate_inputs_pass_the_fuzz_check() {
    assert!(fuzz::replay(&fuzz_dir(), "www_authenticate", www_authenticate::check) >= 15);
}

fn fuzz_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

#[test]
fn token_answer_inputs_pass_the_fuzz_check() {
    assert!(fuzz::replay(&fuzz_dir(), "token_answer", token_answer::check) >= 12);
}

#[test]
fn error_body_inputs_pass_the_fuzz_check() {
    assert!(fuzz::replay(&fuzz_dir(), "error_body", error_body::check) >= 10);
}
