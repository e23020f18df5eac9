//! The `hpn` binary: everything lives in the `hpn-cli` library.

fn main() -> std::process::ExitCode {
    hpn_cli::main()
}
