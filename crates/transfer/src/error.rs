use std::path::PathBuf;
use std::sync::Arc;

use hpn_archive::ArchiveError;
use hpn_oci::{Digest, ManifestError, Platform};
use hpn_registry::RegistryError;
use hpn_store::StoreError;

/// What went wrong while copying one image. Messages name the image, blob
/// or file and what happened; advice that names a command or flag is the
/// front end's to add (hpn's CLI does, by variant).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    // Boxed: the library errors carry names, paths and messages, and a
    // Result that is mostly error would be copied around on every `?`.
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(Box<RegistryError>),
    /// The store failed.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// Reading or writing an archive failed.
    #[error(transparent)]
    Archive(Box<ArchiveError>),
    /// A manifest, index or config that does not parse.
    #[error("{context}: {source}")]
    Manifest {
        /// Whose document it is (image, archive, digest).
        context: String,
        /// What is wrong with it.
        source: ManifestError,
    },
    /// A referrers list (the referrers API's answer, a `sha256-<hex>`
    /// fallback index) that cannot be read or added to.
    #[error("{context}: the referrers list cannot be read ({reason})")]
    Referrers {
        /// Whose list it is (image, registry or store, subject digest).
        context: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The index has no image for the wanted platform.
    #[error("no {wanted} image in this index (it has: {available})")]
    NoMatchingPlatform {
        /// The platform asked for.
        wanted: Platform,
        /// The platforms the index lists, comma-separated.
        available: String,
    },
    /// The source holds only some platforms of an index (a store or an
    /// archive keeps those that were pulled or saved), not all that were asked for.
    #[error("the source holds the {held} image of this index but not {missing}")]
    PlatformNotHeld {
        /// The image, as a full reference.
        image: String,
        /// The platforms asked for that the source lacks, comma-separated.
        missing: String,
        /// The platforms it holds, comma-separated ("no" when none).
        held: String,
    },
    /// Names asked for that no input archive holds.
    #[error("no image named {name} in {archives} (they hold: {held})")]
    NotInArchives {
        /// The name asked for, as a full reference.
        name: String,
        /// The archives read, comma-separated.
        archives: String,
        /// The names they hold, comma-separated.
        held: String,
    },
    /// A document larger than hpn reads into memory (`hpn_oci::limits`).
    #[error("{what} {digest} is {size} bytes, more than the {limit} bytes hpn accepts for it")]
    TooLarge {
        /// What kind of document.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// Its size as its descriptor gives it.
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// Content that does not hash to the digest it was asked for by.
    #[error(
        "{what} {expected} failed verification: its content hashes to {actual}; the source is corrupt or was changed"
    )]
    DigestMismatch {
        /// What kind of content.
        what: &'static str,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// A layer that decompresses to other content than its config says.
    #[error(
        "layer {layer} ({origin}) decompresses to {actual}, but the image config lists DiffID {expected}; the image is corrupt"
    )]
    DiffIdMismatch {
        /// The compressed layer's digest.
        layer: Digest,
        /// Where the layer came from (an archive).
        origin: String,
        /// The DiffID the config lists.
        expected: Digest,
        /// The digest of the decompressed bytes.
        actual: Digest,
    },
    /// A config whose DiffIDs do not pair with the manifest's layers.
    #[error("image config lists {diff_ids} DiffIDs for {layers} layers; the image is corrupt")]
    LayerCountMismatch {
        /// Layers in the manifest.
        layers: usize,
        /// DiffIDs in the config.
        diff_ids: usize,
    },
    /// The store has no image of that name.
    #[error("{} is not in the store at {}", .name, .store.display())]
    NotInStore {
        /// The name looked for.
        name: String,
        /// The store's directory.
        store: PathBuf,
    },
    /// The pull policy is [`PullPolicy::Never`](crate::PullPolicy::Never)
    /// and the destination does not hold all of the image.
    #[error("{image} is not complete in the store, and the pull policy never lets hpn fetch it from its source")]
    NotLocal {
        /// The image.
        image: String,
    },
    /// The store lacks a blob an image it names needs.
    #[error("blob {digest} is missing from the store at {}", .store.display())]
    BlobMissing {
        /// The missing blob.
        digest: Digest,
        /// The store's directory.
        store: PathBuf,
    },
    /// A differential bundle leaves a layer to its base, and the destination
    /// does not hold it: the image is not recorded.
    #[error(
        "image {image} needs layer {digest}, which the differential bundle {} does not carry: it expects it from \
         {base_file} (set {base_set}), and the destination does not hold it",
        .archive.display()
    )]
    BaseBlobMissing {
        /// The image, as named in the bundle.
        image: String,
        /// The layer.
        digest: Digest,
        /// The differential bundle.
        archive: PathBuf,
        /// The bundle or inventory that had the layer, as `--since` named it.
        base_file: String,
        /// Its set id (or inventory id).
        base_set: String,
    },
    /// An archive of several images, read without naming one.
    #[error("{} holds {count} images; name one as FILE:REF ({})", .archive.display(), .names.join(", "))]
    ImageNameRequired {
        /// The archive.
        archive: PathBuf,
        /// How many images it holds.
        count: usize,
        /// The names it gives them.
        names: Vec<String>,
    },
    /// An archive image with no name, which cannot be recorded under one.
    #[error(
        "the archive gives this image no name, so it cannot be stored or pushed under one; save it again with a tag"
    )]
    UnnamedImage,
    /// A destination name that cannot be made, with the reason as the caller put it.
    #[error("{0}")]
    InvalidName(String),
    /// A local I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What hpn was doing.
        context: String,
        /// The failure.
        source: std::io::Error,
    },
    /// Something hpn does not do (a nested index), or content it cannot use.
    #[error("{0}")]
    Unsupported(String),
    /// A worker task of hpn's panicked: a bug in hpn, not a fault of the
    /// source, the destination or the disk.
    #[error("internal error: the {task} task panicked ({message}); this is a bug in hpn, please report it")]
    Panicked {
        /// Which task.
        task: &'static str,
        /// The panic's message.
        message: String,
    },
    /// The same failure reported to every image that waited on one blob.
    #[error(transparent)]
    Shared(Arc<TransferError>),
    /// Looking for an image's attachments (signatures, SBOMs, attestations)
    /// failed: the image itself was not copied, since a named image travels
    /// with them or not at all.
    #[error("looking for the signatures, SBOMs and attestations of image {image}: {source}")]
    Discovery {
        /// The image, with its registry.
        image: String,
        /// What failed (a registry's answer, an unreadable referrers list).
        source: Box<TransferError>,
    },
}

/// The classes of failure the CLI turns into hpn's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Registry unreachable, timed out, connection broken.
    Network,
    /// Local files: no space, no permission, store damage.
    Filesystem,
    /// Everything else that failed while running: not found, denied, corrupt data.
    Runtime,
    /// A bug in hpn itself (a panicked task).
    Bug,
    /// The request cannot be carried out as asked (an archive of several
    /// images with none named).
    Usage,
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

    /// A blocking or spawned task that did not return: it panicked (a bug)
    /// or the runtime cancelled it while shutting down.
    pub(crate) fn task_failed(task: &'static str, error: tokio::task::JoinError) -> Self {
        if error.is_panic() {
            let panic = error.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Self::Panicked { task, message }
        } else {
            Self::io(format!("the {task} task"), std::io::Error::other("cancelled"))
        }
    }

    /// A local I/O failure, with what hpn was doing (`context`).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    /// The class of failure, which the CLI maps to an exit code.
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
            Self::Discovery { source, .. } => source.kind(),
            Self::Panicked { .. } => ErrorKind::Bug,
            Self::ImageNameRequired { .. } | Self::InvalidName(_) => ErrorKind::Usage,
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
