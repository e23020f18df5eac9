//! The registry side of hpn: an HTTP client for the OCI distribution API.
//!
//! It resolves and fetches manifests (raw bytes, digest-checked), streams blobs
//! with size checks and `Range` resumption, pushes blobs (streamed, with
//! cross-repository mounts and a chunked fallback) and manifests, and handles
//! everything a registry puts between a client and its content: token and
//! Basic auth with a token cache, credentials from Docker/podman auth files and
//! credential helpers, retries with backoff and `Retry-After`, redirects to
//! object storage (without leaking the `Authorization` header), plain HTTP for
//! loopback and insecure registries, and a per-host concurrency limit.
//!
//! Secrets (passwords, tokens, `Authorization` headers, pre-signed redirect
//! URLs) never appear in errors, `Debug` output or tracing events.
//!
//! The API is internal to hpn and may change in any release.
//!
//! ```no_run
//! use futures_util::StreamExt as _;
//! use hpn_registry::{ClientOptions, Credentials, RegistryClient};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ClientOptions::default().with_credentials(Credentials::load_default()?);
//! let client = RegistryClient::new(options)?;
//! let image = "docker.io/library/alpine:3.20".parse()?;
//! let manifest = client.get_manifest(&image).await?;
//! println!("{} is {} ({} bytes)", image, manifest.digest, manifest.bytes.len());
//! # let layer: hpn_oci::Descriptor = unimplemented!();
//! // A blob streams; a break is resumed with `Range` where it stopped.
//! let mut blob = client.get_blob(&image, &layer).await?;
//! while let Some(chunk) = blob.next().await {
//!     let _bytes = chunk?;
//! }
//! # Ok(()) }
//! ```
//!
//! Layers, one way: [`RegistryClient`] calls `manifests`, `blobs` and
//! `uploads`, which are built on `transport` (probe, challenge and tokens,
//! redirects, the one retry loop, stall detection); none of them calls
//! upwards.

#![warn(missing_docs)]

mod blobs;
mod catalog;
mod client;
mod credentials;
mod deletion;
mod endpoint;
mod error;
mod headers;
mod manifests;
mod mutex;
mod options;
mod referrers;
mod transport;
mod uploads;

pub use client::RegistryClient;
pub use credentials::{Credential, CredentialError, Credentials, LoginFile, SavedLogin, default_login_file};
pub use error::{ErrorBody, ErrorCode, ErrorEntry, RegistryError, SizeProblem, TransportError};
pub use hpn_oci::{BlobStream, RawManifest};
pub use options::{ClientOptions, DEFAULT_REQUESTS_PER_HOST, RetryPolicy, SMALL_BODY};
pub use transport::{Scope, challenge, token};
pub use uploads::{BodyFactory, MountOutcome, UploadStream, body_from_bytes};
