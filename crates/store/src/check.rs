//! `verify` (is everything intact?) and `gc` (drop what no ref needs).

use std::collections::HashSet;
use std::fmt;
use std::fs::TryLockError;
use std::io;
use std::path::PathBuf;

use hpn_oci::closure::{BlobHolder, ClosureFault, ClosureProblem, KnownBlobs, check_closure};
use hpn_oci::{Descriptor, Digest};
use rayon::prelude::*;

use crate::error::StoreError;
use crate::verified::hash_open_file;
use crate::{Store, USAGE_LOCK_FILE, temp};

pub use hpn_oci::closure::BlobRole;

/// One thing [`Store::verify`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A blob's content no longer hashes to its name.
    CorruptBlob {
        /// The blob's name.
        digest: Digest,
        /// What its content hashes to.
        actual: Digest,
    },
    /// An image needs a blob that is not in the store.
    MissingBlob {
        /// The index.json name of the image (or its digest, if unnamed).
        image: String,
        /// The blob it needs.
        digest: Digest,
        /// What the blob is to the image.
        role: BlobRole,
    },
    /// A blob's size differs from what the referencing descriptor says.
    WrongSize {
        /// The index.json name of the image (or its digest, if unnamed).
        image: String,
        /// The blob.
        digest: Digest,
        /// What the blob is to the image.
        role: BlobRole,
        /// The size the descriptor gives.
        expected: u64,
        /// The size of the file.
        actual: u64,
    },
    /// A manifest or index that cannot be read or parsed, so what it lists
    /// could not be checked.
    UnreadableManifest {
        /// The index.json name of the image (or its digest, if unnamed).
        image: String,
        /// The manifest or index.
        digest: Digest,
        /// Why it cannot be read or parsed.
        reason: String,
    },
    /// A link, FIFO, directory or device under a blob's name: never read
    /// through, and replaced when the blob is fetched again.
    NotRegular {
        /// The blob's name.
        digest: Digest,
        /// What it is instead.
        reason: String,
    },
    /// A file in `blobs/sha256/` whose name is not a digest.
    StrayFile {
        /// The file.
        path: PathBuf,
    },
    /// An image whose parts do not agree: a config that cannot be read, or
    /// whose DiffIDs do not match the manifest's layers; an index with none
    /// of its manifests; indexes nested too deep.
    Inconsistent(ClosureProblem),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CorruptBlob { digest, actual } => {
                write!(f, "blob {digest} is corrupt: its content hashes to {actual}")
            }
            Self::MissingBlob { image, digest, role } => write!(f, "{image}: {role} {digest} is missing"),
            Self::WrongSize { image, digest, role, expected, actual } => {
                write!(f, "{image}: {role} {digest} is {actual} bytes, its descriptor says {expected}")
            }
            Self::UnreadableManifest { image, digest, reason } => {
                write!(f, "{image}: manifest {digest} cannot be read: {reason}")
            }
            Self::NotRegular { digest, reason } => write!(f, "blob {digest} is unusable: {reason}"),
            Self::StrayFile { path } => write!(f, "{} is not a blob (its name is not a sha256 digest)", path.display()),
            Self::Inconsistent(problem) => problem.fmt(f),
        }
    }
}

/// What [`Store::verify`] checked and found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Bytes re-hashed.
    pub bytes_checked: u64,
    /// index.json entries walked (named or not).
    pub refs_checked: usize,
    /// Everything found wrong; empty for an intact store.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether the store is intact.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What [`Store::gc`] kept and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Blobs some index.json entry reaches, and the uncompressed copies of kept layers.
    pub blobs_kept: usize,
    /// Blobs nothing reaches, now deleted.
    pub blobs_removed: usize,
    /// The size of the deleted blobs.
    pub bytes_freed: u64,
    /// Temp files of killed runs removed on the way.
    pub temp_files_removed: usize,
}

/// What [`Store::verify`] found of one blob file.
enum BlobVerdict {
    /// Removed while verify ran.
    Gone,
    /// It hashes to its name.
    Intact {
        /// Its size.
        bytes: u64,
    },
    /// It does not, or is no regular file.
    Damaged {
        /// Its size, when it was hashed.
        hashed_bytes: Option<u64>,
        problem: Problem,
        digest: Digest,
    },
}

