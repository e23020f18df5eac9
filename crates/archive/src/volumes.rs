//! Cutting a set of images into volumes of a bounded size (`hpn save
//! --split`): the plan, and the writing of each volume from the set's temp
//! archive. [`plan_volumes`] makes the same plan from blob sizes and
//! manifests alone, for a dry run.
//!
//! The plan is a function of the images (taken in name order) and their
//! blobs (in digest order) alone, so the same content gives the same volumes
//! byte for byte, whatever order the downloads finished in. Images go into
//! the current volume while they fit; one that does not starts the next
//! volume, whole, so that every image small enough sits whole in one volume,
//! which lists it in its own index.json and manifest.json and so loads on its
//! own in docker and podman (a blob several such images share is repeated in
//! each of their volumes). An image too large for any volume has its blobs
//! spread over the volumes, and a blob larger than a volume is cut into parts
//! (`hpn-parts/<hex>.<n>`, each with its sha256 in the bill), which only hpn
//! joins again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hpn_fs::Durability;
use hpn_oci::{Digest, ParsedManifest, Sha256Hasher};

use crate::created::CreationTime;
use crate::error::ArchiveError;
use crate::format::{self, BaseBlob, BillBlob, BillImage, BillOfContents, BillPart};
use crate::reader::METADATA_LIMIT;
use crate::signing::BillSigner;
use crate::tar_format::{self, BLOCK, Kind};
use crate::writer::{self, ArchiveCompression, ArchiveImage, ArchiveWriter};

/// Index nesting followed to find an image's blobs (the reader refuses deeper).
const MAX_INDEX_DEPTH: usize = 4;
/// The longest DER encoding of a P-256 ECDSA signature.
const MAX_SIGNATURE_LEN: u64 = 72;
/// Re-plans with a larger reserve for the lists of contents before giving up.
const MAX_PLAN_ROUNDS: usize = 32;

/// How a set is cut: set by [`ArchiveWriter::create_volumes`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    /// Compression of each volume as a whole.
    pub compression: ArchiveCompression,
    /// No volume file may be larger.
    pub volume_size: u64,
}

/// The path of volume `number` of `count` of an archive asked for as `path`:
/// the number goes before the archive extension (`NAME.tar` →
/// `NAME.001.tar`, `NAME.tar.zst` → `NAME.001.tar.zst`; a name without one
/// gets it at the end), with at least three digits.
pub fn volume_path(path: &Path, number: u32, count: u32) -> PathBuf {
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let stem_len = [".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar"]
        .iter()
        .find(|extension| lower.ends_with(*extension))
        .map_or(name.len(), |extension| name.len() - extension.len());
    let digits = count.to_string().len().max(3);
    path.with_file_name(format!("{}.{number:0digits$}{}", &name[..stem_len], &name[stem_len..]))
}

/// The tar bytes of a file entry of `size` bytes named `name`.
fn entry_cost(name: &str, size: u64) -> u64 {
    tar_format::entry_header(name, size, Kind::File, 0).len() as u64 + size + tar_format::padding(size) as u64
}

/// What every volume holds besides blobs and the lists of contents: the
/// oci-layout entry, the `blobs/` and `blobs/sha256/` headers and the two
/// zero blocks that end a tar.
fn fixed_cost() -> u64 {
    entry_cost(format::OCI_LAYOUT, format::OCI_LAYOUT_CONTENT.len() as u64) + 4 * BLOCK as u64
}

/// Room left for a compressor's worst case on incompressible data (gzip's
/// stored blocks, zstd's raw blocks, their frames): far above both.
fn compression_slack(compression: ArchiveCompression, volume_size: u64) -> u64 {
    match compression {
        ArchiveCompression::None => 0,
        ArchiveCompression::Gzip | ArchiveCompression::Zstd => volume_size / 256 + 64 * 1024,
    }
}

/// A part of a blob, as planned.
#[derive(Debug, Clone)]
struct PlannedPart {
    blob: Digest,
    number: u32,
    offset: u64,
    size: u64,
}

/// One volume, as planned.
#[derive(Debug, Default)]
struct PlannedVolume {
    /// Whole blobs.
    blobs: BTreeSet<Digest>,
    parts: Vec<PlannedPart>,
    /// Images whole in it, by position in the set's image list.
    images: Vec<usize>,
    /// Tar bytes of its blobs and parts.
    used: u64,
}

