//! Image archives for hpn. Today: the writer of the Docker 25+ "hybrid"
//! archive `hpn save` produces (an OCI layout and Docker's manifest.json in
//! one tar, sharing the original blobs). The reader of the archives users
//! already have comes next, as its own module beside `writer`.
//!
//! Synchronous std I/O; async callers use `spawn_blocking`.

mod error;
mod format;
mod tar_format;
mod writer;

pub use error::ArchiveError;
pub use writer::{ArchiveCompression, ArchiveImage, ArchiveWriter, DockerImageEntry};
