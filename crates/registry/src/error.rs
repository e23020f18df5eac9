//! Errors that say what failed, where, and what the registry said.
//!
//! A [`RegistryError`] names the registry, the repository and the tag or
//! digest, keeps the HTTP status and the registry's own error entries
//! ([`ErrorBody`]) as data, and keeps the cause of a network failure as its
//! [`source`](std::error::Error::source). Hints speak of the registry and the
//! content; what to type on a command line is for the program using this
//! crate to add.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::time::Duration;

use hpn_oci::{Digest, ManifestError};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::credentials::CredentialError;

const HINT_NOT_FOUND: &str = "check the image name and tag";
const HINT_BLOB_NOT_FOUND: &str =
    "the registry lacks a blob the image refers to; re-push the image or report it to the registry's operator";
const HINT_LOGIN: &str = "the credentials are missing or were refused \
                          (registries also answer this way for repositories that do not exist)";
const HINT_CREDENTIALS_REFUSED: &str = "the registry refused the credentials configured for it (a mistyped or \
                                        expired password or token, or an account without access to this repository)";
const HINT_NO_CREDENTIALS: &str = "no credentials are configured for this registry, and it wants some \
                                   (registries also answer this way for repositories that do not exist)";
const HINT_DENIED: &str = "the account has no access to this repository; check the repository name and its permissions";
const HINT_RATE_LIMIT: &str =
    "the registry is rate-limiting this client; wait and try again (logging in raises Docker Hub's limits)";
const HINT_SERVER: &str = "the registry has a problem; try again later";
const HINT_REFUSED: &str = "the registry refused the request";
const HINT_DELETE_OFF: &str = "the registry does not allow deleting manifests (a distribution registry needs \
                               storage.delete.enabled: true; Docker Hub and some others never allow it)";
const HINT_UNREACHABLE: &str = "is the registry running and reachable?";
const HINT_TLS_REFUSED: &str = "the registry refused the TLS handshake; if it requires a client certificate, \
                                put client.cert and client.key in its certs.d directory";
const HINT_DNS: &str = "the registry's host name does not resolve: check its spelling and the DNS setup";
const HINT_PROXY: &str = "the proxy between this machine and the registry refused or failed to connect to it: \
                          check the proxy's rules for this registry, or exempt the registry from the proxy";
const HINT_REDIRECT: &str = "the storage the registry sends clients to lacks the content or refused the redirect \
                             (an expired or wrong signature): report it to the registry's operator";
const HINT_CERTIFICATE: &str = "the registry's TLS certificate is not trusted: add its CA to the system's trust store";
const HINT_SLOW: &str = "the network or the registry is slow or stalled; try again later";
const HINT_PUSH_LOGIN: &str = "the credentials are missing or were refused: pushing needs an account that may push \
                               to this repository; for Harbor the project must exist";
const HINT_PUSH_DENIED: &str = "check that the account may push to this repository; for Harbor the project must exist";
const HINT_PUSH_NOT_FOUND: &str = "the registry will not create this repository: check its name, and create it first \
                                   where the registry wants that (for Harbor the project must exist)";
const HINT_UPLOAD_LOST: &str = "the registry lost the upload session (it may have expired); try again";
const HINT_MANIFEST_BLOB_UNKNOWN: &str = "a blob the manifest needs is missing in the registry: push the image's \
                                          blobs (and, for an index, its manifests) before it";
const HINT_CONTENT_INVALID: &str = "the content sent does not match its digest or size: the local copy (store or \
                                    archive) is damaged; verify it or fetch the image again";
const HINT_TOO_LARGE: &str = "the registry or a proxy in front of it refused the request as too large; raise its \
                              request size limit (nginx: client_max_body_size)";
const HINT_MANIFEST_INVALID: &str = "the registry rejected the manifest: it may not support this manifest type \
                                     (some registries refuse OCI manifests, indexes or artifacts)";
const HINT_TAG_INVALID: &str = "the registry refused the tag; check it against the registry's rules \
                                (some registries forbid overwriting a tag)";
const HINT_UNSUPPORTED: &str =
    "the registry does not accept this operation: is it a read-only mirror or a pull-through cache?";
pub(crate) const HINT_MANIFEST_REFERENCE: &str =
    "push the manifest by tag or by its own digest; a manifest's bytes must never be re-encoded on the way";
pub(crate) const HINT_MEDIA_TYPE: &str = "pass the manifest's media type as its source gave it";
pub(crate) const HINT_CONTENT: &str = "the source (store, archive or registry) is damaged or changed while it was read; \
                            nothing was committed";