/// What [`plan_volumes`] plans from: a set of images known by their blobs'
/// sizes and their manifests, before any layer is fetched (`hpn save
/// --dry-run --split`).
#[derive(Debug, Clone, Copy)]
pub struct SetOutline<'a> {
    /// The archive asked for; the volumes are named after it.
    pub path: &'a Path,
    /// Every blob the set would hold, and its size.
    pub blobs: &'a BTreeMap<Digest, u64>,
    /// The bytes of every manifest and index among `blobs`: an image's
    /// closure is read from them.
    pub manifests: &'a BTreeMap<Digest, Vec<u8>>,
    /// The images, as the archive would list them.
    pub images: &'a [ArchiveImage],
    /// The entries of `images` that are attachments, with their subjects.
    pub attachment_subjects: &'a BTreeMap<String, Digest>,
    /// What the set leaves to the far side (a differential bundle).
    pub base_blobs: &'a BTreeMap<Digest, BaseBlob>,
    /// The creation time every volume's bill records (`--created`).
    pub created: Option<CreationTime>,
}

/// One volume as [`plan_volumes`] plans it: what `--split` would write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeOutline {
    /// The file it is written to ([`volume_path`]).
    pub path: PathBuf,
    /// The images whole in it (which load from it alone), by name.
    pub images: Vec<String>,
    /// How many blobs it holds whole.
    pub blobs: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// The parts it holds of blobs larger than a volume.
    pub parts: Vec<PartOutline>,
    /// Its size as an uncompressed tar, headers and lists of contents
    /// included: the size of the file an uncompressed `--split` writes. A
    /// compressed volume is what its compressor makes of that, never over
    /// the volume size.
    pub tar_size: u64,
}

/// A part of a blob cut across volumes, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartOutline {
    /// The blob cut.
    pub blob: Digest,
    /// Its whole size.
    pub blob_size: u64,
    /// This part's number, from 1.
    pub number: u32,
    /// How many parts the blob is cut into.
    pub count: u32,
    /// This part's bytes.
    pub size: u64,
}

/// Plans the volumes `--split` would cut `set` into, with the planning the
/// writer uses ([`ArchiveWriter::create_volumes`]), so a dry run and the
/// real set agree: the same images in the same volumes, and with the same
/// blob sizes, the same tar sizes. `signed` reserves room for a signature
/// beside each bill.
pub fn plan_volumes(
    set: &SetOutline<'_>,
    compression: ArchiveCompression,
    volume_size: u64,
    signed: bool,
) -> Result<Vec<VolumeOutline>, ArchiveError> {
    let contents = SetContents {
        path: set.path,
        blobs: set.blobs,
        images: set.images,
        attachment_subjects: set.attachment_subjects,
        base_blobs: set.base_blobs,
        created: set.created,
    };
    let read = |digest: &Digest| {
        set.manifests.get(digest).cloned().ok_or_else(|| ArchiveError::InvalidMetadata {
            path: set.path.to_owned(),
            entry: format::blob_path(digest.hex()),
            reason: "the plan was not given this manifest".to_owned(),
        })
    };
    let plan = contents.plan(Split { compression, volume_size }, signed, &read)?;
    let bills = contents.bills(&plan, |_| Ok(placeholder_part_digest()))?;
    let count = plan.volumes.len() as u32;
    let mut part_counts: BTreeMap<&Digest, u32> = BTreeMap::new();
    for part in plan.volumes.iter().flat_map(|volume| &volume.parts) {
        *part_counts.entry(&part.blob).or_default() += 1;
    }
    Ok((1..)
        .zip(plan.volumes.iter().zip(&bills))
        .map(|(number, (volume, bill))| VolumeOutline {
            path: volume_path(set.path, number, count),
            images: volume.images.iter().map(|position| set.images[*position].name.clone()).collect(),
            blobs: volume.blobs.len(),
            blob_bytes: volume.blobs.iter().map(|digest| set.blobs[digest]).sum(),
            parts: volume
                .parts
                .iter()
                .map(|part| PartOutline {
                    blob: part.blob.clone(),
                    blob_size: set.blobs[&part.blob],
                    number: part.number,
                    count: part_counts[&part.blob],
                    size: part.size,
                })
                .collect(),
            tar_size: contents.tar_size(volume, bill, plan.signature_cost),
        })
        .collect())
}

