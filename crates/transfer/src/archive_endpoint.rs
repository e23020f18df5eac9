use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hpn_archive::{ArchiveCompression, ArchiveImage, ArchiveWriter, BaseBlob, DockerImageEntry};
use hpn_fs::Durability;
use hpn_oci::media_type;
use hpn_oci::media_type::{LayerCompression, layer_compression};
use hpn_oci::{Descriptor, Digest, RawManifest, Reference, Sha256Hasher};
use hpn_store::{BlobWriter, Store};

use crate::archive_attachments::ArchiveAttachments;
use crate::attachments::Attachment;
use crate::base::Base;
use crate::endpoint::{BlobContent, BlobReuse, CopiedImage, ImageDestination};
use crate::endpoints::WrittenArchive;
use crate::error::TransferError;
use crate::hashing::HashingWriter;
use crate::mutex::lock;
use crate::store_endpoint::drain_on_blocking_thread;

/// Writes images into one docker/OCI hybrid archive file (ARCHITECTURE.md, "Formats"):
/// the OCI side keeps every original blob; `manifest.json` gives docker one
/// platform per image, pointing at an uncompressed copy of any zstd layer,
/// because docker before 23 cannot read zstd.
#[derive(Debug)]
pub struct ArchiveDestination {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Option<ArchiveWriter>>,
    /// Images committed so far, with their request position.
    images: Mutex<Vec<(usize, ArchiveImage)>>,
    /// zstd layer digest → digest of its uncompressed copy in the archive.
    uncompressed_copies: Mutex<HashMap<Digest, Digest>>,
    /// For a differential bundle: what the far side holds already.
    base: Option<Arc<Base>>,
    /// Layers left to the base, with their sizes.
    left_to_base: Mutex<HashMap<Digest, u64>>,
    /// Images left out of manifest.json because they need base layers.
    need_base: Mutex<Vec<String>>,
    /// Signatures, SBOMs and attestations of the images, written on finish.
    attachments: Mutex<ArchiveAttachments>,
    /// The store that keeps uncompressed copies of zstd layers across runs
    /// (`hpn save`'s); without one, each copy is made in a scratch file.
    copies: Option<Arc<Store>>,
}

/// Where the uncompressed copy of a zstd layer is read from.
enum UncompressedCopy {
    /// A blob in the store, verified when it was made and checked since.
    Stored(PathBuf),
    /// A scratch file beside the archive, gone when this is dropped.
    Scratch(tempfile::NamedTempFile),
}

impl UncompressedCopy {
    fn path(&self) -> &Path {
        match self {
            Self::Stored(path) => path,
            Self::Scratch(file) => file.path(),
        }
    }
}

/// What a differential bundle left to its base ([`ArchiveDestination::left_to_base`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeftToBase {
    /// Layers the bundle does not carry.
    pub blobs: usize,
    /// Their bytes: what the bundle saved.
    pub bytes: u64,
    /// The images that need some of them (and so are not in manifest.json:
    /// `docker load` of the bundle alone cannot load them).
    pub images: Vec<String>,
}

impl Inner {
    /// Whether the blob is a layer the base holds: then it is recorded in
    /// the bill as expected at the far side and not written. Manifests and
    /// configs (kilobytes) always go in, so that every reader can walk and
    /// check the closure of each image the bundle names, and push it to a
    /// registry that holds only the layers.
    fn leave_to_base(&self, descriptor: &Descriptor) -> Result<bool, TransferError> {
        let Some(blob) = base_layer(self.base.as_deref(), descriptor) else { return Ok(false) };
        self.with_writer(|writer| {
            writer.add_base_blob(blob.clone());
            Ok(())
        })?;
        lock(&self.left_to_base).insert(descriptor.digest.clone(), blob.size);
        Ok(true)
    }

    fn with_writer<T>(
        &self,
        work: impl FnOnce(&mut ArchiveWriter) -> Result<T, TransferError>,
    ) -> Result<T, TransferError> {
        let mut guard = lock(&self.writer);
        let writer = guard.as_mut().ok_or_else(|| {
            TransferError::Unsupported(format!("archive {} was already finished", self.path.display()))
        })?;
        work(writer)
    }

