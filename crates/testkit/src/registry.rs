//! The CNCF distribution registry (`docker-registry` from Debian), on loopback, one per test.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hpn_oci::{Digest, RawManifest, Reference};
use tempfile::TempDir;

use crate::TokenSigner;
use crate::http::{Body, Client};
use crate::process::{log_tail, terminate, wait_ready};
use crate::tls::Issued;

/// Media types a manifest GET/HEAD accepts, so the registry never converts or refuses one.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `docker-registry serve` with filesystem storage in a temporary directory. Dropping it
/// stops the process and removes the directory.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: String,
    credentials: Option<(String, String)>,
    /// Whether it serves HTTPS.
    tls: bool,
    log: PathBuf,
    // Last, so it is removed after the process is gone.
    dir: TempDir,
}

/// Options for [`Registry`]; [`Registry::start`] and [`Registry::start_with_htpasswd`] cover the
/// common cases.
#[derive(Debug, Default, Clone)]
pub struct RegistryBuilder {
    port: Option<u16>,
    htpasswd: Option<(String, String)>,
    token: Option<TokenAuth>,
    /// Manifest deletes refused (405 UNSUPPORTED), distribution's default.
    delete_disabled: bool,
    tls: Option<Issued>,
    client_ca: Option<PathBuf>,
    storage: Option<PathBuf>,
}

/// What the registry's `auth: token` section needs.
#[derive(Debug, Clone)]
struct TokenAuth {
    realm: String,
    cert_pem: String,
}

impl RegistryBuilder {
    /// Listen on this port instead of a free one chosen at start.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Require HTTP Basic auth with this one user (an htpasswd file with a bcrypt entry).
    /// Replaces [`Self::token_auth`].
    pub fn htpasswd(mut self, user: &str, password: &str) -> Self {
        self.htpasswd = Some((user.to_owned(), password.to_owned()));
        self.token = None;
        self
    }

    /// Require bearer tokens signed by `signer`, for [`TokenSigner::SERVICE`] from
    /// [`TokenSigner::ISSUER`]; the registry's challenges send clients to `realm` (an
    /// `http://` URL the test serves) for them. Replaces [`Self::htpasswd`].
    pub fn token_auth(mut self, realm: &str, signer: &TokenSigner) -> Self {
        self.token = Some(TokenAuth { realm: realm.to_owned(), cert_pem: signer.cert_pem().to_owned() });
        self.htpasswd = None;
        self
    }

    /// Refuse manifest deletes, as distribution does unless configured to allow them (the
    /// registry is otherwise started with `storage.delete.enabled: true`).
    pub fn delete_disabled(mut self) -> Self {
        self.delete_disabled = true;
        self
    }

    /// Serve HTTPS with this certificate and key (from [`TestCa::issue_server`](crate::TestCa)),
    /// instead of plain HTTP. [`Registry`]'s own helpers (`manifest`, `has_blob`, ...) speak
    /// plain HTTP and do not work on it: seed a plain registry and share its storage
    /// ([`Self::storage`]).
    pub fn tls(mut self, server: &Issued) -> Self {
        self.tls = Some(server.clone());
        self
    }

    /// With [`Self::tls`], require a client certificate issued by the CA in `ca_cert`
    /// (distribution's `http.tls.clientcas`).
    pub fn client_ca(mut self, ca_cert: &Path) -> Self {
        self.client_ca = Some(ca_cert.to_owned());
        self
    }

    /// Serve the filesystem storage at `root` (another registry's [`Registry::storage_dir`],
    /// which must outlive this one) instead of an empty one of its own.
    pub fn storage(mut self, root: &Path) -> Self {
        self.storage = Some(root.to_owned());
        self
    }

