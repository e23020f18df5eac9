//! Writes the Docker 25+ "hybrid" archive: an OCI image layout (oci-layout,
//! index.json, blobs/sha256/) plus Docker's manifest.json and repositories,
//! all pointing at the same original blobs. `docker load`, `podman load` and
//! `skopeo` (`oci-archive:` and `docker-archive:`) all read it.
//!
//! The tar is streamed front to back: blobs are appended as they become
//! available (from the store, from memory, or while they download), the JSON
//! files that describe them last. It is written to a hidden temp file beside
//! the target and renamed over it only once complete, unless the target is
//! not a regular file: stdout (`-`), a pipe, a FIFO or a character device is
//! written straight through, as `docker save` writes to a pipe, because
//! replacing it with a file would break what the user pointed at (as root,
//! `/dev/null` itself).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use hpn_fs::Durability;
use hpn_oci::{Descriptor, Digest, Sha256Hasher, annotation, media_type};
use serde::Serialize;

use crate::created::CreationTime;
use crate::error::ArchiveError;
use crate::format::{self, BaseBlob, BillBlob, BillImage, BillOfContents, ManifestItem, Repositories};
use crate::signing::BillSigner;
use crate::tar_format::{self, Kind, ZEROS};

/// Fewer syscalls for the many small header and JSON writes, and a good
/// chunk size for compressors.
const BUFFER_SIZE: usize = 256 * 1024;
/// zstd's default level: fast, and an archive of compressed layers gains
/// little from trying harder.
const ZSTD_LEVEL: i32 = 3;

/// Compression of the archive as a whole (the layers inside keep theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveCompression {
    /// A plain tar: blobs can be copied into it file to file.
    None,
    /// gzip level 1 (`.tar.gz`): the payload is mostly compressed already.
    Gzip,
    /// zstd level 3 on every core, with a frame checksum (`.tar.zst`); the
    /// same bytes whatever the number of cores.
    Zstd,
}

/// One saved image: an index.json entry, and a manifest.json entry if it has
/// a platform docker can load.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    /// The top manifest or index as it goes into index.json
    /// (mediaType/digest/size; the writer sets annotations).
    pub descriptor: Descriptor,
    /// Full reference for io.containerd.image.name, e.g.
    /// "127.0.0.1:5000/fixtures/app:1", "docker.io/library/nginx:latest" or a
    /// digest ref "host/repo@sha256:…".
    pub name: String,
    /// org.opencontainers.image.ref.name: the tag alone, as Docker writes it;
    /// None for an image pulled by digest.
    pub tag: Option<String>,
    /// The manifest.json entry (one platform): None if the image has no
    /// loadable platform.
    pub docker: Option<DockerImageEntry>,
}

/// An image's entry in Docker's `manifest.json`, which is what `docker load`
/// reads; the blobs it names must be added to the archive.
#[derive(Debug, Clone)]
pub struct DockerImageEntry {
    /// The image config blob.
    pub config: Digest,
    /// Docker familiar "name:tag" forms; empty for an image by digest (docker
    /// then loads it untagged).
    pub repo_tags: Vec<String>,
    /// The blobs manifest.json lists as Layers (`blobs/sha256/<hex>`), in
    /// order; may repeat a digest.
    pub layers: Vec<Digest>,
}

/// The output file, counting what reaches it: a stream has no size to ask
/// for afterwards.
struct CountedFile {
    file: File,
    written: u64,
}

impl CountedFile {
    /// Copies `source` to the file in the kernel (copy_file_range, sendfile
    /// or splice), never through a userspace buffer.
    fn copy_from(&mut self, source: &mut io::Take<File>) -> io::Result<u64> {
        let copied = io::copy(source, &mut self.file)?;
        self.written += copied;
        Ok(copied)
    }
}

impl CountedFile {
    /// Cuts the file back to its first `len` bytes and writes on from there.
    fn cut_back_to(&mut self, len: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        self.file.set_len(len)?;
        self.file.seek(SeekFrom::Start(len))?;
        self.written = len;
        Ok(())
    }
}

impl Write for CountedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Where tar bytes go: the file itself, or a compressor in front of it.
enum Sink {
    Plain(BufWriter<CountedFile>),
    Gzip(GzEncoder<BufWriter<CountedFile>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<CountedFile>>),
}

impl Sink {
    fn new(file: File, compression: ArchiveCompression) -> io::Result<Self> {
        let file = BufWriter::with_capacity(BUFFER_SIZE, CountedFile { file, written: 0 });
        Ok(match compression {
            ArchiveCompression::None => Self::Plain(file),
            // Level 1: the payload is mostly already-compressed layers, so
            // higher levels cost several times the CPU for a few bytes.
            ArchiveCompression::Gzip => Self::Gzip(GzEncoder::new(file, flate2::Compression::fast())),
            ArchiveCompression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(file, ZSTD_LEVEL)?;
                encoder.include_checksum(true)?;
                // Always libzstd's multithreaded mode, even with one worker: its output is the
                // same for any number of workers (and differs from the single-threaded mode's),
                // so machines with different core counts write the same archive.
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                encoder.multithread(workers)?;
                Self::Zstd(encoder)
            }
        })
    }

    /// The raw file, with everything buffered before it written out, when
    /// nothing sits between the tar stream and the file.
    fn plain_file(&mut self) -> io::Result<Option<&mut CountedFile>> {
        match self {
            Self::Plain(writer) => {
                writer.flush()?;
                Ok(Some(writer.get_mut()))
            }
            Self::Gzip(_) | Self::Zstd(_) => Ok(None),
        }
    }

    /// Ends the compressed stream and hands back the file.
    fn finish(self) -> io::Result<CountedFile> {
        let writer = match self {
            Self::Plain(writer) => writer,
            Self::Gzip(encoder) => encoder.finish()?,
            Self::Zstd(encoder) => encoder.finish()?,
        };
        writer.into_inner().map_err(io::IntoInnerError::into_error)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(writer) => writer.write(buf),
            Self::Gzip(writer) => writer.write(buf),
            Self::Zstd(writer) => writer.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(writer) => writer.write_all(buf),
            Self::Gzip(writer) => writer.write_all(buf),
            Self::Zstd(writer) => writer.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(writer) => writer.flush(),
            Self::Gzip(writer) => writer.flush(),
            Self::Zstd(writer) => writer.flush(),
        }
    }
}

