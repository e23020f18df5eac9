//! `hpn serve` against `docker-registry` serving the same blobs to the same clients: registry A
//! already holds the corpus; a store filled from it by `hpn pull` is served by `hpn serve`, on
//! the same filesystem. Both are warmed (every blob fetched once, so the page cache holds them),
//! then each client run is timed against each server, interleaved: parallel curl of every unique
//! blob, and `hpn pull` of the corpus into an empty store. Last, 64 curls at once of the largest
//! blob, for the server's peak RSS (VmHWM).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::corpus::Corpus;
use super::perf::{Profile, perf_report, perf_works, profile_summary};
use super::sampling::{Cmd, Sample, median};
use super::{Bench, CURL_PARALLEL, MB, Store, curl_all};

/// Clients at once for the RSS measurement.
pub(super) const SERVE_CLIENTS: usize = 64;
/// The throughput goal against distribution.
pub(super) const TARGET_SERVE_VS_REGISTRY: f64 = 1.2;

#[derive(Debug)]
pub(super) struct Serving {
    pub(super) blobs: usize,
    pub(super) bytes: u64,
    pub(super) curl_hpn: Vec<Sample>,
    pub(super) curl_registry: Vec<Sample>,
    /// The same curls over TLS (hpn serve --tls-cert): what giving up sendfile costs.
    pub(super) curl_tls: Vec<Sample>,
    pub(super) pull_hpn: Vec<Sample>,
    pub(super) pull_registry: Vec<Sample>,
    /// hpn serve's peak RSS after warming, and after 64 clients at once.
    pub(super) rss_warm_kb: u64,
    pub(super) rss_clients_kb: u64,
    pub(super) clients_wall: f64,
    pub(super) largest_blob: u64,
    /// `perf record` of hpn serve while it answers the parallel curls.
    pub(super) profile: Option<Profile>,
}

impl Serving {
    fn wall(samples: &[Sample]) -> f64 {
        median(&samples.iter().map(|s| s.wall).collect::<Vec<_>>())
    }

    /// How many times distribution's time hpn serve's throughput is, for parallel curl.
    pub(super) fn curl_ratio(&self) -> f64 {
        Self::wall(&self.curl_registry) / Self::wall(&self.curl_hpn)
    }

    pub(super) fn pull_ratio(&self) -> f64 {
        Self::wall(&self.pull_registry) / Self::wall(&self.pull_hpn)
    }

    pub(super) fn rss_clients_mb(&self) -> f64 {
        self.rss_clients_kb as f64 * 1024.0 / MB
    }

    /// The report's section.
    pub(super) fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "## hpn serve vs docker-registry\n");
        let _ = writeln!(
            md,
            "The same {} blobs ({:.1} MB) served by `hpn serve` (from a store `hpn pull` filled, blobs sent \
             with sendfile) and by distribution (registry A, where the corpus was pushed), same filesystem, \
             page cache warm. Ratio: distribution's time over hpn serve's, so above 1 is hpn serve faster \
             (goal ≥ {TARGET_SERVE_VS_REGISTRY}×).\n",
            self.blobs,
            self.bytes as f64 / MB
        );
        let _ = writeln!(md, "| client | docker-registry | hpn serve | ratio | MB/s via hpn serve |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for (client, registry, hpn, ratio) in [
            ("parallel curl of every blob → /dev/null", &self.curl_registry, &self.curl_hpn, self.curl_ratio()),
            ("`hpn pull -f list` (empty store)", &self.pull_registry, &self.pull_hpn, self.pull_ratio()),
        ] {
            let (registry, hpn) = (Self::wall(registry), Self::wall(hpn));
            let _ = writeln!(
                md,
                "| {client} | {registry:.2} s | {hpn:.2} s | {ratio:.2}× | {:.0} |",
                self.bytes as f64 / MB / hpn
            );
        }
        let (plain, tls) = (Self::wall(&self.curl_hpn), Self::wall(&self.curl_tls));
        let _ = writeln!(
            md,
            "\nTLS (rustls, blobs through a 128 KiB buffer instead of sendfile), same curls: {tls:.2} s, \
             {:.0} MB/s, {:.2}× the plain-HTTP time.",
            self.bytes as f64 / MB / tls,
            tls / plain
        );
        let _ = writeln!(
            md,
            "\nhpn serve's peak RSS: {:.1} MB after warming, {:.1} MB with {SERVE_CLIENTS} clients fetching the \
             largest blob ({:.1} MB) at once ({:.2} s for all of them).\n",
            self.rss_warm_kb as f64 * 1024.0 / MB,
            self.rss_clients_mb(),
            self.largest_blob as f64 / MB,
            self.clients_wall
        );
        if let Some(profile) = &self.profile {
            let _ = writeln!(
                md,
                "Where hpn serve's CPU goes while it answers the parallel curls (hpn serve run under `perf record -F 999 -g`; the kernel's sendfile work is counted too): {}.\n",
                profile_summary(profile)
            );
            let _ = writeln!(md, "| self | where |\n|---:|---|");
            for (pct, what) in &profile.top {
                let _ = writeln!(md, "| {pct:.1}% | `{}` |", what.replace('`', "'").replace('|', "\\|"));
            }
            let _ = writeln!(md);
        }
        md
    }
}

