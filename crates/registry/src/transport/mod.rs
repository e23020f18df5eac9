//! The HTTP layer every registry request goes through, and which knows
//! nothing of manifests, blobs or uploads: which scheme a registry answers
//! on (learned once from `GET /v2/`), the `WWW-Authenticate` challenge and
//! the token cache, redirects that keep `Authorization` on the registry's
//! own origin, retries with backoff and `Retry-After`, stall detection, and
//! the per-host request limits.
//!
//! A [`Call`] is one logical request; [`Transport::execute`] runs it with
//! auth, redirects and retries below it and hands back the final response.

mod auth;
mod certs;
pub mod challenge;
mod redirect;
pub(crate) mod retry;
pub(crate) mod stall;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tracing::debug;

pub use self::auth::Scope;
use self::auth::{Auth, MAX_SMALL_BODY, Realm, UsedToken};
use self::challenge::Challenge;
use self::retry::{Retrier, is_retryable_status, retry_after};
pub(crate) use self::stall::Progress;
use crate::endpoint::{self, Endpoint};
use crate::error::{ErrorBody, RegistryError, Target, TransportError, status_error};
use crate::mutex::lock;
use crate::options::ClientOptions;

/// How long the HTTPS attempt at a loopback registry may take before plain
/// HTTP is tried: a local TLS server answers in milliseconds.
const LOOPBACK_TLS_ATTEMPT: Duration = Duration::from_secs(1);

/// Connections, tokens and per-host state, shared by every clone.
#[derive(Clone)]
pub(crate) struct Transport {
    inner: Arc<Shared>,
}

struct Shared {
    options: ClientOptions,
    clients: Clients,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    auth: Auth,
}

/// The HTTP clients, each one pool reused across requests: with verified
/// TLS, and without verification for registries named insecure only (a
/// separate pool keeps verified and unverified connections apart); each
/// through the proxies the environment names (`HTTPS_PROXY`, `NO_PROXY`...)
/// and direct, for loopback registries, which are never proxied (as skopeo
/// and docker do: a proxy cannot reach this machine's loopback).
struct Clients {
    proxied: reqwest::Client,
    direct: reqwest::Client,
    insecure: Option<(reqwest::Client, reqwest::Client)>,
}

/// How every client of a [`Transport`] is set up; `insecure` turns off
/// certificate verification, `direct` the proxies.
fn client_builder(options: &ClientOptions, insecure: bool, direct: bool) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .user_agent(options.user_agent.clone())
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        // Redirects are followed by hand: the Authorization header must
        // not travel to another host, and every hop is logged.
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(insecure);
    if direct { builder.no_proxy() } else { builder }
}

fn build_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, RegistryError> {
    builder.build().map_err(|error| RegistryError::setup("set up the HTTP client", error))
}

impl Clients {
    fn new(options: &ClientOptions) -> Result<Self, RegistryError> {
        let build = |insecure: bool, direct: bool| build_client(client_builder(options, insecure, direct));
        let insecure = if options.insecure_registries.is_empty() && options.tls_verify {
            None
        } else {
            Some((build(true, false)?, build(true, true)?))
        };
        Ok(Self { proxied: build(false, false)?, direct: build(false, true)?, insecure })
    }

    /// The client for `host`, with or without certificate verification: the
    /// host's own when its certs.d directory gave it CAs or a client
    /// certificate. Everything a loopback registry sends the client to (its
    /// token realm, a redirect) is reached directly too.
    fn get<'a>(&'a self, host: &'a Host, insecure_tls: bool) -> &'a reqwest::Client {
        if let Some(Some(own)) = host.own_client.get()
            && !insecure_tls
        {
            return own;
        }
        let direct = endpoint::is_loopback(&host.api_host);
        match (&self.insecure, insecure_tls, direct) {
            (Some((_, direct_insecure)), true, true) => direct_insecure,
            (Some((proxied_insecure, _)), true, false) => proxied_insecure,
            (_, _, true) => &self.direct,
            _ => &self.proxied,
        }
    }
}

