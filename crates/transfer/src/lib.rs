//! One transfer engine, interchangeable endpoints.
//!
//! Every hpn command is a copy from an [`ImageSource`] to an
//! [`ImageDestination`]: `pull` is registry → store, `save` is registry →
//! store → archive ([`save()`]), `load` is archive → store and `push` is store
//! or archive → registry ([`copy_from_archives`]), and `copy` is any → any
//! ([`copy()`], with endpoints named as skopeo names them, [`EndpointName`]).
//! The [`Engine`] resolves a reference, picks platforms, moves each blob at
//! most once (the destination decides what it can reuse, single-flight
//! across images), writes manifests after their blobs and indexes after their
//! manifests, and then commits the image at the destination.
//!
//! Pull one image from a registry into a store:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use hpn_registry::{ClientOptions, RegistryClient};
//! use hpn_store::Store;
//! use hpn_transfer::{CopyJob, Engine, EngineOptions, NoReport, RegistrySource, StoreDestination};
//!
//! let client = RegistryClient::new(ClientOptions::default())?;
//! let store = Arc::new(Store::open("/var/cache/hpn/store".as_ref())?);
//! let engine = Engine::new(
//!     Arc::new(RegistrySource::new(client)),
//!     Arc::new(StoreDestination::new(store)),
//!     EngineOptions::default(),
//!     Arc::new(NoReport),
//! );
//! let jobs = CopyJob::same_names(["127.0.0.1:5000/team/app:1".parse()?]);
//! for result in engine.copy_all(&jobs).await {
//!     println!("{}", result?.digest);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! `examples/` has more: saving images into one archive, copying between
//! any two endpoints.

#![warn(missing_docs)]

mod archive_attachments;
mod archive_endpoint;
mod archive_order;
mod archive_source;
mod archives;
pub mod attachments;
mod base;
mod blob_locations;
mod empty_endpoint;
mod endpoint;
mod endpoints;
mod engine;
mod error;
mod hashing;
mod inspect;
mod layer_compression;
mod mirrors;
mod mutex;
mod naming;
mod registry_endpoint;
mod report;
mod save;
mod save_plan;
mod single_flight;
mod store_endpoint;

pub use archive_endpoint::{ArchiveDestination, LeftToBase};
pub use archive_source::{ArchiveSource, ArchivedImageNames};
pub use archives::{ArchiveRun, copy_from_archives};
pub use attachments::{Attachment, AttachmentKind, AttachmentPolicy, CopiedAttachment, LeftAttachment, LeftReason};
pub use base::Base;
pub use blob_locations::BlobLocations;
pub use empty_endpoint::EmptyDestination;
pub use endpoint::{BlobContent, BlobReuse, CopiedImage, ImageDestination, ImageSource, PlatformImage};
pub use endpoints::{
    AnyDestination, AnySource, CopyReport, EndpointContext, EndpointName, EndpointNameError, WrittenArchive, copy,
};
pub use engine::{Concurrency, CopyJob, Engine, EngineOptions, PlatformChoice, PullPolicy};
pub use error::{ErrorKind, TransferError};
pub use inspect::{ImageInspection, IndexEntry, LayerData, inspect, inspect_config, inspect_manifest};
pub use mirrors::{MirrorError, MirrorLocation, Mirrors, PullFromMirror};
pub use naming::{LoadMode, PushMode, PushTarget, SaveMode, own_project};
pub use registry_endpoint::{RegistryDestination, RegistrySource};
pub use report::{BlobOrigin, CopyOutcome, NoReport, Reporter};
pub use save::{ArchiveOptions, Differential, SaveOutput, SaveReport, save};
pub use save_plan::{EstimatedCopy, SavePlan, ZSTD_COPY_ESTIMATE_RATIO, plan_save};
pub use store_endpoint::{StoreDestination, StoreSource, orphaned_attachment_refs};
