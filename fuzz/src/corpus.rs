//! The replay of committed inputs for `crates/registry/tests/fuzz_regressions.rs`, which
//! includes this file with `#[path]` and whose `www_authenticate` inputs still live under
//! fuzz/. The code is testkit's (`hpn_testkit::fuzz`); the other crates use it from there and
//! keep their inputs in their own `tests/fuzz/`.

include!("../../crates/testkit/src/fuzz.rs");

/// `fuzz/`, from the manifest directory of a workspace crate (`crates/<name>`).
pub fn fuzz_dir(crate_dir: &str) -> PathBuf {
    Path::new(crate_dir).join("../../fuzz")
}
