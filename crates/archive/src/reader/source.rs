//! Turning what the user named into something indexable: a tar file read in
//! place, a decompressed (or spooled) temp copy of it, or a directory.

use std::fs::{self, File};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::index::{self, FileEntry, Index, Location, MAX_ENTRIES, Node};
use super::tar_index;
use crate::error::ArchiveError;
use crate::writer::ArchiveCompression;

/// Big copies: decompressors and the disk both like large chunks.
const COPY_BUFFER: usize = 1024 * 1024;
/// OCI layouts are two levels deep; extracted `docker save` trees three.
const MAX_DIR_DEPTH: usize = 16;

/// Where indexed entries are read from.
#[derive(Debug)]
pub(crate) enum Storage {
    /// A tar file (the archive itself, or an unnamed temp copy), read with
    /// positioned reads so any number of readers can share it.
    Tar(Arc<File>),
    /// An OCI layout directory; entries carry their own paths.
    Dir,
}

#[derive(Debug)]
pub(crate) struct Opened {
    pub storage: Storage,
    pub index: Index,
    pub compression: ArchiveCompression,
}

/// Opens `path`: a directory is walked, a regular file is indexed in place
/// unless it is compressed as a whole, anything else (a FIFO, `/dev/stdin`)
/// is spooled first because it cannot be read at offsets.
pub(crate) fn open_path(path: &Path, temp_dir: &Path) -> Result<Opened, ArchiveError> {
    // The user named this path, so a symlink to an archive is fine here; it is
    // links *inside* archives and layouts that are never followed.
    let metadata = fs::metadata(path).map_err(|error| ArchiveError::io("open archive", path, error))?;
    if metadata.is_dir() {
        let index = index_dir(path)?;
        return Ok(Opened { storage: Storage::Dir, index, compression: ArchiveCompression::None });
    }
    let file = File::open(path).map_err(|error| ArchiveError::io("open archive", path, error))?;
    if !metadata.is_file() {
        return spool(file, path, temp_dir);
    }
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        match file.read_at(&mut magic[filled..], filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ArchiveError::io("read archive", path, error)),
        }
    }
    match compression_of(&magic[..filled]) {
        ArchiveCompression::None => {
            let index = tar_index::index_tar(&file, path, None)?;
            Ok(Opened { storage: Storage::Tar(Arc::new(file)), index, compression: ArchiveCompression::None })
        }
        _ => spool(file, path, temp_dir),
    }
}

/// Copies `source` (decompressing it if its first bytes say gzip or zstd)
/// into an unnamed temp file in `temp_dir` and indexes that. Unnamed
/// (O_TMPFILE where available): the copy disappears when the reader is
/// dropped or the process dies, and nothing is ever visible under a name.
pub(crate) fn spool(source: impl Read, archive: &Path, temp_dir: &Path) -> Result<Opened, ArchiveError> {
    let mut source = SourceReader(source);
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match source.read(&mut prefix[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ArchiveError::io("read archive", archive, error)),
        }
    }
    let compression = compression_of(&prefix[..filled]);
    let chained = Cursor::new(prefix[..filled].to_vec()).chain(source);
    let mut temp = tempfile::tempfile_in(temp_dir)
        .map_err(|error| ArchiveError::io("create a temp file for reading the archive in", temp_dir, error))?;
    let copied = match compression {
        ArchiveCompression::None => copy(chained, &mut temp),
        ArchiveCompression::Gzip => copy(flate2::read::MultiGzDecoder::new(chained), &mut temp),
        ArchiveCompression::Zstd => match zstd::stream::read::Decoder::new(chained) {
            Ok(decoder) => copy(decoder, &mut temp),
            Err(error) => Err(CopyError::Read(error)),
        },
    };
    let name = compression_name(compression);
    match copied {
        Ok(()) => {}
        Err(CopyError::Write(error)) => {
            // The temp dir is where space ran out, not the archive's disk: say
            // how to move it.
            let copy = if name.is_some() { "decompressed copy" } else { "copy" };
            return Err(ArchiveError::io(
                format!("write a {copy} of {} (TMPDIR picks another place) into", archive.display()),
                temp_dir,
                error,
            ));
        }
        Err(CopyError::Read(error)) if is_source_error(&error) => {
            return Err(ArchiveError::io("read archive", archive, error));
        }
        Err(CopyError::Read(error)) => {
            return Err(ArchiveError::Truncated {
                path: archive.to_owned(),
                detail: format!("its {} data does not decompress: {error}", name.unwrap_or("compressed")),
            });
        }
    }
    let index = tar_index::index_tar(&temp, archive, name)?;
    Ok(Opened { storage: Storage::Tar(Arc::new(temp)), index, compression })
}