/// A failed registry operation. Messages name the registry, the repository
/// and the tag or digest, the HTTP status and the registry's own error code,
/// and end with a hint. They never contain credentials or tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// 404, or MANIFEST_UNKNOWN / NAME_UNKNOWN / BLOB_UNKNOWN.
    #[error("{subject} was not found on registry {registry} (HTTP {status}{}); {hint}", said(.errors))]
    NotFound {
        /// The registry as named in the reference.
        registry: String,
        /// What the request was about (`image reg/repo:tag`).
        subject: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said (boxed: most errors have none, and a
        /// small error keeps every `Result` of this crate small).
        errors: Box<ErrorBody>,
        /// What to look at.
        hint: &'static str,
    },
    /// 401 even with the credentials we have (or without any).
    #[error(
        "{subject}: registry {registry} requires authentication (HTTP {status}{}); {hint}{}",
        said(.errors),
        refused_source(.credentials)
    )]
    Unauthorized {
        /// The registry as named in the reference.
        registry: String,
        /// What the request was about.
        subject: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said (boxed: most errors have none, and a
        /// small error keeps every `Result` of this crate small).
        errors: Box<ErrorBody>,
        /// What to look at.
        hint: &'static str,
        /// Where the refused credentials came from (an auth file's entry, a
        /// helper, `--creds`), when hpn sent some.
        credentials: Option<String>,
    },
    /// 403 or DENIED.
    #[error("{subject}: registry {registry} denied access (HTTP {status}{}); {hint}", said(.errors))]
    Denied {
        /// The registry as named in the reference.
        registry: String,
        /// What the request was about.
        subject: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said (boxed: most errors have none, and a
        /// small error keeps every `Result` of this crate small).
        errors: Box<ErrorBody>,
        /// What to look at.
        hint: &'static str,
    },
    /// Any other unexpected status, after retries where retrying made sense.
    #[error(
        "{subject}: registry {registry} answered {method} with HTTP {status}{} after {attempts} attempt(s); {hint}",
        said(.errors)
    )]
    Status {
        /// The registry as named in the reference.
        registry: String,
        /// What the request was about.
        subject: String,
        /// The request's method.
        method: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said (boxed: most errors have none, and a
        /// small error keeps every `Result` of this crate small).
        errors: Box<ErrorBody>,
        /// Requests sent, the first included.
        attempts: u32,
        /// What to look at.
        hint: &'static str,
    },
    /// Connection refused, DNS, TLS, timeouts, resets, stalls: after retries.
    #[error("{subject}: cannot reach registry {registry} after {attempts} attempt(s): {}; {hint}", chain(.source))]
    Network {
        /// The registry as named in the reference.
        registry: String,
        /// What the request was about.
        subject: String,
        /// Requests sent, the first included.
        attempts: u32,
        /// Whether the registry was spoken to over plain HTTP.
        plain_http: bool,
        /// Why the last attempt failed.
        source: TransportError,
        /// What to look at.
        hint: &'static str,
    },
    /// The registry redirected the request (a blob to object storage, a
    /// mirror), and the host it named answered with a failure: that host,
    /// not the registry, is who refused.
    #[error(
        "{subject}: registry {registry} redirected the request to {host}, which answered HTTP {status}{}; {hint}",
        said(.errors)
    )]
    Redirected {
        /// The registry as named in the reference.
        registry: String,
        /// What the request was about.
        subject: String,
        /// The redirect target's `host[:port]` (never its URL, which may
        /// carry a signature).
        host: String,
        /// The HTTP status the redirect target answered with.
        status: u16,
        /// What the redirect target said.
        errors: Box<ErrorBody>,
        /// What to look at.
        hint: &'static str,
    },
    /// The registry answered something that breaks the protocol.
    #[error("{subject}: unexpected answer from registry {registry}: {message}")]
    Protocol {
        /// The registry as named in the reference.
        registry: String,
        /// What the request was about.
        subject: String,
        /// What was wrong with the answer.
        message: String,
    },
    /// Content whose digest is not the one asked for.
    #[error(
        "{subject}: digest mismatch: expected {expected} ({expected_from}), the registry sent content with digest {actual}; \
         the registry served other content than asked for: retry, or report it to the registry's operator"
    )]
    DigestMismatch {
        /// The registry as named in the reference.
        registry: String,
        /// What the request was about.
        subject: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what came.
        actual: Digest,
        /// Who named `expected`: the reference or the registry's header.
        expected_from: &'static str,
    },
    /// A blob body shorter or longer than its descriptor says.
    #[error("{subject}: expected {expected} bytes from registry {registry}, {actual}")]
    SizeMismatch {
        /// The registry as named in the reference.
        registry: String,
        /// What the request was about.
        subject: String,
        /// The descriptor's size.
        expected: u64,
        /// How the body differed.
        actual: SizeProblem,
    },
    /// A manifest hpn cannot copy (schema 1, an unknown type, invalid JSON).
    #[error("{subject}: {source}")]
    Manifest {
        /// What the request was about.
        subject: String,
        /// What is wrong with the manifest.
        source: ManifestError,
    },
    /// The content handed to an upload could not be read, or was not what
    /// its descriptor or reference says. Nothing was committed.
    #[error("{subject}: {problem}{}; {hint}", cause(.source))]
    Content {
        /// The registry as named in the reference.
        registry: String,
        /// What was being pushed.
        subject: String,
        /// What was wrong with the content.
        problem: String,
        /// The source's own error, when reading it failed.
        source: Option<io::Error>,
        /// What to look at.
        hint: &'static str,
    },
    /// Credentials could not be read.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// A registry name that is not a `host[:port]`.
    #[error("invalid registry name {registry:?}: {reason}")]
    InvalidRegistry {
        /// The name as given.
        registry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client or a credential lookup could not be set up.
    #[error("cannot {what}: {source}")]
    Setup {
        /// What could not be done.
        what: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `, CODE: message` for a message, or nothing.
fn said(errors: &ErrorBody) -> String {
    let text = errors.to_string();
    if text.is_empty() { text } else { format!(", {text}") }
}

/// ` (refused: SOURCE)` naming where refused credentials came from, or nothing.
fn refused_source(source: &Option<String>) -> String {
    source.as_ref().map(|source| format!(" (refused: {source})")).unwrap_or_default()
}

/// `: cause: its cause` for a message, or nothing.
fn cause(source: &Option<io::Error>) -> String {
    source.as_ref().map(|error| format!(": {}", chain(error))).unwrap_or_default()
}

/// An error and its causes as one line, skipping layers that repeat what was said.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// How a body's size differed from the descriptor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SizeProblem {
    /// The body (or the registry's copy) ended after this many bytes.
    EndedAt(u64),
    /// The body went past the expected size.
    Exceeded,
    /// `Content-Length`/`Content-Range` announced this many bytes.
    Announced(u64),
}

impl fmt::Display for SizeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EndedAt(n) => {
                write!(f, "but the content ended after {n} bytes; the registry's copy may be truncated")
            }
            Self::Exceeded => f.write_str("but it sent more; the descriptor or the registry's copy is wrong"),
            Self::Announced(n) => write!(f, "but it announced {n}; the descriptor or the registry's copy is wrong"),
        }
    }
}

