//! The write side: blob existence at a destination, cross-repository mounts,
//! blob uploads and manifest pushes.
//!
//! A blob upload is `POST /v2/NAME/blobs/uploads/` (the registry answers 202
//! and a session URL in `Location`), then `PUT <session>&digest=` with the
//! whole body, or, where a registry or a proxy refuses one large request,
//! `PATCH` chunks with `Content-Range` and an empty final `PUT`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt as _};
use hpn_oci::{Descriptor, Digest, Reference};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RANGE};
use reqwest::{Method, StatusCode, Url};
use tracing::debug;

use crate::error::{ErrorBody, ErrorCode, HINT_CONTENT, RegistryError, Target, chain};
use crate::headers;
use crate::mutex::lock;
use crate::transport::retry::{Retrier, is_retryable_status, retry_after};
use crate::transport::{Call, CallBody, Host, Progress, Reply, Scope, Sent, Slot, Transport};

/// A blob's bytes for an upload, in order: the same [`hpn_oci::BlobStream`]
/// the read side hands out, so a blob fetched from one registry is pushed to
/// another as it is.
///
/// Files of the store and archives fit as they are
/// (`tokio_util::io::ReaderStream`); any other source adapts with one
/// `map_err(io::Error::other)`, which keeps its error as the cause. The
/// upload reports a failing source as [`RegistryError::Content`].
pub type UploadStream = hpn_oci::BlobStream;

/// How a caller hands a blob body to [`RegistryClient::upload_blob`](crate::RegistryClient::upload_blob): a
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
const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// Registry, repository and digest of an upload session kept from a mount.
type SessionKey = (String, String, Digest);

struct PendingSession {
    url: Url,
    opened: Instant,
}

/// Upload sessions a registry opened in answer to a mount it could not do,
/// kept for the upload of that blob that follows.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<SessionKey, PendingSession>>);

impl Sessions {
    fn take(&self, key: &SessionKey) -> Option<Url> {
        let session = self.forget(key)?;
        (session.opened.elapsed() < SESSION_TTL).then_some(session.url)
    }

    fn forget(&self, key: &SessionKey) -> Option<PendingSession> {
        lock(&self.0).remove(key)
    }

    /// Keeps a session for the upload that follows; returns one it replaces.
    fn keep(&self, key: SessionKey, url: Url) -> Option<Url> {
        let mut sessions = lock(&self.0);
        sessions.retain(|_, session| session.opened.elapsed() < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, session)| session.opened).map(|(key, _)| key.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(key, PendingSession { url, opened: Instant::now() }).map(|replaced| replaced.url)
    }
}

/// `HEAD` of a blob at a push target, with the target's `pull,push` token:
/// it is the one the upload that usually follows needs, so one token serves
/// both (token services grant what they allow).
pub(crate) async fn exists(transport: &Transport, target: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
    let repository = target.repository();
    let call = Call::new(
        transport.host(target.registry())?,
        repository,
        Method::HEAD,
        format!("/v2/{repository}/blobs/{digest}"),
        vec![Scope::push(repository)],
        format!("checking for blob {digest} in {}", target.name()),
        Target::BlobPush,
    );
    Ok(transport.execute_lookup(&call).await?.is_some())
}