/// Stands in for a part's digest while planning: part digests are all the
/// same length, so a bill written with it has the real bill's size.
fn placeholder_part_digest() -> Digest {
    Digest::of(b"")
}

/// A set of images as the planner sees it: every blob and its size, the
/// images, and what the set leaves to the far side.
struct SetContents<'a> {
    path: &'a Path,
    blobs: &'a BTreeMap<Digest, u64>,
    images: &'a [ArchiveImage],
    attachment_subjects: &'a BTreeMap<String, Digest>,
    base_blobs: &'a BTreeMap<Digest, BaseBlob>,
    created: Option<CreationTime>,
}

/// A set's volumes as planned, with what their bills are made from.
struct Plan {
    /// Image positions, in packing order ([`SetContents::packing_order`]).
    order: Vec<usize>,
    /// Each image's blobs, in `order`.
    closures: Vec<BTreeSet<Digest>>,
    volumes: Vec<PlannedVolume>,
    /// The tar bytes of a bill's signature, if the set is signed.
    signature_cost: u64,
}

/// Reads a manifest or index of the set, whole.
type ReadManifest<'r> = dyn Fn(&Digest) -> Result<Vec<u8>, ArchiveError> + 'r;

impl SetContents<'_> {
    /// Plans the volumes, growing the room reserved for each volume's lists
    /// of contents until every volume fits in the volume size with its own.
    fn plan(&self, split: Split, signed: bool, read: &ReadManifest<'_>) -> Result<Plan, ArchiveError> {
        let (order, closures) = self.packing_order(read)?;
        let volume_size = split.volume_size;
        let budget = volume_size.saturating_sub(compression_slack(split.compression, volume_size));
        let signature_cost = if signed { entry_cost(crate::BILL_SIGNATURE, MAX_SIGNATURE_LEN) } else { 0 };
        let budget = budget - budget.min(signature_cost);
        let mut plan = Plan { order, closures, volumes: Vec::new(), signature_cost };
        let mut reserve = 0;
        for _ in 0..MAX_PLAN_ROUNDS {
            let too_small = |reserve: u64| ArchiveError::VolumeSizeTooSmall {
                path: self.path.to_owned(),
                limit: volume_size,
                needed: fixed_cost() + reserve + 2 * BLOCK as u64 + (volume_size - budget),
            };
            let capacity = budget
                .checked_sub(fixed_cost() + reserve)
                .filter(|capacity| *capacity >= 2 * BLOCK as u64)
                .ok_or_else(|| too_small(reserve))?;
            plan.volumes = self.pack(&plan.order, &plan.closures, capacity);
            let bills = self.bills(&plan, |_| Ok(placeholder_part_digest()))?;
            let needed =
                plan.volumes.iter().zip(&bills).map(|(volume, bill)| self.lists_cost(volume, bill)).max().unwrap_or(0);
            if needed <= reserve {
                return Ok(plan);
            }
            reserve = needed;
        }
        Err(ArchiveError::VolumeSizeTooSmall {
            path: self.path.to_owned(),
            limit: volume_size,
            needed: volume_size + 1,
        })
    }

    /// The images in name order, each followed by its attachments (and
    /// theirs) in name order, so that an attachment goes into its image's
    /// volume when it fits there; with the closure of each. An attachment
    /// whose subject no image of the set reaches comes last.
    fn packing_order(&self, read: &ReadManifest<'_>) -> Result<(Vec<usize>, Vec<BTreeSet<Digest>>), ArchiveError> {
        let mut by_name: Vec<usize> = (0..self.images.len()).collect();
        by_name.sort_by(|a, b| self.images[*a].name.cmp(&self.images[*b].name));
        let closures: BTreeMap<usize, BTreeSet<Digest>> = by_name
            .iter()
            .map(|position| Ok((*position, self.closure(&self.images[*position], read)?)))
            .collect::<Result<_, ArchiveError>>()?;
        let subject_of = |position: usize| self.attachment_subjects.get(&self.images[position].name);
        let (images, mut attachments): (Vec<usize>, Vec<usize>) =
            by_name.into_iter().partition(|position| subject_of(*position).is_none());
        let mut order = Vec::with_capacity(self.images.len());
        for image in images {
            order.push(image);
            // Attachments of what is placed so far for this image, level by level.
            let mut next = order.len() - 1;
            while next < order.len() {
                let holder = &closures[&order[next]];
                let (attached, rest): (Vec<usize>, Vec<usize>) = attachments
                    .into_iter()
                    .partition(|position| subject_of(*position).is_some_and(|subject| holder.contains(subject)));
                order.extend(attached);
                attachments = rest;
                next += 1;
            }
        }
        order.extend(attachments);
        let closures = order.iter().map(|position| closures[position].clone()).collect();
        Ok((order, closures))
    }

    /// Every blob of the set `image` needs: its manifest or index, the
    /// manifests of the platforms present, their configs and layers, and
    /// what its manifest.json entry names (an uncompressed copy of a zstd layer).
    fn closure(&self, image: &ArchiveImage, read: &ReadManifest<'_>) -> Result<BTreeSet<Digest>, ArchiveError> {
        let mut closure = BTreeSet::new();
        let mut pending = vec![(image.descriptor.digest.clone(), Some(image.descriptor.media_type.clone()), 0)];
        while let Some((digest, media_type, depth)) = pending.pop() {
            if !self.blobs.contains_key(&digest) || !closure.insert(digest.clone()) {
                continue;
            }
            let Some(media_type) = media_type else { continue };
            let bytes = read(&digest)?;
            let parsed =
                ParsedManifest::parse(&bytes, Some(&media_type)).map_err(|error| ArchiveError::InvalidMetadata {
                    path: self.path.to_owned(),
                    entry: format::blob_path(digest.hex()),
                    reason: error.to_string(),
                })?;
            match parsed.0 {
                ParsedManifest::Index(index) if depth < MAX_INDEX_DEPTH => pending
                    .extend(index.manifests.into_iter().map(|child| (child.digest, Some(child.media_type), depth + 1))),
                ParsedManifest::Index(_) => {}
                ParsedManifest::Image(manifest) => {
                    closure.insert(manifest.config.digest);
                    closure.extend(manifest.layers.into_iter().map(|layer| layer.digest));
                }
            }
        }
        if let Some(docker) = &image.docker {
            closure.insert(docker.config.clone());
            closure.extend(docker.layers.iter().cloned());
        }
        closure.retain(|digest| self.blobs.contains_key(digest));
        Ok(closure)
    }

    fn blob_cost(&self, digest: &Digest) -> u64 {
        entry_cost(&format::blob_path(digest.hex()), self.blobs[digest])
    }

    /// The size of `volume`'s tar with `bill` (or one of the same length).
    fn tar_size(&self, volume: &PlannedVolume, bill: &[u8], signature_cost: u64) -> u64 {
        fixed_cost() + volume.used + self.lists_cost(volume, bill) + signature_cost
    }
    /// Packs images and blobs into volumes of `capacity` bytes of blob entries.
    fn pack(&self, order: &[usize], closures: &[BTreeSet<Digest>], capacity: u64) -> Vec<PlannedVolume> {
        let mut volumes = vec![PlannedVolume::default()];
        let mut placed: HashSet<Digest> = HashSet::new();
        for (position, closure) in order.iter().zip(closures) {
            let whole: u64 = closure.iter().map(|digest| self.blob_cost(digest)).sum();
            if whole > capacity {
                self.place_loose(closure.iter(), &mut volumes, &mut placed, capacity);
                continue;
            }
            let current = volumes.last().expect("there is always a volume");
            let extra: u64 = closure
                .iter()
                .filter(|digest| !current.blobs.contains(*digest))
                .map(|digest| self.blob_cost(digest))
                .sum();
            if current.used + extra > capacity {
                volumes.push(PlannedVolume::default());
            }
            let current = volumes.last_mut().expect("there is always a volume");
            for digest in closure {
                if current.blobs.insert(digest.clone()) {
                    current.used += self.blob_cost(digest);
                }
                placed.insert(digest.clone());
            }
            current.images.push(*position);
        }
        let rest: Vec<&Digest> = self.blobs.keys().filter(|digest| !placed.contains(*digest)).collect();
        self.place_loose(rest.into_iter(), &mut volumes, &mut placed, capacity);
        volumes
    }

    /// Places blobs not yet in any volume where they fit, cutting those
    /// larger than a volume into parts that fill each volume's room.
    fn place_loose<'d>(
        &self,
        blobs: impl Iterator<Item = &'d Digest>,
        volumes: &mut Vec<PlannedVolume>,
        placed: &mut HashSet<Digest>,
        capacity: u64,
    ) {
        for digest in blobs {
            if !placed.insert(digest.clone()) {
                continue;
            }
            let cost = self.blob_cost(digest);
            if cost <= capacity {
                if volumes.last().expect("there is always a volume").used + cost > capacity {
                    volumes.push(PlannedVolume::default());
                }
                let current = volumes.last_mut().expect("there is always a volume");
                current.blobs.insert(digest.clone());
                current.used += cost;
                continue;
            }
            let size = self.blobs[digest];
            let (mut offset, mut number) = (0, 1);
            while offset < size {
                let current = volumes.last_mut().expect("there is always a volume");
                let name = format::part_entry_name(digest, number);
                let header = entry_cost(&name, 0);
                // Whole blocks, so a part has no padding but the last one.
                let room = capacity.saturating_sub(current.used + header) / BLOCK as u64 * BLOCK as u64;
                if room == 0 {
                    volumes.push(PlannedVolume::default());
                    continue;
                }
                let length = room.min(size - offset);
                current.parts.push(PlannedPart { blob: digest.clone(), number, offset, size: length });
                current.used += entry_cost(&name, length);
                offset += length;
                number += 1;
            }
        }
    }

    /// Each volume's bill: the whole set's lists, the same in every volume
    /// but for its number.
    fn bills(
        &self,
        plan: &Plan,
        part_digest: impl Fn(&PlannedPart) -> Result<Digest, ArchiveError>,
    ) -> Result<Vec<Vec<u8>>, ArchiveError> {
        let (order, closures, volumes) = (&plan.order, &plan.closures, &plan.volumes);
        let mut blobs: Vec<BillBlob> = Vec::new();
        let mut part_counts: BTreeMap<&Digest, u32> = BTreeMap::new();
        for volume in volumes {
            for part in &volume.parts {
                *part_counts.entry(&part.blob).or_default() += 1;
            }
        }
        for (number, volume) in (1..).zip(volumes) {
            for digest in &volume.blobs {
                blobs.push(BillBlob { digest: digest.clone(), size: self.blobs[digest], volume: number, part: None });
            }
            for part in &volume.parts {
                blobs.push(BillBlob {
                    digest: part.blob.clone(),
                    size: self.blobs[&part.blob],
                    volume: number,
                    part: Some(BillPart {
                        number: part.number,
                        count: part_counts[&part.blob],
                        offset: part.offset,
                        size: part.size,
                        digest: part_digest(part)?,
                    }),
                });
            }
        }
        blobs.sort_by(|a, b| {
            let key =
                |blob: &BillBlob| (blob.digest.clone(), blob.part.as_ref().map_or(0, |part| part.number), blob.volume);
            key(a).cmp(&key(b))
        });
        let images: Vec<BillImage> = order
            .iter()
            .zip(closures)
            .map(|(position, closure)| {
                // Whole in a volume, it needs that one alone, even where a blob it shares
                // with an image of an earlier volume lies there too.
                let needed = match volumes.iter().position(|volume| volume.images.contains(position)) {
                    Some(whole_in) => vec![whole_in as u32 + 1],
                    None => volumes_holding(closure, volumes),
                };
                writer::bill_image(&self.images[*position], needed, self.attachment_subjects)
            })
            .collect();
        let count = volumes.len() as u32;
        let base_blobs = self.base_blobs.values().cloned().collect();
        let bill = BillOfContents::new(images, blobs, base_blobs, 1, count).with_created(self.created);
        Ok((1..=count).map(|volume| BillOfContents { volume, ..bill.clone() }.to_json()).collect())
    }

    /// The tar bytes of a volume's bill, index.json, manifest.json and repositories.
    fn lists_cost(&self, volume: &PlannedVolume, bill: &[u8]) -> u64 {
        let images: Vec<ArchiveImage> = volume.images.iter().map(|position| self.images[*position].clone()).collect();
        let index = writer::index_json(&images);
        let (manifest, repositories) = writer::docker_json(&images);
        entry_cost(format::BILL_OF_CONTENTS, bill.len() as u64)
            + entry_cost(format::INDEX_JSON, index.len() as u64)
            + entry_cost(format::MANIFEST_JSON, manifest.len() as u64)
            + repositories.map_or(0, |repositories| entry_cost(format::REPOSITORIES, repositories.len() as u64))
    }
}

