//! The write side: blob existence at a destination, cross-repository mounts,
//! blob uploads and manifest pushes.
//!
//! A blob upload is `POST /v2/NAME/blobs/uploads/` (the registry answers 202
//! and a session URL in `Location`), then `PUT <session>&digest=` with the
//! whole body, or, where a registry or a proxy refuses one large request,
//! `PATCH` chunks with `Content-Range` and an empty final `PUT`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt as _};
use hpn_oci::{Descriptor, Digest, DigestError, Reference};
use reqwest::header::{
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RANGE,
};
use reqwest::{Method, StatusCode, Url};
use tracing::debug;

use crate::auth::Scope;
use crate::client::{Call, CallBody, Progress, RegistryClient, RegistryState, Reply, Sent, Slot};
use crate::error::{HINT_CONTENT, HINT_MANIFEST_REFERENCE, HINT_MEDIA_TYPE, RegistryError, Target};
use crate::retry::{error_chain, is_retryable_status, retry_after};

/// A blob's bytes for an upload, in order: the same [`hpn_oci::BlobStream`]
/// the read side hands out, so a blob fetched from one registry is pushed to
/// another as it is.
///
/// Files of the store and archives fit as they are
/// (`tokio_util::io::ReaderStream`); any other source adapts with one
/// `map_err(io::Error::other)`, which keeps its error as the cause. The
/// upload reports a failing source as [`RegistryError::Content`].
pub type UploadStream = hpn_oci::BlobStream;

/// How a caller hands a blob body to [`RegistryClient::upload_blob`]: a
/// factory, because a retried upload must re-open its source from the
/// start. Called once per attempt for blobs over 1 MiB, once in all for
/// smaller ones (they are kept in memory and sent again from there).
/// Failing to open (`io::Error`, like the stream's items) is reported as
/// [`RegistryError::Content`].
pub type BodyFactory = Arc<dyn Fn() -> BoxFuture<'static, io::Result<UploadStream>> + Send + Sync>;

/// A [`BodyFactory`] for content already in memory.
pub fn body_from_bytes(bytes: Bytes) -> BodyFactory {
    Arc::new(move || {
        let bytes = bytes.clone();
        Box::pin(async move { Ok(Box::pin(futures_util::stream::iter([Ok(bytes)])) as UploadStream) })
    })
}

/// What a cross-repository mount did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOutcome {
    /// The blob is now in the target repository.
    Mounted,
    /// It is not: upload it. An upload session the registry opened instead
    /// is kept for that upload.
    NotMounted,
}

/// Blobs up to this size are read into memory before they are sent: a config
/// or a small layer then costs one PUT of known bytes, a retry re-sends them
/// without re-opening the source, and the memory held (≤ 1 MiB per upload in
/// flight) stays small. Larger blobs are streamed.
const SMALL_BLOB: u64 = 1024 * 1024;
/// First chunk size when a registry refused a whole-blob PUT. Chunks are held
/// in memory (to re-send a part after a 413); 8 MiB keeps a 1 GiB layer to
/// 128 requests.
const FIRST_CHUNK: usize = 8 * 1024 * 1024;
/// Chunks are halved on 413 down to this; nginx's default body limit is 1 MiB.
const MIN_CHUNK: usize = 256 * 1024;
/// Slices of a chunk handed to the HTTP stack, so a chunk's progress is seen.
const SLICE: usize = 64 * 1024;
/// A session kept from a mount older than this is not used: registries expire
/// idle sessions (distribution after a week, others much sooner).
const SESSION_TTL: Duration = Duration::from_secs(10 * 60);
/// Sessions kept from mounts, at most; the oldest beyond it are dropped.
const MAX_SESSIONS: usize = 1024;
const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// Registry, repository and digest of an upload session kept from a mount.
pub(crate) type SessionKey = (String, String, Digest);

pub(crate) struct PendingSession {
    url: Url,
    opened: Instant,
}

