//! `cargo xtask test` (and `ci`): one code path for developers and CI.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::{cargo, status};

/// The crates others can build on; `cargo xtask test` holds them to rustdoc's strictest.
const LIBRARY_CRATES: [&str; 7] =
    ["hpn-oci", "hpn-fs", "hpn-registry", "hpn-store", "hpn-archive", "hpn-transfer", "hpn-serve"];

pub(crate) fn run(runner_args: &[String]) -> Result<()> {
    check_peers()?;
    let mut timings: Vec<(&str, Duration)> = Vec::new();

    // Cheapest checks first, so a formatting slip fails in seconds rather than after a build.
    phase(&mut timings, "fmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    phase(&mut timings, "clippy", cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    phase(&mut timings, "build", cargo().args(["build", "--workspace"]))?;
    // The library crates are for others to build on: every public item documented, every
    // intra-doc link resolving.
    phase(
        &mut timings,
        "docs",
        cargo()
            .args(["doc", "--no-deps"])
            .args(LIBRARY_CRATES.iter().flat_map(|name| ["-p", name]))
            .env("RUSTDOCFLAGS", "-D warnings -D missing_docs"),
    )?;

    let nextest = have_nextest();
    if nextest {
        // nextest does not run doctests; cargo test does, before nextest so that the last
        // thing printed is nextest's summary.
        phase(&mut timings, "doctests", cargo().args(["test", "--workspace", "--doc"]))?;
    }
    let summary: Vec<String> = timings.iter().map(|(name, d)| format!("{name} {:.1}s", d.as_secs_f64())).collect();
    eprintln!("xtask: {} ; running tests", summary.join(", "));

    let mut tests = cargo();
    if nextest {
        tests.args(["nextest", "run", "--workspace"]);
    } else {
        tests.args(["test", "--workspace"]);
    }
    tests.args(runner_args);
    // Nothing is printed after the runner: its summary line is the run's last line.
    let result = tests.status()?;
    if !result.success() {
        std::process::exit(result.code().unwrap_or(1));
    }
    Ok(())
}

fn phase(timings: &mut Vec<(&'static str, Duration)>, name: &'static str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {name}");
    let start = Instant::now();
    status(cmd)?;
    timings.push((name, start.elapsed()));
    Ok(())
}

fn check_peers() -> Result<()> {
    let missing = hpn_testkit::missing_peers();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, pkg)| *pkg).collect();
    packages.dedup();
    let list: Vec<String> = missing.iter().map(|(bin, pkg)| format!("{bin} (Debian package {pkg})")).collect();
    bail!(
        "the tests need real peers that are not installed: {}\n\
         install them with: apt-get install -y --no-install-recommends {}",
        list.join(", "),
        packages.join(" ")
    )
}

fn have_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
