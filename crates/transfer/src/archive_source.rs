use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hpn_archive::{ArchiveReader, ArchivedImage, BaseBlob};
use hpn_oci::{BlobStream, Descriptor, Digest, ImageConfig, ParsedManifest, RawManifest, Reference, limits};

use crate::attachments::{self, Attachment, tagged};
use crate::endpoint::{BlobContent, ImageSource, parse_manifest};
use crate::error::TransferError;
use crate::hashing::DiffIdCheck;
use crate::layer_compression::LayerCompressor;

/// Read size when streaming a blob out of the archive file.
const CHUNK: usize = 256 * 1024;
/// Chunks between the reading thread and the consumer: bounds memory per blob.
const CHANNEL_DEPTH: usize = 8;
/// Index nesting followed when collecting DiffIDs; the engine refuses deeper ones anyway.
const MAX_INDEX_DEPTH: usize = 2;

/// One image of an archive and the names it will be known by.
#[derive(Debug, Clone)]
pub struct ArchivedImageNames {
    /// Normalized names; empty for an image the archive does not name.
    pub names: Vec<Reference>,
    /// Digest of its top-level manifest (synthesized for docker-only archives).
    pub digest: Digest,
}

/// Reads images out of an archive file or OCI layout directory, any of the
/// formats hpn-archive understands, blob by blob from their offsets.
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    reader: Arc<ArchiveReader>,
    /// Name → position in the reader's images.
    by_name: HashMap<Reference, usize>,
    /// The archive's images, attachments aside.
    images: Vec<ArchivedImageNames>,
    /// The position of each of `images` in the reader's images.
    positions: Vec<usize>,
    /// Entries whose every name is an attachment's tag (`REPO:sha256-<hex>.sig`,
    /// a fallback index `REPO:sha256-<hex>`): listed by
    /// [`ImageSource::attachments`], never as images.
    attachment_refs: Arc<HashMap<String, Descriptor>>,
    /// Layer digest → the DiffIDs the archive's configs list for it (one,
    /// unless configs disagree). Checked as each layer streams out.
    diff_ids: Arc<HashMap<Digest, Vec<Digest>>>,
    /// Set for a registry destination: plain-tar layers of synthesized
    /// manifests go out gzip-compressed.
    compressor: Option<Arc<LayerCompressor>>,
    /// For a differential bundle: the layers its bill says are left to the
    /// base, so that one the destination lacks is named as such.
    base_blobs: Arc<HashMap<Digest, BaseBlob>>,
}

impl ArchiveSource {
    /// Whether an archive's entry is an attachment (a signature, SBOM or
    /// attestation under its subject's tag, or a fallback index) rather than
    /// an image: what `hpn load` and `hpn push -i` skip as images and carry
    /// with their subjects, and `hpn verify` counts apart.
    pub fn is_attachment_entry(image: &ArchivedImage) -> bool {
        names_only_attachments(&normalize_names(&image.names))
    }

    /// Opens and indexes the archive (`-` reads one from stdin) on the
    /// blocking pool: indexing reads the file's headers, and a docker-only
    /// archive's layers are hashed once.
    pub async fn open(path: &Path) -> Result<Self, TransferError> {
        let path = path.to_owned();
        let (reader, diff_ids) = tokio::task::spawn_blocking(move || {
            let reader = open_reader(&path)?;
            let diff_ids = expected_diff_ids(&reader);
            Ok::<_, TransferError>((reader, diff_ids))
        })
        .await
        .map_err(|join| TransferError::task_failed("archive indexing", join))??;
        Ok(Self::around(reader, diff_ids))
    }

    /// Opens every archive of `paths`, joining the volumes of a set
    /// (`hpn save --split`, in any order) into one source
    /// ([`ArchiveReader::join_volumes`]). Each result is labelled with what it
    /// was opened from, for messages.
    pub async fn open_all(paths: &[PathBuf]) -> Vec<(String, Result<Self, TransferError>)> {
        let paths = paths.to_vec();
        let opened = tokio::task::spawn_blocking(move || {
            let mut out: Vec<(String, Result<Self, TransferError>)> = Vec::new();
            let mut readers = Vec::new();
            for path in &paths {
                match open_reader(path) {
                    Ok(reader) => readers.push(reader),
                    Err(error) => out.push((path.display().to_string(), Err(error.into()))),
                }
            }
            for joined in ArchiveReader::join_volumes(readers) {
                out.push(match joined {
                    Ok(reader) => {
                        let diff_ids = expected_diff_ids(&reader);
                        (reader.path().display().to_string(), Ok(Self::around(reader, diff_ids)))
                    }
                    Err(error) => ("volume set".to_owned(), Err(error.into())),
                });
            }
            out
        })
        .await;
        opened.unwrap_or_else(|join| {
            vec![("archives".to_owned(), Err(TransferError::task_failed("archive indexing", join)))]
        })
    }