/// Everything reachable from index.json, and what was wrong on the way.
pub(crate) struct Walk {
    pub(crate) reachable: HashSet<Digest>,
    pub(crate) problems: Vec<Problem>,
}

impl Store {
    /// Re-hashes every blob (whatever its verified-stat record says) and
    /// checks that every index.json entry's manifest (for an index: its
    /// children that are present) has its config and layers. Reads the whole
    /// store; changes nothing but the records, which it renews.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let mut corrupt = HashSet::new();
        let mut blobs = Vec::new();
        for (name, digest) in self.list_blob_files()? {
            match digest {
                Some(digest) => blobs.push((name, digest)),
                None => report.problems.push(Problem::StrayFile { path: self.blobs_dir.join(&name) }),
            }
        }
        // Hashing is the cost: on rayon's pool, one blob per core, as `hpn verify` hashes an archive.
        let verdicts: Vec<Result<BlobVerdict, StoreError>> =
            blobs.into_par_iter().map(|(name, digest)| self.reverify_blob(&name, digest)).collect();
        for verdict in verdicts {
            match verdict? {
                BlobVerdict::Gone => {}
                BlobVerdict::Intact { bytes } => {
                    report.blobs_checked += 1;
                    report.bytes_checked += bytes;
                }
                BlobVerdict::Damaged { hashed_bytes, problem, digest } => {
                    if let Some(bytes) = hashed_bytes {
                        report.blobs_checked += 1;
                        report.bytes_checked += bytes;
                    }
                    corrupt.insert(digest);
                    report.problems.push(problem);
                }
            }
        }
        let entries = self.all_entries()?;
        report.refs_checked = entries.len();
        // A corrupt blob is reported once, as CorruptBlob, not again by every image that needs it.
        report.problems.extend(self.walk(entries, KnownBlobs { corrupt, ..KnownBlobs::default() }).problems);
        Ok(report)
    }

    /// Re-hashes one blob whatever its verified-stat record says, and renews
    /// or drops the record.
    fn reverify_blob(&self, name: &str, digest: Digest) -> Result<BlobVerdict, StoreError> {
        let path = self.blobs_dir.join(name);
        let file = match self.blobs_dir.open_regular(name) {
            Ok(file) => file,
            // Removed meanwhile (a gc elsewhere).
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(BlobVerdict::Gone),
            Err(error) if hpn_fs::dir::is_not_regular(&error) => {
                self.verified.forget(&digest);
                let problem = Problem::NotRegular { digest: digest.clone(), reason: error.to_string() };
                return Ok(BlobVerdict::Damaged { hashed_bytes: None, problem, digest });
            }
            Err(error) => return Err(StoreError::io("open blob", path, error)),
        };
        let actual = hash_open_file(&file).map_err(|error| StoreError::io("read blob", &path, error))?;
        let bytes = file.metadata().map_or(0, |metadata| metadata.len());
        if actual == digest {
            self.verified.record(&digest, &file);
            return Ok(BlobVerdict::Intact { bytes });
        }
        self.verified.forget(&digest);
        let problem = Problem::CorruptBlob { digest: digest.clone(), actual };
        Ok(BlobVerdict::Damaged { hashed_bytes: Some(bytes), problem, digest })
    }

    /// Removes every blob no index.json entry reaches, but for the
    /// uncompressed copies of the layers it keeps ([`Store::uncompressed_copy`]). Needs the store to
    /// itself: fails with [`StoreError::InUse`] while another process has it
    /// open (its pull may have written blobs it has not referenced yet). Stops
    /// without removing anything if index.json is missing or unreadable
    /// ([`StoreError::UnusableIndex`]) or a reachable manifest cannot be read,
    /// since then what they reference is unknown.
    ///
    /// Do not run it while this same `Store` is ingesting an image.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _exclusive = self.lock_exclusively()?;
        let _index = self.lock_index()?;
        let walk = self.walk(self.all_entries()?, KnownBlobs::default());
        if let Some(Problem::UnreadableManifest { digest, reason, .. }) =
            walk.problems.into_iter().find(|problem| matches!(problem, Problem::UnreadableManifest { .. }))
        {
            return Err(StoreError::UnreadableManifest { digest, reason });
        }
        let copies = self.uncompressed_copies_of(&walk.reachable)?;
        let mut report = GcReport::default();
        for (name, digest) in self.list_blob_files()? {
            let Some(digest) = digest else { continue };
            if walk.reachable.contains(&digest) || copies.contains(&digest) {
                report.blobs_kept += 1;
                continue;
            }
            let size = self.blob_size(&digest)?.unwrap_or(0);
            match self.blobs_dir.remove_file(&name) {
                Ok(()) => {
                    self.verified.forget(&digest);
                    report.blobs_removed += 1;
                    report.bytes_freed += size;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(StoreError::io("remove unreferenced blob", self.blobs_dir.join(&name), error));
                }
            }
        }
        report.temp_files_removed = temp::remove_stale(&self.blobs_dir)? + temp::remove_stale(&self.root_dir)?;
        temp::sync_dir(&self.blobs_dir, self.durability)?;
        tracing::info!(removed = report.blobs_removed, bytes = report.bytes_freed, "store gc finished");
        Ok(report)
    }

    /// Upgrades this store's shared usage lock to exclusive for the guard's
    /// life. flock converts by dropping and re-taking the lock, so the shared
    /// lock is re-taken on every way out, including failure.
    fn lock_exclusively(&self) -> Result<ExclusiveUse<'_>, StoreError> {
        let path = self.root.join(USAGE_LOCK_FILE);
        let Some(usage_lock) = &self.usage_lock else {
            return Err(StoreError::NotAStore { root: self.root.clone() });
        };
        match usage_lock.try_lock() {
            Ok(()) => Ok(ExclusiveUse { store: self }),
            Err(error) => {
                restore_shared(self);
                match error {
                    TryLockError::WouldBlock => Err(StoreError::InUse { root: self.root.clone() }),
                    TryLockError::Error(error) => Err(StoreError::io("lock", path, error)),
                }
            }
        }
    }

    /// Names under `blobs/sha256/` except temp and other hidden files, with
    /// their digest if the name is one.
    pub(crate) fn list_blob_files(&self) -> Result<Vec<(String, Option<Digest>)>, StoreError> {
        let names = self.blobs_dir.names().map_err(|error| StoreError::io("list", self.blobs_dir.path(), error))?;
        let mut files: Vec<(String, Option<Digest>)> = names
            .into_iter()
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .map(|name| {
                let digest = Digest::from_sha256_hex(&name).ok();
                (name, digest)
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Every blob the entries reach, and what is wrong on the way: the same
    /// closure check `hpn verify` makes of an archive ([`check_closure`]).
    pub(crate) fn walk(&self, roots: Vec<(Option<String>, Descriptor)>, known: KnownBlobs) -> Walk {
        let images: Vec<(String, Descriptor)> = roots
            .into_iter()
            .map(|(name, descriptor)| (name.unwrap_or_else(|| descriptor.digest.to_string()), descriptor))
            .collect();
        let closure = check_closure(&images, self, &known);
        Walk { reachable: closure.reachable, problems: closure.problems.into_iter().map(Problem::from).collect() }
    }
}

impl BlobHolder for Store {
    fn held_size(&self, digest: &Digest) -> Result<Option<u64>, String> {
        self.blob_size(digest).map_err(|error| error.to_string())
    }

    fn read_small(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String> {
        self.read_blob(digest, limit).map_err(|error| error.to_string())
    }
}

impl From<ClosureProblem> for Problem {
    fn from(problem: ClosureProblem) -> Self {
        let ClosureProblem { image, role, digest, fault } = problem;
        match fault {
            ClosureFault::Missing => Self::MissingBlob { image, digest, role },
            ClosureFault::WrongSize { expected, actual } => Self::WrongSize { image, digest, role, expected, actual },
            // What gc must not guess past: a manifest whose references are unknown.
            ClosureFault::Unreadable(reason) if matches!(role, BlobRole::Manifest | BlobRole::ChildManifest) => {
                Self::UnreadableManifest { image, digest, reason }
            }
            fault => Self::Inconsistent(ClosureProblem { image, role, digest, fault }),
        }
    }
}

/// Restores the shared usage lock when gc is done with the store.
struct ExclusiveUse<'a> {
    store: &'a Store,
}

impl Drop for ExclusiveUse<'_> {
    fn drop(&mut self) {
        restore_shared(self.store);
    }
}

fn restore_shared(store: &Store) {
    if let Some(usage_lock) = &store.usage_lock
        && let Err(error) = usage_lock.lock_shared()
    {
        tracing::warn!(store = %store.root.display(), %error, "could not re-take the shared store lock");
    }
}
