//! Whether a stored blob can be trusted without reading it: verified-stat
//! records.
//!
//! A blob was verified when it was written (hashed on the way in) or when a
//! check last hashed it. What was verified is recorded as the file's stat —
//! device, inode, size, mtime and ctime, to the nanosecond — and a later
//! check that finds the same stat trusts the blob without re-hashing it;
//! any other stat (an edit, a restore from a backup, a file swapped in, a
//! `touch`) means it is hashed again. ctime cannot be set from user space,
//! so even an edit that puts mtime back changes it.
//!
//! Why records rather than hashing every blob as it leaves: `hpn pull` must
//! decide whether a layer is present without reading gigabytes on every run,
//! and `hpn save` copies store blobs into archives with `copy_file_range`,
//! which never brings the bytes into hpn at all; hashing on the way out
//! would cost both. What records cannot see is a change below the
//! filesystem (bit rot that keeps the stat): `hpn store verify` re-hashes
//! everything and drops the record of a blob found corrupt.
//!
//! hpn's store keeps its records in `.hpn-verified/<hex>`; an OCI layout hpn
//! does not own keeps them in memory for the process only.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use hpn_fs::Dir;
use hpn_oci::{Digest, Sha256Hasher};

use crate::error::StoreError;
use crate::{Store, VERIFIED_DIR, temp};

const HASH_BUFFER_SIZE: usize = 1024 * 1024;
/// A record's first word: records of another format are ignored (re-hashed).
const RECORD_VERSION: &str = "v1";

/// What [`Store::check_blob`] found under a blob's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCheck {
    /// A regular file of the right size whose content hashes to its name.
    Intact,
    /// Nothing.
    Missing,
    /// Something that must not be used; fetching the blob again replaces it.
    Damaged(BlobDamage),
}

/// How a stored blob is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobDamage {
    /// A link, FIFO, directory or device, never read through; says which.
    NotRegular(String),
    /// A regular file of another size than the descriptor's (a crash before
    /// the kernel wrote it back, a truncation).
    WrongSize {
        /// The descriptor's size.
        expected: u64,
        /// The file's.
        actual: u64,
    },
    /// Its content hashes to another digest.
    Corrupt {
        /// What it hashes to.
        actual: Digest,
    },
}

impl std::fmt::Display for BlobDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRegular(what) => f.write_str(what),
            Self::WrongSize { expected, actual } => write!(f, "it is {actual} bytes instead of {expected}"),
            Self::Corrupt { actual } => write!(f, "its content hashes to {actual}"),
        }
    }
}

