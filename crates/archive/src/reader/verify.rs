//! Offline verification of an archive: every blob re-hashed, every image's
//! closure checked, with nothing but the archive itself.

use std::collections::HashSet;

use hpn_oci::media_type::{LayerCompression, layer_compression};
use hpn_oci::{Descriptor, Digest, ImageConfig, ParsedManifest};
use rayon::prelude::*;

use super::layout::{HASH_BUFFER, hash_entry};
use super::{ArchiveReader, Blob, METADATA_LIMIT};

/// Index nesting followed; deeper ones are reported, not followed.
const MAX_INDEX_DEPTH: usize = 4;

/// What [`ArchiveReader::verify`] found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Verification {
    /// Images checked.
    pub images: usize,
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Platforms an index lists that the archive does not hold (a save of
    /// some platforms only): not a fault, said so the reader knows.
    pub platforms_absent: usize,
    /// Everything that does not hold, each naming where.
    pub problems: Vec<Problem>,
}

impl Verification {
    /// Whether everything holds.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing of an archive that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: the archive entry, or the image and what of it.
    pub place: String,
    /// The blob concerned, when there is one.
    pub digest: Option<Digest>,
    /// What is wrong.
    pub reason: String,
}

impl ArchiveReader {
    /// Re-hashes every blob the archive holds (in parallel, on rayon's pool)
    /// and checks each image's closure: index → manifests present → config
    /// present and parsable → every layer present, as many DiffIDs as layers,
    /// and each uncompressed layer's digest equal to its DiffID. Reads the
    /// whole archive; nothing is written.
    pub fn verify(&self) -> Verification {
        let mut verification = Verification { images: self.images.len(), ..Verification::default() };
        let entries: Vec<(&Digest, &super::index::FileEntry)> = self
            .blobs
            .iter()
            .filter_map(|(digest, blob)| match blob {
                Blob::Entry(entry) => Some((digest, entry)),
                Blob::Memory(_) => None,
            })
            .collect();
        verification.blobs = entries.len();
        verification.bytes = entries.iter().map(|(_, entry)| entry.size).sum();
        let hashed: Vec<Problem> = entries
            .par_iter()
            .map_init(
                || vec![0; HASH_BUFFER],
                |buffer, (digest, entry)| match hash_entry(&self.path, &self.storage, entry, buffer) {
                    Ok(actual) if actual == **digest => None,
                    Ok(actual) => Some(Problem {
                        place: entry.name.clone(),
                        digest: Some((*digest).clone()),
                        reason: format!("its content hashes to {actual}: the blob is corrupt"),
                    }),
                    Err(error) => Some(Problem {
                        place: entry.name.clone(),
                        digest: Some((*digest).clone()),
                        reason: format!("cannot be read: {error}"),
                    }),
                },
            )
            .flatten()
            .collect();
        let corrupt: HashSet<Digest> = hashed.iter().filter_map(|problem| problem.digest.clone()).collect();
        verification.problems = hashed;

        let mut checked = HashSet::new();
        for image in &self.images {
            let label =
                image.names.first().cloned().unwrap_or_else(|| format!("unnamed image {}", image.manifest.digest));
            let descriptor = Descriptor::new(
                &image.manifest.media_type,
                image.manifest.digest.clone(),
                image.manifest.bytes.len() as u64,
            );
            self.check_manifest(&label, &descriptor, 0, &corrupt, &mut checked, &mut verification);
        }
        verification
    }

    /// Checks one manifest or index and what it points to, once per digest.
    fn check_manifest(
        &self,
        image: &str,
        descriptor: &Descriptor,
        depth: usize,
        corrupt: &HashSet<Digest>,
        checked: &mut HashSet<Digest>,
        verification: &mut Verification,
    ) {
        if !checked.insert(descriptor.digest.clone()) || corrupt.contains(&descriptor.digest) {
            return;
        }
        let mut problem = |what: &str, digest: &Digest, reason: String| {
            verification.problems.push(Problem {
                place: format!("{image}: {what}"),
                digest: Some(digest.clone()),
                reason,
            });
        };
        let bytes = match self.read_blob(&descriptor.digest, METADATA_LIMIT) {
            Ok(bytes) => bytes,
            Err(error) => return problem("manifest", &descriptor.digest, error.to_string()),
        };
        match ParsedManifest::parse(&bytes, Some(&descriptor.media_type)) {
            Err(error) => problem("manifest", &descriptor.digest, format!("does not parse: {error}")),
            Ok((ParsedManifest::Index(_), _)) if depth >= MAX_INDEX_DEPTH => {
                problem("index", &descriptor.digest, format!("nested more than {MAX_INDEX_DEPTH} deep"))
            }
            Ok((ParsedManifest::Index(index), _)) => {
                let present: Vec<&Descriptor> =
                    index.manifests.iter().filter(|child| self.contains_blob(&child.digest)).collect();
                if present.is_empty() {
                    return problem("index", &descriptor.digest, "the archive holds none of its manifests".into());
                }
                verification.platforms_absent += index.manifests.len() - present.len();
                for child in present {
                    self.check_manifest(image, child, depth + 1, corrupt, checked, verification);
                }
            }
            Ok((ParsedManifest::Image(manifest), _)) => {
                let config = match self.read_blob(&manifest.config.digest, METADATA_LIMIT) {
                    Ok(config) => config,
                    Err(_) if corrupt.contains(&manifest.config.digest) => return,
                    Err(error) => return problem("config", &manifest.config.digest, error.to_string()),
                };
                let diff_ids = match ImageConfig::parse(&config) {
                    Ok(config) => config.rootfs.diff_ids,
                    Err(error) => {
                        return problem("config", &manifest.config.digest, format!("does not parse: {error}"));
                    }
                };
                if diff_ids.len() != manifest.layers.len() {
                    problem(
                        "config",
                        &manifest.config.digest,
                        format!("lists {} DiffIDs for {} layers", diff_ids.len(), manifest.layers.len()),
                    );
                }
                for (layer, diff_id) in
                    manifest.layers.iter().zip(diff_ids.iter().map(Some).chain(std::iter::repeat(None)))
                {
                    match self.blob_size(&layer.digest) {
                        None => problem("layer", &layer.digest, "is missing from the archive".into()),
                        Some(size) if size != layer.size => problem(
                            "layer",
                            &layer.digest,
                            format!("is {size} bytes, but the manifest says {}", layer.size),
                        ),
                        Some(_) => {}
                    }
                    let uncompressed = layer_compression(&layer.media_type) == Some(LayerCompression::None);
                    if let Some(diff_id) = diff_id.filter(|diff_id| uncompressed && **diff_id != layer.digest) {
                        problem("layer", &layer.digest, format!("is uncompressed, but its DiffID is {diff_id}"));
                    }
                }
            }
        }
    }
}