/// A set of images whose blobs all lie in one uncompressed temp tar.
pub(crate) struct WrittenSet<'a> {
    /// The archive asked for; the volumes are named after it.
    pub path: &'a Path,
    pub tar: &'a File,
    /// Every blob and its size.
    pub blobs: &'a BTreeMap<Digest, u64>,
    /// Where each blob's data starts in `tar`.
    pub offsets: &'a BTreeMap<Digest, u64>,
    pub images: &'a [ArchiveImage],
    /// The entries of `images` that are attachments, with their subjects.
    pub attachment_subjects: &'a BTreeMap<String, Digest>,
    /// What the images need but the set leaves to the far side (a
    /// differential bundle), listed in every volume's bill.
    pub base_blobs: &'a BTreeMap<Digest, BaseBlob>,
    /// The creation time every volume records.
    pub created: Option<CreationTime>,
}

impl WrittenSet<'_> {
    /// Plans the volumes and writes them. On an error, the volumes already
    /// written are removed: a set is only useful whole.
    pub fn write_volumes(
        &self,
        split: Split,
        durability: Durability,
        signer: Option<&BillSigner>,
    ) -> Result<Vec<(PathBuf, u64)>, ArchiveError> {
        let contents = SetContents {
            path: self.path,
            blobs: self.blobs,
            images: self.images,
            attachment_subjects: self.attachment_subjects,
            base_blobs: self.base_blobs,
            created: self.created,
        };
        let plan = contents.plan(split, signer.is_some(), &|digest| self.read_small(digest))?;
        let bills = contents.bills(&plan, |part| self.hash_part(part))?;
        let count = plan.volumes.len() as u32;
        let mut written: Vec<(PathBuf, u64)> = Vec::new();
        let result = plan.volumes.iter().zip(bills).enumerate().try_for_each(|(position, (volume, bill))| {
            let path = volume_path(self.path, position as u32 + 1, count);
            let size = self.write_volume(&path, volume, bill, split.compression, durability, signer)?;
            written.push((path.clone(), size));
            if size > split.volume_size {
                return Err(ArchiveError::VolumeTooLarge { path, size, limit: split.volume_size });
            }
            Ok(())
        });
        if let Err(error) = result {
            for (path, _) in &written {
                let _ = std::fs::remove_file(path);
            }
            return Err(error);
        }
        Ok(written)
    }

    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>, ArchiveError> {
        let size = self.blobs[digest];
        if size > METADATA_LIMIT {
            return Err(ArchiveError::TooLarge {
                path: self.path.to_owned(),
                entry: format::blob_path(digest.hex()),
                size,
                limit: METADATA_LIMIT,
            });
        }
        let mut bytes = vec![0; size as usize];
        self.tar.read_exact_at(&mut bytes, self.offsets[digest]).map_err(|error| {
            ArchiveError::io(format!("read blob {digest} from the temp archive of"), self.path, error)
        })?;
        Ok(bytes)
    }

    fn hash_part(&self, part: &PlannedPart) -> Result<Digest, ArchiveError> {
        let mut hasher = Sha256Hasher::new();
        let mut buffer = vec![0; 1024 * 1024];
        let start = self.offsets[&part.blob] + part.offset;
        let mut done = 0;
        while done < part.size {
            let want = (part.size - done).min(buffer.len() as u64) as usize;
            self.tar.read_exact_at(&mut buffer[..want], start + done).map_err(|error| {
                ArchiveError::io(format!("read blob {} from the temp archive of", part.blob), self.path, error)
            })?;
            hasher.update(&buffer[..want]);
            done += want as u64;
        }
        Ok(hasher.finish())
    }

    fn write_volume(
        &self,
        path: &Path,
        volume: &PlannedVolume,
        bill: Vec<u8>,
        compression: ArchiveCompression,
        durability: Durability,
        signer: Option<&BillSigner>,
    ) -> Result<u64, ArchiveError> {
        let mut writer = ArchiveWriter::create(path, compression)?
            .with_durability(durability)
            .with_bill_signer(signer.cloned())
            .with_creation_time(self.created);
        for digest in &volume.blobs {
            writer.add_blob_from_range(digest, self.tar, self.offsets[digest], self.blobs[digest])?;
        }
        for part in &volume.parts {
            let name = format::part_entry_name(&part.blob, part.number);
            writer.add_part_from_range(&name, self.tar, self.offsets[&part.blob] + part.offset, part.size)?;
        }
        for position in &volume.images {
            writer.add_image(self.images[*position].clone());
        }
        writer.set_volume_bill(bill);
        writer.finish()
    }
}