/// The stat of a verified file: any change to its content changes this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatKey {
    device: u64,
    inode: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl StatKey {
    pub(crate) fn of(metadata: &Metadata) -> StatKey {
        StatKey {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    fn to_record(self) -> String {
        let StatKey { device, inode, size, mtime, ctime } = self;
        format!("{RECORD_VERSION} {device} {inode} {size} {} {} {} {}\n", mtime.0, mtime.1, ctime.0, ctime.1)
    }

    fn from_record(text: &str) -> Option<StatKey> {
        let mut words = text.split_ascii_whitespace();
        if words.next()? != RECORD_VERSION {
            return None;
        }
        let mut number = || words.next()?.parse::<i64>().ok();
        let (device, inode, size) = (number()?, number()?, number()?);
        let (mtime, ctime) = ((number()?, number()?), (number()?, number()?));
        Some(StatKey { device: device as u64, inode: inode as u64, size: size as u64, mtime, ctime })
    }
}

/// The records of one store or layout.
#[derive(Debug)]
pub(crate) struct VerifiedRecords {
    /// `.hpn-verified/` of hpn's store; `None` for a layout hpn does not own.
    dir: Option<Dir>,
    /// What this process verified or read from `dir`, so a blob many images
    /// share is looked up once.
    memory: Mutex<HashMap<Digest, StatKey>>,
}

impl VerifiedRecords {
    pub(crate) fn on_disk(root: &Dir) -> Result<VerifiedRecords, StoreError> {
        let dir = root
            .subdir(VERIFIED_DIR, true)
            .map_err(|error| StoreError::io("open directory", root.join(VERIFIED_DIR), error))?;
        Ok(VerifiedRecords { dir: Some(dir), memory: Mutex::new(HashMap::new()) })
    }

    pub(crate) fn in_memory() -> VerifiedRecords {
        VerifiedRecords { dir: None, memory: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn remove_stale(&self) -> Result<usize, StoreError> {
        self.dir.as_ref().map_or(Ok(0), temp::remove_stale)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, StatKey>> {
        self.memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_verified(&self, digest: &Digest, key: StatKey) -> bool {
        if self.memory().get(digest) == Some(&key) {
            return true;
        }
        let Some(dir) = &self.dir else { return false };
        let mut text = String::new();
        let recorded = dir
            .open_regular(digest.hex())
            .and_then(|file| file.take(256).read_to_string(&mut text))
            .ok()
            .and_then(|_| StatKey::from_record(&text));
        if recorded != Some(key) {
            return false;
        }
        self.memory().insert(digest.clone(), key);
        true
    }

    /// Records that the file `file` (named `digest`) was just verified. A
    /// record that cannot be written costs a re-hash later, nothing more, so
    /// that is only logged.
    pub(crate) fn record(&self, digest: &Digest, file: &File) {
        let Ok(metadata) = file.metadata() else { return };
        let key = StatKey::of(&metadata);
        self.memory().insert(digest.clone(), key);
        let Some(dir) = &self.dir else { return };
        let written = temp::create_locked(dir).and_then(|(mut record, temp_name)| {
            let result = record
                .write_all(key.to_record().as_bytes())
                .and_then(|()| dir.rename(&temp_name, digest.hex()))
                .map_err(|error| StoreError::io("write", dir.join(digest.hex()), error));
            if result.is_err() {
                let _ = dir.remove_file(&temp_name);
            }
            result
        });
        if let Err(error) = written {
            tracing::warn!(%digest, %error, "could not record that a blob was verified; it will be hashed again");
        }
    }

    /// Drops the record of a blob that is gone or found damaged.
    pub(crate) fn forget(&self, digest: &Digest) {
        self.memory().remove(digest);
        if let Some(dir) = &self.dir
            && let Err(error) = dir.remove_file(digest.hex())
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(%digest, %error, "could not remove a verified-stat record");
        }
    }
}

impl Store {
    /// Whether the blob can be used as it is: a regular file under its name
    /// (never followed if a link), of `expected_size` when given, whose
    /// content hashes to its digest. The hash is skipped when the file is
    /// unchanged since it was last verified (the module `verified` says how).
    /// Anything but [`BlobCheck::Intact`] means: fetch it again.
    pub fn check_blob(&self, digest: &Digest, expected_size: Option<u64>) -> Result<BlobCheck, StoreError> {
        let path = self.blob_path(digest);
        let file = match self.blobs_dir.open_regular(digest.hex()) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(BlobCheck::Missing),
            Err(error) if hpn_fs::dir::is_not_regular(&error) => {
                return Ok(self.found_damaged(digest, BlobDamage::NotRegular(error.to_string())));
            }
            Err(error) => return Err(StoreError::io("open blob", path, error)),
        };
        let metadata = file.metadata().map_err(|error| StoreError::io("read metadata of", &path, error))?;
        if let Some(expected) = expected_size
            && metadata.len() != expected
        {
            return Ok(self.found_damaged(digest, BlobDamage::WrongSize { expected, actual: metadata.len() }));
        }
        if self.verified.is_verified(digest, StatKey::of(&metadata)) {
            return Ok(BlobCheck::Intact);
        }
        let actual = hash_open_file(&file).map_err(|error| StoreError::io("read blob", &path, error))?;
        if actual != *digest {
            return Ok(self.found_damaged(digest, BlobDamage::Corrupt { actual }));
        }
        self.verified.record(digest, &file);
        Ok(BlobCheck::Intact)
    }

    fn found_damaged(&self, digest: &Digest, damage: BlobDamage) -> BlobCheck {
        tracing::warn!(%digest, store = %self.root.display(), %damage, "a stored blob is damaged; it counts as missing");
        self.verified.forget(digest);
        BlobCheck::Damaged(damage)
    }
}

/// Streams an open file through sha256 from where it is (its start, when just opened).
pub(crate) fn hash_open_file(mut file: &File) -> io::Result<Digest> {
    let mut hasher = Sha256Hasher::new();
    let mut buffer = vec![0; HASH_BUFFER_SIZE];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(read) => hasher.update(&buffer[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_other_formats() {
        let key = StatKey { device: 2049, inode: 7, size: 42, mtime: (1, 2), ctime: (3, 999_999_999) };
        assert_eq!(StatKey::from_record(&key.to_record()), Some(key));
        assert_eq!(StatKey::from_record("v0 1 2 3 4 5 6 7"), None);
        assert_eq!(StatKey::from_record("v1 1 2 3"), None);
    }
}
