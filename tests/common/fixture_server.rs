//! A small registry server of the tests' own (std `TcpListener`), serving the fixture images'
//! real bytes, for what the distribution registry cannot be made to do: answer blob GETs
//! with a redirect to another host, or speak token auth with a token the test knows. A
//! second server, [`BlobHost`], plays the object storage those redirects lead to.
//!
//! Every request is recorded with its Authorization header, so tests can say which
//! credentials went where.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use base64::Engine as _;
use hpn_testkit::fixtures::FixtureSet;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub authorization: Option<String>,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }
}

/// How the registry wants to be spoken to.
#[derive(Debug, Clone)]
pub enum Auth {
    /// HTTP Basic for everything under /v2/.
    Basic { user: String, password: String },
    /// Token auth: `/token` takes Basic credentials and hands out `token`, which /v2/ wants as
    /// `Bearer`.
    Bearer { user: String, password: String, token: String },
}

/// Content by digest, and what manifests and tags resolve to.
struct Content {
    blobs: HashMap<String, Vec<u8>>,
    /// Manifest or index digest → media type.
    manifests: HashMap<String, String>,
    /// (repository, tag) → digest.
    tags: HashMap<(String, String), String>,
}

impl Content {
    fn of(set: &FixtureSet) -> Content {
        let mut blobs = HashMap::new();
        for digest in set.blobs().keys() {
            blobs.insert(digest.clone(), set.read_blob(digest).unwrap());
        }
        let mut manifests = HashMap::new();
        let mut tags = HashMap::new();
        for image in set.images() {
            manifests.insert(image.digest.clone(), image.media_type.clone());
            for platform in &image.platforms {
                manifests.insert(platform.manifest.digest.clone(), platform.manifest.media_type.clone());
            }
            for tag in &image.tags {
                tags.insert((image.repository.clone(), tag.clone()), image.digest.clone());
            }
        }
        Content { blobs, manifests, tags }
    }
}

struct Server {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(ip: &str, handler: impl Fn(&Seen, &str) -> Response + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let (thread_seen, thread_stop, own_addr) = (Arc::clone(&seen), Arc::clone(&stop), addr.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (seen, handler, own_addr) = (Arc::clone(&thread_seen), Arc::clone(&handler), own_addr.clone());
                thread::spawn(move || serve(stream, &seen, &*handler, &own_addr));
            }
        });
        Server { addr, seen, stop }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, body: &[u8]) -> Response {
        Response { status, headers: Vec::new(), body: body.to_vec() }
    }

    fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn error(status: u16, code: &str) -> Response {
        let body = format!(r#"{{"errors":[{{"code":"{code}","message":"{code}"}}]}}"#);
        Response::new(status, body.as_bytes()).header("Content-Type", "application/json")
    }
}

/// One request per connection (`Connection: close`), like the fault proxy.
fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>, handler: &dyn Fn(&Seen, &str) -> Response, own_addr: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let request = Seen { method, target, authorization };
    seen.lock().unwrap().push(request.clone());
    let response = handler(&request, own_addr);
    let mut out = stream;
    let mut head =
        format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n", response.status, response.body.len());
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    if request.method != "HEAD" {
        let _ = out.write_all(&response.body);
    }
    let _ = out.flush();
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// A registry on `127.0.0.1` serving the fixtures of a set under their repositories
/// (`fixtures/<name>`), with [`Auth`] in front; blob GETs are answered with a 307 to
/// `blob_base` when one is given.
pub struct FixtureServer {
    server: Server,
}

impl FixtureServer {
    pub fn start(set: &FixtureSet, auth: Auth, blob_base: Option<String>) -> FixtureServer {
        let content = Content::of(set);
        let server = Server::start("127.0.0.1", move |request, own_addr| {
            handle_registry(&content, &auth, blob_base.as_deref(), request, own_addr)
        });
        FixtureServer { server }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.server.addr
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.server.seen()
    }
}

