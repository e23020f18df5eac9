//! The client: endpoint probing, auth, redirects, retries, and the manifest
//! and blob operations built on them.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use hpn_oci::{BlobStream, Descriptor, Digest, DigestError, ParsedManifest, RawManifest, Reference, media_type};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use crate::auth::{Scope, Token, TokenCache, TokenKey, TokenResponse};
use crate::blob;
use crate::challenge::{self, Challenge};
use crate::credentials::Credential;
use crate::endpoint::{self, Transport};
use crate::error::{RegistryError, RegistrySays, SizeProblem, Target, status_error};
use crate::options::ClientOptions;
use crate::retry::{TransportError, error_chain, is_retryable_status, retry_after};
use crate::upload::{PendingSession, SessionKey};

/// Manifests larger than this are refused, to bound memory.
const MAX_MANIFEST_BYTES: usize = hpn_oci::limits::MANIFEST as usize;
/// Error and token bodies are read up to this much.
pub(crate) const MAX_SMALL_BODY: usize = 1024 * 1024;
const MAX_REDIRECTS: usize = 10;
const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

/// A registry client. Cheap to clone; clones share connections, tokens and
/// the per-host request limits.
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient").field("options", &self.inner.options).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) options: ClientOptions,
    /// One pool for everything, so connections are reused across requests.
    http: reqwest::Client,
    /// Without certificate verification, for registries named insecure only.
    /// A separate pool keeps verified and unverified connections apart.
    insecure_http: Option<reqwest::Client>,
    registries: Mutex<HashMap<String, Arc<RegistryState>>>,
    tokens: TokenCache,
    credentials: Mutex<HashMap<(String, String), Option<Credential>>>,
    /// Upload sessions a registry opened in answer to a mount it could not
    /// do, kept for the upload of that blob that follows.
    pub(crate) sessions: Mutex<HashMap<SessionKey, PendingSession>>,
}

pub(crate) struct RegistryState {
    /// As the user names it (`docker.io`, `localhost:5000`).
    pub(crate) name: String,
    api_host: String,
    transport: Transport,
    semaphore: Arc<Semaphore>,
    /// For requests carrying an upload body; see [`Slot`].
    upload_semaphore: Arc<Semaphore>,
    /// Scheme and first challenge, learned once from `GET /v2/`.
    probe: OnceCell<Probe>,
    /// The challenge to answer; a later 401 may replace it.
    challenge: Mutex<Option<Challenge>>,
}

#[derive(Clone)]
struct Probe {
    base: Url,
    insecure_tls: bool,
    status: StatusCode,
}

impl Probe {
    fn is_plain(&self) -> bool {
        self.base.scheme() == "http"
    }
}

/// One logical request; retries, auth and redirects happen below it.
#[derive(Clone)]
pub(crate) struct Call {
    pub(crate) registry: Arc<RegistryState>,
    pub(crate) repository: Option<String>,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) scopes: Vec<Scope>,
    /// What the request is about, for messages: `image reg/repo:tag`.
    pub(crate) subject: String,
    pub(crate) target: Target,
    pub(crate) slot: Slot,
}

/// Which of a host's two request pools a call draws from.
///
/// Requests that carry a blob body being uploaded have a pool of their own
/// (of `max_requests_per_host` slots too). With one pool, copying between two
/// repositories of one registry could deadlock: every slot held by an open
/// source body whose upload waits for a slot. Upload slots are only ever held
/// by requests whose body is already open, so they always make progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    General,
    Upload,
}

/// What a call sends.
pub(crate) enum CallBody {
    Empty,
    /// Can be sent again: retries and a re-authentication resend it.
    Bytes(Bytes),
    /// Sent at most once; a failure after it went out is the caller's to
    /// retry, with a new body. `progress` lets a stalled upload be detected
    /// without a total timeout, which a large blob would exceed.
    Stream {
        body: Option<reqwest::Body>,
        progress: Arc<Progress>,
    },
}

impl CallBody {
    fn replayable(&self) -> bool {
        !matches!(self, Self::Stream { .. })
    }

    fn take(&mut self) -> Option<reqwest::Body> {
        match self {
            Self::Empty => None,
            Self::Bytes(bytes) => Some(bytes.clone().into()),
            Self::Stream { body, .. } => body.take(),
        }
    }

    fn progress(&self) -> Option<Arc<Progress>> {
        match self {
            Self::Stream { progress, .. } => Some(progress.clone()),
            _ => None,
        }
    }
}

/// When an upload body last moved. The HTTP stack pulls the body only as
/// fast as the registry reads it, so a long pause means the registry stopped
/// reading, unless the body's own source is what is slow (it has its own
/// stall detection).
#[derive(Debug)]
pub(crate) struct Progress {
    base: Instant,
    /// Milliseconds after `base` of the last pull by the HTTP stack.
    last_ms: AtomicU64,
    waiting_on_source: AtomicBool,
    body_done: AtomicBool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting_on_source: AtomicBool::new(false),
            body_done: AtomicBool::new(false),
        }
    }

    pub(crate) fn touch(&self) {
        self.last_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_waiting_on_source(&self, waiting: bool) {
        self.waiting_on_source.store(waiting, Ordering::Relaxed);
    }

    pub(crate) fn set_body_done(&self) {
        self.touch();
        self.body_done.store(true, Ordering::Relaxed);
    }

    /// How much longer the registry has before the upload counts as stalled;
    /// zero when it is stalled now.
    fn time_left(&self, stall: Duration) -> Duration {
        if self.waiting_on_source.load(Ordering::Relaxed) {
            return stall;
        }
        // After the last byte the registry verifies the blob and moves it
        // into place before it answers; on object-storage backends that is a
        // server-side copy, which for a large blob takes a while.
        let limit = if self.body_done.load(Ordering::Relaxed) { stall * 5 } else { stall };
        let idle = self.base.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
        limit.saturating_sub(idle)
    }
}

