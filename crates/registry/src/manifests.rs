//! Manifests and indexes: fetched as raw bytes whose digest is verified,
//! resolved with `HEAD`, pushed as the exact bytes with their media type.

use bytes::Bytes;
use hpn_oci::{Descriptor, Digest, ParsedManifest, RawManifest, Reference, media_type};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use tracing::debug;

use crate::error::{HINT_MANIFEST_REFERENCE, HINT_MEDIA_TYPE, RegistryError, Target};
use crate::headers::{self, header_u64};
use crate::transport::retry::Retrier;
use crate::transport::{Call, CallBody, Scope, Sent, Transport, stall};

/// Manifests larger than this are refused, to bound memory.
const MAX_MANIFEST_BYTES: usize = hpn_oci::limits::MANIFEST as usize;

/// `GET` with an `Accept` of every type hpn can copy; a body that breaks is
/// fetched again within the retry policy.
pub(crate) async fn get(transport: &Transport, reference: &Reference) -> Result<RawManifest, RegistryError> {
    let call = call(transport, reference, Method::GET)?;
    let registry = call.host.name();
    let mut retrier = Retrier::new(&transport.options().retry);
    loop {
        let attempt = retrier.attempt();
        let mut reply = transport.execute(&call).await?;
        if !reply.response.status().is_success() {
            return Err(transport.failure(&call, reply).await);
        }
        let headers = reply.response.headers().clone();
        if let Some(length) = header_u64(&headers, &CONTENT_LENGTH)
            && length > MAX_MANIFEST_BYTES as u64
        {
            return Err(too_large(registry, &call.subject, length));
        }
        let read = stall::read_body(&mut reply.response, MAX_MANIFEST_BYTES, transport.options()).await;
        drop(reply);
        match read {
            Ok((_, true)) => return Err(too_large(registry, &call.subject, MAX_MANIFEST_BYTES as u64 + 1)),
            Ok((bytes, false)) => return finish(registry, &call.subject, reference, &headers, bytes),
            Err(error) => {
                debug!(registry = %registry, attempt, "manifest body broke ({error})");
                let retryable = error.is_retryable();
                let error = transport.network(&call, error, attempt);
                if !retryable {
                    return Err(error);
                }
                retrier.failed(error, None).await?;
            }
        }
    }
}

/// `HEAD`: digest (`Docker-Content-Digest`), media type (`Content-Type`) and
/// size (`Content-Length`); `None` on 404. A registry that leaves out a
/// header gets a `GET` instead, so the answer is always complete and verified.
pub(crate) async fn head(transport: &Transport, reference: &Reference) -> Result<Option<Descriptor>, RegistryError> {
    let call = call(transport, reference, Method::HEAD)?;
    let Some(reply) = transport.execute_lookup(&call).await? else { return Ok(None) };
    let headers = reply.response.headers().clone();
    drop(reply);
    let registry = call.host.name();
    let digest = headers::content_digest(&headers, registry, &call.subject)?;
    if let (Some(expected), Some(actual)) = (reference.digest(), &digest)
        && expected != actual
    {
        return Err(RegistryError::DigestMismatch {
            registry: registry.to_owned(),
            subject: call.subject.clone(),
            expected: expected.clone(),
            actual: actual.clone(),
            expected_from: "the reference",
        });
    }
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or(value).trim().to_owned())
        .filter(|value| !value.is_empty() && value != "application/json" && value != "text/plain");
    let size = header_u64(&headers, &CONTENT_LENGTH);
    match (digest, media_type, size) {
        (Some(digest), Some(media_type), Some(size)) => Ok(Some(Descriptor::new(&media_type, digest, size))),
        _ => {
            debug!(registry = %registry, "HEAD answer lacks digest, type or length; using GET");
            match get(transport, reference).await {
                Ok(fetched) => Ok(Some(fetched.descriptor())),
                Err(error) if error.is_not_found() => Ok(None),
                Err(error) => Err(error),
            }
        }
    }
}

/// `PUT` of exactly `bytes` with `Content-Type: media_type`, by tag when the
/// reference has one, else by digest; returns the bytes' digest.
pub(crate) async fn put(
    transport: &Transport,
    target: &Reference,
    bytes: Bytes,
    media_type: &str,
) -> Result<Digest, RegistryError> {
    let digest = Digest::of(&bytes);
    let host = transport.host(target.registry())?;
    let subject = format!("pushing manifest {digest} as {target}");
    if let Some(named) = target.digest()
        && *named != digest
    {
        return Err(RegistryError::content(
            host.name(),
            &subject,
            format!("the manifest's bytes have digest {digest}, not {named} as the reference says"),
            None,
            HINT_MANIFEST_REFERENCE,
        ));
    }
    let content_type = HeaderValue::from_str(media_type).map_err(|_| {
        RegistryError::content(
            host.name(),
            &subject,
            format!("{media_type:?} is not a valid media type"),
            None,
            HINT_MEDIA_TYPE,
        )
    })?;
    let repository = target.repository();
    let reference = target.tag().map_or_else(|| digest.to_string(), str::to_owned);
    let mut call = Call::new(
        host,
        repository,
        Method::PUT,
        format!("/v2/{repository}/manifests/{reference}"),
        vec![Scope::push(repository)],
        subject,
        Target::ManifestPush,
    );
    call.headers.insert(CONTENT_TYPE, content_type);
    let reply = match transport.execute_with(&call, CallBody::Bytes(bytes), true).await? {
        Sent::Reply(reply) => reply,
        Sent::Broken { error, attempts } => return Err(transport.network(&call, error, attempts)),
    };
    if !reply.response.status().is_success() {
        return Err(transport.failure(&call, reply).await);
    }
    headers::check_pushed_digest(reply.response.headers(), call.host.name(), &call.subject, &digest, "manifest")?;
    Ok(digest)
}

