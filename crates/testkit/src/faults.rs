//! A fault-injecting HTTP/1.1 proxy to put in front of a real registry.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:0` and forwards every request to the upstream
//! registry, one request per connection (it answers with `Connection: close`, so clients open a
//! new connection for the next request and every request is seen on its own). While it runs, a
//! test adds [`Rule`]s through the proxy handle: for the next `k` requests (or every request)
//! whose path contains a pattern, answer 500/502/503 or 429 with `Retry-After`, reset or cut
//! the connection after `n` bytes of the response body, stall before or inside the response,
//! flip a byte of the body, or throttle either direction. [`FaultProxy::requests`] tells what
//! came, with its `Range` header, whether it carried credentials, and what fault it met.
//!
//! Everything goes through real sockets to the real registry: the bytes a client receives
//! are the registry's own, except for the fault.
//!
//! ```no_run
//! use hpn_testkit::{FaultProxy, Fault, Registry, Rule};
//! # fn main() -> anyhow::Result<()> {
//! let registry = Registry::start()?;
//! let proxy = FaultProxy::start(registry.addr())?;
//! proxy.add(Rule::new("/blobs/sha256:", Fault::CutAfter(1000)).times(1));
//! // ... run a client against proxy.addr() ...
//! assert!(proxy.requests().iter().any(|r| r.range.as_deref() == Some("bytes=1000-")));
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A peer that stops talking is dropped after this long, so a proxy thread never outlives a
/// test by much.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Request and response heads larger than this are refused.
const MAX_HEAD: usize = 64 * 1024;
const CHUNK: usize = 16 * 1024;

/// What to do to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a registry-style JSON error body instead of forwarding.
    /// A request body is not read first: meant for GET and HEAD.
    Status(u16),
    /// Answer `429 Too Many Requests` with `Retry-After: <secs>` instead of forwarding.
    TooManyRequests { retry_after_secs: u64 },
    /// Forward, pass `n` bytes of the response body, then reset the connection (TCP RST, after
    /// a short pause so the client can read what was sent).
    ResetAfter(u64),
    /// Forward, pass exactly `n` bytes of the response body, then close the connection
    /// cleanly: the body ends short of its `Content-Length`.
    CutAfter(u64),
    /// Read the request, send nothing for this long, then close.
    StallBeforeResponse(Duration),
    /// Forward the response head and `after` bytes of the body, then send nothing for
    /// `duration`, then close.
    StallBody { after: u64, duration: Duration },
    /// Forward with the body byte at `offset` inverted.
    Corrupt { offset: u64 },
    /// Forward, the response body at no more than this many bytes a second.
    ThrottleResponse(u64),
    /// Forward, the request body (an upload) at no more than this many bytes a second.
    ThrottleRequest(u64),
}

/// A fault for requests whose path (query excluded) contains `pattern`.
#[derive(Debug, Clone)]
pub struct Rule {
    pattern: String,
    method: Option<String>,
    fault: Fault,
    /// `None`: every matching request.
    remaining: Option<usize>,
}

impl Rule {
    /// Applies to every request whose path contains `pattern`, until limited with [`Rule::times`].
    pub fn new(pattern: &str, fault: Fault) -> Rule {
        Rule { pattern: pattern.to_owned(), method: None, fault, remaining: None }
    }

    /// Only the next `count` matching requests.
    pub fn times(mut self, count: usize) -> Rule {
        self.remaining = Some(count);
        self
    }

    /// Only requests with this method (`GET`, `HEAD`, `PUT`, ...).
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.remaining != Some(0)
            && path.contains(&self.pattern)
            && self.method.as_deref().is_none_or(|wanted| wanted == method)
    }
}

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Whether an `Authorization` header came with it.
    pub authorization: bool,
    /// The fault it met, if any.
    pub fault: Option<Fault>,
    /// The status the client was sent; `None` if it got no response head.
    pub status: Option<u16>,
    /// Response body bytes the client was sent.
    pub body_bytes: u64,
    /// When the request head had arrived, since the proxy started.
    pub at: Duration,
    /// When the proxy was done with it (closed the connection), since the proxy started.
    pub done: Option<Duration>,
}

impl ProxyRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    /// The first byte a `Range: bytes=N-` request asked for.
    pub fn range_start(&self) -> Option<u64> {
        self.range.as_deref()?.trim().strip_prefix("bytes=")?.split('-').next()?.trim().parse().ok()
    }
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<ProxyRequest>>,
    stop: AtomicBool,
    started: Instant,
}

