//! A minimal HTTP/1.1 client over `std::net`, one connection per request, and the two registry
//! calls that fill a registry: uploading a blob and putting a manifest.
//!
//! Fixtures (and the bench's generated images) are pushed with this rather than with hpn's
//! registry crate (the thing under test) or reqwest's blocking client (its feature would be
//! unified into every workspace build of reqwest). It only speaks to loopback registries, so
//! plain HTTP and `Connection: close` are enough.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use base64::Engine as _;

/// Generous, so a bench-sized blob on a loaded machine is not cut off, yet a hung peer still
/// fails the test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// What a request sends.
#[derive(Debug)]
pub enum Body<'a> {
    /// Nothing.
    Empty,
    /// These bytes.
    Bytes(&'a [u8]),
    /// The file's content, streamed (for blobs too large to hold in memory).
    File(&'a Path),
}

/// A response, its body read to the end (not for a HEAD, a 204 or a 304).
#[derive(Debug)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header, `(name, value)`, in the order they came.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body as text, for error messages.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Talks to one registry at `127.0.0.1:PORT`, with HTTP Basic credentials or none.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    authorization: Option<String>,
}

impl Client {
    /// A client of the registry at `addr` (`host:port`), sending `basic` (user, password) if given.
    pub fn new(addr: &str, basic: Option<(&str, &str)>) -> Self {
        let authorization = basic.map(|(user, password)| basic_authorization(user, password));
        Client { addr: addr.to_owned(), authorization }
    }

    /// This client sending `value` as its `Authorization` header instead, e.g. a
    /// `Bearer <token>` for a token-auth registry.
    pub fn with_authorization(mut self, value: &str) -> Self {
        self.authorization = Some(value.to_owned());
        self
    }

    /// Sends one request and reads the whole response. `target` is a path with query, or an
    /// absolute `http://host/...` URL as registries put in `Location`; the host part of such a
    /// URL is ignored because we only talk to `addr`.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> io::Result<Response> {
        let path = strip_origin(target);
        let mut stream = TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;

        let length = match &body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File(p) => std::fs::metadata(p)?.len(),
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if let Some(auth) = &self.authorization {
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" && method != "HEAD" || length > 0 {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        match body {
            Body::Empty => {}
            Body::Bytes(b) => stream.write_all(b)?,
            Body::File(p) => {
                let copied = io::copy(&mut File::open(p)?, &mut stream)?;
                if copied != length {
                    return Err(io::Error::other(format!("{} changed while it was sent", p.display())));
                }
            }
        }
        stream.flush()?;
        read_response(BufReader::new(stream), method == "HEAD")
    }

    /// Uploads blob `digest` into `repo`: mounted from `mount_from` if that repository has it,
    /// else with a monolithic PUT of `body`. The registry must agree on the digest.
    pub fn upload_blob(&self, repo: &str, digest: &str, body: Body<'_>, mount_from: Option<&str>) -> Result<()> {
        let start = match mount_from {
            Some(from) => {
                let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
                let r = self.request("POST", &path, &[], Body::Empty)?;
                if r.status == 201 {
                    return Ok(());
                }
                // Not mounted: the registry opened an upload session instead.
                r
            }
            None => self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], Body::Empty)?,
        };
        expect(&start, 202, "starting an upload")?;
        let location = start.header("Location").ok_or_else(|| anyhow!("upload session without a Location"))?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self.request(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            body,
        )?;
        expect(&put, 201, &format!("uploading {digest} to {repo}"))?;
        check_digest(&put, digest)
    }

    /// Puts manifest `bytes` (of `media_type`, with digest `digest`) as `repo:reference`.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<()> {
        let r = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            Body::Bytes(bytes),
        )?;
        expect(&r, 201, &format!("putting manifest {repo}:{reference}"))?;
        check_digest(&r, digest)
    }
}

/// The `Authorization` header value of HTTP Basic auth for `user:password`.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn expect(r: &Response, status: u16, what: &str) -> Result<()> {
    if r.status != status {
        bail!("{what}: HTTP {} (wanted {status}): {}", r.status, r.body_text().trim());
    }
    Ok(())
}

fn check_digest(r: &Response, digest: &str) -> Result<()> {
    match r.header("Docker-Content-Digest") {
        Some(d) if d != digest => bail!("registry computed {d}, we sent {digest}"),
        _ => Ok(()),
    }
}

fn strip_origin(target: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    target
}

fn read_response(mut r: impl BufRead, head_only: bool) -> io::Result<Response> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad HTTP status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut resp = Response { status, headers, body: Vec::new() };
    if head_only || status == 204 || status == 304 {
        return Ok(resp);
    }
    let chunked = resp.header("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size_hex = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = resp.header("Content-Length").and_then(|v| v.parse::<u64>().ok()) {
        r.take(len).read_to_end(&mut resp.body)?;
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_scheme_and_host_from_locations() {
        assert_eq!(
            strip_origin("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=1"),
            "/v2/a/blobs/uploads/x?_state=1"
        );
        assert_eq!(strip_origin("/v2/a"), "/v2/a");
        assert_eq!(strip_origin("http://h"), "/");
    }

    #[test]
    fn reads_chunked_and_sized_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = read_response(&raw[..], false).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));

        let raw = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\nDocker-Content-Digest: sha256:ab\r\n\r\n{}trailing";
        let r = read_response(&raw[..], false).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        assert_eq!(r.header("docker-content-digest"), Some("sha256:ab"));
    }
}