    /// Adds the zstd layer at `path` and an uncompressed copy named by its
    /// DiffID. Decompression runs before the archive lock is taken so other
    /// blobs keep flowing into the archive meanwhile.
    fn add_zstd_layer(&self, descriptor: &Descriptor, path: &Path) -> Result<(), TransferError> {
        let (uncompressed, diff_id) = self.uncompressed_copy(descriptor, path)?;
        self.with_writer(|writer| {
            writer.add_blob_from_file(&descriptor.digest, path)?;
            writer.add_blob_from_file(&diff_id, uncompressed.path())?;
            Ok(())
        })?;
        lock(&self.uncompressed_copies).insert(descriptor.digest.clone(), diff_id);
        Ok(())
    }

    /// The uncompressed copy of the zstd layer at `path`, and its DiffID:
    /// the store's when it holds one intact, else decompressed now (into the
    /// store, which keeps it for the next save, when there is one).
    fn uncompressed_copy(
        &self,
        descriptor: &Descriptor,
        path: &Path,
    ) -> Result<(UncompressedCopy, Digest), TransferError> {
        let layer = &descriptor.digest;
        let decompress_error = |error| TransferError::io(format!("decompressing zstd layer {layer}"), error);
        if let Some(store) = &self.copies {
            if let Some(diff_id) = store.uncompressed_copy(layer)? {
                return Ok((UncompressedCopy::Stored(store.blob_path(&diff_id)), diff_id));
            }
            if let Some(copy) = store.begin_uncompressed_copy(layer)? {
                tracing::debug!(%layer, store = %store.root().display(), "decompressing a zstd layer into the store");
                let diff_id = decompress_zstd(path, copy).map_err(decompress_error)?.commit()?;
                return Ok((UncompressedCopy::Stored(store.blob_path(&diff_id)), diff_id));
            }
        }
        tracing::debug!(%layer, "decompressing a zstd layer into a scratch file");
        let scratch_dir = self.path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let scratch = tempfile::NamedTempFile::new_in(scratch_dir)
            .and_then(|file| decompress_zstd(path, HashingWriter::new(io::BufWriter::new(file))))
            .map_err(decompress_error)?;
        let HashingWriter { inner, hasher } = scratch;
        let file = inner.into_inner().map_err(|error| decompress_error(error.into_error()))?;
        Ok((UncompressedCopy::Scratch(file), hasher.finish()))
    }
}

impl ArchiveDestination {
    /// Starts the archive at `path` (under a temp name until [`Self::finish`]),
    /// compressed as a whole with `compression`.
    pub fn create(path: &Path, compression: ArchiveCompression, durability: Durability) -> Result<Self, TransferError> {
        Ok(Self::from_writer(path, ArchiveWriter::create(path, compression)?.with_durability(durability), None, None))
    }

