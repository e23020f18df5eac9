//! Running the real `hpn` binary against real peers, in a scratch directory
//! with its own HOME so the machine's configs cannot leak into a test.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hpn_testkit::Registry;
use hpn_testkit::fixtures::{self, PushedFixtures, Scale};

/// A registry seeded with the small fixture set.
pub struct Seeded {
    pub registry: Registry,
    pub fixtures: PushedFixtures,
    _set: fixtures::FixtureSet,
}

pub fn seeded_registry() -> Seeded {
    let registry = Registry::start().expect("start the distribution registry");
    let set = fixtures::build(Scale::Small).expect("build fixtures");
    let fixtures = fixtures::push(&set, registry.addr()).expect("push fixtures");
    Seeded { registry, fixtures, _set: set }
}

/// A scratch working directory, HOME and store for one test's hpn runs.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "hpn failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{}", self.stdout))
    }
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hpn"));
        command
            .current_dir(self.path())
            .env("HOME", self.path().join("home"))
            .env("HPN_STORE", self.store())
            .env_remove("HPN_CONFIG")
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("RUST_LOG")
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    pub fn hpn<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.hpn_with_env(args, &[])
    }

    pub fn hpn_with_env<I, S>(&self, args: I, env: &[(&str, &str)]) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = self.command();
        command.args(args).envs(env.iter().copied());
        Run::from(command.output().expect("run hpn"))
    }
}

/// sha256 of a file's content, as `sha256:<hex>`.
pub fn digest_of(bytes: &[u8]) -> String {
    hpn_oci::Digest::of(bytes).to_string()
}

