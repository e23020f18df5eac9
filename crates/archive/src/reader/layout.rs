//! Working out which images an indexed archive holds, under which names, and
//! where each of their blobs is.
//!
//! Two descriptions may be present, and are merged:
//! - the OCI side (`index.json` + `blobs/sha256/`): original registry
//!   manifests, used as they are;
//! - the Docker side (`manifest.json` [+ legacy `repositories`]): config and
//!   layer *files*. An entry that describes an image the OCI side already has
//!   (same config) only adds names; any other gets a synthesized manifest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use hpn_oci::{
    Descriptor, Digest, ImageConfig, ImageManifest, ParsedManifest, RawManifest, Sha256Hasher, annotation, media_type,
};
use rayon::prelude::*;
use serde::Deserialize;

use super::index::{self, FileEntry, Index, Location, Lookup};
use super::source::Storage;
use super::{ArchivedImage, Blob, BlobReader, METADATA_LIMIT, read_verified, read_whole};
use crate::error::ArchiveError;
use crate::format::{self, BillOfContents, ManifestItem, Repositories};

/// hpn-oci has no constant for it: registries never serve it, only archives hold such layers.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// An index of indexes of … is legal; this deep is not sane.
const MAX_INDEX_DEPTH: usize = 4;
pub(crate) const HASH_BUFFER: usize = 1024 * 1024;

pub(crate) struct Contents {
    pub images: Vec<ArchivedImage>,
    pub blobs: HashMap<Digest, Blob>,
    /// The bill of contents, as stored, when the archive has one.
    pub bill: Option<Vec<u8>>,
    /// The bill's signature, as stored, when the archive has one.
    pub bill_signature: Option<Vec<u8>>,
    /// Parts of blobs cut across volumes (`hpn-parts/…`), by entry name.
    pub parts: HashMap<String, FileEntry>,
}

pub(crate) fn read_contents(archive: &Path, storage: &Storage, index: &Index) -> Result<Contents, ArchiveError> {
    let has_oci_index = index.get(format::INDEX_JSON).is_some();
    let has_docker_manifest = index.get(format::MANIFEST_JSON).is_some();
    if !has_oci_index && !has_docker_manifest {
        return Err(ArchiveError::NotAnArchive {
            path: archive.to_owned(),
            reason: "it has neither index.json (an OCI layout) nor manifest.json (a docker save archive)".to_owned(),
        });
    }
    let mut builder = Builder {
        archive,
        storage,
        index,
        blobs: HashMap::new(),
        hashed: HashMap::new(),
        expected_elsewhere: HashSet::new(),
    };
    builder.register_oci_blobs()?;
    let bill = match index.lookup(format::BILL_OF_CONTENTS) {
        Lookup::Found(entry) => Some(builder.read_entry(&entry.clone())?),
        Lookup::Missing => None,
        Lookup::Unusable(reason) => return Err(builder.bad_entry(format::BILL_OF_CONTENTS, reason)),
    };
    // A bill that does not parse names no base: `verify` reports it, and the layers count as missing.
    if let Some(Ok(bill)) = bill.as_deref().map(serde_json::from_slice::<BillOfContents>) {
        builder.expected_elsewhere = bill.base_blobs.into_iter().map(|blob| blob.digest).collect();
    }
    let mut found = Vec::new();
    if has_oci_index {
        builder.read_oci_index(&mut found)?;
    }
    if has_docker_manifest {
        let tops = builder.read_docker_manifest(&mut found)?;
        builder.read_repositories(&mut found, &tops)?;
    }
    let bill = match index.lookup(format::BILL_OF_CONTENTS) {
        Lookup::Found(entry) => Some(builder.read_entry(&entry.clone())?),
        Lookup::Missing => None,
        Lookup::Unusable(reason) => return Err(builder.bad_entry(format::BILL_OF_CONTENTS, reason)),
    };
    let bill_signature = match index.lookup(crate::BILL_SIGNATURE) {
        Lookup::Found(entry) if entry.size <= METADATA_LIMIT => Some(builder.read_entry(&entry.clone())?),
        Lookup::Found(_) | Lookup::Unusable(_) => {
            return Err(builder.bad_entry(crate::BILL_SIGNATURE, "it is not a small regular file".to_owned()));
        }
        Lookup::Missing => None,
    };
    let mut parts = HashMap::new();
    for name in index.names().filter(|name| name.starts_with(format::PARTS_DIR)) {
        match index.lookup(name) {
            Lookup::Found(entry) => {
                parts.insert(name.to_owned(), entry.clone());
            }
            Lookup::Missing => {}
            Lookup::Unusable(reason) => return Err(builder.bad_entry(name, reason)),
        }
    }
    Ok(Contents {
        images: found.into_iter().map(|found| found.image).collect(),
        blobs: builder.blobs,
        bill,
        bill_signature,
        parts,
    })
}

