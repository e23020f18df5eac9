//! The volumes of a set `hpn save --split` wrote, joined into one reader:
//! every blob from whichever volume holds it, blobs cut into parts read
//! across their volumes in order (each part checked against its sha256 as
//! it streams), and every image of the set whose volumes are all present.
//!
//! Volumes are only joined within one run: the parts of a blob are never
//! kept anywhere between runs (the store holds whole, verified blobs and
//! nothing else), so an image that spans volumes needs all of them given
//! together, and says which are missing; an image whole in one volume loads
//! from that volume alone, in any run.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hpn_oci::{Digest, RawManifest};

use super::source::Storage;
use super::{ArchiveReader, ArchivedImage, Blob, METADATA_LIMIT, Problem};
use crate::error::ArchiveError;
use crate::format::{BILL_OF_CONTENTS, BillOfContents};

/// A run of bytes of a blob in a volume: the whole blob, or one part.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub file: Arc<File>,
    pub offset: u64,
    pub size: u64,
    /// A part's own sha256, checked when its last byte has been read.
    pub part_digest: Option<Digest>,
    /// The volume, for messages.
    pub archive: PathBuf,
    /// The entry in it.
    pub entry: String,
}

/// What a reader joined from volumes knows about its set.
#[derive(Debug, Clone)]
pub(crate) struct JoinedSet {
    /// Images left out because a volume they need is missing.
    pub incomplete: Vec<IncompleteImage>,
    /// What does not hold between the volumes and their bill.
    pub problems: Vec<Problem>,
}

/// An image of a set that cannot be read: volumes it needs were not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteImage {
    /// Its name.
    pub name: String,
    /// Its manifest or index.
    pub digest: Digest,
    /// The missing volumes' file names (derived from the names of those given).
    pub missing: Vec<PathBuf>,
}

impl ArchiveReader {
    /// Joins the archives that are volumes of one set (their bills say so)
    /// into one reader per set, in the position of its first volume; other
    /// archives pass through as they are. A volume given twice, or one whose
    /// bill does not hold (unreadable, or its set id does not match its
    /// lists: edited or corrupt), comes back as an error naming it, and its
    /// set is joined without it. Images of a set that need volumes not given
    /// are left out of the joined reader and listed by
    /// [`ArchiveReader::incomplete_images`].
    pub fn join_volumes(readers: Vec<ArchiveReader>) -> Vec<Result<ArchiveReader, ArchiveError>> {
        let mut out: Vec<Result<ArchiveReader, ArchiveError>> = Vec::new();
        // Set id → (position in `out`, bill, volumes by number).
        let mut sets: Vec<(String, usize, BillOfContents, BTreeMap<u32, ArchiveReader>)> = Vec::new();
        for reader in readers {
            let bill = match reader.bill_of_contents() {
                None => {
                    out.push(Ok(reader));
                    continue;
                }
                Some(Err(error)) => {
                    out.push(Err(error));
                    continue;
                }
                Some(Ok(bill)) => bill,
            };
            if bill.volumes <= 1 {
                out.push(Ok(reader));
                continue;
            }
            if BillOfContents::set_id(&bill.images, &bill.blobs, &bill.base_blobs) != bill.set
                || bill.volume == 0
                || bill.volume > bill.volumes
            {
                out.push(Err(ArchiveError::InvalidMetadata {
                    path: reader.path.clone(),
                    entry: BILL_OF_CONTENTS.to_owned(),
                    reason: "its lists do not match its set id: it was edited or is corrupt".to_owned(),
                }));
                continue;
            }
            match sets.iter_mut().find(|(set, ..)| *set == bill.set) {
                Some((_, _, _, volumes)) => {
                    if let Some(first) = volumes.get(&bill.volume) {
                        out.push(Err(ArchiveError::DuplicateVolume {
                            path: reader.path.clone(),
                            first: first.path.clone(),
                            volume: bill.volume,
                            set: bill.set.clone(),
                        }));
                    } else {
                        volumes.insert(bill.volume, reader);
                    }
                }
                None => {
                    // A placeholder, replaced by the joined reader below.
                    out.push(Err(ArchiveError::NotAnArchive { path: reader.path.clone(), reason: String::new() }));
                    let position = out.len() - 1;
                    sets.push((bill.set.clone(), position, bill.clone(), BTreeMap::from([(bill.volume, reader)])));
                }
            }
        }
        for (_, position, bill, volumes) in sets {
            out[position] = join(bill, volumes);
        }
        out
    }

    /// For a reader joined from volumes ([`ArchiveReader::join_volumes`]):
    /// the images of the set left out because volumes they need were not
    /// given. Empty otherwise.
    pub fn incomplete_images(&self) -> &[IncompleteImage] {
        self.set.as_ref().map_or(&[], |set| set.incomplete.as_slice())
    }
}

/// The file name volume `number` would have, from a given volume's.
fn sibling_path(given: &Path, given_number: u32, number: u32, count: u32) -> PathBuf {
    let digits = count.to_string().len().max(3);
    let name = given.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let marker = format!(".{given_number:0digits$}");
    match name.rfind(&marker) {
        Some(at) => given.with_file_name(format!("{}.{number:0digits$}{}", &name[..at], &name[at + marker.len()..])),
        None => PathBuf::from(format!("volume {number}")),
    }
}

