//! The hpn command line. The only crate that knows about terminals, config
//! files, environment variables and exit codes; the libraries below it only
//! return typed errors and progress events.

/// `println!` that survives a closed stdout; see [`print_line`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

mod args;
mod commands;
mod config;
mod exit;
mod image_list;
mod legacy;
mod progress;
mod settings;
mod summary;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::Cli;
use crate::exit::{ExitStatus, Failure};

/// Parses arguments, loads configuration and runs the command.
pub fn main() -> ExitCode {
    let subcommands: Vec<String> =
        Cli::command().get_subcommands().map(|command| command.get_name().to_owned()).collect();
    let arguments = legacy::rewrite_action_flag(std::env::args_os().collect(), &subcommands);
    let cli = match Cli::try_parse_from(arguments) {
        Ok(cli) => cli,
        Err(error) => {
            // clap exits 2 for usage errors and 0 for --help/--version, as hpn does.
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    init_tracing(cli.global.verbose);
    match run(cli) {
        Ok(status) => status.into(),
        Err(failure) => {
            eprintln!("hpn: {:#}", failure.error);
            failure.status.into()
        }
    }
}

fn run(cli: Cli) -> Result<ExitStatus, Failure> {
    if let args::Command::Version = cli.command {
        out!("hpn {}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitStatus::Ok);
    }
    let settings = config::Settings::resolve(&cli.global)?;
    if !settings.quiet {
        for warning in &settings.warnings {
            eprintln!("hpn: warning: {warning}");
        }
        for flag in cli.global.go_hpn_runtime_flags() {
            eprintln!(
                "hpn: note: {flag} is accepted for the Go hpn's scripts and has no effect: hpn needs no container runtime"
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("hpn-worker").build().map_err(
        |error| Failure::new(ExitStatus::General, anyhow::anyhow!("cannot start the async runtime: {error}")),
    )?;
    let status = runtime.block_on(commands::run_until_interrupted(cli.command, settings));
    // Blocking tasks (hashing, writing) see their inputs closed and clean up
    // their temp files; give them a moment before the process exits.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    status
}

/// Writes one line to stdout. A closed pipe (`hpn store ls | head`) is not
/// an error worth a panic: the reader has what it wanted.
pub(crate) fn print_line(text: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Logs go to stderr. `RUST_LOG` wins; else -v is info, -vv debug, -vvv trace.
fn init_tracing(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(progress::colour_on_stderr())
        .try_init();
}