/// Writes one archive. `Send`: it may move between blocking-pool threads.
/// Dropping it without [`ArchiveWriter::finish`] removes the temp file and
/// leaves `path` untouched; a streamed archive cannot be taken back, so that
/// is logged as a warning saying the output is incomplete.
pub struct ArchiveWriter {
    path: PathBuf,
    /// The temp file renamed over [`Self::rename_to`] on finish; empty once
    /// renamed, and for a stream.
    temp_path: PathBuf,
    /// The regular file the archive replaces: `path`, or what a symbolic
    /// link at `path` points to (the link is kept, as `cp` keeps it).
    rename_to: PathBuf,
    /// Written straight to a non-regular file (stdout, a pipe, a device).
    streamed: bool,
    /// The stream was finished: nothing to warn about on drop.
    finished: bool,
    /// `None` only after finish() took it.
    sink: Option<Sink>,
    compression: ArchiveCompression,
    durability: Durability,
    /// Every blob written, with its size.
    blobs: BTreeMap<Digest, u64>,
    images: Vec<ArchiveImage>,
    /// The entries of `images` that are attachments, by name, with the
    /// manifest each is attached to ([`ArchiveWriter::add_attachment`]).
    attachment_subjects: BTreeMap<String, Digest>,
    /// What the images need but the archive leaves to the far side.
    base_blobs: BTreeMap<Digest, BaseBlob>,
    /// The `oci-layout` entry, first in the tar, is written (before the
    /// first other entry, once the creation time is known).
    layout_written: bool,
    blob_dirs_written: bool,
    /// An entry was left half-written: the tar stream is unusable.
    broken: bool,
    /// Reused for copies that cannot go file to file.
    buffer: Vec<u8>,
    /// Bytes of tar written so far (before any compression): where the
    /// next entry starts.
    tar_offset: u64,
    /// Set by [`ArchiveWriter::create_volumes`]: this archive is the whole
    /// set, cut into volumes on finish.
    split: Option<crate::volumes::Split>,
    /// Where each blob's data starts in the tar, for cutting it into volumes.
    offsets: BTreeMap<Digest, u64>,
    /// The bill of contents of a volume of a set, written instead of this
    /// archive's own.
    volume_bill: Option<Vec<u8>>,
    /// Signs the bill, the signature written beside it.
    signer: Option<BillSigner>,
    /// The creation time: every entry's mtime (else 0) and the bill's `created`.
    created: Option<CreationTime>,
}

impl fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("path", &self.path)
            .field("temp_path", &self.temp_path)
            .field("streamed", &self.streamed)
            .field("compression", &self.compression)
            .field("blobs", &self.blobs.len())
            .field("images", &self.images.len())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// Whether `path` still names the open `file` (a sweep may have unlinked it).
fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(ours), Ok(named)) => ours.dev() == named.dev() && ours.ino() == named.ino(),
        _ => false,
    }
}

/// Removes the temp files of earlier writes of the same archive whose writer is gone (a killed
/// run): their lock died with the process. Those of a live writer are locked and kept.
fn remove_abandoned_temps(dir: &Path, prefix: &str, ours: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == ours || !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let Ok(file) = File::open(&path) else { continue };
        if file.try_lock().is_ok() {
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed an unfinished archive left by an interrupted run")
                }
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "cannot remove an abandoned temp archive")
                }
            }
        }
    }
}

/// What an output path is to the writer.
enum OutputTarget {
    /// Written straight through: stdout, a pipe, a FIFO, a character device.
    Stream(File),
    /// A regular file (or none yet) at this path, replaced by rename.
    Replace(PathBuf),
}

impl OutputTarget {
    fn of(path: &Path) -> Result<Self, ArchiveError> {
        use std::os::unix::fs::FileTypeExt;
        let invalid = |reason| ArchiveError::InvalidPath { path: path.to_owned(), reason };
        if path == Path::new("-") {
            return stdout_file().map(Self::Stream).map_err(|error| ArchiveError::io("write archive to", path, error));
        }
        if path.file_name().is_none() {
            return Err(invalid("it does not name a file"));
        }
        // metadata follows symbolic links, /dev/stdout's and /proc/self/fd's included.
        match fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => Err(invalid("it is a directory")),
            Ok(metadata) if metadata.file_type().is_block_device() => {
                Err(invalid("it is a block device; hpn does not write archives onto disks"))
            }
            Ok(metadata) if metadata.is_file() => {
                let is_link = fs::symlink_metadata(path).is_ok_and(|metadata| metadata.file_type().is_symlink());
                if !is_link {
                    return Ok(Self::Replace(path.to_owned()));
                }
                let target =
                    fs::canonicalize(path).map_err(|error| ArchiveError::io("resolve the link", path, error))?;
                Ok(Self::Replace(target))
            }
            Ok(_) => OpenOptions::new()
                .write(true)
                .open(path)
                .map(Self::Stream)
                .map_err(|error| ArchiveError::io("open for writing", path, error)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(invalid("it is a symbolic link to nothing; name the file it should create instead"));
                }
                Ok(Self::Replace(path.to_owned()))
            }
            Err(error) => Err(ArchiveError::io("look at", path, error)),
        }
    }
}