/// Why a request got no usable response: the `source` of
/// [`RegistryError::Network`].
///
/// Its own causes (the HTTP stack's error, without the request's URL, which
/// after a redirect may carry a pre-signed signature) are its
/// [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct TransportError(TransportProblem);

#[derive(Debug)]
pub(crate) enum TransportProblem {
    Http(reqwest::Error),
    /// No response headers within the response timeout.
    NoResponse(Duration),
    /// A body brought fewer bytes than the minimum rate asks for in a
    /// window of the stall timeout (none at all, for a stall).
    TooSlow {
        received: u64,
        window: Duration,
        min_rate: u64,
    },
    /// A small body was not complete within the body timeout.
    Deadline {
        limit: Duration,
        received: u64,
    },
    /// The registry took no byte of an upload body (or, after the last one,
    /// gave no answer) within the stall timeout.
    UploadStalled(Duration),
    /// The body ended before the size it announced.
    EndedEarly {
        received: u64,
        expected: u64,
    },
    TooManyRedirects(usize),
}

impl From<TransportProblem> for TransportError {
    fn from(problem: TransportProblem) -> Self {
        match problem {
            // URLs may carry signatures or upload state: never keep one.
            TransportProblem::Http(error) => Self(TransportProblem::Http(error.without_url())),
            other => Self(other),
        }
    }
}

impl From<reqwest::Error> for TransportError {
    fn from(error: reqwest::Error) -> Self {
        TransportProblem::Http(error).into()
    }
}

impl TransportError {
    pub(crate) fn problem(&self) -> &TransportProblem {
        &self.0
    }

    /// Whether another attempt may succeed. Certificate problems will not go
    /// away by retrying, and a request that could not even be built neither.
    pub(crate) fn is_retryable(&self) -> bool {
        match &self.0 {
            TransportProblem::Http(error) => !error.is_builder() && !self.is_certificate(),
            TransportProblem::TooManyRedirects(_) => false,
            _ => true,
        }
    }

    /// The registry's TLS certificate was not accepted.
    pub fn is_certificate(&self) -> bool {
        // rustls reports untrusted or invalid certificates as "invalid peer
        // certificate: ..."; reqwest does not expose the type without a
        // direct rustls dependency, so the chain's text is the stable signal.
        let TransportProblem::Http(error) = &self.0 else {
            return false;
        };
        let mut source = error.source();
        while let Some(cause) = source {
            if cause.to_string().contains("certificate") {
                return true;
            }
            source = cause.source();
        }
        false
    }

