//! Replaying a fuzz target's committed inputs through its check under a plain `cargo test`, so
//! every seed and every input that once crashed runs without cargo-fuzz. A crate keeps the
//! inputs of the targets that fuzz it in its own `tests/fuzz/` (`corpus/<target>/seed-*` and
//! `regressions/<target>/*`), where `cargo package` takes them along.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The committed inputs of `target` under `dir`: its seeds (`corpus/<target>/seed-*`; what
/// fuzzing adds to a corpus stays local and is left out) and its regressions
/// (`regressions/<target>/*`), sorted.
pub fn inputs(dir: &Path, target: &str) -> Vec<PathBuf> {
    let seeds = files(&dir.join("corpus").join(target))
        .into_iter()
        .filter(|path| path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with("seed-")));
    let mut inputs: Vec<PathBuf> = seeds.chain(files(&dir.join("regressions").join(target))).collect();
    inputs.sort();
    inputs
}

/// Runs `check` on each of `target`'s [`inputs`] under `dir`, and fails naming every input it
/// panicked on. Returns how many inputs ran.
pub fn replay(dir: &Path, target: &str, check: fn(&[u8])) -> usize {
    let inputs = inputs(dir, target);
    let mut failed = Vec::new();
    for input in &inputs {
        let data = std::fs::read(input).unwrap_or_else(|error| panic!("read {}: {error}", input.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(input.display().to_string());
        }
    }
    assert!(failed.is_empty(), "the {target} check panicked on {failed:#?}");
    inputs.len()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap_or_else(|error| panic!("list {}: {error}", dir.display())).path())
            .filter(|path| path.is_file())
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => panic!("list {}: {error}", dir.display()),
    }
}