    /// The archive (or set of volumes, [`ArchiveWriter::create_volumes`],
    /// finished by [`Self::finish_all`]) `writer` has started at `path`;
    /// with a `base`, a differential bundle: the layers `base` holds are left
    /// out, each listed in the bill of contents as expected at the far side,
    /// and an image that needs one is left out of manifest.json. With
    /// `copies`, the uncompressed copy of each zstd layer comes from that
    /// store, which makes and keeps it the first time
    /// ([`Store::uncompressed_copy`]).
    pub fn from_writer(
        path: &Path,
        writer: ArchiveWriter,
        base: Option<Arc<Base>>,
        copies: Option<Arc<Store>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(Some(writer)),
                images: Mutex::new(Vec::new()),
                uncompressed_copies: Mutex::new(HashMap::new()),
                base,
                left_to_base: Mutex::new(HashMap::new()),
                need_base: Mutex::new(Vec::new()),
                attachments: Mutex::default(),
                copies,
            }),
        }
    }

    /// What this archive left to its base so far.
    pub fn left_to_base(&self) -> LeftToBase {
        let left = lock(&self.inner.left_to_base);
        LeftToBase { blobs: left.len(), bytes: left.values().sum(), images: lock(&self.inner.need_base).clone() }
    }

    /// Writes the archive's indexes in request order and moves the finished
    /// file to its final name. Returns its size in bytes.
    pub async fn finish(&self) -> Result<u64, TransferError> {
        self.finish_with(|writer| Ok(writer.finish()?)).await
    }

    /// [`Self::finish`], for an archive or a set of volumes
    /// ([`ArchiveWriter::create_volumes`]): every file written, in order.
    pub async fn finish_all(&self) -> Result<Vec<WrittenArchive>, TransferError> {
        let path = self.inner.path.clone();
        self.finish_with(move |writer| {
            if !writer.is_volume_set() {
                return Ok(vec![WrittenArchive { size: writer.finish()?, path }]);
            }
            let volumes = writer.finish_volumes()?;
            Ok(volumes.into_iter().map(|(path, size)| WrittenArchive { path, size }).collect())
        })
        .await
    }

    async fn finish_with<T: Send + 'static>(
        &self,
        finish: impl FnOnce(ArchiveWriter) -> Result<T, TransferError> + Send + 'static,
    ) -> Result<T, TransferError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let mut writer = lock(&inner.writer).take().ok_or_else(|| {
                TransferError::Unsupported(format!("archive {} was already finished", inner.path.display()))
            })?;
            let mut images = std::mem::take(&mut *lock(&inner.images));
            images.sort_by_key(|(index, _)| *index);
            for (_, image) in images {
                writer.add_image(image);
            }
            std::mem::take(&mut *lock(&inner.attachments)).write_into(&mut writer)?;
            finish(writer)
        })
        .await
    }

    /// Adds a verified local file (a store blob) as the blob `descriptor`
    /// names, unless the archive has it already; a zstd layer also gets its
    /// uncompressed copy. `hpn save` calls this for each blob once the store
    /// holds it and every blob before it in the archive's order is written,
    /// ahead of its image (`save.rs`).
    pub async fn add_local_blob(&self, descriptor: &Descriptor, path: PathBuf) -> Result<(), TransferError> {
        let inner = Arc::clone(&self.inner);
        let descriptor = descriptor.clone();
        run_blocking(move || {
            if inner.with_writer(|writer| Ok(writer.contains_blob(&descriptor.digest)))?
                || inner.leave_to_base(&descriptor)?
            {
                return Ok(());
            }
            if layer_compression(&descriptor.media_type) == Some(LayerCompression::Zstd) {
                inner.add_zstd_layer(&descriptor, &path)
            } else {
                inner.with_writer(|writer| Ok(writer.add_blob_from_file(&descriptor.digest, &path)?))
            }
        })
        .await
    }
}

impl ArchiveDestination {
    /// Writes a downloading blob into `store` and, in the same pass, into
    /// this archive when it can take an entry back: the store's writer
    /// hashes the bytes and the entry stands only if the store commits them;
    /// otherwise it is taken back and the store's error returned. The caller
    /// holds the archive's next place (`ArchiveOrder::claim_stream`), so
    /// nothing else is being written into it. Blocking: call it on the
    /// blocking pool.
    ///
    /// Returns whether the archive has the blob now; when it cannot take an
    /// entry back (it is compressed) or wants a zstd layer (which also needs
    /// its uncompressed copy), the blob only goes into the store, and the
    /// caller adds it from there.
    pub(crate) fn store_while_adding(
        &self,
        store: &Store,
        descriptor: &Descriptor,
        reader: &mut dyn io::Read,
    ) -> Result<bool, TransferError> {
        let mut stored = store.begin_blob(&descriptor.digest, Some(descriptor.size))?;
        let is_zstd = layer_compression(&descriptor.media_type) == Some(LayerCompression::Zstd);
        let mut guard = lock(&self.inner.writer);
        let writer = guard
            .as_mut()
            .filter(|writer| !is_zstd && writer.can_take_back() && !writer.contains_blob(&descriptor.digest));
        let Some(writer) = writer else {
            drop(guard);
            io::copy(reader, &mut stored).map_err(|error| {
                TransferError::io(format!("writing blob {} into the store", descriptor.digest), error)
            })?;
            stored.commit()?;
            return Ok(false);
        };
        tracing::debug!(blob = %descriptor.digest, "downloading into the store and the archive in one pass");
        let mut failed = None;
        let tee = Tee { source: reader, copy: stored, failed: &mut failed };
        let added = writer.add_blob_checked_elsewhere(&descriptor.digest, descriptor.size, tee, |tee: Tee<'_>| {
            tee.copy.commit().map_err(TransferError::from)
        });
        match (added, failed) {
            // The download or the store failed, not the archive: say so, as the store alone would.
            (Err(_), Some(error)) => {
                Err(TransferError::io(format!("writing blob {} into the store", descriptor.digest), error))
            }
            (added, _) => added.map(|()| true),
        }
    }
}

