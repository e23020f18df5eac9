//! Errors that tell the user what failed, where, and what to do about it.

use hpn_oci::{Digest, ManifestError};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::credentials::CredentialError;
use crate::retry::TransportError;

const HINT_NOT_FOUND: &str = "check the image name and tag";
const HINT_BLOB_NOT_FOUND: &str =
    "the registry lacks a blob the image refers to; re-push the image or report it to the registry's operator";
const HINT_LOGIN: &str = "log in with docker login / podman login or check the credentials \
                          (registries also answer this way for repositories that do not exist)";
const HINT_DENIED: &str = "the account has no access to this repository; check the repository name and its permissions";
const HINT_RATE_LIMIT: &str =
    "the registry is rate-limiting this client; wait and try again (logging in raises Docker Hub's limits)";
const HINT_SERVER: &str = "the registry has a problem; try again later";
const HINT_REFUSED: &str = "the registry refused the request";
const HINT_UNREACHABLE: &str = "is the registry running and reachable? use --insecure-registry for plain HTTP";
const HINT_UNREACHABLE_PLAIN: &str = "is the registry running and reachable?";
const HINT_CERTIFICATE: &str = "the registry's TLS certificate is not trusted: add its CA to the system's trust store, \
                                or use --insecure-registry";
const HINT_SLOW: &str = "the network or the registry is slow or stalled; try again later";
const HINT_PUSH_LOGIN: &str = "log in with docker login / podman login as an account that may push to this repository; \
                               for Harbor the project must exist";
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
pub enum RegistryError {
    /// 404, or MANIFEST_UNKNOWN / NAME_UNKNOWN / BLOB_UNKNOWN.
    #[error("{subject} was not found on registry {registry} (HTTP {status}{registry_says}); {hint}")]
    NotFound { registry: String, subject: String, status: u16, registry_says: String, hint: &'static str },
    /// 401 even with the credentials we have (or without any).
    #[error("{subject}: registry {registry} requires authentication (HTTP {status}{registry_says}); {hint}")]
    Unauthorized { registry: String, subject: String, status: u16, registry_says: String, hint: &'static str },
    /// 403 or DENIED.
    #[error("{subject}: registry {registry} denied access (HTTP {status}{registry_says}); {hint}")]
    Denied { registry: String, subject: String, status: u16, registry_says: String, hint: &'static str },
    /// Any other unexpected status, after retries where retrying made sense.
    #[error(
        "{subject}: registry {registry} answered {method} with HTTP {status}{registry_says} after {attempts} attempt(s); {hint}"
    )]
    Status {
        registry: String,
        subject: String,
        method: String,
        status: u16,
        registry_says: String,
        attempts: u32,
        hint: &'static str,
    },
    /// Connection refused, DNS, TLS, timeouts, resets, stalls: after retries.
    #[error("{subject}: cannot reach registry {registry} after {attempts} attempt(s): {cause}; {hint}")]
    Network { registry: String, subject: String, attempts: u32, cause: String, hint: &'static str },
    /// The registry answered something that breaks the protocol.
    #[error("{subject}: unexpected answer from registry {registry}: {message}")]
    Protocol { registry: String, subject: String, message: String },
    #[error(
        "{subject}: digest mismatch: expected {expected} ({expected_from}), the registry sent content with digest {actual}; \
         the registry served other content than asked for: retry, or report it to the registry's operator"
    )]
    DigestMismatch { registry: String, subject: String, expected: Digest, actual: Digest, expected_from: &'static str },
    /// A blob body shorter or longer than its descriptor says.
    #[error("{subject}: expected {expected} bytes from registry {registry}, {actual}")]
    SizeMismatch { registry: String, subject: String, expected: u64, actual: SizeProblem },
    #[error("{subject}: {source}")]
    Manifest {
        subject: String,
        #[source]
        source: ManifestError,
    },
    /// The content handed to an upload could not be read, or was not what
    /// its descriptor or reference says. Nothing was committed.
    #[error("{subject}: {problem}; {hint}")]
    Content { registry: String, subject: String, problem: String, hint: &'static str },
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("invalid registry name {registry:?}: {reason}")]
    InvalidRegistry { registry: String, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

/// How a body's size differed from the descriptor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeProblem {
    /// The body (or the registry's copy) ended after this many bytes.
    EndedAt(u64),
    /// The body went past the expected size.
    Exceeded,
    /// `Content-Length`/`Content-Range` announced this many bytes.
    Announced(u64),
}

impl std::fmt::Display for SizeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EndedAt(n) => {
                write!(f, "but the content ended after {n} bytes; the registry's copy may be truncated")
            }
            Self::Exceeded => f.write_str("but it sent more; the descriptor or the registry's copy is wrong"),
            Self::Announced(n) => write!(f, "but it announced {n}; the descriptor or the registry's copy is wrong"),
        }
    }
}