/// This process's stdout as a file of its own (a duplicate descriptor), so
/// the archive bypasses Rust's line-buffered stdout.
fn stdout_file() -> io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A locked hidden temp file beside `target`, for an archive asked for as
/// `asked` (named in errors); abandoned temps of the same archive are swept.
fn create_temp_beside(target: &Path, asked: &Path) -> Result<(File, PathBuf), ArchiveError> {
    let file_name = target.file_name().unwrap_or(target.as_os_str());
    let dir = parent_dir(target);
    let prefix = format!(".{}.hpn-tmp-", file_name.to_string_lossy());
    let (file, temp_path) = loop {
        let temp_path = dir.join(format!("{prefix}{}-{:08x}", std::process::id(), fastrand::u32(..)));
        let file = match OpenOptions::new().write(true).create_new(true).open(&temp_path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(ArchiveError::io("create a temp file for archive", asked, error)),
        };
        // Locked for as long as it is open, so another run can tell it is in use. A
        // filesystem without flock keeps every temp file (the sweep cannot tell).
        if file.lock().is_err() || still_named(&file, &temp_path) {
            break (file, temp_path);
        }
        // A concurrent sweep removed it between create and lock: start over.
    };
    remove_abandoned_temps(dir, &prefix, &temp_path);
    Ok((file, temp_path))
}

impl ArchiveWriter {
    /// Opens a hidden temp file beside `path` (the `oci-layout` entry goes
    /// in first, with the first other entry). Nothing appears under `path`
    /// until [`ArchiveWriter::finish`].
    ///
    /// `-` is stdout. A `path` that is not a regular file (a FIFO, a
    /// character device such as `/dev/null`, `/dev/stdout`) is opened and
    /// written straight through instead; a FIFO's open waits for a reader,
    /// so call this off async workers. A block device is refused.
    pub fn create(path: &Path, compression: ArchiveCompression) -> Result<Self, ArchiveError> {
        let target = OutputTarget::of(path)?;
        let (file, temp_path, rename_to, streamed) = match target {
            OutputTarget::Stream(file) => (file, PathBuf::new(), PathBuf::new(), true),
            OutputTarget::Replace(rename_to) => {
                let (file, temp_path) = create_temp_beside(&rename_to, path)?;
                (file, temp_path, rename_to, false)
            }
        };
        let sink = match Sink::new(file, compression) {
            Ok(sink) => sink,
            Err(error) => {
                if !streamed {
                    let _ = fs::remove_file(&temp_path);
                }
                return Err(ArchiveError::io("start compressing archive", path, error));
            }
        };
        Ok(Self {
            path: path.to_owned(),
            temp_path,
            rename_to,
            streamed,
            finished: false,
            sink: Some(sink),
            compression,
            durability: Durability::default(),
            blobs: BTreeMap::new(),
            images: Vec::new(),
            attachment_subjects: BTreeMap::new(),
            base_blobs: BTreeMap::new(),
            layout_written: false,
            blob_dirs_written: false,
            broken: false,
            buffer: Vec::new(),
            tar_offset: 0,
            split: None,
            offsets: BTreeMap::new(),
            volume_bill: None,
            signer: None,
            created: None,
        })
    }

    /// Starts a set of volumes of at most `volume_size` bytes each, written
    /// by [`ArchiveWriter::finish_volumes`] beside `path` as `NAME.001.tar`,
    /// `NAME.002.tar`, … (see [`crate::volume_path`]). The blobs first go
    /// into one hidden uncompressed temp archive beside `path` (room for the
    /// whole set is needed twice until the volumes are written), which is
    /// then cut: each image whose blobs fit in a volume lies whole in one,
    /// which lists it in its index.json and manifest.json, and a blob larger
    /// than a volume is cut into parts. Volumes need a file name, not a stream.
    pub fn create_volumes(
        path: &Path,
        compression: ArchiveCompression,
        volume_size: u64,
    ) -> Result<Self, ArchiveError> {
        if !matches!(OutputTarget::of(path)?, OutputTarget::Replace(_)) {
            return Err(ArchiveError::InvalidPath {
                path: path.to_owned(),
                reason: "volumes are files named after it; name a file, not a stream or a device",
            });
        }
        let mut writer = Self::create(path, ArchiveCompression::None)?;
        writer.split = Some(crate::volumes::Split { compression, volume_size });
        Ok(writer)
    }

    /// Whether [`ArchiveWriter::finish`] waits for the archive to be on the
    /// disk before it renames it into place; [`Durability::Buffered`] unless set.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Signs the bill of contents with `signer` ([`crate::BILL_SIGNATURE`]
    /// beside it; in every volume of a set, each volume's own bill).
    pub fn with_bill_signer(mut self, signer: Option<BillSigner>) -> Self {
        self.signer = signer;
        self
    }

    /// Records `created` as the archive's creation time: the mtime of every
    /// entry and the bill's `created`. Set it before adding anything.
    /// `None`: mtime 0 and no creation time, the default.
    pub fn with_creation_time(mut self, created: Option<CreationTime>) -> Self {
        self.created = created;
        self
    }

    /// Whether this writer was started by [`ArchiveWriter::create_volumes`]
    /// (finish it with [`ArchiveWriter::finish_volumes`]).
    pub fn is_volume_set(&self) -> bool {
        self.split.is_some()
    }

    /// The file the archive will be renamed to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the blob was already added, so a caller can skip fetching it.
    pub fn contains_blob(&self, digest: &Digest) -> bool {
        self.blobs.contains_key(digest)
    }

