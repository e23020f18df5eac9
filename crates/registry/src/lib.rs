//! The registry side of hpn: an HTTP client for the OCI distribution API.
//!
//! It resolves and fetches manifests (raw bytes, digest-checked), streams blobs
//! with size checks and `Range` resumption, pushes blobs (streamed, with
//! cross-repository mounts and a chunked fallback) and manifests, and handles everything a registry
//! puts between a client and its content: token and Basic auth with a token
//! cache, credentials from Docker/podman auth files and credential helpers,
//! retries with backoff and `Retry-After`, redirects to object storage (without
//! leaking the `Authorization` header), plain HTTP for loopback and insecure
//! registries, and a per-host concurrency limit.
//!
//! Secrets (passwords, tokens, `Authorization` headers, pre-signed redirect
//! URLs) never appear in errors, `Debug` output or tracing events.

mod auth;
mod blob;
pub mod challenge;
mod client;
mod credentials;
mod endpoint;
mod error;
mod options;
mod retry;
mod upload;

pub use auth::Scope;
pub use client::RegistryClient;
pub use credentials::{Credential, CredentialError, Credentials};
pub use error::{RegistryError, SizeProblem};
pub use hpn_oci::{BlobStream, RawManifest};
pub use options::{ClientOptions, DEFAULT_REQUESTS_PER_HOST, RetryPolicy};
pub use upload::{BodyFactory, MountOutcome, UploadStream, body_from_bytes};
