//! [`RegistryClient`], the crate's entry point: each operation is a thin
//! call into the module that implements it (`manifests`, `blobs`,
//! `uploads`), all of them built on the one [`Transport`].

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use hpn_oci::{BlobStream, Descriptor, Digest, RawManifest, Reference};

use crate::error::RegistryError;
use crate::options::ClientOptions;
use crate::transport::Transport;
use crate::uploads::{BodyFactory, MountOutcome, Sessions};
use crate::{blobs, catalog, deletion, manifests, referrers, uploads};

/// A registry client. Cheap to clone; clones share connections, tokens and
/// the per-host request limits.
#[derive(Clone)]
pub struct RegistryClient {
    transport: Transport,
    /// Upload sessions kept from mounts a registry could not do.
    sessions: Arc<Sessions>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient").field("options", self.transport.options()).finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client with these options. Fails only when the HTTP stack cannot be
    /// set up (no TLS roots); no request is made yet.
    pub fn new(options: ClientOptions) -> Result<Self, RegistryError> {
        Ok(Self { transport: Transport::new(options)?, sessions: Arc::default() })
    }

    /// Checks that the registry answers the v2 API and, when credentials are
    /// known for it, that they are accepted (as `docker login` does).
    pub async fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        self.transport.ping(registry).await
    }

    /// Fetches a manifest or index by tag or digest, with an `Accept` of every
    /// type hpn can copy. The digest is computed over the exact bytes and must
    /// match the reference's digest and the registry's `Docker-Content-Digest`.
    /// Manifests over [`hpn_oci::limits::MANIFEST`] bytes are refused, schema 1
    /// too.
    pub async fn get_manifest(&self, reference: &Reference) -> Result<RawManifest, RegistryError> {
        manifests::get(&self.transport, reference).await
    }

    /// Resolves a reference with `HEAD`: digest (`Docker-Content-Digest`),
    /// media type (`Content-Type`) and size (`Content-Length`). `Ok(None)`
    /// when the registry says 404. A registry that leaves out a header gets a
    /// `GET` instead, so the answer is always complete and verified.
    pub async fn head_manifest(&self, reference: &Reference) -> Result<Option<Descriptor>, RegistryError> {
        manifests::head(&self.transport, reference).await
    }

    /// `PUT /v2/NAME/manifests/<tag or digest>` with exactly `bytes` and
    /// `Content-Type: media_type`. By tag when `target` has one, else by
    /// digest, which must be the bytes' digest (checked before sending, as is
    /// a digest given along with a tag). Returns the bytes' digest; a
    /// `Docker-Content-Digest` that differs from it is an error (the registry
    /// would have stored something else). Retried like any idempotent request.
    pub async fn put_manifest(
        &self,
        target: &Reference,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        manifests::put(&self.transport, target, bytes, media_type).await
    }

    /// Streams a blob of `reference`'s repository. The stream errors if the
    /// body ends short of `descriptor.size` or goes past it; a body that
    /// breaks or stalls is resumed with `Range` within the retry policy. The
    /// digest is not checked here: the consumer hashes while it writes.
    ///
    /// The stream's errors are `io::Error`s holding the [`RegistryError`];
    /// [`RegistryError::from_stream_error`] gets it back.
    pub async fn get_blob(&self, reference: &Reference, descriptor: &Descriptor) -> Result<BlobStream, RegistryError> {
        blobs::get(&self.transport, reference, descriptor).await
    }

    /// Whether a blob exists in `reference`'s repository: its size, or `None` on 404.
    pub async fn head_blob(&self, reference: &Reference, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        blobs::head(&self.transport, reference, digest).await
    }

    /// Whether `target`'s repository has the blob (`HEAD`). Asks for a
    /// `pull,push` token: it is the one the upload that usually follows
    /// needs, so one token serves both (token services grant what they allow).
    pub async fn blob_exists(&self, target: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        uploads::exists(&self.transport, target, digest).await
    }

    /// Asks the registry to link a blob of `from_repository` (same registry)
    /// into `target`'s repository: `POST /v2/TARGET/blobs/uploads/?mount=&from=`,
    /// with one token for `pull,push` on the target and `pull` on the source
    /// (a registry checks both in the same token).
    ///
    /// 201 is [`MountOutcome::Mounted`]. 202 means the registry opened an
    /// upload session instead; it is kept (for ten minutes) and the next
    /// [`RegistryClient::upload_blob`] of this blob to this repository uses
    /// it rather than opening another. A refusal for lack of rights (401,
    /// 403, or no token for the source) is `NotMounted` too: the upload that
    /// follows reports the target's rights precisely.
    pub async fn mount_blob(
        &self,
        target: &Reference,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<MountOutcome, RegistryError> {
        uploads::mount(&self.transport, &self.sessions, target, digest, from_repository).await
    }

    /// Uploads a blob whose digest and size the descriptor gives.
    ///
    /// Blobs up to 1 MiB are read into memory, then sent with one
    /// `PUT <session>&digest=`. Larger ones are streamed in one `PUT` with
    /// `Content-Length` (the whole blob is never in memory). When a registry
    /// or a proxy refuses such a request (413, 405, 411, 501, UNSUPPORTED,
    /// BLOB_UPLOAD_INVALID), the upload starts again as `PATCH` chunks and a
    /// final `PUT`. The session URL in `Location` may be relative or absolute
    /// and carry a query (`?_state=`); `digest` is appended to it. The
    /// `Authorization` header is sent only when that URL is on the registry's
    /// own origin.
    ///
    /// The body must be exactly `descriptor.size` bytes; it is cut short with
    /// [`RegistryError::Content`] otherwise, before the registry can commit
    /// it. The registry checks the digest (DIGEST_INVALID is reported with a
    /// hint). A retryable failure (network, 5xx, 429 with `Retry-After`, a
    /// lost session) starts over in a new session with a fresh body from the
    /// factory, within the retry policy; a `HEAD` first checks whether the
    /// registry committed the blob before the failure reached us. Success
    /// means the registry answered 201 and its `Docker-Content-Digest`, when
    /// present, is the descriptor's digest.
    ///
    /// Requests carrying the body count against a per-host limit of
    /// `max_requests_per_host` of their own, so that copying between two
    /// repositories of one registry cannot deadlock on open source bodies.
    pub async fn upload_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        body: BodyFactory,
    ) -> Result<(), RegistryError> {
        uploads::upload(&self.transport, &self.sessions, target, descriptor, body).await
    }

    /// The OCI 1.1 referrers of `subject` in `image`'s repository
    /// (`GET /v2/NAME/referrers/DIGEST`): the image index the registry
    /// answers, as bytes (it is generated, so it has no digest to check).
    /// `Ok(None)` when the registry answers 404: it has no referrers API
    /// (distribution 2.8), and the `sha256-<hex>` tag is where referrers are.
    pub async fn referrers(&self, image: &Reference, subject: &Digest) -> Result<Option<Bytes>, RegistryError> {
        referrers::list(&self.transport, image, subject).await
    }

    /// Every tag of `repository` on `registry`, following the `Link`
    /// pagination to the end. `page_size` is the `n` asked per request (the
    /// registry may send fewer); `None` lets the registry choose.
    pub async fn list_tags(
        &self,
        registry: &str,
        repository: &str,
        page_size: Option<usize>,
    ) -> Result<Vec<String>, RegistryError> {
        catalog::tags(&self.transport, registry, repository, page_size).await
    }

    /// Every repository in `registry`'s catalog (`/v2/_catalog`), following
    /// the `Link` pagination to the end.
    pub async fn list_repositories(
        &self,
        registry: &str,
        page_size: Option<usize>,
    ) -> Result<Vec<String>, RegistryError> {
        catalog::repositories(&self.transport, registry, page_size).await
    }

    /// Deletes the manifest `digest` from `image`'s repository, and so every
    /// tag that points at it. A registry with deletes disabled answers with
    /// an error saying so.
    pub async fn delete_manifest(&self, image: &Reference, digest: &Digest) -> Result<(), RegistryError> {
        deletion::delete_manifest(&self.transport, image, digest).await
    }

    /// Gives `image`'s manifest another tag, `target` (the same repository
    /// with the new tag), by putting the very bytes it has there: no blob
    /// moves, and the digest stays. Returns that digest.
    pub async fn tag(&self, image: &Reference, target: &Reference) -> Result<Digest, RegistryError> {
        let manifest = self.get_manifest(image).await?;
        self.put_manifest(target, manifest.bytes, &manifest.media_type).await
    }
}
