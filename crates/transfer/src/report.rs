use hpn_oci::{Descriptor, Digest, Platform, Reference};

use crate::attachments::{CopiedAttachment, LeftAttachment};
use crate::error::TransferError;

/// Where a blob's bytes came from in this run, for progress and the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOrigin {
    /// Moved from the source in this run.
    Transferred,
    /// The destination already had it (from an earlier run or another image).
    AlreadyPresent,
}

/// What copying one image did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOutcome {
    /// Digest of the image's top manifest or index at the destination.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The platforms copied.
    pub platforms: Vec<Platform>,
    /// Layers moved in this run.
    pub blobs_transferred: usize,
    /// Their bytes.
    pub bytes_transferred: u64,
    /// Layers the destination already had (or reused from elsewhere).
    pub blobs_present: usize,
    /// Their bytes.
    pub bytes_present: u64,
    /// The signatures, SBOMs and attestations carried with the image.
    pub attachments: Vec<CopiedAttachment>,
    /// Attachments the source has that did not travel, with why.
    pub attachments_left: Vec<LeftAttachment>,
}

/// Progress events. The engine calls these from many tasks at once; an
/// implementation must be cheap and must not block (the CLI's draws a
/// terminal, tests count). Every image reported as started is finished
/// exactly once.
pub trait Reporter: Send + Sync {
    /// `count` more images are queued for this run (a run over several
    /// archives queues each archive's images in turn).
    fn images_queued(&self, _count: usize) {}
    /// Copying `image` began.
    fn image_started(&self, _image: &Reference) {}
    /// The image's blobs are known: how many and how many bytes in all.
    fn image_planned(&self, _image: &Reference, _blobs: usize, _bytes: u64) {}
    /// `bytes` more bytes of some blob of `image` arrived.
    fn bytes_transferred(&self, _image: &Reference, _bytes: u64) {}
    /// `image` waits for a layer that another image, `fetched_for`, is moving
    /// right now; [`Reporter::blob_done`] follows when it is there.
    fn blob_waiting(&self, _image: &Reference, _blob: &Descriptor, _fetched_for: &Reference) {}
    /// A layer of `image` is at the destination, moved or found there.
    fn blob_done(&self, _image: &Reference, _blob: &Descriptor, _origin: BlobOrigin) {}
    /// Copying `image` ended, well or not.
    fn image_finished(&self, _image: &Reference, _result: Result<&CopyOutcome, &TransferError>) {}
}

/// A reporter that ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReport;

impl Reporter for NoReport {}
