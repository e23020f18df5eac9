//! What each fuzz target checks, one module a target. The crates' `tests/fuzz_regressions.rs`
//! include these same files (`#[path]`), so every seed and every regression input also runs
//! under a plain `cargo test`, without cargo-fuzz or a nightly toolchain.

pub mod archive_reader;
pub mod corpus;
pub mod manifest;
pub mod reference;
pub mod www_authenticate;