    /// The registry ended the TLS handshake with an alert: it speaks TLS,
    /// and refused what this client offered (most often: it requires a
    /// client certificate and got none, or one it does not accept).
    pub fn is_tls_refused(&self) -> bool {
        self.chain_says(&["received fatal alert"])
    }

    /// The registry's host name did not resolve.
    pub fn is_dns(&self) -> bool {
        self.chain_says(&["dns error", "failed to lookup address"])
    }

    /// A proxy stood between this client and the registry and refused the
    /// connection (an HTTPS tunnel it would not open) or could not be reached.
    pub fn is_proxy(&self) -> bool {
        self.chain_says(&["tunnel error", "proxy authorization required"])
    }

    /// Whether some cause in the HTTP stack's error chain says one of these.
    /// hyper and reqwest expose these failures only as text, which is stable
    /// across their releases (as for certificates, above).
    fn chain_says(&self, needles: &[&str]) -> bool {
        let TransportProblem::Http(error) = &self.0 else {
            return false;
        };
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            let text = cause.to_string();
            if needles.iter().any(|needle| text.contains(needle)) {
                return true;
            }
            source = cause.source();
        }
        false
    }

    /// No answer, or no data, in time.
    pub fn is_timeout(&self) -> bool {
        match &self.0 {
            TransportProblem::Http(error) => error.is_timeout(),
            TransportProblem::NoResponse(_)
            | TransportProblem::TooSlow { .. }
            | TransportProblem::Deadline { .. }
            | TransportProblem::UploadStalled(_) => true,
            TransportProblem::EndedEarly { .. } | TransportProblem::TooManyRedirects(_) => false,
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            TransportProblem::Http(error) => f.write_str(if error.is_connect() {
                "cannot connect"
            } else if error.is_timeout() {
                "timed out"
            } else if error.is_body() || error.is_decode() {
                "the response body broke"
            } else {
                "the request failed"
            }),
            TransportProblem::NoResponse(after) => {
                write!(f, "the connection was made but no response came within {} s", after.as_secs_f64())
            }
            TransportProblem::TooSlow { received: 0, window, .. } => {
                write!(f, "no data received for {} s", window.as_secs_f64())
            }
            TransportProblem::TooSlow { received, window, min_rate } => write!(
                f,
                "only {received} bytes came in {} s, below the minimum of {min_rate} bytes/s",
                window.as_secs_f64()
            ),
            TransportProblem::Deadline { limit, received } => {
                write!(f, "the answer was still incomplete after {} s ({received} bytes came)", limit.as_secs_f64())
            }
            TransportProblem::UploadStalled(after) => {
                write!(f, "the registry took no data for {} s", after.as_secs_f64())
            }
            TransportProblem::EndedEarly { received, expected } => {
                write!(f, "the connection ended after {received} of {expected} bytes")
            }
            TransportProblem::TooManyRedirects(limit) => write!(f, "more than {limit} redirects"),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            // reqwest's own message only says "error sending request"; its
            // causes say why (refused, reset, DNS).
            TransportProblem::Http(error) => error.source(),
            _ => None,
        }
    }
}

impl RegistryError {
    /// Connection refused, DNS, TLS handshake, timeouts, resets and stalls,
    /// after the retry policy was used up.
    pub fn is_network(&self) -> bool {
        matches!(self, Self::Network { .. })
    }

