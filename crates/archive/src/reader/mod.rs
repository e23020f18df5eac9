//! Reads the image archives users already have: Docker ≤24 `docker save`,
//! Docker 25+ and hpn hybrid archives, skopeo `docker-archive:`, crane
//! tarballs, `oci-archive:` tars and OCI layout directories, any tar of them
//! gzip- or zstd-compressed as a whole, from a file or from stdin.
//!
//! A tar is indexed once (entry name → data offset and size) and blobs are
//! then read with positioned reads (`pread`) straight from it: nothing is
//! extracted, so reading a 10 GB archive needs no 10 GB of scratch space. A
//! compressed archive (recognised by its magic bytes, not its name) or stdin
//! cannot be read at offsets, so it is first copied, decompressed, into an
//! unnamed temp file (see [`ArchiveReader::open`] for where) which is indexed
//! the same way.

mod index;
mod layout;
mod source;
mod tar_index;
mod verify;
mod volume_set;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hpn_oci::{Digest, RawManifest, Sha256Hasher};

use crate::error::ArchiveError;
use crate::format::BillOfContents;
use crate::writer::ArchiveCompression;
use index::{FileEntry, Location};
use source::Storage;
pub use verify::{Problem, Verification};
pub use volume_set::IncompleteImage;
use volume_set::{JoinedSet, Span};

/// The largest manifest.json, index.json, repositories, manifest or config
/// the reader takes into memory ([`hpn_oci::limits::ARCHIVE_METADATA`]).
/// Real ones are a few KB; the limit keeps a hostile archive from making hpn
/// allocate gigabytes.
pub const METADATA_LIMIT: u64 = hpn_oci::limits::ARCHIVE_METADATA;

/// An opened archive: its images, and its blobs by digest.
///
/// `Send + Sync`: reads are positioned (`pread`), so many threads can stream
/// blobs from one reader at once. Dropping it closes (and so deletes) any
/// temp copy.
pub struct ArchiveReader {
    path: PathBuf,
    compression: ArchiveCompression,
    storage: Storage,
    blobs: HashMap<Digest, Blob>,
    images: Vec<ArchivedImage>,
    /// The bill of contents as stored, when there is one.
    bill: Option<Vec<u8>>,
    /// The bill's signature as stored, when there is one.
    bill_signature: Option<Vec<u8>>,
    /// Parts of blobs cut across volumes, by entry name.
    parts: HashMap<String, FileEntry>,
    /// Set when this reader joins the volumes of a set.
    set: Option<Box<JoinedSet>>,
}

/// One image of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedImage {
    /// Every name the archive gives the image, as written there (not
    /// normalized; parse them with `hpn_oci::Reference`), without duplicates,
    /// in this order: index.json `io.containerd.image.name`, else its
    /// `org.opencontainers.image.ref.name` (Docker and containerd put only the
    /// tag there next to the full name, so it is left out when the full name
    /// is present; alone, as skopeo writes it, it may be just a tag such as
    /// `1.0`); manifest.json `RepoTags` (Docker's familiar form,
    /// `nginx:latest`); then legacy `repositories` entries not already listed.
    /// Empty for an untagged image.
    pub names: Vec<String>,
    /// The top-level manifest or index. Read from `blobs/` (original bytes,
    /// digest preserved) whenever the archive has an OCI side; synthesized for
    /// docker-only archives (see [`ArchivedImage::synthesized`]).
    pub manifest: RawManifest,
    /// True when the archive held no registry manifest for the image (Docker
    /// ≤24 `docker save`, skopeo docker-archive, crane tarball) and `manifest`
    /// was made up from manifest.json: a Docker schema2 manifest (an OCI one if
    /// a layer is zstd, which Docker's types cannot say) listing the config
    /// and the layer files as they are in the archive. Compact JSON with a
    /// fixed field order, so the same archive always gives the same digest.
    pub synthesized: bool,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
enum Blob {
    Entry(FileEntry),
    /// A synthesized manifest.
    Memory(Arc<[u8]>),
    /// In the volumes of a set: the whole blob in one, or its parts in order.
    Spans(Arc<[Span]>),
}

impl fmt::Debug for ArchiveReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("path", &self.path)
            .field("compression", &self.compression)
            .field("storage", &self.storage)
            .field("blobs", &self.blobs.len())
            .field("images", &self.images)
            .finish()
    }
}