/// The running proxy; dropping it stops it. Cheap to share by reference across threads.
pub struct FaultProxy {
    addr: String,
    shared: Arc<Shared>,
    accept: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("rules", &*lock(&self.shared.rules))
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream` (`127.0.0.1:PORT`), with no rules.
    pub fn start(upstream: &str) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fault proxy")?;
        let addr = listener.local_addr()?.to_string();
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            rules: Mutex::default(),
            log: Mutex::default(),
            stop: AtomicBool::new(false),
            started: Instant::now(),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new().name("fault-proxy".to_owned()).spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accept_shared);
                let _ = thread::Builder::new().name("fault-proxy-conn".to_owned()).spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        })?;
        Ok(FaultProxy { addr, shared, accept: Some(accept) })
    }

    /// `127.0.0.1:PORT`: the registry part of references that should go through the proxy.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `127.0.0.1:PORT/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// Adds a rule after the existing ones; the first matching rule with uses left applies.
    pub fn add(&self, rule: Rule) {
        lock(&self.shared.rules).push(rule);
    }

    /// Removes every rule: from now on everything is forwarded untouched. Requests already
    /// in flight keep their fault.
    pub fn clear(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        lock(&self.shared.log).clone()
    }

    /// Requests whose path contains `pattern`.
    pub fn requests_to(&self, pattern: &str) -> Vec<ProxyRequest> {
        self.requests().into_iter().filter(|r| r.path().contains(pattern)).collect()
    }

    /// Forgets the requests logged so far.
    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A parsed HTTP head and whatever was read past it.
struct Head {
    first_line: String,
    headers: Vec<(String, String)>,
    rest: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The head again, with `Connection: close` instead of any hop-by-hop connection headers.
    fn to_bytes_closing(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.first_line);
        for (name, value) in &self.headers {
            if ["connection", "keep-alive", "proxy-connection"].iter().any(|h| name.eq_ignore_ascii_case(h)) {
                continue;
            }
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

fn read_head(stream: &mut TcpStream) -> io::Result<Option<Head>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break position;
        }
        if buffer.len() > MAX_HEAD {
            return Err(io::Error::other("HTTP head too large"));
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return if buffer.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        buffer.extend_from_slice(&chunk[..read]);
        if !buffer[0].is_ascii_uppercase() {
            // Not HTTP (a TLS ClientHello): answer as an HTTP server does, at once, so a client
            // that tries HTTPS first falls back to plain HTTP without waiting.
            stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")?;
            return Ok(None);
        }
    };
    let text = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let first_line = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head { first_line, headers, rest: buffer[end + 4..].to_vec() }))
}

/// Sleeps up to `duration`, waking early when the proxy stops.
fn pause(shared: &Shared, duration: Duration) {
    let until = Instant::now() + duration;
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

/// Sends bytes no faster than a rate.
struct Pacer {
    rate: Option<u64>,
    start: Instant,
    sent: u64,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Pacer {
        Pacer { rate: rate.filter(|r| *r > 0), start: Instant::now(), sent: 0 }
    }

    /// How much to send next (at most `CHUNK`, less when throttled).
    fn chunk(&self) -> usize {
        match self.rate {
            Some(rate) => (rate / 20).clamp(1, CHUNK as u64) as usize,
            None => CHUNK,
        }
    }

    fn sent(&mut self, shared: &Shared, bytes: usize) {
        self.sent += bytes as u64;
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
            let elapsed = self.start.elapsed();
            if due > elapsed {
                pause(shared, due - elapsed);
            }
        }
    }
}

fn serve(mut client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    client.set_nodelay(true)?;
    let Some(request) = read_head(&mut client)? else { return Ok(()) };
    if shared.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mut parts = request.first_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let path = target.split('?').next().unwrap_or_default().to_owned();

    let fault = {
        let mut rules = lock(&shared.rules);
        rules.iter_mut().find(|rule| rule.matches(&method, &path)).map(|rule| {
            if let Some(remaining) = &mut rule.remaining {
                *remaining -= 1;
            }
            rule.fault.clone()
        })
    };
    let index = {
        let mut log = lock(&shared.log);
        log.push(ProxyRequest {
            method: method.clone(),
            target,
            range: request.header("Range").map(str::to_owned),
            authorization: request.header("Authorization").is_some(),
            fault: fault.clone(),
            status: None,
            body_bytes: 0,
            at: shared.started.elapsed(),
            done: None,
        });
        log.len() - 1
    };
    let record = |status: Option<u16>, body_bytes: Option<u64>| {
        let mut log = lock(&shared.log);
        if let Some(entry) = log.get_mut(index) {
            if status.is_some() {
                entry.status = status;
            }
            if let Some(bytes) = body_bytes {
                entry.body_bytes = bytes;
            }
            entry.done = Some(shared.started.elapsed());
        }
    };

    let result = match fault {
        Some(Fault::Status(code)) => answer(&mut client, code, None).map(|()| record(Some(code), Some(0))),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            answer(&mut client, 429, Some(retry_after_secs)).map(|()| record(Some(429), Some(0)))
        }
        Some(Fault::StallBeforeResponse(duration)) => {
            pause(shared, duration);
            record(None, Some(0));
            Ok(())
        }
        fault => forward(client, request, &method, fault.as_ref(), shared, &record),
    };
    if result.is_err() {
        record(None, None);
    }
    result
}

