//! Where the bytes are: the store, or archive files read by offset.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use hpn_archive::{ArchiveReader, BlobReader};
use hpn_oci::{Digest, limits};
use hpn_store::{Store, StoreError};
use rustix::fs::{Mode, OFlags};

use crate::catalog::{ManifestReader, NamedImage};

/// What `hpn serve` serves. Both are only ever read.
#[derive(Debug)]
pub(crate) enum Content {
    Store(Arc<Store>),
    Archives(Vec<Arc<ArchiveReader>>),
}

/// A blob's bytes as a region of an open file: what sendfile and positioned
/// reads need.
#[derive(Debug)]
pub(crate) struct BlobFile {
    holder: Holder,
    /// Where the blob starts in the file.
    base: u64,
    pub size: u64,
}

#[derive(Debug)]
enum Holder {
    File(File),
    /// An archive entry; the reader holds the archive's file open.
    Archive(BlobReader),
    /// A synthesized manifest asked for as a blob.
    Memory(Bytes),
}

/// The state of index.json that decides whether the catalog is stale:
/// index.json is replaced by rename, so a new inode or mtime means new refs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexStamp {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

impl Content {
    /// The named images, as the source lists them.
    pub fn images(&self) -> Result<Vec<NamedImage>, StoreError> {
        match self {
            Content::Store(store) => {
                Ok(store.refs()?.into_iter().map(|(name, descriptor)| NamedImage { name, descriptor }).collect())
            }
            Content::Archives(archives) => Ok(archives
                .iter()
                .flat_map(|archive| archive.images())
                .flat_map(|image| {
                    image
                        .names
                        .iter()
                        .map(|name| NamedImage { name: name.clone(), descriptor: image.manifest.descriptor() })
                })
                .collect()),
        }
    }

    /// The current index.json stamp of a store; archives never change.
    pub fn index_stamp(&self) -> Option<IndexStamp> {
        let Content::Store(store) = self else { return None };
        let metadata = std::fs::metadata(store.root().join("index.json")).ok()?;
        Some(IndexStamp {
            inode: std::os::unix::fs::MetadataExt::ino(&metadata),
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
    }

    /// Where the content is, for messages.
    pub fn location(&self) -> String {
        match self {
            Content::Store(store) => store.root().display().to_string(),
            Content::Archives(archives) => {
                archives.iter().map(|archive| archive.path().display().to_string()).collect::<Vec<_>>().join(", ")
            }
        }
    }

    /// Opens a blob for sending. `Ok(None)` when the source does not hold it.
    /// A store blob is opened without following symlinks, so a link planted
    /// under `blobs/sha256/` cannot hand out a file from outside the store.
    pub fn open_blob(&self, digest: &Digest) -> io::Result<Option<BlobFile>> {
        match self {
            Content::Store(store) => open_store_blob(&store.blob_path(digest)),
            Content::Archives(archives) => {
                for archive in archives {
                    if let Some(reader) = archive.open_blob(digest).map_err(io::Error::other)? {
                        let size = reader.size();
                        let (holder, base) = match reader.file_region() {
                            Some((_, base)) => (Holder::Archive(reader), base),
                            None => (
                                Holder::Memory(Bytes::from(
                                    archive.read_blob(digest, limits::MANIFEST).map_err(io::Error::other)?,
                                )),
                                0,
                            ),
                        };
                        return Ok(Some(BlobFile { holder, base, size }));
                    }
                }
                Ok(None)
            }
        }
    }
}

fn open_store_blob(path: &Path) -> io::Result<Option<BlobFile>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        // ELOOP: the final component is a symlink.
        Err(rustix::io::Errno::LOOP) => {
            return Err(io::Error::other(format!("{} is a symbolic link, which is never served", path.display())));
        }
        Err(error) => return Err(error.into()),
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", path.display())));
    }
    Ok(Some(BlobFile { holder: Holder::File(file), base: 0, size: metadata.len() }))
}

impl BlobFile {
    /// The open file and the offset in it of the blob's first byte; `None`
    /// for a blob held in memory.
    pub fn region(&self) -> Option<(&File, u64)> {
        match &self.holder {
            Holder::File(file) => Some((file, self.base)),
            Holder::Archive(reader) => reader.file_region().map(|(file, _)| (file, self.base)),
            Holder::Memory(_) => None,
        }
    }

    /// Reads up to `buf.len()` bytes of the blob at `position` (relative to
    /// the blob); fails rather than returning 0 before the blob's end.
    pub fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.size.saturating_sub(position)).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let read = match (&self.holder, self.region()) {
            (Holder::Memory(bytes), _) => {
                let start = position as usize;
                buf[..want].copy_from_slice(&bytes[start..start + want]);
                want
            }
            (_, Some((file, base))) => file.read_at(&mut buf[..want], base + position)?,
            (_, None) => unreachable!("only memory blobs have no file"),
        };
        if read == 0 {
            return Err(shrunk(position, self.size));
        }
        Ok(read)
    }
}

/// The error for a file that ended before the blob did.
pub(crate) fn shrunk(position: u64, size: u64) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("the file ended after {position} of the blob's {size} bytes"))
}

impl ManifestReader for Content {
    fn read_manifest(&self, digest: &Digest) -> Result<Option<Bytes>, String> {
        match self {
            Content::Store(store) => match store.read_blob(digest, limits::MANIFEST) {
                Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                Err(StoreError::BlobNotFound { .. }) => Ok(None),
                Err(error) => Err(error.to_string()),
            },
            Content::Archives(archives) => {
                for archive in archives {
                    if let Some(image) = archive.images().iter().find(|image| image.manifest.digest == *digest) {
                        // Synthesized manifests exist only here, not among the archive's blobs.
                        return Ok(Some(image.manifest.bytes.clone()));
                    }
                    if archive.contains_blob(digest) {
                        return archive
                            .read_blob(digest, limits::MANIFEST)
                            .map(|bytes| Some(Bytes::from(bytes)))
                            .map_err(|error| error.to_string());
                    }
                }
                Ok(None)
            }
        }
    }
}

/// The archives named by `-i`, opened (and indexed) on the blocking pool.
pub(crate) fn open_archives(paths: &[PathBuf]) -> Result<Vec<Arc<ArchiveReader>>, hpn_archive::ArchiveError> {
    paths.iter().map(|path| ArchiveReader::open(path).map(Arc::new)).collect()
}