impl RegistryClient {
    /// Whether `target`'s repository has the blob (`HEAD`). Asks for a
    /// `pull,push` token: it is the one the upload that usually follows
    /// needs, so one token serves both (token services grant what they allow).
    pub async fn blob_exists(&self, target: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let mut call = self.blob_call(target, digest, Method::HEAD)?;
        call.scopes = vec![Scope::push(target.repository())];
        call.target = Target::BlobPush;
        call.subject = format!("checking for blob {digest} in {}", target.name());
        let reply = self.execute(&call).await?;
        let status = reply.response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !status.is_success() {
            return Err(self.failure(&call, reply).await);
        }
        Ok(true)
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
        let state = self.state(target.registry())?;
        let repository = target.repository();
        let call = Call {
            registry: state.clone(),
            repository: Some(repository.to_owned()),
            method: Method::POST,
            path: format!(
                "/v2/{repository}/blobs/uploads/?mount={}&from={}",
                query_component(&digest.to_string()),
                query_component(from_repository)
            ),
            headers: HeaderMap::new(),
            scopes: vec![Scope::push(repository), Scope::pull(from_repository)],
            subject: format!("mounting blob {digest} from {from_repository} into {}", target.name()),
            target: Target::BlobPush,
            slot: Slot::General,
        };
        // An empty body still gets `Content-Length: 0`, which some registries
        // and proxies require on a POST.
        let reply = match self.execute_with(&call, CallBody::Bytes(Bytes::new()), true).await {
            Ok(Sent::Reply(reply)) => reply,
            Ok(Sent::Broken { error, attempts }) => {
                return Err(RegistryError::network(&state.name, &call.subject, attempts, error, self.is_plain(&call)));
            }
            Err(error) if error.is_auth() => {
                debug!(registry = %state.name, "no token for the mount: {error}");
                return Ok(MountOutcome::NotMounted);
            }
            Err(error) => return Err(error),
        };
        let key: SessionKey = (state.name.clone(), repository.to_owned(), digest.clone());
        match reply.response.status() {
            StatusCode::CREATED => {
                check_digest_header(&state.name, &call.subject, reply.response.headers(), digest, "blob")?;
                drop(reply);
                if let Some(stale) = self.forget_session(&key) {
                    self.cancel_session(&state, repository, &call.subject, stale.url).await;
                }
                Ok(MountOutcome::Mounted)
            }
            StatusCode::ACCEPTED => {
                match session_location(&reply) {
                    Some(url) => {
                        drop(reply);
                        if let Some(replaced) = self.keep_session(key, url) {
                            self.cancel_session(&state, repository, &call.subject, replaced).await;
                        }
                    }
                    None => debug!(registry = %state.name, "mount answered 202 without a usable Location"),
                }
                Ok(MountOutcome::NotMounted)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                debug!(registry = %state.name, status = reply.response.status().as_u16(), "mount refused; the blob will be uploaded");
                Ok(MountOutcome::NotMounted)
            }
            _ => Err(self.failure(&call, reply).await),
        }
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
        let push = Push {
            client: self,
            state: self.state(target.registry())?,
            repository: target.repository().to_owned(),
            descriptor,
            subject: format!("pushing blob {} to {}", descriptor.digest, target.name()),
        };
        let policy = self.inner.options.retry.clone();
        let buffered = if descriptor.size <= SMALL_BLOB { Some(push.read_whole(&body).await?) } else { None };
        let key: SessionKey = (push.state.name.clone(), push.repository.clone(), descriptor.digest.clone());
        let mut session = self.take_session(&key);
        let mut chunked = false;
        let mut failures = 0;
        let mut reauthenticated = false;
        loop {
            let location = match session.take() {
                Some(url) => url,
                None => push.start().await?,
            };
            // Opened after the session: a source on the same host holds a
            // request slot while open, and the POST must not wait behind it.
            let content = match &buffered {
                Some(bytes) => Content::Bytes(bytes.clone()),
                None => match push.open(&body).await {
                    Ok(stream) => Content::Stream(stream),
                    Err(error) => {
                        self.cancel_session(&push.state, &push.repository, &push.subject, location).await;
                        return Err(error);
                    }
                },
            };
            let outcome = if chunked {
                push.in_chunks(location.clone(), content).await
            } else {
                push.whole(location.clone(), content).await
            };
            let failure = match outcome {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            self.cancel_session(&push.state, &push.repository, &push.subject, location).await;
            match failure {
                Failure::Fatal(error) => return Err(error),
                Failure::Refused(error) => {
                    if chunked {
                        return Err(error);
                    }
                    debug!(registry = %push.state.name, "whole-blob PUT refused ({error}); uploading in chunks");
                    chunked = true;
                }
                Failure::Unauthorized(error) => {
                    // The refused token is forgotten already; one more
                    // session with a fresh one.
                    if reauthenticated {
                        return Err(error);
                    }
                    reauthenticated = true;
                }
                Failure::Retry { error, after } => {
                    failures += 1;
                    if push.committed().await {
                        debug!(registry = %push.state.name, "the registry has the blob despite the failure ({error})");
                        return Ok(());
                    }
                    if failures >= policy.attempts() {
                        return Err(error);
                    }
                    let delay = after.unwrap_or_else(|| policy.backoff(failures));
                    debug!(registry = %push.state.name, failures, delay_ms = delay.as_millis() as u64, "upload failed ({error}); starting over");
                    tokio::time::sleep(delay).await;
                }
            }
        }
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
        let digest = Digest::of(&bytes);
        let state = self.state(target.registry())?;
        let subject = format!("pushing manifest {digest} as {target}");
        if let Some(named) = target.digest()
            && *named != digest
        {
            return Err(RegistryError::content(
                &state.name,
                &subject,
                format!("the manifest's bytes have digest {digest}, not {named} as the reference says"),
                HINT_MANIFEST_REFERENCE,
            ));
        }
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::content(
                &state.name,
                &subject,
                format!("{media_type:?} is not a valid media type"),
                HINT_MEDIA_TYPE,
            )
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, content_type);
        let reference = target.tag().map_or_else(|| digest.to_string(), str::to_owned);
        let call = Call {
            registry: state.clone(),
            repository: Some(target.repository().to_owned()),
            method: Method::PUT,
            path: format!("/v2/{}/manifests/{reference}", target.repository()),
            headers,
            scopes: vec![Scope::push(target.repository())],
            subject,
            target: Target::ManifestPush,
            slot: Slot::General,
        };
        let reply = match self.execute_with(&call, CallBody::Bytes(bytes), true).await? {
            Sent::Reply(reply) => reply,
            Sent::Broken { error, attempts } => {
                return Err(RegistryError::network(&state.name, &call.subject, attempts, error, self.is_plain(&call)));
            }
        };
        if !reply.response.status().is_success() {
            return Err(self.failure(&call, reply).await);
        }
        check_digest_header(&state.name, &call.subject, reply.response.headers(), &digest, "manifest")?;
        Ok(digest)
    }

