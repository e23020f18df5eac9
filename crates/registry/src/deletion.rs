//! Deleting a manifest: `DELETE /v2/NAME/manifests/DIGEST`. The spec allows
//! it by digest only; a registry may have deletes disabled, which is
//! reported as such (`Target::ManifestDelete`).

use hpn_oci::{Digest, Reference};
use reqwest::Method;

use crate::error::{RegistryError, Target};
use crate::transport::{Call, Scope, Transport};

/// Deletes the manifest `digest` of `image`'s repository (and with it every
/// tag pointing at it, as registries do).
pub(crate) async fn delete_manifest(
    transport: &Transport,
    image: &Reference,
    digest: &Digest,
) -> Result<(), RegistryError> {
    let repository = image.repository();
    let call = Call::new(
        transport.host(image.registry())?,
        repository,
        Method::DELETE,
        format!("/v2/{repository}/manifests/{digest}"),
        vec![Scope::delete(repository)],
        format!("deleting manifest {digest} of {}", image.name()),
        Target::ManifestDelete,
    );
    let reply = transport.execute(&call).await?;
    if !reply.response.status().is_success() {
        return Err(transport.failure(&call, reply).await);
    }
    Ok(())
}
