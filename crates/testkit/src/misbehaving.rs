//! Servers that misbehave the way no fault rule of [`FaultProxy`](crate::FaultProxy) can: a
//! registry that trickles its answers a byte at a time (slow enough that no single read ever
//! stalls), one that accepts connections and never answers, and an HTTP proxy that refuses
//! every request. Each listens on `127.0.0.1:0` and stops when dropped.
//!
//! ```no_run
//! use std::time::Duration;
//! use hpn_testkit::{Registry, TrickleProxy};
//! # fn main() -> anyhow::Result<()> {
//! let registry = Registry::start()?;
//! // Manifests of `registry`, one byte every 5 s; everything else at full speed.
//! let trickle = TrickleProxy::start(registry.addr(), "/manifests/", Duration::from_secs(5))?;
//! // ... run a client against trickle.addr() ...
//! # Ok(()) }
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::http::{Body, Client};

/// Request heads larger than this are refused.
const MAX_HEAD: usize = 64 * 1024;

/// A listener whose connections a handler serves, one thread each, until it is dropped.
#[derive(Debug)]
struct Listener {
    addr: String,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl Listener {
    /// Serves each connection with `handle`, which is given the flag that says the listener
    /// was dropped.
    fn start(handle: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static) -> Result<Listener> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
        let addr = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stopped, counted, handle) = (stop.clone(), connections.clone(), Arc::new(handle));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                counted.fetch_add(1, Ordering::SeqCst);
                let (handle, stopped) = (handle.clone(), stopped.clone());
                thread::spawn(move || handle(stream, &stopped));
            }
        });
        Ok(Listener { addr, stop, connections })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// The request line and headers of one request, read off `reader`.
struct RequestHead {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn read(reader: &mut impl BufRead) -> io::Result<RequestHead> {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("not a request line: {line:?}")));
        };
        let (method, target) = (method.to_owned(), target.to_owned());
        let mut headers = Vec::new();
        let mut size = line.len();
        loop {
            line.clear();
            size += reader.read_line(&mut line)?;
            if size > MAX_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        Ok(RequestHead { method, target, headers })
    }
}

/// A proxy in front of a registry that sends the response bodies of requests whose path
/// contains a pattern one byte at a time, a pause between bytes: the registry is alive and
/// sending, but at a rate no download can finish at. Heads, and every other request, pass at
/// once. Serves GET and HEAD (what a pull sends), one request per connection.
#[derive(Debug)]
pub struct TrickleProxy {
    listener: Listener,
}

impl TrickleProxy {
    /// Forwards to `upstream` (`host:port`, plain HTTP), trickling the bodies of paths that
    /// contain `pattern` a byte every `every`.
    pub fn start(upstream: &str, pattern: &str, every: Duration) -> Result<TrickleProxy> {
        let upstream = upstream.to_owned();
        let pattern = pattern.to_owned();
        let listener = Listener::start(move |stream, stopped| {
            let _ = trickle(stream, &upstream, &pattern, every, stopped);
        })?;
        Ok(TrickleProxy { listener })
    }

    /// `127.0.0.1:PORT`, to use as the registry part of references.
    pub fn addr(&self) -> &str {
        &self.listener.addr
    }
}

fn trickle(stream: TcpStream, upstream: &str, pattern: &str, every: Duration, stopped: &AtomicBool) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let request = RequestHead::read(&mut reader)?;
    // What a registry needs to answer a pull as it would answer the client itself.
    let forwarded: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| ["authorization", "accept", "range"].contains(&name.to_ascii_lowercase().as_str()))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let response = Client::new(upstream, None).request(&request.method, &request.target, &forwarded, Body::Empty)?;
    let mut head = format!("HTTP/1.1 {} Trickling\r\nConnection: close\r\n", response.status);
    for (name, value) in response.headers() {
        if !["content-length", "transfer-encoding", "connection"].contains(&name.to_ascii_lowercase().as_str()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let length = match (request.method.as_str(), response.header("Content-Length")) {
        ("HEAD", Some(length)) => length.to_owned(),
        _ => response.body.len().to_string(),
    };
    head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
    let mut stream = stream;
    stream.write_all(head.as_bytes())?;
    if request.method == "HEAD" {
        return Ok(());
    }
    let path = request.target.split('?').next().unwrap_or_default();
    if !path.contains(pattern) {
        return stream.write_all(&response.body);
    }
    for byte in response.body.iter().take_while(|_| !stopped.load(Ordering::SeqCst)) {
        stream.write_all(std::slice::from_ref(byte))?;
        stream.flush()?;
        thread::sleep(every);
    }
    Ok(())
}

/// A server that accepts every connection, reads what comes, and never answers: a registry
/// whose process hangs, or a port a firewall holds open.
#[derive(Debug)]
pub struct SilentServer {
    listener: Listener,
}

impl SilentServer {
    /// Listens on a free loopback port.
    pub fn start() -> Result<SilentServer> {
        let listener = Listener::start(move |mut stream, stopped| {
            // Read and drop whatever comes until the client gives up or the server stops.
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut sink = [0u8; 4096];
            while !stopped.load(Ordering::SeqCst) {
                match io::Read::read(&mut stream, &mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
        })?;
        Ok(SilentServer { listener })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.listener.addr
    }

    /// Connections accepted so far (a client's retries each open one).
    pub fn connections(&self) -> usize {
        self.listener.connections.load(Ordering::SeqCst)
    }
}

/// An HTTP proxy that refuses everything, as a corporate proxy refuses a destination it does
/// not allow: `CONNECT` (the tunnel for HTTPS) and plain requests alike get
/// `403 Forbidden`.
#[derive(Debug)]
pub struct RefusingProxy {
    listener: Listener,
    refused: Arc<std::sync::Mutex<Vec<String>>>,
}

impl RefusingProxy {
    /// Listens on a free loopback port.
    pub fn start() -> Result<RefusingProxy> {
        let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = refused.clone();
        let listener = Listener::start(move |stream, _| {
            let Ok(reader) = stream.try_clone() else { return };
            let Ok(request) = RequestHead::read(&mut BufReader::new(reader)) else { return };
            log.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(format!("{} {}", request.method, request.target));
            let body = "destination not allowed by policy\n";
            let answer = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut stream = stream;
            let _ = stream.write_all(answer.as_bytes());
        })?;
        Ok(RefusingProxy { listener, refused })
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY` and `HTTP_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listener.addr)
    }

    /// The requests refused so far, as `METHOD TARGET` (`CONNECT host:port` for a tunnel).
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}