    fn take_session(&self, key: &SessionKey) -> Option<Url> {
        let session = self.forget_session(key)?;
        (session.opened.elapsed() < SESSION_TTL).then_some(session.url)
    }

    fn forget_session(&self, key: &SessionKey) -> Option<PendingSession> {
        lock(&self.inner.sessions).remove(key)
    }

    /// Keeps a session for the upload that follows; returns one it replaces.
    fn keep_session(&self, key: SessionKey, url: Url) -> Option<Url> {
        let mut sessions = lock(&self.inner.sessions);
        sessions.retain(|_, session| session.opened.elapsed() < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, session)| session.opened).map(|(key, _)| key.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(key, PendingSession { url, opened: Instant::now() }).map(|replaced| replaced.url)
    }

    /// Tells the registry an upload session is abandoned, so it can free
    /// what it holds at once. Best effort: registries purge stale sessions.
    async fn cancel_session(&self, state: &Arc<RegistryState>, repository: &str, subject: &str, url: Url) {
        let call = Call {
            registry: state.clone(),
            repository: Some(repository.to_owned()),
            method: Method::DELETE,
            path: url.to_string(),
            headers: HeaderMap::new(),
            scopes: vec![Scope::push(repository)],
            subject: subject.to_owned(),
            target: Target::BlobPush,
            slot: Slot::General,
        };
        let status = match self.execute_with(&call, CallBody::Empty, false).await {
            Ok(Sent::Reply(reply)) => Some(reply.response.status().as_u16()),
            _ => None,
        };
        debug!(registry = %state.name, ?status, "cancelled upload session");
    }
}