    fn around(reader: ArchiveReader, diff_ids: HashMap<Digest, Vec<Digest>>) -> Self {
        let mut by_name = HashMap::new();
        let mut images = Vec::new();
        let mut positions = Vec::new();
        let mut attachment_refs = HashMap::new();
        for (position, image) in reader.images().iter().enumerate() {
            let names = normalize_names(&image.names);
            if names_only_attachments(&names) {
                for name in names {
                    attachment_refs.insert(name.to_string(), image.manifest.descriptor());
                }
                continue;
            }
            positions.push(position);
            for name in &names {
                by_name.entry(name.clone()).or_insert(position);
            }
            images.push(ArchivedImageNames { names, digest: image.manifest.digest.clone() });
        }
        // An unreadable bill only loses the naming of base layers; `hpn verify` reports it.
        let base_blobs = match reader.bill_of_contents() {
            Some(Ok(bill)) => bill.base_blobs.into_iter().map(|blob| (blob.digest.clone(), blob)).collect(),
            _ => HashMap::new(),
        };
        Self {
            reader: Arc::new(reader),
            by_name,
            images,
            positions,
            attachment_refs: Arc::new(attachment_refs),
            diff_ids: Arc::new(diff_ids),
            compressor: None,
            base_blobs: Arc::new(base_blobs),
        }
    }

    /// Images of a set of volumes that need volumes not given (see
    /// [`ArchiveReader::incomplete_images`]), as errors naming them.
    pub fn incomplete_images(&self) -> Vec<(String, TransferError)> {
        self.reader
            .incomplete_images()
            .iter()
            .map(|image| {
                let error = hpn_archive::ArchiveError::MissingVolumes {
                    archive: self.reader.path().to_owned(),
                    image: image.name.clone(),
                    missing: image.missing.clone(),
                };
                (image.name.clone(), error.into())
            })
            .collect()
    }

    /// This source, giving the plain-tar layers of images the archive has no
    /// manifest for (docker save before 25, skopeo docker-archives) as gzip
    /// layers in the manifest hpn makes for them, as `docker push` sends
    /// them. For a destination where layers are kept to be pulled again.
    pub fn compressing_plain_layers(self) -> Result<Self, TransferError> {
        Ok(Self { compressor: Some(Arc::new(LayerCompressor::new()?)), ..self })
    }

    /// The archive file or directory read.
    pub fn path(&self) -> PathBuf {
        self.reader.path().to_owned()
    }

    /// Every image the archive holds, with the names it gives them.
    pub fn images(&self) -> &[ArchivedImageNames] {
        &self.images
    }

    /// The image of a one-image archive, found by digest when unnamed (that
    /// placeholder name is never written anywhere); an archive of several
    /// needs the caller to name one.
    pub fn only_image(&self) -> Result<Reference, TransferError> {
        match self.images.as_slice() {
            [image] => Ok(image.names.first().cloned().unwrap_or_else(|| {
                Reference::new("localhost", "unnamed", None, Some(image.digest.clone())).expect("a valid placeholder")
            })),
            images => Err(TransferError::ImageNameRequired {
                archive: self.reader.path().to_owned(),
                count: images.len(),
                names: images.iter().flat_map(|image| image.names.iter().map(ToString::to_string)).collect(),
            }),
        }
    }

    fn not_found(&self, image: &Reference) -> TransferError {
        let names: Vec<String> = self.images.iter().flat_map(|i| i.names.iter().map(ToString::to_string)).collect();
        TransferError::Unsupported(format!(
            "archive {} has no image {image}; it has: {}",
            self.reader.path().display(),
            if names.is_empty() { "no named images".to_owned() } else { names.join(", ") }
        ))
    }
}

fn open_reader(path: &Path) -> Result<ArchiveReader, hpn_archive::ArchiveError> {
    if path == Path::new("-") { ArchiveReader::open_stdin() } else { ArchiveReader::open(path) }
}

