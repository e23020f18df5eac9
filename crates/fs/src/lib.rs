//! How hpn writes local files: when they must be on the disk ([`Durability`]),
//! inside a directory without following links out of it ([`Dir`]), and
//! which kind of I/O failure the user is looking at ([`io_error`]).
//!
//! The store and the archive crates both write big files under final names
//! that must never be seen partial; the rules they share live here rather
//! than in the vocabulary crate `hpn-oci`, which knows nothing of disks.
//!
//! ```
//! use hpn_fs::{Durability, io_error};
//!
//! let file = tempfile::tempfile().unwrap();
//! Durability::Buffered.sync_file(&file).unwrap(); // a no-op: the kernel writes back
//! assert!(io_error::is_no_space(&std::io::Error::from(std::io::ErrorKind::StorageFull)));
//! ```

#![warn(missing_docs)]

pub mod dir;
mod durability;
pub mod io_error;

pub use dir::Dir;
pub use durability::Durability;