/// One blob upload to one repository.
struct Push<'a> {
    client: &'a RegistryClient,
    state: Arc<RegistryState>,
    repository: String,
    descriptor: &'a Descriptor,
    subject: String,
}

enum Content {
    Bytes(Bytes),
    Stream(Checked),
}

/// Why an upload attempt failed, and what to do about it.
enum Failure {
    /// Worth another attempt in a new session.
    Retry {
        error: RegistryError,
        after: Option<Duration>,
    },
    /// A whole-blob request was refused as such: upload in chunks.
    Refused(RegistryError),
    /// 401: once more with a fresh token.
    Unauthorized(RegistryError),
    Fatal(RegistryError),
}

impl Push<'_> {
    fn call(&self, method: Method, url: &Url, headers: HeaderMap, slot: Slot) -> Call {
        Call {
            registry: self.state.clone(),
            repository: Some(self.repository.clone()),
            method,
            path: url.to_string(),
            headers,
            scopes: vec![Scope::push(&self.repository)],
            subject: self.subject.clone(),
            target: Target::BlobPush,
            slot,
        }
    }

    fn network(&self, call: &Call, error: crate::retry::TransportError, attempts: u32) -> RegistryError {
        RegistryError::network(&self.state.name, &self.subject, attempts, error, self.client.is_plain(call))
    }

    /// Opens an upload session; its URL.
    async fn start(&self) -> Result<Url, RegistryError> {
        let call = Call {
            registry: self.state.clone(),
            repository: Some(self.repository.clone()),
            method: Method::POST,
            path: format!("/v2/{}/blobs/uploads/", self.repository),
            headers: HeaderMap::new(),
            scopes: vec![Scope::push(&self.repository)],
            subject: self.subject.clone(),
            target: Target::BlobPush,
            slot: Slot::General,
        };
        let reply = match self.client.execute_with(&call, CallBody::Bytes(Bytes::new()), true).await? {
            Sent::Reply(reply) => reply,
            Sent::Broken { error, attempts } => return Err(self.network(&call, error, attempts)),
        };
        let status = reply.response.status();
        if status == StatusCode::ACCEPTED {
            return session_location(&reply).ok_or_else(|| {
                RegistryError::protocol(
                    &self.state.name,
                    &self.subject,
                    "upload session without a usable Location header",
                )
            });
        }
        if status.is_success() {
            return Err(RegistryError::protocol(
                &self.state.name,
                &self.subject,
                format!("HTTP {status} to the upload start, where 202 Accepted was expected"),
            ));
        }
        Err(self.client.failure(&call, reply).await)
    }

    async fn open(&self, body: &BodyFactory) -> Result<Checked, RegistryError> {
        let stream = body().await.map_err(|error| {
            RegistryError::content(
                &self.state.name,
                &self.subject,
                format!("cannot open the content to push: {}", error_chain(&error)),
                HINT_CONTENT,
            )
        })?;
        Ok(Checked::new(stream, self.descriptor.size))
    }

    async fn read_whole(&self, body: &BodyFactory) -> Result<Bytes, RegistryError> {
        let mut stream = self.open(body).await?;
        let mut whole = BytesMut::with_capacity(self.descriptor.size as usize);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => whole.extend_from_slice(&chunk),
                Err(_) => return Err(self.content_problem(&stream)),
            }
        }
        Ok(whole.freeze())
    }

    fn content_problem(&self, stream: &Checked) -> RegistryError {
        self.content_error(&stream.problem)
    }

    fn content_error(&self, problem: &Mutex<Option<String>>) -> RegistryError {
        let problem = lock(problem).clone().unwrap_or_else(|| "could not be read".to_owned());
        RegistryError::content(&self.state.name, &self.subject, format!("the content to push {problem}"), HINT_CONTENT)
    }

    /// The whole blob in one `PUT`.
    async fn whole(&self, location: Url, content: Content) -> Result<(), Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, OCTET_STREAM);
        let (body, problem) = match content {
            Content::Bytes(bytes) => (CallBody::Bytes(bytes), None),
            Content::Stream(stream) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(self.descriptor.size));
                let problem = stream.problem.clone();
                let progress = stream.progress.clone();
                (CallBody::Stream { body: Some(reqwest::Body::wrap_stream(stream)), progress }, Some(problem))
            }
        };
        let call = self.call(Method::PUT, &with_digest(&location, &self.descriptor.digest), headers, Slot::Upload);
        let sent = self.client.execute_with(&call, body, false).await.map_err(Failure::Fatal)?;
        // A broken source shows as a broken request, or as whatever the
        // registry answered a truncated body: the source's problem is the news.
        if let Some(problem) = &problem
            && lock(problem).is_some()
        {
            return Err(Failure::Fatal(self.content_error(problem)));
        }
        self.finish(&call, sent, true).await
    }

    /// `PATCH` chunks, then an empty `PUT`. A chunk refused with 413 is sent
    /// again in halves.
    async fn in_chunks(&self, mut location: Url, content: Content) -> Result<(), Failure> {
        let mut pieces = Pieces::new(content);
        let mut chunk = FIRST_CHUNK;
        let mut offset: u64 = 0;
        loop {
            let piece = match pieces.next(chunk).await {
                Ok(Some(piece)) => piece,
                Ok(None) => break,
                Err(problem) => return Err(Failure::Fatal(self.content_error(&problem))),
            };
            let end = offset + piece.len() as u64 - 1;
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, OCTET_STREAM);
            headers.insert(CONTENT_LENGTH, HeaderValue::from(piece.len()));
            headers.insert(CONTENT_RANGE, HeaderValue::from_str(&format!("{offset}-{end}")).expect("digits"));
            let call = self.call(Method::PATCH, &location, headers, Slot::Upload);
            let progress = Arc::new(Progress::new());
            let body = CallBody::Stream { body: Some(sliced(piece.clone(), progress.clone())), progress };
            let reply = match self.client.execute_with(&call, body, false).await.map_err(Failure::Fatal)? {
                Sent::Reply(reply) => reply,
                broken @ Sent::Broken { .. } => return self.finish(&call, broken, false).await,
            };
            let status = reply.response.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE && piece.len() > MIN_CHUNK {
                chunk = (piece.len() / 2).max(MIN_CHUNK);
                debug!(registry = %self.state.name, chunk, "chunk refused as too large; halving");
                pieces.unread(piece);
                continue;
            }
            if status != StatusCode::ACCEPTED {
                return self.finish(&call, Sent::Reply(reply), false).await;
            }
            if let Some(range) = reply.response.headers().get(RANGE).and_then(|value| value.to_str().ok())
                && parse_range_end(range) != Some(end)
            {
                return Err(Failure::Fatal(RegistryError::protocol(
                    &self.state.name,
                    &self.subject,
                    format!("after a chunk ending at byte {end} the registry reports having {range:?}"),
                )));
            }
            if let Some(next) = session_location(&reply) {
                location = next;
            }
            offset = end + 1;
        }
        // The source is done: release what it holds (a request slot, for a
        // registry source) before the final request waits for one.
        drop(pieces);
        let call =
            self.call(Method::PUT, &with_digest(&location, &self.descriptor.digest), HeaderMap::new(), Slot::General);
        let sent =
            self.client.execute_with(&call, CallBody::Bytes(Bytes::new()), false).await.map_err(Failure::Fatal)?;
        self.finish(&call, sent, false).await
    }

    /// Judges the answer to a request that should have committed the blob
    /// (or, for a chunk, anything but 202).
    async fn finish(&self, call: &Call, sent: Sent, whole: bool) -> Result<(), Failure> {
        let reply = match sent {
            Sent::Reply(reply) => reply,
            Sent::Broken { error, attempts } => {
                let retryable = error.is_retryable();
                let error = self.network(call, error, attempts);
                return Err(if retryable { Failure::Retry { error, after: None } } else { Failure::Fatal(error) });
            }
        };
        let status = reply.response.status();
        if status == StatusCode::CREATED {
            let headers = reply.response.headers();
            return check_digest_header(&self.state.name, &self.subject, headers, &self.descriptor.digest, "blob")
                .map_err(Failure::Fatal);
        }
        if status.is_success() {
            return Err(Failure::Fatal(RegistryError::protocol(
                &self.state.name,
                &self.subject,
                format!("HTTP {status} to {}, where 201 Created was expected", call.method),
            )));
        }
        let after = retry_after(reply.response.headers(), SystemTime::now());
        let (error, says) = self.client.judge(call, reply).await;
        Err(if matches!(error, RegistryError::Unauthorized { .. }) {
            Failure::Unauthorized(error)
        } else if is_retryable_status(status) {
            Failure::Retry { error, after }
        } else if says.has("BLOB_UPLOAD_UNKNOWN") || (status == StatusCode::NOT_FOUND && !says.has("NAME_UNKNOWN")) {
            // The session expired or went to a registry replica without it.
            Failure::Retry { error, after: None }
        } else if whole
            && (matches!(
                status,
                StatusCode::PAYLOAD_TOO_LARGE
                    | StatusCode::METHOD_NOT_ALLOWED
                    | StatusCode::LENGTH_REQUIRED
                    | StatusCode::NOT_IMPLEMENTED
            ) || says.has("UNSUPPORTED")
                || says.has("BLOB_UPLOAD_INVALID"))
        {
            Failure::Refused(error)
        } else {
            Failure::Fatal(error)
        })
    }

    /// Whether the blob is in the repository now; false when that cannot be told.
    async fn committed(&self) -> bool {
        let Ok(target) = Reference::new(&self.state.name, &self.repository, None, Some(self.descriptor.digest.clone()))
        else {
            return false;
        };
        self.client.blob_exists(&target, &self.descriptor.digest).await.unwrap_or(false)
    }
}