/// What each layer in the archive must decompress to, from the config of
/// every image manifest the archive holds. A manifest or config that cannot be
/// read is skipped here: the engine reports it when it gets to that image.
fn expected_diff_ids(reader: &ArchiveReader) -> HashMap<Digest, Vec<Digest>> {
    let mut diff_ids: HashMap<Digest, Vec<Digest>> = HashMap::new();
    let mut visited = HashSet::new();
    let mut pending: Vec<(Bytes, String, usize)> = reader
        .images()
        .iter()
        .map(|image| (image.manifest.bytes.clone(), image.manifest.media_type.clone(), 0))
        .collect();
    while let Some((bytes, media_type, depth)) = pending.pop() {
        if !visited.insert(Digest::of(&bytes)) {
            continue;
        }
        match ParsedManifest::parse(&bytes, Some(&media_type)) {
            Ok((ParsedManifest::Index(index), _)) if depth < MAX_INDEX_DEPTH => {
                for child in index.manifests.iter().filter(|child| !visited.contains(&child.digest)) {
                    if let Ok(bytes) = reader.read_blob(&child.digest, limits::CONFIG) {
                        pending.push((bytes.into(), child.media_type.clone(), depth + 1));
                    }
                }
            }
            Ok((ParsedManifest::Image(manifest), _)) => {
                let Ok(config) = reader.read_blob(&manifest.config.digest, limits::CONFIG) else { continue };
                let Ok(config) = ImageConfig::parse(&config) else { continue };
                for (layer, diff_id) in manifest.layers.iter().zip(config.rootfs.diff_ids) {
                    let expected = diff_ids.entry(layer.digest.clone()).or_default();
                    if !expected.contains(&diff_id) {
                        expected.push(diff_id);
                    }
                }
            }
            _ => {}
        }
    }
    diff_ids
}

/// Archives name images in several places (RepoTags in familiar form,
/// io.containerd.image.name in full, org.opencontainers.image.ref.name often
/// the bare tag). A name that is only another name's tag is not an image name.
/// Whether an entry of these names is an attachment (every name an
/// attachment's tag: `REPO:sha256-<hex>.sig`, a fallback index
/// `REPO:sha256-<hex>`) rather than an image.
fn names_only_attachments(names: &[Reference]) -> bool {
    !names.is_empty() && names.iter().all(|name| name.tag().and_then(attachments::parse_tag).is_some())
}

fn normalize_names(names: &[String]) -> Vec<Reference> {
    let parsed: Vec<(String, Reference)> = names
        .iter()
        .filter_map(|name| name.parse::<Reference>().ok().map(|reference| (name.clone(), reference)))
        .collect();
    // Sets, not scans: an image of 10,000 names is normalized in O(n).
    let mut tags: HashMap<&str, usize> = HashMap::new();
    for (_, reference) in &parsed {
        if let Some(tag) = reference.tag() {
            *tags.entry(tag).or_default() += 1;
        }
    }
    let mut normalized: Vec<Reference> = Vec::new();
    let mut seen = HashSet::new();
    for (text, reference) in &parsed {
        // Another name has this bare text as its tag (a bare name is its own tag only once).
        let own_tag = usize::from(reference.tag() == Some(text.as_str()));
        let is_bare_tag_of_another =
            !text.contains(['/', ':', '@']) && tags.get(text.as_str()).is_some_and(|count| *count > own_tag);
        if !is_bare_tag_of_another && seen.insert(reference) {
            normalized.push(reference.clone());
        }
    }
    normalized
}

impl ImageSource for ArchiveSource {
    async fn resolve(&self, image: &Reference) -> Result<RawManifest, TransferError> {
        let position = match self.by_name.get(image) {
            Some(position) => *position,
            None => image
                .digest()
                .and_then(|digest| self.images.iter().position(|candidate| &candidate.digest == digest))
                .map(|found| self.positions[found])
                .ok_or_else(|| self.not_found(image))?,
        };
        let archived = &self.reader.images()[position];
        let manifest = &archived.manifest;
        let (raw, parsed) = parse_manifest(manifest.bytes.clone(), Some(&manifest.media_type), || {
            format!("image {image} in archive {}", self.reader.path().display())
        })?;
        match (&self.compressor, parsed) {
            (Some(compressor), ParsedManifest::Image(parsed)) if archived.synthesized => {
                compressor.compress_layers(&self.reader, raw, parsed).await
            }
            _ => Ok(raw),
        }
    }

    async fn manifest(&self, image: &Reference, descriptor: &Descriptor) -> Result<RawManifest, TransferError> {
        let reader = Arc::clone(&self.reader);
        let digest = descriptor.digest.clone();
        let bytes = tokio::task::spawn_blocking(move || reader.read_blob(&digest, limits::CONFIG))
            .await
            .map_err(|join| TransferError::task_failed("archive read", join))??;
        let (raw, _) = parse_manifest(Bytes::from(bytes), Some(&descriptor.media_type), || {
            format!("image {image}, manifest {} in archive {}", descriptor.digest, self.reader.path().display())
        })?;
        Ok(raw)
    }

