//! hpn's local store: a content-addressed blob store that is, on disk, a plain
//! OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), so
//! skopeo (`oci:DIR:REF`) and umoci can read it as is.
//!
//! Safety rules, all enforced here rather than by callers:
//! - nothing partial is ever visible under a final name: blobs and index.json
//!   are written to locked temp files, checked and renamed (and fsynced first
//!   when the store is opened with [`Durability::Synced`]); a blob of the wrong
//!   size under its name, which only a power loss can leave, is replaced when
//!   it is written again;
//! - index.json is only rewritten under an exclusive lock on
//!   `index.json.lock`, so concurrent hpn processes never lose each other's
//!   refs (skopeo #1018);
//! - temp files of killed runs are removed on open, those of live processes
//!   are not (see `temp`);
//! - every `Store` holds a shared lock on `store.lock` for its lifetime and
//!   [`Store::gc`] needs it exclusively, so gc never deletes the fresh, not yet
//!   referenced blobs of a pull running in another process.
//!
//! Everything is synchronous std I/O; async callers use `spawn_blocking`.
//! Where the store lives is the caller's choice: `hpn` puts it under the
//! user's cache directory, this crate reads no environment.
//!
//! ```
//! use std::io::Write;
//!
//! use hpn_oci::{Descriptor, Digest, media_type};
//! use hpn_store::Store;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//!
//! // A big blob streams in and is renamed to blobs/sha256/<hex> only once
//! // size and digest matched.
//! let layer_bytes = b"layer bytes, arriving in chunks";
//! let layer = Descriptor::new(media_type::OCI_LAYER, Digest::of(layer_bytes), layer_bytes.len() as u64);
//! let mut writer = store.begin_blob(&layer.digest, Some(layer.size)).unwrap();
//! for chunk in layer_bytes.chunks(8) {
//!     writer.write_all(chunk).unwrap();
//! }
//! writer.commit().unwrap();
//!
//! // A small one in one call, read back verified.
//! let config_bytes = br#"{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#;
//! let config = Descriptor::new(media_type::OCI_CONFIG, Digest::of(config_bytes), config_bytes.len() as u64);
//! store.put_blob_bytes(&config, config_bytes).unwrap();
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
//!     media_type::OCI_MANIFEST,
//!     serde_json::to_string(&config).unwrap(),
//!     serde_json::to_string(&layer).unwrap(),
//! );
//! let manifest_bytes = manifest.as_bytes();
//! let manifest = Descriptor::new(media_type::OCI_MANIFEST, Digest::of(manifest_bytes), manifest_bytes.len() as u64);
//! store.put_blob_bytes(&manifest, manifest_bytes).unwrap();
//! assert_eq!(store.read_blob(&manifest.digest, hpn_oci::limits::MANIFEST).unwrap(), manifest_bytes);
//!
//! // Named in index.json, where skopeo (`oci:DIR:NAME`) finds it too.
//! store.set_ref("docker.io/library/app:1", &manifest).unwrap();
//! let found = store.resolve_ref("docker.io/library/app:1").unwrap().unwrap();
//! assert_eq!(found.digest, manifest.digest);
//! assert!(store.verify().unwrap().is_ok());
//! ```

#![warn(missing_docs)]

mod check;
mod error;
mod index;
mod temp;
mod writer;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use hpn_fs::Durability;
use hpn_oci::{Descriptor, Digest};

pub use check::{BlobRole, GcReport, Problem, VerifyReport};
pub use error::StoreError;
pub use writer::BlobWriter;

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &str = "1.0.0";
const INDEX_FILE: &str = "index.json";
const INDEX_LOCK_FILE: &str = "index.json.lock";
const USAGE_LOCK_FILE: &str = "store.lock";

/// The local image store. `Send + Sync`; share it with `Arc`.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    blobs_dir: PathBuf,
    /// Shared lock held for as long as this store is open; see [`Store::gc`].
    usage_lock: File,
    durability: Durability,
}

