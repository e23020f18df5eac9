//! A small HTTP/1.1 server: request heads parsed by `httparse` within a
//! size and time bound, keep-alive, and response bodies written from memory
//! or sent from a file region with `sendfile(2)` (plain TCP) or positioned
//! reads (TLS).
//!
//! A read-only registry never needs a request body: a request that carries
//! one is answered and the connection closed, so no body is ever read.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

use crate::content::{BlobFile, shrunk};

/// Bounds on what one client may cost the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest request head (request line and headers) accepted; a
    /// larger one is answered 431 and the connection closed.
    pub max_head_bytes: usize,
    /// How long a client may take to send a whole request head once its
    /// first byte arrived (slowloris); then 408 and the connection closes.
    pub head_timeout: Duration,
    /// How long an idle keep-alive connection is kept open.
    pub idle_timeout: Duration,
    /// How long a response may make no progress (a client that stopped
    /// reading) before the connection is dropped.
    pub write_timeout: Duration,
    /// Connections served at once; more are answered 429 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// The largest number of header lines accepted in one request head.
const MAX_HEADERS: usize = 64;
/// Read size for the TLS path, and so its buffer per connection.
const CHUNK: usize = 128 * 1024;
/// The most one sendfile call is asked to move; the socket buffer takes less.
const SENDFILE_MAX: usize = 4 * 1024 * 1024;

/// What the application needs of a request head.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestHead {
    pub method: String,
    pub target: String,
    /// `HTTP/1.0` (0) or `HTTP/1.1` (1).
    pub minor_version: u8,
    pub authorization: Option<String>,
    pub range: Option<String>,
    pub if_none_match: Option<String>,
    connection_close: bool,
    connection_keep_alive: bool,
    has_body: bool,
}

impl RequestHead {
    fn keeps_alive(&self) -> bool {
        !self.has_body && !self.connection_close && (self.minor_version >= 1 || self.connection_keep_alive)
    }
}

/// A response body.
#[derive(Debug)]
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of the blob from `start`.
    Blob {
        file: Arc<BlobFile>,
        start: u64,
        len: u64,
    },
}

/// A response; `Content-Length` is the body's length, sent for HEAD too.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Body::Empty }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bytes(mut self, bytes: impl Into<Bytes>) -> Self {
        self.body = Body::Bytes(bytes.into());
        self
    }

    fn content_length(&self) -> u64 {
        match &self.body {
            Body::Empty => 0,
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Blob { len, .. } => *len,
        }
    }
}

/// The connection, plain or TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read(buf).await,
            Stream::Tls(stream) => stream.read(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8], limit: Duration) -> io::Result<()> {
        let write = async {
            match self {
                Stream::Plain(stream) => stream.write_all(bytes).await,
                Stream::Tls(stream) => {
                    stream.write_all(bytes).await?;
                    stream.flush().await
                }
            }
        };
        timeout(limit, write).await.unwrap_or_else(|_| Err(stalled()))
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Plain(stream) => stream.shutdown().await,
            Stream::Tls(stream) => stream.shutdown().await,
        };
    }
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")
}

/// What the connection loop asks of the application.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, head: &RequestHead, peer: SocketAddr) -> impl Future<Output = (Response, Option<String>)> + Send;

    /// Called once per answered request with the user it was made as.
    fn log(&self, head: &RequestHead, peer: SocketAddr, user: Option<&str>, status: u16, bytes: u64, started: Instant);
}

/// Why no request head could be read.
enum HeadError {
    /// The peer closed, went idle too long, or the server is stopping: close quietly.
    Closed,
    TooLarge,
    Malformed,
    TimedOut,
}

/// Serves requests on one connection until the client closes it, an error,
/// a timeout, or `stopping` turns true between requests.
pub(crate) async fn serve_connection<H: Handler>(
    mut stream: Stream,
    peer: SocketAddr,
    handler: Arc<H>,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let head = match read_head(&mut stream, &mut buffer, &limits, &mut stopping).await {
            Ok(head) => head,
            Err(HeadError::Closed) => break,
            Err(error) => {
                let (status, reason) = match error {
                    HeadError::TooLarge => (431, "request head too large"),
                    HeadError::TimedOut => (408, "request head not received in time"),
                    _ => (400, "malformed request"),
                };
                let response = crate::routes::error(status, "UNSUPPORTED", reason);
                let _ = write_response(&mut stream, &response, false, false, &limits).await;
                handler.log(&RequestHead::default(), peer, None, status, 0, Instant::now());
                break;
            }
        };
        let started = Instant::now();
        let (response, user) = handler.handle(&head, peer).await;
        let keep_alive = head.keeps_alive() && !*stopping.borrow();
        let head_only = head.method == "HEAD";
        let sent = write_response(&mut stream, &response, head_only, keep_alive, &limits).await;
        let bytes = if head_only { 0 } else { response.content_length() };
        handler.log(&head, peer, user.as_deref(), response.status, bytes, started);
        if let Err(error) = sent {
            tracing::debug!(%peer, %error, "response not completed");
            return;
        }
        if !keep_alive {
            break;
        }
    }
    stream.shutdown().await;
}