/// The outcome of sending a call: a final response, or a transport failure
/// the call did not retry (a streamed body cannot be sent twice).
pub(crate) enum Sent {
    Reply(Reply),
    Broken { error: TransportError, attempts: u32 },
}

/// A final response and the request slot it holds until dropped.
pub(crate) struct Reply {
    pub(crate) response: Response,
    pub(crate) permit: OwnedSemaphorePermit,
    pub(crate) attempts: u32,
}

impl RegistryClient {
    pub fn new(options: ClientOptions) -> Result<Self, RegistryError> {
        let build = |insecure: bool| {
            let mut builder = reqwest::Client::builder()
                .user_agent(options.user_agent.clone())
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true)
                .tcp_keepalive(Duration::from_secs(30))
                .pool_idle_timeout(Duration::from_secs(90))
                // Redirects are followed by hand: the Authorization header must
                // not travel to another host, and every hop is logged.
                .redirect(reqwest::redirect::Policy::none());
            if insecure {
                builder = builder.danger_accept_invalid_certs(true);
            }
            builder.build().map_err(|error| RegistryError::Setup(error_chain(&error)))
        };
        let http = build(false)?;
        let insecure_http = if options.insecure_registries.is_empty() { None } else { Some(build(true)?) };
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                http,
                insecure_http,
                registries: Mutex::default(),
                tokens: TokenCache::default(),
                credentials: Mutex::default(),
                sessions: Mutex::default(),
            }),
        })
    }

    /// Checks that the registry answers the v2 API and, when credentials are
    /// known for it, that they are accepted (as `docker login` does).
    pub async fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        let state = self.state(registry)?;
        let subject = format!("registry {registry}");
        let probe = self.probe(&state, &subject).await?;
        let needs_auth = lock(&state.challenge).is_some();
        if needs_auth && self.credential(&state, None).await?.is_some() {
            let call = Call {
                registry: state.clone(),
                repository: None,
                method: Method::GET,
                path: "/v2/".to_owned(),
                headers: HeaderMap::new(),
                scopes: Vec::new(),
                subject,
                target: Target::Other,
                slot: Slot::General,
            };
            let reply = self.execute(&call).await?;
            if !reply.response.status().is_success() {
                return Err(self.failure(&call, reply).await);
            }
            return Ok(());
        }
        if probe.status.is_success() || probe.status == StatusCode::UNAUTHORIZED {
            Ok(())
        } else {
            Err(status_error(registry, &subject, Target::Other, "GET", probe.status, &RegistrySays::parse(b""), 1))
        }
    }

    /// Fetches a manifest or index by tag or digest, with an `Accept` of every
    /// type hpn can copy. The digest is computed over the exact bytes and must
    /// match the reference's digest and the registry's `Docker-Content-Digest`.
    pub async fn get_manifest(&self, reference: &Reference) -> Result<RawManifest, RegistryError> {
        let call = self.manifest_call(reference, Method::GET)?;
        let registry = call.registry.name.clone();
        let policy = &self.inner.options.retry;
        let mut failures = 0;
        loop {
            let mut reply = self.execute(&call).await?;
            if !reply.response.status().is_success() {
                return Err(self.failure(&call, reply).await);
            }
            let headers = reply.response.headers().clone();
            if let Some(length) = header_u64(&headers, &CONTENT_LENGTH)
                && length > MAX_MANIFEST_BYTES as u64
            {
                return Err(too_large(&registry, &call.subject, length));
            }
            match read_body(&mut reply.response, MAX_MANIFEST_BYTES, self.inner.options.stall_timeout).await {
                Ok((_, true)) => return Err(too_large(&registry, &call.subject, MAX_MANIFEST_BYTES as u64 + 1)),
                Ok((bytes, false)) => {
                    drop(reply);
                    return finish_manifest(&registry, &call.subject, reference, &headers, bytes);
                }
                Err(error) => {
                    drop(reply);
                    failures += 1;
                    if !error.is_retryable() || failures >= policy.attempts() {
                        let plain = self.is_plain(&call);
                        return Err(RegistryError::network(&registry, &call.subject, failures, error, plain));
                    }
                    debug!(registry = %registry, failures, "manifest body broke; fetching it again");
                    tokio::time::sleep(policy.backoff(failures)).await;
                }
            }
        }
    }

    /// Resolves a reference with `HEAD`: digest (`Docker-Content-Digest`),
    /// media type (`Content-Type`) and size (`Content-Length`). `Ok(None)`
    /// when the registry says 404. A registry that leaves out a header gets a
    /// `GET` instead, so the answer is always complete and verified.
    pub async fn head_manifest(&self, reference: &Reference) -> Result<Option<Descriptor>, RegistryError> {
        let call = self.manifest_call(reference, Method::HEAD)?;
        let reply = self.execute(&call).await?;
        let status = reply.response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.failure(&call, reply).await);
        }
        let headers = reply.response.headers().clone();
        drop(reply);
        let registry = &call.registry.name;
        let digest = match headers.get(DOCKER_CONTENT_DIGEST).and_then(|value| value.to_str().ok()) {
            Some(text) => match text.trim().parse::<Digest>() {
                Ok(digest) => Some(digest),
                Err(DigestError::UnsupportedAlgorithm(_)) => None,
                Err(error) => {
                    return Err(RegistryError::protocol(
                        registry,
                        &call.subject,
                        format!("malformed Docker-Content-Digest header: {error}"),
                    ));
                }
            },
            None => None,
        };
        if let (Some(expected), Some(actual)) = (reference.digest(), &digest)
            && expected != actual
        {
            return Err(RegistryError::DigestMismatch {
                registry: registry.clone(),
                subject: call.subject.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
                expected_from: "the reference",
            });
        }
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or(value).trim().to_owned())
            .filter(|value| !value.is_empty() && value != "application/json" && value != "text/plain");
        let size = header_u64(&headers, &CONTENT_LENGTH);
        match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) => Ok(Some(Descriptor::new(&media_type, digest, size))),
            _ => {
                debug!(registry = %registry, "HEAD answer lacks digest, type or length; using GET");
                match self.get_manifest(reference).await {
                    Ok(fetched) => {
                        Ok(Some(Descriptor::new(&fetched.media_type, fetched.digest, fetched.bytes.len() as u64)))
                    }
                    Err(error) if error.is_not_found() => Ok(None),
                    Err(error) => Err(error),
                }
            }
        }
    }

    /// Streams a blob of `reference`'s repository. The stream errors if the
    /// body ends short of `descriptor.size` or goes past it; a body that
    /// breaks or stalls is resumed with `Range` within the retry policy. The
    /// digest is not checked here: the consumer hashes while it writes.
    pub async fn get_blob(&self, reference: &Reference, descriptor: &Descriptor) -> Result<BlobStream, RegistryError> {
        let call = self.blob_call(reference, &descriptor.digest, Method::GET)?;
        let reply = self.execute(&call).await?;
        let status = reply.response.status();
        if !status.is_success() {
            return Err(self.failure(&call, reply).await);
        }
        if status != StatusCode::OK {
            return Err(RegistryError::protocol(
                &call.registry.name,
                &call.subject,
                format!("unexpected HTTP {status}"),
            ));
        }
        if let Some(length) = header_u64(reply.response.headers(), &CONTENT_LENGTH)
            && length != descriptor.size
        {
            return Err(RegistryError::SizeMismatch {
                registry: call.registry.name.clone(),
                subject: call.subject.clone(),
                expected: descriptor.size,
                actual: SizeProblem::Announced(length),
            });
        }
        Ok(blob::stream(self.clone(), call, reply, descriptor.size))
    }

    /// Whether a blob exists in `reference`'s repository: its size, or `None` on 404.
    pub async fn head_blob(&self, reference: &Reference, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let call = self.blob_call(reference, digest, Method::HEAD)?;
        let reply = self.execute(&call).await?;
        let status = reply.response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.failure(&call, reply).await);
        }
        header_u64(reply.response.headers(), &CONTENT_LENGTH).map(Some).ok_or_else(|| {
            RegistryError::protocol(&call.registry.name, &call.subject, "HEAD answer without Content-Length")
        })
    }

    pub(crate) fn manifest_call(&self, reference: &Reference, method: Method) -> Result<Call, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(&media_type::ACCEPTED_MANIFESTS.join(", ")).expect("ASCII"));
        Ok(Call {
            registry: self.state(reference.registry())?,
            repository: Some(reference.repository().to_owned()),
            path: format!("/v2/{}/manifests/{}", reference.repository(), reference.manifest_reference()),
            method,
            headers,
            scopes: vec![Scope::pull(reference.repository())],
            subject: format!("image {reference}"),
            target: Target::Manifest,
            slot: Slot::General,
        })
    }

    pub(crate) fn blob_call(
        &self,
        reference: &Reference,
        digest: &Digest,
        method: Method,
    ) -> Result<Call, RegistryError> {
        Ok(Call {
            registry: self.state(reference.registry())?,
            repository: Some(reference.repository().to_owned()),
            path: format!("/v2/{}/blobs/{digest}", reference.repository()),
            method,
            headers: HeaderMap::new(),
            scopes: vec![Scope::pull(reference.repository())],
            subject: format!("blob {digest} of {}", reference.name()),
            target: Target::Blob,
            slot: Slot::General,
        })
    }

    pub(crate) fn state(&self, registry: &str) -> Result<Arc<RegistryState>, RegistryError> {
        let mut registries = lock(&self.inner.registries);
        if let Some(state) = registries.get(registry) {
            return Ok(state.clone());
        }
        let api_host = endpoint::api_host(registry).to_owned();
        // Validate once here, so later URL building cannot fail.
        Url::parse(&format!("https://{api_host}/"))
            .ok()
            .filter(|url| url.path() == "/" && url.query().is_none() && !api_host.contains(['/', '@', '?', '#']))
            .ok_or_else(|| RegistryError::InvalidRegistry {
                registry: registry.to_owned(),
                reason: "not a host[:port]".to_owned(),
            })?;
        let state = Arc::new(RegistryState {
            name: registry.to_owned(),
            api_host,
            transport: endpoint::transport(registry, &self.inner.options.insecure_registries),
            semaphore: Arc::new(Semaphore::new(self.inner.options.max_requests_per_host.max(1))),
            upload_semaphore: Arc::new(Semaphore::new(self.inner.options.max_requests_per_host.max(1))),
            probe: OnceCell::new(),
            challenge: Mutex::new(None),
        });
        registries.insert(registry.to_owned(), state.clone());
        Ok(state)
    }

    fn http(&self, insecure_tls: bool) -> &reqwest::Client {
        match (&self.inner.insecure_http, insecure_tls) {
            (Some(insecure), true) => insecure,
            _ => &self.inner.http,
        }
    }

    /// Learns, once per registry, which scheme answers and what auth it wants.
    async fn probe(&self, state: &Arc<RegistryState>, subject: &str) -> Result<Probe, RegistryError> {
        state.probe.get_or_try_init(|| self.run_probe(state, subject)).await.cloned()
    }

    async fn run_probe(&self, state: &RegistryState, subject: &str) -> Result<Probe, RegistryError> {
        let candidates: &[(&str, bool)] = match state.transport {
            Transport::Https => &[("https", false)],
            Transport::Plain => &[("http", false)],
            Transport::Insecure => &[("https", true), ("http", false)],
        };
        let mut last_error = None;
        for (index, &(scheme, insecure_tls)) in candidates.iter().enumerate() {
            let last = index + 1 == candidates.len();
            let base = Url::parse(&format!("{scheme}://{}/", state.api_host)).expect("validated in state()");
            let url = base.join("/v2/").expect("static path");
            let client = self.http(insecure_tls);
            // Only the last candidate gets the retry policy: a plain-HTTP
            // registry answers a TLS handshake with an immediate failure.
            let attempts = if last { self.inner.options.retry.attempts() } else { 1 };
            let plain = scheme == "http";
            match self.send_with_retries(&state.name, subject, plain, attempts, || client.get(url.clone())).await {
                Ok((response, _)) => {
                    let status = response.status();
                    let challenge = if status == StatusCode::UNAUTHORIZED {
                        challenge::preferred(&challenges(response.headers())).cloned()
                    } else {
                        None
                    };
                    debug!(registry = %state.name, scheme, status = status.as_u16(), auth = ?challenge.as_ref().map(Challenge::scheme), "probed registry");
                    *lock(&state.challenge) = challenge;
                    return Ok(Probe { base, insecure_tls, status });
                }
                Err(error) => {
                    if !last {
                        debug!(registry = %state.name, "HTTPS failed ({error}); trying plain HTTP");
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one candidate"))
    }

    /// Sends a request built by `make`, retrying transport failures and
    /// retryable statuses. For requests without auth or redirects: the probe
    /// and the token endpoint.
    async fn send_with_retries(
        &self,
        registry: &str,
        subject: &str,
        plain: bool,
        attempts: u32,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(Response, u32), RegistryError> {
        let policy = &self.inner.options.retry;
        let stall = self.inner.options.stall_timeout;
        let mut failures = 0;
        loop {
            let (client, request) = make().build_split();
            let request = request.map_err(|error| RegistryError::Setup(error_chain(&error.without_url())))?;
            let (method, host, path) =
                (request.method().clone(), host_of(request.url()), request.url().path().to_owned());
            let started = Instant::now();
            let result = match tokio::time::timeout(stall, client.execute(request)).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(error)) => Err(TransportError::Http(error)),
                Err(_) => Err(TransportError::NoResponse(stall)),
            };
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(response) => {
                    let status = response.status();
                    debug!(%method, %host, %path, status = status.as_u16(), elapsed_ms, "registry request");
                    if is_retryable_status(status) && failures + 1 < attempts {
                        failures += 1;
                        let delay = retry_after(response.headers(), SystemTime::now())
                            .unwrap_or_else(|| policy.backoff(failures));
                        debug!(%host, status = status.as_u16(), delay_ms = delay.as_millis() as u64, "retrying");
                        drop(response);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok((response, failures + 1));
                }
                Err(error) => {
                    failures += 1;
                    debug!(%method, %host, %path, elapsed_ms, failures, "request failed: {}", error.describe());
                    if !error.is_retryable() || failures >= attempts {
                        return Err(RegistryError::network(registry, subject, failures, error, plain));
                    }
                    tokio::time::sleep(policy.backoff(failures)).await;
                }
            }
        }
    }

    /// Runs a call: auth, redirects, and retries of transport failures and
    /// retryable statuses. Returns the final response whatever its status;
    /// [`RegistryClient::failure`] turns an unsuccessful one into an error.
    pub(crate) async fn execute(&self, call: &Call) -> Result<Reply, RegistryError> {
        match self.execute_with(call, CallBody::Empty, true).await? {
            Sent::Reply(reply) => Ok(reply),
            Sent::Broken { error, attempts } => {
                Err(RegistryError::network(&call.registry.name, &call.subject, attempts, error, self.is_plain(call)))
            }
        }
    }

    /// [`RegistryClient::execute`] with a body. `retry` allows retries of
    /// transport failures and retryable statuses (only ever for a body that
    /// can be sent again); without it the first outcome is returned, so an
    /// upload can start over in a new session instead. A 401 is answered with
    /// fresh credentials once whenever the body can be sent again; for a
    /// streamed body the refused token is still forgotten.
    pub(crate) async fn execute_with(
        &self,
        call: &Call,
        mut body: CallBody,
        retry: bool,
    ) -> Result<Sent, RegistryError> {
        let state = &call.registry;
        let probe = self.probe(state, &call.subject).await?;
        let policy = &self.inner.options.retry;
        let retry = retry && body.replayable();
        let progress = body.progress();
        let mut scopes: Vec<String> = call.scopes.iter().map(ToString::to_string).collect();
        let mut failures = 0;
        let mut reauthenticated = false;
        loop {
            let (authorization, used_token) = self.authorization(state, call, &scopes).await?;
            let semaphore = match call.slot {
                Slot::General => &state.semaphore,
                Slot::Upload => &state.upload_semaphore,
            };
            let permit = semaphore.clone().acquire_owned().await.expect("the semaphore is never closed");
            let sending = body.take();
            match self.send_following_redirects(&probe, call, authorization, sending, progress.as_deref()).await {
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED
                        && !reauthenticated
                        && same_origin(response.url(), &probe.base)
                    {
                        // An expired token, a scope the registry wants added, or
                        // a registry that only challenges on repositories: one
                        // more try with what the 401 taught us.
                        reauthenticated = true;
                        if self.learn_from_401(state, response.headers(), &mut scopes, used_token).await
                            && body.replayable()
                        {
                            continue;
                        }
                    }
                    if retry && is_retryable_status(status) && failures + 1 < policy.attempts() {
                        failures += 1;
                        let delay = retry_after(response.headers(), SystemTime::now())
                            .unwrap_or_else(|| policy.backoff(failures));
                        debug!(registry = %state.name, status = status.as_u16(), delay_ms = delay.as_millis() as u64, "retrying");
                        drop(response);
                        drop(permit);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok(Sent::Reply(Reply { response, permit, attempts: failures + 1 }));
                }
                Err(error) => {
                    drop(permit);
                    failures += 1;
                    if !retry || !error.is_retryable() || failures >= policy.attempts() {
                        return Ok(Sent::Broken { error, attempts: failures });
                    }
                    debug!(registry = %state.name, failures, "request failed: {}; retrying", error.describe());
                    tokio::time::sleep(policy.backoff(failures)).await;
                }
            }
        }
    }

    /// One attempt: the request and the redirects after it. The
    /// `Authorization` header goes only to the registry's own origin; object
    /// storage behind a redirect authenticates through the URL and rejects a
    /// second mechanism. `call.path` may also be an absolute URL (an upload
    /// session's `Location`), which gets the same treatment.
    async fn send_following_redirects(
        &self,
        probe: &Probe,
        call: &Call,
        authorization: Option<HeaderValue>,
        mut body: Option<reqwest::Body>,
        progress: Option<&Progress>,
    ) -> Result<Response, TransportError> {
        let stall = self.inner.options.stall_timeout;
        let client = self.http(probe.insecure_tls);
        let mut url = probe.base.join(&call.path).expect("paths are built from validated parts");
        let mut method = call.method.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = client.request(method.clone(), url.clone()).headers(call.headers.clone());
            if let Some(authorization) = &authorization
                && same_origin(&url, &probe.base)
            {
                request = request.header(AUTHORIZATION, authorization.clone());
            }
            // Only the first hop has a body: redirects are followed for GET
            // and HEAD only.
            if let Some(body) = body.take() {
                request = request.body(body);
            }
            let started = Instant::now();
            let response = match progress {
                None => match tokio::time::timeout(stall, request.send()).await {
                    Ok(result) => result.map_err(TransportError::Http)?,
                    Err(_) => return Err(TransportError::NoResponse(stall)),
                },
                Some(progress) => await_upload(request.send(), progress, stall).await?,
            };
            let status = response.status();
            // Host and path only: a redirect's or upload session's query may
            // carry a signature or the registry's upload state.
            debug!(
                method = %method,
                host = %host_of(&url),
                path = %url.path(),
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "registry request"
            );
            let follow = status.is_redirection()
                && status != StatusCode::NOT_MODIFIED
                && (method == Method::GET || method == Method::HEAD);
            let Some(location) = response.headers().get(LOCATION).filter(|_| follow) else {
                return Ok(response);
            };
            let Some(next) = location.to_str().ok().and_then(|location| url.join(location).ok()) else {
                return Ok(response);
            };
            if !matches!(next.scheme(), "http" | "https") {
                return Ok(response);
            }
            url = next;
            if status == StatusCode::SEE_OTHER {
                method = Method::GET;
            }
        }
        Err(TransportError::TooManyRedirects(MAX_REDIRECTS))
    }

    /// The `Authorization` header for a call, and the token it carries (to
    /// forget it if the registry refuses it).
    async fn authorization(
        &self,
        state: &RegistryState,
        call: &Call,
        scopes: &[String],
    ) -> Result<(Option<HeaderValue>, Option<(TokenKey, String)>), RegistryError> {
        let Some(challenge) = lock(&state.challenge).clone() else {
            return Ok((None, None));
        };
        if challenge.is_basic() {
            return Ok(match self.credential(state, call.repository.as_deref()).await? {
                Some(Credential::Basic { username, password }) => (Some(basic_header(&username, &password)), None),
                _ => (None, None),
            });
        }
        if !challenge.is_bearer() {
            return Ok((None, None));
        }
        let realm = challenge.param("realm").unwrap_or_default();
        let service = challenge.param("service").unwrap_or_default();
        let key = TokenKey::new(&state.name, realm, service, scopes);
        let slot = self.inner.tokens.slot(&key);
        let mut cached = slot.lock().await;
        let now = Instant::now();
        let token = match cached.as_ref() {
            Some(token) if token.is_fresh(now) => token,
            _ => {
                let credential = self.credential(state, call.repository.as_deref()).await?;
                let token = self.fetch_token(state, &challenge, scopes, credential.as_ref(), &call.subject).await?;
                cached.insert(token)
            }
        };
        let mut header = HeaderValue::from_str(&format!("Bearer {}", token.value)).map_err(|_| {
            RegistryError::protocol(
                &state.name,
                &call.subject,
                "the token service sent a token that is not a valid header",
            )
        })?;
        header.set_sensitive(true);
        Ok((Some(header), Some((key, token.value.clone()))))
    }

    /// Gets a token from the challenge's realm: `GET realm?service=..&scope=..`
    /// with Basic credentials when known, or the OAuth2 refresh-token `POST`
    /// for identity tokens.
    async fn fetch_token(
        &self,
        state: &RegistryState,
        challenge: &Challenge,
        scopes: &[String],
        credential: Option<&Credential>,
        subject: &str,
    ) -> Result<Token, RegistryError> {
        let registry = &state.name;
        let realm = challenge
            .param("realm")
            .filter(|realm| !realm.is_empty())
            .ok_or_else(|| RegistryError::protocol(registry, subject, "Bearer challenge without a realm"))?;
        let mut url = Url::parse(realm)
            .map_err(|error| RegistryError::protocol(registry, subject, format!("invalid token realm: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::protocol(registry, subject, "token realm is not an http(s) URL"));
        }
        if url.scheme() == "http" && state.transport == Transport::Https && credential.is_some() {
            // The registry is spoken to over verified HTTPS; its credentials
            // must not then cross the network in the clear.
            return Err(RegistryError::protocol(
                registry,
                subject,
                format!("token realm {} is plain HTTP; refusing to send credentials to it", host_of(&url)),
            ));
        }
        let service = challenge.param("service").unwrap_or_default();
        let token_subject = format!("{subject} (token service {})", host_of(&url));
        let insecure_tls = state.transport == Transport::Insecure;
        let client = self.http(insecure_tls);
        let plain = url.scheme() == "http";
        let attempts = self.inner.options.retry.attempts();
        let (mut response, tries) = match credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", refresh.clone()),
                    ("client_id", "hpn".to_owned()),
                    ("scope", scopes.join(" ")),
                ];
                if !service.is_empty() {
                    form.push(("service", service.to_owned()));
                }
                self.send_with_retries(registry, &token_subject, plain, attempts, || {
                    client.post(url.clone()).form(&form)
                })
                .await?
            }
            other => {
                {
                    let mut query = url.query_pairs_mut();
                    if !service.is_empty() {
                        query.append_pair("service", service);
                    }
                    for scope in scopes {
                        query.append_pair("scope", scope);
                    }
                    if let Some(Credential::Basic { username, .. }) = other {
                        // Docker sends the account so token servers can log it.
                        query.append_pair("account", username);
                    }
                }
                let basic = match other {
                    Some(Credential::Basic { username, password }) => Some(basic_header(username, password)),
                    _ => None,
                };
                self.send_with_retries(registry, &token_subject, plain, attempts, || {
                    let request = client.get(url.clone());
                    match &basic {
                        Some(basic) => request.header(AUTHORIZATION, basic.clone()),
                        None => request,
                    }
                })
                .await?
            }
        };
        let status = response.status();
        let body = read_body(&mut response, MAX_SMALL_BODY, self.inner.options.stall_timeout)
            .await
            .map(|(body, _)| body)
            .unwrap_or_default();
        if !status.is_success() {
            let says = RegistrySays::parse(&body);
            return Err(status_error(registry, &token_subject, Target::Other, "GET", status, &says, tries));
        }
        let now = Instant::now();
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(|parsed| parsed.into_token(now))
            // The body holds the token: never quote it.
            .ok_or_else(|| RegistryError::protocol(registry, &token_subject, "the token service's answer has no token"))
    }

    /// Updates the challenge (and scopes) from a 401 and forgets the refused
    /// token. Whether one more attempt can help.
    async fn learn_from_401(
        &self,
        state: &RegistryState,
        headers: &HeaderMap,
        scopes: &mut Vec<String>,
        used_token: Option<(TokenKey, String)>,
    ) -> bool {
        let offered = challenges(headers);
        let Some(challenge) = challenge::preferred(&offered).cloned() else {
            return false;
        };
        if let Some((key, token)) = used_token {
            self.inner.tokens.invalidate(&key, &token).await;
        }
        let helps = if challenge.is_bearer() {
            // Scopes the registry names go first: some token servers only
            // honour the first scope parameter.
            if let Some(wanted) = challenge.param("scope") {
                for scope in wanted.split(' ').filter(|scope| !scope.is_empty()).rev() {
                    if !scopes.iter().any(|have| have == scope) {
                        scopes.insert(0, scope.to_owned());
                    }
                }
            }
            true
        } else {
            // Basic: worth one more try only if Basic was not what we sent.
            lock(&state.challenge).as_ref().is_none_or(|previous| !previous.is_basic())
        };
        debug!(registry = %state.name, scheme = challenge.scheme(), helps, "registry answered 401");
        *lock(&state.challenge) = Some(challenge);
        helps
    }

    /// Credentials for a registry and repository, looked up once (a helper
    /// runs a process) and remembered for the client's lifetime.
    async fn credential(
        &self,
        state: &RegistryState,
        repository: Option<&str>,
    ) -> Result<Option<Credential>, RegistryError> {
        let credentials = &self.inner.options.credentials;
        if credentials.is_empty() {
            return Ok(None);
        }
        let key = (state.name.clone(), repository.unwrap_or_default().to_owned());
        if let Some(found) = lock(&self.inner.credentials).get(&key) {
            return Ok(found.clone());
        }
        let credentials = credentials.clone();
        let (registry, repository) = (key.0.clone(), repository.map(str::to_owned));
        let found = tokio::task::spawn_blocking(move || match repository {
            Some(repository) => credentials.lookup_for_repository(&registry, &repository),
            None => credentials.lookup(&registry),
        })
        .await
        .map_err(|error| RegistryError::Setup(format!("credential lookup panicked: {error}")))??;
        lock(&self.inner.credentials).insert(key, found.clone());
        Ok(found)
    }

    /// The error for an unsuccessful final response, with the registry's own
    /// error code and message from the body.
    pub(crate) async fn failure(&self, call: &Call, reply: Reply) -> RegistryError {
        self.judge(call, reply).await.0
    }

    /// [`RegistryClient::failure`], with the registry's error codes.
    pub(crate) async fn judge(&self, call: &Call, mut reply: Reply) -> (RegistryError, RegistrySays) {
        let status = reply.response.status();
        // A push refused with `insufficient_scope` although credentials were
        // sent: the login worked, the account lacks the right to push.
        let lacks_rights = status == StatusCode::UNAUTHORIZED
            && call.target.is_push()
            && challenges(reply.response.headers())
                .iter()
                .any(|offered| offered.param("error") == Some("insufficient_scope"));
        let body = if call.method == Method::HEAD {
            Vec::new()
        } else {
            read_body(&mut reply.response, MAX_SMALL_BODY, self.inner.options.stall_timeout)
                .await
                .map(|(body, _)| body)
                .unwrap_or_default()
        };
        drop(reply.response);
        drop(reply.permit);
        let says = RegistrySays::parse(&body);
        let error = status_error(
            &call.registry.name,
            &call.subject,
            call.target,
            call.method.as_str(),
            status,
            &says,
            reply.attempts,
        );
        let logged_in =
            lacks_rights && matches!(self.credential(&call.registry, call.repository.as_deref()).await, Ok(Some(_)));
        (if logged_in { error.into_push_denied() } else { error }, says)
    }

    pub(crate) fn is_plain(&self, call: &Call) -> bool {
        call.registry.probe.get().is_some_and(Probe::is_plain)
    }
}

