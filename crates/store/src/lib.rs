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
//! - nothing leaves the store unverified: [`Store::check_blob`] opens a blob
//!   no-follow, requires a regular file of the right size and re-hashes it
//!   unless it is unchanged since it was last verified (see `verified`); a
//!   damaged blob counts as missing, and writing it again replaces it;
//! - no write follows a link out of the store: every file is opened relative
//!   to the store's directory fds, no-follow ([`hpn_fs::Dir`]);
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
//! // (The layer is a plain tar, so its DiffID is its own digest.)
//! let config_bytes = format!(
//!     r#"{{"os":"linux","architecture":"amd64","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
//!     layer.digest
//! );
//! let config_bytes = config_bytes.as_bytes();
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
mod inventory;
mod temp;
mod uncompressed;
mod usage;
mod verified;
mod writer;

use std::fs::{File, TryLockError};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hpn_fs::{Dir, Durability};
use hpn_oci::{Descriptor, Digest};

pub use check::{BlobRole, GcReport, Problem, VerifyReport};
pub use error::StoreError;
pub use inventory::{Inventory, InventoryBlob, InventoryImage};
pub use uncompressed::UncompressedCopyWriter;
pub use usage::ImageUsage;
pub use verified::{BlobCheck, BlobDamage};
pub use writer::BlobWriter;

use verified::VerifiedRecords;

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &str = "1.0.0";
const INDEX_FILE: &str = "index.json";
const INDEX_LOCK_FILE: &str = "index.json.lock";
const USAGE_LOCK_FILE: &str = "store.lock";
/// Where hpn's own store keeps its verified-stat records (see `verified`).
const VERIFIED_DIR: &str = ".hpn-verified";
/// Which layer each stored uncompressed copy is the copy of (see `uncompressed`).
const UNCOMPRESSED_DIR: &str = ".hpn-uncompressed";

/// Whose directory it is: what hpn may leave in it besides the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// hpn's store: lock files and verified-stat records live in it.
    Store,
    /// Someone's OCI layout (`oci:DIR`): nothing of hpn's stays in it. The
    /// index lock is a `flock` on the directory itself, verified-stat
    /// records are kept for this process only, and there is no usage lock
    /// (gc runs on stores only).
    Layout,
}