    async fn has_manifest(&self, descriptor: &Descriptor) -> Result<bool, TransferError> {
        Ok(self.reader.blob_size(&descriptor.digest).is_some())
    }

    /// The attachments index.json lists under tags of `image`'s repository,
    /// as `hpn save` (and the store) records them.
    async fn attachments(&self, image: &Reference, subject: &Digest) -> Result<Vec<Attachment>, TransferError> {
        let (reader, refs) = (Arc::clone(&self.reader), Arc::clone(&self.attachment_refs));
        let (image, subject) = (image.clone(), subject.clone());
        tokio::task::spawn_blocking(move || {
            attachments::listed_under_tags(
                &subject,
                |tag| Ok(refs.get(&tagged(&image, tag).to_string()).cloned()),
                |index| Ok(reader.read_blob(&index.digest, limits::MANIFEST)?),
                |tag| format!("{} in archive {}", tagged(&image, tag), reader.path().display()),
            )
        })
        .await
        .map_err(|join| TransferError::task_failed("archive read", join))?
    }

    async fn blob(&self, image: &Reference, descriptor: &Descriptor) -> Result<BlobContent, TransferError> {
        if let Some(spooled) = self.compressor.as_ref().and_then(|compressor| compressor.spooled(&descriptor.digest)) {
            return Ok(BlobContent::File(spooled));
        }
        let reader = Arc::clone(&self.reader);
        let digest = descriptor.digest.clone();
        let opened = tokio::task::spawn_blocking(move || reader.open_blob(&digest))
            .await
            .map_err(|join| TransferError::task_failed("archive read", join))??;
        let blob = opened.ok_or_else(|| match self.base_blobs.get(&descriptor.digest) {
            Some(base) => TransferError::BaseBlobMissing {
                image: image.to_string(),
                digest: descriptor.digest.clone(),
                archive: self.reader.path().to_owned(),
                base_file: base.file.clone(),
                base_set: base.set.clone(),
            },
            None => TransferError::Unsupported(format!(
                "archive {} lacks blob {} of image {image}; the archive is incomplete",
                self.reader.path().display(),
                descriptor.digest
            )),
        })?;
        let check = match self.diff_ids.get(&descriptor.digest) {
            Some(expected) => {
                DiffIdCheck::new(descriptor, expected, format!("in archive {}", self.reader.path().display()))?
            }
            None => None,
        };
        Ok(BlobContent::Stream(read_as_stream(
            blob,
            check,
            format!("reading {} from {}", descriptor.digest, self.reader.path().display()),
        )))
    }
}

/// Streams a blocking reader through a bounded channel, read on the blocking
/// pool, where `check` also decompresses and hashes it. A failed check is the
/// stream's last item, so the consumer never accepts the blob.
fn read_as_stream(
    mut reader: impl Read + Send + 'static,
    mut check: Option<DiffIdCheck>,
    context: String,
) -> BlobStream {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, TransferError>>(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        loop {
            // read_to_end fills spare capacity without zeroing it first, which a
            // `vec![0; CHUNK]` per chunk would do for every byte of every blob.
            let mut buffer = Vec::with_capacity(CHUNK);
            let chunk = match (&mut reader).take(CHUNK as u64).read_to_end(&mut buffer) {
                Ok(0) => {
                    if let Some(Err(error)) = check.take().map(DiffIdCheck::finish) {
                        // The receiver may be gone already; then nobody needs to hear it.
                        let _ = sender.blocking_send(Err(error));
                    }
                    return;
                }
                Ok(_) => match check.as_mut().map(|check| check.update(&buffer)) {
                    Some(Err(error)) => Err(error),
                    _ => Ok(Bytes::from(buffer)),
                },
                Err(error) => Err(TransferError::io(context.clone(), error)),
            };
            let failed = chunk.is_err();
            if sender.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item.map_err(std::io::Error::other), receiver))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_tags_that_belong_to_another_name_are_dropped() {
        let names = ["127.0.0.1:5000/fixtures/app:1".to_owned(), "1".to_owned(), "nginx:latest".to_owned()];
        let normalized: Vec<String> = normalize_names(&names).iter().map(ToString::to_string).collect();
        assert_eq!(normalized, ["127.0.0.1:5000/fixtures/app:1", "docker.io/library/nginx:latest"]);
        let alone = normalize_names(&["busybox".to_owned()]);
        assert_eq!(alone[0].to_string(), "docker.io/library/busybox:latest");
    }
}
