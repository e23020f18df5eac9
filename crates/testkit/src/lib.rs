//! Real peers and deterministic images for hpn's tests.
//!
//! Everything here starts or drives a real program from Debian's packages: the distribution
//! registry (`docker-registry`), `dockerd` with Debian's docker client, `podman` and `skopeo`.
//! There are no mocks: a test that passes here has spoken to the same software users run.
//! Each peer lives in a temporary directory of its own and is stopped and removed on drop, so
//! tests can run in parallel and leave nothing behind.
//!
//! ```no_run
//! use hpn_testkit::{Registry, fixtures};
//! # fn main() -> anyhow::Result<()> {
//! let registry = Registry::start()?;
//! let set = fixtures::build(fixtures::Scale::Small)?;
//! let pushed = fixtures::push(&set, registry.addr())?;
//! let app = pushed.image("app-a");
//! println!("{} -> {}", app.reference, app.digest);
//! # Ok(()) }
//! ```

pub mod fixtures;
pub mod fuzz;

mod dockerd;
mod faults;
mod hashing;
pub mod http;
pub mod layouts;
mod misbehaving;
mod podman;
mod process;
mod registry;
mod rng;
mod skopeo;
mod tls;
mod token;
mod token_service;

pub use dockerd::{Dockerd, docker_client};
pub use faults::{Fault, FaultProxy, ProxyRequest, Rule};
pub use hashing::{HashingWriter, sha256_digest};
pub use misbehaving::{RefusingProxy, SilentServer, TrickleProxy};
pub use podman::Podman;
pub use process::have_binary;
pub use registry::{AccessLogEntry, Registry, RegistryBuilder, htpasswd_line};
pub use rng::Rng;
pub use skopeo::{skopeo, skopeo_inspect, skopeo_inspect_raw};
pub use tls::{Issued, TestCa};
pub use token::TokenSigner;
pub use token_service::TokenService;

/// The peer programs the tests need, with the Debian package that provides each.
pub const PEERS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("dockerd", "docker.io"),
    ("/usr/bin/docker", "docker.io"),
    ("podman", "podman"),
    // Not a peer itself: it makes the key and certificate of a token-auth registry (TokenSigner).
    ("openssl", "openssl"),
    // A client of `hpn serve` in the tests, and the raw-fetch and PUT floors of the bench gate.
    ("curl", "curl"),
    // The bench gate's peak RSS and CPU time of each job.
    ("/usr/bin/time", "time"),
    // Runs the `oras` Python package, an independent client of what hpn pushes and serves.
    ("python3", "python3"),
];

/// The Debian packages the tests and the demo need: `.ci/packages`, which `.ci/run` installs.
pub fn debian_packages() -> Vec<&'static str> {
    include_str!("../../../.ci/packages")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// The packages of [`debian_packages`] that dpkg does not have installed (all of them on a
/// machine without dpkg).
pub fn missing_debian_packages() -> Vec<&'static str> {
    debian_packages()
        .into_iter()
        .filter(|package| {
            let status = std::process::Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .stderr(std::process::Stdio::null())
                .output();
            !status.is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("install ok installed"))
        })
        .collect()
}

/// Whether this process runs as root (and may install packages).
pub fn is_root() -> bool {
    process::is_root()
}

/// The peers from [`PEERS`] that cannot be found, as `(program, package)`.
pub fn missing_peers() -> Vec<(&'static str, &'static str)> {
    PEERS.iter().copied().filter(|(bin, _)| !have_binary(bin)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_comes_from_a_listed_package() {
        let packages = debian_packages();
        assert!(packages.contains(&"docker-registry") && !packages.iter().any(|p| p.contains(' ')), "{packages:?}");
        for (program, package) in PEERS {
            assert!(packages.contains(package), "{program} needs {package}, which .ci/packages does not list");
        }
    }
}