    /// 404, MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN; also a 404 from
    /// the host a registry redirected to.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::Redirected { status: 404, .. })
    }

    /// 401 after authenticating, 403, DENIED.
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Denied { .. })
    }

    /// The HTTP status the registry answered with, when that is the error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::NotFound { status, .. }
            | Self::Unauthorized { status, .. }
            | Self::Denied { status, .. }
            | Self::Redirected { status, .. }
            | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The registry's error entries, when it answered with any.
    pub fn registry_errors(&self) -> &[ErrorEntry] {
        match self {
            Self::NotFound { errors, .. }
            | Self::Unauthorized { errors, .. }
            | Self::Denied { errors, .. }
            | Self::Redirected { errors, .. }
            | Self::Status { errors, .. } => &errors.errors,
            _ => &[],
        }
    }

    /// The manifest problem (schema 1, unsupported type, invalid JSON), if that is the error.
    pub fn manifest_error(&self) -> Option<&ManifestError> {
        match self {
            Self::Manifest { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The registry error inside an error of a [`hpn_oci::BlobStream`] this
    /// crate produced.
    pub fn from_stream_error(error: &io::Error) -> Option<&Self> {
        error.get_ref()?.downcast_ref()
    }

    pub(crate) fn network(registry: &str, subject: &str, attempts: u32, error: TransportError, plain: bool) -> Self {
        if matches!(error.problem(), TransportProblem::TooManyRedirects(_)) {
            return Self::protocol(registry, subject, error.to_string());
        }
        let hint = if error.is_certificate() {
            HINT_CERTIFICATE
        } else if error.is_tls_refused() {
            HINT_TLS_REFUSED
        } else if error.is_proxy() {
            HINT_PROXY
        } else if error.is_dns() {
            HINT_DNS
        } else if error.is_timeout() {
            HINT_SLOW
        } else {
            HINT_UNREACHABLE
        };
        Self::Network {
            registry: registry.to_owned(),
            subject: subject.to_owned(),
            attempts,
            plain_http: plain,
            source: error,
            hint,
        }
    }

    /// A failure answered by `host`, where the registry redirected the request.
    pub(crate) fn redirected(registry: &str, subject: &str, host: String, status: u16, errors: ErrorBody) -> Self {
        Self::Redirected {
            registry: registry.to_owned(),
            subject: subject.to_owned(),
            host,
            status,
            errors: Box::new(errors),
            hint: HINT_REDIRECT,
        }
    }

    pub(crate) fn protocol(registry: &str, subject: &str, message: impl Into<String>) -> Self {
        Self::Protocol { registry: registry.to_owned(), subject: subject.to_owned(), message: message.into() }
    }

    /// A read-side 401 told apart by whether credentials were sent: refused
    /// ones are not the same problem as none at all.
    pub(crate) fn with_credentials_known(self, sent: bool, source: Option<String>) -> Self {
        match self {
            Self::Unauthorized { registry, subject, status, errors, hint: HINT_LOGIN, .. } => Self::Unauthorized {
                registry,
                subject,
                status,
                errors,
                hint: if sent { HINT_CREDENTIALS_REFUSED } else { HINT_NO_CREDENTIALS },
                credentials: source,
            },
            other => other,
        }
    }

    /// A refusal of credentials, naming where they came from.
    pub(crate) fn with_credential_source(self, source: Option<String>) -> Self {
        match self {
            Self::Unauthorized { registry, subject, status, errors, hint, credentials } => {
                Self::Unauthorized { registry, subject, status, errors, hint, credentials: source.or(credentials) }
            }
            other => other,
        }
    }

    /// A 401 turned into what it means when the credentials were accepted
    /// but lack the right to push.
    pub(crate) fn into_push_denied(self) -> Self {
        match self {
            Self::Unauthorized { registry, subject, status, errors, .. } => {
                Self::Denied { registry, subject, status, errors, hint: HINT_PUSH_DENIED }
            }
            other => other,
        }
    }

    pub(crate) fn content(
        registry: &str,
        subject: &str,
        problem: impl Into<String>,
        source: Option<io::Error>,
        hint: &'static str,
    ) -> Self {
        Self::Content {
            registry: registry.to_owned(),
            subject: subject.to_owned(),
            problem: problem.into(),
            source,
            hint,
        }
    }

    pub(crate) fn setup(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Setup { what, source: Box::new(source) }
    }
}

/// What a request was for, to pick the right hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Manifest,
    Blob,
    Other,
    /// Checking for, mounting or uploading a blob at a push destination.
    BlobPush,
    ManifestPush,
    /// Deleting a manifest, which registries may have disabled.
    ManifestDelete,
}

impl Target {
    pub(crate) fn is_push(self) -> bool {
        matches!(self, Self::BlobPush | Self::ManifestPush)
    }
}

/// What a registry said in the body of an error answer: the distribution
/// spec's `{"errors":[{"code","message","detail"}]}`, or a short text (a
/// token service's `details`, an object store's or proxy's plain answer).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ErrorBody {
    /// The spec's error entries, in the registry's order.
    pub errors: Vec<ErrorEntry>,
    /// Text the registry sent besides or instead of entries, shortened.
    pub text: Option<String>,
}

/// One entry of a distribution error body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ErrorEntry {
    /// The error code.
    #[serde(default)]
    pub code: ErrorCode,
    /// The registry's message for people.
    #[serde(default)]
    pub message: String,
    /// Unstructured detail, as the registry sent it.
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A distribution error code (the spec's, plus those registries send
        /// besides). Codes are compared without regard to case.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code not listed here, uppercased.
            Other(String),
            /// The entry had no code.
            #[default]
            Missing,
        }

        impl ErrorCode {
            /// The code as registries spell it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(code) => code,
                    Self::Missing => "",
                }
            }
        }

        impl From<&str> for ErrorCode {
            fn from(code: &str) -> Self {
                let code = code.trim().to_ascii_uppercase();
                match code.as_str() {
                    "" => Self::Missing,
                    $($text => Self::$variant,)*
                    _ => Self::Other(code),
                }
            }
        }
    };
}