impl ArchiveReader {
    /// Opens an archive file or an OCI layout directory and reads its
    /// images.
    ///
    /// - A plain tar is read in place.
    /// - A tar compressed as a whole (gzip or zstd, detected by magic bytes)
    ///   is decompressed into an unnamed temp file in `std::env::temp_dir()`
    ///   (`$TMPDIR`, else `/tmp`), which needs room for the whole tar and is
    ///   gone when the reader is dropped or the process dies. Use
    ///   [`ArchiveReader::open_with_temp_dir`] to put it elsewhere. The same
    ///   happens to anything that is not a regular file (a FIFO, `/dev/stdin`).
    /// - Docker-only archives (no OCI `index.json`) carry no digests for
    ///   their layer files, so every layer and config file is hashed once here
    ///   (sha256, streamed in 1 MiB chunks, on up to 4 threads): opening such
    ///   an archive reads it all once. Archives with an OCI side store blobs
    ///   as `blobs/sha256/<hex>` and are not hashed at open.
    /// - Uncompressed layers listed in manifest.json are checked against the
    ///   config's `rootfs.diff_ids` (their sha256 *is* their DiffID). The DiffID
    ///   of a compressed layer is left to the caller, who decompresses it anyway.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        Self::open_with_temp_dir(path, &std::env::temp_dir())
    }

    /// [`ArchiveReader::open`], with any temp copy made in `temp_dir`.
    pub fn open_with_temp_dir(path: &Path, temp_dir: &Path) -> Result<Self, ArchiveError> {
        let opened = source::open_path(path, temp_dir)?;
        Self::from_opened(path.to_owned(), opened)
    }

    /// Reads an archive (plain, gzip or zstd tar) from standard input. Stdin
    /// cannot be read at offsets, so it is copied (decompressed) into an
    /// unnamed temp file in `std::env::temp_dir()` first. [`ArchiveReader::path`]
    /// is then `<stdin>`.
    pub fn open_stdin() -> Result<Self, ArchiveError> {
        Self::open_stdin_with_temp_dir(&std::env::temp_dir())
    }

    /// [`ArchiveReader::open_stdin`], with the temp copy made in `temp_dir`.
    pub fn open_stdin_with_temp_dir(temp_dir: &Path) -> Result<Self, ArchiveError> {
        Self::open_reader(io::stdin().lock(), Path::new("<stdin>"), temp_dir)
    }

    /// Reads an archive from any byte stream (spooled to a temp file in
    /// `temp_dir` like stdin); `label` names it in messages and [`ArchiveReader::path`].
    pub fn open_reader(reader: impl Read, label: &Path, temp_dir: &Path) -> Result<Self, ArchiveError> {
        let opened = source::spool(reader, label, temp_dir)?;
        Self::from_opened(label.to_owned(), opened)
    }

    fn from_opened(path: PathBuf, opened: source::Opened) -> Result<Self, ArchiveError> {
        let contents = layout::read_contents(&path, &opened.storage, &opened.index)?;
        Ok(Self {
            path,
            compression: opened.compression,
            storage: opened.storage,
            blobs: contents.blobs,
            images: contents.images,
            bill: contents.bill,
            bill_signature: contents.bill_signature,
            parts: contents.parts,
            set: None,
        })
    }

    /// The archive as the caller named it (`<stdin>` for stdin).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the archive was compressed as a whole.
    pub fn compression(&self) -> ArchiveCompression {
        self.compression
    }

    /// Every image in the archive, each with every name it carries, in
    /// archive order (index.json first, then docker-only manifest.json entries).
    pub fn images(&self) -> &[ArchivedImage] {
        &self.images
    }

    /// The archive's bill of contents ([`crate::BILL_OF_CONTENTS`]), if it has
    /// one: hpn writes one into every archive. An error says why it cannot be read.
    pub fn bill_of_contents(&self) -> Option<Result<BillOfContents, ArchiveError>> {
        self.bill.as_ref().map(|bytes| {
            serde_json::from_slice::<BillOfContents>(bytes).map_err(|error| ArchiveError::InvalidMetadata {
                path: self.path.clone(),
                entry: crate::format::BILL_OF_CONTENTS.to_owned(),
                reason: error.to_string(),
            })
        })
    }

    /// Checks the signature beside the bill of contents
    /// ([`crate::BILL_SIGNATURE`]) with `key`: an archive without a bill or
    /// without a signature fails too, saying which.
    pub fn check_bill_signature(&self, key: &crate::BillVerifier) -> Result<(), String> {
        let Some(bill) = &self.bill else {
            return Err(format!("has no bill of contents ({}) to check", crate::BILL_OF_CONTENTS));
        };
        let Some(signature) = &self.bill_signature else {
            return Err(format!("its bill of contents is not signed (no {})", crate::BILL_SIGNATURE));
        };
        key.verify(bill, signature)
    }

    /// A blob's bytes as a stream over the archive entry; `None` if the
    /// archive has no such blob.
    ///
    /// Not verified: the caller hashes while it streams (as it must anyway to
    /// write the blob somewhere) and checks the digest at the end. Use
    /// [`ArchiveReader::read_blob`] for small blobs that must be checked first.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, ArchiveError> {
        match self.blobs.get(digest) {
            None => Ok(None),
            Some(blob) => BlobReader::open(&self.path, &self.storage, blob).map(Some),
        }
    }

    /// Every blob the archive carries as a file (or, for a set of volumes,
    /// in parts across them), with its size, in no particular order
    /// (synthesized manifests, which are only in memory, are left out): what
    /// a bundle without a bill of contents holds.
    pub fn stored_blobs(&self) -> impl Iterator<Item = (&Digest, u64)> {
        self.blobs.iter().filter_map(|(digest, blob)| match blob {
            Blob::Memory(_) => None,
            Blob::Entry(_) | Blob::Spans(_) => Some((digest, blob.size())),
        })
    }

    /// The size of a blob, if the archive has it.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.blobs.get(digest).map(Blob::size)
    }

    /// Whether the archive has the blob.
    pub fn contains_blob(&self, digest: &Digest) -> bool {
        self.blobs.contains_key(digest)
    }

    /// Reads a small blob (a manifest or config) whole and checks it against
    /// its digest. Errors if the blob is missing, is larger than `limit`
    /// (checked before reading anything), or does not match.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        let blob = self.blobs.get(digest).ok_or_else(|| ArchiveError::BlobNotFound {
            path: self.path.clone(),
            digest: digest.clone(),
            referrer: "requested".to_owned(),
        })?;
        read_verified(&self.path, &self.storage, blob, digest, limit)
    }
}

