//! Offline verification of an archive: every blob re-hashed, every image's
//! closure checked, with nothing but the archive itself.

use std::collections::{HashMap, HashSet};

use hpn_oci::closure::{BlobHolder, ClosureFault, ClosureProblem, KnownBlobs, check_closure};
use hpn_oci::{Descriptor, Digest};
use rayon::prelude::*;

use super::layout::{HASH_BUFFER, hash_stored_blob};
use super::{ArchiveReader, Blob};
use crate::error::ArchiveError;
use crate::format::{BILL_OF_CONTENTS, BillOfContents};

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
        let entries: Vec<(&Digest, &Blob)> =
            self.blobs.iter().filter(|(_, blob)| !matches!(blob, Blob::Memory(_))).collect();
        verification.blobs = entries.len();
        verification.bytes = entries.iter().map(|(_, blob)| blob.size()).sum();
        let hashed: Vec<Problem> = entries
            .par_iter()
            .map_init(
                || vec![0; HASH_BUFFER],
                |buffer, (digest, blob)| match self.hash_blob(blob, buffer) {
                    Ok(actual) if actual == **digest => None,
                    Ok(actual) => Some(Problem {
                        place: blob.name(digest),
                        digest: Some((*digest).clone()),
                        reason: format!("its content hashes to {actual}: the blob is corrupt"),
                    }),
                    Err(error) => Some(Problem {
                        place: blob.name(digest),
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
        match &self.set {
            // The volumes were checked against their bill as they were joined.
            Some(set) => verification.problems.extend(set.problems.iter().cloned()),
            None => {
                if let Some(bill) = bill {
                    self.check_bill(bill, &mut verification);
                }
            }
        }
        let images: Vec<(String, Descriptor)> = self
            .images
            .iter()
            .map(|image| {
                let label =
                    image.names.first().cloned().unwrap_or_else(|| format!("unnamed image {}", image.manifest.digest));
                let descriptor = Descriptor::new(
                    &image.manifest.media_type,
                    image.manifest.digest.clone(),
                    image.manifest.bytes.len() as u64,
                );
                (label, descriptor)
            })
            .collect();
        // Corrupt blobs were reported by the re-hash, once; not again by every image that needs them.
        let closure = check_closure(&images, self, &KnownBlobs { corrupt, elsewhere: base });
        verification.platforms_absent = closure.platforms_absent;
        verification.problems.extend(closure.problems.into_iter().map(closure_problem));
        verification
    }

    /// A blob's sha256: an entry hashed where it lies, a blob of a set of
    /// volumes through its reader (which checks each part's own digest too).
    fn hash_blob(&self, blob: &Blob, buffer: &mut [u8]) -> Result<Digest, ArchiveError> {
        match blob {
            Blob::Memory(bytes) => Ok(Digest::of(bytes)),
            Blob::Entry(_) | Blob::Spans(_) => hash_stored_blob(&self.path, &self.storage, blob, buffer),
        }
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
}

impl BlobHolder for ArchiveReader {
    fn held_size(&self, digest: &Digest) -> Result<Option<u64>, String> {
        Ok(self.blob_size(digest))
    }

    fn read_small(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String> {
        self.read_blob(digest, limit).map_err(|error| error.to_string())
    }
}

/// A closure problem as `hpn verify` names it: the image and the part of it.
fn closure_problem(problem: ClosureProblem) -> Problem {
    let reason = match &problem.fault {
        ClosureFault::Missing => "is missing from the archive".to_owned(),
        fault => fault.to_string(),
    };
    Problem { place: format!("{}: {}", problem.image, problem.role), digest: Some(problem.digest), reason }
}
