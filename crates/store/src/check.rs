//! `verify` (is everything intact?) and `gc` (drop what no ref needs).

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, TryLockError};
use std::io::{self, Read};
use std::path::PathBuf;

use hpn_oci::{Descriptor, Digest, ParsedManifest, Sha256Hasher, media_type};

use crate::error::StoreError;
use crate::{Store, USAGE_LOCK_FILE, temp};

const HASH_BUFFER_SIZE: usize = 1024 * 1024;

/// What a blob is to the image that references it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRole {
    /// The manifest or index an index.json entry points at.
    Manifest,
    /// A manifest listed by an index (only the selected platforms may be present).
    ChildManifest,
    /// An image config.
    Config,
    /// A layer.
    Layer,
}

impl fmt::Display for BlobRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Manifest => "manifest",
            Self::ChildManifest => "platform manifest",
            Self::Config => "config",
            Self::Layer => "layer",
        })
    }
}

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
    /// A file in `blobs/sha256/` whose name is not a digest.
    StrayFile {
        /// The file.
        path: PathBuf,
    },
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
            Self::StrayFile { path } => write!(f, "{} is not a blob (its name is not a sha256 digest)", path.display()),
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
    /// Blobs some index.json entry reaches.
    pub blobs_kept: usize,
    /// Blobs nothing reaches, now deleted.
    pub blobs_removed: usize,
    /// The size of the deleted blobs.
    pub bytes_freed: u64,
    /// Temp files of killed runs removed on the way.
    pub temp_files_removed: usize,
}

/// Everything reachable from index.json, and what was wrong on the way.
struct Walk {
    reachable: HashSet<Digest>,
    problems: Vec<Problem>,
}

