//! How a client talks to registries: [`ClientOptions`] and [`RetryPolicy`].

use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::Credentials;

/// Concurrent requests per registry host unless configured otherwise. Six is
/// what browsers and Docker's own puller settle on per host; more mostly adds
/// contention on the registry side.
pub const DEFAULT_REQUESTS_PER_HOST: usize = 6;

/// How a [`RegistryClient`](crate::RegistryClient) talks to registries.
///
/// Start from [`ClientOptions::default`] and set what differs; new fields
/// may be added in any release:
///
/// ```
/// let mut options = hpn_registry::ClientOptions::default();
/// options.insecure_registries.push("registry.lan:5000".to_owned());
/// options.retry.max_attempts = 3;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Registries (`host` or `host:port`) the user named insecure: HTTPS is tried
    /// without certificate verification, then plain HTTP, as Docker does. An
    /// entry without a port matches the host on any port.
    pub insecure_registries: Vec<String>,
    /// `false` names every registry insecure, as skopeo's `--tls-verify=false`.
    pub tls_verify: bool,
    /// Directories of per-registry TLS files, as docker's
    /// `/etc/docker/certs.d` and podman's `/etc/containers/certs.d`: the first
    /// that has a `HOST[:PORT]/` directory for a registry gives its extra CAs
    /// (`*.crt`, trusted beside the system's roots) and its client certificate
    /// (`client.cert` with `client.key`, for registries that require one).
    /// None by default: callers name them.
    pub certs_dirs: Vec<PathBuf>,
    /// Where credentials come from; none by default (callers load them with
    /// [`Credentials::load_default`] so a malformed file is reported where
    /// the user can see it).
    pub credentials: Credentials,
    /// When and how often failed requests are tried again.
    pub retry: RetryPolicy,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How long a TCP and TLS connection may take to set up.
    pub connect_timeout: Duration,
    /// How long a response's head may take to come once the request is sent
    /// (uploads excepted: a registry answers them after reading the body).
    /// A server that accepts connections and never answers costs this much
    /// per attempt.
    pub response_timeout: Duration,
    /// How long a small body (a manifest, a token or error answer, a blob of
    /// at most [`SMALL_BODY`] bytes such as a config) may take in all, from
    /// its response head to its last byte, before the request counts as
    /// broken and is retried. A body that trickles a byte now and then never
    /// stalls, but it cannot outlast this.
    pub body_timeout: Duration,
    /// Concurrent requests per registry host, open blob bodies included.
    pub max_requests_per_host: usize,
    /// The window of the minimum transfer rate, as curl's `--speed-time`: a
    /// blob body that averages less than [`ClientOptions::min_transfer_rate`]
    /// over this long (or sends nothing at all), or an upload the registry
    /// takes no byte of for this long, is treated as broken: the request is
    /// retried or the blob resumed. No total timeout exists for blobs, since
    /// a large layer may take hours.
    pub stall_timeout: Duration,
    /// Bytes per second a blob body must average over each
    /// [`ClientOptions::stall_timeout`], as curl's `--speed-limit`; 0 leaves
    /// only the rule that some byte must come.
    pub min_transfer_rate: u64,
}

/// Bodies up to this many bytes must arrive whole within
/// [`ClientOptions::body_timeout`]: configs and other small blobs, as
/// manifests and token answers do.
pub const SMALL_BODY: u64 = 1024 * 1024;

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            tls_verify: true,
            certs_dirs: Vec::new(),
            credentials: Credentials::default(),
            retry: RetryPolicy::default(),
            user_agent: format!("hpn/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_requests_per_host: DEFAULT_REQUESTS_PER_HOST,
            stall_timeout: Duration::from_secs(60),
            min_transfer_rate: 1024,
        }
    }
}

/// Exponential backoff with jitter. Start from [`RetryPolicy::default`] and
/// set what differs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// The pause after the first failure; it doubles with each further one.
    pub base_delay: Duration,
    /// The longest pause between two attempts.
    pub max_delay: Duration,
}

impl ClientOptions {
    /// These credentials instead of none.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Registries named insecure (see [`ClientOptions::insecure_registries`]).
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Self {
        self.insecure_registries = registries;
        self
    }

    /// Per-registry TLS directories (see [`ClientOptions::certs_dirs`]).
    pub fn with_certs_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.certs_dirs = dirs;
        self
    }

    /// Another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Another per-host request limit (see [`DEFAULT_REQUESTS_PER_HOST`]).
    pub fn with_max_requests_per_host(mut self, limit: usize) -> Self {
        self.max_requests_per_host = limit;
        self
    }

    /// Another stall timeout (see [`ClientOptions::stall_timeout`]).
    pub fn with_stall_timeout(mut self, stall_timeout: Duration) -> Self {
        self.stall_timeout = stall_timeout;
        self
    }

    /// Another response-head timeout (see [`ClientOptions::response_timeout`]).
    pub fn with_response_timeout(mut self, response_timeout: Duration) -> Self {
        self.response_timeout = response_timeout;
        self
    }

    /// Another deadline for small bodies (see [`ClientOptions::body_timeout`]).
    pub fn with_body_timeout(mut self, body_timeout: Duration) -> Self {
        self.body_timeout = body_timeout;
        self
    }

    /// Another minimum rate for blob bodies, in bytes per second (see
    /// [`ClientOptions::min_transfer_rate`]).
    pub fn with_min_transfer_rate(mut self, bytes_per_second: u64) -> Self {
        self.min_transfer_rate = bytes_per_second;
        self
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, base_delay: Duration::from_millis(250), max_delay: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// `max_attempts` in all, pausing from `base_delay` up to `max_delay`.
    pub fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self { max_attempts, base_delay, max_delay }
    }

    /// The pause before the next attempt after `failures` consecutive failures
    /// (1 for the first). Half of the exponential step is random, so many
    /// clients failing together do not come back in lockstep.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let step = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        let half = step / 2;
        let jitter = half.mul_f64(fastrand::f64());
        half + jitter
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
            let late = policy.backoff(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000), "{late:?}");
        }
    }

    #[test]
    fn a_server_that_never_answers_costs_tens_of_seconds_by_default() {
        let options = ClientOptions::default();
        let attempts = options.retry.attempts();
        let pauses: Duration = (1..attempts).map(|failures| options.retry.backoff(failures)).sum();
        // What a connection that is accepted and never answered costs, every attempt.
        let silent = options.response_timeout * attempts + pauses;
        assert!(silent < Duration::from_secs(60), "{silent:?}");
        // A port that never accepts (a dropped SYN) costs the connect timeout instead.
        let black_hole = options.connect_timeout * attempts + pauses;
        assert!(black_hole < Duration::from_secs(60), "{black_hole:?}");
    }

    #[test]
    fn zero_attempts_still_means_one_try() {
        let policy = RetryPolicy { max_attempts: 0, ..RetryPolicy::default() };
        assert_eq!(policy.attempts(), 1);
    }
}