impl RegistryError {
    /// Connection refused, DNS, TLS handshake, timeouts, resets and stalls,
    /// after the retry policy was used up.
    pub fn is_network(&self) -> bool {
        matches!(self, Self::Network { .. })
    }

    /// 404, MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
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
            | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The manifest problem (schema 1, unsupported type, invalid JSON), if that is the error.
    pub fn manifest_error(&self) -> Option<&ManifestError> {
        match self {
            Self::Manifest { source, .. } => Some(source),
            _ => None,
        }
    }

    pub(crate) fn network(registry: &str, subject: &str, attempts: u32, error: TransportError, plain: bool) -> Self {
        if matches!(error, TransportError::TooManyRedirects(_)) {
            return Self::protocol(registry, subject, error.describe());
        }
        let hint = if error.is_certificate_error() {
            HINT_CERTIFICATE
        } else if error.is_timeout() {
            HINT_SLOW
        } else if plain {
            HINT_UNREACHABLE_PLAIN
        } else {
            HINT_UNREACHABLE
        };
        Self::Network {
            registry: registry.to_owned(),
            subject: subject.to_owned(),
            attempts,
            cause: error.describe(),
            hint,
        }
    }

    pub(crate) fn protocol(registry: &str, subject: &str, message: impl Into<String>) -> Self {
        Self::Protocol { registry: registry.to_owned(), subject: subject.to_owned(), message: message.into() }
    }

    /// A 401 turned into what it means when the credentials were accepted
    /// but lack the right to push.
    pub(crate) fn into_push_denied(self) -> Self {
        match self {
            Self::Unauthorized { registry, subject, status, registry_says, .. } => {
                Self::Denied { registry, subject, status, registry_says, hint: HINT_PUSH_DENIED }
            }
            other => other,
        }
    }

    pub(crate) fn content(registry: &str, subject: &str, problem: impl Into<String>, hint: &'static str) -> Self {
        Self::Content { registry: registry.to_owned(), subject: subject.to_owned(), problem: problem.into(), hint }
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
}

impl Target {
    pub(crate) fn is_push(self) -> bool {
        matches!(self, Self::BlobPush | Self::ManifestPush)
    }
}

/// Distribution's error body: `{"errors":[{"code","message","detail"}]}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    /// Some token servers answer `{"details": "..."}` instead.
    #[serde(default)]
    details: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The registry's error codes and a short rendering for messages.
pub(crate) struct RegistrySays {
    codes: Vec<String>,
    text: String,
}

impl RegistrySays {
    pub(crate) fn parse(body: &[u8]) -> Self {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            let codes: Vec<String> = parsed.errors.iter().map(|entry| entry.code.to_ascii_uppercase()).collect();
            let mut rendered: Vec<String> = parsed
                .errors
                .iter()
                .map(|entry| match (entry.code.is_empty(), entry.message.is_empty()) {
                    (false, false) => format!("{}: {}", entry.code, entry.message),
                    (false, true) => entry.code.clone(),
                    _ => entry.message.clone(),
                })
                .filter(|text| !text.is_empty())
                .collect();
            rendered.extend(parsed.details.filter(|details| !details.is_empty()));
            if !rendered.is_empty() {
                return Self { codes, text: shorten(&rendered.join("; ")) };
            }
        }
        // Object stores answer XML or text; a short printable body still helps.
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let useful = !text.is_empty() && !text.starts_with('<') && text.chars().all(|c| !c.is_control() || c == '\n');
        Self { codes: Vec::new(), text: if useful { shorten(&text.replace('\n', " ")) } else { String::new() } }
    }

    pub(crate) fn has(&self, code: &str) -> bool {
        self.codes.iter().any(|candidate| candidate == code)
    }

    fn rendered(&self) -> String {
        if self.text.is_empty() { String::new() } else { format!(", {}", self.text) }
    }
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 300;
    if text.chars().count() <= LIMIT {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(LIMIT).collect();
        short.push('…');
        short
    }
}