/// Checks manifest bytes against the digests the reference and the registry
/// claim, and returns their digest.
pub(crate) fn verify_manifest_digest(
    bytes: &[u8],
    from_reference: Option<&Digest>,
    from_header: Option<&str>,
) -> Result<Digest, (Digest, Digest, &'static str)> {
    let actual = Digest::of(bytes);
    if let Some(expected) = from_reference
        && *expected != actual
    {
        return Err((expected.clone(), actual, "the reference"));
    }
    // A header in another algorithm (sha512) cannot be checked with ours; the
    // bytes are still verified against the reference when it has a digest.
    if let Some(Ok(expected)) = from_header.map(|text| text.trim().parse::<Digest>())
        && expected != actual
    {
        return Err((expected, actual, "the registry's Docker-Content-Digest header"));
    }
    Ok(actual)
}

fn finish_manifest(
    registry: &str,
    subject: &str,
    reference: &Reference,
    headers: &HeaderMap,
    bytes: Vec<u8>,
) -> Result<RawManifest, RegistryError> {
    let header_digest = headers.get(DOCKER_CONTENT_DIGEST).and_then(|value| value.to_str().ok());
    if let Some(Err(DigestError::Malformed(text))) = header_digest.map(|text| text.trim().parse::<Digest>()) {
        return Err(RegistryError::protocol(
            registry,
            subject,
            format!("malformed Docker-Content-Digest header {text:?}"),
        ));
    }
    let digest = verify_manifest_digest(&bytes, reference.digest(), header_digest).map_err(
        |(expected, actual, expected_from)| RegistryError::DigestMismatch {
            registry: registry.to_owned(),
            subject: subject.to_owned(),
            expected,
            actual,
            expected_from,
        },
    )?;
    let content_type = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok());
    let (_, media_type) = ParsedManifest::parse(&bytes, content_type)
        .map_err(|source| RegistryError::Manifest { subject: subject.to_owned(), source })?;
    Ok(RawManifest { bytes: Bytes::from(bytes), media_type, digest })
}

