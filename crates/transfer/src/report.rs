use hpn_oci::{Descriptor, Reference};

use crate::engine::CopyOutcome;
use crate::error::TransferError;

/// Where a blob's bytes came from in this run, for progress and the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOrigin {
    /// Moved from the source in this run.
    Transferred,
    /// The destination already had it (from an earlier run or another image).
    AlreadyPresent,
}

/// Progress events. The engine calls these from many tasks at once; an
/// implementation must be cheap and must not block (the CLI's draws a
/// terminal, tests count). Every image reported as started is finished
/// exactly once.
pub trait Reporter: Send + Sync {
    fn image_started(&self, _image: &Reference) {}
    /// The image's blobs are known: how many and how many bytes in all.
    fn image_planned(&self, _image: &Reference, _blobs: usize, _bytes: u64) {}
    /// `bytes` more bytes of some blob of `image` arrived.
    fn bytes_transferred(&self, _image: &Reference, _bytes: u64) {}
    fn blob_done(&self, _image: &Reference, _blob: &Descriptor, _origin: BlobOrigin) {}
    fn image_finished(&self, _image: &Reference, _result: Result<&CopyOutcome, &TransferError>) {}
}

/// A reporter that ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReport;

impl Reporter for NoReport {}
