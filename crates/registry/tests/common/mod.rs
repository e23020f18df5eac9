//! What the registry client's tests share beyond hpn-testkit (which runs the real registry):
//! a tiny scripted HTTP server for behaviour a real registry will not show on demand (resets,
//! stalls, redirects, 503s), a token endpoint on it, and a deterministic test image.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use hpn_oci::{Descriptor, Digest, media_type};
use hpn_testkit::http::{Body, Client, basic_authorization};
use hpn_testkit::{Registry, Rng, TokenSigner};

/// The registry's error a blob stream ended with (it travels as an `io::Error`).
pub fn registry_error(error: std::io::Error) -> hpn_registry::RegistryError {
    match error.into_inner().map(|inner| inner.downcast::<hpn_registry::RegistryError>()) {
        Some(Ok(error)) => *error,
        other => panic!("not a registry error: {other:?}"),
    }
}

// ---------------------------------------------------------------- image

/// A small single-layer OCI image with real tar+gzip content.
pub struct TestImage {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl TestImage {
    /// Deterministic for a seed; the layer carries `payload_len` bytes of
    /// incompressible data, so its blob spans many network chunks.
    pub fn build(seed: u64, payload_len: usize) -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        let files = [
            ("etc/hostname", format!("hpn-test-{seed}\n").into_bytes()),
            ("data.bin", Rng::new(seed).bytes(payload_len)),
        ];
        for (name, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_path(name).unwrap();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            header.set_cksum();
            tar.append(&header, content.as_slice()).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let diff_id = Digest::of(&tar);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&tar).unwrap();
        let layer = gzip.finish().unwrap();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        )
        .into_bytes();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            Digest::of(&config),
            config.len(),
            media_type::OCI_LAYER_GZIP,
            Digest::of(&layer),
            layer.len()
        )
        .into_bytes();
        Self { config, layer, manifest }
    }

    pub fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    pub fn layer_descriptor(&self) -> Descriptor {
        Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::of(&self.layer), self.layer.len() as u64)
    }

    /// Pushes blobs then the manifest under `tag`, sending `authorization` if given, with
    /// testkit's client rather than the one under test.
    pub fn push(&self, registry: &Registry, repository: &str, tag: &str, authorization: Option<&str>) {
        let client = Client::new(registry.addr(), None);
        let client = match authorization {
            Some(value) => client.with_authorization(value),
            None => client,
        };
        for blob in [&self.config, &self.layer] {
            let digest = Digest::of(blob).to_string();
            client.upload_blob(repository, &digest, Body::Bytes(blob), None).unwrap();
        }
        let digest = self.manifest_digest().to_string();
        client.put_manifest(repository, tag, media_type::OCI_MANIFEST, &self.manifest, &digest).unwrap();
    }
}

/// A body factory over `bytes`, in 64 KiB pieces, counting how often it was
/// called (each call is an upload attempt re-opening its source).
pub fn counted_body(bytes: &[u8]) -> (hpn_registry::BodyFactory, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let bytes = bytes::Bytes::copy_from_slice(bytes);
    let factory: hpn_registry::BodyFactory = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let bytes = bytes.clone();
        Box::pin(async move {
            let pieces: Vec<std::io::Result<bytes::Bytes>> = (0..bytes.len())
                .step_by(64 * 1024)
                .map(|start| Ok(bytes.slice(start..(start + 64 * 1024).min(bytes.len()))))
                .collect();
            Ok(Box::pin(futures_util::stream::iter(pieces)) as hpn_registry::UploadStream)
        })
    });
    (factory, calls)
}

// ---------------------------------------------------------------- scripted HTTP server

/// A request as the scripted server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The body, when it came with a Content-Length.
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }
}

