//! Image archives for hpn: the writer of the Docker 25+ "hybrid" archive
//! `hpn save` produces (an OCI layout and Docker's manifest.json in one tar,
//! sharing the original blobs), and the reader of the archives users already
//! have (docker save of any Docker version, skopeo, crane, oci-archive, OCI
//! layout directories; whole-file gzip/zstd; stdin).
//!
//! Synchronous std I/O; async callers use `spawn_blocking`.

mod error;
mod format;
mod reader;
mod tar_format;
mod writer;

pub use error::ArchiveError;
pub use reader::{ArchiveReader, ArchivedImage, BlobReader, METADATA_LIMIT};
pub use writer::{ArchiveCompression, ArchiveImage, ArchiveWriter, DockerImageEntry};
