use bytes::Bytes;
use futures_util::TryStreamExt;
use hpn_oci::{Descriptor, Reference};
use hpn_registry::RegistryClient;

use crate::endpoint::{BlobContent, ImageSource, RawManifest};
use crate::error::TransferError;

/// Reads images from registries over the distribution API.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    client: RegistryClient,
}

impl RegistrySource {
    pub fn new(client: RegistryClient) -> Self {
        Self { client }
    }
}

impl ImageSource for RegistrySource {
    fn describe(&self) -> String {
        "registry".to_owned()
    }

    async fn peek(&self, image: &Reference) -> Result<Option<Descriptor>, TransferError> {
        Ok(self.client.head_manifest(image).await?)
    }

    async fn resolve(&self, image: &Reference) -> Result<RawManifest, TransferError> {
        let fetched = self.client.get_manifest(image).await?;
        Ok(RawManifest { bytes: Bytes::from(fetched.bytes), media_type: fetched.media_type, digest: fetched.digest })
    }

    async fn manifest(&self, image: &Reference, descriptor: &Descriptor) -> Result<RawManifest, TransferError> {
        self.resolve(&image.with_digest_only(descriptor.digest.clone())).await
    }

    async fn blob(&self, image: &Reference, descriptor: &Descriptor) -> Result<BlobContent, TransferError> {
        let stream = self.client.get_blob(image, descriptor).await?;
        Ok(BlobContent::Stream(Box::pin(stream.map_err(TransferError::from))))
    }
}