error_codes! {
    /// The blob is not in the repository.
    BlobUnknown = "BLOB_UNKNOWN",
    /// The upload was refused as malformed.
    BlobUploadInvalid = "BLOB_UPLOAD_INVALID",
    /// The upload session is unknown (expired, or on another replica).
    BlobUploadUnknown = "BLOB_UPLOAD_UNKNOWN",
    /// The content does not match its digest.
    DigestInvalid = "DIGEST_INVALID",
    /// A blob the manifest refers to is not in the repository.
    ManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN",
    /// The manifest was refused as invalid.
    ManifestInvalid = "MANIFEST_INVALID",
    /// The manifest is not in the repository.
    ManifestUnknown = "MANIFEST_UNKNOWN",
    /// The manifest's signature did not verify (schema 1 registries).
    ManifestUnverified = "MANIFEST_UNVERIFIED",
    /// The repository name is invalid.
    NameInvalid = "NAME_INVALID",
    /// The repository is not known.
    NameUnknown = "NAME_UNKNOWN",
    /// The content's length does not match.
    SizeInvalid = "SIZE_INVALID",
    /// The tag is invalid (or may not be overwritten).
    TagInvalid = "TAG_INVALID",
    /// Authentication is required.
    Unauthorized = "UNAUTHORIZED",
    /// Access is denied.
    Denied = "DENIED",
    /// The operation is not supported.
    Unsupported = "UNSUPPORTED",
    /// The client is rate-limited.
    TooManyRequests = "TOOMANYREQUESTS",
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(String::deserialize(deserializer)?.as_str().into())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Deserialize)]
struct WireBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    /// Some token servers answer `{"details": "..."}` instead.
    #[serde(default)]
    details: Option<String>,
}

impl ErrorBody {
    /// Reads the body of an error answer: the spec's entries, a token
    /// service's `details`, or else a short printable text (an object store's
    /// XML is left out). Never fails: an unreadable body says nothing.
    pub fn parse(body: &[u8]) -> Self {
        if let Ok(parsed) = serde_json::from_slice::<WireBody>(body) {
            let text = parsed.details.filter(|details| !details.is_empty()).map(|details| shorten(&details));
            if !parsed.errors.is_empty() || text.is_some() {
                return Self { errors: parsed.errors, text };
            }
        }
        // Object stores answer XML or text; a short printable body still helps.
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let useful = !text.is_empty() && !text.starts_with('<') && text.chars().all(|c| !c.is_control() || c == '\n');
        Self { errors: Vec::new(), text: useful.then(|| shorten(&text.replace('\n', " "))) }
    }

    /// Whether any entry has this code.
    pub fn has(&self, code: &ErrorCode) -> bool {
        self.errors.iter().any(|entry| entry.code == *code)
    }
}

/// `CODE: message; CODE: message; text`, shortened.
impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .errors
            .iter()
            .map(|entry| match (entry.code.as_str().is_empty(), entry.message.is_empty()) {
                (false, false) => format!("{}: {}", entry.code, entry.message),
                (false, true) => entry.code.to_string(),
                _ => entry.message.clone(),
            })
            .filter(|text| !text.is_empty())
            .collect();
        parts.extend(self.text.clone());
        f.write_str(&shorten(&parts.join("; ")))
    }
}

/// At most 300 characters, control characters (a hostile server's terminal
/// escapes, newlines) shown as spaces: the text ends up in messages printed
/// to a terminal.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 300;
    let visible = |c: char| if c.is_control() { ' ' } else { c };
    let mut short: String = text.chars().take(LIMIT).map(visible).collect();
    if text.chars().nth(LIMIT).is_some() {
        short.push('…');
    }
    short
}