/// Maps an unsuccessful final status to an error.
pub(crate) fn status_error(
    registry: &str,
    subject: &str,
    target: Target,
    method: &str,
    status: StatusCode,
    says: &RegistrySays,
    attempts: u32,
) -> RegistryError {
    let registry = registry.to_owned();
    let subject = subject.to_owned();
    let registry_says = says.rendered();
    let code = status.as_u16();
    if target.is_push() {
        let hint = if says.has("MANIFEST_BLOB_UNKNOWN") || (target == Target::ManifestPush && says.has("BLOB_UNKNOWN"))
        {
            HINT_MANIFEST_BLOB_UNKNOWN
        } else if says.has("BLOB_UPLOAD_UNKNOWN") {
            return RegistryError::NotFound { registry, subject, status: code, registry_says, hint: HINT_UPLOAD_LOST };
        } else if status == StatusCode::NOT_FOUND || says.has("NAME_UNKNOWN") {
            return RegistryError::NotFound {
                registry,
                subject,
                status: code,
                registry_says,
                hint: HINT_PUSH_NOT_FOUND,
            };
        } else if status == StatusCode::UNAUTHORIZED {
            return RegistryError::Unauthorized {
                registry,
                subject,
                status: code,
                registry_says,
                hint: HINT_PUSH_LOGIN,
            };
        } else if status == StatusCode::FORBIDDEN || says.has("DENIED") {
            return RegistryError::Denied { registry, subject, status: code, registry_says, hint: HINT_PUSH_DENIED };
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            HINT_TOO_LARGE
        } else if target == Target::ManifestPush
            && (says.has("MANIFEST_INVALID")
                || says.has("MANIFEST_UNVERIFIED")
                || says.has("DIGEST_INVALID")
                || status == StatusCode::UNSUPPORTED_MEDIA_TYPE)
        {
            HINT_MANIFEST_INVALID
        } else if says.has("DIGEST_INVALID") || says.has("SIZE_INVALID") || says.has("BLOB_UPLOAD_INVALID") {
            HINT_CONTENT_INVALID
        } else if says.has("TAG_INVALID") {
            HINT_TAG_INVALID
        } else if says.has("UNSUPPORTED") || status == StatusCode::METHOD_NOT_ALLOWED {
            HINT_UNSUPPORTED
        } else if status == StatusCode::TOO_MANY_REQUESTS || says.has("TOOMANYREQUESTS") {
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
            registry_says,
            attempts,
            hint,
        };
    }
    if status == StatusCode::NOT_FOUND
        || says.has("MANIFEST_UNKNOWN")
        || says.has("NAME_UNKNOWN")
        || says.has("BLOB_UNKNOWN")
    {
        let hint = if target == Target::Blob { HINT_BLOB_NOT_FOUND } else { HINT_NOT_FOUND };
        return RegistryError::NotFound { registry, subject, status: code, registry_says, hint };
    }
    if status == StatusCode::UNAUTHORIZED {
        return RegistryError::Unauthorized { registry, subject, status: code, registry_says, hint: HINT_LOGIN };
    }
    if status == StatusCode::FORBIDDEN || says.has("DENIED") {
        return RegistryError::Denied { registry, subject, status: code, registry_says, hint: HINT_DENIED };
    }
    let hint = if status == StatusCode::TOO_MANY_REQUESTS || says.has("TOOMANYREQUESTS") {
        HINT_RATE_LIMIT
    } else if status.is_server_error() {
        HINT_SERVER
    } else {
        HINT_REFUSED
    };
    RegistryError::Status { registry, subject, method: method.to_owned(), status: code, registry_says, attempts, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, body: &str, target: Target) -> RegistryError {
        let says = RegistrySays::parse(body.as_bytes());
        status_error(
            "reg.example",
            "image reg.example/a/b:v1",
            target,
            "GET",
            StatusCode::from_u16(status).unwrap(),
            &says,
            1,
        )
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
        assert!(unauthorized.is_auth() && unauthorized.to_string().contains("docker login"));
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
        // The same 401 on the read side still says to log in.
        has(error(401, "", Target::Manifest).to_string(), "docker login");
        let turned = error(401, "", Target::BlobPush).into_push_denied();
        assert!(matches!(turned, RegistryError::Denied { status: 401, .. }), "{turned:?}");
    }
}