/// The manifests of indexes already checked, by everything the check depends on (digest,
/// size, media type, depth), with their configs. An index may list one manifest many times,
/// and indexes that list such an index many times over would otherwise have it read a number
/// of times exponential in their depth: a 30 KB archive could keep hpn busy for hours.
type Checked = HashMap<(Digest, u64, String, usize), Vec<Digest>>;

struct Found {
    image: ArchivedImage,
    /// The configs of this image's manifests that are in the archive (one per
    /// platform present, for an index): manifest.json entries with one of
    /// these configs describe this image.
    configs: Vec<Digest>,
}

/// A manifest.json element with the optional `LayerSources` (crane and
/// Docker 25+ write it: DiffID → descriptor, used for foreign layers).
#[derive(Deserialize)]
struct DockerItem {
    #[serde(flatten)]
    item: ManifestItem,
    #[serde(rename = "LayerSources", default)]
    layer_sources: Option<BTreeMap<String, Descriptor>>,
}

#[derive(Deserialize)]
struct OciIndexFile {
    manifests: Vec<Descriptor>,
}

/// A manifest.json element with its files found.
struct DockerImage {
    repo_tags: Vec<String>,
    config_digest: Digest,
    config_size: u64,
    diff_ids: Vec<Digest>,
    layers: Vec<DockerLayer>,
    layer_sources: BTreeMap<String, Descriptor>,
}

enum DockerLayer {
    /// A file of the archive; `named` is the digest its path gives
    /// (`blobs/sha256/<hex>`), if it gives one.
    File { entry: FileEntry, named: Option<Digest> },
    /// Listed in LayerSources as a foreign layer and not in the archive.
    Foreign(Descriptor),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerFormat {
    Tar,
    Gzip,
    Zstd,
    Other(&'static str),
}

struct Builder<'a> {
    archive: &'a Path,
    storage: &'a Storage,
    index: &'a Index,
    blobs: HashMap<Digest, Blob>,
    /// Digests of files hashed at open, so a file listed many times is hashed once.
    hashed: HashMap<Location, Digest>,
    /// Layers a differential bundle's bill says it leaves to its base.
    expected_elsewhere: HashSet<Digest>,
}

impl Builder<'_> {
    /// Every `blobs/sha256/<hex>` is a blob under its name; it is verified
    /// when read (read_blob) or by the caller streaming it.
    fn register_oci_blobs(&mut self) -> Result<(), ArchiveError> {
        for name in self.index.names() {
            let Some(digest) = named_digest(name) else { continue };
            match self.index.lookup(name) {
                Lookup::Found(entry) => {
                    self.blobs.insert(digest, Blob::Entry(entry.clone()));
                }
                Lookup::Missing => {}
                Lookup::Unusable(reason) => return Err(self.bad_entry(name, reason)),
            }
        }
        Ok(())
    }

