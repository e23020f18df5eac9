use hpn_fs::io_error::{is_no_space, is_permission_denied};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use hpn_oci::Digest;

/// Everything that can go wrong in the store. Each message names the file and
/// says what the user can do, because the CLI shows it as is.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed. The OS error is part of the message (not
    /// a `source`), so a report that prints the chain does not repeat it.
    #[error("{}", IoMessage { operation, path, error })]
    Io {
        /// What was being done, as a verb phrase (`write blob`, `lock`).
        operation: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },

    /// The directory is an OCI layout of a version hpn does not know.
    #[error(
        "{} holds an OCI layout of version {found:?}, but hpn only knows 1.0.0; \
         run with --store to use another directory",
        .path.display()
    )]
    UnsupportedLayoutVersion {
        /// The `oci-layout` file.
        path: PathBuf,
        /// The version it declares.
        found: String,
    },

    /// `oci-layout` cannot be read as a layout file, or the directory holds
    /// other files and is not a layout at all (most likely a mistyped `--store`).

    #[error("{} is not a valid OCI layout file ({reason}); repair or remove it, or run with --store to use another directory", .path.display())]
    InvalidLayout {
        /// The `oci-layout` file (present or not).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// index.json is missing from a store that holds blobs, or cannot be
    /// parsed. Which images the store holds is then unknown, so hpn neither
    /// reads refs from it nor writes one: an index guessed empty would make
    /// gc delete every blob.
    #[error(
        "{} {reason}, so which images the store at {} holds is unknown and hpn will not change the store; \
         restore index.json from a backup, or remove the directory to start afresh",
        .path.display(),
        .path.parent().unwrap_or(.path).display()
    )]
    UnusableIndex {
        /// The `index.json` file (present or not).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Bytes offered for a blob hash to another digest than the one promised.

    #[error(
        "content {actual} does not match the expected digest {expected}; the source sent corrupt or different data"
    )]
    DigestMismatch {
        /// The digest the blob was announced with.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },

    /// A blob arrived longer or shorter than its descriptor said.

    #[error(
        "blob {digest} should be {expected} bytes but {actual} arrived; the source sent truncated or different data"
    )]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size its descriptor gave.
        expected: u64,
        /// The bytes that arrived.
        actual: u64,
    },

    /// [`Store::read_blob`](crate::Store::read_blob) of a blob the store does not have.

    #[error("blob {digest} is not in the store at {}", .root.display())]
    BlobNotFound {
        /// The blob asked for.
        digest: Digest,
        /// The store's root directory.
        root: PathBuf,
    },

    /// A blob read whole is over the caller's limit: refused before it is
    /// read into memory.

    #[error("blob {digest} is {size} bytes, more than the {max} bytes accepted here; it is not a manifest or config")]
    BlobTooLarge {
        /// The blob.
        digest: Digest,
        /// Its size on disk.
        size: u64,
        /// The caller's limit (see `hpn_oci::limits`).
        max: u64,
    },

    /// A stored blob no longer hashes to its name (disk corruption, or
    /// something else wrote to the store).

    #[error(
        "blob {digest} in the store at {} is corrupt (its content hashes to {actual}); \
         run `hpn store verify`, then pull the image again",
        .root.display()
    )]
    CorruptBlob {
        /// The blob's name.
        digest: Digest,
        /// What its content hashes to.
        actual: Digest,
        /// The store's root directory.
        root: PathBuf,
    },

    /// What is stored under a blob's name must not be used (a link, a FIFO,
    /// a wrong size, content of another digest). Fetching the blob again
    /// replaces it.
    #[error(
        "blob {digest} in the store at {} is damaged ({damage}); \
         pull the image again to replace it, and run `hpn store verify` to find others",
        .root.display()
    )]
    DamagedBlob {
        /// The blob's name.
        digest: Digest,
        /// The store's root directory.
        root: PathBuf,
        /// What is wrong with it.
        damage: crate::BlobDamage,
    },

    /// [`Store::open_existing`](crate::Store::open_existing) of a directory
    /// that is not a store.
    #[error("there is no store at {}: it {reason}; check the path given with --store", .root.display())]
    NoStore {
        /// The directory asked for.
        root: PathBuf,
        /// What is there instead.
        reason: &'static str,
    },

    /// [`Store::remove_refs`](crate::Store::remove_refs) of names the store
    /// does not hold; nothing was removed.
    #[error(
        "the store at {} holds no image named {}; nothing was removed (`hpn store ls` lists the names)",
        .root.display(),
        .names.join(", ")
    )]
    RefsNotFound {
        /// The names that match no entry.
        names: Vec<String>,
        /// The store's root directory.
        root: PathBuf,
    },

    /// gc of an OCI layout opened with
    /// [`Store::open_layout`](crate::Store::open_layout): only a store has
    /// the usage lock that keeps gc from deleting a running pull's blobs.
    #[error("{} was opened as an OCI layout, not as hpn's store; gc runs on stores only", .root.display())]
    NotAStore {
        /// The layout's directory.
        root: PathBuf,
    },

    /// gc met a reachable manifest it cannot parse, so it cannot know what
    /// that manifest keeps alive and deletes nothing.

    #[error("manifest {digest} in the store cannot be read ({reason}); gc stopped without removing anything")]
    UnreadableManifest {
        /// The manifest.
        digest: Digest,
        /// Why it cannot be read or parsed.
        reason: String,
    },

    /// gc needs the store to itself, and another process has it open.

    #[error(
        "the store at {} is in use by another hpn process; run gc again when it has finished",
        .root.display()
    )]
    InUse {
        /// The store's root directory.
        root: PathBuf,
    },

    /// A name for [`Store::set_ref`](crate::Store::set_ref) that index.json
    /// cannot carry safely.

    #[error("invalid reference name {0:?}: it must be non-empty and contain no control characters")]
    InvalidRefName(String),
}

impl StoreError {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, error: io::Error) -> Self {
        Self::Io { operation, path: path.into(), error }
    }

    /// True when the disk (or the user's quota) is full: the caller may want
    /// to stop every transfer instead of retrying.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::Io { error, .. } if is_no_space(error))
    }

    /// True when the OS refused access (permissions, read-only filesystem).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::Io { error, .. } if is_permission_denied(error))
    }

    /// The underlying OS error, for callers that classify failures.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

struct IoMessage<'a> {
    operation: &'a str,
    path: &'a Path,
    error: &'a io::Error,
}

impl fmt::Display for IoMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not {} {}: {}", self.operation, self.path.display(), self.error)?;
        if is_no_space(self.error) {
            write!(f, "; free some space, or run with --store to use a directory on another disk")
        } else if is_permission_denied(self.error) {
            write!(f, "; check permissions on {}, or run with --store to use another directory", self.path.display())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_name_the_path_and_suggest_a_fix() {
        let full = StoreError::io("write blob", "/s/blobs/x", io::Error::from(io::ErrorKind::StorageFull));
        assert!(full.is_no_space());
        let text = full.to_string();
        assert!(text.contains("/s/blobs/x") && text.contains("free some space"), "{text}");

        let denied = StoreError::io("create", "/s", io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(denied.is_permission_denied() && !denied.is_no_space());
        assert!(denied.to_string().contains("check permissions on /s"), "{denied}");
    }
}
