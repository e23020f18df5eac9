//! podman with its own storage in a temporary directory, as a second image loader.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::process::run;

/// A podman whose storage (root, runroot, tmpdir, events) lives in a temporary directory, so tests
/// neither see nor touch the machine's images and can run side by side. No daemon: each call is
/// one podman process. Dropping it removes the directory.
#[derive(Debug)]
pub struct Podman {
    dir: TempDir,
}

impl Podman {
    /// Panics if no temporary directory can be created, which no test could recover from.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Podman {
        let dir = tempfile::Builder::new().prefix("hpn-podman-").tempdir().expect("creating podman's temp dir");
        Podman { dir }
    }

    /// The global flags every call gets: vfs works on any filesystem and needs no fuse or kernel
    /// overlay; `--tmpdir` keeps podman's lock/alive files out of /run/libpod, `--events-backend
    /// file` out of journald (absent here), `--cgroup-manager cgroupfs` away from systemd.
    pub fn base_args(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            "--root".into(),
            d.join("root").to_string_lossy().into_owned(),
            "--runroot".into(),
            d.join("run").to_string_lossy().into_owned(),
            "--tmpdir".into(),
            d.join("tmp").to_string_lossy().into_owned(),
            "--storage-driver".into(),
            "vfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
        ]
    }

    /// Runs `podman <base flags> <args>` and returns stdout.
    pub fn podman<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new("podman");
        cmd.args(self.base_args()).args(args);
        // Keep credentials and short-name aliases of whoever runs the tests out of it.
        cmd.env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"));
        run(&mut cmd)
    }

    /// `podman load -i ARCHIVE`; returns podman's stdout (`Loaded image: ...` lines).
    pub fn load(&self, archive: &Path) -> Result<String> {
        self.podman([Path::new("load").as_os_str(), "-i".as_ref(), archive.as_os_str()])
    }

    /// `podman image inspect REF`, the first (only) object of its JSON array.
    pub fn image_inspect(&self, reference: &str) -> Result<serde_json::Value> {
        let out = self.podman(["image", "inspect", reference])?;
        first_object(&out).with_context(|| format!("podman image inspect {reference}"))
    }

    /// `podman images --format json`: one object per image (Id, Names, Digest, ...).
    pub fn images(&self) -> Result<Vec<serde_json::Value>> {
        let out = self.podman(["images", "--format", "json"])?;
        Ok(serde_json::from_str(&out)?)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

pub(crate) fn first_object(json: &str) -> Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(json).context("not JSON")?;
    match v {
        serde_json::Value::Array(mut a) if !a.is_empty() => Ok(a.swap_remove(0)),
        other => bail!("expected a non-empty JSON array, got {other}"),
    }
}
