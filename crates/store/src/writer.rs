use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

use hpn_fs::{Dir, Durability};
use hpn_oci::{Digest, Sha256Hasher};

use crate::error::StoreError;
use crate::temp;
use crate::verified::VerifiedRecords;

/// Big enough that a stream of small network chunks becomes few syscalls,
/// small enough to not matter with many concurrent downloads.
const BUFFER_SIZE: usize = 256 * 1024;

/// A blob being written into the store. Bytes go to a locked temp file in
/// `blobs/sha256/` and are hashed on the way; [`BlobWriter::commit`] renames
/// the file to its final name only if size and digest match (a blob made in
/// the store, an uncompressed copy of a layer, is named by what it hashes
/// to). Dropping the writer without committing removes the temp file.
pub struct BlobWriter {
    file: File,
    /// Our own buffer rather than a BufWriter: dropping an abandoned writer
    /// must not flush its tail into a file that is being thrown away.
    buffer: Vec<u8>,
    blobs_dir: Arc<Dir>,
    temp_name: String,
    verified: Arc<VerifiedRecords>,
    hasher: Sha256Hasher,
    /// The digest and (if known) size the blob must have; `None` for a blob
    /// named by its content when it is committed.
    expected: Option<(Digest, Option<u64>)>,
    durability: Durability,
    /// Set once the temp file has been renamed away; Drop then has nothing to do.
    committed: bool,
    /// A write failed (disk full, stream too long): the temp file no longer
    /// matches what was hashed, so commit() must refuse even if the caller
    /// ignored the error.
    failed: Option<io::ErrorKind>,
    /// Bytes the caller tried to write, including any refused for overflowing
    /// the expected size; reported by SizeMismatch.
    offered: u64,
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("expected", &self.expected)
            .field("bytes_written", &self.hasher.bytes())
            .field("temp_path", &self.blobs_dir.join(&self.temp_name))
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    pub(crate) fn new(
        blobs_dir: Arc<Dir>,
        verified: Arc<VerifiedRecords>,
        expected: Option<(&Digest, Option<u64>)>,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let (file, temp_name) = temp::create_locked(&blobs_dir)?;
        Ok(Self {
            file,
            buffer: Vec::with_capacity(BUFFER_SIZE),
            blobs_dir,
            temp_name,
            verified,
            hasher: Sha256Hasher::new(),
            expected: expected.map(|(digest, size)| (digest.clone(), size)),
            durability,
            committed: false,
            failed: None,
            offered: 0,
        })
    }

    /// Bytes written so far, for progress reports.
    pub fn bytes_written(&self) -> u64 {
        self.hasher.bytes()
    }

    /// The digest this writer was opened for; `None` for a blob named by its content.
    pub fn digest(&self) -> Option<&Digest> {
        self.expected.as_ref().map(|(digest, _)| digest)
    }

    fn expected_size(&self) -> Option<(&Digest, u64)> {
        self.expected.as_ref().and_then(|(digest, size)| Some((digest, (*size)?)))
    }

    /// Makes the blob visible under its digest if what was written matches.
    /// On any error the temp file is removed (by Drop) and nothing appears.
    pub fn commit(self) -> Result<(), StoreError> {
        self.commit_named().map(drop)
    }

    /// [`BlobWriter::commit`], returning the digest the blob is stored under:
    /// the expected one, or for a blob named by its content what it hashed to.
    pub(crate) fn commit_named(mut self) -> Result<Digest, StoreError> {
        if let Some((digest, expected)) = self.expected_size()
            && self.offered > expected
        {
            return Err(StoreError::SizeMismatch { digest: digest.clone(), expected, actual: self.offered });
        }
        if let Some(kind) = self.failed {
            let error = io::Error::new(kind, "an earlier write to this blob failed");
            return Err(StoreError::io("write blob", self.temp_path(), error));
        }
        let actual_size = self.hasher.bytes();
        if let Some((digest, expected)) = self.expected_size()
            && expected != actual_size
        {
            return Err(StoreError::SizeMismatch { digest: digest.clone(), expected, actual: actual_size });
        }
        let actual = std::mem::take(&mut self.hasher).finish();
        if let Some((expected, _)) = &self.expected
            && actual != *expected
        {
            return Err(StoreError::DigestMismatch { expected: expected.clone(), actual });
        }
        self.flush_buffer().map_err(|error| StoreError::io("write blob", self.temp_path(), error))?;
        self.durability.sync_file(&self.file).map_err(|error| StoreError::io("sync blob", self.temp_path(), error))?;
        // Always renamed over whatever holds the name: a concurrent writer's
        // identical copy, or a damaged one (corrupt, cut short, a link, a
        // FIFO) that the caller's check counted as missing. The rename
        // replaces it atomically and never writes through a link.
        let final_name = actual.hex();
        self.blobs_dir
            .rename(&self.temp_name, final_name)
            .map_err(|error| StoreError::io("move blob into place at", self.blobs_dir.join(final_name), error))?;
        self.committed = true;
        // Just hashed on the way in: the stat after the rename is a verified one.
        self.verified.record(&actual, &self.file);
        temp::sync_dir(&self.blobs_dir, self.durability)?;
        Ok(actual)
    }
}

impl BlobWriter {
    fn temp_path(&self) -> std::path::PathBuf {
        self.blobs_dir.join(&self.temp_name)
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        let result = self.file.write_all(&self.buffer);
        self.buffer.clear();
        self.note_failure(result)
    }

    fn note_failure(&mut self, result: io::Result<()>) -> io::Result<()> {
        if let Err(error) = &result {
            self.failed.get_or_insert(error.kind());
        }
        result
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "an earlier write to this blob failed"));
        }
        self.offered += buf.len() as u64;
        // Refuse an oversized stream as soon as it overflows, instead of
        // filling the disk with a blob commit() would reject anyway.
        if let Some((digest, expected)) = self.expected_size()
            && self.offered > expected
        {
            let message = format!("blob {digest} is longer than its expected {expected} bytes");
            self.failed = Some(io::ErrorKind::InvalidData);
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        if self.buffer.len() + buf.len() > self.buffer.capacity() {
            self.flush_buffer()?;
        }
        if buf.len() >= self.buffer.capacity() {
            let result = self.file.write_all(buf);
            self.note_failure(result)?;
        } else {
            self.buffer.extend_from_slice(buf);
        }
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buffer()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed
            && let Err(error) = self.blobs_dir.remove_file(&self.temp_name)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.temp_path().display(), %error, "could not remove temp file");
        }
    }
}