/// A running `hpn serve`, killed when dropped.
struct ServeProcess {
    child: Child,
    addr: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProcess {
    /// `hpn serve` of `store`, run by `runner` (the hpn binary, or perf with hpn's command line).
    fn start(mut runner: Command, store: &Path, log: &Path, extra: &[&Path]) -> Result<ServeProcess> {
        let child = runner
            .args(["--quiet", "serve", "--addr", "127.0.0.1:0", "--max-connections", "1024", "--store"])
            .arg(store)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log)?)
            .spawn()
            .context("starting hpn serve")?;
        let mut process = ServeProcess { child, addr: String::new() };
        let started = Instant::now();
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            if let Some((_, url)) = text.split_once("listening on ").and_then(|(_, url)| url.split_once("://")) {
                process.addr = url.lines().next().unwrap_or_default().trim().to_owned();
                return Ok(process);
            }
            if let Some(status) = process.child.try_wait()? {
                bail!("hpn serve exited ({status}):\n{text}");
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("hpn serve did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident set size so far (VmHWM), in KB.
    fn peak_rss_kb(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Bench {
    pub(super) fn serving(&self, corpus: &Corpus) -> Result<Serving> {
        let store = self.path("serve-store");
        super::fresh_dir(&store)?;
        self.timer.time(&self.hpn(&[&"pull", &"-f", &self.list, &"--store", &store]))?;
        let server = ServeProcess::start(Command::new(&self.hpn), &store, &self.path("serve.log"), &[])?;
        let (cert, key) = self.self_signed()?;
        let tls_server = ServeProcess::start(
            Command::new(&self.hpn),
            &store,
            &self.path("serve-tls.log"),
            &[Path::new("--tls-cert"), &cert, Path::new("--tls-key"), &key],
        )?;
        let registry = corpus.images[0].source.split('/').next().unwrap_or_default().to_owned();

        // The same URL list, the same paths: hpn serve drops the registry host from names.
        let urls = fs::read_to_string(&self.urls)?;
        let served_urls = self.path("served-blob-urls.txt");
        fs::write(&served_urls, urls.replace(&format!("http://{registry}/"), &format!("http://{}/", server.addr)))?;
        let tls_urls = self.path("served-tls-blob-urls.txt");
        fs::write(&tls_urls, urls.replace(&format!("http://{registry}/"), &format!("https://{}/", tls_server.addr)))?;
        let list = fs::read_to_string(&self.list)?;
        let served_list = self.path("served-images.txt");
        fs::write(&served_list, list.replace(&format!("{registry}/"), &format!("{}/", server.addr)))?;

        // Warm both: every blob read once, into the page cache and through each server.
        self.timer.time(&curl_all(&self.urls))?;
        self.timer.time(&curl_all(&served_urls))?;
        self.timer.time(&curl_insecure_tls(&tls_urls))?;
        let rss_warm_kb = server.peak_rss_kb();

        let mut serving = Serving {
            blobs: corpus.blobs.len(),
            bytes: corpus.blobs.values().map(|(_, size)| size).sum(),
            curl_hpn: Vec::new(),
            curl_registry: Vec::new(),
            curl_tls: Vec::new(),
            pull_hpn: Vec::new(),
            pull_registry: Vec::new(),
            rss_warm_kb,
            rss_clients_kb: 0,
            clients_wall: 0.0,
            largest_blob: 0,
            profile: None,
        };
        for run in 0..self.runs {
            println!("serve run {}/{}", run + 1, self.runs);
            serving.curl_registry.push(self.timer.time(&curl_all(&self.urls))?);
            serving.curl_hpn.push(self.timer.time(&curl_all(&served_urls))?);
            serving.curl_tls.push(self.timer.time(&curl_insecure_tls(&tls_urls))?);
            serving
                .pull_registry
                .push(self.hpn_run(Store::Fresh("serve-pull-store"), &[&"pull", &"-f", &self.list]).time()?);
            serving
                .pull_hpn
                .push(self.hpn_run(Store::Fresh("serve-pull-store"), &[&"pull", &"-f", &served_list]).time()?);
        }

        if perf_works() {
            serving.profile = self.profile_server(&store, &registry)?;
        }

        let (largest, (repo, size)) =
            corpus.blobs.iter().max_by_key(|(_, (_, size))| *size).context("the corpus has no blobs")?;
        let clients = self.path("serve-clients.txt");
        let url = format!("http://{}/v2/{repo}/blobs/{largest}\n", server.addr);
        fs::write(&clients, url.repeat(SERVE_CLIENTS))?;
        let script = format!("xargs -P {SERVE_CLIENTS} -n 1 curl -sf -o /dev/null < \"$0\"");
        let sample = self.timer.time(&Cmd::new(["sh", "-c", &script, &clients.to_string_lossy()]))?;
        serving.clients_wall = sample.wall;
        serving.rss_clients_kb = server.peak_rss_kb();
        serving.largest_blob = *size;
        drop(server);
        drop(tls_server);
        super::remove(&store)?;
        println!(
            "hpn serve vs docker-registry: curl {:.2}×, hpn pull {:.2}×; peak RSS {:.1} MB with {SERVE_CLIENTS} clients",
            serving.curl_ratio(),
            serving.pull_ratio(),
            serving.rss_clients_mb()
        );
        Ok(serving)
    }
}

impl Bench {
    /// hpn serve run under `perf record` while the parallel curls fetch every blob from it (their
    /// URLs are registry A's, `registry`, moved to this server), then
    /// stopped as Ctrl-C stops it (perf writes its data when its command exits); None if perf failed.
    fn profile_server(&self, store: &Path, registry: &str) -> Result<Option<Profile>> {
        let data = self.path("serve-perf.data");
        let mut perf = Command::new("perf");
        perf.args(["record", "-q", "-F", "999", "-g", "-o"]).arg(&data).arg("--").arg(&self.hpn);
        let mut server = ServeProcess::start(perf, store, &self.path("serve-perf.log"), &[])?;
        // The same curls, at this server's address.
        let urls = self.path("served-perf-blob-urls.txt");
        fs::write(
            &urls,
            fs::read_to_string(&self.urls)?
                .replace(&format!("http://{registry}/"), &format!("http://{}/", server.addr)),
        )?;
        let fetched = self.timer.time(&curl_all(&urls));
        crate::status(Command::new("kill").args(["-INT", &server.child.id().to_string()]))?;
        // perf exits as its command did, interrupted: whether it recorded is whether it wrote data.
        server.child.wait()?;
        fetched?;
        let profile = if data.exists() { perf_report("hpn serve", &data)?.filter(|p| p.samples > 0) } else { None };
        super::remove(&data)?;
        Ok(profile)
    }

    /// A throwaway certificate for 127.0.0.1, by openssl.
    fn self_signed(&self) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        let (cert, key) = (self.path("serve-cert.pem"), self.path("serve-key.pem"));
        crate::status(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
                .args(["-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        Ok((cert, key))
    }
}

/// [`curl_all`] over HTTPS, not checking the throwaway certificate.
fn curl_insecure_tls(urls: &Path) -> Cmd {
    let script = format!("xargs -P {CURL_PARALLEL} -n 1 curl -sfk -o /dev/null < \"$0\"");
    Cmd::new([std::ffi::OsStr::new("sh"), std::ffi::OsStr::new("-c"), std::ffi::OsStr::new(&script), urls.as_os_str()])
}
