//! `cargo xtask bench`: hpn against skopeo and against the raw limit of the machine, on real
//! registries, with every number written to BENCHMARKS.md.
//!
//! One run starts registry A, builds the bench fixtures (testkit's `Scale::Bench`) and pushes
//! them there, then runs every job `--runs` times, interleaved (run 1 of every job, then run 2,
//! …) so that drift of the machine spreads over all of them. Each job starts from the state the
//! issue names (an empty store, a fresh registry B, no output file), the disk is synced before it
//! and only the command itself is timed. Peak RSS comes from `/usr/bin/time` (for a loop of
//! processes: the largest one). Then a scaling run (200 small images) and a 2 GiB single-layer
//! image, and diagnostics that explain a missed target: the same hpn commands with fsync turned
//! off (eatmydata), the disk's fsync'd write rate and a `perf` profile.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hpn_oci::{Digest, Sha256Hasher};
use hpn_testkit::fixtures::{self, PushedFixtures, Scale};
use hpn_testkit::{Registry, have_binary};
use serde_json::json;

use crate::{cargo, human_size, status, workspace_root};

/// `cargo xtask bench` options.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Runs of each job; the median is reported
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    runs: u16,
    /// One run of each job, 50 scaling images, no 2 GiB image and no profiles; the report goes
    /// to target/bench/BENCHMARKS.quick.md unless --out says otherwise
    #[arg(long)]
    quick: bool,
    /// Where to write the report [default: BENCHMARKS.md at the workspace root]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Parallel curls for the raw-fetch limit.
const CURL_PARALLEL: usize = 8;
/// Scaling images: a shared base layer plus one small layer and a config of their own.
const SCALING_IMAGES: usize = 200;
const SCALING_IMAGES_SMALL: usize = 50;
const SCALING_BASE_BYTES: usize = 8 << 20;
const SCALING_UNIQUE_BYTES: usize = 64 << 10;
/// The single layer of the large image.
const LARGE_LAYER_BYTES: u64 = 2 << 30;
/// The issue's targets.
const TARGET_SAVE_VS_ARCHIVE_LOOP: f64 = 10.0;
const TARGET_SAVE_VS_OCI_LOOP: f64 = 0.6;
const TARGET_SAVE_VS_RAW: f64 = 1.3;
const TARGET_PUSH_VS_SKOPEO: f64 = 5.0;
const TARGET_WARM_SECONDS: f64 = 0.5;
const TARGET_RSS_MB: f64 = 100.0;
const MB: f64 = 1_000_000.0;

pub(crate) fn run(args: BenchArgs) -> Result<()> {
    let runs = if args.quick { 1 } else { usize::from(args.runs) };
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            target_dir().join("bench").join("BENCHMARKS.quick.md")
        } else {
            workspace_root().join("BENCHMARKS.md")
        }
    });
    for program in ["docker-registry", "skopeo", "curl", "/usr/bin/time", "sha256sum", "xargs", "sync"] {
        if !have_binary(program) {
            bail!("`{program}` is missing: apt-get install -y docker-registry skopeo curl time coreutils findutils");
        }
    }

    step("building hpn (cargo build --release --bin hpn)");
    status(cargo().args(["build", "--release", "--bin", "hpn"]))?;
    let hpn = target_dir().join("release").join("hpn");
    let started = Instant::now();

    let work = tempfile::Builder::new().prefix("hpn-bench-").tempdir()?;
    let mut bench = Bench::new(hpn, work.path().to_owned(), runs)?;
    let machine = Machine::probe(work.path());
    println!("{}", machine.summary());

    step("registry A and the bench corpus (fixtures at Scale::Bench)");
    let registry_a = Registry::start()?;
    let build_start = Instant::now();
    let set = fixtures::build(Scale::Bench)?;
    println!(
        "built {} images, {} in {:.1?}",
        set.images().len(),
        human_size(set.unique_bytes()),
        build_start.elapsed()
    );
    let pushed = fixtures::push(&set, registry_a.addr())?;
    let corpus = Corpus::new(&pushed, set.unique_bytes());
    drop(set);
    println!("{}", corpus.summary());
    bench.prepare(&corpus)?;

    step(&format!("measuring: {runs} run(s) of every job, interleaved"));
    let jobs = bench.main_jobs(&corpus);
    let mut results = bench.measure(jobs)?;

    let profiles = if args.quick || !perf_works() {
        Vec::new()
    } else {
        step("profiles (perf record)");
        bench.profiles()?
    };

    step(&format!(
        "scaling: {} and {} small images",
        if args.quick { SCALING_IMAGES_SMALL / 2 } else { SCALING_IMAGES_SMALL },
        if args.quick { SCALING_IMAGES_SMALL } else { SCALING_IMAGES }
    ));
    let scaling = if args.quick {
        bench.scaling(SCALING_IMAGES_SMALL / 2, SCALING_IMAGES_SMALL)?
    } else {
        bench.scaling(SCALING_IMAGES_SMALL, SCALING_IMAGES)?
    };

    let large = if args.quick {
        None
    } else {
        step(&format!("large: one image with a single {} layer", human_size(LARGE_LAYER_BYTES)));
        Some(bench.large()?)
    };

    step("disk: fsync'd write rate");
    let disk = bench.disk_rate()?;
    results.disk_mb_s = Some(disk);

    let report = Report {
        machine,
        corpus,
        results,
        profiles,
        scaling,
        large,
        runs,
        quick: args.quick,
        total: started.elapsed(),
        load_end: load_average(),
    };
    println!("\n{}", report.terminal_table());
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&out, report.markdown()).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    drop(registry_a);
    Ok(())
}

