//! `hpn serve`: the store, or archive files, served read-only as an OCI
//! distribution registry, in place.
//!
//! - Names: each stored image's repository path without its registry host
//!   (`docker.io/library/nginx:1.25` is `library/nginx:1.25`), or with it
//!   ([`ServeOptions::keep_host`]); names that collide are reported by
//!   [`Server::collisions`].
//! - A repository serves only the manifests and blobs its images reach.
//! - The store's index.json is watched: a ref appears once it is complete
//!   (the store writes index.json last, by rename).
//! - Blob bodies go from the file to the socket with `sendfile(2)` on plain
//!   HTTP; through a bounded buffer with TLS.
//!
//! ```no_run
//! # async fn run() -> Result<(), hpn_serve::ServeError> {
//! use hpn_serve::{ServeOptions, Server, Source};
//!
//! let server = Server::bind(
//!     Source::Store("/var/cache/hpn/store".into()),
//!     "127.0.0.1:5000".parse().unwrap(),
//!     ServeOptions::default(),
//! )
//! .await?;
//! println!("serving on {}", server.local_addr());
//! server.run(async { tokio::signal::ctrl_c().await.unwrap() }).await
//! # }
//! ```

#![warn(missing_docs)]

mod auth;
mod catalog;
mod content;
mod http;
mod routes;
mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hpn_archive::ArchiveError;
use hpn_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use catalog::Collision;
pub use http::Limits;

use crate::catalog::Catalog;
use crate::content::{Content, IndexStamp};
use crate::http::{Response, Stream};
use crate::routes::Registry;

/// How often the store's index.json is checked for new refs.
const RELOAD_INTERVAL: Duration = Duration::from_millis(500);
/// How long open connections get to finish when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What to serve.
#[derive(Debug, Clone)]
pub enum Source {
    /// hpn's store, at this root.
    Store(PathBuf),
    /// Archive files (any format hpn reads) or OCI layout directories, read
    /// in place.
    Archives(Vec<PathBuf>),
}

/// Files of a TLS certificate chain and its private key, PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One answered request, for the access log. Holds no credentials.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The user it authenticated as, when auth is on.
    pub user: Option<&'a str>,
    /// The request method (empty for a request whose head was unusable).
    pub method: &'a str,
    /// The request target, path and query.
    pub target: &'a str,
    /// The response status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// From the request head to the response's last byte.
    pub elapsed: Duration,
}