impl Blob {
    fn size(&self) -> u64 {
        match self {
            Self::Entry(entry) => entry.size,
            Self::Memory(bytes) => bytes.len() as u64,
            Self::Spans(spans) => spans.iter().map(|span| span.size).sum(),
        }
    }

    fn name(&self, digest: &Digest) -> String {
        match self {
            Self::Entry(entry) => entry.name.clone(),
            Self::Memory(_) => format!("synthesized manifest {digest}"),
            Self::Spans(spans) => match &spans[..] {
                [span] => format!("{} of {}", span.entry, span.archive.display()),
                spans => format!("blob {digest} in {} parts", spans.len()),
            },
        }
    }
}

/// Reads a blob whole, refusing one over `limit` before reading it, and
/// checks its digest.
fn read_verified(
    archive: &Path,
    storage: &Storage,
    blob: &Blob,
    digest: &Digest,
    limit: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let bytes = read_whole(archive, storage, blob, &blob.name(digest), limit)?;
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(ArchiveError::CorruptBlob {
            path: archive.to_owned(),
            entry: blob.name(digest),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

fn read_whole(archive: &Path, storage: &Storage, blob: &Blob, name: &str, limit: u64) -> Result<Vec<u8>, ArchiveError> {
    let size = blob.size();
    if size > limit {
        return Err(ArchiveError::TooLarge { path: archive.to_owned(), entry: name.to_owned(), size, limit });
    }
    let mut reader = BlobReader::open(archive, storage, blob)?;
    let mut bytes = Vec::with_capacity(size as usize);
    reader.read_to_end(&mut bytes).map_err(|error| reader.error(error))?;
    Ok(bytes)
}

/// A blob's bytes, read from the archive entry on demand. Knows its size;
/// reads exactly that many bytes, and fails (rather than ending early) if the
/// file under it has shrunk.
pub struct BlobReader {
    source: BlobSource,
    size: u64,
    position: u64,
    archive: PathBuf,
    entry: String,
}

enum BlobSource {
    Tar {
        file: Arc<File>,
        offset: u64,
    },
    File(File),
    Memory(Arc<[u8]>),
    /// Parts across volumes, each hashed as it is read.
    Spans {
        spans: Arc<[Span]>,
        current: usize,
        within: u64,
        hasher: Sha256Hasher,
    },
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("archive", &self.archive)
            .field("entry", &self.entry)
            .field("size", &self.size)
            .field("position", &self.position)
            .finish()
    }
}

impl BlobReader {
    fn open(archive: &Path, storage: &Storage, blob: &Blob) -> Result<Self, ArchiveError> {
        let (source, size, entry) = match blob {
            Blob::Memory(bytes) => {
                (BlobSource::Memory(bytes.clone()), bytes.len() as u64, "synthesized manifest".into())
            }
            Blob::Entry(entry) => (open_entry(archive, storage, entry)?, entry.size, entry.name.clone()),
            Blob::Spans(spans) => match &spans[..] {
                // A whole blob in one volume is read like any entry.
                [Span { file, offset, size, part_digest: None, archive, entry }] => {
                    return Ok(Self {
                        source: BlobSource::Tar { file: Arc::clone(file), offset: *offset },
                        size: *size,
                        position: 0,
                        archive: archive.clone(),
                        entry: entry.clone(),
                    });
                }
                _ => (
                    BlobSource::Spans { spans: Arc::clone(spans), current: 0, within: 0, hasher: Sha256Hasher::new() },
                    blob.size(),
                    format!("a blob in {} parts", spans.len()),
                ),
            },
        };
        Ok(Self { source, size, position: 0, archive: archive.to_owned(), entry })
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.size - self.position
    }

    /// The open file the blob's bytes lie in and the offset of its first
    /// byte there, for callers that send it with positioned reads or
    /// `sendfile`; `None` for a synthesized manifest, which is only in memory.
    /// Reading through the file does not move this reader.
    pub fn file_region(&self) -> Option<(&File, u64)> {
        match &self.source {
            BlobSource::Tar { file, offset } => Some((file, *offset)),
            BlobSource::File(file) => Some((file, 0)),
            BlobSource::Memory(_) | BlobSource::Spans { .. } => None,
        }
    }

    /// An I/O error of this reader as an [`ArchiveError`] naming the archive
    /// and entry.
    pub fn error(&self, error: io::Error) -> ArchiveError {
        ArchiveError::io(format!("read {} from", self.entry), &self.archive, error)
    }
}

fn open_entry(archive: &Path, storage: &Storage, entry: &FileEntry) -> Result<BlobSource, ArchiveError> {
    match (&entry.location, storage) {
        (Location::Tar { offset }, Storage::Tar(file)) => Ok(BlobSource::Tar { file: file.clone(), offset: *offset }),
        (Location::File { path, dev, ino }, _) => {
            let file = File::open(path).map_err(|error| ArchiveError::io("open", path, error))?;
            let metadata = file.metadata().map_err(|error| ArchiveError::io("inspect", path, error))?;
            // Opening follows symlinks; a file replaced (by a symlink or
            // anything else) since the layout was indexed is refused here.
            if metadata.dev() != *dev || metadata.ino() != *ino || !metadata.is_file() {
                return Err(ArchiveError::BadEntry {
                    path: archive.to_owned(),
                    entry: entry.name.clone(),
                    reason: "it was replaced after the layout was opened".to_owned(),
                });
            }
            Ok(BlobSource::File(file))
        }
        (Location::Tar { .. }, Storage::Dir) => unreachable!("tar locations only come from tar storage"),
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.size - self.position;
        if remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let buf = &mut buf[..want];
        let read = match &mut self.source {
            BlobSource::Tar { file, offset } => file.read_at(buf, *offset + self.position)?,
            BlobSource::File(file) => file.read(buf)?,
            BlobSource::Memory(bytes) => {
                let start = self.position as usize;
                buf.copy_from_slice(&bytes[start..start + want]);
                want
            }
            BlobSource::Spans { spans, current, within, hasher } => read_spans(spans, current, within, hasher, buf)?,
        };
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} ended after {} of its {} bytes", self.entry, self.position, self.size),
            ));
        }
        self.position += read as u64;
        Ok(read)
    }
}

/// Reads the next bytes of a blob in parts, checking each part's sha256
/// once its last byte is read: a corrupt part fails there, naming its
/// volume and entry, before a byte of the next part goes out.
fn read_spans(
    spans: &[Span],
    current: &mut usize,
    within: &mut u64,
    hasher: &mut Sha256Hasher,
    buf: &mut [u8],
) -> io::Result<usize> {
    let Some(span) = spans.get(*current) else { return Ok(0) };
    let want = buf.len().min(usize::try_from(span.size - *within).unwrap_or(usize::MAX));
    let read = span.file.read_at(&mut buf[..want], span.offset + *within)?;
    if read == 0 {
        return Ok(0);
    }
    hasher.update(&buf[..read]);
    *within += read as u64;
    if *within == span.size {
        let actual = std::mem::take(hasher).finish();
        if let Some(expected) = span.part_digest.as_ref().filter(|expected| **expected != actual) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} of {} should have digest {expected} but its content has {actual}: the volume is corrupt",
                    span.entry,
                    span.archive.display()
                ),
            ));
        }
        *current += 1;
        *within = 0;
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_and_blob_reader_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_send<T: Send>() {}
        assert_send_sync::<ArchiveReader>();
        assert_send::<BlobReader>();
    }
}
