//! Temp files that say whether their owner is alive.
//!
//! Every temp file is created with [`TEMP_PREFIX`] and its creator holds an
//! exclusive `flock` on it until it renames or removes it. The lock dies with
//! the process, so "try_lock succeeds" means "nobody owns this any more" —
//! which lets `Store::open` clear leftovers of killed runs without touching
//! the work of a concurrent hpn process. (An age threshold would get both
//! cases wrong sometimes: a slow download is old, a crashed one may be new.)

use std::fs::{File, TryLockError};
use std::io;

use hpn_fs::{Dir, Durability};

use crate::error::StoreError;

/// Leading dot: hidden, and can never be mistaken for a 64-hex blob name.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Creates `dir/.tmp-<pid>-<random>` and locks it. Returns the file and its name.
pub(crate) fn create_locked(dir: &Dir) -> Result<(File, String), StoreError> {
    loop {
        let name = format!("{TEMP_PREFIX}{}-{:016x}", std::process::id(), fastrand::u64(..));
        let file = match dir.create_new(&name) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(StoreError::io("create a temp file in", dir.path(), error)),
        };
        file.lock().map_err(|error| StoreError::io("lock temp file", dir.join(&name), error))?;
        // Between create_new and lock() a concurrent cleanup may have found the
        // file unlocked and removed it. Then we hold a lock on an unlinked
        // inode whose rename would fail later: notice now and start over.
        if still_named(dir, &file, &name) {
            return Ok((file, name));
        }
        tracing::debug!(path = %dir.join(&name).display(), "temp file was removed by a concurrent cleanup; retrying");
    }
}

fn still_named(dir: &Dir, file: &File, name: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let named = dir.open_regular(name).and_then(|named| named.metadata());
    match (file.metadata(), named) {
        (Ok(ours), Ok(named)) => ours.dev() == named.dev() && ours.ino() == named.ino(),
        _ => false,
    }
}

/// Removes temp files in `dir` whose owner is gone. Returns how many.
pub(crate) fn remove_stale(dir: &Dir) -> Result<usize, StoreError> {
    let names = dir.names().map_err(|error| StoreError::io("list", dir.path(), error))?;
    let mut removed = 0;
    for name in names {
        let Some(name) = name.to_str().filter(|name| name.starts_with(TEMP_PREFIX)) else { continue };
        let path = dir.join(name);
        let file = match dir.open_regular(name) {
            Ok(file) => file,
            // Its owner committed or removed it meanwhile.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            // Nobody's temp file: hpn only ever creates regular ones.
            Err(error) if hpn_fs::dir::is_not_regular(&error) => {
                tracing::warn!(path = %path.display(), "removing a non-regular file named like a temp file");
                match dir.remove_file(name) {
                    Ok(()) => removed += 1,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(StoreError::io("remove", &path, error)),
                }
                continue;
            }
            Err(error) => return Err(StoreError::io("open stale temp file", &path, error)),
        };
        match file.try_lock() {
            Ok(()) => {
                // Removed while we hold the lock, so an owner that raced us in
                // create_locked() sees its name gone and retries.
                match dir.remove_file(name) {
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
        tracing::info!(dir = %dir.path().display(), removed, "removed temp files left by an interrupted run");
    }
    Ok(removed)
}

/// fsync a directory, when `durability` asks for it, so a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Dir, durability: Durability) -> Result<(), StoreError> {
    durability.sync_open_dir(dir).map_err(|error| StoreError::io("sync directory", dir.path(), error))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn locked_temp_survives_cleanup_and_unlocked_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Dir::open(dir.path()).unwrap();
        let (live, live_name) = create_locked(&opened).unwrap();
        let live_path = dir.path().join(live_name);
        let stale_path = dir.path().join(format!("{TEMP_PREFIX}1-dead"));
        fs::write(&stale_path, b"partial").unwrap();
        let other = dir.path().join("keep-me");
        fs::write(&other, b"x").unwrap();

        assert_eq!(remove_stale(&opened).unwrap(), 1);
        assert!(live_path.exists() && other.exists() && !stale_path.exists());

        drop(live);
        assert_eq!(remove_stale(&opened).unwrap(), 1);
        assert!(!live_path.exists());
    }
}