impl Store {
    /// Opens the store at `root`, creating an empty OCI layout there if the
    /// directory is new or empty, and removes temp files left by killed runs.
    /// What it writes is left to the kernel to flush ([`Durability::Buffered`]).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Self::open_with(root, Durability::default())
    }

    /// [`Store::open`], flushing blobs and index.json to the disk as `durability` says.
    pub fn open_with(root: &Path, durability: Durability) -> Result<Store, StoreError> {
        let root = std::path::absolute(root).map_err(|error| StoreError::io("resolve path", root, error))?;
        refuse_foreign_directory(&root)?;
        let blobs_dir = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs_dir).map_err(|error| StoreError::io("create store directory", &blobs_dir, error))?;

        let usage_lock_path = root.join(USAGE_LOCK_FILE);
        let usage_lock = open_lock_file(&usage_lock_path)?;
        match usage_lock.try_lock_shared() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                tracing::info!(store = %root.display(), "waiting for gc in another hpn process to finish");
                usage_lock.lock_shared().map_err(|error| StoreError::io("lock", &usage_lock_path, error))?;
            }
            Err(TryLockError::Error(error)) => return Err(StoreError::io("lock", &usage_lock_path, error)),
        }

        let store = Store { root, blobs_dir, usage_lock, durability };
        store.ensure_layout_file()?;
        store.ensure_index()?;
        temp::remove_stale(&store.blobs_dir)?;
        temp::remove_stale(&store.root)?;
        Ok(store)
    }

    /// The store's directory, made absolute at open.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob's file is (or would be): `blobs/sha256/<hex>`. For
    /// readers that stream or copy it; writers go through [`Store::begin_blob`].
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir.join(digest.hex())
    }

    /// Whether the blob is in the store (a committed, final-named file).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|metadata| metadata.is_file())
    }

    /// The size of a stored blob, `None` if it is not in the store.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StoreError::io("read metadata of", path, error)),
        }
    }

    /// Reads a small blob (manifest, index, config) whole, checking its digest
    /// again: these bytes decide what else gets trusted.
    pub fn read_blob(&self, digest: &Digest, max_len: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobNotFound { digest: digest.clone(), root: self.root.clone() });
            }
            Err(error) => return Err(StoreError::io("open blob", path, error)),
        };
        let size = file.metadata().map_err(|error| StoreError::io("read metadata of", &path, error))?.len();
        if size > max_len {
            return Err(StoreError::BlobTooLarge { digest: digest.clone(), size, max: max_len });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(max_len + 1).read_to_end(&mut bytes).map_err(|error| StoreError::io("read blob", &path, error))?;
        if bytes.len() as u64 > max_len {
            return Err(StoreError::BlobTooLarge { digest: digest.clone(), size: bytes.len() as u64, max: max_len });
        }
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::CorruptBlob { digest: digest.clone(), actual, root: self.root.clone() });
        }
        Ok(bytes)
    }

    /// Starts writing a blob: a locked temp file in `blobs/sha256/` (same
    /// filesystem, so the final rename is atomic), hashed as it is written.
    pub fn begin_blob(&self, expected_digest: &Digest, expected_size: Option<u64>) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(&self.blobs_dir, expected_digest, expected_size, self.durability)
    }

    /// Stores `bytes` as the blob `expected` describes, after checking size and
    /// digest. Nothing to do if the blob is already there.
    pub fn put_blob_bytes(&self, expected: &Descriptor, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.len() as u64 != expected.size {
            return Err(StoreError::SizeMismatch {
                digest: expected.digest.clone(),
                expected: expected.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::of(bytes);
        if actual != expected.digest {
            return Err(StoreError::DigestMismatch { expected: expected.digest.clone(), actual });
        }
        if self.has_blob(&expected.digest) {
            return Ok(());
        }
        let mut writer = self.begin_blob(&expected.digest, Some(expected.size))?;
        io::Write::write_all(&mut writer, bytes)
            .map_err(|error| StoreError::io("write blob", self.blob_path(&expected.digest), error))?;
        writer.commit()
    }

    fn ensure_layout_file(&self) -> Result<(), StoreError> {
        let path = self.root.join(LAYOUT_FILE);
        match fs::read(&path) {
            Ok(bytes) => check_layout_version(&path, &bytes),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                // Concurrent creators write identical bytes, so last rename wins harmlessly.
                let content = format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#);
                self.write_file_atomically(LAYOUT_FILE, content.as_bytes())
            }
            Err(error) => Err(StoreError::io("read", path, error)),
        }
    }

    /// Writes `root/name` through a locked temp file and a rename (fsyncs as
    /// the store's durability says), so readers see the old or the new
    /// content, never a mix.
    fn write_file_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (mut file, temp_path) = temp::create_locked(&self.root)?;
        let target = self.root.join(name);
        let result = io::Write::write_all(&mut file, bytes)
            .and_then(|()| self.durability.sync_file(&file))
            .map_err(|error| StoreError::io("write", &temp_path, error))
            .and_then(|()| fs::rename(&temp_path, &target).map_err(|error| StoreError::io("replace", &target, error)));
        if result.is_err() {
            let _ = fs::remove_file(&temp_path);
        }
        result?;
        temp::sync_dir(&self.root, self.durability)
    }
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|error| StoreError::io("open lock file", path, error))
}

fn check_layout_version(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidLayout { path: path.to_owned(), reason };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
    match value.get("imageLayoutVersion").and_then(serde_json::Value::as_str) {
        Some(LAYOUT_VERSION) => Ok(()),
        Some(other) => Err(StoreError::UnsupportedLayoutVersion { path: path.to_owned(), found: other.to_owned() }),
        None => Err(invalid("no imageLayoutVersion string".to_owned())),
    }
}

/// A directory that holds other things and is not yet a layout is most likely
/// a mistyped `--store`: filling it with store files would be rude.
fn refuse_foreign_directory(root: &Path) -> Result<(), StoreError> {
    if root.join(LAYOUT_FILE).exists() {
        return Ok(());
    }
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(StoreError::io("list", root, error)),
    };
    for entry in entries {
        let entry = entry.map_err(|error| StoreError::io("list", root, error))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // What an earlier open() killed half-way may have left behind.
        let ours = ["blobs", INDEX_FILE, INDEX_LOCK_FILE, USAGE_LOCK_FILE].contains(&name.as_ref())
            || name.starts_with(temp::TEMP_PREFIX);
        if !ours {
            return Err(StoreError::InvalidLayout {
                path: root.join(LAYOUT_FILE),
                reason: format!("missing, and {} already holds other files such as {name:?}", root.display()),
            });
        }
    }
    Ok(())
}
