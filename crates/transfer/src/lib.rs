//! One transfer engine, interchangeable endpoints.
//!
//! Every hpn command is a copy from an [`ImageSource`] to an
//! [`ImageDestination`]: `pull` is registry → store, `save` is registry →
//! store → archive, and later `push`/`load`/`copy` are other pairs. The
//! [`Engine`] resolves a reference, picks platforms, moves each blob at most
//! once (skipping what the destination has, single-flight across images),
//! writes manifests after their blobs and indexes after their manifests, and
//! then commits the image at the destination.

mod archive_endpoint;
mod archive_source;
mod blob_locations;
mod endpoint;
mod engine;
mod error;
mod hashing;
mod registry_endpoint;
mod report;
mod single_flight;
mod store_endpoint;

pub use archive_endpoint::ArchiveDestination;
pub use archive_source::{ArchiveSource, ArchivedImageNames};
pub use blob_locations::BlobLocations;
pub use endpoint::{BlobContent, CopiedImage, ImageDestination, ImageSource, PlatformImage};
pub use engine::{CopyJob, CopyOutcome, Engine, EngineOptions, PlatformChoice};
pub use error::{ErrorKind, TransferError};
pub use registry_endpoint::{RegistryDestination, RegistrySource};
pub use report::{BlobOrigin, NoReport, Reporter};
pub use store_endpoint::{StoreDestination, StoreSource};