pub enum Action {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Announces `body.len()` bytes, sends the first `send`, then closes the connection.
    Truncate {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        send: usize,
    },
    /// Sends the first `send` bytes, then says nothing for `pause`.
    Stall {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        send: usize,
        pause: Duration,
    },
    /// No Content-Length: the body is whatever comes before the connection closes.
    UntilClose {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

impl Action {
    pub fn status(status: u16) -> Self {
        Self::Respond { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn ok(body: &[u8]) -> Self {
        Self::Respond { status: 200, headers: Vec::new(), body: body.to_vec() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Self::Respond { headers, .. }
            | Self::Truncate { headers, .. }
            | Self::Stall { headers, .. }
            | Self::UntilClose { headers, .. } => headers.push((name.to_owned(), value.to_owned())),
        }
        self
    }
}

type Handler = dyn Fn(&Seen) -> Action + Send + Sync;

/// An HTTP/1.1 server on a loopback address that answers each request with
/// what a closure decides, and records what it saw.
pub struct Scripted {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    tls_handshakes: Arc<AtomicUsize>,
}

impl Scripted {
    pub fn start(ip: &str, handler: impl Fn(&Seen) -> Action + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tls_handshakes = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen_in, stop_in, tls_in) = (seen.clone(), stop.clone(), tls_handshakes.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_in.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (handler, seen, tls) = (handler.clone(), seen_in.clone(), tls_in.clone());
                thread::spawn(move || serve_connection(stream, &*handler, &seen, &tls));
            }
        });
        Self { addr, seen, stop, tls_handshakes }
    }

    /// TLS handshakes that reached this plain-HTTP server (and were refused).
    pub fn tls_handshakes(&self) -> usize {
        self.tls_handshakes.load(Ordering::SeqCst)
    }

    /// `127.0.0.1:PORT`, the registry name for references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|seen| seen.path() == path).count()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_connection(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Seen>>, tls: &AtomicUsize) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    // A TLS handshake record: answer as Go's net/http does, so a client trying
    // HTTPS first learns at once that this is plain HTTP.
    if reader.fill_buf().is_ok_and(|buffer| buffer.first() == Some(&0x16)) {
        tls.fetch_add(1, Ordering::SeqCst);
        let _ = writer.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n");
        let _ = writer.shutdown(Shutdown::Both);
        return;
    }
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = request_line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else { return };
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let mut request = Seen { method: method.to_owned(), target: target.to_owned(), headers, body: Vec::new() };
        if let Some(length) = request.header("content-length").and_then(|value| value.parse::<u64>().ok()) {
            let mut body = Vec::new();
            if (&mut reader).take(length).read_to_end(&mut body).is_err() || body.len() as u64 != length {
                return;
            }
            request.body = body;
        }
        seen.lock().unwrap().push(request.clone());
        let head_only = request.method == "HEAD";
        let keep_open = match handler(&request) {
            Action::Respond { status, headers, body } => {
                let length = body.len();
                write_head(&mut writer, status, &headers, Some(length));
                if !head_only {
                    let _ = writer.write_all(&body);
                }
                true
            }
            Action::Truncate { status, headers, body, send } => {
                write_head(&mut writer, status, &headers, Some(body.len()));
                let _ = writer.write_all(&body[..send]);
                false
            }
            Action::Stall { status, headers, body, send, pause } => {
                write_head(&mut writer, status, &headers, Some(body.len()));
                let _ = writer.write_all(&body[..send]);
                let _ = writer.flush();
                thread::sleep(pause);
                false
            }
            Action::UntilClose { status, mut headers, body } => {
                headers.push(("Connection".to_owned(), "close".to_owned()));
                write_head(&mut writer, status, &headers, None);
                let _ = writer.write_all(&body);
                false
            }
        };
        let _ = writer.flush();
        if !keep_open {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn write_head(writer: &mut TcpStream, status: u16, headers: &[(String, String)], length: Option<usize>) {
    let mut head = format!("HTTP/1.1 {status} Scripted\r\n");
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = writer.write_all(head.as_bytes());
}

// ---------------------------------------------------------------- token server

/// A token endpoint at [`TokenServer::realm`] that checks Basic credentials and service, and grants
/// each requested scope's actions that the user may have (anonymous users:
/// none, as Docker Hub does for private repositories). Counts what it issued.
pub struct TokenServer {
    server: Scripted,
    pub issued: Arc<AtomicUsize>,
}

impl TokenServer {
    /// One user who may pull only. `expired_first`: the first token handed
    /// out is already expired (while claiming a long lifetime), to exercise
    /// the refresh after a 401.
    pub fn start(signer: Arc<TokenSigner>, username: &str, password: &str, expired_first: bool) -> Self {
        Self::start_with_users(signer, &[(username, password, &["pull"])], expired_first)
    }

    /// Users as (name, password, actions they may have on any repository).
    pub fn start_with_users(signer: Arc<TokenSigner>, users: &[(&str, &str, &[&str])], expired_first: bool) -> Self {
        let issued = Arc::new(AtomicUsize::new(0));
        let users: Vec<(String, Vec<String>)> = users
            .iter()
            .map(|(name, password, actions)| {
                (basic_authorization(name, password), actions.iter().map(|action| (*action).to_owned()).collect())
            })
            .collect();
        let counter = issued.clone();
        let server = Scripted::start("127.0.0.1", move |request| {
            let query = request.target.split_once('?').map(|(_, query)| query).unwrap_or("");
            let params: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{query}"))
                .unwrap()
                .query_pairs()
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect();
            let param = |name: &str| params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
            if param("service") != Some(TokenSigner::SERVICE) {
                return Action::Respond {
                    status: 400,
                    headers: Vec::new(),
                    body: br#"{"details":"wrong service"}"#.to_vec(),
                };
            }
            let allowed: &[String] = match request.header("authorization") {
                None => &[],
                Some(value) => match users.iter().find(|(expected, _)| expected == value) {
                    Some((_, actions)) => actions,
                    None => {
                        return Action::Respond {
                            status: 401,
                            headers: Vec::new(),
                            body: br#"{"details":"incorrect username or password"}"#.to_vec(),
                        };
                    }
                },
            };
            let access: Vec<(String, Vec<String>)> = params
                .iter()
                .filter(|(key, _)| key == "scope")
                .filter_map(|(_, scope)| {
                    let mut parts = scope.splitn(3, ':');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some("repository"), Some(name), Some(wanted)) => {
                            let granted: Vec<String> = wanted
                                .split(',')
                                .filter(|action| allowed.iter().any(|have| have == action))
                                .map(str::to_owned)
                                .collect();
                            (!granted.is_empty()).then(|| (name.to_owned(), granted))
                        }
                        _ => None,
                    }
                })
                .collect();
            let number = counter.fetch_add(1, Ordering::SeqCst);
            let lifetime = if expired_first && number == 0 { -1 } else { 300 };
            let token = signer.token_for(&access, lifetime);
            Action::ok(serde_json::json!({"token": token, "expires_in": 300}).to_string().as_bytes())
        });
        Self { server, issued }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.host())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.server.seen()
    }
}