    /// Adds `blobs/sha256/<hex>` from a file (a store blob, already verified).
    /// Without outer compression the bytes go file to file in the kernel
    /// (copy_file_range/sendfile), never through a userspace buffer.
    pub fn add_blob_from_file(&mut self, digest: &Digest, path: &Path) -> Result<(), ArchiveError> {
        if self.blobs.contains_key(digest) {
            return Ok(());
        }
        let source_error = |action: &str, error| ArchiveError::io(format!("{action} blob {digest} from"), path, error);
        let file = File::open(path).map_err(|error| source_error("open", error))?;
        let size = file.metadata().map_err(|error| source_error("read the size of", error))?.len();
        self.begin_blob(digest, size)?;
        let copied =
            self.copy_in(&mut file.take(size), || format!("copy blob {digest} from {} into archive", path.display()))?;
        if copied != size {
            // The file shrank while we copied it.
            return Err(ArchiveError::SizeMismatch { digest: digest.clone(), expected: size, actual: copied });
        }
        self.end_blob(digest, size)
    }

    /// Copies `source` into the current entry: file to file in the kernel
    /// when nothing compresses, else through the reused buffer.
    fn copy_in(&mut self, source: &mut io::Take<File>, action: impl FnOnce() -> String) -> Result<u64, ArchiveError> {
        let buffer = &mut self.buffer;
        let sink = self.sink.as_mut().expect("the sink lives until finish()");
        let copied = (|| -> io::Result<u64> {
            match sink.plain_file()? {
                Some(target) => target.copy_from(source),
                None => copy_buffered(source, sink, buffer),
            }
        })()
        .map_err(|error| self.write_error(&action(), error))?;
        self.tar_offset += copied;
        Ok(copied)
    }

    /// Copies `size` bytes at `offset` of `tar` (another archive, whose
    /// blobs were verified as it was written) into the current entry.
    fn copy_range(&mut self, tar: &File, offset: u64, size: u64) -> Result<(), ArchiveError> {
        use std::io::{Seek, SeekFrom};
        let read_error =
            |error| ArchiveError::io(format!("read {size} bytes at offset {offset} of"), &self.path, error);
        let mut source = tar.try_clone().map_err(read_error)?;
        source.seek(SeekFrom::Start(offset)).map_err(read_error)?;
        let copied = self.copy_in(&mut source.take(size), || format!("copy {size} bytes into volume"))?;
        if copied != size {
            return Err(ArchiveError::Truncated {
                path: self.path.clone(),
                detail: format!("the set's temp archive ended {copied} bytes into an entry of {size}"),
            });
        }
        Ok(())
    }

    /// Adds blob `digest` of `size` bytes from `tar` at `offset`.
    pub(crate) fn add_blob_from_range(
        &mut self,
        digest: &Digest,
        tar: &File,
        offset: u64,
        size: u64,
    ) -> Result<(), ArchiveError> {
        if self.blobs.contains_key(digest) {
            return Ok(());
        }
        self.begin_blob(digest, size)?;
        self.copy_range(tar, offset, size)?;
        self.end_blob(digest, size)
    }

    /// Adds an entry `name` (a part of a blob cut across volumes) of `size`
    /// bytes from `tar` at `offset`.
    pub(crate) fn add_part_from_range(
        &mut self,
        name: &str,
        tar: &File,
        offset: u64,
        size: u64,
    ) -> Result<(), ArchiveError> {
        if self.broken {
            return Err(ArchiveError::Broken { path: self.path.clone() });
        }
        if !self.blob_dirs_written {
            self.write_blob_dirs()?;
        }
        let header = self.entry_header(name, size, Kind::File)?;
        self.broken = true;
        self.write_raw(&header)?;
        self.copy_range(tar, offset, size)?;
        self.write_raw(&ZEROS[..tar_format::padding(size)])?;
        self.broken = false;
        Ok(())
    }

    /// Sets the bill of contents this archive writes: a volume's, which
    /// describes its whole set.
    pub(crate) fn set_volume_bill(&mut self, bill: Vec<u8>) {
        self.volume_bill = Some(bill);
    }

    /// Adds a blob held in memory (manifests, configs).
    pub fn add_blob_bytes(&mut self, digest: &Digest, bytes: &[u8]) -> Result<(), ArchiveError> {
        if self.blobs.contains_key(digest) {
            return Ok(());
        }
        let actual = Digest::of(bytes);
        if actual != *digest {
            return Err(ArchiveError::DigestMismatch { expected: digest.clone(), actual });
        }
        self.begin_blob(digest, bytes.len() as u64)?;
        self.write_raw(bytes)?;
        self.end_blob(digest, bytes.len() as u64)
    }