/// An upload body that must be exactly `expected` bytes. It ends with an
/// error, which the HTTP stack turns into an aborted request, when the source
/// fails or the size is wrong, so a wrong body is never committed; the
/// problem is kept for the message. It also reports progress for stall
/// detection.
struct Checked {
    inner: UploadStream,
    expected: u64,
    seen: u64,
    problem: Arc<Mutex<Option<String>>>,
    progress: Arc<Progress>,
    done: bool,
}

impl Checked {
    fn new(inner: UploadStream, expected: u64) -> Self {
        Self { inner, expected, seen: 0, problem: Arc::default(), progress: Arc::new(Progress::new()), done: false }
    }

    fn fail(&mut self, problem: String) -> Poll<Option<Result<Bytes, io::Error>>> {
        self.done = true;
        let error = io::Error::other(problem.clone());
        lock(&self.problem).get_or_insert(problem);
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for Checked {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // Being polled means the registry takes data.
        this.progress.touch();
        let item = match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => {
                this.progress.set_waiting_on_source(true);
                return Poll::Pending;
            }
            Poll::Ready(item) => item,
        };
        this.progress.set_waiting_on_source(false);
        match item {
            Some(Ok(chunk)) => {
                this.seen += chunk.len() as u64;
                if this.seen > this.expected {
                    return this.fail(format!("is longer than the {} bytes its descriptor says", this.expected));
                }
                if this.seen == this.expected {
                    this.progress.set_body_done();
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(error)) => this.fail(format!("could not be read: {}", error_chain(&error))),
            None if this.seen < this.expected => {
                this.fail(format!("ended after {} of the {} bytes its descriptor says", this.seen, this.expected))
            }
            None => {
                this.done = true;
                this.progress.set_body_done();
                Poll::Ready(None)
            }
        }
    }
}

/// Reads content in pieces of a chosen size.
struct Pieces {
    stream: Option<Checked>,
    buffer: BytesMut,
    problem: Arc<Mutex<Option<String>>>,
}

impl Pieces {
    fn new(content: Content) -> Self {
        match content {
            Content::Bytes(bytes) => Self { stream: None, buffer: BytesMut::from(&bytes[..]), problem: Arc::default() },
            Content::Stream(stream) => {
                let problem = stream.problem.clone();
                Self { stream: Some(stream), buffer: BytesMut::new(), problem }
            }
        }
    }