/// One registry, as this client speaks to it.
pub(crate) struct Host {
    /// As the user names it (`docker.io`, `localhost:5000`).
    name: String,
    api_host: String,
    endpoint: Endpoint,
    semaphore: Arc<Semaphore>,
    /// For requests carrying an upload body; see [`Slot`].
    upload_semaphore: Arc<Semaphore>,
    /// A client of its own, when its certs.d directory has TLS files; set
    /// up once, before the first request.
    own_client: OnceCell<Option<reqwest::Client>>,
    /// Scheme and first challenge, learned once from `GET /v2/`.
    probe: OnceCell<Probe>,
    /// The challenge to answer; a later 401 may replace it.
    challenge: Mutex<Option<Challenge>>,
}

impl Host {
    /// The registry as the user names it.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Clone)]
struct Probe {
    base: Url,
    insecure_tls: bool,
    status: StatusCode,
}

/// One logical request; retries, auth and redirects happen below it.
#[derive(Clone)]
pub(crate) struct Call {
    pub(crate) host: Arc<Host>,
    /// For credentials scoped to a repository.
    pub(crate) repository: Option<String>,
    pub(crate) method: Method,
    /// A path on the registry, or an absolute URL (an upload session's
    /// `Location`), which gets the same treatment.
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) scopes: Vec<Scope>,
    /// What the request is about, for messages: `image reg/repo:tag`.
    pub(crate) subject: String,
    pub(crate) target: Target,
    pub(crate) slot: Slot,
}