impl Store {
    /// Re-hashes every blob and checks that every index.json entry's manifest
    /// (for an index: its children that are present) has its config and
    /// layers. Reads the whole store; changes nothing.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let mut corrupt = HashSet::new();
        for (path, digest) in self.list_blob_files()? {
            let Some(digest) = digest else {
                report.problems.push(Problem::StrayFile { path });
                continue;
            };
            let Some((actual, size)) = hash_file(&path)? else { continue };
            report.blobs_checked += 1;
            report.bytes_checked += size;
            if actual != digest {
                corrupt.insert(digest.clone());
                report.problems.push(Problem::CorruptBlob { digest, actual });
            }
        }
        let entries = self.all_entries()?;
        report.refs_checked = entries.len();
        let walk = self.walk(entries);
        // A corrupt manifest is already reported once, as CorruptBlob.
        report.problems.extend(walk.problems.into_iter().filter(
            |problem| !matches!(problem, Problem::UnreadableManifest { digest, .. } if corrupt.contains(digest)),
        ));
        Ok(report)
    }

    /// Removes every blob no index.json entry reaches. Needs the store to
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
        let walk = self.walk(self.all_entries()?);
        if let Some(Problem::UnreadableManifest { digest, reason, .. }) =
            walk.problems.into_iter().find(|problem| matches!(problem, Problem::UnreadableManifest { .. }))
        {
            return Err(StoreError::UnreadableManifest { digest, reason });
        }
        let mut report = GcReport::default();
        for (path, digest) in self.list_blob_files()? {
            let Some(digest) = digest else { continue };
            if walk.reachable.contains(&digest) {
                report.blobs_kept += 1;
                continue;
            }
            let size = fs::metadata(&path).map(|metadata| metadata.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    report.blobs_removed += 1;
                    report.bytes_freed += size;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(StoreError::io("remove unreferenced blob", path, error)),
            }
        }
        report.temp_files_removed = temp::remove_stale(&self.blobs_dir)? + temp::remove_stale(&self.root)?;
        temp::sync_dir(&self.blobs_dir, self.durability)?;
        tracing::info!(removed = report.blobs_removed, bytes = report.bytes_freed, "store gc finished");
        Ok(report)
    }

    /// Upgrades this store's shared usage lock to exclusive for the guard's
    /// life. flock converts by dropping and re-taking the lock, so the shared
    /// lock is re-taken on every way out, including failure.
    fn lock_exclusively(&self) -> Result<ExclusiveUse<'_>, StoreError> {
        let path = self.root.join(USAGE_LOCK_FILE);
        match self.usage_lock.try_lock() {
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

    /// Files under `blobs/sha256/` except temp and other hidden files, with
    /// their digest if the name is one.
    fn list_blob_files(&self) -> Result<Vec<(PathBuf, Option<Digest>)>, StoreError> {
        let list_error = |error| StoreError::io("list", &self.blobs_dir, error);
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.blobs_dir).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            files.push((entry.path(), Digest::from_sha256_hex(&name).ok()));
        }
        files.sort();
        Ok(files)
    }

    fn walk(&self, roots: Vec<(Option<String>, Descriptor)>) -> Walk {
        let mut walk = Walk { reachable: HashSet::new(), problems: Vec::new() };
        let mut parsed = HashSet::new();
        let mut stack: Vec<(String, Descriptor, BlobRole)> = roots
            .into_iter()
            .map(|(name, descriptor)| {
                (name.unwrap_or_else(|| descriptor.digest.to_string()), descriptor, BlobRole::Manifest)
            })
            .collect();
        stack.reverse();
        while let Some((image, descriptor, role)) = stack.pop() {
            walk.reachable.insert(descriptor.digest.clone());
            let digest = descriptor.digest.clone();
            match self.blob_size(&digest) {
                Ok(Some(actual)) if actual != descriptor.size => {
                    walk.problems.push(Problem::WrongSize {
                        image: image.clone(),
                        digest: digest.clone(),
                        role,
                        expected: descriptor.size,
                        actual,
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    // An index may list platforms that were not pulled, and a
                    // layer with `urls` is non-distributable: neither is an error.
                    let optional =
                        role == BlobRole::ChildManifest || (role == BlobRole::Layer && !descriptor.urls.is_empty());
                    if !optional {
                        walk.problems.push(Problem::MissingBlob { image, digest, role });
                    }
                    continue;
                }
                Err(error) => {
                    walk.problems.push(Problem::UnreadableManifest { image, digest, reason: error.to_string() });
                    continue;
                }
            }
            let is_manifest =
                media_type::is_index(&descriptor.media_type) || media_type::is_image_manifest(&descriptor.media_type);
            if !is_manifest || !parsed.insert(digest.clone()) {
                continue;
            }
            let manifest = self
                .read_blob(&digest, hpn_oci::limits::MANIFEST)
                .map_err(|error| error.to_string())
                .and_then(|bytes| {
                    ParsedManifest::parse(&bytes, Some(&descriptor.media_type)).map_err(|error| error.to_string())
                });
            match manifest {
                Ok((ParsedManifest::Index(index), _)) => {
                    for child in index.manifests.into_iter().rev() {
                        stack.push((image.clone(), child, BlobRole::ChildManifest));
                    }
                }
                Ok((ParsedManifest::Image(manifest), _)) => {
                    for layer in manifest.layers.into_iter().rev() {
                        stack.push((image.clone(), layer, BlobRole::Layer));
                    }
                    stack.push((image, manifest.config, BlobRole::Config));
                }
                Err(reason) => walk.problems.push(Problem::UnreadableManifest { image, digest, reason }),
            }
        }
        walk
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
    if let Err(error) = store.usage_lock.lock_shared() {
        tracing::warn!(store = %store.root.display(), %error, "could not re-take the shared store lock");
    }
}

/// Streams a file through sha256. `None` if it vanished meanwhile (a gc elsewhere).
fn hash_file(path: &std::path::Path) -> Result<Option<(Digest, u64)>, StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StoreError::io("open blob", path, error)),
    };
    let mut hasher = Sha256Hasher::new();
    let mut buffer = vec![0; HASH_BUFFER_SIZE];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => hasher.update(&buffer[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(StoreError::io("read blob", path, error)),
        }
    }
    let size = hasher.bytes();
    Ok(Some((hasher.finish(), size)))
}