/// The local image store. `Send + Sync`; share it with `Arc`.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    root_dir: Dir,
    blobs_dir: Arc<Dir>,
    verified: Arc<VerifiedRecords>,
    /// `.hpn-uncompressed/`: hpn's store only (an OCI layout keeps no copies).
    uncompressed_records: Option<Arc<Dir>>,
    /// Shared lock held for as long as this store is open; see [`Store::gc`].
    usage_lock: Option<File>,
    ownership: Ownership,
    durability: Durability,
    index_cache: std::sync::Mutex<Option<Arc<index::IndexSnapshot>>>,
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
        Self::open_as(root, durability, Ownership::Store, true)
    }

    /// Whether an OCI layout exists at `root` (what [`Store::open_existing`]
    /// requires): lets a caller that must create nothing (a dry run) tell
    /// an empty place from a store.
    pub fn exists_at(root: &Path) -> bool {
        require_layout(root).is_ok()
    }

    /// Opens a store that must exist already: for commands that only look
    /// at or tidy a store (`hpn store ls`, `verify`, `gc`, `rm`), which must
    /// not create one at a mistyped path.
    pub fn open_existing(root: &Path, durability: Durability) -> Result<Store, StoreError> {
        Self::open_as(root, durability, Ownership::Store, false)
    }

    /// Opens (or creates) an OCI layout directory that is not hpn's store,
    /// as `oci:DIR` names one: the same layout rules, but no lock file or
    /// other file of hpn's is left in it.
    pub fn open_layout(root: &Path, durability: Durability) -> Result<Store, StoreError> {
        Self::open_as(root, durability, Ownership::Layout, true)
    }

    fn open_as(root: &Path, durability: Durability, ownership: Ownership, create: bool) -> Result<Store, StoreError> {
        let root = std::path::absolute(root).map_err(|error| StoreError::io("resolve path", root, error))?;
        if create {
            refuse_foreign_directory(&root)?;
            std::fs::create_dir_all(&root).map_err(|error| StoreError::io("create store directory", &root, error))?;
        } else {
            require_layout(&root)?;
        }
        let root_dir = Dir::open(&root).map_err(|error| StoreError::io("open store directory", &root, error))?;
        let blobs_dir = root_dir
            .subdir("blobs", create)
            .and_then(|blobs| blobs.subdir("sha256", create))
            .map_err(|error| StoreError::io("open blob directory", root.join("blobs").join("sha256"), error))?;

        let usage_lock = match ownership {
            Ownership::Store => Some(take_usage_lock(&root_dir)?),
            Ownership::Layout => None,
        };
        let verified = match ownership {
            Ownership::Store => VerifiedRecords::on_disk(&root_dir)?,
            Ownership::Layout => VerifiedRecords::in_memory(),
        };
        let uncompressed_records = match ownership {
            Ownership::Store => Some(Arc::new(
                root_dir
                    .subdir(UNCOMPRESSED_DIR, true)
                    .map_err(|error| StoreError::io("open directory", root_dir.join(UNCOMPRESSED_DIR), error))?,
            )),
            Ownership::Layout => None,
        };
        let store = Store {
            root,
            root_dir,
            blobs_dir: Arc::new(blobs_dir),
            verified: Arc::new(verified),
            uncompressed_records,
            usage_lock,
            ownership,
            durability,
            index_cache: std::sync::Mutex::default(),
        };
        if create {
            store.ensure_layout_file()?;
            store.ensure_index()?;
        }
        temp::remove_stale(&store.blobs_dir)?;
        temp::remove_stale(&store.root_dir)?;
        store.verified.remove_stale()?;
        if let Some(records) = &store.uncompressed_records {
            temp::remove_stale(records)?;
        }
        Ok(store)
    }

    /// The store's directory, made absolute at open.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob's file is (or would be): `blobs/sha256/<hex>`. For
    /// readers that stream or copy it after [`Store::check_blob`] found it
    /// intact; writers go through [`Store::begin_blob`].
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir.join(digest.hex())
    }

    /// Whether a regular file is stored under the blob's name. Says nothing
    /// about its content: [`Store::check_blob`] does.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs_dir.open_regular(digest.hex()).is_ok()
    }

    /// The size of a stored blob, `None` if it is not in the store (or what
    /// is under its name is not a regular file).
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let path = self.blob_path(digest);
        match self.blobs_dir.open_regular(digest.hex()) {
            Ok(file) => {
                Ok(Some(file.metadata().map_err(|error| StoreError::io("read metadata of", &path, error))?.len()))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound || hpn_fs::dir::is_not_regular(&error) => Ok(None),
            Err(error) => Err(StoreError::io("read metadata of", path, error)),
        }
    }

    /// Reads a small blob (manifest, index, config) whole, checking its digest
    /// again: these bytes decide what else gets trusted.
    pub fn read_blob(&self, digest: &Digest, max_len: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let file = match self.blobs_dir.open_regular(digest.hex()) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobNotFound { digest: digest.clone(), root: self.root.clone() });
            }
            Err(error) if hpn_fs::dir::is_not_regular(&error) => {
                return Err(self.damaged(digest, BlobDamage::NotRegular(error.to_string())));
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
        BlobWriter::new(
            Arc::clone(&self.blobs_dir),
            Arc::clone(&self.verified),
            Some((expected_digest, expected_size)),
            self.durability,
        )
    }

    /// Stores `bytes` as the blob `expected` describes, after checking size and
    /// digest. Nothing to do if an intact copy is already there; a damaged
    /// one is replaced.
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
        if self.check_blob(&expected.digest, Some(expected.size))? == BlobCheck::Intact {
            return Ok(());
        }
        let mut writer = self.begin_blob(&expected.digest, Some(expected.size))?;
        io::Write::write_all(&mut writer, bytes)
            .map_err(|error| StoreError::io("write blob", self.blob_path(&expected.digest), error))?;
        writer.commit()
    }

    fn damaged(&self, digest: &Digest, damage: BlobDamage) -> StoreError {
        StoreError::DamagedBlob { digest: digest.clone(), root: self.root.clone(), damage }
    }

    fn ensure_layout_file(&self) -> Result<(), StoreError> {
        let path = self.root.join(LAYOUT_FILE);
        match self.root_dir.open_regular(LAYOUT_FILE) {
            Ok(file) => {
                let mut bytes = Vec::new();
                file.take(hpn_oci::limits::MANIFEST)
                    .read_to_end(&mut bytes)
                    .map_err(|error| StoreError::io("read", &path, error))?;
                check_layout_version(&path, &bytes)
            }
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
    /// content, never a mix. A link under `name` is replaced, not followed.
    fn write_file_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (mut file, temp_name) = temp::create_locked(&self.root_dir)?;
        let temp_path = self.root_dir.join(&temp_name);
        let target = self.root.join(name);
        let result = io::Write::write_all(&mut file, bytes)
            .and_then(|()| self.durability.sync_file(&file))
            .map_err(|error| StoreError::io("write", &temp_path, error))
            .and_then(|()| {
                self.root_dir.rename(&temp_name, name).map_err(|error| StoreError::io("replace", &target, error))
            });
        if result.is_err() {
            let _ = self.root_dir.remove_file(&temp_name);
        }
        result?;
        temp::sync_dir(&self.root_dir, self.durability)
    }
}