    pub fn start(self) -> Result<Registry> {
        // A free port found by binding :0 can be taken by a parallel test before the registry binds
        // it; that shows up as an early exit, and a new port is the cure.
        let attempts = if self.port.is_some() { 1 } else { 5 };
        let mut last_err = None;
        for _ in 0..attempts {
            let port = match self.port {
                Some(p) => p,
                None => free_port()?,
            };
            match self.start_on(port) {
                Ok(r) => return Ok(r),
                Err(e) if format!("{e:#}").contains("address already in use") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn start_on(&self, port: u16) -> Result<Registry> {
        let dir =
            tempfile::Builder::new().prefix("hpn-registry-").tempdir().context("creating the registry's temp dir")?;
        let addr = format!("127.0.0.1:{port}");
        let data = dir.path().join("data");
        let config = dir.path().join("config.yml");
        let log = dir.path().join("registry.log");
        fs::create_dir(&data)?;

        let mut yaml = String::new();
        writeln!(yaml, "version: 0.1")?;
        writeln!(yaml, "log:\n  level: info\n  formatter: text")?;
        writeln!(yaml, "storage:")?;
        writeln!(yaml, "  filesystem:\n    rootdirectory: {}", yaml_str(self.storage.as_deref().unwrap_or(&data)))?;
        writeln!(yaml, "  delete:\n    enabled: {}", !self.delete_disabled)?;
        // Background purging of upload dirs would race with tests that look at storage.
        writeln!(yaml, "  maintenance:\n    uploadpurging:\n      enabled: false")?;
        writeln!(yaml, "http:\n  addr: {addr}")?;
        // Without a fixed secret the registry logs a warning at every start.
        writeln!(yaml, "  secret: hpn-testkit-not-secret")?;
        if let Some(tls) = &self.tls {
            writeln!(yaml, "  tls:\n    certificate: {}\n    key: {}", yaml_str(&tls.cert), yaml_str(&tls.key))?;
            if let Some(ca) = &self.client_ca {
                writeln!(yaml, "    clientcas:\n      - {}", yaml_str(ca))?;
            }
        }
        if let Some((user, password)) = &self.htpasswd {
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, htpasswd_line(user, password)?)?;
            writeln!(yaml, "auth:\n  htpasswd:\n    realm: hpn-testkit\n    path: {}", yaml_str(&htpasswd))?;
        }
        if let Some(token) = &self.token {
            let bundle = dir.path().join("token-cert.pem");
            fs::write(&bundle, &token.cert_pem)?;
            writeln!(yaml, "auth:\n  token:\n    realm: {}", serde_json::to_string(&token.realm)?)?;
            writeln!(yaml, "    service: {}\n    issuer: {}", TokenSigner::SERVICE, TokenSigner::ISSUER)?;
            writeln!(yaml, "    rootcertbundle: {}", yaml_str(&bundle))?;
        }
        fs::write(&config, yaml)?;

        let out = File::create(&log)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot run docker-registry (Debian package docker-registry)")?;
        let tls = self.tls.is_some();
        let mut registry = Registry { child, addr, credentials: self.htpasswd.clone(), tls, log, dir };
        let client = registry.client();
        let log = registry.log.clone();
        // Our own log line first: if a parallel test's registry got this port, it would answer
        // /v2/ while ours had failed to bind. A token-auth registry answers /v2/ with its
        // challenge, and we hold no token.
        let listening = format!("listening on {}", registry.addr);
        // A TLS registry answers a plain-HTTP request with 400 ("an HTTP request to an HTTPS
        // server"), which says it listens just as well.
        let ready = |status: u16| status == 200 || status == 401 || (tls && status == 400);
        wait_ready("docker-registry", &mut registry.child, &log, START_TIMEOUT, || {
            fs::read_to_string(&log).is_ok_and(|l| l.contains(&listening))
                && client.request("GET", "/v2/", &[], Body::Empty).is_ok_and(|r| ready(r.status))
        })?;
        Ok(registry)
    }
}

impl Registry {
    /// A registry on a free loopback port, no auth.
    pub fn start() -> Result<Registry> {
        RegistryBuilder::default().start()
    }

    /// A registry that wants HTTP Basic credentials `user:password` for everything under /v2/.
    pub fn start_with_htpasswd(user: &str, password: &str) -> Result<Registry> {
        RegistryBuilder::default().htpasswd(user, password).start()
    }

    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a registry started with
    /// [`RegistryBuilder::tls`].
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// `127.0.0.1:PORT/<name>`, e.g. `reference("fixtures/app-a:1")`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// [`Self::reference`] parsed, for the APIs of hpn's crates. Panics if `name` does not make
    /// a valid reference: a test wrote it.
    pub fn oci_reference(&self, name: &str) -> Reference {
        let text = self.reference(name);
        text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// The user and password given to [`Registry::start_with_htpasswd`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's filesystem storage root (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far: the registry's own lines and its access log.
    pub fn log(&self) -> String {
        fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The last `lines` lines of the log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Every request the registry has answered so far, oldest first. Lets a test count, say, how
    /// often a blob was fetched.
    pub fn access_log(&self) -> Vec<AccessLogEntry> {
        self.log().lines().filter_map(AccessLogEntry::parse).collect()
    }

    /// Whether `repository` holds blob `digest` (a HEAD, with this registry's credentials).
    pub fn has_blob(&self, repository: &str, digest: &str) -> Result<bool> {
        let r = self.client().request("HEAD", &format!("/v2/{repository}/blobs/{digest}"), &[], Body::Empty)?;
        match r.status {
            200 => Ok(true),
            404 => Ok(false),
            s => bail!("HEAD blob {repository}@{digest}: HTTP {s}"),
        }
    }

    /// The manifest or index that `repository:reference` (a tag or digest) names, as the exact
    /// bytes the registry serves, with its Content-Type. Fails if the registry's
    /// `Docker-Content-Digest` is not the digest of those bytes.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<RawManifest> {
        let r = self.client().request(
            "GET",
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("Accept", MANIFEST_ACCEPT)],
            Body::Empty,
        )?;
        if r.status != 200 {
            bail!("GET manifest {repository}:{reference}: HTTP {}: {}", r.status, r.body_text());
        }
        let digest = Digest::of(&r.body);
        if let Some(claimed) = r.header("Docker-Content-Digest")
            && claimed != digest.to_string()
        {
            bail!("GET manifest {repository}:{reference}: the registry says {claimed}, the bytes are {digest}");
        }
        let media_type = r.header("Content-Type").unwrap_or_default().to_owned();
        Ok(RawManifest { bytes: r.body.into(), media_type, digest })
    }

    /// Blob `digest` of `repository`, whole (a small one: a signature payload, an SBOM).
    pub fn blob(&self, repository: &str, digest: &str) -> Result<Vec<u8>> {
        let r = self.client().request("GET", &format!("/v2/{repository}/blobs/{digest}"), &[], Body::Empty)?;
        if r.status != 200 {
            bail!("GET blob {repository}@{digest}: HTTP {}: {}", r.status, r.body_text());
        }
        Ok(r.body)
    }

    /// The tags of `repository`, as the registry lists them.
    pub fn tags(&self, repository: &str) -> Result<Vec<String>> {
        let r = self.client().request("GET", &format!("/v2/{repository}/tags/list"), &[], Body::Empty)?;
        if r.status != 200 {
            bail!("GET tags of {repository}: HTTP {}: {}", r.status, r.body_text());
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        Ok(v["tags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    pub(crate) fn client(&self) -> Client {
        Client::new(&self.addr, self.credentials())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// One line of the registry's combined-format access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    pub method: String,
    /// Path and query, e.g. `/v2/fixtures/base/blobs/sha256:...`.
    pub path: String,
    pub status: u16,
    pub user_agent: String,
}

impl AccessLogEntry {
    // 127.0.0.1 - - [23/Nov/2026:18:04:28 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
    fn parse(line: &str) -> Option<AccessLogEntry> {
        let (_, rest) = line.split_once("] \"")?;
        let (request, rest) = rest.split_once("\" ")?;
        let mut req = request.split(' ');
        let method = req.next()?.to_owned();
        let path = req.next()?.to_owned();
        if !req.next()?.starts_with("HTTP/") {
            return None;
        }
        let status = rest.split(' ').next()?.parse().ok()?;
        let user_agent = rest.rsplit_once(" \"").map(|(_, ua)| ua.trim_end_matches('"').to_owned()).unwrap_or_default();
        Some(AccessLogEntry { method, path, status, user_agent })
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn yaml_str(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).unwrap_or_default()
}

/// An htpasswd line the registry (Go's bcrypt) accepts. Cost 4, the minimum, keeps each request's
/// password check cheap; the salt comes from the user name so the file is the same every run.
pub fn htpasswd_line(user: &str, password: &str) -> Result<String> {
    if user.contains(':') || user.contains('\n') {
        bail!("htpasswd user {user:?} must not contain ':' or a newline");
    }
    let mut salt = [0u8; 16];
    for (i, b) in format!("hpn-testkit-salt-{user}").bytes().enumerate() {
        salt[i % 16] ^= b;
    }
    let hash = bcrypt::hash_with_salt(password, 4, salt)
        .map_err(|e| anyhow::anyhow!("bcrypt: {e}"))?
        .format_for_version(bcrypt::Version::TwoY);
    Ok(format!("{user}:{hash}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_access_log_lines() {
        let line = r#"127.0.0.1 - alice [23/Nov/2026:18:04:28 +0000] "HEAD /v2/fixtures/base/blobs/sha256:ab HTTP/1.1" 404 157 "" "hpn/0.1 (x)""#;
        let e = AccessLogEntry::parse(line).unwrap();
        assert_eq!(e.method, "HEAD");
        assert_eq!(e.path, "/v2/fixtures/base/blobs/sha256:ab");
        assert_eq!(e.status, 404);
        assert_eq!(e.user_agent, "hpn/0.1 (x)");
        assert!(AccessLogEntry::parse(r#"time="2026" level=info msg="listening on 127.0.0.1:1""#).is_none());
    }

    #[test]
    fn htpasswd_entry_verifies() {
        let line = htpasswd_line("alice", "s3cret").unwrap();
        let hash = line.trim_end().strip_prefix("alice:").unwrap();
        assert!(hash.starts_with("$2y$04$"));
        assert!(bcrypt::verify("s3cret", hash).unwrap());
        assert!(!bcrypt::verify("wrong", hash).unwrap());
    }
}