    fn read_oci_index(&mut self, found: &mut Vec<Found>) -> Result<(), ArchiveError> {
        let entry = self.entry(format::INDEX_JSON, "the OCI layout")?;
        let bytes = self.read_entry(&entry)?;
        let file: OciIndexFile =
            serde_json::from_slice(&bytes).map_err(|error| self.invalid(format::INDEX_JSON, error.to_string()))?;
        let mut checked = Checked::new();
        // By digest, and each image's names so far: an index.json of n
        // entries (10,000 names of one image, or of 10,000 images) is read in
        // O(n), not by a scan of everything found per entry.
        let mut positions: HashMap<Digest, usize> = HashMap::new();
        let mut names_of: Vec<HashSet<String>> = Vec::new();
        for descriptor in file.manifests {
            let names = names_from_annotations(&descriptor.annotations);
            if let Some(&position) = positions.get(&descriptor.digest) {
                for name in names {
                    if names_of[position].insert(name.clone()) {
                        found[position].image.names.push(name);
                    }
                }
                continue;
            }
            let (bytes, media_type, configs) =
                self.read_manifest_tree(&descriptor, format::INDEX_JSON, 0, &mut checked)?;
            positions.insert(descriptor.digest.clone(), found.len());
            names_of.resize_with(found.len(), HashSet::new);
            names_of.push(names.iter().cloned().collect());
            found.push(Found {
                image: ArchivedImage {
                    names: dedup(names),
                    manifest: RawManifest { bytes: bytes.into(), media_type, digest: descriptor.digest },
                    synthesized: false,
                },
                configs,
            });
        }
        Ok(())
    }

