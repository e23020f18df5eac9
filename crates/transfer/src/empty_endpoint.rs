//! A place that does not exist yet, for dry runs.

use hpn_oci::{Descriptor, RawManifest, Reference};

use crate::endpoint::{BlobContent, BlobReuse, CopiedImage, ImageDestination};
use crate::error::TransferError;

/// A destination that holds nothing and takes nothing: what a dry run
/// ([`EngineOptions::dry_run`](crate::EngineOptions::dry_run)) plans against
/// when the place it would write (a store, a layout, an archive) does not
/// exist yet, so that planning creates nothing. Every write is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyDestination;

impl EmptyDestination {
    fn refuse(what: &str) -> TransferError {
        TransferError::Unsupported(format!("a dry run writes nothing, yet hpn tried to write {what}"))
    }
}

impl ImageDestination for EmptyDestination {
    async fn holds_blob(&self, _target: &Reference, _descriptor: &Descriptor) -> Result<bool, TransferError> {
        Ok(false)
    }

    async fn try_reuse_blob(
        &self,
        _target: &Reference,
        _descriptor: &Descriptor,
        _source: &Reference,
    ) -> Result<BlobReuse, TransferError> {
        Ok(BlobReuse::Absent)
    }

    async fn put_blob(
        &self,
        _target: &Reference,
        descriptor: &Descriptor,
        _content: BlobContent,
    ) -> Result<(), TransferError> {
        Err(Self::refuse(&format!("blob {}", descriptor.digest)))
    }

    async fn put_manifest(&self, _target: &Reference, manifest: &RawManifest) -> Result<(), TransferError> {
        Err(Self::refuse(&format!("manifest {}", manifest.digest)))
    }

    async fn commit(&self, image: &CopiedImage) -> Result<(), TransferError> {
        Err(Self::refuse(&format!("image {}", image.destination)))
    }
}