/// A download on its way into the archive, each chunk also written into the
/// store, whose writer hashes it.
struct Tee<'a> {
    source: &'a mut dyn io::Read,
    copy: BlobWriter,
    /// The download's or the store's error, which the archive only passes on.
    failed: &'a mut Option<io::Error>,
}

impl io::Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read =
            self.source.read(buf).and_then(|read| io::Write::write_all(&mut self.copy, &buf[..read]).map(|()| read));
        read.map_err(|error| {
            let kind = error.kind();
            *self.failed = Some(error);
            io::Error::new(kind, "the blob could not be downloaded into the store")
        })
    }
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TransferError> + Send + 'static,
) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(work).await.map_err(|join| TransferError::task_failed("archive", join))?
}

impl ImageDestination for ArchiveDestination {
    /// The reuse check of this destination changes nothing (no mounts).
    async fn holds_blob(&self, target: &Reference, descriptor: &Descriptor) -> Result<bool, TransferError> {
        Ok(self.try_reuse_blob(target, descriptor, target).await?.is_reused())
    }

    async fn try_reuse_blob(
        &self,
        _target: &Reference,
        descriptor: &Descriptor,
        _source: &Reference,
    ) -> Result<BlobReuse, TransferError> {
        // On the blocking pool: a streamed blob holds the writer's lock while it
        // waits for chunks that an async worker feeds it, so an async worker
        // waiting here for that lock could leave no worker to feed it.
        let (inner, descriptor) = (Arc::clone(&self.inner), descriptor.clone());
        let present = run_blocking(move || {
            Ok(inner.with_writer(|writer| Ok(writer.contains_blob(&descriptor.digest)))?
                || inner.leave_to_base(&descriptor)?)
        })
        .await?;
        Ok(if present { BlobReuse::Present } else { BlobReuse::Absent })
    }

    async fn put_blob(
        &self,
        _target: &Reference,
        descriptor: &Descriptor,
        content: BlobContent,
    ) -> Result<(), TransferError> {
        let inner = Arc::clone(&self.inner);
        let descriptor = descriptor.clone();
        let is_zstd = layer_compression(&descriptor.media_type) == Some(LayerCompression::Zstd);
        match content {
            BlobContent::Bytes(bytes) => {
                run_blocking(move || inner.with_writer(|writer| Ok(writer.add_blob_bytes(&descriptor.digest, &bytes)?)))
                    .await
            }
            BlobContent::File(path) => self.add_local_blob(&descriptor, path).await,
            // A zstd layer is needed twice (as is, and decompressed), so a
            // streamed one is first spooled to a verified temp file.
            BlobContent::Stream(stream) if is_zstd => {
                drain_on_blocking_thread(stream, move |reader| {
                    let spooled = spool_verified(reader, &descriptor, &inner.path)?;
                    inner.add_zstd_layer(&descriptor, spooled.path())
                })
                .await
            }
            BlobContent::Stream(stream) => {
                drain_on_blocking_thread(stream, move |reader| {
                    inner.with_writer(|writer| {
                        Ok(writer.add_blob_from_reader(&descriptor.digest, descriptor.size, reader)?)
                    })
                })
                .await
            }
        }
    }

    async fn put_manifest(&self, _target: &Reference, manifest: &RawManifest) -> Result<(), TransferError> {
        let inner = Arc::clone(&self.inner);
        let (digest, bytes) = (manifest.digest.clone(), manifest.bytes.clone());
        run_blocking(move || inner.with_writer(|writer| Ok(writer.add_blob_bytes(&digest, &bytes)?))).await
    }

    fn keeps_attachments(&self) -> bool {
        true
    }

    fn keeps_attachments_of_partial_indexes(&self) -> bool {
        false
    }

    /// The manifest goes in like any; its entry in index.json (never in
    /// manifest.json) is written on finish, as the store records them: a
    /// legacy tag as `REPO:sha256-<hex>.sig`, referrers in the fallback
    /// index `REPO:sha256-<hex>`.
    async fn put_attachment(
        &self,
        target: &Reference,
        attachment: &Attachment,
        manifest: &RawManifest,
    ) -> Result<(), TransferError> {
        self.put_manifest(target, manifest).await?;
        lock(&self.inner.attachments).record(target, attachment, manifest, &self.inner.path)
    }

