//! The vocabulary every other hpn crate speaks: image references with Docker's
//! normalization rules, content digests, descriptors, manifests, indexes,
//! image configs and platforms.
//!
//! Manifests stay raw bytes everywhere in hpn; the types here are parsed
//! *copies* used to read them, never serialized back to write them (that is
//! what keeps digests identical across save → load → push).

mod digest;
pub mod limits;
mod manifest;
pub mod media_type;
mod platform;
mod raw;
mod reference;

pub use digest::{Digest, DigestError, Sha256Hasher};
pub use manifest::{
    Descriptor, ImageConfig, ImageIndex, ImageManifest, ManifestError, ParsedManifest, RootFs, annotation,
};
pub use platform::{Platform, PlatformError};
pub use raw::{BlobStream, RawManifest};
pub use reference::{DOCKER_HUB_REGISTRY, Reference, ReferenceError};
