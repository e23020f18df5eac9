//! A directory held open by its file descriptor, inside which names are
//! opened, created, renamed and removed without ever following a symbolic
//! link.
//!
//! A store or an OCI layout is a tree hpn writes into, and a link planted
//! inside it (`blobs/sha256` → `/etc`, a blob → `/proc/self/environ`) must
//! neither receive hpn's writes nor lend its bytes to an archive. Every
//! operation here is `*at(dirfd, name)` on a single path component with
//! `O_NOFOLLOW`, so nothing can redirect it: a component has no `..` or `/`
//! to walk out by, and the only link it could traverse is the name itself,
//! which no-follow refuses (`openat2`'s `RESOLVE_BENEATH` would add nothing
//! over that, and is not available on every kernel hpn runs on). The
//! directory given to [`Dir::open`] is the user's choice and may itself be
//! a link (`~/.cache/hpn/store` → `/data/store`).

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// New files and directories: `rw-r--r--` / `rwxr-xr-x` after the umask, as `std::fs` creates them.
const FILE_MODE: u32 = 0o666;
const DIR_MODE: u32 = 0o777;

/// An open directory; see the module documentation.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory at `path` (following a link there: the path is
    /// the caller's choice).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Dir { fd, path: path.to_owned() })
    }

    /// Where this directory is, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside this directory, for messages and for
    /// readers that open it themselves.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens the subdirectory `name`, creating it first when `create` is
    /// set. A link or a file of that name is refused with an error that
    /// names it.
    pub fn subdir(&self, name: &str, create: bool) -> io::Result<Dir> {
        check_name(name)?;
        if create {
            match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(DIR_MODE)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Dir { fd, path: self.join(name) }),
            Err(errno @ (rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)) => {
                Err(self.not_followed(name, errno, "a directory"))
            }
            Err(errno) => Err(errno.into()),
        }
    }

    /// Creates `name`, which must not exist yet (a link of that name counts
    /// as existing), open for reading and writing.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        check_name(name)?;
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE))?.into())
    }

    /// Opens `name` for reading and writing, creating it if missing: for
    /// lock files. A link of that name is refused.
    pub fn open_or_create(&self, name: &str) -> io::Result<File> {
        check_name(name)?;
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file: File = match rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE)) {
            Ok(fd) => fd.into(),
            Err(errno @ rustix::io::Errno::LOOP) => return Err(self.not_followed(name, errno, "a regular file")),
            Err(errno) => return Err(errno.into()),
        };
        self.require_regular(name, file)
    }

    /// Opens `name` for reading if it is a regular file. Missing is
    /// [`io::ErrorKind::NotFound`]; a link, a FIFO, a directory or a device
    /// is an [`io::ErrorKind::InvalidData`] error saying what it is (see
    /// [`is_not_regular`]). A FIFO is opened non-blocking, so finding one
    /// never waits for a writer.
    pub fn open_regular(&self, name: &str) -> io::Result<File> {
        check_name(name)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let file: File = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd.into(),
            Err(errno @ rustix::io::Errno::LOOP) => return Err(self.not_followed(name, errno, "a regular file")),
            Err(errno) => return Err(errno.into()),
        };
        self.require_regular(name, file)
    }

    /// Renames `from` to `to`, both in this directory, replacing `to`
    /// atomically if it exists (a link there is replaced, never followed).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        check_name(from)?;
        check_name(to)?;
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    /// Removes the file (or link) `name`.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Whether `name` exists, as whatever it is (a dangling link exists).
    pub fn exists(&self, name: &str) -> io::Result<bool> {
        check_name(name)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The names in this directory, without `.` and `..`.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(std::ffi::OsStr::from_bytes(&name).to_owned());
            }
        }
        Ok(names)
    }

    /// fsync the directory, so renames into it survive a crash.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    fn require_regular(&self, name: &str, file: File) -> io::Result<File> {
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&file)?.st_mode);
        if kind == FileType::RegularFile {
            return Ok(file);
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            NotRegular { path: self.join(name), what: describe(kind), expected: "a regular file" },
        ))
    }

    fn not_followed(&self, name: &str, errno: rustix::io::Errno, expected: &'static str) -> io::Error {
        let kind = match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => describe(FileType::from_raw_mode(stat.st_mode)),
            Err(_) => return errno.into(),
        };
        io::Error::new(io::ErrorKind::InvalidData, NotRegular { path: self.join(name), what: kind, expected })
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The error [`Dir`] returns for a name that is not what it should be.
#[derive(Debug)]
struct NotRegular {
    path: PathBuf,
    what: &'static str,
    expected: &'static str,
}

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {}, not {}; hpn never follows or reads through such a file inside a store or layout",
            self.path.display(),
            self.what,
            self.expected
        )
    }
}

impl std::error::Error for NotRegular {}

/// Whether `error` is [`Dir`]'s refusal of a link, FIFO, device or
/// directory where a regular file (or a directory) belongs.
pub fn is_not_regular(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<NotRegular>())
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "a file of unknown type",
    }
}

/// Names are single components: there is nothing to walk out of the directory by.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a file name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_and_special_files_are_refused_by_name() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"outside").unwrap();
        let dir = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("sub")).unwrap();
        symlink(outside.path().join("secret"), dir.path().join("file")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, dir.path().join("fifo"), Mode::from_raw_mode(0o600)).unwrap();
        let opened = Dir::open(dir.path()).unwrap();

        for error in [
            opened.subdir("sub", true).unwrap_err(),
            opened.open_regular("file").unwrap_err(),
            opened.open_regular("fifo").unwrap_err(),
            opened.open_or_create("file").unwrap_err(),
        ] {
            assert!(is_not_regular(&error), "{error}");
            assert!(error.to_string().contains(dir.path().to_str().unwrap()), "{error}");
        }
        assert!(opened.create_new("file").is_err(), "create_new followed a link");
        assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"outside");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
        assert_eq!(opened.open_regular("missing").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(opened.open_regular("../x").is_err());
    }

    #[test]
    fn rename_replaces_a_link_instead_of_writing_through_it() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("target"), b"outside").unwrap();
        let dir = tempfile::tempdir().unwrap();
        symlink(outside.path().join("target"), dir.path().join("blob")).unwrap();
        let opened = Dir::open(dir.path()).unwrap();
        io::Write::write_all(&mut opened.create_new("temp").unwrap(), b"inside").unwrap();
        opened.rename("temp", "blob").unwrap();
        assert_eq!(std::fs::read(outside.path().join("target")).unwrap(), b"outside");
        assert_eq!(io::read_to_string(opened.open_regular("blob").unwrap()).unwrap(), "inside");
        assert_eq!(opened.names().unwrap(), vec![OsString::from("blob")]);
    }
}