    /// Up to `limit` bytes; `None` at the end; the problem when the source failed.
    async fn next(&mut self, limit: usize) -> Result<Option<Bytes>, Arc<Mutex<Option<String>>>> {
        while self.buffer.len() < limit
            && let Some(stream) = &mut self.stream
        {
            match stream.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(_)) => return Err(self.problem.clone()),
                None => self.stream = None,
            }
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let take = limit.min(self.buffer.len());
        Ok(Some(self.buffer.split_to(take).freeze()))
    }

    /// Puts a piece back in front, to be read again.
    fn unread(&mut self, piece: Bytes) {
        let mut buffer = BytesMut::with_capacity(piece.len() + self.buffer.len());
        buffer.extend_from_slice(&piece);
        buffer.extend_from_slice(&self.buffer);
        self.buffer = buffer;
    }
}

/// A chunk as a body of small slices, so its progress can be seen.
fn sliced(piece: Bytes, progress: Arc<Progress>) -> reqwest::Body {
    let total = piece.len();
    let slices = (0..total).step_by(SLICE).map(move |start| {
        progress.touch();
        let end = (start + SLICE).min(total);
        if end == total {
            progress.set_body_done();
        }
        Ok::<_, io::Error>(piece.slice(start..end))
    });
    reqwest::Body::wrap_stream(futures_util::stream::iter(slices))
}