fn handle_registry(
    content: &Content,
    auth: &Auth,
    blob_base: Option<&str>,
    request: &Seen,
    own_addr: &str,
) -> Response {
    let given = request.authorization.as_deref();
    match auth {
        Auth::Basic { user, password } => {
            if given != Some(basic(user, password).as_str()) {
                return Response::error(401, "UNAUTHORIZED").header("WWW-Authenticate", r#"Basic realm="fixtures""#);
            }
        }
        Auth::Bearer { user, password, token } => {
            if request.path() == "/token" {
                if given != Some(basic(user, password).as_str()) {
                    return Response::error(401, "UNAUTHORIZED");
                }
                let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
                return Response::new(200, body.as_bytes()).header("Content-Type", "application/json");
            }
            if given != Some(format!("Bearer {token}").as_str()) {
                let scope = request
                    .path()
                    .strip_prefix("/v2/")
                    .and_then(|rest| rest.rsplit_once("/manifests/").or_else(|| rest.rsplit_once("/blobs/")))
                    .map(|(repository, _)| format!(r#",scope="repository:{repository}:pull""#))
                    .unwrap_or_default();
                let challenge = format!(r#"Bearer realm="http://{own_addr}/token",service="fixtures"{scope}"#);
                return Response::error(401, "UNAUTHORIZED").header("WWW-Authenticate", &challenge);
            }
        }
    }
    if request.method != "GET" && request.method != "HEAD" {
        return Response::error(405, "UNSUPPORTED");
    }
    let path = request.path();
    if path == "/v2/" {
        return Response::new(200, b"{}").header("Content-Type", "application/json");
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return Response::error(404, "NOT_FOUND") };
    if let Some((repository, reference)) = rest.rsplit_once("/manifests/") {
        let digest = if reference.starts_with("sha256:") {
            Some(reference.to_owned())
        } else {
            content.tags.get(&(repository.to_owned(), reference.to_owned())).cloned()
        };
        let Some((digest, media_type)) = digest.and_then(|d| content.manifests.get(&d).map(|m| (d, m.clone()))) else {
            return Response::error(404, "MANIFEST_UNKNOWN");
        };
        return Response::new(200, &content.blobs[&digest])
            .header("Content-Type", &media_type)
            .header("Docker-Content-Digest", &digest);
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        let Some(bytes) = content.blobs.get(digest) else { return Response::error(404, "BLOB_UNKNOWN") };
        return match blob_base {
            Some(base) => {
                let location = format!("{base}/blobs/{digest}?X-Amz-Signature=presigned-{}", &digest[7..19]);
                Response::new(307, b"").header("Location", &location)
            }
            None => Response::new(200, bytes).header("Content-Type", "application/octet-stream"),
        };
    }
    Response::error(404, "NOT_FOUND")
}

/// Object storage on `127.0.0.2` for redirected blob GETs: serves `/blobs/<digest>` and
/// refuses (403) any request that carries an Authorization header.
pub struct BlobHost {
    server: Server,
}

impl BlobHost {
    pub fn start(set: &FixtureSet) -> BlobHost {
        let blobs = Content::of(set).blobs;
        let server = Server::start("127.0.0.2", move |request, _| {
            if request.authorization.is_some() {
                return Response::error(403, "AUTHORIZATION_NOT_ALLOWED");
            }
            match request.path().strip_prefix("/blobs/").and_then(|digest| blobs.get(digest)) {
                Some(bytes) if request.target.contains("X-Amz-Signature=presigned-") => {
                    Response::new(200, bytes).header("Content-Type", "application/octet-stream")
                }
                Some(_) => Response::error(403, "SIGNATURE_MISSING"),
                None => Response::error(404, "NO_SUCH_KEY"),
            }
        });
        BlobHost { server }
    }

    /// `http://127.0.0.2:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.server.seen()
    }
}