    /// Reads and checks a manifest or index and, for an index, those of its
    /// manifests the archive has. Returns the bytes, media type and the
    /// configs of the image manifests found. An index's manifests already
    /// checked (`checked`) are not read again.
    fn read_manifest_tree(
        &self,
        descriptor: &Descriptor,
        referrer: &str,
        depth: usize,
        checked: &mut Checked,
    ) -> Result<(Vec<u8>, String, Vec<Digest>), ArchiveError> {
        let digest = &descriptor.digest;
        let blob = self.blobs.get(digest).ok_or_else(|| ArchiveError::BlobNotFound {
            path: self.archive.to_owned(),
            digest: digest.clone(),
            referrer: format!("listed in {referrer}"),
        })?;
        let name = blob.name(digest);
        let bytes = read_verified(self.archive, self.storage, blob, digest, METADATA_LIMIT)?;
        if bytes.len() as u64 != descriptor.size {
            return Err(self.invalid(
                referrer,
                format!("it gives {digest} a size of {} bytes, but that blob has {}", descriptor.size, bytes.len()),
            ));
        }
        let (parsed, media_type) = ParsedManifest::parse(&bytes, Some(&descriptor.media_type))
            .map_err(|error| self.invalid(&name, error.to_string()))?;
        let configs = match parsed {
            ParsedManifest::Image(manifest) => {
                self.require_blob(&manifest.config.digest, || format!("the config of manifest {digest}"))?;
                for layer in &manifest.layers {
                    // Foreign (non-distributable) layers live at their URLs, not in archives;
                    // a differential bundle's base layers at the far side.
                    if layer.urls.is_empty() && !self.expected_elsewhere.contains(&layer.digest) {
                        self.require_blob(&layer.digest, || format!("a layer of manifest {digest}"))?;
                    }
                }
                vec![manifest.config.digest]
            }
            ParsedManifest::Index(index) => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(self.invalid(&name, "indexes are nested too deeply".to_owned()));
                }
                // An archive may hold only some platforms of an index (hpn and
                // Docker save the selected ones): missing children are fine,
                // but at least one must be there.
                let mut configs = Vec::new();
                let mut seen = HashSet::new();
                let mut present = 0;
                for child in index.manifests.iter().filter(|child| self.blobs.contains_key(&child.digest)) {
                    present += 1;
                    let key = (child.digest.clone(), child.size, child.media_type.clone(), depth + 1);
                    let child_configs = match checked.get(&key) {
                        Some(child_configs) => child_configs.clone(),
                        None => {
                            let (_, _, child_configs) =
                                self.read_manifest_tree(child, &format!("index {digest}"), depth + 1, checked)?;
                            checked.insert(key, child_configs.clone());
                            child_configs
                        }
                    };
                    configs.extend(child_configs.into_iter().filter(|config| seen.insert(config.clone())));
                }
                if present == 0 && !index.manifests.is_empty() {
                    return Err(self.invalid(
                        &name,
                        format!("none of the {} manifests this index lists is in the archive", index.manifests.len()),
                    ));
                }
                configs
            }
        };
        Ok((bytes, media_type, configs))
    }

    fn require_blob(&self, digest: &Digest, referrer: impl FnOnce() -> String) -> Result<(), ArchiveError> {
        if self.blobs.contains_key(digest) {
            return Ok(());
        }
        Err(ArchiveError::BlobNotFound { path: self.archive.to_owned(), digest: digest.clone(), referrer: referrer() })
    }

    /// Reads manifest.json, hashes the files it lists that have no digest in
    /// their name, checks DiffIDs, and adds names or synthesized images to
    /// `found`. Returns each entry's image (index into `found`) with the
    /// location of its top layer, which legacy `repositories` refers to.
    fn read_docker_manifest(&mut self, found: &mut Vec<Found>) -> Result<Vec<(usize, Location)>, ArchiveError> {
        let entry = self.entry(format::MANIFEST_JSON, "the archive")?;
        let bytes = self.read_entry(&entry)?;
        let items: Vec<DockerItem> =
            serde_json::from_slice(&bytes).map_err(|error| self.invalid(format::MANIFEST_JSON, error.to_string()))?;
        let images = items.into_iter().map(|item| self.resolve_docker_item(item)).collect::<Result<Vec<_>, _>>()?;

        let mut seen = HashSet::new();
        let to_hash: Vec<FileEntry> = images
            .iter()
            .flat_map(|image| &image.layers)
            .filter_map(|layer| match layer {
                DockerLayer::File { entry, named: None } => Some(entry),
                _ => None,
            })
            .filter(|entry| !self.hashed.contains_key(&entry.location) && seen.insert(entry.location.clone()))
            .cloned()
            .collect();
        self.hash_files(to_hash)?;

        let mut tops = Vec::new();
        for image in images {
            let position = self.place_docker_image(image, found)?;
            tops.push(position);
        }
        Ok(tops.into_iter().flatten().collect())
    }

    fn resolve_docker_item(&mut self, item: DockerItem) -> Result<DockerImage, ArchiveError> {
        let DockerItem { item, layer_sources } = item;
        let layer_sources = layer_sources.unwrap_or_default();
        let config_name = self.referenced_name(&item.config)?;
        let config_entry = self.entry(&config_name, format::MANIFEST_JSON)?;
        let config_blob = Blob::Entry(config_entry.clone());
        let (config_digest, config_bytes) = match named_digest(&config_name) {
            Some(digest) => {
                let bytes = read_verified(self.archive, self.storage, &config_blob, &digest, METADATA_LIMIT)?;
                (digest, bytes)
            }
            None => {
                let bytes = self.read_entry(&config_entry)?;
                (Digest::of(&bytes), bytes)
            }
        };
        self.blobs.entry(config_digest.clone()).or_insert(config_blob);
        let config =
            ImageConfig::parse(&config_bytes).map_err(|error| self.invalid(&config_name, error.to_string()))?;
        let diff_ids = config.rootfs.diff_ids;
        if item.layers.len() != diff_ids.len() {
            return Err(self.invalid(
                format::MANIFEST_JSON,
                format!(
                    "it lists {} layers for config {config_name}, whose rootfs has {} DiffIDs",
                    item.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(item.layers.len());
        for (position, path) in item.layers.iter().enumerate() {
            let name = self.referenced_name(path)?;
            let layer = match self.index.lookup(&name) {
                Lookup::Found(entry) => DockerLayer::File { entry: entry.clone(), named: named_digest(&name) },
                Lookup::Missing => match layer_sources.get(&diff_ids[position].to_string()) {
                    Some(descriptor) if is_foreign(&descriptor.media_type) => DockerLayer::Foreign(descriptor.clone()),
                    _ => {
                        return Err(ArchiveError::MissingEntry {
                            path: self.archive.to_owned(),
                            entry: name,
                            referrer: format::MANIFEST_JSON.to_owned(),
                        });
                    }
                },
                Lookup::Unusable(reason) => return Err(self.bad_entry(&name, reason)),
            };
            layers.push(layer);
        }
        Ok(DockerImage {
            repo_tags: item.repo_tags,
            config_digest,
            config_size: config_entry.size,
            diff_ids,
            layers,
            layer_sources,
        })
    }

    /// Checks DiffIDs, then either adds the entry's tags to the OCI image
    /// with the same config or makes an image with a synthesized manifest.
    fn place_docker_image(
        &mut self,
        image: DockerImage,
        found: &mut Vec<Found>,
    ) -> Result<Option<(usize, Location)>, ArchiveError> {
        let label = image.repo_tags.first().cloned().unwrap_or_else(|| format!("with config {}", image.config_digest));
        let mut layers: Vec<(Descriptor, LayerFormat)> = Vec::with_capacity(image.layers.len());
        let mut top = None;
        for (position, layer) in image.layers.iter().enumerate() {
            let (entry, named) = match layer {
                DockerLayer::Foreign(descriptor) => {
                    layers.push((descriptor.clone(), LayerFormat::Gzip));
                    top = None;
                    continue;
                }
                DockerLayer::File { entry, named } => (entry, named),
            };
            let digest = match named {
                Some(digest) => digest.clone(),
                None => self.hashed.get(&entry.location).cloned().expect("every unnamed layer file was hashed"),
            };
            let format = self.layer_format(entry)?;
            let diff_id = &image.diff_ids[position];
            if format == LayerFormat::Tar && digest != *diff_id {
                return Err(ArchiveError::DiffIdMismatch {
                    path: self.archive.to_owned(),
                    entry: entry.name.clone(),
                    image: label,
                    expected: diff_id.clone(),
                    actual: digest,
                });
            }
            let descriptor = match image.layer_sources.get(&diff_id.to_string()) {
                // crane keeps a foreign layer's descriptor (URLs, media type) here.
                Some(source) if is_foreign(&source.media_type) && source.digest == digest => source.clone(),
                _ => Descriptor::new("", digest, entry.size),
            };
            top = Some(entry.location.clone());
            layers.push((descriptor, format));
        }

        if let Some(index) =
            found.iter().position(|found| !found.image.synthesized && found.configs.contains(&image.config_digest))
        {
            add_names(&mut found[index].image.names, image.repo_tags);
            return Ok(top.map(|top| (index, top)));
        }

        let manifest = self.synthesize(&image, layers, &label)?;
        let index = match found.iter().position(|found| found.image.manifest.digest == manifest.digest) {
            Some(index) => {
                add_names(&mut found[index].image.names, image.repo_tags);
                index
            }
            None => {
                self.blobs.insert(manifest.digest.clone(), Blob::Memory(Arc::from(&manifest.bytes[..])));
                found.push(Found {
                    image: ArchivedImage { names: dedup(image.repo_tags), manifest, synthesized: true },
                    configs: vec![image.config_digest],
                });
                found.len() - 1
            }
        };
        Ok(top.map(|top| (index, top)))
    }

    /// The registry manifest the archive does not have: Docker schema2 types
    /// (or OCI ones when a layer is zstd, which Docker's types cannot say),
    /// each layer as the file in the archive is.
    fn synthesize(
        &self,
        image: &DockerImage,
        layers: Vec<(Descriptor, LayerFormat)>,
        label: &str,
    ) -> Result<RawManifest, ArchiveError> {
        let oci = layers.iter().any(|(_, format)| *format == LayerFormat::Zstd);
        let mut descriptors = Vec::with_capacity(layers.len());
        for (mut descriptor, format) in layers {
            if descriptor.media_type.is_empty() {
                descriptor.media_type = match (format, oci) {
                    (LayerFormat::Tar, false) => DOCKER_LAYER,
                    (LayerFormat::Tar, true) => media_type::OCI_LAYER,
                    (LayerFormat::Gzip, false) => media_type::DOCKER_LAYER_GZIP,
                    (LayerFormat::Gzip, true) => media_type::OCI_LAYER_GZIP,
                    (LayerFormat::Zstd, _) => media_type::OCI_LAYER_ZSTD,
                    (LayerFormat::Other(compression), _) => {
                        return Err(self.invalid(
                            format::MANIFEST_JSON,
                            format!(
                                "a layer of image {label} ({}) is {compression}-compressed; registries only take \
                                 gzip, zstd or uncompressed layers",
                                descriptor.digest
                            ),
                        ));
                    }
                }
                .to_owned();
            }
            descriptors.push(descriptor);
        }
        let (manifest_type, config_type) = if oci {
            (media_type::OCI_MANIFEST, media_type::OCI_CONFIG)
        } else {
            (media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG)
        };
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(manifest_type.to_owned()),
            config: Descriptor::new(config_type, image.config_digest.clone(), image.config_size),
            layers: descriptors,
        };
        // Compact, and the field order is that of the structs: the same
        // archive always gives the same bytes, so the same digest.
        let bytes = serde_json::to_vec(&manifest).expect("a manifest always serializes");
        let digest = Digest::of(&bytes);
        Ok(RawManifest { bytes: bytes.into(), media_type: manifest_type.to_owned(), digest })
    }

    /// Legacy `repositories` (`{"repo":{"tag":"<top layer id>"}}`): adds the
    /// names manifest.json does not already give, to the one image whose top
    /// layer is that id's layer. Only names, so a malformed file is skipped.
    fn read_repositories(&self, found: &mut [Found], tops: &[(usize, Location)]) -> Result<(), ArchiveError> {
        let entry = match self.index.lookup(format::REPOSITORIES) {
            Lookup::Found(entry) => entry.clone(),
            Lookup::Missing => return Ok(()),
            Lookup::Unusable(reason) => return Err(self.bad_entry(format::REPOSITORIES, reason)),
        };
        let bytes = self.read_entry(&entry)?;
        let repositories: Repositories = match serde_json::from_slice(&bytes) {
            Ok(repositories) => repositories,
            Err(error) => {
                tracing::warn!(archive = %self.archive.display(), %error, "ignoring malformed legacy repositories file");
                return Ok(());
            }
        };
        for (repository, tags) in repositories {
            for (tag, id) in tags {
                let name = format!("{repository}:{tag}");
                if found.iter().any(|found| found.image.names.contains(&name)) {
                    continue;
                }
                // Docker ≤24 and skopeo name the top layer's legacy directory;
                // Docker 25+ and hpn the top layer blob.
                let location = [format!("{id}/layer.tar"), format::blob_path(&id)].iter().find_map(|candidate| {
                    match self.index.lookup(candidate) {
                        Lookup::Found(entry) => Some(entry.location.clone()),
                        _ => None,
                    }
                });
                let Some(location) = location else { continue };
                let images: HashSet<usize> =
                    tops.iter().filter(|(_, top)| *top == location).map(|(index, _)| *index).collect();
                if let [index] = images.into_iter().collect::<Vec<_>>()[..] {
                    add_names(&mut found[index].image.names, [name]);
                }
            }
        }
        Ok(())
    }

    /// Hashes files on a few threads, each file once; records and registers
    /// their digests.
    fn hash_files(&mut self, entries: Vec<FileEntry>) -> Result<(), ArchiveError> {
        if entries.is_empty() {
            return Ok(());
        }
        // On rayon's pool: hashing is CPU-bound (~1.5 GB/s a core with SHA-NI).
        let results: Vec<Result<(usize, Digest), ArchiveError>> = entries
            .par_iter()
            .enumerate()
            .map_init(
                || vec![0; HASH_BUFFER],
                |buffer, (position, entry)| {
                    hash_entry(self.archive, self.storage, entry, buffer).map(|digest| (position, digest))
                },
            )
            .collect();
        for result in results {
            let (position, digest) = result?;
            let entry = &entries[position];
            self.hashed.insert(entry.location.clone(), digest.clone());
            self.blobs.entry(digest).or_insert_with(|| Blob::Entry(entry.clone()));
        }
        Ok(())
    }

    /// How a layer file is compressed, from its first bytes.
    fn layer_format(&self, entry: &FileEntry) -> Result<LayerFormat, ArchiveError> {
        let mut reader = BlobReader::open(self.archive, self.storage, &Blob::Entry(entry.clone()))?;
        let mut magic = [0u8; 6];
        let mut filled = 0;
        while filled < magic.len() && reader.remaining() > 0 {
            filled += std::io::Read::read(&mut reader, &mut magic[filled..]).map_err(|error| reader.error(error))?;
        }
        Ok(match &magic[..filled] {
            [0x1f, 0x8b, ..] => LayerFormat::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => LayerFormat::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', 0] => LayerFormat::Other("xz"),
            [b'B', b'Z', b'h', ..] => LayerFormat::Other("bzip2"),
            _ => LayerFormat::Tar,
        })
    }

    /// A path manifest.json gives, normalized like entry names.
    fn referenced_name(&self, path: &str) -> Result<String, ArchiveError> {
        index::normalize_reference(path).map_err(|reason| {
            self.bad_entry(path, format!("manifest.json names it, but {}", reason.trim_start_matches("its ")))
        })
    }

    fn entry(&self, name: &str, referrer: &str) -> Result<FileEntry, ArchiveError> {
        match self.index.lookup(name) {
            Lookup::Found(entry) => Ok(entry.clone()),
            Lookup::Missing => Err(ArchiveError::MissingEntry {
                path: self.archive.to_owned(),
                entry: name.to_owned(),
                referrer: referrer.to_owned(),
            }),
            Lookup::Unusable(reason) => Err(self.bad_entry(name, reason)),
        }
    }

    /// A metadata file, refused before reading if it is over the limit.
    fn read_entry(&self, entry: &FileEntry) -> Result<Vec<u8>, ArchiveError> {
        read_whole(self.archive, self.storage, &Blob::Entry(entry.clone()), &entry.name, METADATA_LIMIT)
    }

    fn invalid(&self, entry: &str, reason: String) -> ArchiveError {
        ArchiveError::InvalidMetadata { path: self.archive.to_owned(), entry: entry.to_owned(), reason }
    }

    fn bad_entry(&self, entry: &str, reason: String) -> ArchiveError {
        ArchiveError::BadEntry { path: self.archive.to_owned(), entry: entry.to_owned(), reason }
    }
}

pub(crate) fn hash_entry(
    archive: &Path,
    storage: &Storage,
    entry: &FileEntry,
    buffer: &mut [u8],
) -> Result<Digest, ArchiveError> {
    hash_stored_blob(archive, storage, &Blob::Entry(entry.clone()), buffer)
}

/// The sha256 of a blob read through its [`BlobReader`] (an entry where it
/// lies, or the parts of a blob across volumes, each part checked on the way).
pub(crate) fn hash_stored_blob(
    archive: &Path,
    storage: &Storage,
    blob: &Blob,
    buffer: &mut [u8],
) -> Result<Digest, ArchiveError> {
    let mut reader = BlobReader::open(archive, storage, blob)?;
    let mut hasher = Sha256Hasher::new();
    loop {
        match std::io::Read::read(&mut reader, buffer) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(read) => hasher.update(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(reader.error(error)),
        }
    }
}

/// The digest a `blobs/sha256/<hex>` name promises.
fn named_digest(name: &str) -> Option<Digest> {
    name.strip_prefix(format::BLOBS_SHA256_DIR).and_then(|hex| Digest::from_sha256_hex(hex).ok())
}

fn is_foreign(media_type: &str) -> bool {
    media_type == media_type::DOCKER_LAYER_FOREIGN_GZIP || media_type.contains(".nondistributable.")
}

/// The full name (`io.containerd.image.name`) if there is one, else the OCI
/// ref name (which next to a full name is only its tag).
fn names_from_annotations(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let full = annotations.get(annotation::CONTAINERD_IMAGE_NAME).filter(|name| !name.is_empty());
    let reference = annotations.get(annotation::REF_NAME).filter(|name| !name.is_empty());
    full.or(reference).cloned().into_iter().collect()
}

fn add_names(names: &mut Vec<String>, new: impl IntoIterator<Item = String>) {
    for name in new {
        if !names.contains(&name) {
            names.push(name);
        }
    }
}

fn dedup(names: Vec<String>) -> Vec<String> {
    let mut unique = Vec::with_capacity(names.len());
    add_names(&mut unique, names);
    unique
}
