//! A private dockerd (Debian's docker.io, 20.10) as the reference image loader.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::podman::first_object;
use crate::process::{is_root, log_tail, run, terminate, wait_ready};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(20);

/// A dockerd with its own data root, exec root, socket and containerd, in a temporary directory.
/// Needs root. Dropping it stops the daemon (SIGTERM, so it also stops its containerd) and removes
/// the directory, vfs layer copies included.
#[derive(Debug)]
pub struct Dockerd {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    // Last, so it is removed after the daemon is gone.
    dir: TempDir,
}

impl Dockerd {
    pub fn start() -> Result<Dockerd> {
        Self::start_with_config(&serde_json::json!({}))
    }

    /// A dockerd that asks `mirror` (`http://127.0.0.1:PORT`) for docker.io images first, as
    /// daemon.json's `registry-mirrors` says; it falls back to docker.io, which tests here cannot
    /// reach, so a pull that works came from the mirror.
    pub fn start_with_mirror(mirror: &str) -> Result<Dockerd> {
        Self::start_with_config(&serde_json::json!({"registry-mirrors": [mirror]}))
    }

    /// A dockerd with this daemon.json (on top of the flags every test daemon gets).
    pub fn start_with_config(daemon_json: &serde_json::Value) -> Result<Dockerd> {
        if !is_root() {
            bail!("dockerd needs root; these tests run as root in CI");
        }
        // Unix socket paths are limited to 108 bytes and containerd puts its sockets a few levels
        // below the exec root, so keep the directory short whatever TMPDIR says.
        let base = std::env::temp_dir();
        let base = if base.as_os_str().len() <= 24 { base } else { PathBuf::from("/tmp") };
        let dir =
            tempfile::Builder::new().prefix("hpn-dockerd-").tempdir_in(base).context("creating dockerd's temp dir")?;
        let d = dir.path();
        let socket = d.join("docker.sock");
        let log = d.join("dockerd.log");
        // A config file of our own: /etc/docker/daemon.json on a developer's machine may set
        // hosts, mirrors or a storage driver that conflict with the flags below.
        fs::write(d.join("daemon.json"), daemon_json.to_string())?;
        // If the machine runs a system containerd, dockerd uses it instead of starting its own;
        // namespaces of our own keep parallel daemons' state apart there.
        let ns = format!("hpn-{}", d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());

        let out = File::create(&log)?;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--storage-driver=vfs")
            .arg("--iptables=false")
            .arg("--ip6tables=false")
            .arg("--bridge=none")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--containerd-namespace")
            .arg(&ns)
            .arg("--containerd-plugins-namespace")
            .arg(format!("{ns}-plugins"))
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn().context("cannot run dockerd (Debian package docker.io)")?;
        let mut daemon = Dockerd { child, socket, log, dir };

        let log = daemon.log.clone();
        let host = daemon.host();
        let client_config = daemon.dir.path().join("client");
        wait_ready("dockerd", &mut daemon.child, &log, START_TIMEOUT, || {
            daemon_socket_exists(&host)
                && Command::new(docker_client())
                    .args(["-H", &host, "version"])
                    .env("DOCKER_CONFIG", &client_config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        })?;
        Ok(daemon)
    }

    /// `unix:///.../docker.sock`, for `docker -H` or `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs `/usr/bin/docker -H <this daemon> <args>` and returns stdout.
    pub fn docker<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(docker_client());
        cmd.arg("-H").arg(self.host()).args(args);
        // A client config of its own: no credential helpers or proxies from the user's ~/.docker.
        cmd.env("DOCKER_CONFIG", self.dir.path().join("client"));
        run(&mut cmd)
    }

    /// `docker load -i ARCHIVE`; returns the client's output (`Loaded image: ...` lines).
    pub fn load(&self, archive: &Path) -> Result<String> {
        self.docker([Path::new("load").as_os_str(), "-i".as_ref(), archive.as_os_str()])
    }

    /// `docker image inspect REF`, the first (only) object of its JSON array; `RootFS.Layers` holds
    /// the DiffIDs.
    pub fn image_inspect(&self, reference: &str) -> Result<serde_json::Value> {
        let out = self.docker(["image", "inspect", reference])?;
        first_object(&out).with_context(|| format!("docker image inspect {reference}"))
    }

    /// `docker pull REF`. Registries on 127.0.0.0/8 are spoken to over plain HTTP by dockerd.
    pub fn pull(&self, reference: &str) -> Result<String> {
        self.docker(["pull", reference])
    }

    /// `docker save -o OUT REF...`.
    pub fn save(&self, refs: &[&str], out: &Path) -> Result<()> {
        let mut args = vec!["save".as_ref(), "-o".as_ref(), out.as_os_str()];
        args.extend(refs.iter().map(std::ffi::OsStr::new));
        self.docker(args).map(drop)
    }

    /// `docker images --format '{{json .}}'`: one object per image (Repository, Tag, ID, ...).
    pub fn images(&self) -> Result<Vec<serde_json::Value>> {
        let out = self.docker(["images", "--no-trunc", "--format", "{{json .}}"])?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("docker images line"))
            .collect()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        terminate(&mut self.child, STOP_GRACE);
        unmount_below(self.dir.path());
    }
}

/// dockerd bind-mounts its data root onto itself when it is not on a shared mount (seen in a
/// chroot) and undoes that only on a clean shutdown; a mount left behind by a killed daemon would
/// make removing the directory fail.
fn unmount_below(dir: &Path) {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else { return };
    let mut points: Vec<&str> =
        mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|p| Path::new(p).starts_with(dir)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).stderr(Stdio::null()).status();
    }
}

/// Debian's client matches the 20.10 daemon; a newer `docker` may come first on PATH (this
/// machine has one in /usr/local/bin).
pub fn docker_client() -> &'static str {
    if Path::new("/usr/bin/docker").is_file() { "/usr/bin/docker" } else { "docker" }
}

fn daemon_socket_exists(host: &str) -> bool {
    host.strip_prefix("unix://").is_some_and(|p| Path::new(p).exists())
}