    /// Streams a blob of known size from `reader` (e.g. a download), hashing
    /// it on the way. On a digest or size mismatch the archive is unusable:
    /// the caller drops the writer.
    pub fn add_blob_from_reader(
        &mut self,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(), ArchiveError> {
        if self.blobs.contains_key(digest) {
            return Ok(());
        }
        self.begin_blob(digest, size)?;
        let mut hasher = Sha256Hasher::new();
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.resize(BUFFER_SIZE, 0);
        let result = self.copy_counted(digest, size, reader, Some(&mut hasher), &mut buffer);
        self.buffer = buffer;
        result?;
        let actual = hasher.finish();
        if actual != *digest {
            return Err(ArchiveError::DigestMismatch { expected: digest.clone(), actual });
        }
        self.end_blob(digest, size)
    }

    /// Whether an entry can be taken back after it was written
    /// ([`ArchiveWriter::add_blob_checked_elsewhere`]): only a plain tar
    /// written into a file of its own, which can be cut back.
    pub fn can_take_back(&self) -> bool {
        !self.streamed && matches!(self.sink, Some(Sink::Plain(_)))
    }

    /// Streams a blob of `size` bytes from `reader` into the archive without
    /// hashing it, for a caller that checks the same bytes on their way
    /// elsewhere (a download teed into the store, whose writer hashes it):
    /// `check` is handed the reader once every byte is in. If it fails, or reading does,
    /// the entry is taken back (the archive cut back to where the entry
    /// began, as if it had never been added) and the error returned; the
    /// archive stays usable. Needs [`ArchiveWriter::can_take_back`].
    pub fn add_blob_checked_elsewhere<R: Read, E: From<ArchiveError>>(
        &mut self,
        digest: &Digest,
        size: u64,
        mut reader: R,
        check: impl FnOnce(R) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.can_take_back() {
            return Err(ArchiveError::InvalidPath {
                path: self.path.clone(),
                reason: "an entry of a compressed or streamed archive cannot be taken back",
            }
            .into());
        }
        if self.blobs.contains_key(digest) {
            return Err(
                ArchiveError::InvalidPath { path: self.path.clone(), reason: "it holds that blob already" }.into()
            );
        }
        if !self.blob_dirs_written {
            self.write_blob_dirs()?;
        }
        let entry_start = self.tar_offset;
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.resize(BUFFER_SIZE, 0);
        let copied = self
            .begin_blob(digest, size)
            .and_then(|()| self.copy_counted(digest, size, &mut reader, None, &mut buffer));
        self.buffer = buffer;
        match copied.map_err(E::from).and_then(|()| check(reader)) {
            Ok(()) => Ok(self.end_blob(digest, size)?),
            Err(error) => {
                self.take_back(digest, entry_start)?;
                Err(error)
            }
        }
    }

    /// Cuts the archive back to `entry_start`, where the entry of `digest` began.
    fn take_back(&mut self, digest: &Digest, entry_start: u64) -> Result<(), ArchiveError> {
        let Some(Sink::Plain(writer)) = self.sink.as_mut() else {
            return Err(ArchiveError::Broken { path: self.path.clone() });
        };
        // What is still buffered belongs to the entry being taken back.
        let result = writer.flush().and_then(|()| writer.get_mut().cut_back_to(entry_start));
        result.map_err(|error| ArchiveError::io("take back an unverified entry of", &self.path, error))?;
        self.tar_offset = entry_start;
        self.offsets.remove(digest);
        self.broken = false;
        Ok(())
    }

    /// Records a blob the archive's images need but that it does not carry,
    /// for the bill's `base_blobs`: a differential bundle's layers left to
    /// the bundle or store at the far side. Only a manifest.json entry must
    /// not name one (docker would fail on it), which `finish` checks.
    pub fn add_base_blob(&mut self, blob: BaseBlob) {
        self.base_blobs.entry(blob.digest.clone()).or_insert(blob);
    }

    /// Records an image for index.json / manifest.json / repositories. A
    /// second image of the same name replaces the first.
    pub fn add_image(&mut self, image: ArchiveImage) {
        match self.images.iter_mut().find(|existing| existing.name == image.name) {
            Some(existing) => *existing = image,
            None => self.images.push(image),
        }
    }

    /// Records an attachment of a saved image (a signature, SBOM or
    /// attestation manifest under its cosign tag, or the fallback index
    /// listing a manifest's OCI referrers) as an index.json entry named
    /// `attachment.name`, as the store keeps them, so that the relation is
    /// read from the layout alone; it never goes into manifest.json or
    /// `repositories` (its `docker` is ignored), so docker and podman load
    /// no extra image. The bill lists it with `subject`, the manifest it is
    /// attached to, and a set of volumes puts it in its image's volume
    /// where it fits. A second entry of the same name replaces the first.
    pub fn add_attachment(&mut self, attachment: ArchiveImage, subject: Digest) {
        self.attachment_subjects.insert(attachment.name.clone(), subject);
        self.add_image(ArchiveImage { docker: None, ..attachment });
    }

    /// Writes index.json, manifest.json and repositories, ends the tar and
    /// the compression, fsyncs if the writer is synced, and renames the archive into place. Returns
    /// its size in bytes.
    pub fn finish(mut self) -> Result<u64, ArchiveError> {
        if self.split.is_some() {
            return Err(ArchiveError::InvalidPath {
                path: self.path.clone(),
                reason: "it was started as a set of volumes; finish it with finish_volumes",
            });
        }
        if self.broken {
            return Err(ArchiveError::Broken { path: self.path.clone() });
        }
        self.check_images_complete()?;
        if !self.blob_dirs_written {
            self.write_blob_dirs()?;
        }
        let bill = match self.volume_bill.take() {
            Some(bill) => bill,
            None => self.bill_of_contents(),
        };
        self.write_entry(format::BILL_OF_CONTENTS, &bill)?;
        if let Some(signer) = &self.signer {
            let signature = signer.sign(&bill);
            self.write_entry(crate::BILL_SIGNATURE, &signature)?;
        }
        let index = index_json(&self.images);
        self.write_entry(format::INDEX_JSON, &index)?;
        let (manifest, repositories) = docker_json(&self.images);
        self.write_entry(format::MANIFEST_JSON, &manifest)?;
        if let Some(repositories) = repositories {
            self.write_entry(format::REPOSITORIES, &repositories)?;
        }
        // End of archive: two zero blocks.
        self.write_raw(&ZEROS)?;
        self.write_raw(&ZEROS)?;

        let sink = self.sink.take().expect("the sink lives until finish()");
        let output = sink.finish().map_err(|error| self.write_error("finish writing archive", error))?;
        let size = output.written;
        if self.streamed {
            // A pipe or a device has nothing to sync (fsync fails on a pipe);
            // stdout redirected to a file does.
            if output.file.metadata().is_ok_and(|metadata| metadata.is_file()) {
                self.durability.sync_file(&output.file).map_err(|error| self.write_error("sync archive", error))?;
            }
            self.finished = true;
            return Ok(size);
        }
        self.durability.sync_file(&output.file).map_err(|error| ArchiveError::io("sync archive", &self.path, error))?;
        drop(output);
        fs::rename(&self.temp_path, &self.rename_to)
            .map_err(|error| ArchiveError::io("move the finished archive into place at", &self.rename_to, error))?;
        // Renamed: nothing left for Drop to clean up.
        self.temp_path = PathBuf::new();
        let dir = parent_dir(&self.rename_to);
        self.durability.sync_dir(dir).map_err(|error| ArchiveError::io("sync directory", dir, error))?;
        Ok(size)
    }

    /// Cuts the set started by [`ArchiveWriter::create_volumes`] into its
    /// volumes, each written to a temp name and renamed when complete, and
    /// removes the temp archive. Returns each volume's path and size, in
    /// volume order. On an error no volume of the set is left behind.
    pub fn finish_volumes(mut self) -> Result<Vec<(PathBuf, u64)>, ArchiveError> {
        let Some(split) = self.split.take() else {
            return Err(ArchiveError::InvalidPath {
                path: self.path.clone(),
                reason: "it was not started as a set of volumes; finish it with finish",
            });
        };
        if self.broken {
            return Err(ArchiveError::Broken { path: self.path.clone() });
        }
        self.check_images_complete()?;
        let sink = self.sink.take().expect("the sink lives until finish()");
        sink.finish().map_err(|error| ArchiveError::io("write the set's temp archive", &self.temp_path, error))?;
        let tar = File::open(&self.temp_path)
            .map_err(|error| ArchiveError::io("read the set's temp archive", &self.temp_path, error))?;
        let set = crate::volumes::WrittenSet {
            path: &self.path,
            tar: &tar,
            blobs: &self.blobs,
            offsets: &self.offsets,
            images: &self.images,
            attachment_subjects: &self.attachment_subjects,
            base_blobs: &self.base_blobs,
            created: self.created,
        };
        set.write_volumes(split, self.durability, self.signer.as_ref())
    }

    /// Copies exactly `size` bytes of `reader` into the current entry,
    /// hashing them into `hasher` when there is one.
    fn copy_counted(
        &mut self,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
        mut hasher: Option<&mut Sha256Hasher>,
        buffer: &mut [u8],
    ) -> Result<(), ArchiveError> {
        let mut remaining = size;
        while remaining > 0 {
            let want = remaining.min(buffer.len() as u64) as usize;
            let read = match reader.read(&mut buffer[..want]) {
                Ok(0) => {
                    return Err(ArchiveError::SizeMismatch {
                        digest: digest.clone(),
                        expected: size,
                        actual: size - remaining,
                    });
                }
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(ArchiveError::io(format!("read blob {digest} for archive"), &self.path, error));
                }
            };
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.update(&buffer[..read]);
            }
            self.write_raw(&buffer[..read])?;
            remaining -= read as u64;
        }
        // More bytes than announced means this is not the blob we were promised.
        let mut probe = [0u8; 1];
        loop {
            match reader.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(ArchiveError::SizeMismatch {
                        digest: digest.clone(),
                        expected: size,
                        actual: size + 1,
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(ArchiveError::io(format!("read blob {digest} for archive"), &self.path, error));
                }
            }
        }
    }

    /// Writes the header of a blob entry; the entry counts as half-written
    /// (archive broken) until end_blob().
    fn begin_blob(&mut self, digest: &Digest, size: u64) -> Result<(), ArchiveError> {
        if self.broken {
            return Err(ArchiveError::Broken { path: self.path.clone() });
        }
        if !self.blob_dirs_written {
            self.write_blob_dirs()?;
        }
        let header = self.entry_header(&format::blob_path(digest.hex()), size, Kind::File)?;
        self.broken = true;
        self.write_raw(&header)?;
        if self.split.is_some() {
            self.offsets.insert(digest.clone(), self.tar_offset);
        }
        Ok(())
    }

    fn end_blob(&mut self, digest: &Digest, size: u64) -> Result<(), ArchiveError> {
        self.write_raw(&ZEROS[..tar_format::padding(size)])?;
        self.broken = false;
        self.blobs.insert(digest.clone(), size);
        Ok(())
    }

    fn write_blob_dirs(&mut self) -> Result<(), ArchiveError> {
        for dir in [format::BLOBS_DIR, format::BLOBS_SHA256_DIR] {
            let header = self.entry_header(dir, 0, Kind::Directory)?;
            self.write_raw(&header)?;
        }
        self.blob_dirs_written = true;
        Ok(())
    }

    /// The header of the next entry, with the archive's mtime; the
    /// `oci-layout` entry goes first if nothing has been written yet.
    fn entry_header(&mut self, name: &str, size: u64, kind: Kind) -> Result<Vec<u8>, ArchiveError> {
        if !self.layout_written {
            self.layout_written = true;
            self.write_entry(format::OCI_LAYOUT, format::OCI_LAYOUT_CONTENT)?;
        }
        let mtime = self.created.map_or(0, CreationTime::unix_seconds);
        Ok(tar_format::entry_header(name, size, kind, mtime))
    }

    /// A whole small file entry: header, data, padding.
    fn write_entry(&mut self, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        let header = self.entry_header(name, bytes.len() as u64, Kind::File)?;
        self.broken = true;
        self.write_raw(&header)?;
        self.write_raw(bytes)?;
        self.write_raw(&ZEROS[..tar_format::padding(bytes.len() as u64)])?;
        self.broken = false;
        Ok(())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        let sink = self.sink.as_mut().expect("the sink lives until finish()");
        if let Err(error) = sink.write_all(bytes) {
            self.broken = true;
            return Err(self.write_error("write archive", error));
        }
        self.tar_offset += bytes.len() as u64;
        Ok(())
    }

    /// A failed write to the output: for a stream, what went out cannot be
    /// taken back, and the error says so.
    fn write_error(&self, action: &str, error: io::Error) -> ArchiveError {
        if self.streamed {
            ArchiveError::StreamCut { action: action.to_owned(), path: self.path.clone(), error }
        } else {
            ArchiveError::io(action, &self.path, error)
        }
    }

    /// An archive whose index.json or manifest.json names a blob it lacks
    /// loads nowhere; refuse to produce one.
    fn check_images_complete(&self) -> Result<(), ArchiveError> {
        for image in &self.images {
            let missing = |role, digest: &Digest| {
                (!self.blobs.contains_key(digest)).then(|| ArchiveError::MissingBlob {
                    image: image.name.clone(),
                    role,
                    digest: digest.clone(),
                })
            };
            let role = if media_type::is_index(&image.descriptor.media_type) { "index" } else { "manifest" };
            if let Some(error) = missing(role, &image.descriptor.digest) {
                return Err(error);
            }
            if let Some(docker) = &image.docker {
                let layers = docker.layers.iter().map(|layer| ("layer", layer));
                for (role, digest) in std::iter::once(("config", &docker.config)).chain(layers) {
                    if let Some(error) = missing(role, digest) {
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    /// The archive's [`BillOfContents`], as JSON: one volume of one.
    fn bill_of_contents(&self) -> Vec<u8> {
        let images = self.images.iter().map(|image| bill_image(image, vec![1], &self.attachment_subjects)).collect();
        let blobs = self
            .blobs
            .iter()
            .map(|(digest, size)| BillBlob { digest: digest.clone(), size: *size, volume: 1, part: None })
            .collect();
        let base_blobs = self.base_blobs.values().cloned().collect();
        BillOfContents::new(images, blobs, base_blobs, 1, 1).with_created(self.created).to_json()
    }
}

/// An image's (or an attachment's, with its subject) entry in a bill of
/// contents, its blobs in `volumes`.
pub(crate) fn bill_image(
    image: &ArchiveImage,
    volumes: Vec<u32>,
    attachment_subjects: &BTreeMap<String, Digest>,
) -> BillImage {
    BillImage {
        name: image.name.clone(),
        digest: image.descriptor.digest.clone(),
        media_type: image.descriptor.media_type.clone(),
        volumes,
        subject: attachment_subjects.get(&image.name).cloned(),
    }
}

/// index.json: one entry per image, annotated with its name and tag.
pub(crate) fn index_json(images: &[ArchiveImage]) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Index<'a> {
        schema_version: u32,
        media_type: &'a str,
        manifests: Vec<Descriptor>,
    }
    let manifests = images
        .iter()
        .map(|image| {
            let mut descriptor = image.descriptor.clone();
            descriptor.annotations.insert(annotation::CONTAINERD_IMAGE_NAME.to_owned(), image.name.clone());
            match &image.tag {
                Some(tag) => descriptor.annotations.insert(annotation::REF_NAME.to_owned(), tag.clone()),
                None => descriptor.annotations.remove(annotation::REF_NAME),
            };
            descriptor
        })
        .collect();
    let index = Index { schema_version: 2, media_type: media_type::OCI_INDEX, manifests };
    serde_json::to_vec(&index).expect("index.json always serializes")
}

/// manifest.json and, if any image is tagged, repositories.
pub(crate) fn docker_json(images: &[ArchiveImage]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut items: Vec<ManifestItem> = Vec::new();
    let mut repositories = Repositories::new();
    for docker in images.iter().filter_map(|image| image.docker.as_ref()) {
        let config = format::blob_path(docker.config.hex());
        let layers: Vec<String> = docker.layers.iter().map(|layer| format::blob_path(layer.hex())).collect();
        // Docker writes one entry per image and lists all its tags there.
        let item = match items.iter_mut().find(|item| item.config == config && item.layers == layers) {
            Some(item) => item,
            None => {
                items.push(ManifestItem { config, repo_tags: Vec::new(), layers });
                items.last_mut().expect("just pushed")
            }
        };
        for repo_tag in &docker.repo_tags {
            if !item.repo_tags.contains(repo_tag) {
                item.repo_tags.push(repo_tag.clone());
            }
        }
        let Some(top_layer) = docker.layers.last() else { continue };
        for (name, tag) in docker.repo_tags.iter().filter_map(|repo_tag| format::split_repo_tag(repo_tag)) {
            repositories.entry(name.to_owned()).or_default().insert(tag.to_owned(), top_layer.hex().to_owned());
        }
    }
    let manifest = serde_json::to_vec(&items).expect("manifest.json always serializes");
    let repositories =
        (!repositories.is_empty()).then(|| serde_json::to_vec(&repositories).expect("repositories always serializes"));
    (manifest, repositories)
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if self.streamed {
            if !self.finished {
                tracing::warn!(
                    "the archive streamed to {} is incomplete: it was not finished, and what was written cannot be taken back",
                    self.path.display()
                );
            }
            return;
        }
        if self.temp_path.as_os_str().is_empty() {
            return;
        }
        // Close (and stop any zstd workers) before removing.
        drop(self.sink.take());
        if let Err(error) = fs::remove_file(&self.temp_path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.temp_path.display(), %error, "could not remove unfinished archive");
        }
    }
}

