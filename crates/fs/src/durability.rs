//! When what hpn writes must be on the disk.

use std::fs::File;
use std::io;
use std::path::Path;

/// Whether files hpn writes are flushed to the disk before they count as written.
///
/// Either way a file appears under its final name only once it is complete
/// (temp file, then rename), so a killed or interrupted run never leaves a
/// partial one: the kernel's page cache outlives the process. What differs
/// is a power loss or kernel crash right after hpn finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written back by the kernel when it likes, as `docker save`, skopeo and
    /// `cp` leave it: after a power loss a file written just before may be
    /// empty or short. Stores check blob sizes on use and digests when asked
    /// (`hpn store verify`); archives are checked when read.
    #[default]
    Buffered,
    /// Every file (and its directory, after a rename) is fsynced before it
    /// counts as written: what hpn reported done survives a power loss. Costs
    /// a wait for the disk per blob.
    Synced,
}

impl Durability {
    /// Flushes `file` to the disk when synced.
    pub fn sync_file(self, file: &File) -> io::Result<()> {
        match self {
            Self::Buffered => Ok(()),
            Self::Synced => file.sync_all(),
        }
    }

    /// Flushes the directory `dir` (the names in it) when synced, so a rename
    /// into it survives a crash.
    pub fn sync_dir(self, dir: &Path) -> io::Result<()> {
        match self {
            Self::Buffered => Ok(()),
            Self::Synced => File::open(dir)?.sync_all(),
        }
    }

    /// [`Durability::sync_dir`] for a directory held open.
    pub fn sync_open_dir(self, dir: &crate::Dir) -> io::Result<()> {
        match self {
            Self::Buffered => Ok(()),
            Self::Synced => dir.sync(),
        }
    }
}
