use hpn_fs::io_error::{is_no_space, is_permission_denied};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use hpn_oci::Digest;

/// Everything that can go wrong in the store. Each message names the file and
/// says what the user can do, because the CLI shows it as is.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// A filesystem operation failed. The OS error is part of the message (not
    /// a `source`), so a report that prints the chain does not repeat it.
    #[error("{}", IoMessage { operation, path, error })]
    Io { operation: &'static str, path: PathBuf, error: io::Error },

    #[error(
        "{} holds an OCI layout of version {found:?}, but hpn only knows 1.0.0; \
         run with --store to use another directory",
        .path.display()
    )]
    UnsupportedLayoutVersion { path: PathBuf, found: String },

    #[error("{} is not a valid OCI layout file ({reason}); repair or remove it, or run with --store to use another directory", .path.display())]
    InvalidLayout { path: PathBuf, reason: String },

    #[error(
        "content {actual} does not match the expected digest {expected}; the source sent corrupt or different data"
    )]
    DigestMismatch { expected: Digest, actual: Digest },

    #[error(
        "blob {digest} should be {expected} bytes but {actual} arrived; the source sent truncated or different data"
    )]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },

    #[error("blob {digest} is not in the store at {}", .root.display())]
    BlobNotFound { digest: Digest, root: PathBuf },

    #[error("blob {digest} is {size} bytes, more than the {max} bytes accepted here; it is not a manifest or config")]
    BlobTooLarge { digest: Digest, size: u64, max: u64 },

    #[error(
        "blob {digest} in the store at {} is corrupt (its content hashes to {actual}); \
         run `hpn store verify`, then pull the image again",
        .root.display()
    )]
    CorruptBlob { digest: Digest, actual: Digest, root: PathBuf },

    #[error("manifest {digest} in the store cannot be read ({reason}); gc stopped without removing anything")]
    UnreadableManifest { digest: Digest, reason: String },

    #[error("cannot tell where the store goes: neither XDG_CACHE_HOME nor HOME is set; run with --store DIR")]
    NoCacheDir,

    #[error(
        "the store at {} is in use by another hpn process; run gc again when it has finished",
        .root.display()
    )]
    InUse { root: PathBuf },

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