fn answer(client: &mut TcpStream, status: u16, retry_after: Option<u64>) -> io::Result<()> {
    let (reason, code) = match status {
        429 => ("Too Many Requests", "TOOMANYREQUESTS"),
        500 => ("Internal Server Error", "UNKNOWN"),
        502 => ("Bad Gateway", "UNAVAILABLE"),
        503 => ("Service Unavailable", "UNAVAILABLE"),
        _ => ("Injected Fault", "UNKNOWN"),
    };
    let body = format!(r#"{{"errors":[{{"code":"{code}","message":"injected by the fault proxy"}}]}}"#);
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(seconds) = retry_after {
        head.push_str(&format!("Retry-After: {seconds}\r\n"));
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes())?;
    client.write_all(body.as_bytes())?;
    client.flush()?;
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}

fn forward(
    mut client: TcpStream,
    request: Head,
    method: &str,
    fault: Option<&Fault>,
    shared: &Shared,
    record: &dyn Fn(Option<u16>, Option<u64>),
) -> io::Result<()> {
    let mut upstream = TcpStream::connect(&shared.upstream)?;
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream.set_write_timeout(Some(IO_TIMEOUT))?;
    upstream.set_nodelay(true)?;
    upstream.write_all(&request.to_bytes_closing())?;

    // The request body, if any, is piped as it comes; one request per connection, so
    // everything after the head belongs to it.
    let upload_rate = match fault {
        Some(Fault::ThrottleRequest(rate)) => Some(*rate),
        _ => None,
    };
    let mut to_upstream = upstream.try_clone()?;
    let mut from_client = client.try_clone()?;
    let early = request.rest;
    thread::scope(|scope| -> io::Result<()> {
        scope.spawn(move || {
            let mut pacer = Pacer::new(upload_rate);
            let mut pending = early;
            let mut buffer = vec![0u8; CHUNK];
            loop {
                if pending.is_empty() {
                    let want = pacer.chunk();
                    match from_client.read(&mut buffer[..want]) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => pending.extend_from_slice(&buffer[..read]),
                    }
                }
                let take = pending.len().min(pacer.chunk());
                if to_upstream.write_all(&pending[..take]).is_err() {
                    break;
                }
                pending.drain(..take);
                pacer.sent(shared, take);
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            let _ = to_upstream.shutdown(Shutdown::Write);
        });

        let result = relay_response(&mut client, &mut upstream, method, fault, shared, record);
        // Ends the request pipe: the response is out, so the request is over (a blocked read
        // of the client returns end-of-file).
        let _ = upstream.shutdown(Shutdown::Both);
        let _ = client.shutdown(if result.is_err() { Shutdown::Both } else { Shutdown::Read });
        result
    })
}

fn relay_response(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    method: &str,
    fault: Option<&Fault>,
    shared: &Shared,
    record: &dyn Fn(Option<u16>, Option<u64>),
) -> io::Result<()> {
    let Some(response) = read_head(upstream)? else {
        return Err(io::Error::other("upstream closed without a response"));
    };
    let status: Option<u16> = response.first_line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    client.write_all(&response.to_bytes_closing())?;
    record(status, Some(0));
    let mut sent: u64 = 0;
    if method == "HEAD" {
        client.flush()?;
        let _ = client.shutdown(Shutdown::Write);
        return Ok(());
    }

    let rate = match fault {
        Some(Fault::ThrottleResponse(rate)) => Some(*rate),
        _ => None,
    };
    // The body ends where the fault says, or when the upstream closes (we asked it to).
    let stop_at = match fault {
        Some(Fault::ResetAfter(n) | Fault::CutAfter(n)) => Some(*n),
        Some(Fault::StallBody { after, .. }) => Some(*after),
        _ => None,
    };
    let mut pacer = Pacer::new(rate);
    let mut pending = response.rest;
    let mut buffer = vec![0u8; CHUNK];
    let mut upstream_done = false;
    loop {
        if stop_at.is_some_and(|limit| sent >= limit) {
            break;
        }
        if pending.is_empty() {
            if upstream_done {
                break;
            }
            match upstream.read(&mut buffer) {
                Ok(0) => {
                    upstream_done = true;
                    continue;
                }
                Ok(read) => pending.extend_from_slice(&buffer[..read]),
                Err(error) => return Err(error),
            }
        }
        let mut take = pending.len().min(pacer.chunk());
        if let Some(limit) = stop_at {
            take = take.min((limit - sent) as usize);
        }
        let chunk = &mut pending[..take];
        if let Some(Fault::Corrupt { offset }) = fault
            && (sent..sent + take as u64).contains(offset)
        {
            chunk[(offset - sent) as usize] ^= 0xff;
        }
        client.write_all(chunk)?;
        pending.drain(..take);
        sent += take as u64;
        record(None, Some(sent));
        pacer.sent(shared, take);
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
    client.flush()?;
    match fault {
        Some(Fault::ResetAfter(_)) => {
            // Give the client a moment to read what it was sent: a reset discards what the
            // peer has not read yet. With a zero linger, the close that follows sends RST.
            pause(shared, Duration::from_millis(100));
            socket2::SockRef::from(&*client).set_linger(Some(Duration::ZERO))?;
            return Ok(());
        }
        Some(Fault::StallBody { duration, .. }) => pause(shared, *duration),
        _ => {}
    }
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny upstream that answers every request with `body`, for checking the proxy itself.
    fn upstream(body: Vec<u8>) -> (String, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = thread::spawn(move || {
            for stream in listener.incoming().take(8) {
                let mut stream = stream.unwrap();
                let _ = read_head(&mut stream).unwrap();
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        (addr, handle)
    }

    fn get(addr: &str, path: &str) -> (String, Vec<u8>) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nRange: bytes=5-\r\n\r\n").unwrap();
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        let end = all.windows(4).position(|w| w == b"\r\n\r\n").map_or(all.len(), |p| p + 4);
        (String::from_utf8_lossy(&all[..end]).into_owned(), all[end..].to_vec())
    }

    #[test]
    fn forwards_cuts_corrupts_and_answers_statuses_per_rule() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (addr, _upstream) = upstream(body.clone());
        let proxy = FaultProxy::start(&addr).unwrap();
        proxy.add(Rule::new("/blobs/", Fault::Status(503)).times(1));
        proxy.add(Rule::new("/blobs/", Fault::CutAfter(1000)).times(1));
        proxy.add(Rule::new("/blobs/", Fault::Corrupt { offset: 7 }).times(1));

        let (head, _) = get(proxy.addr(), "/v2/a/blobs/x");
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        let (head, cut) = get(proxy.addr(), "/v2/a/blobs/x");
        assert!(head.contains("Connection: close") && !head.contains("keep-alive"), "{head}");
        assert_eq!(cut, body[..1000]);
        let (_, corrupt) = get(proxy.addr(), "/v2/a/blobs/x");
        assert_eq!(corrupt.len(), body.len());
        assert_eq!(corrupt[7], body[7] ^ 0xff);
        assert_eq!(corrupt[8..], body[8..]);
        let (_, clean) = get(proxy.addr(), "/v2/a/manifests/x");
        assert_eq!(clean, body);

        let log = proxy.requests();
        assert_eq!(log.len(), 4);
        assert_eq!(log[0].status, Some(503));
        assert_eq!(log[1].fault, Some(Fault::CutAfter(1000)));
        assert_eq!(log[1].body_bytes, 1000);
        assert_eq!(log[2].range_start(), Some(5));
        assert_eq!((log[3].fault.as_ref(), log[3].status), (None, Some(200)));
        assert_eq!(proxy.requests_to("/manifests/").len(), 1);
    }

    #[test]
    fn throttles_and_stalls_take_their_time() {
        let body = vec![7u8; 20_000];
        let (addr, _upstream) = upstream(body.clone());
        let proxy = FaultProxy::start(&addr).unwrap();
        proxy.add(Rule::new("/slow", Fault::ThrottleResponse(40_000)).times(1));
        proxy.add(Rule::new("/stall", Fault::StallBody { after: 10, duration: Duration::from_millis(400) }).times(1));
        let started = Instant::now();
        let (_, slow) = get(proxy.addr(), "/slow");
        assert_eq!(slow, body);
        assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
        let started = Instant::now();
        let (_, stalled) = get(proxy.addr(), "/stall");
        assert_eq!(stalled, body[..10]);
        assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    }
}