fn join(bill: BillOfContents, volumes: BTreeMap<u32, ArchiveReader>) -> Result<ArchiveReader, ArchiveError> {
    let (&first_number, first) = volumes.iter().next().expect("a set has the volume it was found by");
    let label = PathBuf::from(format!(
        "{} (volumes {} of {} of set {})",
        first.path.display(),
        volumes.keys().map(u32::to_string).collect::<Vec<_>>().join(", "),
        bill.volumes,
        bill.set
    ));
    let mut problems = Vec::new();
    let mut blobs: HashMap<Digest, Blob> = HashMap::new();
    let mut parts: BTreeMap<Digest, Vec<(u32, Option<Span>)>> = BTreeMap::new();
    for listed in &bill.blobs {
        let Some(volume) = volumes.get(&listed.volume) else {
            if listed.part.is_some() {
                parts.entry(listed.digest.clone()).or_default().push((0, None));
            }
            continue;
        };
        let span = |entry: &super::index::FileEntry| -> Result<Span, String> {
            let (Storage::Tar(file), super::index::Location::Tar { offset }) = (&volume.storage, &entry.location)
            else {
                return Err("volumes are tar files; this one is a directory".to_owned());
            };
            Ok(Span {
                file: Arc::clone(file),
                offset: *offset,
                size: entry.size,
                part_digest: None,
                archive: volume.path.clone(),
                entry: entry.name.clone(),
            })
        };
        let mut problem = |place: &Path, reason: String| {
            problems.push(Problem { place: place.display().to_string(), digest: Some(listed.digest.clone()), reason });
        };
        match &listed.part {
            None => match volume.blobs.get(&listed.digest) {
                Some(Blob::Entry(entry)) if entry.size == listed.size => match span(entry) {
                    Ok(span) => {
                        blobs.entry(listed.digest.clone()).or_insert_with(|| Blob::Spans(Arc::from(vec![span])));
                    }
                    Err(reason) => problem(&volume.path, reason),
                },
                Some(blob) => {
                    problem(&volume.path, format!("is {} bytes, but the bill lists {}", blob.size(), listed.size))
                }
                None => problem(&volume.path, "is listed in the bill but not in this volume".to_owned()),
            },
            Some(part) => {
                let name = part.entry_name(&listed.digest);
                let span = match volume.parts.get(&name) {
                    Some(entry) if entry.size == part.size => match span(entry) {
                        Ok(span) => Some(Span { part_digest: Some(part.digest.clone()), ..span }),
                        Err(reason) => {
                            problem(&volume.path, reason);
                            None
                        }
                    },
                    Some(entry) => {
                        problem(
                            &volume.path,
                            format!("part {name} is {} bytes, but the bill lists {}", entry.size, part.size),
                        );
                        None
                    }
                    None => {
                        problem(&volume.path, format!("part {name} is listed in the bill but not in this volume"));
                        None
                    }
                };
                parts.entry(listed.digest.clone()).or_default().push((part.number, span));
            }
        }
    }
    for (digest, mut pieces) in parts {
        pieces.sort_by_key(|(number, _)| *number);
        let spans: Option<Vec<Span>> = pieces.into_iter().map(|(_, span)| span).collect();
        if let Some(spans) = spans {
            blobs.entry(digest).or_insert_with(|| Blob::Spans(Arc::from(spans)));
        }
    }
    for volume in volumes.values() {
        for (digest, blob) in &volume.blobs {
            if matches!(blob, Blob::Entry(_)) && !bill.blobs.iter().any(|listed| &listed.digest == digest) {
                problems.push(Problem {
                    place: volume.path.display().to_string(),
                    digest: Some(digest.clone()),
                    reason: "is in the volume but not listed in the bill".to_owned(),
                });
            }
        }
    }

    let missing: Vec<u32> = (1..=bill.volumes).filter(|number| !volumes.contains_key(number)).collect();
    for number in &missing {
        let path = sibling_path(&first.path, first_number, *number, bill.volumes);
        problems.push(Problem {
            place: path.display().to_string(),
            digest: None,
            reason: format!("volume {number} of {} of set {} was not given", bill.volumes, bill.set),
        });
    }
    let mut images = Vec::new();
    let mut incomplete = Vec::new();
    for image in &bill.images {
        let lacking: Vec<PathBuf> = image
            .volumes
            .iter()
            .filter(|number| !volumes.contains_key(number))
            .map(|number| sibling_path(&first.path, first_number, *number, bill.volumes))
            .collect();
        if !lacking.is_empty() {
            incomplete.push(IncompleteImage {
                name: image.name.clone(),
                digest: image.digest.clone(),
                missing: lacking,
            });
            continue;
        }
        let Some(blob) = blobs.get(&image.digest) else {
            problems.push(Problem {
                place: format!("{label}: image {}", image.name, label = label.display()),
                digest: Some(image.digest.clone()),
                reason: "its manifest is in none of the volumes".to_owned(),
            });
            continue;
        };
        match super::read_verified(&label, &Storage::Dir, blob, &image.digest, METADATA_LIMIT) {
            Ok(bytes) => images.push(ArchivedImage {
                names: vec![image.name.clone()],
                manifest: RawManifest {
                    bytes: bytes.into(),
                    media_type: image.media_type.clone(),
                    digest: image.digest.clone(),
                },
                synthesized: false,
            }),
            Err(error) => problems.push(Problem {
                place: format!("{}: image {}", label.display(), image.name),
                digest: Some(image.digest.clone()),
                reason: error.to_string(),
            }),
        }
    }
    let bill_bytes = first.bill.clone();
    let compression = first.compression;
    Ok(ArchiveReader {
        path: label,
        compression,
        storage: Storage::Dir,
        blobs,
        images,
        bill: bill_bytes,
        bill_signature: first.bill_signature.clone(),
        parts: HashMap::new(),
        set: Some(Box::new(JoinedSet { incomplete, problems })),
    })
}