fn step(what: &str) {
    println!("\n== {what}");
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

// ---------------------------------------------------------------------------------------------
// The corpus as the bench sees it: the images, and the blobs `hpn save` has to move.

#[derive(Debug, Clone)]
struct BenchImage {
    /// Fixture name, e.g. `app-a`.
    name: String,
    /// What goes into the image list: `A/fixtures/app-a:1`, or a digest reference.
    source: String,
    /// The tag a copy gets in registry B (`bench` for an image that has none).
    dest_tag: String,
    /// Whether skopeo can write it as a docker-archive (it cannot for zstd layers: skopeo #1286).
    tagged: bool,
}

#[derive(Debug)]
struct Corpus {
    images: Vec<BenchImage>,
    /// digest → (a repository that has it, size): configs and layers of the linux/amd64 images.
    blobs: BTreeMap<String, (String, u64)>,
    /// All blobs of the fixture set, every platform.
    set_bytes: u64,
    layers: usize,
    max_layers: (String, usize),
    shared_base: usize,
    zstd_images: Vec<String>,
}

impl Corpus {
    fn new(pushed: &PushedFixtures, set_bytes: u64) -> Corpus {
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

    fn unique_bytes(&self) -> u64 {
        self.blobs.values().map(|(_, size)| size).sum()
    }

    fn summary(&self) -> String {
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

    /// The issue's requirements on the corpus, as (requirement, measured, ok).
    fn checks(&self) -> Vec<(String, String, bool)> {
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
// Timing.

/// One timed run: wall time, CPU time and peak RSS (of the largest process, for a loop).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    wall: f64,
    user: f64,
    sys: f64,
    rss_kb: u64,
    /// CPU seconds the registries (A and B) spent while the command ran.
    registry_cpu: f64,
}

impl Sample {
    fn absorb(&mut self, other: Sample) {
        self.user += other.user;
        self.sys += other.sys;
        self.rss_kb = self.rss_kb.max(other.rss_kb);
        self.registry_cpu += other.registry_cpu;
    }
}

/// CPU seconds (user + system) of every `docker-registry` this process started, by pid.
fn registry_cpu() -> BTreeMap<u32, f64> {
    let me = std::process::id();
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid … utime stime …": comm may hold spaces, so split after ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        if !head.ends_with("(docker-registry") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        if parse(1) != Some(f64::from(me)) {
            continue;
        }
        if let (Some(utime), Some(stime)) = (parse(11), parse(12)) {
            out.insert(pid, (utime + stime) / clock_ticks());
        }
    }
    out
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn registry_cpu_since(before: &BTreeMap<u32, f64>) -> f64 {
    registry_cpu().iter().map(|(pid, now)| now - before.get(pid).copied().unwrap_or(0.0)).sum()
}

/// A command line, run under `/usr/bin/time`.
#[derive(Debug, Clone)]
struct Cmd {
    argv: Vec<OsString>,
}

impl Cmd {
    fn new<I, S>(argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Cmd { argv: argv.into_iter().map(|a| a.as_ref().to_owned()).collect() }
    }

    /// Prefixes the command with `eatmydata`: fsync and friends become no-ops.
    fn without_fsync(mut self) -> Cmd {
        self.argv.insert(0, "eatmydata".into());
        self
    }

    fn line(&self) -> String {
        self.argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    }
}

#[derive(Debug)]
struct Timer {
    time_file: PathBuf,
    cwd: PathBuf,
}

impl Timer {
    /// Runs `cmd`, timed. A failure is an error unless `allow_fail`; the output comes back either way.
    fn run(&self, cmd: &Cmd, allow_fail: bool) -> Result<(Sample, Output)> {
        let mut command = Command::new("/usr/bin/time");
        command.arg("-f").arg("%M %U %S").arg("-o").arg(&self.time_file).args(&cmd.argv);
        command.current_dir(&self.cwd).stdin(Stdio::null());
        // The user's own hpn settings must not change what is measured.
        for key in [
            "HPN_STORE",
            "HPN_CONFIG",
            "HPN_JOBS",
            "HPN_SAVE_MODE",
            "HPN_PLATFORM",
            "HPN_RETRIES",
            "HPN_INSECURE_REGISTRIES",
            "HPN_REGISTRY",
            "HPN_PROJECT",
            "RUST_LOG",
        ] {
            command.env_remove(key);
        }
        let registries = registry_cpu();
        let start = Instant::now();
        let output = command.output().with_context(|| format!("cannot run `{}`", cmd.line()))?;
        let wall = start.elapsed().as_secs_f64();
        let registry_cpu = registry_cpu_since(&registries);
        if !output.status.success() && !allow_fail {
            bail!(
                "`{}` failed ({}):\n{}{}",
                cmd.line(),
                output.status,
                tail(&output.stdout, 10),
                tail(&output.stderr, 20)
            );
        }
        let text = fs::read_to_string(&self.time_file).unwrap_or_default();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        let mut fields = last.split_whitespace();
        let rss_kb = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        let user = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0);
        let sys = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0);
        Ok((Sample { wall, user, sys, rss_kb, registry_cpu }, output))
    }

    fn time(&self, cmd: &Cmd) -> Result<Sample> {
        Ok(self.run(cmd, false)?.0)
    }

    /// Runs commands one after another, as a shell loop would; wall time of the whole loop.
    fn time_loop(&self, cmds: &[Cmd], allow_fail: bool) -> Result<(Sample, Vec<String>)> {
        let mut total = Sample::default();
        let mut failures = Vec::new();
        let start = Instant::now();
        for cmd in cmds {
            let (sample, output) = self.run(cmd, allow_fail)?;
            total.absorb(sample);
            if !output.status.success() {
                let what = cmd.argv.iter().rev().nth(1).map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
                let error = tail(&output.stderr, 1);
                // skopeo logs `time="…" level=fatal msg="…"`: keep the message, so runs repeat the same note.
                let error = error.split_once("msg=").map_or(error.trim(), |(_, m)| m.trim());
                failures.push(format!("{} {what}: {error}", cmd.argv[0].to_string_lossy()));
            }
        }
        total.wall = start.elapsed().as_secs_f64();
        Ok((total, failures))
    }
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Flushes dirty pages so one job's writeback does not land in the next job's time.
fn sync_disk() -> Result<()> {
    status(Command::new("sync").stdin(Stdio::null()))?;
    Ok(())
}

fn fresh_dir(path: &Path) -> Result<()> {
    remove(path)?;
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

fn remove(path: &Path) -> Result<()> {
    let result = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", path.display())),
        _ => Ok(()),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

// ---------------------------------------------------------------------------------------------
// The jobs.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Save,
    SkopeoArchive,
    SkopeoOci,
    Pull,
    Warm,
    Load,
    Push,
    SkopeoPush,
    Copy,
    SkopeoCopy,
    Curl,
    CurlSha,
    SaveNoFsync,
    WarmNoFsync,
}

impl Key {
    fn label(self) -> &'static str {
        match self {
            Key::Save => "hpn save -f list -o one.tar (cold: empty store)",
            Key::SkopeoArchive => "skopeo copy → docker-archive, one per image",
            Key::SkopeoOci => "skopeo copy → one shared oci: layout, per image",
            Key::Pull => "hpn pull -f list (empty store)",
            Key::Warm => "hpn save (warm: every blob in the store)",
            Key::Load => "hpn load -i one.tar (empty store)",
            Key::Push => "hpn push -i one.tar -r B",
            Key::SkopeoPush => "skopeo copy docker-archive → B, per image",
            Key::Copy => "hpn copy docker://A/… docker://B/…, per image",
            Key::SkopeoCopy => "skopeo copy docker://A/… docker://B/…, per image",
            Key::Curl => "raw: parallel curl of every unique blob → /dev/null",
            Key::CurlSha => "raw: parallel curl | sha256sum of every unique blob",
            Key::SaveNoFsync => "diagnostic: hpn save cold, fsync off (eatmydata)",
            Key::WarmNoFsync => "diagnostic: hpn save warm, fsync off (eatmydata)",
        }
    }

    fn is_hpn(self) -> bool {
        matches!(self, Key::Save | Key::Pull | Key::Warm | Key::Load | Key::Push | Key::Copy)
    }
}

type JobFn<'a> = Box<dyn FnMut(usize) -> Result<(Sample, Vec<String>)> + 'a>;

struct Job<'a> {
    key: Key,
    run: JobFn<'a>,
}

#[derive(Debug, Default)]
struct Results {
    samples: BTreeMap<Key, Vec<Sample>>,
    notes: BTreeMap<Key, BTreeSet<String>>,
    disk_mb_s: Option<f64>,
    archive_bytes: u64,
}

impl Results {
    fn has(&self, key: Key) -> bool {
        self.samples.get(&key).is_some_and(|s| !s.is_empty())
    }

    fn wall(&self, key: Key) -> f64 {
        self.samples.get(&key).map_or(f64::NAN, |s| median(&s.iter().map(|x| x.wall).collect::<Vec<_>>()))
    }

    fn spread(&self, key: Key) -> (f64, f64) {
        let walls: Vec<f64> = self.samples.get(&key).map(|s| s.iter().map(|x| x.wall).collect()).unwrap_or_default();
        let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
        let max = walls.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }

    fn cpu(&self, key: Key) -> (f64, f64) {
        let s = self.samples.get(&key);
        let user = s.map_or(f64::NAN, |s| median(&s.iter().map(|x| x.user).collect::<Vec<_>>()));
        let sys = s.map_or(f64::NAN, |s| median(&s.iter().map(|x| x.sys).collect::<Vec<_>>()));
        (user, sys)
    }

    fn registry_cpu(&self, key: Key) -> f64 {
        self.samples.get(&key).map_or(f64::NAN, |s| median(&s.iter().map(|x| x.registry_cpu).collect::<Vec<_>>()))
    }

    fn rss_mb(&self, key: Key) -> f64 {
        self.samples.get(&key).map_or(f64::NAN, |s| s.iter().map(|x| x.rss_kb).max().unwrap_or(0) as f64 * 1024.0 / MB)
    }
}

struct Bench {
    hpn: PathBuf,
    work: PathBuf,
    runs: usize,
    timer: Timer,
    have_eatmydata: bool,
    list: PathBuf,
    urls: PathBuf,
    fetch_sha: PathBuf,
    expected_hex: BTreeSet<String>,
}

impl Bench {
    fn new(hpn: PathBuf, work: PathBuf, runs: usize) -> Result<Bench> {
        let timer = Timer { time_file: work.join("time.txt"), cwd: work.clone() };
        Ok(Bench {
            hpn,
            list: work.join("images.txt"),
            urls: work.join("blob-urls.txt"),
            fetch_sha: work.join("fetch-sha256.sh"),
            work,
            runs,
            timer,
            have_eatmydata: have_binary("eatmydata"),
            expected_hex: BTreeSet::new(),
        })
    }

    fn hpn(&self, args: &[&OsStr]) -> Cmd {
        let mut argv: Vec<OsString> = vec![self.hpn.clone().into(), "--quiet".into()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        Cmd::new(argv)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// The image list, the blob URL list and the hash script.
    fn prepare(&mut self, corpus: &Corpus) -> Result<()> {
        let mut list = String::from("# hpn bench corpus\n");
        for image in &corpus.images {
            writeln!(list, "{}", image.source)?;
        }
        fs::write(&self.list, list)?;
        let registry = corpus.images[0].source.split('/').next().unwrap_or_default().to_owned();
        let mut urls = String::new();
        for (digest, (repo, _)) in &corpus.blobs {
            writeln!(urls, "http://{registry}/v2/{repo}/blobs/{digest}")?;
            self.expected_hex.insert(digest.trim_start_matches("sha256:").to_owned());
        }
        fs::write(&self.urls, urls)?;
        fs::write(
            &self.fetch_sha,
            format!("#!/bin/sh\nxargs -P {CURL_PARALLEL} -n 1 sh -c 'curl -sf \"$0\" | sha256sum' < \"$1\"\n"),
        )?;
        if !self.have_eatmydata {
            println!(
                "note: eatmydata is not installed, so the fsync-off diagnostics are skipped (apt-get install eatmydata)"
            );
        }
        Ok(())
    }

    fn main_jobs<'a>(&'a self, corpus: &'a Corpus) -> Vec<Job<'a>> {
        let one_tar = self.path("hpn-one.tar");
        let skopeo_archives = self.path("skopeo-archives");
        let warm_store = self.path("warm-store");
        let mut jobs: Vec<Job<'a>> = Vec::new();

        // hpn save, cold. Its archive feeds load and push.
        {
            let one_tar = one_tar.clone();
            jobs.push(Job {
                key: Key::Save,
                run: Box::new(move |_| {
                    let store = self.path("save-store");
                    fresh_dir(&store)?;
                    remove(&one_tar)?;
                    sync_disk()?;
                    let cmd = self.hpn(&[
                        "save".as_ref(),
                        "-f".as_ref(),
                        self.list.as_os_str(),
                        "-o".as_ref(),
                        one_tar.as_os_str(),
                        "--store".as_ref(),
                        store.as_os_str(),
                    ]);
                    let sample = self.timer.time(&cmd)?;
                    remove(&store)?;
                    Ok((sample, Vec::new()))
                }),
            });
        }
        // skopeo to docker-archive, one file per image: how users script it today.
        {
            let dir = skopeo_archives.clone();
            jobs.push(Job {
                key: Key::SkopeoArchive,
                run: Box::new(move |_| {
                    fresh_dir(&dir)?;
                    sync_disk()?;
                    let cmds: Vec<Cmd> = corpus
                        .images
                        .iter()
                        .map(|image| {
                            let file = dir.join(format!("{}.tar", image.name));
                            let dest = if image.tagged {
                                format!("docker-archive:{}:{}", file.display(), image.source)
                            } else {
                                format!("docker-archive:{}", file.display())
                            };
                            skopeo_copy(&format!("docker://{}", image.source), &dest)
                        })
                        .collect();
                    self.timer.time_loop(&cmds, true)
                }),
            });
        }
        // skopeo into one shared OCI layout.
        jobs.push(Job {
            key: Key::SkopeoOci,
            run: Box::new(move |_| {
                let dir = self.path("skopeo-oci");
                fresh_dir(&dir)?;
                sync_disk()?;
                let cmds: Vec<Cmd> = corpus
                    .images
                    .iter()
                    .map(|image| {
                        skopeo_copy(
                            &format!("docker://{}", image.source),
                            &format!("oci:{}:{}-{}", dir.display(), image.name, image.dest_tag),
                        )
                    })
                    .collect();
                let result = self.timer.time_loop(&cmds, false);
                remove(&dir)?;
                result
            }),
        });
        // hpn pull into an empty store.
        jobs.push(Job {
            key: Key::Pull,
            run: Box::new(move |_| {
                let store = self.path("pull-store");
                fresh_dir(&store)?;
                sync_disk()?;
                let cmd = self.hpn(&[
                    "pull".as_ref(),
                    "-f".as_ref(),
                    self.list.as_os_str(),
                    "--store".as_ref(),
                    store.as_os_str(),
                ]);
                let sample = self.timer.time(&cmd)?;
                remove(&store)?;
                Ok((sample, Vec::new()))
            }),
        });
        // hpn save with every blob in the store (filled once, untimed, before the first run).
        {
            let warm_store = warm_store.clone();
            jobs.push(Job {
                key: Key::Warm,
                run: Box::new(move |run| {
                    if run == 0 {
                        fresh_dir(&warm_store)?;
                        self.timer.time(&self.hpn(&[
                            "pull".as_ref(),
                            "-f".as_ref(),
                            self.list.as_os_str(),
                            "--store".as_ref(),
                            warm_store.as_os_str(),
                        ]))?;
                    }
                    let out = self.path("warm.tar");
                    remove(&out)?;
                    sync_disk()?;
                    let cmd = self.hpn(&[
                        "save".as_ref(),
                        "-f".as_ref(),
                        self.list.as_os_str(),
                        "-o".as_ref(),
                        out.as_os_str(),
                        "--store".as_ref(),
                        warm_store.as_os_str(),
                    ]);
                    let sample = self.timer.time(&cmd)?;
                    remove(&out)?;
                    Ok((sample, Vec::new()))
                }),
            });
        }
        // hpn load of the cold save's archive.
        {
            let one_tar = one_tar.clone();
            jobs.push(Job {
                key: Key::Load,
                run: Box::new(move |_| {
                    let store = self.path("load-store");
                    fresh_dir(&store)?;
                    sync_disk()?;
                    let cmd = self.hpn(&[
                        "load".as_ref(),
                        "-i".as_ref(),
                        one_tar.as_os_str(),
                        "--store".as_ref(),
                        store.as_os_str(),
                    ]);
                    let sample = self.timer.time(&cmd)?;
                    remove(&store)?;
                    Ok((sample, Vec::new()))
                }),
            });
        }
        // hpn push -i into a fresh registry B.
        {
            let one_tar = one_tar.clone();
            jobs.push(Job {
                key: Key::Push,
                run: Box::new(move |_| {
                    let registry_b = Registry::start()?;
                    let store = self.path("push-store");
                    fresh_dir(&store)?;
                    sync_disk()?;
                    let cmd = self.hpn(&[
                        "push".as_ref(),
                        "-i".as_ref(),
                        one_tar.as_os_str(),
                        "-r".as_ref(),
                        registry_b.addr().as_ref(),
                        "--store".as_ref(),
                        store.as_os_str(),
                    ]);
                    let sample = self.timer.time(&cmd)?;
                    remove(&store)?;
                    Ok((sample, Vec::new()))
                }),
            });
        }
        // skopeo pushing the docker-archives it wrote, into a fresh registry B.
        {
            let dir = skopeo_archives.clone();
            jobs.push(Job {
                key: Key::SkopeoPush,
                run: Box::new(move |_| {
                    let registry_b = Registry::start()?;
                    sync_disk()?;
                    let mut cmds = Vec::new();
                    let mut missing = Vec::new();
                    for image in &corpus.images {
                        let file = dir.join(format!("{}.tar", image.name));
                        if !file.exists() {
                            missing
                                .push(format!("{}: no docker-archive to push (skopeo could not write it)", image.name));
                            continue;
                        }
                        cmds.push(skopeo_copy(
                            &format!("docker-archive:{}", file.display()),
                            &format!("docker://{}/{}:{}", registry_b.addr(), image.name, image.dest_tag),
                        ));
                    }
                    let (sample, mut failures) = self.timer.time_loop(&cmds, false)?;
                    failures.extend(missing);
                    Ok((sample, failures))
                }),
            });
        }
        // Registry to registry, one process per image.
        jobs.push(Job {
            key: Key::Copy,
            run: Box::new(move |_| {
                let registry_b = Registry::start()?;
                let store = self.path("copy-store");
                fresh_dir(&store)?;
                sync_disk()?;
                let cmds: Vec<Cmd> = corpus
                    .images
                    .iter()
                    .map(|image| {
                        self.hpn(&[
                            "copy".as_ref(),
                            format!("docker://{}", image.source).as_ref(),
                            format!("docker://{}/{}:{}", registry_b.addr(), image.name, image.dest_tag).as_ref(),
                            "--store".as_ref(),
                            store.as_os_str(),
                        ])
                    })
                    .collect();
                let result = self.timer.time_loop(&cmds, false);
                remove(&store)?;
                result
            }),
        });
        jobs.push(Job {
            key: Key::SkopeoCopy,
            run: Box::new(move |_| {
                let registry_b = Registry::start()?;
                sync_disk()?;
                let cmds: Vec<Cmd> = corpus
                    .images
                    .iter()
                    .map(|image| {
                        skopeo_copy(
                            &format!("docker://{}", image.source),
                            &format!("docker://{}/{}:{}", registry_b.addr(), image.name, image.dest_tag),
                        )
                    })
                    .collect();
                self.timer.time_loop(&cmds, false)
            }),
        });
        // The raw limit.
        jobs.push(Job {
            key: Key::Curl,
            run: Box::new(move |_| {
                sync_disk()?;
                let script = format!("xargs -P {CURL_PARALLEL} -n 1 curl -sf -o /dev/null < \"$0\"");
                let cmd = Cmd::new([OsStr::new("sh"), OsStr::new("-c"), OsStr::new(&script), self.urls.as_os_str()]);
                Ok((self.timer.time(&cmd)?, Vec::new()))
            }),
        });
        jobs.push(Job {
            key: Key::CurlSha,
            run: Box::new(move |_| {
                sync_disk()?;
                let cmd = Cmd::new([OsStr::new("sh"), self.fetch_sha.as_os_str(), self.urls.as_os_str()]);
                let (sample, output) = self.timer.run(&cmd, false)?;
                let got: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                    .collect();
                if got != self.expected_hex {
                    bail!(
                        "curl | sha256sum: {} of {} blob hashes match",
                        got.intersection(&self.expected_hex).count(),
                        self.expected_hex.len()
                    );
                }
                Ok((sample, Vec::new()))
            }),
        });
        if self.have_eatmydata {
            jobs.push(Job {
                key: Key::SaveNoFsync,
                run: Box::new(move |_| {
                    let store = self.path("save-nofsync-store");
                    let out = self.path("save-nofsync.tar");
                    fresh_dir(&store)?;
                    remove(&out)?;
                    sync_disk()?;
                    let cmd = self
                        .hpn(&[
                            "save".as_ref(),
                            "-f".as_ref(),
                            self.list.as_os_str(),
                            "-o".as_ref(),
                            out.as_os_str(),
                            "--store".as_ref(),
                            store.as_os_str(),
                        ])
                        .without_fsync();
                    let sample = self.timer.time(&cmd)?;
                    remove(&store)?;
                    remove(&out)?;
                    Ok((sample, Vec::new()))
                }),
            });
            let warm_store = warm_store.clone();
            jobs.push(Job {
                key: Key::WarmNoFsync,
                run: Box::new(move |_| {
                    let out = self.path("warm-nofsync.tar");
                    remove(&out)?;
                    sync_disk()?;
                    let cmd = self
                        .hpn(&[
                            "save".as_ref(),
                            "-f".as_ref(),
                            self.list.as_os_str(),
                            "-o".as_ref(),
                            out.as_os_str(),
                            "--store".as_ref(),
                            warm_store.as_os_str(),
                        ])
                        .without_fsync();
                    let sample = self.timer.time(&cmd)?;
                    remove(&out)?;
                    Ok((sample, Vec::new()))
                }),
            });
        }
        jobs
    }

    fn measure(&self, mut jobs: Vec<Job<'_>>) -> Result<Results> {
        let mut results = Results::default();
        for run in 0..self.runs {
            for job in &mut jobs {
                let (sample, notes) =
                    (job.run)(run).with_context(|| format!("{} (run {})", job.key.label(), run + 1))?;
                println!(
                    "run {}/{}  {:<58} {:>7.2} s  {:>6.1} MB RSS",
                    run + 1,
                    self.runs,
                    job.key.label(),
                    sample.wall,
                    sample.rss_kb as f64 * 1024.0 / MB
                );
                for note in &notes {
                    println!("        note: {note}");
                }
                results.samples.entry(job.key).or_default().push(sample);
                results.notes.entry(job.key).or_default().extend(notes);
            }
        }
        results.archive_bytes = fs::metadata(self.path("hpn-one.tar")).map(|m| m.len()).unwrap_or(0);
        Ok(results)
    }

    /// `perf record` of the hpn jobs whose targets are the hardest; the top symbols by self time.
    fn profiles(&self) -> Result<Vec<Profile>> {
        let mut profiles = Vec::new();
        let warm_store = self.path("warm-store");
        let one_tar = self.path("hpn-one.tar");
        let cases: Vec<(&str, Vec<OsString>, Option<PathBuf>)> = vec![
            (
                "hpn save (cold)",
                vec!["save".into(), "-f".into(), self.list.clone().into(), "-o".into(), self.path("perf.tar").into()],
                Some(self.path("perf-store")),
            ),
            (
                "hpn save (warm)",
                vec!["save".into(), "-f".into(), self.list.clone().into(), "-o".into(), self.path("perf.tar").into()],
                None,
            ),
        ];
        for (name, args, store) in cases {
            let store = match store {
                Some(s) => {
                    fresh_dir(&s)?;
                    s
                }
                None => warm_store.clone(),
            };
            remove(&self.path("perf.tar"))?;
            sync_disk()?;
            let data = self.path("perf.data");
            let mut cmd = Command::new("perf");
            cmd.args(["record", "-q", "-F", "999", "-g", "-o"]).arg(&data).arg("--").arg(&self.hpn).arg("--quiet");
            cmd.args(&args)
                .arg("--store")
                .arg(&store)
                .current_dir(&self.work)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
            if store != warm_store {
                remove(&store)?;
            }
            remove(&self.path("perf.tar"))?;
            if !ok {
                continue;
            }
            if let Some(profile) = perf_report(name, &data)? {
                profiles.push(profile);
            }
            remove(&data)?;
        }
        // push -i: the registry's side is another process, so this shows hpn's own share.
        if one_tar.exists() {
            let registry_b = Registry::start()?;
            let data = self.path("perf.data");
            let store = self.path("perf-store");
            fresh_dir(&store)?;
            sync_disk()?;
            let ok = Command::new("perf")
                .args(["record", "-q", "-F", "999", "-g", "-o"])
                .arg(&data)
                .arg("--")
                .arg(&self.hpn)
                .args(["--quiet", "push", "-i"])
                .arg(&one_tar)
                .arg("-r")
                .arg(registry_b.addr())
                .arg("--store")
                .arg(&store)
                .current_dir(&self.work)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            remove(&store)?;
            if ok && let Some(profile) = perf_report("hpn push -i", &data)? {
                profiles.push(profile);
            }
            remove(&data)?;
        }
        Ok(profiles)
    }

    /// Writes 512 MiB and fsyncs it: the rate any fsync'ing writer is bounded by.
    fn disk_rate(&self) -> Result<f64> {
        let path = self.path("disk-rate.bin");
        let block = vec![0x5au8; 1 << 20];
        let mut rates = Vec::new();
        for _ in 0..self.runs.min(3) {
            sync_disk()?;
            let start = Instant::now();
            let mut file = File::create(&path)?;
            for _ in 0..512 {
                file.write_all(&block)?;
            }
            file.sync_all()?;
            rates.push(512.0 * 1_048_576.0 / MB / start.elapsed().as_secs_f64());
            drop(file);
            remove(&path)?;
        }
        Ok(median(&rates))
    }
}

fn skopeo_copy(source: &str, dest: &str) -> Cmd {
    Cmd::new(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", source, dest])
}

// ---------------------------------------------------------------------------------------------
// perf.

#[derive(Debug)]
struct Profile {
    name: String,
    samples: u64,
    /// (percent of samples, where).
    top: Vec<(f64, String)>,
}

fn perf_works() -> bool {
    Command::new("perf")
        .args(["record", "-q", "-o", "/dev/null", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn perf_report(name: &str, data: &Path) -> Result<Option<Profile>> {
    let output = Command::new("perf")
        .arg("report")
        .arg("-i")
        .arg(data)
        .args(["--stdio", "--no-children", "-g", "none", "--sort", "dso,symbol", "--percent-limit", "1"])
        .stderr(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut samples = 0;
    let mut top = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# Samples: ") {
            samples = parse_count(rest.split_whitespace().next().unwrap_or("0"));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((pct, rest)) = line.split_once('%') else { continue };
        let Ok(pct) = pct.trim().parse::<f64>() else { continue };
        // "hpn  [.] sha2::…" → "hpn: sha2::…"
        let rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        let rest = rest.replacen(" [.] ", ": ", 1).replacen(" [k] ", ": ", 1);
        let rest = rest.trim_end_matches(" - -").trim_end_matches(" -").to_owned();
        top.push((pct, rest));
        if top.len() == 12 {
            break;
        }
    }
    Ok(Some(Profile { name: name.to_owned(), samples, top }))
}

/// perf prints "6K" for 6000-odd samples.
fn parse_count(text: &str) -> u64 {
    let (digits, factor) = match text.chars().last() {
        Some('K') => (&text[..text.len() - 1], 1_000.0),
        Some('M') => (&text[..text.len() - 1], 1_000_000.0),
        _ => (text, 1.0),
    };
    (digits.parse::<f64>().unwrap_or(0.0) * factor) as u64
}

// ---------------------------------------------------------------------------------------------
// Generated images: a minimal HTTP/1.1 client for loopback registries, and tar layers.

#[derive(Debug)]
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    File(&'a Path),
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One connection per request (`Connection: close`), plain HTTP: only for our own loopback registries.
fn http(addr: &str, method: &str, target: &str, headers: &[(&str, &str)], body: Body<'_>) -> Result<Response> {
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

fn expect(response: &Response, status: u16, what: &str) -> Result<()> {
    if response.status != status {
        bail!("{what}: HTTP {} (wanted {status}): {}", response.status, String::from_utf8_lossy(&response.body).trim());
    }
    Ok(())
}

/// Uploads a blob (monolithic PUT), or mounts it from `from` if given.
fn upload_blob(addr: &str, repo: &str, digest: &Digest, body: Body<'_>, from: Option<&str>) -> Result<()> {
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

fn put_manifest(addr: &str, repo: &str, tag: &str, bytes: &[u8]) -> Result<()> {
    let r = http(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", OCI_MANIFEST)],
        Body::Bytes(bytes),
    )?;
    expect(&r, 201, &format!("putting manifest {repo}:{tag}"))
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// splitmix64: fast, seedable filler so every layer is distinct and incompressible.
#[derive(Debug)]
struct Filler(u64);

impl Filler {
    fn fill(&mut self, buf: &mut [u8]) {
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
fn write_tar_layer(out: &mut impl Write, name: &str, size: u64, mut content: impl FnMut(&mut [u8])) -> Result<u64> {
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
fn image_documents(label: &str, layers: &[(Digest, u64)]) -> Result<(Vec<u8>, Vec<u8>)> {
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
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256Hasher,
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

// ---------------------------------------------------------------------------------------------
// Scaling: many small images.

#[derive(Debug)]
struct ScalingPoint {
    images: usize,
    bytes: u64,
    save: Vec<Sample>,
    pull: Vec<Sample>,
    curl: Vec<Sample>,
    save_no_fsync: Vec<Sample>,
    /// HTTP requests hpn save sent to the registry, per image.
    requests_per_image: f64,
}

#[derive(Debug)]
struct Scaling {
    points: Vec<ScalingPoint>,
    /// Median latency of one manifest GET on a kept-alive connection, in seconds.
    request_latency: f64,
}

impl Bench {
    fn scaling(&self, small: usize, big: usize) -> Result<Scaling> {
        let registry = Registry::start()?;
        let addr = registry.addr().to_owned();
        let start = Instant::now();
        // The shared base layer, uploaded once and mounted into every other repository.
        let mut base = Vec::new();
        let mut filler = Filler(0xba5e);
        write_tar_layer(&mut base, "usr/share/bench/base.bin", SCALING_BASE_BYTES as u64, |b| filler.fill(b))?;
        let base_digest = Digest::of(&base);
        let mut refs = Vec::new();
        let mut blob_urls = Vec::new();
        let mut bytes_per_image = Vec::new();
        for i in 0..big {
            let repo = format!("scaling/img-{i:03}");
            let mut layer = Vec::new();
            let mut filler = Filler(i as u64 + 1);
            write_tar_layer(&mut layer, &format!("etc/bench/img-{i:03}"), SCALING_UNIQUE_BYTES as u64, |b| {
                filler.fill(b)
            })?;
            let layer_digest = Digest::of(&layer);
            let (config, manifest) = image_documents(
                &format!("img-{i:03}"),
                &[(base_digest.clone(), base.len() as u64), (layer_digest.clone(), layer.len() as u64)],
            )?;
            let from = (i > 0).then_some("scaling/img-000");
            upload_blob(&addr, &repo, &base_digest, Body::Bytes(&base), from)?;
            upload_blob(&addr, &repo, &layer_digest, Body::Bytes(&layer), None)?;
            let config_digest = Digest::of(&config);
            upload_blob(&addr, &repo, &config_digest, Body::Bytes(&config), None)?;
            put_manifest(&addr, &repo, "1", &manifest)?;
            refs.push(format!("{addr}/{repo}:1"));
            if i == 0 {
                blob_urls.push(format!("http://{addr}/v2/{repo}/blobs/{base_digest}"));
            }
            blob_urls.push(format!("http://{addr}/v2/{repo}/blobs/{layer_digest}"));
            blob_urls.push(format!("http://{addr}/v2/{repo}/blobs/{config_digest}"));
            bytes_per_image.push((layer.len() + config.len()) as u64);
        }
        println!("pushed {big} images to {addr} in {:.1?}", start.elapsed());

        let request_latency = self.request_latency(&addr, &refs)?;
        let mut points = Vec::new();
        for n in [small, big] {
            let list = self.path(&format!("scaling-{n}.txt"));
            fs::write(&list, refs[..n].join("\n") + "\n")?;
            // Base once, then each image's own layer and config.
            let urls = self.path(&format!("scaling-{n}-urls.txt"));
            fs::write(&urls, blob_urls[..1 + 2 * n].join("\n") + "\n")?;
            let bytes = base.len() as u64 + bytes_per_image[..n].iter().sum::<u64>();
            let mut point = ScalingPoint {
                images: n,
                bytes,
                save: Vec::new(),
                pull: Vec::new(),
                curl: Vec::new(),
                save_no_fsync: Vec::new(),
                requests_per_image: 0.0,
            };
            for run in 0..self.runs {
                let store = self.path("scaling-store");
                let out = self.path("scaling.tar");
                let save_args = |store: &Path| {
                    self.hpn(&[
                        "save".as_ref(),
                        "-f".as_ref(),
                        list.as_os_str(),
                        "-o".as_ref(),
                        out.as_os_str(),
                        "--store".as_ref(),
                        store.as_os_str(),
                    ])
                };
                fresh_dir(&store)?;
                remove(&out)?;
                sync_disk()?;
                let before = registry.access_log().len();
                let sample = self.timer.time(&save_args(&store))?;
                if run == 0 {
                    point.requests_per_image = (registry.access_log().len() - before) as f64 / n as f64;
                }
                point.save.push(sample);

                fresh_dir(&store)?;
                sync_disk()?;
                let pull = self.hpn(&[
                    "pull".as_ref(),
                    "-f".as_ref(),
                    list.as_os_str(),
                    "--store".as_ref(),
                    store.as_os_str(),
                ]);
                point.pull.push(self.timer.time(&pull)?);

                sync_disk()?;
                let script = format!("xargs -P {CURL_PARALLEL} -n 1 curl -sf -o /dev/null < \"$0\"");
                let curl = Cmd::new([OsStr::new("sh"), OsStr::new("-c"), OsStr::new(&script), urls.as_os_str()]);
                point.curl.push(self.timer.time(&curl)?);

                if self.have_eatmydata {
                    fresh_dir(&store)?;
                    remove(&out)?;
                    sync_disk()?;
                    point.save_no_fsync.push(self.timer.time(&save_args(&store).without_fsync())?);
                }
                remove(&store)?;
                remove(&out)?;
                println!(
                    "run {}/{}  {n} images: save {:.2} s, pull {:.2} s, curl {:.2} s",
                    run + 1,
                    self.runs,
                    point.save.last().map_or(0.0, |s| s.wall),
                    point.pull.last().map_or(0.0, |s| s.wall),
                    point.curl.last().map_or(0.0, |s| s.wall),
                );
            }
            points.push(point);
        }
        Ok(Scaling { points, request_latency })
    }

    /// One curl process GETs every manifest over one kept-alive connection; the median per request.
    fn request_latency(&self, addr: &str, refs: &[String]) -> Result<f64> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{time_total}\\n", "-H", &format!("Accept: {OCI_MANIFEST}")]);
        for r in refs.iter().take(100) {
            let (_, path) = r.split_once('/').unwrap_or_default();
            let (repo, tag) = path.rsplit_once(':').unwrap_or_default();
            cmd.arg(format!("http://{addr}/v2/{repo}/manifests/{tag}"));
        }
        let output = cmd.stdin(Stdio::null()).output()?;
        let times: Vec<f64> =
            String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
        Ok(median(&times))
    }
}

// ---------------------------------------------------------------------------------------------
// Large: one 2 GiB layer.

#[derive(Debug)]
struct Large {
    layer_bytes: u64,
    rows: Vec<(&'static str, Sample, Option<Key>)>,
}

impl Bench {
    fn large(&self) -> Result<Large> {
        let registry = Registry::start()?;
        let addr = registry.addr().to_owned();
        let start = Instant::now();
        let layer_path = self.path("large-layer.tar");
        let file = BufWriter::with_capacity(1 << 20, File::create(&layer_path)?);
        let mut writer = HashingWriter { inner: file, hasher: Sha256Hasher::new() };
        // A 1 MiB random block, stamped with its position so no two blocks are alike.
        let mut block = vec![0u8; 1 << 20];
        Filler(0x1a26e).fill(&mut block);
        let mut counter = 0u64;
        let written = write_tar_layer(&mut writer, "data/large.bin", LARGE_LAYER_BYTES, |buf| {
            let n = buf.len();
            buf.copy_from_slice(&block[..n]);
            buf[..8].copy_from_slice(&counter.to_le_bytes());
            counter += 1;
        })?;
        writer.flush()?;
        let HashingWriter { inner, hasher } = writer;
        inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let layer_digest = hasher.finish();
        let (config, manifest) = image_documents("large", &[(layer_digest.clone(), written)])?;
        let repo = "large/one-layer";
        upload_blob(&addr, repo, &layer_digest, Body::File(&layer_path), None)?;
        upload_blob(&addr, repo, &Digest::of(&config), Body::Bytes(&config), None)?;
        put_manifest(&addr, repo, "1", &manifest)?;
        remove(&layer_path)?;
        let reference = format!("{addr}/{repo}:1");
        println!("built and pushed {reference} ({}) in {:.1?}", human_size(written), start.elapsed());

        let mut rows = Vec::new();
        let store = self.path("large-store");
        let out = self.path("large.tar");

        fresh_dir(&store)?;
        sync_disk()?;
        let pull = self.hpn(&["pull".as_ref(), reference.as_ref(), "--store".as_ref(), store.as_os_str()]);
        rows.push(("hpn pull", self.timer.time(&pull)?, Some(Key::Pull)));
        print_large(rows.last());

        fresh_dir(&store)?;
        sync_disk()?;
        let save = self.hpn(&[
            "save".as_ref(),
            reference.as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            "--store".as_ref(),
            store.as_os_str(),
        ]);
        rows.push(("hpn save (cold)", self.timer.time(&save)?, Some(Key::Save)));
        print_large(rows.last());

        let registry_b = Registry::start()?;
        let push_store = self.path("large-push-store");
        fresh_dir(&push_store)?;
        sync_disk()?;
        let push = self.hpn(&[
            "push".as_ref(),
            "-i".as_ref(),
            out.as_os_str(),
            "-r".as_ref(),
            registry_b.addr().as_ref(),
            "--store".as_ref(),
            push_store.as_os_str(),
        ]);
        rows.push(("hpn push -i", self.timer.time(&push)?, Some(Key::Push)));
        print_large(rows.last());
        drop(registry_b);

        fresh_dir(&push_store)?;
        sync_disk()?;
        let load =
            self.hpn(&["load".as_ref(), "-i".as_ref(), out.as_os_str(), "--store".as_ref(), push_store.as_os_str()]);
        rows.push(("hpn load -i", self.timer.time(&load)?, Some(Key::Load)));
        print_large(rows.last());
        remove(&push_store)?;
        remove(&store)?;
        remove(&out)?;
        Ok(Large { layer_bytes: written, rows })
    }
}

fn print_large(row: Option<&(&str, Sample, Option<Key>)>) {
    if let Some((name, s, _)) = row {
        println!("{name:<20} {:>7.2} s  {:>6.1} MB RSS", s.wall, s.rss_kb as f64 * 1024.0 / MB);
    }
}

// ---------------------------------------------------------------------------------------------
// The machine.

#[derive(Debug)]
struct Machine {
    cpu: String,
    cores: usize,
    ram: String,
    kernel: String,
    fs: String,
    tools: Vec<(String, String)>,
    commit: String,
    /// /proc/loadavg when the bench started: other work on the machine skews every number.
    load: String,
}

impl Machine {
    fn probe(work: &Path) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let sha_ni = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|f| f == "sha_ni"));
        let cpu = if sha_ni { format!("{cpu} (SHA-NI)") } else { format!("{cpu} (no SHA-NI)") };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(|| "unknown".to_owned(), |kb| human_size(kb * 1024));
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        let fs = filesystem_of(work);
        let version = |program: &str, args: &[&str]| -> String {
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .ok()
                .map(|o| {
                    let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
                    String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_owned()
                })
                .unwrap_or_else(|| "not found".to_owned())
        };
        let tools = vec![
            ("skopeo".to_owned(), version("skopeo", &["--version"])),
            ("docker-registry".to_owned(), version("docker-registry", &["--version"])),
            ("curl".to_owned(), version("curl", &["--version"])),
            ("rustc".to_owned(), version("rustc", &["--version"])),
        ];
        let commit = {
            let rev = version("git", &["-C", &workspace_root().to_string_lossy(), "rev-parse", "--short", "HEAD"]);
            let dirty = Command::new("git")
                .args(["-C", &workspace_root().to_string_lossy(), "status", "--porcelain", "--untracked-files=no"])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty());
            if dirty { format!("{rev} + uncommitted changes") } else { rev }
        };
        let load = load_average();
        Machine { cpu, cores, ram, kernel, fs, tools, commit, load }
    }

    fn summary(&self) -> String {
        format!(
            "machine: {}, {} cores, {} RAM, Linux {}, {} (hpn at {})",
            self.cpu, self.cores, self.ram, self.kernel, self.fs, self.commit
        )
    }
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The file system type and device of the mount holding `path`, from /proc/self/mountinfo.
fn filesystem_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(mount), Some(fstype), Some(source)) = (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        if path.starts_with(mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((mount.len(), format!("{fstype} on {source} (mounted at {mount})")));
        }
    }
    best.map_or_else(|| "unknown".to_owned(), |(_, s)| s)
}

// ---------------------------------------------------------------------------------------------
// The report.

#[derive(Debug)]
struct Report {
    machine: Machine,
    corpus: Corpus,
    results: Results,
    profiles: Vec<Profile>,
    scaling: Scaling,
    large: Option<Large>,
    runs: usize,
    quick: bool,
    total: Duration,
    load_end: String,
}

/// One line of the targets table.
#[derive(Debug)]
struct Target {
    what: String,
    measured: String,
    pass: bool,
    margin: String,
}

impl Report {
    fn baseline(key: Key) -> Option<(Key, &'static str)> {
        match key {
            Key::Save => Some((Key::SkopeoArchive, "skopeo docker-archive loop")),
            Key::Pull => Some((Key::SkopeoOci, "skopeo oci: loop")),
            Key::Push => Some((Key::SkopeoPush, "skopeo push loop")),
            Key::Copy => Some((Key::SkopeoCopy, "skopeo copy loop")),
            _ => None,
        }
    }

    fn rows(&self) -> Vec<Key> {
        [
            Key::Save,
            Key::SkopeoArchive,
            Key::SkopeoOci,
            Key::Pull,
            Key::Warm,
            Key::Load,
            Key::Push,
            Key::SkopeoPush,
            Key::Copy,
            Key::SkopeoCopy,
            Key::Curl,
            Key::CurlSha,
            Key::SaveNoFsync,
            Key::WarmNoFsync,
        ]
        .into_iter()
        .filter(|k| self.results.has(*k))
        .collect()
    }

    /// "12.3× faster" / "0.45×" style comparisons of a row against its skopeo baseline.
    fn versus(&self, key: Key) -> String {
        let r = &self.results;
        let mut parts = Vec::new();
        if let Some((base, name)) = Self::baseline(key) {
            let speedup = r.wall(base) / r.wall(key);
            if speedup >= 1.0 {
                parts.push(format!("{speedup:.1}× faster than {name}"));
            } else {
                parts.push(format!("{:.1}× slower than {name}", 1.0 / speedup));
            }
        }
        if key == Key::Save {
            parts.push(format!("{:.2}× the skopeo oci: loop's time", r.wall(key) / r.wall(Key::SkopeoOci)));
        }
        parts.join("; ")
    }

    fn vs_raw(&self, key: Key) -> String {
        let raw = self.results.wall(Key::Curl);
        match key {
            Key::Curl => "1.00".to_owned(),
            _ => format!("{:.2}", self.results.wall(key) / raw),
        }
    }

    fn targets(&self) -> Vec<Target> {
        let r = &self.results;
        let mut t = Vec::new();
        let at_least = |what: &str, value: f64, goal: f64| Target {
            what: what.to_owned(),
            measured: format!("{value:.1}×"),
            pass: value >= goal,
            margin: if value >= goal {
                format!("{:.0}% above the target", (value / goal - 1.0) * 100.0)
            } else {
                format!("short by {:.0}%: needs {:.2}× less time", (1.0 - value / goal) * 100.0, goal / value)
            },
        };
        let at_most = |what: &str, value: f64, goal: f64, unit: &str| Target {
            what: what.to_owned(),
            measured: format!("{value:.2}{unit}"),
            pass: value <= goal,
            margin: if value <= goal {
                format!("{:.0}% under the limit", (1.0 - value / goal) * 100.0)
            } else {
                format!("over by {:.0}% ({:.2}{unit} too much)", (value / goal - 1.0) * 100.0, value - goal)
            },
        };
        t.push(at_least(
            "`hpn save` ≥ 10× faster than the skopeo docker-archive loop",
            r.wall(Key::SkopeoArchive) / r.wall(Key::Save),
            TARGET_SAVE_VS_ARCHIVE_LOOP,
        ));
        t.push(at_most(
            "`hpn save` ≤ 0.6× the skopeo oci: loop",
            r.wall(Key::Save) / r.wall(Key::SkopeoOci),
            TARGET_SAVE_VS_OCI_LOOP,
            "×",
        ));
        t.push(at_most(
            "`hpn save` within 1.3× of the raw parallel fetch (curl → /dev/null)",
            r.wall(Key::Save) / r.wall(Key::Curl),
            TARGET_SAVE_VS_RAW,
            "×",
        ));
        t.push(at_least(
            "`hpn push -i` ≥ 5× faster than the skopeo loop",
            r.wall(Key::SkopeoPush) / r.wall(Key::Push),
            TARGET_PUSH_VS_SKOPEO,
        ));
        t.push(at_most("warm `hpn save` under 0.5 s", r.wall(Key::Warm), TARGET_WARM_SECONDS, " s"));
        let (worst_key, worst) = self
            .rows()
            .into_iter()
            .filter(|k| k.is_hpn())
            .map(|k| (k, r.rss_mb(k)))
            .fold((Key::Save, 0.0), |a, b| if b.1 > a.1 { b } else { a });
        let mut rss = at_most("peak RSS ≤ 100 MB in every hpn job", worst, TARGET_RSS_MB, " MB");
        rss.measured = format!("{worst:.1} MB ({})", short_label(worst_key));
        t.push(rss);
        if let Some(large) = &self.large {
            let (name, worst) = large
                .rows
                .iter()
                .map(|(n, s, _)| (*n, s.rss_kb as f64 * 1024.0 / MB))
                .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
            let mut rss = at_most(
                &format!("peak RSS ≤ 100 MB with a single {} layer", human_size(large.layer_bytes)),
                worst,
                TARGET_RSS_MB,
                " MB",
            );
            rss.measured = format!("{worst:.1} MB ({name})");
            t.push(rss);
        }
        t
    }

    fn terminal_table(&self) -> String {
        let r = &self.results;
        let mut out = String::new();
        let _ = writeln!(out, "{:<60} {:>8} {:>8} {:>8}  vs", "job", "median", "÷ raw", "RSS MB");
        for key in self.rows() {
            let _ = writeln!(
                out,
                "{:<60} {:>7.2}s {:>8} {:>8.1}  {}",
                key.label(),
                r.wall(key),
                self.vs_raw(key),
                r.rss_mb(key),
                self.versus(key)
            );
        }
        let _ = writeln!(out);
        for t in self.targets() {
            let _ = writeln!(
                out,
                "{}  {:<70} {:>16}  {}",
                if t.pass { "PASS" } else { "MISS" },
                t.what.replace('`', ""),
                t.measured,
                t.margin
            );
        }
        out
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let r = &self.results;
        let m = &self.machine;
        let c = &self.corpus;
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Written by `cargo xtask bench{}` ({} run{} of each job, median reported; the whole bench took {:.0} s). \
             Every number below comes from that run: do not edit by hand, run it again.\n",
            if self.quick { " --quick" } else { "" },
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            self.total.as_secs_f64()
        );
        if self.quick {
            let _ =
                writeln!(md, "**A quick run: one sample per job, no 2 GiB image, no profiles. Not for committing.**\n");
        }

        let _ = writeln!(md, "## Machine\n");
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| CPU | {} |", m.cpu);
        let _ = writeln!(md, "| cores | {} |", m.cores);
        let _ = writeln!(md, "| RAM | {} |", m.ram);
        let _ = writeln!(md, "| kernel | Linux {} |", m.kernel);
        let _ = writeln!(md, "| disk | {} |", m.fs);
        if let Some(rate) = r.disk_mb_s {
            let _ = writeln!(md, "| disk write rate, 512 MiB + fsync | {rate:.0} MB/s |");
        }
        for (tool, version) in &m.tools {
            let _ = writeln!(md, "| {tool} | {version} |");
        }
        let _ = writeln!(md, "| hpn | release build of {} |", m.commit);
        let _ =
            writeln!(md, "| load average (1, 5, 15 min) at the start / at the end | {} / {} |", m.load, self.load_end);
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "Registries are `docker-registry` (the CNCF distribution registry) on 127.0.0.1 with filesystem \
             storage in /tmp; every tool talks plain HTTP to them. Registry A's blobs sit in the page cache for \
             every job alike. The disk is synced before each job and only the command is timed; hpn fsyncs what \
             it writes before it reports success, skopeo and curl do not, so their dirty pages are flushed after \
             their clock stops.\n"
        );

        let _ = writeln!(md, "## Corpus\n");
        let _ = writeln!(
            md,
            "testkit's `fixtures::build(Scale::Bench)`: {} images, {} of blobs across all platforms; a \
             linux/amd64 save moves {} unique layers and {} configs = **{:.0} MB** ({}).\n",
            c.images.len(),
            human_size(c.set_bytes),
            c.layers,
            c.blobs.len() - c.layers,
            c.unique_bytes() as f64 / MB,
            human_size(c.unique_bytes())
        );
        let _ = writeln!(md, "| requirement | corpus | |\n|---|---|---|");
        for (what, value, ok) in c.checks() {
            let _ = writeln!(md, "| {what} | {value} | {} |", if ok { "ok" } else { "**MISSING**" });
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "Images: {}. Docker schema2 and OCI manifests, an OCI index and a Docker manifest list (the host's \
             platform is taken), gzip, zstd and uncompressed layers, a layer listed twice, an image by digest. \
             `hpn save -o one.tar` wrote {} for them.\n",
            c.images.iter().map(|i| format!("`{}`", i.name)).collect::<Vec<_>>().join(", "),
            human_size(r.archive_bytes)
        );
        if !c.zstd_images.is_empty() {
            let _ = writeln!(
                md,
                "skopeo cannot write a docker-archive of an image with zstd layers (skopeo #1286: \"zstd \
                 compression is not supported for docker images\"), so for {} the docker-archive loop fails \
                 after fetching it, and the skopeo push loop has no archive to push. Both skopeo loops are timed as \
                 a script runs them, failure included: they do less work than hpn does, which only flatters skopeo.\n",
                c.zstd_images.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            );
        }

        let _ = writeln!(md, "## Results\n");
        let _ = writeln!(
            md,
            "Wall time, median of {} run{} (min–max in brackets). \"÷ raw\" divides by the parallel curl fetch \
             of the same blobs. Peak RSS is the largest over all runs (for a loop: its largest process). CPU is \
             user + system seconds (median; summed over a loop's processes). Registry CPU is what the \
             docker-registry processes (A, and B where there is one) spent meanwhile, from /proc: the other \
             half of the work on this 2-core machine.\n",
            self.runs,
            if self.runs == 1 { "" } else { "s" }
        );
        let _ =
            writeln!(md, "| job | median | min–max | ÷ raw | peak RSS | CPU user + sys | registry CPU | comparison |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---|");
        for key in self.rows() {
            let (min, max) = r.spread(key);
            let (user, sys) = r.cpu(key);
            let _ = writeln!(
                md,
                "| {} | **{:.2} s** | {:.2}–{:.2} | {} | {:.1} MB | {:.2} + {:.2} s | {:.2} s | {} |",
                key.label(),
                r.wall(key),
                min,
                max,
                self.vs_raw(key),
                r.rss_mb(key),
                user,
                sys,
                r.registry_cpu(key),
                self.versus(key)
            );
        }
        let _ = writeln!(md);
        let notes: Vec<String> = r.notes.values().flatten().cloned().collect();
        if !notes.is_empty() {
            let _ = writeln!(md, "Failures inside the loops (each run):\n");
            for n in notes {
                let _ = writeln!(md, "- `{}`", n.replace('`', "'"));
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(
            md,
            "Raw fetch: `xargs -P {CURL_PARALLEL} -n 1 curl` over the {} unique blob URLs; with `| sha256sum` \
             every hash is checked against its digest. It is a floor for fetching, not for saving: it writes \
             nothing. hpn writes each blob into the store and into the archive.\n",
            c.blobs.len()
        );

        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(md, "| target | measured | | by how much |\n|---|---|---|---|");
        let targets = self.targets();
        for t in &targets {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                t.what,
                t.measured,
                if t.pass { "PASS" } else { "**MISS**" },
                t.margin
            );
        }
        let _ = writeln!(md);
        self.write_missed(&mut md, &targets);
        self.write_scaling(&mut md);
        self.write_large(&mut md);
        self.write_profiles(&mut md);
        self.write_regressions(&mut md);
        md
    }

    /// Where a target is missed: the measured breakdown of the hpn job behind it.
    fn write_missed(&self, md: &mut String, targets: &[Target]) {
        let missed: Vec<&Target> = targets.iter().filter(|t| !t.pass).collect();
        if missed.is_empty() {
            return;
        }
        let r = &self.results;
        let _ = writeln!(md, "## Where the time goes\n");
        let _ = writeln!(
            md,
            "Measured in the same run, for the targets missed above. \"fsync off\" runs the same command under \
             `eatmydata` (an LD_PRELOAD that turns fsync/fdatasync/sync_file_range into no-ops): the difference is \
             what waiting for the disk costs.\n"
        );
        let breakdown = |md: &mut String, key: Key, no_fsync: Option<Key>, written: f64| {
            let wall = r.wall(key);
            let (user, sys) = r.cpu(key);
            let _ = writeln!(
                md,
                "- `{}`: {wall:.2} s wall, {user:.2} s user + {sys:.2} s system CPU = {:.0}% of one core of \
                 the {} (the rest is waiting: on the registry, the disk or each other).",
                short_label(key),
                (user + sys) / wall * 100.0,
                self.machine.cores
            );
            let registry = r.registry_cpu(key);
            if registry > 0.0 {
                let _ = writeln!(
                    md,
                    "  - the registries spent {registry:.2} s of CPU meanwhile: hpn and the registries together used {:.0}% of the {:.2} core-seconds the machine had.",
                    (user + sys + registry) / (wall * self.machine.cores as f64) * 100.0,
                    wall * self.machine.cores as f64
                );
            }
            if let Some(nf) = no_fsync.filter(|k| r.has(*k)) {
                let off = r.wall(nf);
                let _ = writeln!(
                    md,
                    "  - with fsync off: {off:.2} s, so waiting for the disk costs {:.2} s ({:.0}% of the wall time).",
                    wall - off,
                    (wall - off) / wall * 100.0
                );
            }
            if let Some(rate) = r.disk_mb_s
                && written > 0.0
            {
                let _ = writeln!(
                    md,
                    "  - it writes {:.0} MB that are fsync'd; at this disk's {rate:.0} MB/s fsync'd write rate that \
                     alone takes {:.2} s.",
                    written / MB,
                    written / MB / rate
                );
            }
        };
        let archive = r.archive_bytes as f64;
        let store = self.corpus.unique_bytes() as f64;
        let save_missed = missed.iter().any(|t| t.what.starts_with("`hpn save`"));
        if save_missed {
            breakdown(md, Key::Save, Some(Key::SaveNoFsync), archive + store);
            let _ = writeln!(
                md,
                "  - the raw fetch it is compared with takes {:.2} s ({:.2} s with sha256), writing nothing; \
                 hpn writes every blob twice (store, then archive) and waits for both to reach the disk.",
                r.wall(Key::Curl),
                r.wall(Key::CurlSha)
            );
            let needed = r.wall(Key::SkopeoArchive) / TARGET_SAVE_VS_ARCHIVE_LOOP;
            let _ = writeln!(
                md,
                "  - 10× the skopeo docker-archive loop ({:.2} s here) means {needed:.2} s: {:.2}× the raw fetch, which writes nothing at all.",
                r.wall(Key::SkopeoArchive),
                needed / r.wall(Key::Curl)
            );
        }
        if missed.iter().any(|t| t.what.starts_with("warm")) {
            breakdown(md, Key::Warm, Some(Key::WarmNoFsync), archive);
            let _ = writeln!(
                md,
                "  - the archive's blobs come from the store by copy_file_range; on {} that is a copy in the kernel \
                 (no reflink), then the whole archive is fsync'd.",
                self.machine.fs.split_whitespace().next().unwrap_or("this file system")
            );
        }
        if missed.iter().any(|t| t.what.starts_with("`hpn push")) {
            breakdown(md, Key::Push, None, 0.0);
            let needed = r.wall(Key::SkopeoPush) / TARGET_PUSH_VS_SKOPEO;
            let registry = r.registry_cpu(Key::Push);
            let (su, ss) = r.cpu(Key::SkopeoPush);
            let _ = writeln!(
                md,
                "  - 5× the skopeo loop ({:.2} s) means {needed:.2} s. Registry B alone spent {registry:.2} CPU-seconds receiving hpn's upload (hashing and writing every byte), {:.2} s even if it kept both cores busy. The skopeo loop spent {:.2} s of its own CPU (it gzips the layers the docker-archive holds uncompressed) and the registry {:.2} s.",
                r.wall(Key::SkopeoPush),
                registry / self.machine.cores as f64,
                su + ss,
                r.registry_cpu(Key::SkopeoPush)
            );
        }
        if missed.iter().any(|t| t.what.starts_with("peak RSS")) {
            let _ = writeln!(md, "- peak RSS per job is in the results table.");
        }
        if !self.profiles.is_empty() {
            let _ = writeln!(md, "\nThe CPU profiles (perf) are below, under \"Profiles\".");
        }
        let _ = writeln!(md);
    }

    fn write_scaling(&self, md: &mut String) {
        let s = &self.scaling;
        let (Some(small), Some(big)) = (s.points.first(), s.points.last()) else { return };
        let _ = writeln!(md, "## Scaling: many small images\n");
        let _ = writeln!(
            md,
            "Images generated by the bench: each is an OCI image with a shared {} base layer plus a {} layer and \
             a config of its own, in its own repository (`scaling/img-NNN:1`). `hpn save -f list -o` of the \
             first N, cold, and `hpn pull` of the same; the raw fetch is the parallel curl of the same blobs. \
             Requests are counted in the registry's access log. One manifest GET on a kept-alive connection \
             takes {:.2} ms here (curl, median of 100).\n",
            human_size(SCALING_BASE_BYTES as u64),
            human_size(SCALING_UNIQUE_BYTES as u64 + 1536),
            s.request_latency * 1000.0
        );
        let _ = writeln!(
            md,
            "| images | unique bytes | hpn save | per image | hpn pull | raw fetch | save, fsync off | requests per image | hpn CPU per image | registry CPU per image |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let med = |v: &[Sample]| median(&v.iter().map(|x| x.wall).collect::<Vec<_>>());
        for p in &s.points {
            let save = med(&p.save);
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} s | {:.1} ms | {:.2} s | {:.2} s | {} | {:.1} | {:.1} ms | {:.1} ms |",
                p.images,
                human_size(p.bytes),
                save,
                save / p.images as f64 * 1000.0,
                med(&p.pull),
                med(&p.curl),
                if p.save_no_fsync.is_empty() { "–".to_owned() } else { format!("{:.2} s", med(&p.save_no_fsync)) },
                p.requests_per_image,
                median(&p.save.iter().map(|x| x.user + x.sys).collect::<Vec<_>>()) / p.images as f64 * 1000.0,
                median(&p.save.iter().map(|x| x.registry_cpu).collect::<Vec<_>>()) / p.images as f64 * 1000.0
            );
        }
        let (t_small, t_big) = (med(&small.save), med(&big.save));
        let images_ratio = big.images as f64 / small.images as f64;
        let bytes_ratio = big.bytes as f64 / small.bytes as f64;
        let time_ratio = t_big / t_small;
        let marginal = (t_big - t_small) / (big.images - small.images) as f64;
        let serial = big.requests_per_image * s.request_latency;
        let main_rate = self.corpus.unique_bytes() as f64 / self.results.wall(Key::Save);
        let bytes_time = (big.bytes - small.bytes) as f64 / (big.images - small.images) as f64 / main_rate;
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "From {} to {} images the image count grows {images_ratio:.1}×, the bytes {bytes_ratio:.1}×, and \
             `hpn save`'s time {time_ratio:.2}×. Each added image costs {:.1} ms: its bytes account for {:.2} ms \
             at the {:.0} MB/s the main corpus saved at, and its {:.1} requests, sent one after another, would \
             take {:.2} ms of round trips. {}\n",
            small.images,
            big.images,
            marginal * 1000.0,
            bytes_time * 1000.0,
            main_rate / MB,
            big.requests_per_image,
            serial * 1000.0,
            scaling_verdict(time_ratio, bytes_ratio, images_ratio, marginal, serial, bytes_time)
        );
        let registry_ms =
            median(&big.save.iter().map(|x| x.registry_cpu).collect::<Vec<_>>()) / big.images as f64 * 1000.0;
        let _ = writeln!(
            md,
            "Against the machine's limit: the parallel curl of the same blobs (one process per blob, no manifests) takes {:.2} s for {} images, so `hpn save` runs at {:.2}× the raw fetch; the registry spends {registry_ms:.1} ms of CPU per image serving hpn, {:.1} ms of wall time per image even if it had both cores to itself.\n",
            med(&big.curl),
            big.images,
            t_big / med(&big.curl),
            registry_ms / self.machine.cores as f64
        );
        if let (Some(nf_small), Some(nf_big)) = (
            (!small.save_no_fsync.is_empty()).then(|| med(&small.save_no_fsync)),
            (!big.save_no_fsync.is_empty()).then(|| med(&big.save_no_fsync)),
        ) {
            let nf_marginal = (nf_big - nf_small) / (big.images - small.images) as f64;
            let _ = writeln!(
                md,
                "With fsync off the added image costs {:.1} ms, so {:.1} ms of each image's {:.1} ms is waiting \
                 for the disk (each image adds fsync'd blobs to the store and rewrites index.json).\n",
                nf_marginal * 1000.0,
                (marginal - nf_marginal) * 1000.0,
                marginal * 1000.0
            );
        }
    }

    fn write_large(&self, md: &mut String) {
        let _ = writeln!(md, "## One {} layer\n", human_size(LARGE_LAYER_BYTES));
        let Some(large) = &self.large else {
            let _ = writeln!(md, "Not run (`--quick`).\n");
            return;
        };
        let _ = writeln!(
            md,
            "An OCI image of a single uncompressed {} layer (generated, incompressible), one run each. Peak RSS \
             must not follow the layer size; the corpus column is the same job on the bench corpus, whose largest \
             layer is about 56 MiB.\n",
            human_size(large.layer_bytes)
        );
        let _ =
            writeln!(md, "| job | wall | throughput | peak RSS | same job on the corpus |\n|---|---:|---:|---:|---:|");
        for (name, s, key) in &large.rows {
            let corpus = key.map_or(f64::NAN, |k| self.results.rss_mb(k));
            let _ = writeln!(
                md,
                "| {name} | {:.2} s | {:.0} MB/s | {:.1} MB | {:.1} MB |",
                s.wall,
                large.layer_bytes as f64 / MB / s.wall,
                s.rss_kb as f64 * 1024.0 / MB,
                corpus
            );
        }
        let worst_growth = large
            .rows
            .iter()
            .filter_map(|(_, s, k)| k.map(|k| s.rss_kb as f64 * 1024.0 / MB - self.results.rss_mb(k)))
            .fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            md,
            "\nLargest growth of peak RSS from the corpus to the {} layer: {worst_growth:+.1} MB{}.\n",
            human_size(large.layer_bytes),
            if worst_growth <= 16.0 {
                " — flat: memory is bounded by buffers, not by layer size"
            } else {
                " — NOT flat"
            }
        );
    }

    fn write_profiles(&self, md: &mut String) {
        if self.profiles.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Profiles\n");
        let _ = writeln!(
            md,
            "`perf record -F 999 -g` of one run each (CPU samples only: time spent waiting does not show), top \
             entries by self time. `[kernel.kallsyms]` is work the kernel does for hpn: copying pages, TCP, ext4.\n"
        );
        for p in &self.profiles {
            let _ = writeln!(md, "**{}** ({} samples):\n", p.name, p.samples);
            let _ = writeln!(md, "| self | where |\n|---:|---|");
            for (pct, what) in &p.top {
                let _ = writeln!(md, "| {pct:.1}% | `{}` |", what.replace('`', "'").replace('|', "\\|"));
            }
            let _ = writeln!(md);
        }
    }

    fn write_regressions(&self, md: &mut String) {
        let r = &self.results;
        let worst_spread = self
            .rows()
            .into_iter()
            .filter(|k| k.is_hpn())
            .map(|k| {
                let (min, max) = r.spread(k);
                (max - min) / r.wall(k)
            })
            .fold(0.0, f64::max);
        let _ = writeln!(md, "## How to spot a regression\n");
        let _ = writeln!(
            md,
            "- **End to end**: run `cargo xtask bench` on this machine and compare with the table above. The \
             widest min–max spread of an hpn row in this run is {:.0}% of its median, so a median more than \
             max(10%, that spread) slower on an hpn row, with the skopeo and curl rows steady, is a regression; \
             if the skopeo and curl rows moved too, the machine did. The ratios (\"÷ raw\", \"× faster\") travel \
             between machines better than seconds do.",
            worst_spread * 100.0
        );
        let _ = writeln!(
            md,
            "- **Memory**: any hpn job above {TARGET_RSS_MB:.0} MB peak RSS, or a peak that grows with the layer \
             size in the {} section, is a regression whatever the times say.",
            human_size(LARGE_LAYER_BYTES)
        );
        let _ = writeln!(
            md,
            "- **Scaling**: the per-image cost in the scaling table should stay flat from the small to the big \
             list; if it grows, something is done per image that depends on how many there are (index.json \
             rewrites, lists scanned per blob)."
        );
        let _ = writeln!(
            md,
            "- **Hot paths**: `cargo bench` runs the criterion benches in `benches/` (sha256 + store write, tar \
             writing, manifest parsing, archive index parsing), each reporting bytes per second. Save a baseline \
             before a change and compare after:\n\n  ```sh\n  cargo bench -- --save-baseline before\n  # … change …\n  \
             cargo bench -- --baseline before\n  ```\n\n  criterion prints `Performance has regressed` for a change \
             outside its noise threshold (p < 0.05). sha256 should stay near the SHA-NI rate (GB/s); a drop to a \
             few hundred MB/s means the SHA-NI code path is no longer taken."
        );
        let _ = writeln!(md);
    }
}

fn short_label(key: Key) -> &'static str {
    match key {
        Key::Save => "hpn save (cold)",
        Key::Warm => "hpn save (warm)",
        Key::Pull => "hpn pull",
        Key::Load => "hpn load -i",
        Key::Push => "hpn push -i",
        Key::Copy => "hpn copy",
        other => other.label(),
    }
}

fn scaling_verdict(
    time_ratio: f64,
    bytes_ratio: f64,
    images_ratio: f64,
    marginal: f64,
    serial: f64,
    bytes_time: f64,
) -> String {
    // Closer (in log scale) to the bytes ratio than to the image ratio: time follows bytes.
    let to_bytes = (time_ratio.ln() - bytes_ratio.ln()).abs();
    let to_images = (time_ratio.ln() - images_ratio.ln()).abs();
    let overlap = format!(
        "An added image costs {:.0}% of the time its requests take sent one after another on an idle connection.",
        marginal / serial * 100.0
    );
    if to_bytes <= to_images {
        format!("Time follows the bytes more than the image count. {overlap}")
    } else {
        format!(
            "Time follows the image count more than the bytes: a fixed cost of about {:.1} ms per image beyond its bytes. {overlap}",
            (marginal - bytes_time).max(0.0) * 1000.0
        )
    }
}
