use std::path::PathBuf;
use std::sync::Arc;

use hpn_archive::ArchiveError;
use hpn_oci::{Digest, ManifestError, Platform};
use hpn_registry::RegistryError;
use hpn_store::StoreError;

/// What went wrong while copying one image. Messages name the image or blob
/// and say what the user can do; the CLI adds which command was running.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    // Boxed: the library errors carry names, paths and messages, and a
    // Result that is mostly error would be copied around on every `?`.
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error(transparent)]
    Archive(Box<ArchiveError>),
    #[error("{context}: {source}")]
    Manifest { context: String, source: ManifestError },
    #[error(
        "no {wanted} image in this index (it has: {available}); choose one with --platform or copy all with --all-platforms"
    )]
    NoMatchingPlatform { wanted: Platform, available: String },
    #[error("{what} {digest} is {size} bytes, more than the {limit} bytes hpn accepts for it")]
    TooLarge { what: &'static str, digest: Digest, size: u64, limit: u64 },
    #[error(
        "{what} {expected} failed verification: its content hashes to {actual}; the source is corrupt or was changed"
    )]
    DigestMismatch { what: &'static str, expected: Digest, actual: Digest },
    #[error(
        "layer {layer} ({origin}) decompresses to {actual}, but the image config lists DiffID {expected}; the image is corrupt"
    )]
    DiffIdMismatch { layer: Digest, origin: String, expected: Digest, actual: Digest },
    #[error("image config lists {diff_ids} DiffIDs for {layers} layers; the image is corrupt")]
    LayerCountMismatch { layers: usize, diff_ids: usize },
    #[error("{} is not in the store at {}; run `hpn pull` for it first", .name, .store.display())]
    NotInStore { name: String, store: PathBuf },
    #[error("blob {digest} is missing from the store at {}; run `hpn pull` again or `hpn store verify`", .store.display())]
    BlobMissing { digest: Digest, store: PathBuf },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Unsupported(String),
    /// The same failure reported to every image that waited on one blob.
    #[error(transparent)]
    Shared(Arc<TransferError>),
}

/// The classes of failure the CLI turns into hpn's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Registry unreachable, timed out, connection broken.
    Network,
    /// Local files: no space, no permission, store damage.
    Filesystem,
    /// Everything else that failed while running: not found, denied, corrupt data.
    Runtime,
}

impl TransferError {
    /// The error a [`hpn_oci::BlobStream`] ended with, as the error of the
    /// crate that produced it: a registry's network failure stays a network
    /// failure rather than becoming a local I/O error.
    pub fn from_stream(error: std::io::Error) -> Self {
        if error.get_ref().is_some_and(|inner| inner.is::<RegistryError>() || inner.is::<TransferError>()) {
            let inner = error.into_inner().expect("checked above");
            return match inner.downcast::<TransferError>() {
                Ok(transfer) => *transfer,
                Err(inner) => Self::Registry(inner.downcast::<RegistryError>().expect("checked above")),
            };
        }
        Self::io("reading a blob stream", error)
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Registry(error) if error.is_network() => ErrorKind::Network,
            // Content that fails verification on its way in is the source's fault, not the disk's.
            Self::Store(error)
                if matches!(**error, StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. }) =>
            {
                ErrorKind::Runtime
            }
            // A broken or hostile archive is bad input, not a disk problem.
            Self::Archive(error)
                if error.is_invalid_archive()
                    || matches!(**error, ArchiveError::DigestMismatch { .. } | ArchiveError::SizeMismatch { .. }) =>
            {
                ErrorKind::Runtime
            }
            Self::Store(_) | Self::Archive(_) | Self::Io { .. } | Self::BlobMissing { .. } => ErrorKind::Filesystem,
            Self::Shared(inner) => inner.kind(),
            _ => ErrorKind::Runtime,
        }
    }
}

macro_rules! boxed_from {
    ($($variant:ident($error:ty)),*) => {$(
        impl From<$error> for TransferError {
            fn from(error: $error) -> Self {
                Self::$variant(Box::new(error))
            }
        }
    )*};
}

boxed_from!(Registry(RegistryError), Store(StoreError), Archive(ArchiveError));