/// The volumes `closure` needs: for each blob, the first volume holding it
/// whole, else every volume holding a part of it.
fn volumes_holding(closure: &BTreeSet<Digest>, volumes: &[PlannedVolume]) -> Vec<u32> {
    let mut needed = BTreeSet::new();
    for digest in closure {
        match (1..).zip(volumes).find(|(_, volume)| volume.blobs.contains(digest)) {
            Some((number, _)) => {
                needed.insert(number);
            }
            None => needed.extend(
                (1..)
                    .zip(volumes)
                    .filter(|(_, volume)| volume.parts.iter().any(|part| &part.blob == digest))
                    .map(|(number, _)| number),
            ),
        }
    }
    needed.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use hpn_oci::{Descriptor, media_type};

    use super::*;
    use crate::{ArchiveReader, DockerImageEntry};

    #[test]
    fn volume_numbers_go_before_the_archive_extension() {
        let path = |name: &str, number, count| volume_path(Path::new(name), number, count);
        assert_eq!(path("out/set.tar", 1, 3), Path::new("out/set.001.tar"));
        assert_eq!(path("set.tar.zst", 12, 40), Path::new("set.012.tar.zst"));
        assert_eq!(path("SET.TGZ", 2, 2), Path::new("SET.002.TGZ"));
        assert_eq!(path("bundle", 7, 1000), Path::new("bundle.0007"));
    }

    /// What was added to a set, as a dry run would know it.
    #[derive(Default)]
    struct Added {
        blobs: BTreeMap<Digest, u64>,
        manifests: BTreeMap<Digest, Vec<u8>>,
        images: Vec<ArchiveImage>,
    }

    /// A one-layer image whose layer is `layer`, added to `writer` and recorded in `added`.
    fn add_image(writer: &mut ArchiveWriter, added: &mut Added, name: &str, layer: &[u8]) {
        let layer_digest = Digest::of(layer);
        let config = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"os":"linux","architecture":"amd64"}}"#
        );
        let config_digest = Digest::of(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
            media_type::OCI_MANIFEST,
            serde_json::to_string(&Descriptor::new(media_type::OCI_CONFIG, config_digest.clone(), config.len() as u64))
                .unwrap(),
            serde_json::to_string(&Descriptor::new(media_type::OCI_LAYER, layer_digest.clone(), layer.len() as u64))
                .unwrap(),
        );
        let manifest_digest = Digest::of(manifest.as_bytes());
        writer.add_blob_bytes(&layer_digest, layer).unwrap();
        writer.add_blob_bytes(&config_digest, config.as_bytes()).unwrap();
        writer.add_blob_bytes(&manifest_digest, manifest.as_bytes()).unwrap();
        added.blobs.insert(layer_digest.clone(), layer.len() as u64);
        added.blobs.insert(config_digest.clone(), config.len() as u64);
        added.blobs.insert(manifest_digest.clone(), manifest.len() as u64);
        added.manifests.insert(manifest_digest.clone(), manifest.clone().into_bytes());
        let image = ArchiveImage {
            descriptor: Descriptor::new(media_type::OCI_MANIFEST, manifest_digest, manifest.len() as u64),
            name: format!("example.com/{name}:1"),
            tag: Some("1".to_owned()),
            docker: Some(DockerImageEntry {
                config: config_digest,
                repo_tags: vec![format!("example.com/{name}:1")],
                layers: vec![layer_digest],
            }),
        };
        added.images.push(image.clone());
        writer.add_image(image);
    }

    fn write_set(dir: &Path, big: &[u8], small: &[u8]) -> (Vec<(PathBuf, u64)>, Added) {
        let mut writer =
            ArchiveWriter::create_volumes(&dir.join("set.tar"), ArchiveCompression::None, 64 * 1024).unwrap();
        let mut added = Added::default();
        // Added big first: the plan does not depend on the order blobs arrive in.
        add_image(&mut writer, &mut added, "big", big);
        add_image(&mut writer, &mut added, "small", small);
        (writer.finish_volumes().unwrap(), added)
    }

    #[test]
    fn the_plan_from_sizes_alone_is_the_set_written() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let (volumes, added) = write_set(dir.path(), &big, &[9u8; 7000]);
        let path = dir.path().join("set.tar");
        let set = SetOutline {
            path: &path,
            blobs: &added.blobs,
            manifests: &added.manifests,
            images: &added.images,
            attachment_subjects: &BTreeMap::new(),
            base_blobs: &BTreeMap::new(),
            created: None,
        };
        let plan = plan_volumes(&set, ArchiveCompression::None, 64 * 1024, false).unwrap();
        let planned: Vec<(PathBuf, u64)> = plan.iter().map(|volume| (volume.path.clone(), volume.tar_size)).collect();
        assert_eq!(planned, volumes);
        for (outline, (written, _)) in plan.iter().zip(&volumes) {
            let reader = ArchiveReader::open(written).unwrap();
            let names: Vec<&str> = reader.images().iter().map(|image| image.names[0].as_str()).collect();
            assert_eq!(outline.images, names, "{}", written.display());
        }
        let parts: Vec<&PartOutline> = plan.iter().flat_map(|volume| &volume.parts).collect();
        assert_eq!(parts.iter().map(|part| part.size).sum::<u64>(), big.len() as u64);
        assert!(parts.iter().all(|part| part.count == parts.len() as u32 && part.blob == Digest::of(&big)));
        // A signature beside each bill takes room: the plan knows it.
        let signed = plan_volumes(&set, ArchiveCompression::None, 64 * 1024, true).unwrap();
        assert!(signed.iter().map(|volume| volume.tar_size).sum::<u64>() > planned.iter().map(|(_, size)| size).sum());
    }

    #[test]
    fn a_blob_larger_than_a_volume_is_cut_into_parts_and_joined_back_whole() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let small = vec![3u8; 5000];
        let dir = tempfile::tempdir().unwrap();
        let (volumes, _) = write_set(dir.path(), &big, &small);
        assert!(volumes.len() >= 5, "{volumes:?}");
        assert!(
            volumes.iter().all(|(path, size)| *size <= 64 * 1024 && std::fs::metadata(path).unwrap().len() == *size)
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|name| !name.starts_with('.')), "a temp file was left: {names:?}");

        // The small image is whole in one volume, which lists only it.
        let whole: Vec<ArchiveReader> = volumes
            .iter()
            .map(|(path, _)| ArchiveReader::open(path).unwrap())
            .filter(|reader| !reader.images().is_empty())
            .collect();
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].images()[0].names[0], "example.com/small:1");

        // Joined in reverse order, the big layer reads back whole.
        let readers = volumes.iter().rev().map(|(path, _)| ArchiveReader::open(path).unwrap()).collect();
        let mut joined = ArchiveReader::join_volumes(readers);
        assert_eq!(joined.len(), 1);
        let reader = joined.remove(0).unwrap();
        assert_eq!(reader.images().len(), 2);
        let mut read = Vec::new();
        reader.open_blob(&Digest::of(&big)).unwrap().unwrap().read_to_end(&mut read).unwrap();
        assert!(read == big, "the joined blob differs");
        assert!(reader.verify().is_ok(), "{:?}", reader.verify().problems);

        // Same content, same bytes.
        let again = tempfile::tempdir().unwrap();
        let (second, _) = write_set(again.path(), &big, &small);
        for ((first, _), (second, _)) in volumes.iter().zip(&second) {
            assert!(std::fs::read(first).unwrap() == std::fs::read(second).unwrap());
        }
    }

    #[test]
    fn a_volume_size_too_small_for_the_lists_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer =
            ArchiveWriter::create_volumes(&dir.path().join("set.tar"), ArchiveCompression::None, 4096).unwrap();
        add_image(&mut writer, &mut Added::default(), "small", &[1u8; 100]);
        let error = writer.finish_volumes().unwrap_err();
        assert!(matches!(error, ArchiveError::VolumeSizeTooSmall { .. }), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "something was left behind");
    }
}