/// One entry of an archive, read with the system's tar (an independent reader).
pub fn tar_entry(archive: &Path, name: &str) -> Vec<u8> {
    let output = Command::new("tar").arg("-xOf").arg(archive).arg(name).output().expect("run tar");
    assert!(
        output.status.success(),
        "tar -xOf {} {name}: {}",
        archive.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

pub fn tar_list(archive: &Path) -> Vec<String> {
    let output = Command::new("tar").arg("-tf").arg(archive).output().expect("run tar");
    assert!(output.status.success(), "tar -tf {}", archive.display());
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

/// How many times the registry served GET for this blob.
pub fn blob_gets(registry: &Registry, digest: &str) -> usize {
    registry
        .access_log()
        .iter()
        .filter(|entry| entry.method == "GET" && entry.path.ends_with(&format!("/blobs/{digest}")))
        .count()
}

/// How many uploads of each blob the registry completed (`PUT …/blobs/uploads/…?digest=`
/// answered 201), by digest; mounts are not uploads.
pub fn blob_uploads(registry: &Registry) -> std::collections::BTreeMap<String, usize> {
    let mut uploads = std::collections::BTreeMap::new();
    for entry in registry.access_log() {
        if entry.method == "PUT" && entry.status == 201 && entry.path.contains("/blobs/uploads/") {
            let query = entry.path.split("digest=").nth(1).unwrap_or_default();
            let digest = query.split('&').next().unwrap_or_default().replace("%3A", ":").replace("%3a", ":");
            *uploads.entry(digest).or_default() += 1;
        }
    }
    uploads
}

// ---- Faults, interruptions and shared stores -------------------------------------------------

/// The small fixture set in a real registry, reached through a [`hpn_testkit::FaultProxy`]:
/// references from [`Proxied::reference`] name the proxy, so every request hpn makes can be
/// faulted and is logged.
pub struct Proxied {
    pub proxy: hpn_testkit::FaultProxy,
    pub seeded: Seeded,
}

/// The fixtures `names` in a registry of the test's own, behind a fault proxy of its own.
pub fn proxied_registry(names: &[&str]) -> Proxied {
    let seeded = seeded_registry_with(names);
    let proxy = hpn_testkit::FaultProxy::start(seeded.registry.addr()).expect("start the fault proxy");
    Proxied { proxy, seeded }
}

/// A registry seeded with only the fixture images `names`: every upload costs the registry
/// disk syncs, so a test seeds what it uses rather than the whole set.
pub fn seeded_registry_with(names: &[&str]) -> Seeded {
    let registry = Registry::start().expect("start the distribution registry");
    let set = fixtures::build(Scale::Small).expect("build fixtures");
    let fixtures = fixtures::push_images_to(&set, &registry, names).expect("push fixtures");
    Seeded { registry, fixtures, _set: set }
}

impl Proxied {
    pub fn image(&self, name: &str) -> &fixtures::PushedImage {
        self.seeded.fixtures.image(name)
    }

    /// The fixture `name`'s reference, with the proxy as its registry.
    pub fn reference(&self, name: &str) -> String {
        self.via_proxy(&self.image(name).reference)
    }

    /// `reference` (naming the registry) rewritten to name the proxy.
    pub fn via_proxy(&self, reference: &str) -> String {
        let rest = reference.strip_prefix(self.seeded.registry.addr()).expect("a reference to the seeded registry");
        format!("{}{rest}", self.proxy.addr())
    }

    /// Every fixture image's reference through the proxy, one a line.
    pub fn image_list(&self) -> String {
        self.seeded.fixtures.images.iter().map(|image| format!("{}\n", self.via_proxy(&image.reference))).collect()
    }
}

/// `/blobs/sha256:<hex>`: the path pattern of one blob, for fault rules and log filters.
pub fn blob_path(digest: &str) -> String {
    format!("/blobs/{digest}")
}

/// Names in the store that are neither what an OCI layout holds nor a committed blob: temp
/// files of unfinished writes. Empty for a store that is at rest.
pub fn store_leftovers(store: &Path) -> Vec<String> {
    let mut leftovers = Vec::new();
    let records = [".hpn-verified", ".hpn-uncompressed"];
    let known = ["oci-layout", "index.json", "index.json.lock", "store.lock", "blobs", records[0], records[1]];
    // Verified-stat and uncompressed-copy records are named by their blob; anything else there
    // is a leftover temp file.
    for dir in records {
        if let Ok(entries) = std::fs::read_dir(store.join(dir)) {
            for entry in entries {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                if !is_hex_digest(&name) {
                    leftovers.push(format!("{dir}/{name}"));
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(store) {
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !known.contains(&name.as_str()) {
                leftovers.push(name);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(store.join("blobs")) {
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name != "sha256" {
                leftovers.push(format!("blobs/{name}"));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(store.join("blobs/sha256")) {
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !is_hex_digest(&name) {
                leftovers.push(format!("blobs/sha256/{name}"));
            }
        }
    }
    leftovers
}

pub fn is_hex_digest(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The committed blobs of a store (`sha256:<hex>`), each checked to hash to its name: nothing
/// partial may ever be visible under a final name, whatever happened to the run that wrote it.
#[track_caller]
pub fn committed_blobs(store: &Path) -> Vec<String> {
    let mut digests = Vec::new();
    let Ok(entries) = std::fs::read_dir(store.join("blobs/sha256")) else { return digests };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_hex_digest(&name) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        let digest = format!("sha256:{name}");
        assert_eq!(digest_of(&bytes), digest, "{} holds other bytes than its name says", entry.path().display());
        digests.push(digest);
    }
    digests.sort();
    digests
}

/// Files in `dir` whose name marks an unfinished archive (`.<name>.hpn-tmp-...`).
pub fn archive_leftovers(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".hpn-tmp-"))
        .collect()
}

impl Workspace {
    /// `hpn store verify` must pass; returns its output.
    #[track_caller]
    pub fn assert_store_verifies(&self) -> Run {
        let run = self.hpn(["store", "verify"]);
        run.assert_ok();
        run
    }

    /// The refs `hpn store ls` lists.
    pub fn store_refs(&self) -> Vec<String> {
        let run = self.hpn(["store", "ls"]);
        run.assert_ok();
        run.stdout.lines().filter_map(|line| line.split('\t').next()).map(str::to_owned).collect()
    }

    /// Starts hpn without waiting, output captured.
    pub fn spawn<I, S>(&self, args: I, env: &[(&str, &str)]) -> std::process::Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = self.command();
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("start hpn")
    }
}

/// Waits for a child started by [`Workspace::spawn`], failing the test (and killing it) if it
/// takes longer than `limit`. Its output is drained meanwhile, so a chatty child cannot block
/// on a full pipe.
#[track_caller]
pub fn wait_with_limit(mut child: std::process::Child, limit: std::time::Duration) -> Run {
    use std::io::Read as _;
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for hpn") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let run = Run {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(status.is_some(), "hpn took more than {limit:?}\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    run
}

/// An archive's entries by name: the header fields a loader sees, and the content. Two archives
/// with equal entries are the same archive whatever order the entries are in.
pub fn archive_entries(archive: &Path) -> std::collections::BTreeMap<String, (String, Vec<u8>)> {
    use std::io::Read as _;
    let file = std::fs::File::open(archive).unwrap_or_else(|e| panic!("open {}: {e}", archive.display()));
    let mut reader = tar::Archive::new(file);
    let mut entries = std::collections::BTreeMap::new();
    for entry in reader.entries().expect("a tar archive") {
        let mut entry = entry.expect("a tar entry");
        let header = entry.header();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let meta = format!(
            "type={:?} mode={:o} uid={} gid={} mtime={} size={}",
            header.entry_type(),
            header.mode().unwrap_or(0),
            header.uid().unwrap_or(0),
            header.gid().unwrap_or(0),
            header.mtime().unwrap_or(0),
            header.size().unwrap_or(0),
        );
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("an entry's content");
        assert!(entries.insert(name.clone(), (meta, content)).is_none(), "{name} twice in {}", archive.display());
    }
    entries
}

impl Proxied {
    /// The references of the fixtures `names` through the proxy, one a line.
    pub fn list_of(&self, names: &[&str]) -> String {
        names.iter().map(|name| format!("{}\n", self.reference(name))).collect()
    }
}

pub mod fixture_server;
pub mod served;

/// An auth.json (`REGISTRY_AUTH_FILE`) with `user:password` for `registry`.
pub fn auth_file(work: &Workspace, registry: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    work.file("auth.json", &format!(r#"{{"auths":{{"{registry}":{{"auth":"{token}"}}}}}}"#))
}
