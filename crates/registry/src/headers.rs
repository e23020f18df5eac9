//! The distribution API's response headers, read one way everywhere.

use hpn_oci::{Digest, DigestError};
use reqwest::header::{HeaderMap, HeaderName};

use crate::error::RegistryError;

/// The digest a registry computed for what it serves or stored.
pub(crate) const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

/// A header holding a number (`Content-Length`).
pub(crate) fn header_u64(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Docker-Content-Digest` as a digest hpn can compare: `Ok(None)` when it
/// is absent or in an algorithm hpn does not compute (sha512), which cannot
/// be compared and is let be; an error when it is malformed.
pub(crate) fn content_digest(
    headers: &HeaderMap,
    registry: &str,
    subject: &str,
) -> Result<Option<Digest>, RegistryError> {
    let Some(text) = headers.get(DOCKER_CONTENT_DIGEST).and_then(|value| value.to_str().ok()) else {
        return Ok(None);
    };
    match text.trim().parse::<Digest>() {
        Ok(digest) => Ok(Some(digest)),
        Err(DigestError::UnsupportedAlgorithm(_)) => Ok(None),
        Err(error) => {
            Err(RegistryError::protocol(registry, subject, format!("malformed Docker-Content-Digest header: {error}")))
        }
    }
}

/// Checks `Docker-Content-Digest` against what was pushed.
pub(crate) fn check_pushed_digest(
    headers: &HeaderMap,
    registry: &str,
    subject: &str,
    expected: &Digest,
    what: &str,
) -> Result<(), RegistryError> {
    match content_digest(headers, registry, subject)? {
        Some(stored) if stored != *expected => Err(RegistryError::protocol(
            registry,
            subject,
            format!("the registry reports the {what} as {stored}, but what was pushed is {expected}"),
        )),
        _ => Ok(()),
    }
}
