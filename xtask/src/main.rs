//! `cargo xtask <command>`: the project's developer tasks, in Rust so they run wherever cargo does.

// A developer tool: its output is for the terminal.
#![allow(clippy::print_stdout)]

mod bench;
mod demo;
mod fuzz;
mod test;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hpn_testkit::Registry;
use hpn_testkit::fixtures::{self, Scale};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "hpn's developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a local registry (docker-registry) in the foreground until Ctrl-C or SIGTERM.
    Registry {
        /// Port on 127.0.0.1; a free one if not given.
        #[arg(long)]
        port: Option<u16>,
        /// Also build and push the fixture images at this scale (small or bench).
        #[arg(long)]
        fixtures: Option<Scale>,
    },
    /// Build the deterministic fixture images and push them to a registry.
    Fixtures {
        /// The registry, as 127.0.0.1:PORT (plain HTTP).
        #[arg(long)]
        registry: String,
        /// small (a few MB, for tests) or bench (~350 MB, for benchmarks).
        #[arg(long, default_value = "small")]
        scale: Scale,
        /// Write the pushed-fixtures JSON here instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build hpn, save fixture images from a fresh registry into an archive, check it and load
    /// it into podman; installs the Debian packages it needs first (as root).
    Demo,
    /// Write hpn's man pages (hpn.1, hpn-pull.1, …) into a directory.
    Man {
        /// Where to write them.
        #[arg(long, default_value = "target/man")]
        out: PathBuf,
    },
    /// Run each cargo-fuzz target in fuzz/ on its seeds for a while; fails on any crash or hang.
    Fuzz {
        /// Seconds to fuzz each target.
        #[arg(long, default_value_t = 30)]
        seconds: u32,
        /// Only these targets (default: every one).
        targets: Vec<String>,
    },
    /// Measure hpn against skopeo and the raw fetch limit on local registries; writes BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// The whole test suite: peer check, fmt, clippy, build, then every test in the workspace.
    Test {
        /// Passed to the test runner (cargo nextest run, or cargo test).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// What CI runs: exactly `test`.
    Ci {
        /// Passed to the test runner.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Registry { port, fixtures } => registry(port, fixtures),
        Cmd::Fixtures { registry, scale, out } => push_fixtures(&registry, scale, out.as_deref()),
        Cmd::Demo => demo::run(),
        Cmd::Man { out } => man(&out),
        Cmd::Fuzz { seconds, targets } => fuzz::run(seconds, &targets),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Test { args } | Cmd::Ci { args } => test::run(&args),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// One roff page per command, from the same clap definitions the binary parses with.
fn man(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    clap_mangen::generate_to(hpn_cli::command(), out)
        .with_context(|| format!("writing man pages to {}", out.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(out)?
        .filter_map(|entry| entry.ok().map(|entry| entry.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".1"))
        .collect();
    pages.sort();
    println!("{} man page(s) in {}: {}", pages.len(), out.display(), pages.join(" "));
    println!("read one with: man -l {}", out.join("hpn.1").display());
    Ok(())
}

fn registry(port: Option<u16>, scale: Option<Scale>) -> Result<()> {
    let mut builder = Registry::builder();
    if let Some(port) = port {
        builder = builder.port(port);
    }
    let registry = builder.start()?;
    println!("{}", registry.addr());
    eprintln!("registry listening on http://{} (log: {})", registry.addr(), registry.log_path().display());
    if let Some(scale) = scale {
        let pushed = build_and_push(registry.addr(), scale)?;
        for image in &pushed.images {
            eprintln!("  {}", image.reference);
        }
    }
    eprintln!("Ctrl-C to stop");
    // Waiting on the signals keeps Registry's Drop (stop, remove the temp dir) on the exit path;
    // SIGTERM too, or `timeout` and `kill` would leave the registry running as an orphan.
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    eprintln!("stopping");
    drop(registry);
    Ok(())
}

fn push_fixtures(addr: &str, scale: Scale, out: Option<&Path>) -> Result<()> {
    let pushed = build_and_push(addr, scale)?;
    match out {
        Some(path) => {
            pushed.write_json(path)?;
            eprintln!("wrote {}", path.display());
        }
        None => println!("{}", pushed.to_json()),
    }
    Ok(())
}

fn build_and_push(addr: &str, scale: Scale) -> Result<fixtures::PushedFixtures> {
    let start = Instant::now();
    let set = fixtures::build(scale)?;
    eprintln!(
        "built {} fixture images ({} blobs, {}) in {:.1?}",
        set.images().len(),
        set.blobs().len(),
        human_size(set.unique_bytes()),
        start.elapsed()
    );
    let start = Instant::now();
    let pushed = fixtures::push(&set, addr)?;
    eprintln!("pushed to {addr} in {:.1?}", start.elapsed());
    Ok(pushed)
}

pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{size:.1} {}", UNITS[unit]) }
}

/// The workspace root: xtask lives one level below it.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo that runs us (`cargo xtask` sets CARGO), so toolchain overrides carry through.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd` with inherited stdio and fails unless it succeeds.
pub(crate) fn status(cmd: &mut Command) -> Result<ExitStatus> {
    let line = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    let status = cmd.status().with_context(|| format!("cannot run `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(status)
}