async fn read_head(
    stream: &mut Stream,
    buffer: &mut Vec<u8>,
    limits: &Limits,
    stopping: &mut watch::Receiver<bool>,
) -> Result<RequestHead, HeadError> {
    let mut deadline = None;
    loop {
        if !buffer.is_empty() {
            match parse_head(buffer) {
                Ok(Some((head, consumed))) => {
                    buffer.drain(..consumed);
                    return Ok(head);
                }
                Ok(None) if buffer.len() > limits.max_head_bytes => return Err(HeadError::TooLarge),
                Ok(None) => {}
                Err(error) => return Err(error),
            }
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + limits.head_timeout);
        }
        let filled = buffer.len();
        buffer.resize(filled + 4096, 0);
        let read = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, stream.read(&mut buffer[filled..])).await {
                Ok(read) => read,
                Err(_) => return Err(HeadError::TimedOut),
            },
            None => {
                if *stopping.borrow() {
                    return Err(HeadError::Closed);
                }
                tokio::select! {
                    read = timeout(limits.idle_timeout, stream.read(&mut buffer[filled..])) => {
                        read.unwrap_or(Ok(0))
                    }
                    _ = stopping.changed() => return Err(HeadError::Closed),
                }
            }
        };
        match read {
            Ok(0) | Err(_) => {
                buffer.truncate(filled);
                return Err(if filled == 0 { HeadError::Closed } else { HeadError::Malformed });
            }
            Ok(read) => buffer.truncate(filled + read),
        }
    }
}

/// A complete head and its length, `None` if more bytes are needed.
fn parse_head(buffer: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buffer) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let mut head = RequestHead {
        method: request.method.unwrap_or_default().to_owned(),
        target: request.path.unwrap_or_default().to_owned(),
        minor_version: request.version.unwrap_or(1),
        ..RequestHead::default()
    };
    for header in request.headers.iter() {
        let Ok(value) = std::str::from_utf8(header.value) else { continue };
        let value = value.trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("range") {
            head.range = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("if-none-match") {
            head.if_none_match = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                head.connection_close |= token.eq_ignore_ascii_case("close");
                head.connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            head.has_body |= value != "0";
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.has_body = true;
        }
    }
    Ok(Some((head, consumed)))
}

/// Writes the status line, headers and (unless `head_only`) the body.
async fn write_response(
    stream: &mut Stream,
    response: &Response,
    head_only: bool,
    keep_alive: bool,
    limits: &Limits,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
    for (name, value) in &response.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", response.content_length()));
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    match &response.body {
        Body::Bytes(bytes) if !head_only => {
            // One write for head and a small body: no extra packet, no Nagle delay.
            let mut all = head.into_bytes();
            all.extend_from_slice(bytes);
            stream.write_all(&all, limits.write_timeout).await
        }
        Body::Blob { file, start, len } if !head_only && *len > 0 => {
            stream.write_all(head.as_bytes(), limits.write_timeout).await?;
            match (stream, file.region().is_some()) {
                (Stream::Plain(socket), true) => send_file(socket, file, *start, *len, limits.write_timeout).await,
                (stream, _) => copy_file(stream, file, *start, *len, limits.write_timeout).await,
            }
        }
        _ => stream.write_all(head.as_bytes(), limits.write_timeout).await,
    }
}

/// `len` bytes of the blob from `start`, file to socket in the kernel: the
/// socket is non-blocking, so each call moves what its buffer takes, and a
/// full buffer waits for writability, at most `limit` without progress.
async fn send_file(socket: &TcpStream, file: &BlobFile, start: u64, len: u64, limit: Duration) -> io::Result<()> {
    let (source, base) = file.region().expect("checked by the caller");
    let mut offset = base + start;
    let end = offset + len;
    while offset < end {
        timeout(limit, socket.writable()).await.map_err(|_| stalled())??;
        let want = usize::try_from(end - offset).unwrap_or(usize::MAX).min(SENDFILE_MAX);
        match socket.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::fs::sendfile(socket, source, Some(&mut offset), want).map_err(io::Error::from)
        }) {
            Ok(0) => return Err(shrunk(offset - base, file.size)),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The same through user space, for TLS (the record layer encrypts it) and
/// blobs held in memory: positioned reads on the blocking pool, one chunk
/// buffer per connection.
async fn copy_file(stream: &mut Stream, file: &Arc<BlobFile>, start: u64, len: u64, limit: Duration) -> io::Result<()> {
    let mut buffer = vec![0; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK))];
    let mut position = start;
    let end = start + len;
    while position < end {
        let want = buffer.len().min(usize::try_from(end - position).unwrap_or(usize::MAX));
        let file = Arc::clone(file);
        let (read, returned) = tokio::task::spawn_blocking(move || {
            let read = file.read_at(&mut buffer[..want], position);
            (read, buffer)
        })
        .await
        .map_err(io::Error::other)?;
        buffer = returned;
        let read = read?;
        stream.write_all(&buffer[..read], limit).await?;
        position += read as u64;
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn heads_are_parsed_with_what_the_registry_needs() {
        let text = "GET /v2/a/blobs/x HTTP/1.1\r\nHost: h\r\nRange: bytes=1-2\r\nAuthorization: Basic eA==\r\n\r\nGET";
        let Ok(Some((head, consumed))) = parse(text) else { panic!("not parsed") };
        assert_eq!(consumed, text.len() - 3, "the next pipelined request stays in the buffer");
        assert_eq!((head.method.as_str(), head.target.as_str()), ("GET", "/v2/a/blobs/x"));
        assert_eq!(head.range.as_deref(), Some("bytes=1-2"));
        assert!(head.keeps_alive());
        assert!(matches!(parse("GET /v2/ HTTP/1.1\r\nHost: h\r\n"), Ok(None)));
        assert!(matches!(parse("\u{1}\u{2} nonsense\r\n\r\n"), Err(HeadError::Malformed)));
        let Ok(Some((head, _))) = parse("PUT /v2/a HTTP/1.1\r\nContent-Length: 5\r\n\r\n") else { panic!() };
        assert!(!head.keeps_alive(), "a request with a body closes the connection");
        let Ok(Some((head, _))) = parse("GET /v2/ HTTP/1.0\r\n\r\n") else { panic!() };
        assert!(!head.keeps_alive());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert!(matches!(parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(HeadError::TooLarge)));
    }
}