/// Copies everything from `source` through `sink` in `buffer`-sized chunks
/// (compressors want big writes; io::copy's would be 8 KiB).
fn copy_buffered(source: &mut impl Read, sink: &mut Sink, buffer: &mut Vec<u8>) -> io::Result<u64> {
    buffer.resize(BUFFER_SIZE, 0);
    let mut copied = 0;
    loop {
        let read = match source.read(buffer) {
            Ok(0) => return Ok(copied),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        sink.write_all(&buffer[..read])?;
        copied += read as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_temp_archives_of_the_same_name_are_swept_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tar");
        // What a killed run leaves: nobody holds its lock.
        let abandoned = dir.path().join(".out.tar.hpn-tmp-1-deadbeef");
        fs::write(&abandoned, b"partial").unwrap();
        let other_archive = dir.path().join(".other.tar.hpn-tmp-1-deadbeef");
        fs::write(&other_archive, b"partial").unwrap();
        let live = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
        assert!(!abandoned.exists(), "the abandoned temp archive was kept");
        assert!(other_archive.exists(), "another archive's temp file was touched");

        let second = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
        assert!(live.temp_path.exists(), "a live writer's temp file was removed");
        drop(second);
        live.finish().unwrap();
        let names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(path.is_file());
    }

    fn entry_names(bytes: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(bytes);
        let entries = archive.entries().unwrap();
        entries.map(|entry| String::from_utf8(entry.unwrap().path_bytes().into_owned()).unwrap()).collect()
    }

    #[test]
    fn a_creation_time_is_every_entry_s_mtime_and_the_bill_s_created() {
        let dir = tempfile::tempdir().unwrap();
        let blob = b"a blob".to_vec();
        let write = |name: &str, created: Option<CreationTime>| {
            let path = dir.path().join(name);
            let mut writer =
                ArchiveWriter::create(&path, ArchiveCompression::None).unwrap().with_creation_time(created);
            writer.add_blob_bytes(&Digest::of(&blob), &blob).unwrap();
            writer.finish().unwrap();
            fs::read(path).unwrap()
        };
        let created = CreationTime::parse("2024-05-01T12:00:00Z").unwrap();
        let stamped = write("stamped.tar", Some(created));
        let mut archive = tar::Archive::new(stamped.as_slice());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            assert_eq!(entry.header().mtime().unwrap(), created.unix_seconds(), "{name}");
            if name == format::BILL_OF_CONTENTS {
                let mut bill = String::new();
                entry.read_to_string(&mut bill).unwrap();
                assert!(bill.contains(r#""created": "2024-05-01T12:00:00Z""#), "{bill}");
            }
        }
        let plain = write("plain.tar", None);
        assert!(!String::from_utf8_lossy(&plain).contains("\"created\""), "no creation time asked, none recorded");
        assert_eq!(write("plain-again.tar", None), plain);
        assert_eq!(write("stamped-again.tar", Some(created)), stamped);
    }

    #[test]
    fn a_fifo_is_written_through_and_stays_a_fifo() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.tar");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let reading = fifo.clone();
        let reader = std::thread::spawn(move || fs::read(reading).unwrap());
        let mut writer = ArchiveWriter::create(&fifo, ArchiveCompression::None).unwrap();
        let blob = vec![7u8; 300_000];
        let digest = Digest::of(&blob);
        writer.add_blob_bytes(&digest, &blob).unwrap();
        let size = writer.finish().unwrap();
        let streamed = reader.join().unwrap();
        assert_eq!(streamed.len() as u64, size, "the size is what went through");
        let names = entry_names(&streamed);
        assert!(names.contains(&format::blob_path(digest.hex())) && names.contains(&"index.json".to_owned()));
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "a temp file was left beside the FIFO");
    }

    #[test]
    fn a_full_device_fails_saying_the_streamed_archive_is_incomplete() {
        let mut writer = ArchiveWriter::create(Path::new("/dev/full"), ArchiveCompression::None).unwrap();
        let blob = vec![1u8; 2 * BUFFER_SIZE];
        let error = writer.add_blob_bytes(&Digest::of(&blob), &blob).unwrap_err();
        assert!(matches!(error, ArchiveError::StreamCut { .. }) && error.is_no_space(), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("/dev/full") && message.contains("incomplete archive"), "{message}");
    }

    #[test]
    fn a_link_to_a_file_keeps_the_link_and_replaces_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.tar");
        fs::write(&target, b"old").unwrap();
        let link = dir.path().join("link.tar");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        ArchiveWriter::create(&link, ArchiveCompression::None).unwrap().finish().unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
        assert!(entry_names(&fs::read(&target).unwrap()).contains(&"index.json".to_owned()));
        let dangling = dir.path().join("dangling.tar");
        std::os::unix::fs::symlink(dir.path().join("nowhere/x.tar"), &dangling).unwrap();
        let error = ArchiveWriter::create(&dangling, ArchiveCompression::None).unwrap_err();
        assert!(matches!(error, ArchiveError::InvalidPath { .. }), "{error:?}");
    }

    /// Names over ustar's 100 bytes are not expected (blob paths are 77), but
    /// must still come out right in every reader.
    #[test]
    fn long_entry_names_survive_in_the_tar_crate_and_gnu_tar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.tar");
        let long_component = format!("dir/{}", "c".repeat(130));
        let long_path = format!("{}/{}/file.json", "a".repeat(60), "b".repeat(60));
        let mut writer = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
        writer.write_entry(&long_component, b"first").unwrap();
        writer.write_entry(&long_path, &vec![7; 1000]).unwrap();
        writer.write_entry("short", b"third").unwrap();
        writer.finish().unwrap();

        let bytes = fs::read(&path).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                (String::from_utf8(entry.path_bytes().into_owned()).unwrap(), data)
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names[..7],
            ["oci-layout", &long_component, &long_path, "short", "blobs/", "blobs/sha256/", "hpn-contents.json"]
        );
        assert_eq!(entries[1].1, b"first");
        assert_eq!(entries[2].1, vec![7; 1000]);
        assert_eq!(entries[3].1, b"third");

        let listed = std::process::Command::new("tar").arg("tf").arg(&path).output().unwrap();
        assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
        let listed = String::from_utf8(listed.stdout).unwrap();
        let listed: Vec<&str> = listed.lines().collect();
        assert_eq!(listed[..4], ["oci-layout", &long_component, &long_path, "short"]);
    }
}