/// `POST ?mount=&from=` with one token for `pull,push` on the target and
/// `pull` on the source; a session opened instead (202) is kept.
pub(crate) async fn mount(
    transport: &Transport,
    sessions: &Sessions,
    target: &Reference,
    digest: &Digest,
    from_repository: &str,
) -> Result<MountOutcome, RegistryError> {
    let host = transport.host(target.registry())?;
    let repository = target.repository();
    let call = Call::new(
        host.clone(),
        repository,
        Method::POST,
        format!(
            "/v2/{repository}/blobs/uploads/?mount={}&from={}",
            query_component(&digest.to_string()),
            query_component(from_repository)
        ),
        vec![Scope::push(repository), Scope::pull(from_repository)],
        format!("mounting blob {digest} from {from_repository} into {}", target.name()),
        Target::BlobPush,
    );
    // An empty body still gets `Content-Length: 0`, which some registries
    // and proxies require on a POST.
    let reply = match transport.execute_with(&call, CallBody::Bytes(Bytes::new()), true).await {
        Ok(Sent::Reply(reply)) => reply,
        Ok(Sent::Broken { error, attempts }) => return Err(transport.network(&call, error, attempts)),
        Err(error) if error.is_auth() => {
            debug!(registry = %host.name(), "no token for the mount: {error}");
            return Ok(MountOutcome::NotMounted);
        }
        Err(error) => return Err(error),
    };
    let key: SessionKey = (host.name().to_owned(), repository.to_owned(), digest.clone());
    match reply.response.status() {
        StatusCode::CREATED => {
            headers::check_pushed_digest(reply.response.headers(), host.name(), &call.subject, digest, "blob")?;
            drop(reply);
            if let Some(stale) = sessions.forget(&key) {
                cancel_session(transport, &host, repository, &call.subject, stale.url).await;
            }
            Ok(MountOutcome::Mounted)
        }
        StatusCode::ACCEPTED => {
            match session_location(&reply) {
                Some(url) => {
                    drop(reply);
                    if let Some(replaced) = sessions.keep(key, url) {
                        cancel_session(transport, &host, repository, &call.subject, replaced).await;
                    }
                }
                None => debug!(registry = %host.name(), "mount answered 202 without a usable Location"),
            }
            Ok(MountOutcome::NotMounted)
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            debug!(registry = %host.name(), status = reply.response.status().as_u16(), "mount refused; the blob will be uploaded");
            Ok(MountOutcome::NotMounted)
        }
        _ => Err(transport.failure(&call, reply).await),
    }
}

/// Uploads a blob: in one `PUT` (from memory up to [`SMALL_BLOB`], else
/// streamed), or as `PATCH` chunks where a whole-blob request is refused;
/// retryable failures start over in a new session with a fresh body.
pub(crate) async fn upload(
    transport: &Transport,
    sessions: &Sessions,
    target: &Reference,
    descriptor: &Descriptor,
    body: BodyFactory,
) -> Result<(), RegistryError> {
    let push = Push {
        transport,
        host: transport.host(target.registry())?,
        repository: target.repository().to_owned(),
        descriptor,
        subject: format!("pushing blob {} to {}", descriptor.digest, target.name()),
    };
    let buffered = if descriptor.size <= SMALL_BLOB { Some(push.read_whole(&body).await?) } else { None };
    let key: SessionKey = (push.host.name().to_owned(), push.repository.clone(), descriptor.digest.clone());
    let mut session = sessions.take(&key);
    let mut chunked = false;
    let mut reauthenticated = false;
    let mut retrier = Retrier::new(&transport.options().retry);
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
                    push.cancel(location).await;
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
        push.cancel(location).await;
        match failure {
            Failure::Fatal(error) => return Err(error),
            Failure::Refused(error) if chunked => return Err(error),
            Failure::Refused(error) => {
                debug!(registry = %push.host.name(), "whole-blob PUT refused ({error}); uploading in chunks");
                chunked = true;
            }
            // The refused token is forgotten already; one more session with
            // a fresh one.
            Failure::Unauthorized(error) if reauthenticated => return Err(error),
            Failure::Unauthorized(_) => reauthenticated = true,
            Failure::Retry { error, after } => {
                if push.committed().await {
                    debug!(registry = %push.host.name(), "the registry has the blob despite the failure ({error})");
                    return Ok(());
                }
                debug!(registry = %push.host.name(), attempt = retrier.attempt(), "upload failed ({error}); starting over");
                retrier.failed(error, after).await?;
            }
        }
    }
}

/// Tells the registry an upload session is abandoned, so it can free what it
/// holds at once. Best effort: registries purge stale sessions.
async fn cancel_session(transport: &Transport, host: &Arc<Host>, repository: &str, subject: &str, url: Url) {
    let call = Call::new(
        host.clone(),
        repository,
        Method::DELETE,
        url.to_string(),
        vec![Scope::push(repository)],
        subject.to_owned(),
        Target::BlobPush,
    );
    let status = match transport.execute_with(&call, CallBody::Empty, false).await {
        Ok(Sent::Reply(reply)) => Some(reply.response.status().as_u16()),
        _ => None,
    };
    debug!(registry = %host.name(), ?status, "cancelled upload session");
}