/// Whole-archive compression, judged by magic bytes (never by file name:
/// `docker save | gzip > x.tar` is common).
pub(crate) fn compression_of(prefix: &[u8]) -> ArchiveCompression {
    match prefix {
        [0x1f, 0x8b, ..] => ArchiveCompression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => ArchiveCompression::Zstd,
        _ => ArchiveCompression::None,
    }
}

fn compression_name(compression: ArchiveCompression) -> Option<&'static str> {
    match compression {
        ArchiveCompression::None => None,
        ArchiveCompression::Gzip => Some("gzip"),
        ArchiveCompression::Zstd => Some("zstd"),
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// After the tar's end-of-archive block, at most this much more is read (and
/// dropped), so that a compressed stream cut or damaged in its last bytes is
/// still noticed. More than that is no record padding but junk, typically a
/// decompression bomb's gigabytes of zeros: reading stops there.
const MAX_TRAILING: u64 = 1024 * 1024;

/// Copies the tar stream `from` into `to`, up to the tar's end: what follows
/// the end-of-archive block is never written, so the copy needs no more disk
/// than the archive's content, however much the stream would decompress to.
fn copy(mut from: impl Read, to: &mut File) -> Result<(), CopyError> {
    let mut buffer = vec![0; COPY_BUFFER];
    let mut tar = tar_index::TarEnd::default();
    let mut trailing: u64 = 0;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(CopyError::Read(error)),
        };
        let keep = if tar.ended() { 0 } else { tar.feed(&buffer[..read]) };
        to.write_all(&buffer[..keep]).map_err(CopyError::Write)?;
        trailing += (read - keep) as u64;
        if trailing > MAX_TRAILING {
            tracing::debug!("more than {MAX_TRAILING} bytes after the end of the tar; not reading the rest");
            break;
        }
    }
    to.flush().map_err(CopyError::Write)
}

/// Marks errors of the raw source so they can be told apart from a
/// decompressor's complaints about the data (an I/O failure versus a corrupt
/// or truncated archive).
struct SourceReader<R>(R);

#[derive(Debug)]
struct SourceError(io::Error);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|error| match error.kind() {
            io::ErrorKind::Interrupted => error,
            kind => io::Error::new(kind, SourceError(error)),
        })
    }
}

fn is_source_error(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<SourceError>())
}

/// Walks an OCI layout directory into an index. Nothing is followed: a
/// symlink becomes a link entry resolved against other names of the layout
/// (so it can never lead outside it), and files are opened later only if
/// they are still the file (device, inode) seen here.
fn index_dir(root: &Path) -> Result<Index, ArchiveError> {
    let mut index = Index::default();
    let mut pending: Vec<(String, PathBuf, usize)> = vec![(String::new(), root.to_owned(), 0)];
    while let Some((prefix, dir, depth)) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|error| ArchiveError::io("list directory", &dir, error))?;
        for entry in entries {
            let entry = entry.map_err(|error| ArchiveError::io("list directory", &dir, error))?;
            let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                // Not UTF-8: no JSON can name it.
                continue;
            };
            let name = if prefix.is_empty() { file_name } else { format!("{prefix}/{file_name}") };
            let path = entry.path();
            let file_type = entry.file_type().map_err(|error| ArchiveError::io("inspect", &path, error))?;
            let node = if file_type.is_dir() {
                if depth + 1 < MAX_DIR_DEPTH {
                    pending.push((name.clone(), path, depth + 1));
                }
                Node::Directory
            } else if file_type.is_file() {
                // DirEntry::metadata does not follow symlinks.
                let metadata = entry.metadata().map_err(|error| ArchiveError::io("inspect", &path, error))?;
                Node::File(FileEntry {
                    name: name.clone(),
                    location: Location::File { path, dev: metadata.dev(), ino: metadata.ino() },
                    size: metadata.len(),
                })
            } else if file_type.is_symlink() {
                let target = fs::read_link(&path).map_err(|error| ArchiveError::io("read symlink", &path, error))?;
                use std::os::unix::ffi::OsStrExt;
                Node::Link { target: index::symlink_target(&name, target.as_os_str().as_bytes()), symbolic: true }
            } else {
                Node::Unsupported("special file")
            };
            if index.len() >= MAX_ENTRIES {
                return Err(ArchiveError::NotAnArchive {
                    path: root.to_owned(),
                    reason: format!("the directory holds more than {MAX_ENTRIES} files; it is not an OCI image layout"),
                });
            }
            index.insert(name, node);
        }
    }
    Ok(index)
}
