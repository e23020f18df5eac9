//! What each fuzz target checks, one module a target. Each check lives in the tests of the
//! crate it fuzzes (`crates/<name>/tests/fuzz/<target>.rs`, next to its committed inputs), whose
//! `tests/fuzz_regressions.rs` replays every seed and regression input through it under a plain
//! `cargo test`, without cargo-fuzz or a nightly toolchain; the targets here include the very
//! same files.

#[path = "../../crates/archive/tests/fuzz/archive_reader.rs"]
pub mod archive_reader;
#[path = "../../crates/registry/tests/fuzz/error_body.rs"]
pub mod error_body;
#[path = "../../crates/oci/tests/fuzz/manifest.rs"]
pub mod manifest;
#[path = "../../crates/oci/tests/fuzz/reference.rs"]
pub mod reference;
#[path = "../../crates/registry/tests/fuzz/token_answer.rs"]
pub mod token_answer;
#[path = "../../crates/registry/tests/fuzz/www_authenticate.rs"]
pub mod www_authenticate;