/// One blob upload to one repository.
struct Push<'a> {
    transport: &'a Transport,
    host: Arc<Host>,
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
    fn call(&self, method: Method, path: String, headers: HeaderMap, slot: Slot) -> Call {
        let mut call = Call::new(
            self.host.clone(),
            &self.repository,
            method,
            path,
            vec![Scope::push(&self.repository)],
            self.subject.clone(),
            Target::BlobPush,
        );
        call.headers = headers;
        call.slot = slot;
        call
    }

    async fn cancel(&self, location: Url) {
        cancel_session(self.transport, &self.host, &self.repository, &self.subject, location).await;
    }

    /// Opens an upload session; its URL.
    async fn start(&self) -> Result<Url, RegistryError> {
        let call =
            self.call(Method::POST, format!("/v2/{}/blobs/uploads/", self.repository), HeaderMap::new(), Slot::General);
        let reply = match self.transport.execute_with(&call, CallBody::Bytes(Bytes::new()), true).await? {
            Sent::Reply(reply) => reply,
            Sent::Broken { error, attempts } => return Err(self.transport.network(&call, error, attempts)),
        };
        let status = reply.response.status();
        if status == StatusCode::ACCEPTED {
            return session_location(&reply).ok_or_else(|| {
                RegistryError::protocol(
                    self.host.name(),
                    &self.subject,
                    "upload session without a usable Location header",
                )
            });
        }
        if status.is_success() {
            return Err(RegistryError::protocol(
                self.host.name(),
                &self.subject,
                format!("HTTP {status} to the upload start, where 202 Accepted was expected"),
            ));
        }
        Err(self.transport.failure(&call, reply).await)
    }

    async fn open(&self, body: &BodyFactory) -> Result<Checked, RegistryError> {
        let stream = body().await.map_err(|error| {
            RegistryError::content(
                self.host.name(),
                &self.subject,
                "cannot open the content to push",
                Some(error),
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

    fn content_error(&self, problem: &Mutex<Option<Problem>>) -> RegistryError {
        let Problem { text, source } =
            lock(problem).take().unwrap_or_else(|| Problem { text: "could not be read".to_owned(), source: None });
        RegistryError::content(
            self.host.name(),
            &self.subject,
            format!("the content to push {text}"),
            source,
            HINT_CONTENT,
        )
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
        let call =
            self.call(Method::PUT, with_digest(&location, &self.descriptor.digest).to_string(), headers, Slot::Upload);
        let sent = self.transport.execute_with(&call, body, false).await.map_err(Failure::Fatal)?;
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
            let call = self.call(Method::PATCH, location.to_string(), headers, Slot::Upload);
            let progress = Arc::new(Progress::new());
            let body = CallBody::Stream { body: Some(sliced(piece.clone(), progress.clone())), progress };
            let reply = match self.transport.execute_with(&call, body, false).await.map_err(Failure::Fatal)? {
                Sent::Reply(reply) => reply,
                broken @ Sent::Broken { .. } => return self.finish(&call, broken, false).await,
            };
            let status = reply.response.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE && piece.len() > MIN_CHUNK {
                chunk = (piece.len() / 2).max(MIN_CHUNK);
                debug!(registry = %self.host.name(), chunk, "chunk refused as too large; halving");
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
                    self.host.name(),
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
        let call = self.call(
            Method::PUT,
            with_digest(&location, &self.descriptor.digest).to_string(),
            HeaderMap::new(),
            Slot::General,
        );
        let sent =
            self.transport.execute_with(&call, CallBody::Bytes(Bytes::new()), false).await.map_err(Failure::Fatal)?;
        self.finish(&call, sent, false).await
    }

    /// Judges the answer to a request that should have committed the blob
    /// (or, for a chunk, anything but 202).
    async fn finish(&self, call: &Call, sent: Sent, whole: bool) -> Result<(), Failure> {
        let reply = match sent {
            Sent::Reply(reply) => reply,
            Sent::Broken { error, attempts } => {
                let retryable = error.is_retryable();
                let error = self.transport.network(call, error, attempts);
                return Err(if retryable { Failure::Retry { error, after: None } } else { Failure::Fatal(error) });
            }
        };
        let status = reply.response.status();
        if status == StatusCode::CREATED {
            let headers = reply.response.headers();
            return headers::check_pushed_digest(
                headers,
                self.host.name(),
                &self.subject,
                &self.descriptor.digest,
                "blob",
            )
            .map_err(Failure::Fatal);
        }
        if status.is_success() {
            return Err(Failure::Fatal(RegistryError::protocol(
                self.host.name(),
                &self.subject,
                format!("HTTP {status} to {}, where 201 Created was expected", call.method),
            )));
        }
        let after = retry_after(reply.response.headers(), SystemTime::now());
        let (error, says): (RegistryError, ErrorBody) = self.transport.judge(call, reply).await;
        Err(if matches!(error, RegistryError::Unauthorized { .. }) {
            Failure::Unauthorized(error)
        } else if is_retryable_status(status) {
            Failure::Retry { error, after }
        } else if says.has(&ErrorCode::BlobUploadUnknown)
            || (status == StatusCode::NOT_FOUND && !says.has(&ErrorCode::NameUnknown))
        {
            // The session expired or went to a registry replica without it.
            Failure::Retry { error, after: None }
        } else if whole
            && (matches!(
                status,
                StatusCode::PAYLOAD_TOO_LARGE
                    | StatusCode::METHOD_NOT_ALLOWED
                    | StatusCode::LENGTH_REQUIRED
                    | StatusCode::NOT_IMPLEMENTED
            ) || says.has(&ErrorCode::Unsupported)
                || says.has(&ErrorCode::BlobUploadInvalid))
        {
            Failure::Refused(error)
        } else {
            Failure::Fatal(error)
        })
    }

    /// Whether the blob is in the repository now; false when that cannot be told.
    async fn committed(&self) -> bool {
        let Ok(target) = Reference::new(self.host.name(), &self.repository, None, Some(self.descriptor.digest.clone()))
        else {
            return false;
        };
        exists(self.transport, &target, &self.descriptor.digest).await.unwrap_or(false)
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
    problem: Arc<Mutex<Option<Problem>>>,
    progress: Arc<Progress>,
    done: bool,
}

/// What was wrong with an upload's content, kept for the message: the HTTP
/// stack only sees that the body failed.
#[derive(Debug)]
struct Problem {
    text: String,
    source: Option<io::Error>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        match &self.source {
            Some(source) => write!(f, ": {}", chain(source)),
            None => Ok(()),
        }
    }
}

impl Checked {
    fn new(inner: UploadStream, expected: u64) -> Self {
        Self { inner, expected, seen: 0, problem: Arc::default(), progress: Arc::new(Progress::new()), done: false }
    }

    fn fail(&mut self, text: String, source: Option<io::Error>) -> Poll<Option<Result<Bytes, io::Error>>> {
        self.done = true;
        let error = io::Error::other(text.clone());
        lock(&self.problem).get_or_insert(Problem { text, source });
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
                    return this.fail(format!("is longer than the {} bytes its descriptor says", this.expected), None);
                }
                if this.seen == this.expected {
                    this.progress.set_body_done();
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(error)) => this.fail("could not be read".to_owned(), Some(error)),
            None if this.seen < this.expected => {
                this.fail(format!("ended after {} of the {} bytes its descriptor says", this.seen, this.expected), None)
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
    problem: Arc<Mutex<Option<Problem>>>,
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
    async fn next(&mut self, limit: usize) -> Result<Option<Bytes>, Arc<Mutex<Option<Problem>>>> {
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
            let problem = lock(&checked.problem).as_ref().map(ToString::to_string);
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
