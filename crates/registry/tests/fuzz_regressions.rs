//! The `www_authenticate` fuzz target's seeds and regression inputs, through the very check
//! the target runs (fuzz/src/), so they run on every `cargo test`.

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/www_authenticate.rs"]
mod www_authenticate;

#[test]
fn www_authenticate_inputs_pass_the_fuzz_check() {
    let fuzz_dir = corpus::fuzz_dir(env!("CARGO_MANIFEST_DIR"));
    assert!(corpus::replay(&fuzz_dir, "www_authenticate", www_authenticate::check) >= 15);
}
