//! `cargo xtask fuzz`: runs every cargo-fuzz target in fuzz/ for a bounded time on its
//! committed seeds and regression inputs, and fails on any crash, hang or memory blow-up.
//!
//! Installs nothing: it needs `cargo install cargo-fuzz --locked` first. Works on stable Rust:
//! without a sanitizer (hpn forbids unsafe code, so AddressSanitizer would only watch the
//! dependencies' C) cargo-fuzz passes rustc nothing that needs nightly.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Every target in fuzz/fuzz_targets/, with the directory (from the workspace root) that holds
/// its committed inputs, `corpus/<target>/seed-*` and `regressions/<target>/*`: the tests of the
/// crate it fuzzes, which replay them on every `cargo test`.
const TARGETS: [(&str, &str); 6] = [
    ("reference", "crates/oci/tests/fuzz"),
    ("manifest", "crates/oci/tests/fuzz"),
    ("www_authenticate", "crates/registry/tests/fuzz"),
    ("token_answer", "crates/registry/tests/fuzz"),
    ("error_body", "crates/registry/tests/fuzz"),
    ("archive_reader", "crates/archive/tests/fuzz"),
];

/// libFuzzer's limits: an input running longer than this many seconds is a hang, and a
/// process over this many MB of RSS a memory blow-up; both fail the run like a crash.
const TIMEOUT_SECONDS: u32 = 10;
const RSS_LIMIT_MB: u32 = 2048;

pub(crate) fn run(seconds: u32, targets: &[String]) -> Result<()> {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    let targets: Vec<(&str, &str)> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        let mut chosen = Vec::new();
        for target in targets {
            let Some(found) = TARGETS.iter().find(|(name, _)| name == target) else {
                bail!("no fuzz target {target:?}; the targets are {}", names.join(", "));
            };
            chosen.push(*found);
        }
        chosen
    };
    let root = crate::workspace_root();
    let fuzz_dir = root.join("fuzz");
    check_cargo_fuzz()?;

    let start = Instant::now();
    eprintln!("building the fuzz targets (the first build takes several minutes)");
    let status =
        cargo_fuzz(&fuzz_dir).args(["build", "--sanitizer", "none"]).status().context("run cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    eprintln!("built in {:.0?}", start.elapsed());

    let mut failed = Vec::new();
    for &(target, inputs) in &targets {
        let started = Instant::now();
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
        let mut command = cargo_fuzz(&fuzz_dir);
        // New inputs go to the first directory, fuzz/corpus/<target>/, which stays local; the
        // committed seeds and regressions are read, never written.
        command.args(["run", "--sanitizer", "none", target]).arg(&corpus);
        let inputs = root.join(inputs);
        let seeds = inputs.join("corpus").join(target);
        let regressions = inputs.join("regressions").join(target);
        for dir in [seeds, regressions] {
            if dir.is_dir() {
                command.arg(dir);
            }
        }
        command.args([
            "--".to_owned(),
            format!("-max_total_time={seconds}"),
            format!("-timeout={TIMEOUT_SECONDS}"),
            format!("-rss_limit_mb={RSS_LIMIT_MB}"),
            "-print_final_stats=1".to_owned(),
        ]);
        eprintln!("fuzzing {target} for {seconds}s");
        let output = command.stderr(Stdio::piped()).output().with_context(|| format!("run cargo fuzz run {target}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        let executions = final_stat(&log, "stat::number_of_executed_units").unwrap_or("?");
        let corpus_size = std::fs::read_dir(&corpus).map(Iterator::count).unwrap_or(0);
        if output.status.success() {
            println!(
                "fuzz {target}: ok, {executions} executions in {:.0?}, corpus {corpus_size} inputs",
                started.elapsed()
            );
        } else {
            // libFuzzer's own report: the panic message, the input, where it saved it.
            let report: Vec<&str> = log.lines().filter(|line| !line.starts_with('#')).collect();
            let tail = &report[report.len().saturating_sub(40)..];
            eprintln!("{}", tail.join("\n"));
            println!("fuzz {target}: FAILED ({}), {executions} executions", output.status);
            failed.push(target);
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzzing found a problem in {} (inputs in fuzz/artifacts/<target>/; reproduce with \
             `cd fuzz && cargo fuzz run --sanitizer none <target> <input>`; once fixed, add the input to \
             regressions/<target>/ next to the target's seeds (see fuzz/README.md) so `cargo test` replays it)",
            failed.join(", ")
        );
    }
    println!("fuzz: {} targets ok in {:.0?}", targets.len(), start.elapsed());
    Ok(())
}

fn check_cargo_fuzz() -> Result<()> {
    let found = crate::cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        bail!("cargo-fuzz is not installed; install it with `cargo install cargo-fuzz --locked` (about 2 minutes)");
    }
    Ok(())
}

/// `cargo fuzz …` in fuzz/. cargo-fuzz picks its own build flags, and fuzz/ is its own
/// workspace with its own target dir: nothing it builds is shared with the main workspace.
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut command = crate::cargo();
    command.current_dir(fuzz_dir).arg("fuzz");
    // A CARGO_TARGET_DIR meant for the main workspace would mix instrumented builds into it.
    command.env_remove("CARGO_TARGET_DIR");
    command
}

/// A `stat::name: value` line of libFuzzer's -print_final_stats output.
fn final_stat<'a>(log: &'a str, name: &str) -> Option<&'a str> {
    log.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}
