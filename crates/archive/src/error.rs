use hpn_fs::io_error::{is_no_space, is_permission_denied};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use hpn_oci::Digest;

/// What can go wrong writing or reading an archive. Messages name the
/// archive (and, when reading, the entry inside it) and say what the user can
/// do; the CLI shows them as is.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A filesystem operation failed. The OS error is part of the message (not
    /// a `source`) so a printed error chain does not repeat it.
    #[error("{}", IoMessage { action, path, error })]
    Io {
        /// What was being done, as a verb phrase (`create archive`).
        action: String,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },

    /// Writing to a stream (stdout, a pipe, a FIFO, a device) failed part-way:
    /// what went out cannot be taken back.
    #[error("{}; what was written to {} is an incomplete archive", IoMessage { action, path, error }, .path.display())]
    StreamCut {
        /// What was being done, as a verb phrase (`write archive`).
        action: String,
        /// The stream, as the user named it.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },

    /// The target cannot hold an archive (a directory, no file name).
    #[error("cannot write an archive to {}: {reason}", .path.display())]
    InvalidPath {
        /// The target asked for.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A blob streamed in hashes to another digest than the one promised;
    /// the archive is now [`Broken`](ArchiveError::Broken).

    #[error(
        "blob content {actual} does not match the expected digest {expected}; the source sent corrupt or different data"
    )]
    DigestMismatch {
        /// The digest the blob was added under.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },

    /// A blob streamed in is longer or shorter than promised.

    #[error(
        "blob {digest} should be {expected} bytes but {actual} arrived; the source sent truncated or different data"
    )]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size promised.
        expected: u64,
        /// The bytes that arrived.
        actual: u64,
    },

    /// `finish` found an image naming a blob that was never added: the
    /// caller's bug, caught before a broken archive gets a final name.

    #[error("{image}: its {role} {digest} was not added to the archive (a bug in the caller; no archive was written)")]
    MissingBlob {
        /// The image's name.
        image: String,
        /// What the blob is to it (`manifest`, `config`, `layer`).
        role: &'static str,
        /// The blob.
        digest: Digest,
    },

    /// An earlier failure stopped mid-entry, so the tar stream cannot be
    /// continued; the writer refuses further use.

    #[error("an earlier error left an entry of {} half-written; start the archive again", .path.display())]
    Broken {
        /// The archive being written.
        path: PathBuf,
    },

    /// A volume size too small for even one volume's fixed entries (the
    /// bill of contents, index.json, manifest.json) and a block of data.
    #[error(
        "cannot split {} into volumes of {limit} bytes: each volume needs {needed} bytes for its tar headers and its lists of contents alone; choose a larger volume size",
        .path.display()
    )]
    VolumeSizeTooSmall {
        /// The archive asked for.
        path: PathBuf,
        /// The volume size asked for.
        limit: u64,
        /// What one volume needs at least.
        needed: u64,
    },

    /// A compressed volume came out larger than the volume size (its content
    /// grew under compression beyond the room the plan leaves for that).
    #[error(
        "volume {} is {size} bytes, over the volume size of {limit}: its content does not compress; write the volumes uncompressed or choose a larger size",
        .path.display()
    )]
    VolumeTooLarge {
        /// The volume.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The volume size asked for.
        limit: u64,
    },

    /// The same volume of a set was given twice.
    #[error("{} is volume {volume} of set {set} again, as {} is; it was left out", .path.display(), .first.display())]
    DuplicateVolume {
        /// The volume left out.
        path: PathBuf,
        /// The file of the same volume read first.
        first: PathBuf,
        /// Its number.
        volume: u32,
        /// The set.
        set: String,
    },

    /// An image of a set of volumes needs volumes that were not given.
    #[error(
        "image {image} of {} needs volumes that were not given: {}; give every volume it needs in the same run (nothing of it was loaded)",
        .archive.display(),
        .missing.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    MissingVolumes {
        /// The volumes given.
        archive: PathBuf,
        /// The image.
        image: String,
        /// The missing volumes' file names.
        missing: Vec<PathBuf>,
    },

    /// The input is not a tar, nor a compressed tar, nor a layout directory,
    /// or holds no image.

    // Reading. Each names the archive and, where there is one, the entry.
    #[error("{} is not an image archive: {reason}", .path.display())]
    NotAnArchive {
        /// The input.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },

    /// The tar or its compressed stream ends early or fails to decode.

    #[error("{} is truncated or corrupt: {detail}; was the file cut short by an interrupted download or copy?", .path.display())]
    Truncated {
        /// The archive.
        path: PathBuf,
        /// Where it ended, or what failed to decode.
        detail: String,
    },

    /// An entry hpn refuses to read: an unsafe name (`..`, absolute, NUL), a
    /// link leading outside the archive, a duplicate with other content, an
    /// entry type that is not a plain file.
    #[error("{}: refusing entry {entry:?}: {reason}", .path.display())]
    BadEntry {
        /// The archive.
        path: PathBuf,
        /// The entry's name as written in the tar.
        entry: String,
        /// Why it is refused.
        reason: String,
    },

    /// A metadata file names an entry the archive lacks.

    #[error("{}: {referrer} names {entry:?}, which the archive does not contain", .path.display())]
    MissingEntry {
        /// The archive.
        path: PathBuf,
        /// The missing entry.
        entry: String,
        /// What names it (`manifest.json`, an image).
        referrer: String,
    },

    /// A manifest or index names a blob that is not in `blobs/sha256/`.

    #[error("{}: blob {digest} ({referrer}) is not in the archive", .path.display())]
    BlobNotFound {
        /// The archive.
        path: PathBuf,
        /// The missing blob.
        digest: Digest,
        /// What names it.
        referrer: String,
    },

    /// `manifest.json`, `index.json`, `repositories` or a manifest is not the
    /// JSON it should be.

    #[error("{}: {entry} is not valid: {reason}", .path.display())]
    InvalidMetadata {
        /// The archive.
        path: PathBuf,
        /// The entry.
        entry: String,
        /// The parser's complaint.
        reason: String,
    },

    /// A file hpn would read into memory is over its limit: refused before
    /// it is read.

    #[error(
        "{}: {entry} is {size} bytes, more than the {limit} bytes hpn reads into memory for it; the archive is not one hpn can read",
        .path.display()
    )]
    TooLarge {
        /// The archive.
        path: PathBuf,
        /// The entry.
        entry: String,
        /// Its size.
        size: u64,
        /// The limit (see `hpn_oci::limits`).
        limit: u64,
    },

    /// A blob's content does not hash to the digest it is named or listed by.

    #[error("{}: {entry} should have digest {expected} but its content has {actual}; the archive is corrupt", .path.display())]
    CorruptBlob {
        /// The archive.
        path: PathBuf,
        /// The entry holding the blob.
        entry: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest of its content.
        actual: Digest,
    },

    /// An uncompressed layer is not the DiffID its image config lists.

    #[error(
        "{}: layer {entry} of image {image} is uncompressed and has DiffID {actual}, but the image config lists {expected} at its position; the archive is corrupt or was assembled wrongly",
        .path.display()
    )]
    DiffIdMismatch {
        /// The archive.
        path: PathBuf,
        /// The layer's entry.
        entry: String,
        /// The image's name.
        image: String,
        /// The DiffID the config lists.
        expected: Digest,
        /// The layer's sha256.
        actual: Digest,
    },
}

impl ArchiveError {
    pub(crate) fn io(action: impl Into<String>, path: impl Into<PathBuf>, error: io::Error) -> Self {
        Self::Io { action: action.into(), path: path.into(), error }
    }

    /// True when the disk (or quota) is full.
    pub fn is_no_space(&self) -> bool {
        self.io_error().is_some_and(is_no_space)
    }

    /// True when the OS refused access (permissions, read-only filesystem).
    pub fn is_permission_denied(&self) -> bool {
        self.io_error().is_some_and(is_permission_denied)
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
                | Self::DuplicateVolume { .. }
                | Self::MissingVolumes { .. }
        )
    }

    /// The underlying OS error, for callers that classify failures.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::Io { error, .. } | Self::StreamCut { error, .. } => Some(error),
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