fn too_large(registry: &str, subject: &str, length: u64) -> RegistryError {
    RegistryError::protocol(
        registry,
        subject,
        format!("the manifest is {length} bytes, more than the {MAX_MANIFEST_BYTES} bytes hpn accepts"),
    )
}

/// Waits for the answer to a request with a streamed body. There is no total
/// timeout (a large blob may take hours); the request fails when the body
/// stops moving for the stall timeout (see [`Progress`]).
async fn await_upload(
    send: impl Future<Output = Result<Response, reqwest::Error>>,
    progress: &Progress,
    stall: Duration,
) -> Result<Response, TransportError> {
    // The clock starts now, not when the body was opened: waiting for a
    // request slot or a token is not the registry stalling.
    progress.touch();
    let mut send = std::pin::pin!(send);
    loop {
        let left = progress.time_left(stall);
        if left.is_zero() {
            return Err(TransportError::UploadStalled(stall));
        }
        if let Ok(result) = tokio::time::timeout(left, send.as_mut()).await {
            return result.map_err(TransportError::Http);
        }
    }
}

/// Reads a body up to `limit` bytes; `true` when there was more.
pub(crate) async fn read_body(
    response: &mut Response,
    limit: usize,
    stall: Duration,
) -> Result<(Vec<u8>, bool), TransportError> {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(stall, response.chunk()).await {
            Err(_) => return Err(TransportError::Stalled(stall)),
            Ok(Err(error)) => return Err(TransportError::Http(error)),
            Ok(Ok(None)) => return Ok((body, false)),
            Ok(Ok(Some(chunk))) => {
                if body.len() + chunk.len() > limit {
                    let room = limit - body.len();
                    body.extend_from_slice(&chunk[..room]);
                    return Ok((body, true));
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(challenge::parse_www_authenticate)
        .collect()
}

fn basic_header(username: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut header = HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    header.set_sensitive(true);
    header
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

pub(crate) fn header_u64(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here leaves shared state half-updated on a panic.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: &[u8] = br#"{"schemaVersion":2}"#;

    #[test]
    fn manifest_digest_is_checked_against_reference_and_header() {
        let actual = Digest::of(BYTES);
        let other = Digest::of(b"something else");
        assert_eq!(verify_manifest_digest(BYTES, None, None).unwrap(), actual);
        assert_eq!(verify_manifest_digest(BYTES, Some(&actual), Some(&actual.to_string())).unwrap(), actual);
        let (expected, got, from) = verify_manifest_digest(BYTES, Some(&other), None).unwrap_err();
        assert_eq!((expected, got, from), (other.clone(), actual.clone(), "the reference"));
        let (expected, _, from) = verify_manifest_digest(BYTES, None, Some(&format!(" {other} "))).unwrap_err();
        assert_eq!(expected, other);
        assert!(from.contains("Docker-Content-Digest"));
        // An algorithm we cannot compute is not a mismatch.
        assert!(verify_manifest_digest(BYTES, None, Some(&format!("sha512:{}", "a".repeat(128)))).is_ok());
    }

    #[test]
    fn finish_manifest_reports_mismatch_schema1_and_media_type() {
        let reference: Reference = "127.0.0.1:5000/a/b:v1".parse().unwrap();
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"));
        let fetched = finish_manifest("r", "image x", &reference, &headers, manifest.to_vec()).unwrap();
        assert_eq!(fetched.media_type, media_type::OCI_MANIFEST);
        assert_eq!(fetched.digest, Digest::of(manifest));

        headers.insert(DOCKER_CONTENT_DIGEST, HeaderValue::from_str(&Digest::of(b"x").to_string()).unwrap());
        let error = finish_manifest("r", "image x", &reference, &headers, manifest.to_vec()).unwrap_err();
        assert!(matches!(error, RegistryError::DigestMismatch { .. }), "{error}");
        assert!(error.to_string().contains(&Digest::of(b"x").to_string()), "{error}");

        headers.insert(DOCKER_CONTENT_DIGEST, HeaderValue::from_static("sha256:nothex"));
        let error = finish_manifest("r", "image x", &reference, &headers, manifest.to_vec()).unwrap_err();
        assert!(matches!(error, RegistryError::Protocol { .. }), "{error}");

        let schema1 = br#"{"schemaVersion":1,"name":"a/b","tag":"v1","fsLayers":[]}"#;
        let error = finish_manifest("r", "image x", &reference, &HeaderMap::new(), schema1.to_vec()).unwrap_err();
        assert_eq!(error.manifest_error(), Some(&hpn_oci::ManifestError::Schema1));
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let base = Url::parse("http://127.0.0.1:5000/").unwrap();
        assert!(same_origin(&Url::parse("http://127.0.0.1:5000/v2/x").unwrap(), &base));
        assert!(!same_origin(&Url::parse("http://127.0.0.1:5001/v2/x").unwrap(), &base));
        assert!(!same_origin(&Url::parse("https://127.0.0.1:5000/v2/x").unwrap(), &base));
        assert!(!same_origin(&Url::parse("http://127.0.0.2:5000/v2/x").unwrap(), &base));
        let https = Url::parse("https://r.example/").unwrap();
        assert!(same_origin(&Url::parse("https://r.example:443/x").unwrap(), &https));
    }
}
