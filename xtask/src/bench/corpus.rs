//! The images the bench measures: the fixture corpus as the bench sees it (the images, and the
//! blobs `hpn save` has to move), and the images it generates itself for the scaling and large
//! runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hpn_oci::{Digest, Sha256Hasher};
use hpn_testkit::fixtures::{self, PushedFixtures};
use serde_json::json;

use super::MB;
use crate::human_size;

#[derive(Debug, Clone)]
pub(super) struct BenchImage {
    /// Fixture name, e.g. `app-a`.
    pub(super) name: String,
    /// What goes into the image list: `A/fixtures/app-a:1`, or a digest reference.
    pub(super) source: String,
    /// The tag a copy gets in registry B (`bench` for an image that has none).
    pub(super) dest_tag: String,
    /// Whether skopeo can write it as a docker-archive (it cannot for zstd layers: skopeo #1286).
    pub(super) tagged: bool,
}

impl BenchImage {
    /// The image in registry A, as skopeo and `hpn copy` name it.
    pub(super) fn source_url(&self) -> String {
        format!("docker://{}", self.source)
    }

    /// Where a copy of it goes in `registry`.
    pub(super) fn dest_url(&self, registry: &str) -> String {
        format!("docker://{registry}/{}:{}", self.name, self.dest_tag)
    }
}

#[derive(Debug)]
pub(super) struct Corpus {
    pub(super) images: Vec<BenchImage>,
    /// digest → (a repository that has it, size): configs and layers of the linux/amd64 images.
    pub(super) blobs: BTreeMap<String, (String, u64)>,
    /// All blobs of the fixture set, every platform.
    pub(super) set_bytes: u64,
    pub(super) layers: usize,
    pub(super) max_layers: (String, usize),
    pub(super) shared_base: usize,
    pub(super) zstd_images: Vec<String>,
}

impl Corpus {
    pub(super) fn new(pushed: &PushedFixtures, set_bytes: u64) -> Corpus {
        let mut images = Vec::new();
        let mut blobs = BTreeMap::new();
        let mut layer_digests = BTreeSet::new();
        let mut max_layers = (String::new(), 0);
        let mut zstd_images = Vec::new();
        let base_layer = pushed.get("base").map(|b| b.amd64().layers[0].digest.clone());
        let mut shared_base = 0;
        for image in &pushed.images {
            let tagged = !image.tags.is_empty();
            images.push(BenchImage {
                name: image.name.clone(),
                source: image.reference.clone(),
                dest_tag: image.tags.first().cloned().unwrap_or_else(|| "bench".to_owned()),
                tagged,
            });
            let platform = image.amd64();
            blobs.entry(platform.config.digest.clone()).or_insert((image.repository.clone(), platform.config.size));
            for layer in &platform.layers {
                blobs.entry(layer.digest.clone()).or_insert((image.repository.clone(), layer.size));
                layer_digests.insert(layer.digest.clone());
            }
            if platform.layers.len() > max_layers.1 {
                max_layers = (image.name.clone(), platform.layers.len());
            }
            if platform.layers.iter().any(|l| l.compression == fixtures::Compression::Zstd) {
                zstd_images.push(image.name.clone());
            }
            if base_layer.as_ref().is_some_and(|b| platform.layers.iter().any(|l| &l.digest == b)) {
                shared_base += 1;
            }
        }
        Corpus { images, blobs, set_bytes, layers: layer_digests.len(), max_layers, shared_base, zstd_images }
    }

    pub(super) fn unique_bytes(&self) -> u64 {
        self.blobs.values().map(|(_, size)| size).sum()
    }

    pub(super) fn summary(&self) -> String {
        format!(
            "corpus: {} images, {} unique amd64 layers + configs = {} ({:.0} MB); largest image {} with {} layers; \
             base layer shared by {} images",
            self.images.len(),
            self.blobs.len(),
            human_size(self.unique_bytes()),
            self.unique_bytes() as f64 / MB,
            self.max_layers.0,
            self.max_layers.1,
            self.shared_base
        )
    }