    async fn commit(&self, image: &CopiedImage) -> Result<(), TransferError> {
        self.put_manifest(&image.destination, &image.top).await?;
        let copies = lock(&self.inner.uncompressed_copies).clone();
        let (archive_image, needs_base) = archive_image(image, &copies, self.inner.base.as_deref(), &self.inner.path)?;
        if needs_base {
            lock(&self.inner.need_base).push(image.destination.to_string());
        }
        lock(&self.inner.images).push((image.job_index, archive_image));
        Ok(())
    }
}

/// What the base holds of `descriptor` if it is a layer: a differential
/// bundle leaves that out (manifests and configs always go in,
/// [`ArchiveDestination::from_writer`]).
pub(crate) fn base_layer<'b>(base: Option<&'b Base>, descriptor: &Descriptor) -> Option<&'b BaseBlob> {
    let blob = base?.blob(&descriptor.digest)?;
    let media_type = descriptor.media_type.as_str();
    let metadata = media_type::is_index(media_type)
        || media_type::is_image_manifest(media_type)
        || media_type == media_type::OCI_CONFIG
        || media_type == media_type::DOCKER_CONFIG;
    (!metadata).then_some(blob)
}

/// The archive's entry for `image` (index.json's descriptor, manifest.json's
/// view of its primary platform, which names the uncompressed copy of each
/// zstd layer: `uncompressed_copies`, zstd layer → DiffID), and whether the
/// image needs layers of `base`, which leaves it out of manifest.json.
pub(crate) fn archive_image(
    image: &CopiedImage,
    uncompressed_copies: &HashMap<Digest, Digest>,
    base: Option<&Base>,
    archive: &Path,
) -> Result<(ArchiveImage, bool), TransferError> {
    let primary = &image.platforms[image.primary];
    let mut layers = Vec::with_capacity(primary.parsed.layers.len());
    for (layer, diff_id) in primary.parsed.layers.iter().zip(&primary.diff_ids) {
        match uncompressed_copies.get(&layer.digest) {
            Some(actual) if actual != diff_id => {
                return Err(TransferError::DiffIdMismatch {
                    layer: layer.digest.clone(),
                    origin: format!("being saved into {}", archive.display()),
                    expected: diff_id.clone(),
                    actual: actual.clone(),
                });
            }
            Some(uncompressed) => layers.push(uncompressed.clone()),
            None => layers.push(layer.digest.clone()),
        }
    }
    // docker load reads only this archive: an image it cannot load whole is not offered to it.
    let needs_base =
        base.is_some_and(|base| primary.parsed.layers.iter().any(|layer| base.blob(&layer.digest).is_some()));
    let archive_image = ArchiveImage {
        descriptor: image.top.descriptor(),
        name: image.destination.to_string(),
        tag: image.destination.tag().map(str::to_owned),
        docker: (!needs_base).then(|| DockerImageEntry {
            config: primary.parsed.config.digest.clone(),
            repo_tags: image.destination.familiar_tagged().into_iter().collect(),
            layers,
        }),
    };
    Ok((archive_image, needs_base))
}

/// Decompresses the zstd layer at `path` into `output`, which hashes what
/// it is given: that hash is the layer's DiffID and names the copy.
fn decompress_zstd<W: io::Write>(path: &Path, mut output: W) -> io::Result<W> {
    let mut decoder = zstd::stream::read::Decoder::new(File::open(path)?)?;
    io::copy(&mut decoder, &mut output)?;
    Ok(output)
}

/// Copies a streamed blob into a temp file beside the archive, checking size and digest.
fn spool_verified(
    reader: &mut dyn io::Read,
    descriptor: &Descriptor,
    archive: &Path,
) -> Result<tempfile::NamedTempFile, TransferError> {
    let dir = archive.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut spool = || -> io::Result<(tempfile::NamedTempFile, Sha256Hasher)> {
        let mut output = HashingWriter::new(io::BufWriter::new(tempfile::NamedTempFile::new_in(dir)?));
        io::copy(reader, &mut output)?;
        let HashingWriter { inner, hasher } = output;
        Ok((inner.into_inner().map_err(io::IntoInnerError::into_error)?, hasher))
    };
    let (file, hasher) = spool().map_err(|error| {
        TransferError::io(format!("spooling layer {} next to the archive", descriptor.digest), error)
    })?;
    let size = hasher.bytes();
    let actual = hasher.finish();
    if actual != descriptor.digest || size != descriptor.size {
        return Err(TransferError::DigestMismatch { what: "layer", expected: descriptor.digest.clone(), actual });
    }
    Ok(file)
}