fn call(transport: &Transport, reference: &Reference, method: Method) -> Result<Call, RegistryError> {
    let repository = reference.repository();
    let mut call = Call::new(
        transport.host(reference.registry())?,
        repository,
        method,
        format!("/v2/{repository}/manifests/{}", reference.manifest_reference()),
        vec![Scope::pull(repository)],
        format!("image {reference}"),
        Target::Manifest,
    );
    call.headers.insert(ACCEPT, HeaderValue::from_str(&media_type::ACCEPTED_MANIFESTS.join(", ")).expect("ASCII"));
    Ok(call)
}

/// Checks manifest bytes against the digests the reference and the registry
/// claim, and returns their digest.
fn verify_digest(
    bytes: &[u8],
    from_reference: Option<&Digest>,
    from_header: Option<Digest>,
) -> Result<Digest, (Digest, Digest, &'static str)> {
    let actual = Digest::of(bytes);
    if let Some(expected) = from_reference
        && *expected != actual
    {
        return Err((expected.clone(), actual, "the reference"));
    }
    // A header in another algorithm (sha512) cannot be checked with ours; the
    // bytes are still verified against the reference when it has a digest.
    if let Some(expected) = from_header
        && expected != actual
    {
        return Err((expected, actual, "the registry's Docker-Content-Digest header"));
    }
    Ok(actual)
}

fn finish(
    registry: &str,
    subject: &str,
    reference: &Reference,
    headers: &HeaderMap,
    bytes: Vec<u8>,
) -> Result<RawManifest, RegistryError> {
    let from_header = headers::content_digest(headers, registry, subject)?;
    let digest =
        verify_digest(&bytes, reference.digest(), from_header).map_err(|(expected, actual, expected_from)| {
            RegistryError::DigestMismatch {
                registry: registry.to_owned(),
                subject: subject.to_owned(),
                expected,
                actual,
                expected_from,
            }
        })?;
    let content_type = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok());
    let (_, media_type) = ParsedManifest::parse(&bytes, content_type)
        .map_err(|source| RegistryError::Manifest { subject: subject.to_owned(), source })?;
    Ok(RawManifest { bytes: Bytes::from(bytes), media_type, digest })
}

fn too_large(registry: &str, subject: &str, length: u64) -> RegistryError {
    RegistryError::protocol(
        registry,
        subject,
        format!("the manifest is {length} bytes, more than the {MAX_MANIFEST_BYTES} bytes hpn accepts"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: &[u8] = br#"{"schemaVersion":2}"#;

    #[test]
    fn manifest_digest_is_checked_against_reference_and_header() {
        let actual = Digest::of(BYTES);
        let other = Digest::of(b"something else");
        assert_eq!(verify_digest(BYTES, None, None).unwrap(), actual);
        assert_eq!(verify_digest(BYTES, Some(&actual), Some(actual.clone())).unwrap(), actual);
        let (expected, got, from) = verify_digest(BYTES, Some(&other), None).unwrap_err();
        assert_eq!((expected, got, from), (other.clone(), actual.clone(), "the reference"));
        let (expected, _, from) = verify_digest(BYTES, None, Some(other.clone())).unwrap_err();
        assert_eq!(expected, other);
        assert!(from.contains("Docker-Content-Digest"));
    }

    #[test]
    fn finish_reports_mismatch_schema1_and_media_type() {
        use crate::headers::DOCKER_CONTENT_DIGEST;
        let reference: Reference = "127.0.0.1:5000/a/b:v1".parse().unwrap();
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"));
        let fetched = finish("r", "image x", &reference, &headers, manifest.to_vec()).unwrap();
        assert_eq!(fetched.media_type, media_type::OCI_MANIFEST);
        assert_eq!(fetched.digest, Digest::of(manifest));

        // An algorithm we cannot compute is not a mismatch.
        headers.insert(DOCKER_CONTENT_DIGEST, HeaderValue::from_str(&format!("sha512:{}", "a".repeat(128))).unwrap());
        assert!(finish("r", "image x", &reference, &headers, manifest.to_vec()).is_ok());

        headers.insert(DOCKER_CONTENT_DIGEST, HeaderValue::from_str(&Digest::of(b"x").to_string()).unwrap());
        let error = finish("r", "image x", &reference, &headers, manifest.to_vec()).unwrap_err();
        assert!(matches!(error, RegistryError::DigestMismatch { .. }), "{error}");
        assert!(error.to_string().contains(&Digest::of(b"x").to_string()), "{error}");

        headers.insert(DOCKER_CONTENT_DIGEST, HeaderValue::from_static("sha256:nothex"));
        let error = finish("r", "image x", &reference, &headers, manifest.to_vec()).unwrap_err();
        assert!(matches!(error, RegistryError::Protocol { .. }), "{error}");

        let schema1 = br#"{"schemaVersion":1,"name":"a/b","tag":"v1","fsLayers":[]}"#;
        let error = finish("r", "image x", &reference, &HeaderMap::new(), schema1.to_vec()).unwrap_err();
        assert_eq!(error.manifest_error(), Some(&hpn_oci::ManifestError::Schema1));
    }
}