impl Call {
    /// A call about `repository` of `host` with the usual defaults: no
    /// extra headers, the general request pool.
    pub(crate) fn new(
        host: Arc<Host>,
        repository: &str,
        method: Method,
        path: String,
        scopes: Vec<Scope>,
        subject: String,
        target: Target,
    ) -> Self {
        Self {
            host,
            repository: Some(repository.to_owned()),
            method,
            path,
            headers: HeaderMap::new(),
            scopes,
            subject,
            target,
            slot: Slot::General,
        }
    }
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

impl Transport {
    pub(crate) fn new(options: ClientOptions) -> Result<Self, RegistryError> {
        let clients = Clients::new(&options)?;
        let auth = Auth::new(options.credentials.clone());
        Ok(Self { inner: Arc::new(Shared { options, clients, hosts: Mutex::default(), auth }) })
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The state of a registry, created on first use.
    pub(crate) fn host(&self, registry: &str) -> Result<Arc<Host>, RegistryError> {
        let mut hosts = lock(&self.inner.hosts);
        if let Some(host) = hosts.get(registry) {
            return Ok(host.clone());
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
        let limit = self.inner.options.max_requests_per_host.max(1);
        let host = Arc::new(Host {
            name: registry.to_owned(),
            api_host,
            endpoint: endpoint::endpoint(
                registry,
                &self.inner.options.insecure_registries,
                self.inner.options.tls_verify,
            ),
            semaphore: Arc::new(Semaphore::new(limit)),
            upload_semaphore: Arc::new(Semaphore::new(limit)),
            own_client: OnceCell::new(),
            probe: OnceCell::new(),
            challenge: Mutex::new(None),
        });
        hosts.insert(registry.to_owned(), host.clone());
        Ok(host)
    }

    /// Checks that the registry answers the v2 API and, when credentials are
    /// known for it, that they are accepted.
    pub(crate) async fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        let host = self.host(registry)?;
        let subject = format!("registry {registry}");
        let probe = self.probe(&host, &subject).await?;
        let needs_auth = lock(&host.challenge).is_some();
        if needs_auth && self.inner.auth.credential(registry, None).await?.is_some() {
            let call = Call {
                host: host.clone(),
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
            Err(status_error(registry, &subject, Target::Other, "GET", probe.status, ErrorBody::default(), 1))
        }
    }

    fn http<'a>(&'a self, host: &'a Host, insecure_tls: bool) -> &'a reqwest::Client {
        self.inner.clients.get(host, insecure_tls)
    }

    /// Learns, once per registry, which scheme answers and what auth it wants.
    async fn probe(&self, host: &Host, subject: &str) -> Result<Probe, RegistryError> {
        host.probe.get_or_try_init(|| self.run_probe(host, subject)).await.cloned()
    }

    /// Sets up the host's own client from its certs.d directory, once; the
    /// files are read on the blocking pool.
    async fn own_client(&self, host: &Host) -> Result<(), RegistryError> {
        let options = self.inner.options.clone();
        let registry = host.name.clone();
        let direct = endpoint::is_loopback(&host.api_host);
        host.own_client
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    let Some(tls) = certs::find(&options.certs_dirs, &registry)? else { return Ok(None) };
                    debug!(registry = %registry, roots = tls.roots.len(), client_certificate = tls.identity.is_some(), "using the registry's certs.d files");
                    let mut builder = client_builder(&options, false, direct);
                    for root in tls.roots {
                        builder = builder.add_root_certificate(root);
                    }
                    if let Some(identity) = tls.identity {
                        builder = builder.identity(identity);
                    }
                    build_client(builder).map(Some)
                })
                .await
                .map_err(|error| RegistryError::setup("read the registry's TLS files", error))?
            })
            .await?;
        Ok(())
    }

    async fn run_probe(&self, host: &Host, subject: &str) -> Result<Probe, RegistryError> {
        self.own_client(host).await?;
        let candidates: &[(&str, bool)] = match host.endpoint {
            Endpoint::Https => &[("https", false)],
            Endpoint::Loopback => &[("https", false), ("http", false)],
            Endpoint::Insecure => &[("https", true), ("http", false)],
        };
        let options = &self.inner.options;
        let mut last_error = None;
        for (index, &(scheme, insecure_tls)) in candidates.iter().enumerate() {
            let last = index + 1 == candidates.len();
            let base = Url::parse(&format!("{scheme}://{}/", host.api_host)).expect("validated in host()");
            let url = base.join("/v2/").expect("static path");
            let client = self.http(host, insecure_tls);
            // Only the last candidate gets the retry policy: a plain-HTTP
            // registry answers a TLS handshake with an immediate failure.
            let mut retrier = if last { Retrier::new(&options.retry) } else { Retrier::capped(&options.retry, 1) };
            let sent = retry::send_retrying(&mut retrier, options, || client.get(url.clone()));
            let sent = if last || host.endpoint != Endpoint::Loopback {
                sent.await
            } else {
                // A live loopback server answers a TLS handshake in milliseconds; one that
                // just waits for an HTTP request line must not cost the response timeout.
                match tokio::time::timeout(LOOPBACK_TLS_ATTEMPT, sent).await {
                    Ok(sent) => sent,
                    Err(_) => {
                        debug!(registry = %host.name, "no TLS answer within {LOOPBACK_TLS_ATTEMPT:?}; trying plain HTTP");
                        continue;
                    }
                }
            };
            match sent {
                Ok((response, _)) => {
                    let status = response.status();
                    let challenge = if status == StatusCode::UNAUTHORIZED {
                        challenge::preferred(&auth::challenges(response.headers())).cloned()
                    } else {
                        None
                    };
                    debug!(registry = %host.name, scheme, status = status.as_u16(), auth = ?challenge.as_ref().map(Challenge::scheme), "probed registry");
                    *lock(&host.challenge) = challenge;
                    return Ok(Probe { base, insecure_tls, status });
                }
                Err((error, attempts)) => {
                    // A loopback registry whose certificate is refused, or that
                    // refuses ours, speaks TLS: plain HTTP would only hide why.
                    let speaks_tls = error.is_certificate() || error.is_tls_refused();
                    let error = RegistryError::network(&host.name, subject, attempts, error, scheme == "http");
                    if speaks_tls {
                        return Err(error);
                    }
                    if !last {
                        debug!(registry = %host.name, "HTTPS failed ({error}); trying plain HTTP");
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one candidate"))
    }

    /// Runs a call: auth, redirects, and retries of transport failures and
    /// retryable statuses. Returns the final response whatever its status;
    /// [`Transport::failure`] turns an unsuccessful one into an error.
    pub(crate) async fn execute(&self, call: &Call) -> Result<Reply, RegistryError> {
        match self.execute_with(call, CallBody::Empty, true).await? {
            Sent::Reply(reply) => Ok(reply),
            Sent::Broken { error, attempts } => Err(self.network(call, error, attempts)),
        }
    }

    /// [`Transport::execute`] for a lookup: a successful reply, `None` for a
    /// 404, the error for any other failure. The `HEAD`s of manifests and
    /// blobs, where "not there" is an answer rather than a failure.
    pub(crate) async fn execute_lookup(&self, call: &Call) -> Result<Option<Reply>, RegistryError> {
        let reply = self.execute(call).await?;
        let status = reply.response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.failure(call, reply).await);
        }
        Ok(Some(reply))
    }

    /// [`Transport::execute`] with a body. `retry` allows retries of
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
        let host = &call.host;
        let probe = self.probe(host, &call.subject).await?;
        let retry = retry && body.replayable();
        let progress = body.progress();
        let url = probe.base.join(&call.path).expect("paths are built from validated parts");
        let mut scopes: Vec<String> = call.scopes.iter().map(ToString::to_string).collect();
        let mut reauthenticated = false;
        let mut retrier = Retrier::new(&self.inner.options.retry);
        loop {
            let attempt = retrier.attempt();
            let (authorization, used_token) = self.authorization(host, call, &scopes).await?;
            let semaphore = match call.slot {
                Slot::General => &host.semaphore,
                Slot::Upload => &host.upload_semaphore,
            };
            let permit = semaphore.clone().acquire_owned().await.expect("the semaphore is never closed");
            let request = redirect::Request {
                method: call.method.clone(),
                url: url.clone(),
                headers: &call.headers,
                authorization,
                body: body.take(),
                progress: progress.as_deref(),
            };
            let client = self.http(host, probe.insecure_tls);
            let response = match redirect::send(client, &probe.base, request, &self.inner.options).await {
                Ok(response) => response,
                Err(error) => {
                    drop(permit);
                    let retryable = retry && error.is_retryable();
                    let broken = Sent::Broken { error, attempts: attempt };
                    if !retryable {
                        return Ok(broken);
                    }
                    match retrier.failed(broken, None).await {
                        Ok(()) => continue,
                        Err(last) => return Ok(last),
                    }
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && !reauthenticated
                && redirect::same_origin(response.url(), &probe.base)
            {
                // An expired token, a scope the registry wants added, or a
                // registry that only challenges on repositories: one more
                // try with what the 401 taught us.
                reauthenticated = true;
                if self.learn_from_401(host, response.headers(), &mut scopes, used_token).await && body.replayable() {
                    continue;
                }
            }
            let after = retry_after(response.headers(), SystemTime::now());
            let reply = Sent::Reply(Reply { response, permit, attempts: attempt });
            if !(retry && is_retryable_status(status)) {
                return Ok(reply);
            }
            debug!(registry = %host.name, status = status.as_u16(), "retryable status");
            if let Err(last) = retrier.failed(reply, after).await {
                return Ok(last);
            }
        }
    }

    /// The `Authorization` header for a call, and the token it carries.
    async fn authorization(
        &self,
        host: &Host,
        call: &Call,
        scopes: &[String],
    ) -> Result<(Option<HeaderValue>, Option<UsedToken>), RegistryError> {
        let challenge = lock(&host.challenge).clone();
        let realm = Realm {
            registry: &host.name,
            endpoint: host.endpoint,
            http: self.http(host, host.endpoint == Endpoint::Insecure),
            options: &self.inner.options,
        };
        self.inner.auth.authorization(&realm, challenge, call.repository.as_deref(), scopes, &call.subject).await
    }

    /// Updates the challenge (and scopes) from a 401 and forgets the refused
    /// token. Whether one more attempt can help.
    async fn learn_from_401(
        &self,
        host: &Host,
        headers: &HeaderMap,
        scopes: &mut Vec<String>,
        used_token: Option<UsedToken>,
    ) -> bool {
        let offered = auth::challenges(headers);
        let Some(challenge) = challenge::preferred(&offered).cloned() else {
            return false;
        };
        if let Some(used) = used_token {
            self.inner.auth.refused(used).await;
        }
        let helps = if challenge.is_bearer() {
            auth::add_challenged_scopes(&challenge, scopes);
            true
        } else {
            // Basic: worth one more try only if Basic was not what we sent.
            lock(&host.challenge).as_ref().is_none_or(|previous| !previous.is_basic())
        };
        debug!(registry = %host.name, scheme = challenge.scheme(), helps, "registry answered 401");
        *lock(&host.challenge) = Some(challenge);
        helps
    }

    /// The error for an unsuccessful final response, with the registry's own
    /// error entries from the body.
    pub(crate) async fn failure(&self, call: &Call, reply: Reply) -> RegistryError {
        self.judge(call, reply).await.0
    }

    /// [`Transport::failure`], and what the registry said.
    pub(crate) async fn judge(&self, call: &Call, mut reply: Reply) -> (RegistryError, ErrorBody) {
        let status = reply.response.status();
        // A push refused with `insufficient_scope` although credentials were
        // sent: the login worked, the account lacks the right to push.
        let lacks_rights = status == StatusCode::UNAUTHORIZED
            && call.target.is_push()
            && auth::challenges(reply.response.headers())
                .iter()
                .any(|offered| offered.param("error") == Some("insufficient_scope"));
        let body = if call.method == Method::HEAD {
            Vec::new()
        } else {
            stall::read_body(&mut reply.response, MAX_SMALL_BODY, &self.inner.options)
                .await
                .map(|(body, _)| body)
                .unwrap_or_default()
        };
        // A failure from the host a redirect led to is that host's, not the registry's.
        let redirected_to = call
            .host
            .probe
            .get()
            .filter(|probe| !redirect::same_origin(reply.response.url(), &probe.base))
            .map(|_| stall::host_of(reply.response.url()));
        drop(reply.response);
        drop(reply.permit);
        let errors = ErrorBody::parse(&body);
        if let Some(host) = redirected_to {
            let error =
                RegistryError::redirected(&call.host.name, &call.subject, host, status.as_u16(), errors.clone());
            return (error, errors);
        }
        let error = status_error(
            &call.host.name,
            &call.subject,
            call.target,
            call.method.as_str(),
            status,
            errors.clone(),
            reply.attempts,
        );
        if status != StatusCode::UNAUTHORIZED {
            return (error, errors);
        }
        let has_credentials =
            matches!(self.inner.auth.credential(&call.host.name, call.repository.as_deref()).await, Ok(Some(_)));
        let error = if lacks_rights && has_credentials {
            error.into_push_denied()
        } else {
            let source = match has_credentials {
                true => self.inner.auth.credential_source(&call.host.name, call.repository.as_deref()).await,
                false => None,
            };
            error.with_credentials_known(has_credentials, source)
        };
        (error, errors)
    }

    /// The error for a call that got no usable response.
    pub(crate) fn network(&self, call: &Call, error: TransportError, attempts: u32) -> RegistryError {
        let plain = call.host.probe.get().is_some_and(|probe| probe.base.scheme() == "http");
        RegistryError::network(&call.host.name, &call.subject, attempts, error, plain)
    }
}
