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
            .env_remove("RUST_LOG");
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