    /// The requirements on the corpus, as (requirement, measured, ok).
    pub(super) fn checks(&self) -> Vec<(String, String, bool)> {
        let bytes = self.unique_bytes() as f64 / MB;
        vec![
            ("≥ 5 images".to_owned(), self.images.len().to_string(), self.images.len() >= 5),
            (
                "≥ 300 MB unique compressed (what a linux/amd64 save moves)".to_owned(),
                format!("{bytes:.0} MB"),
                bytes >= 300.0,
            ),
            (
                "shared base layers".to_owned(),
                format!("base layer in {} images", self.shared_base),
                self.shared_base >= 2,
            ),
            (
                "one image ≥ 30 layers".to_owned(),
                format!("{}: {} layers", self.max_layers.0, self.max_layers.1),
                self.max_layers.1 >= 30,
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Generated images: a minimal HTTP/1.1 client for loopback registries, and tar layers.

#[derive(Debug)]
pub(super) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    File(&'a Path),
}

#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Response {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One connection per request (`Connection: close`), plain HTTP: only for our own loopback registries.
pub(super) fn http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Result<Response> {
    // Registries answer with absolute Location URLs; we only ever talk to `addr`.
    let target = match target.strip_prefix("http://") {
        Some(rest) => &rest[rest.find('/').unwrap_or(rest.len())..],
        None => target,
    };
    let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let length = match &body {
        Body::Empty => 0,
        Body::Bytes(b) => b.len() as u64,
        Body::File(p) => fs::metadata(p)?.len(),
    };
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        write!(head, "{k}: {v}\r\n")?;
    }
    if method != "GET" && method != "HEAD" {
        write!(head, "Content-Length: {length}\r\n")?;
    }
    head.push_str("\r\n");
    let mut writer = BufWriter::with_capacity(1 << 20, &stream);
    writer.write_all(head.as_bytes())?;
    match body {
        Body::Empty => {}
        Body::Bytes(b) => writer.write_all(b)?,
        Body::File(p) => {
            io::copy(&mut File::open(p)?, &mut writer)?;
        }
    }
    writer.flush()?;
    drop(writer);
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line {line:?} from {addr}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut body = Vec::new();
    if method != "HEAD" {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response { status, headers, body })
}

pub(super) fn expect(response: &Response, status: u16, what: &str) -> Result<()> {
    if response.status != status {
        bail!("{what}: HTTP {} (wanted {status}): {}", response.status, String::from_utf8_lossy(&response.body).trim());
    }
    Ok(())
}

/// Uploads a blob (monolithic PUT), or mounts it from `from` if given.
pub(super) fn upload_blob(addr: &str, repo: &str, digest: &Digest, body: Body<'_>, from: Option<&str>) -> Result<()> {
    if let Some(from) = from {
        let r = http(addr, "POST", &format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"), &[], Body::Empty)?;
        if r.status == 201 {
            return Ok(());
        }
    }
    let r = http(addr, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], Body::Empty)?;
    expect(&r, 202, "starting an upload")?;
    let location = r.header("Location").ok_or_else(|| anyhow!("upload without a Location"))?.to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = http(
        addr,
        "PUT",
        &format!("{location}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        body,
    )?;
    expect(&r, 201, &format!("uploading {digest} to {repo}"))
}

pub(super) fn put_manifest(addr: &str, repo: &str, tag: &str, bytes: &[u8]) -> Result<()> {
    let r = http(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", OCI_MANIFEST)],
        Body::Bytes(bytes),
    )?;
    expect(&r, 201, &format!("putting manifest {repo}:{tag}"))
}

pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(super) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// splitmix64: fast, seedable filler so every layer is distinct and incompressible.
#[derive(Debug)]
pub(super) struct Filler(pub(super) u64);

impl Filler {
    pub(super) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Writes a tar with one regular file of `size` bytes, whose content `content` produces in
/// pieces; returns the bytes written.
pub(super) fn write_tar_layer(
    out: &mut impl Write,
    name: &str,
    size: u64,
    mut content: impl FnMut(&mut [u8]),
) -> Result<u64> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        content(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let pad = (512 - size % 512) % 512;
    out.write_all(&vec![0u8; pad as usize + 1024])?;
    Ok(512 + size + pad + 1024)
}

/// Config and manifest for an OCI image of uncompressed layers (their digests are their DiffIDs).
pub(super) fn image_documents(label: &str, layers: &[(Digest, u64)]) -> Result<(Vec<u8>, Vec<u8>)> {
    let diff_ids: Vec<String> = layers.iter().map(|(d, _)| d.to_string()).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"org.opencontainers.image.title": label}, "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created": "2024-01-01T00:00:00Z", "created_by": "hpn bench"})).collect::<Vec<_>>(),
    }))?;
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().map(|(d, size)| json!({"mediaType": OCI_LAYER_TAR, "digest": d.to_string(), "size": size})).collect::<Vec<_>>(),
    }))?;
    Ok((config, manifest))
}

/// Hashes what passes through on its way to a file.
pub(super) struct HashingWriter<W: Write> {
    pub(super) inner: W,
    pub(super) hasher: Sha256Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