/// Where access records go.
pub type AccessSink = Box<dyn Fn(&AccessRecord<'_>) + Send + Sync>;

/// How to serve.
#[derive(Default)]
pub struct ServeOptions {
    /// Serve `HOST/PATH` names (`docker.io/library/nginx`) instead of paths.
    pub keep_host: bool,
    /// Serve HTTPS with this certificate.
    pub tls: Option<TlsFiles>,
    /// Require HTTP Basic auth by this htpasswd file (bcrypt entries).
    pub htpasswd: Option<PathBuf>,
    /// Head size, timeouts, connections.
    pub limits: Limits,
    /// Called for every answered request.
    pub access_log: Option<AccessSink>,
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeOptions")
            .field("keep_host", &self.keep_host)
            .field("tls", &self.tls)
            .field("htpasswd", &self.htpasswd)
            .field("limits", &self.limits)
            .field("access_log", &self.access_log.is_some())
            .finish()
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store cannot be opened or its index read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An archive cannot be opened or indexed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file the options name cannot be read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The certificate or key is not usable.
    #[error("TLS certificate {} or key {} is not usable: {reason}", files.cert.display(), files.key.display())]
    Tls {
        /// The files.
        files: TlsFiles,
        /// What is wrong.
        reason: String,
    },
    /// A line of the htpasswd file is not a bcrypt entry.
    #[error("htpasswd file {} line {line}: {reason}", path.display())]
    Htpasswd {
        /// The file.
        path: PathBuf,
        /// The 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Accepting connections failed.
    #[error("accepting connections failed: {0}")]
    Accept(std::io::Error),
    /// A blocking task panicked: a bug.
    #[error("hpn serve hit a bug: {0}")]
    Bug(String),
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    registry: Arc<Registry>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    collisions: Vec<Collision>,
    stamp: Option<IndexStamp>,
    keep_host: bool,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Server {
    /// Opens the source, builds the catalog (checking every served manifest
    /// against its digest), reads the TLS and htpasswd files and listens on
    /// `addr`.
    pub async fn bind(source: Source, addr: SocketAddr, options: ServeOptions) -> Result<Server, ServeError> {
        let keep_host = options.keep_host;
        let (content, catalog, collisions, stamp) = blocking(move || {
            let content = match source {
                Source::Store(root) => Content::Store(Arc::new(Store::open(&root)?)),
                Source::Archives(paths) => Content::Archives(content::open_archives(&paths)?),
            };
            let stamp = content.index_stamp();
            let (catalog, collisions) = Catalog::build(&content.images()?, keep_host, &content, &Catalog::default());
            Ok::<_, ServeError>((content, catalog, collisions, stamp))
        })
        .await??;
        let tls = match &options.tls {
            Some(files) => Some(tls::acceptor(files)?),
            None => None,
        };
        let auth = match &options.htpasswd {
            Some(path) => Some(auth::Htpasswd::load(path)?),
            None => None,
        };
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let registry = Arc::new(Registry {
            content: Arc::new(content),
            catalog: RwLock::new(Arc::new(catalog)),
            auth,
            access_log: options.access_log,
        });
        Ok(Server { listener, registry, tls, limits: options.limits, collisions, stamp, keep_host })
    }

    /// The address listened on (the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Stored names not served because another took their `repository:tag`.
    pub fn collisions(&self) -> &[Collision] {
        &self.collisions
    }

    /// Served repositories and how many tags they have, at start.
    pub fn repositories(&self) -> Vec<(String, usize)> {
        let catalog = self.registry.catalog.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        catalog.repositories.iter().map(|(name, repository)| (name.clone(), repository.tags.len())).collect()
    }

    /// Where the served content is, for messages.
    pub fn location(&self) -> String {
        self.registry.content.location()
    }

    /// Serves until `stop` completes, then stops accepting, lets open
    /// requests finish (up to 10 s) and returns.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server { listener, registry, tls, limits, stamp, keep_host, .. } = self;
        let (stopping_sender, stopping) = watch::channel(false);
        let reload = tokio::spawn(reload_loop(Arc::clone(&registry), stamp, keep_host, stopping.clone()));
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        let result = loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // Out of file descriptors and the like: wait, do not spin or die.
                    Err(error) if is_transient(&error) => {
                        tracing::warn!(%error, "accepting a connection failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(error) => break Err(ServeError::Accept(error)),
                },
                () = &mut stop => break Ok(()),
            };
            while tasks.try_join_next().is_some() {}
            let _ = socket.set_nodelay(true);
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                tasks.spawn(refuse(socket, Arc::clone(&registry), peer));
                continue;
            };
            let registry = Arc::clone(&registry);
            let tls = tls.clone();
            let limits = limits.clone();
            let stopping = stopping.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let stream = match tls {
                    None => Stream::Plain(socket),
                    Some(acceptor) => match tokio::time::timeout(limits.head_timeout, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => Stream::Tls(Box::new(stream)),
                        Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    },
                };
                http::serve_connection(stream, peer, registry, limits, stopping).await;
            });
        };
        let _ = stopping_sender.send(true);
        drop(listener);
        reload.abort();
        let _ = tokio::time::timeout(STOP_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
        result
    }
}

/// The answer to a connection over the limit: 429, and closed.
async fn refuse(socket: tokio::net::TcpStream, registry: Arc<Registry>, peer: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    let response: Response = routes::error(429, "TOOMANYREQUESTS", "too many connections; retry later");
    let http::Body::Bytes(body) = &response.body else { return };
    let mut head = format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut socket = socket;
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.write_all(&all)).await;
    http::Handler::log(&*registry, &http::RequestHead::default(), peer, None, 429, 0, std::time::Instant::now());
}

fn is_transient(error: &std::io::Error) -> bool {
    !matches!(error.kind(), std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported)
}

/// Rebuilds the catalog whenever the store's index.json has been replaced.
async fn reload_loop(
    registry: Arc<Registry>,
    mut stamp: Option<IndexStamp>,
    keep_host: bool,
    mut stopping: watch::Receiver<bool>,
) {
    if stamp.is_none() && !matches!(*registry.content, Content::Store(_)) {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(RELOAD_INTERVAL) => {}
            _ = stopping.changed() => return,
        }
        let registry_for_task = Arc::clone(&registry);
        let previous = stamp.clone();
        let reloaded = blocking(move || {
            let content = &registry_for_task.content;
            let now = content.index_stamp();
            if now == previous {
                return Ok(None);
            }
            let images = content.images()?;
            let current =
                Arc::clone(&registry_for_task.catalog.read().unwrap_or_else(|poisoned| poisoned.into_inner()));
            let (catalog, collisions) = Catalog::build(&images, keep_host, &**content, &current);
            Ok::<_, ServeError>(Some((now, catalog, collisions)))
        })
        .await;
        match reloaded {
            Ok(Ok(Some((now, catalog, collisions)))) => {
                for collision in &collisions {
                    tracing::warn!(served_as = %collision.served_as, kept = %collision.kept, hidden = %collision.hidden, "two stored names collide");
                }
                *registry.catalog.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(catalog);
                stamp = now;
            }
            Ok(Ok(None)) => {}
            // A store mid-change or unreadable for a moment: keep serving what was there.
            Ok(Err(error)) | Err(error) => {
                tracing::warn!(%error, "cannot reload the store's refs; serving the previous ones")
            }
        }
    }
}

/// Runs blocking work (file I/O, hashing) on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(work).await.map_err(|panic| ServeError::Bug(panic.to_string()))
}