/// The session URL from a 202's `Location`, resolved against the request's
/// URL: registries send it relative or absolute.
fn session_location(reply: &Reply) -> Option<Url> {
    let location = reply.response.headers().get(LOCATION)?.to_str().ok()?;
    let url = reply.response.url().join(location).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// The session URL with `digest=` added to whatever query it has.
fn with_digest(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut().append_pair("digest", &digest.to_string());
    url
}

/// `0-END` (or `bytes=0-END`) from a chunk answer's `Range` header.
fn parse_range_end(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    range.split_once('-')?.1.trim().parse().ok()
}

/// Checks `Docker-Content-Digest` against what was pushed. A digest in an
/// algorithm hpn does not compute cannot be compared and is let be.
fn check_digest_header(
    registry: &str,
    subject: &str,
    headers: &HeaderMap,
    expected: &Digest,
    what: &str,
) -> Result<(), RegistryError> {
    let Some(text) = headers.get(DOCKER_CONTENT_DIGEST).and_then(|value| value.to_str().ok()) else {
        return Ok(());
    };
    match text.trim().parse::<Digest>() {
        Ok(stored) if stored == *expected => Ok(()),
        Ok(stored) => Err(RegistryError::protocol(
            registry,
            subject,
            format!("the registry reports the {what} as {stored}, but what was pushed is {expected}"),
        )),
        Err(DigestError::UnsupportedAlgorithm(_)) => Ok(()),
        Err(error) => {
            Err(RegistryError::protocol(registry, subject, format!("malformed Docker-Content-Digest: {error}")))
        }
    }
}

/// Percent-encodes a query value, keeping the characters digests and
/// repository names consist of readable.
fn query_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/' | b':') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here leaves shared state half-updated on a panic.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_appended_to_relative_absolute_and_query_carrying_locations() {
        let digest = Digest::of(b"x");
        let encoded = format!("digest=sha256%3A{}", digest.hex());
        let plain = Url::parse("http://r.example/v2/a/blobs/uploads/123").unwrap();
        assert_eq!(with_digest(&plain, &digest).as_str(), format!("http://r.example/v2/a/blobs/uploads/123?{encoded}"));
        let state = Url::parse("https://r.example/v2/a/blobs/uploads/123?_state=abc%3D%3D&x=1").unwrap();
        assert_eq!(
            with_digest(&state, &digest).as_str(),
            format!("https://r.example/v2/a/blobs/uploads/123?_state=abc%3D%3D&x=1&{encoded}")
        );
    }

    #[test]
    fn ranges_and_query_components() {
        assert_eq!(parse_range_end("0-1023"), Some(1023));
        assert_eq!(parse_range_end("bytes=0-9"), Some(9));
        assert_eq!(parse_range_end("nonsense"), None);
        assert_eq!(query_component("team/app"), "team/app");
        assert_eq!(query_component("sha256:ab"), "sha256:ab");
        assert_eq!(query_component("a b&c"), "a%20b%26c");
    }

    #[tokio::test]
    async fn checked_bodies_refuse_wrong_sizes_and_keep_the_source_error() {
        async fn run(chunks: Vec<io::Result<Bytes>>, expected: u64) -> (Vec<u8>, Option<String>) {
            let mut checked = Checked::new(Box::pin(futures_util::stream::iter(chunks)), expected);
            let mut out = Vec::new();
            while let Some(item) = checked.next().await {
                match item {
                    Ok(chunk) => out.extend_from_slice(&chunk),
                    Err(_) => break,
                }
            }
            let problem = lock(&checked.problem).clone();
            (out, problem)
        }
        let ok = |text: &'static str| Ok::<_, io::Error>(Bytes::from_static(text.as_bytes()));
        assert_eq!(run(vec![ok("ab"), ok("cd")], 4).await, (b"abcd".to_vec(), None));
        let (_, problem) = run(vec![ok("ab")], 4).await;
        assert!(problem.unwrap().contains("ended after 2 of the 4 bytes"));
        let (sent, problem) = run(vec![ok("ab"), ok("cde")], 4).await;
        assert_eq!(sent, b"ab");
        assert!(problem.unwrap().contains("longer than the 4 bytes"));
        let (_, problem) = run(vec![ok("ab"), Err(io::Error::other("disk on fire"))], 4).await;
        assert!(problem.unwrap().contains("disk on fire"));
    }

    #[tokio::test]
    async fn pieces_come_in_the_asked_sizes_and_can_be_put_back() {
        let stream: UploadStream = Box::pin(futures_util::stream::iter((0..10u8).map(|n| Ok(Bytes::from(vec![n; 3])))));
        let mut pieces = Pieces::new(Content::Stream(Checked::new(stream, 30)));
        let first = pieces.next(8).await.unwrap().unwrap();
        assert_eq!(first.len(), 8);
        pieces.unread(first.clone());
        let again = pieces.next(4).await.unwrap().unwrap();
        assert_eq!(&again[..], &first[..4]);
        let mut rest = again.to_vec();
        while let Some(piece) = pieces.next(7).await.unwrap() {
            assert!(piece.len() <= 7);
            rest.extend_from_slice(&piece);
        }
        let expected: Vec<u8> = (0..10u8).flat_map(|n| [n; 3]).collect();
        assert_eq!(rest, expected);
    }
}