/// Maps an unsuccessful final status to an error.
pub(crate) fn status_error(
    registry: &str,
    subject: &str,
    target: Target,
    method: &str,
    status: StatusCode,
    errors: ErrorBody,
    attempts: u32,
) -> RegistryError {
    use ErrorCode::*;
    let errors = Box::new(errors);
    let registry = registry.to_owned();
    let subject = subject.to_owned();
    let says = |code: ErrorCode| errors.has(&code);
    let code = status.as_u16();
    if target == Target::ManifestDelete && (says(Unsupported) || status == StatusCode::METHOD_NOT_ALLOWED) {
        let method = method.to_owned();
        return RegistryError::Status {
            registry,
            subject,
            method,
            status: code,
            errors,
            attempts,
            hint: HINT_DELETE_OFF,
        };
    }
    if target.is_push() {
        let hint = if says(ManifestBlobUnknown) || (target == Target::ManifestPush && says(BlobUnknown)) {
            HINT_MANIFEST_BLOB_UNKNOWN
        } else if says(BlobUploadUnknown) {
            return RegistryError::NotFound { registry, subject, status: code, errors, hint: HINT_UPLOAD_LOST };
        } else if status == StatusCode::NOT_FOUND || says(NameUnknown) {
            return RegistryError::NotFound { registry, subject, status: code, errors, hint: HINT_PUSH_NOT_FOUND };
        } else if status == StatusCode::UNAUTHORIZED {
            return RegistryError::Unauthorized {
                registry,
                subject,
                status: code,
                errors,
                hint: HINT_PUSH_LOGIN,
                credentials: None,
            };
        } else if status == StatusCode::FORBIDDEN || says(Denied) {
            return RegistryError::Denied { registry, subject, status: code, errors, hint: HINT_PUSH_DENIED };
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            HINT_TOO_LARGE
        } else if target == Target::ManifestPush
            && (says(ManifestInvalid)
                || says(ManifestUnverified)
                || says(DigestInvalid)
                || status == StatusCode::UNSUPPORTED_MEDIA_TYPE)
        {
            HINT_MANIFEST_INVALID
        } else if says(DigestInvalid) || says(SizeInvalid) || says(BlobUploadInvalid) {
            HINT_CONTENT_INVALID
        } else if says(TagInvalid) {
            HINT_TAG_INVALID
        } else if says(Unsupported) || status == StatusCode::METHOD_NOT_ALLOWED {
            HINT_UNSUPPORTED
        } else if status == StatusCode::TOO_MANY_REQUESTS || says(TooManyRequests) {
            HINT_RATE_LIMIT
        } else if status.is_server_error() {
            HINT_SERVER
        } else if target == Target::ManifestPush && status == StatusCode::BAD_REQUEST {
            HINT_MANIFEST_INVALID
        } else {
            HINT_REFUSED
        };
        return RegistryError::Status {
            registry,
            subject,
            method: method.to_owned(),
            status: code,
            errors,
            attempts,
            hint,
        };
    }
    if status == StatusCode::NOT_FOUND || says(ManifestUnknown) || says(NameUnknown) || says(BlobUnknown) {
        let hint = if target == Target::Blob { HINT_BLOB_NOT_FOUND } else { HINT_NOT_FOUND };
        return RegistryError::NotFound { registry, subject, status: code, errors, hint };
    }
    if status == StatusCode::UNAUTHORIZED {
        return RegistryError::Unauthorized {
            registry,
            subject,
            status: code,
            errors,
            hint: HINT_LOGIN,
            credentials: None,
        };
    }
    if status == StatusCode::FORBIDDEN || says(Denied) {
        return RegistryError::Denied { registry, subject, status: code, errors, hint: HINT_DENIED };
    }
    let hint = if status == StatusCode::TOO_MANY_REQUESTS || says(TooManyRequests) {
        HINT_RATE_LIMIT
    } else if status.is_server_error() {
        HINT_SERVER
    } else {
        HINT_REFUSED
    };
    RegistryError::Status { registry, subject, method: method.to_owned(), status: code, errors, attempts, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, body: &str, target: Target) -> RegistryError {
        let says = ErrorBody::parse(body.as_bytes());
        status_error(
            "reg.example",
            "image reg.example/a/b:v1",
            target,
            "GET",
            StatusCode::from_u16(status).unwrap(),
            says,
            1,
        )
    }

    #[test]
    fn error_bodies_keep_codes_messages_and_details_as_data() {
        let body = ErrorBody::parse(
            br#"{"errors":[{"code":"manifest_unknown","message":"manifest unknown","detail":{"Tag":"v1"}},{"code":"X_VENDOR"}]}"#,
        );
        assert_eq!(body.errors.len(), 2);
        assert_eq!(body.errors[0].code, ErrorCode::ManifestUnknown);
        assert_eq!(body.errors[0].message, "manifest unknown");
        assert_eq!(body.errors[0].detail, Some(serde_json::json!({"Tag": "v1"})));
        assert_eq!(body.errors[1].code, ErrorCode::Other("X_VENDOR".to_owned()));
        assert!(body.has(&ErrorCode::ManifestUnknown) && !body.has(&ErrorCode::NameUnknown));
        assert_eq!(body.to_string(), "MANIFEST_UNKNOWN: manifest unknown; X_VENDOR");
        let error = error(404, r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#, Target::Manifest);
        assert_eq!(error.registry_errors()[0].code, ErrorCode::NameUnknown);
        assert_eq!(error.status(), Some(404));
    }

    #[test]
    fn no_command_line_advice_in_library_messages() {
        for (status, target) in [(401, Target::Manifest), (401, Target::BlobPush), (404, Target::Other)] {
            let text = error(status, "", target).to_string();
            assert!(!text.contains("--") && !text.contains("docker login") && !text.contains("hpn "), "{text}");
        }
    }

    #[test]
    fn distribution_error_bodies_are_classified_and_quoted() {
        let not_found = error(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v1"}}]}"#,
            Target::Manifest,
        );
        assert!(not_found.is_not_found());
        let text = not_found.to_string();
        assert!(text.contains("image reg.example/a/b:v1") && text.contains("registry reg.example"), "{text}");
        assert!(text.contains("HTTP 404, MANIFEST_UNKNOWN: manifest unknown"), "{text}");
        assert!(text.ends_with(HINT_NOT_FOUND), "{text}");

        assert!(error(404, "", Target::Blob).to_string().ends_with(HINT_BLOB_NOT_FOUND));
        let unauthorized =
            error(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#, Target::Manifest);
        assert!(unauthorized.is_auth() && unauthorized.to_string().contains("credentials are missing or were refused"));
        // Some registries send DENIED with a 401 or 400-range status.
        let denied = error(400, r#"{"errors":[{"code":"DENIED","message":"no"}]}"#, Target::Manifest);
        assert!(denied.is_auth() && !denied.is_not_found());
        assert!(error(403, "", Target::Manifest).is_auth());
        let name_unknown = error(
            400,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
            Target::Manifest,
        );
        assert!(name_unknown.is_not_found());
        let limited = error(429, r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#, Target::Manifest);
        assert!(limited.to_string().contains("rate-limiting") && limited.status() == Some(429));
        let token = error(401, r#"{"details":"incorrect username or password"}"#, Target::Other);
        assert!(token.to_string().contains("incorrect username or password"));
    }

    #[test]
    fn non_json_bodies_are_used_only_when_short_text() {
        assert!(
            error(500, "upstream exploded", Target::Other).to_string().contains("HTTP 500, upstream exploded after")
        );
        let xml = error(403, "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>", Target::Blob);
        assert!(xml.to_string().contains("(HTTP 403)"), "{xml}");
        let long = "x".repeat(1000);
        assert!(error(500, &long, Target::Other).to_string().contains('…'));
        let escapes =
            error(429, r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"\u001b[2Jslow\u0007"}]}"#, Target::Other);
        assert!(escapes.to_string().contains("TOOMANYREQUESTS:  [2Jslow "), "{escapes}");
    }

    #[test]
    fn push_errors_say_what_to_do() {
        let push = |status: u16, body: &str, target: Target| error(status, body, target).to_string();
        let has = |text: String, part: &str| assert!(text.contains(part), "{part:?} missing from: {text}");
        has(push(401, "", Target::BlobPush), "an account that may push");
        let denied = error(403, r#"{"errors":[{"code":"DENIED","message":"no"}]}"#, Target::BlobPush);
        assert!(denied.is_auth());
        has(
            denied.to_string(),
            "check that the account may push to this repository; for Harbor the project must exist",
        );
        has(
            push(
                400,
                r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown"}]}"#,
                Target::ManifestPush,
            ),
            "a blob the manifest needs is missing in the registry",
        );
        // Harbor and others say BLOB_UNKNOWN for the same thing.
        has(push(404, r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#, Target::ManifestPush), "a blob the manifest needs");
        has(push(400, r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#, Target::BlobPush), "does not match its digest");
        has(push(413, "", Target::BlobPush), "client_max_body_size");
        has(push(400, r#"{"errors":[{"code":"MANIFEST_INVALID"}]}"#, Target::ManifestPush), "rejected the manifest");
        has(push(415, "", Target::ManifestPush), "may not support this manifest type");
        has(push(400, r#"{"errors":[{"code":"TAG_INVALID"}]}"#, Target::ManifestPush), "refused the tag");
        has(push(405, r#"{"errors":[{"code":"UNSUPPORTED"}]}"#, Target::BlobPush), "read-only mirror");
        has(push(503, "", Target::BlobPush), "try again later");
        let unknown = error(404, r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#, Target::BlobPush);
        assert!(unknown.is_not_found());
        has(unknown.to_string(), "will not create this repository");
        has(push(404, r#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}"#, Target::BlobPush), "lost the upload session");
        // The same 401 on the read side is about the credentials alone.
        has(error(401, "", Target::Manifest).to_string(), "credentials are missing or were refused");
        let turned = error(401, "", Target::BlobPush).into_push_denied();
        assert!(matches!(turned, RegistryError::Denied { status: 401, .. }), "{turned:?}");
    }
}
