//! The OCI 1.1 referrers API: `GET /v2/NAME/referrers/DIGEST`, an image
//! index listing the manifests whose `subject` is that digest.

use bytes::Bytes;
use hpn_oci::{Digest, Reference, media_type};
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderValue};

use crate::error::{RegistryError, Target};
use crate::transport::{Call, Scope, Transport, stall};

/// A referrers list is read into memory up to the size of a manifest.
const MAX_LIST_BYTES: usize = hpn_oci::limits::MANIFEST as usize;

/// The referrers index of `subject` in `image`'s repository; `None` when the
/// registry answers 404, which the distribution spec defines as "no referrers
/// API here" (a registry that has it answers an empty index instead), so the
/// caller falls back to the `sha256-<hex>` tag.
pub(crate) async fn list(
    transport: &Transport,
    image: &Reference,
    subject: &Digest,
) -> Result<Option<Bytes>, RegistryError> {
    let repository = image.repository();
    let mut call = Call::new(
        transport.host(image.registry())?,
        repository,
        Method::GET,
        format!("/v2/{repository}/referrers/{subject}"),
        vec![Scope::pull(repository)],
        format!("referrers of {}@{subject}", image.name()),
        Target::Other,
    );
    call.headers.insert(ACCEPT, HeaderValue::from_static(media_type::OCI_INDEX));
    let Some(mut reply) = transport.execute_lookup(&call).await? else { return Ok(None) };
    match stall::read_body(&mut reply.response, MAX_LIST_BYTES, transport.options()).await {
        Ok((_, true)) => Err(RegistryError::protocol(
            call.host.name(),
            &call.subject,
            format!("the referrers list is more than the {MAX_LIST_BYTES} bytes hpn accepts"),
        )),
        Ok((body, false)) => Ok(Some(Bytes::from(body))),
        Err(error) => Err(transport.network(&call, error, 1)),
    }
}