fn take_usage_lock(root_dir: &Dir) -> Result<File, StoreError> {
    let usage_lock_path = root_dir.join(USAGE_LOCK_FILE);
    let usage_lock = open_lock_file(root_dir, USAGE_LOCK_FILE)?;
    match usage_lock.try_lock_shared() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            tracing::info!(store = %root_dir.path().display(), "waiting for gc in another hpn process to finish");
            usage_lock.lock_shared().map_err(|error| StoreError::io("lock", &usage_lock_path, error))?;
        }
        Err(TryLockError::Error(error)) => return Err(StoreError::io("lock", &usage_lock_path, error)),
    }
    Ok(usage_lock)
}

fn open_lock_file(dir: &Dir, name: &str) -> Result<File, StoreError> {
    dir.open_or_create(name).map_err(|error| StoreError::io("open lock file", dir.join(name), error))
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

/// For [`Store::open_existing`]: the directory must be there and be a layout.
fn require_layout(root: &Path) -> Result<(), StoreError> {
    match std::fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(StoreError::NoStore { root: root.to_owned(), reason: "is not a directory" }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::NoStore { root: root.to_owned(), reason: "does not exist" });
        }
        Err(error) => return Err(StoreError::io("open store directory", root, error)),
    }
    if !root.join(LAYOUT_FILE).exists() {
        return Err(StoreError::NoStore { root: root.to_owned(), reason: "holds no OCI layout (no oci-layout file)" });
    }
    Ok(())
}

/// A directory that holds other things and is not yet a layout is most likely
/// a mistyped `--store`: filling it with store files would be rude.
fn refuse_foreign_directory(root: &Path) -> Result<(), StoreError> {
    if root.join(LAYOUT_FILE).exists() {
        return Ok(());
    }
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(StoreError::io("list", root, error)),
    };
    for entry in entries {
        let entry = entry.map_err(|error| StoreError::io("list", root, error))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // What an earlier open() killed half-way may have left behind.
        let ours = ["blobs", INDEX_FILE, INDEX_LOCK_FILE, USAGE_LOCK_FILE, VERIFIED_DIR, UNCOMPRESSED_DIR]
            .contains(&name.as_ref())
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
