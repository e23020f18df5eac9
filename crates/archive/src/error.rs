use hpn_fs::io_error::{is_no_space, is_permission_denied};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use hpn_oci::Digest;

/// What can go wrong writing or reading an archive. Messages name the
/// archive (and, when reading, the entry inside it) and say what the user can
/// do; the CLI shows them as is.
#[derive(thiserror::Error, Debug)]
pub enum ArchiveError {
    /// A filesystem operation failed. The OS error is part of the message (not
    /// a `source`) so a printed error chain does not repeat it.
    #[error("{}", IoMessage { action, path, error })]
    Io { action: String, path: PathBuf, error: io::Error },

    #[error("cannot write an archive to {}: {reason}", .path.display())]
    InvalidPath { path: PathBuf, reason: &'static str },

    #[error(
        "blob content {actual} does not match the expected digest {expected}; the source sent corrupt or different data"
    )]
    DigestMismatch { expected: Digest, actual: Digest },

    #[error(
        "blob {digest} should be {expected} bytes but {actual} arrived; the source sent truncated or different data"
    )]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },

    #[error("{image}: its {role} {digest} was not added to the archive (a bug in the caller; no archive was written)")]
    MissingBlob { image: String, role: &'static str, digest: Digest },

    #[error("an earlier error left an entry of {} half-written; start the archive again", .path.display())]
    Broken { path: PathBuf },

    // Reading. Each names the archive and, where there is one, the entry.
    #[error("{} is not an image archive: {reason}", .path.display())]
    NotAnArchive { path: PathBuf, reason: String },

    #[error("{} is truncated or corrupt: {detail}; was the file cut short by an interrupted download or copy?", .path.display())]
    Truncated { path: PathBuf, detail: String },

    /// An entry hpn refuses to read: an unsafe name (`..`, absolute, NUL), a
    /// link leading outside the archive, a duplicate with other content, an
    /// entry type that is not a plain file.
    #[error("{}: refusing entry {entry:?}: {reason}", .path.display())]
    BadEntry { path: PathBuf, entry: String, reason: String },

    #[error("{}: {referrer} names {entry:?}, which the archive does not contain", .path.display())]
    MissingEntry { path: PathBuf, entry: String, referrer: String },

    #[error("{}: blob {digest} ({referrer}) is not in the archive", .path.display())]
    BlobNotFound { path: PathBuf, digest: Digest, referrer: String },

    #[error("{}: {entry} is not valid: {reason}", .path.display())]
    InvalidMetadata { path: PathBuf, entry: String, reason: String },

    #[error(
        "{}: {entry} is {size} bytes, more than the {limit} bytes hpn reads into memory for it; the archive is not one hpn can read",
        .path.display()
    )]
    TooLarge { path: PathBuf, entry: String, size: u64, limit: u64 },

    #[error("{}: {entry} should have digest {expected} but its content has {actual}; the archive is corrupt", .path.display())]
    CorruptBlob { path: PathBuf, entry: String, expected: Digest, actual: Digest },

    #[error(
        "{}: layer {entry} of image {image} is uncompressed and has DiffID {actual}, but the image config lists {expected} at its position; the archive is corrupt or was assembled wrongly",
        .path.display()
    )]
    DiffIdMismatch { path: PathBuf, entry: String, image: String, expected: Digest, actual: Digest },
}

impl ArchiveError {
    pub(crate) fn io(action: impl Into<String>, path: impl Into<PathBuf>, error: io::Error) -> Self {
        Self::Io { action: action.into(), path: path.into(), error }
    }

    /// True when the disk (or quota) is full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::Io { error, .. } if is_no_space(error))
    }

    /// True when the OS refused access (permissions, read-only filesystem).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::Io { error, .. } if is_permission_denied(error))
    }

    /// True when the archive being read is malformed, corrupt, truncated or
    /// hostile (as opposed to a filesystem failure): the input's fault.
    pub fn is_invalid_archive(&self) -> bool {
        matches!(
            self,
            Self::NotAnArchive { .. }
                | Self::Truncated { .. }
                | Self::BadEntry { .. }
                | Self::MissingEntry { .. }
                | Self::BlobNotFound { .. }
                | Self::InvalidMetadata { .. }
                | Self::TooLarge { .. }
                | Self::CorruptBlob { .. }
                | Self::DiffIdMismatch { .. }
        )
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
    action: &'a str,
    path: &'a Path,
    error: &'a io::Error,
}

impl fmt::Display for IoMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not {} {}: {}", self.action, self.path.display(), self.error)?;
        if is_no_space(self.error) {
            write!(f, "; the disk is full: free some space or write the archive to another disk")
        } else if is_permission_denied(self.error) {
            write!(f, "; permission denied: check permissions on the directory, or write the archive elsewhere")
        } else if self.error.kind() == io::ErrorKind::NotFound {
            write!(f, "; does the directory exist?")
        } else {
            Ok(())
        }
    }
}
