//! The vocabulary every other hpn crate speaks: image references with Docker's
//! normalization rules, content digests, descriptors, manifests, indexes,
//! image configs and platforms.
//!
//! Manifests stay raw bytes everywhere in hpn; the types here are parsed
//! *copies* used to read them, never serialized back to write them (that is
//! what keeps digests identical across save → load → push).
//!
//! ```
//! use hpn_oci::{Digest, ParsedManifest, Platform, RawManifest, Reference, media_type};
//!
//! // Docker's short names expand to the full form, and back.
//! let reference: Reference = "nginx:1.27".parse().unwrap();
//! assert_eq!(reference.to_string(), "docker.io/library/nginx:1.27");
//! assert_eq!(reference.familiar_tagged().as_deref(), Some("nginx:1.27"));
//!
//! // A manifest is kept as the bytes received; parsing reads a copy.
//! let bytes: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
//!   "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
//!     "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
//!     "size":0,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
//! let (raw, parsed) = RawManifest::parse(bytes::Bytes::from_static(bytes), None).unwrap();
//! assert_eq!(raw.media_type, media_type::OCI_INDEX);
//! assert_eq!(raw.digest, Digest::of(bytes));
//! let ParsedManifest::Index(index) = parsed else { unreachable!("the document is an index") };
//! let wanted: Platform = "linux/arm64/v8".parse().unwrap();
//! assert_eq!(index.manifests[0].platform.as_ref(), Some(&wanted));
//! ```

#![warn(missing_docs)]

pub mod closure;
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
