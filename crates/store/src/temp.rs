//! Temp files that say whether their owner is alive.
//!
//! Every temp file is created with [`TEMP_PREFIX`] and its creator holds an
//! exclusive `flock` on it until it renames or removes it. The lock dies with
//! the process, so "try_lock succeeds" means "nobody owns this any more" —
//! which lets `Store::open` clear leftovers of killed runs without touching
//! the work of a concurrent hpn process. (An age threshold would get both
//! cases wrong sometimes: a slow download is old, a crashed one may be new.)

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use hpn_fs::Durability;

use crate::error::StoreError;

/// Leading dot: hidden, and can never be mistaken for a 64-hex blob name.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Creates `dir/.tmp-<pid>-<random>` and locks it.
pub(crate) fn create_locked(dir: &Path) -> Result<(File, PathBuf), StoreError> {
    loop {
        let path = dir.join(format!("{TEMP_PREFIX}{}-{:016x}", std::process::id(), fastrand::u64(..)));
        let file = match OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(StoreError::io("create a temp file in", dir, error)),
        };
        file.lock().map_err(|error| StoreError::io("lock temp file", &path, error))?;
        // Between create_new and lock() a concurrent cleanup may have found the
        // file unlocked and removed it. Then we hold a lock on an unlinked
        // inode whose rename would fail later: notice now and start over.
        if still_named(&file, &path) {
            return Ok((file, path));
        }
        tracing::debug!(path = %path.display(), "temp file was removed by a concurrent cleanup; retrying");
    }
}

#[cfg(unix)]
fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(ours), Ok(named)) => ours.dev() == named.dev() && ours.ino() == named.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn still_named(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// Removes temp files in `dir` whose owner is gone. Returns how many.
pub(crate) fn remove_stale(dir: &Path) -> Result<usize, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(StoreError::io("list", dir, error)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|error| StoreError::io("list", dir, error))?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let file = match File::open(&path) {
            Ok(file) => file,
            // Its owner committed or removed it meanwhile.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(StoreError::io("open stale temp file", &path, error)),
        };
        match file.try_lock() {
            Ok(()) => {
                // Removed while we hold the lock, so an owner that raced us in
                // create_locked() sees its name gone and retries.
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(StoreError::io("remove stale temp file", &path, error)),
                }
            }
            Err(TryLockError::WouldBlock) => {
                tracing::debug!(path = %path.display(), "temp file belongs to a live process; kept");
            }
            // A filesystem without flock support: we cannot tell, so keep it.
            Err(TryLockError::Error(error)) => {
                tracing::warn!(path = %path.display(), %error, "cannot tell whether temp file is in use; kept");
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed temp files left by an interrupted run");
    }
    Ok(removed)
}

/// fsync a directory, when `durability` asks for it, so a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path, durability: Durability) -> Result<(), StoreError> {
    durability.sync_dir(dir).map_err(|error| StoreError::io("sync directory", dir, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_temp_survives_cleanup_and_unlocked_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (live, live_path) = create_locked(dir.path()).unwrap();
        let stale_path = dir.path().join(format!("{TEMP_PREFIX}1-dead"));
        fs::write(&stale_path, b"partial").unwrap();
        let other = dir.path().join("keep-me");
        fs::write(&other, b"x").unwrap();

        assert_eq!(remove_stale(dir.path()).unwrap(), 1);
        assert!(live_path.exists() && other.exists() && !stale_path.exists());

        drop(live);
        assert_eq!(remove_stale(dir.path()).unwrap(), 1);
        assert!(!live_path.exists());
    }
}
