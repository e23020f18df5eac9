//! Offline verification of an archive: every blob re-hashed, every image's
//! closure checked, with nothing but the archive itself.

use std::collections::{HashMap, HashSet};

use hpn_oci::media_type::{LayerCompression, layer_compression};
use hpn_oci::{Descriptor, Digest, ImageConfig, ParsedManifest};
use rayon::prelude::*;

use super::layout::{HASH_BUFFER, hash_entry};
use super::{ArchiveReader, Blob, METADATA_LIMIT};
use crate::error::ArchiveError;
use crate::format::{BILL_OF_CONTENTS, BillOfContents};

/// Index nesting followed; deeper ones are reported, not followed.
const MAX_INDEX_DEPTH: usize = 4;

/// What the closure walk knows before it starts.
struct Known {
    /// Blobs found corrupt by the re-hash: reported once, not again per image.
    corrupt: HashSet<Digest>,
    /// Blobs the bill says are expected at the far side.
    base: HashSet<Digest>,
}

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
    /// Layers a differential bundle leaves to its base (its bill's
    /// `base_blobs`): expected elsewhere, so not missing.
    pub expected_elsewhere: usize,
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

        let bill = self.bill_of_contents();
        let base: HashSet<Digest> = match &bill {
            Some(Ok(bill)) => bill.base_blobs.iter().map(|blob| blob.digest.clone()).collect(),
            _ => HashSet::new(),
        };
        verification.expected_elsewhere = base.len();
        if let Some(bill) = bill {
            self.check_bill(bill, &mut verification);
        }
        let known = Known { corrupt, base };
        let mut checked = HashSet::new();
        for image in &self.images {
            let label =
                image.names.first().cloned().unwrap_or_else(|| format!("unnamed image {}", image.manifest.digest));
            let descriptor = Descriptor::new(
                &image.manifest.media_type,
                image.manifest.digest.clone(),
                image.manifest.bytes.len() as u64,
            );
            self.check_manifest(&label, &descriptor, 0, &known, &mut checked, &mut verification);
        }
        verification
    }

    /// Checks the bill of contents against what the archive holds: the same
    /// blobs with the same sizes, and every image it lists.
    fn check_bill(&self, bill: Result<BillOfContents, ArchiveError>, verification: &mut Verification) {
        let place = BILL_OF_CONTENTS.to_owned();
        let mut problem = |digest: Option<&Digest>, reason: String| {
            verification.problems.push(Problem { place: place.clone(), digest: digest.cloned(), reason });
        };
        let bill = match bill {
            Ok(bill) if bill.schema == BillOfContents::SCHEMA => bill,
            Ok(bill) => return problem(None, format!("is of schema {:?}, which this hpn does not read", bill.schema)),
            Err(error) => return problem(None, format!("cannot be read: {error}")),
        };
        if bill.volumes != 1 || bill.volume != 1 {
            problem(
                None,
                format!("says this is volume {} of {}; check the set's volumes together", bill.volume, bill.volumes),
            );
        }
        let listed: HashMap<&Digest, u64> = bill.blobs.iter().map(|blob| (&blob.digest, blob.size)).collect();
        for blob in &bill.blobs {
            match self.blob_size(&blob.digest) {
                None => problem(Some(&blob.digest), "is listed but not in the archive".into()),
                Some(size) if size != blob.size => {
                    problem(Some(&blob.digest), format!("is listed with {} bytes but has {size}", blob.size));
                }
                Some(_) => {}
            }
        }
        for (digest, blob) in &self.blobs {
            if matches!(blob, Blob::Entry(_)) && !listed.contains_key(digest) {
                problem(Some(digest), "is in the archive but not listed".into());
            }
        }
        for image in &bill.images {
            if !self.images.iter().any(|held| held.manifest.digest == image.digest) {
                problem(Some(&image.digest), format!("lists image {}, which index.json does not hold", image.name));
            }
        }
    }

    /// Checks one manifest or index and what it points to, once per digest.
    fn check_manifest(
        &self,
        image: &str,
        descriptor: &Descriptor,
        depth: usize,
        known: &Known,
        checked: &mut HashSet<Digest>,
        verification: &mut Verification,
    ) {
        if !checked.insert(descriptor.digest.clone()) || known.corrupt.contains(&descriptor.digest) {
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
                    self.check_manifest(image, child, depth + 1, known, checked, verification);
                }
            }
            Ok((ParsedManifest::Image(manifest), _)) => {
                let config = match self.read_blob(&manifest.config.digest, METADATA_LIMIT) {
                    Ok(config) => config,
                    Err(_) if known.corrupt.contains(&manifest.config.digest) => return,
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
                        None if known.base.contains(&layer.digest) => {}
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
