//! `cargo xtask bench`: hpn against skopeo and against the raw limit of the machine, on real
//! registries, with every number written to BENCHMARKS.md.
//!
//! One run starts registry A, builds the bench fixtures (testkit's `Scale::Bench`) and pushes
//! them there, then runs every job `--runs` times, interleaved (run 1 of every job, then run 2,
//! …) so that drift of the machine spreads over all of them. Each job starts from the state the
//! issue names (an empty store, a fresh registry B, no output file), the disk is synced before it
//! and only the command itself is timed. Peak RSS comes from `/usr/bin/time` (for a loop of
//! processes: the largest one). Then a scaling run (200 small images), a sweep of the per-host
//! request limit (which picks the default), a 2 GiB single-layer image, and diagnostics that explain a missed target: the same `hpn save` with `--sync` (every
//! blob, index.json and archive fsync'd, which hpn does not do by default), the disk's fsync'd
//! write rate and a `perf` profile.

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
/// Requests per registry host tried by the concurrency sweep (`parallel.requests_per_host`).
/// Blobs in flight are capped at 8 elsewhere, so more than 8 would measure nothing new.
const CONCURRENCY_SWEEP: [usize; 6] = [1, 2, 3, 4, 6, 8];
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

    step(&format!("concurrency: requests per registry host {CONCURRENCY_SWEEP:?}"));
    let concurrency = bench.concurrency()?;

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
        concurrency,
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

impl BenchImage {
    /// The image in registry A, as skopeo and `hpn copy` name it.
    fn source_url(&self) -> String {
        format!("docker://{}", self.source)
    }

    /// Where a copy of it goes in `registry`.
    fn dest_url(&self, registry: &str) -> String {
        format!("docker://{registry}/{}:{}", self.name, self.dest_tag)
    }
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

    /// Runs the command with `key=value` in its environment (through `env`, which execs it, so
    /// `/usr/bin/time` still measures the command itself).
    fn with_env(mut self, key: &str, value: &str) -> Cmd {
        self.argv.splice(0..0, ["env".into(), format!("{key}={value}").into()]);
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
            "HPN_SYNC",
            "HPN_STALL_TIMEOUT",
            "HPN_REQUESTS_PER_HOST",
            "RUST_LOG",
        ] {
            command.env_remove(key);
        }
        // hpn's cache (where it remembers pushed blobs, for mounts) belongs to the bench, not
        // to whoever runs it: a user's earlier pushes must not shape what is measured.
        command.env("XDG_CACHE_HOME", self.cwd.join("xdg-cache"));
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
    SaveSynced,
    WarmSynced,
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
            Key::SaveSynced => "diagnostic: hpn save cold with --sync (fsync everything)",
            Key::WarmSynced => "diagnostic: hpn save warm with --sync",
        }
    }

    fn is_hpn(self) -> bool {
        matches!(
            self,
            Key::Save | Key::Pull | Key::Warm | Key::Load | Key::Push | Key::Copy | Key::SaveSynced | Key::WarmSynced
        )
    }

    /// The `--sync` diagnostic of a default job, where there is one.
    fn synced(self) -> Option<Key> {
        match self {
            Key::Save => Some(Key::SaveSynced),
            Key::Warm => Some(Key::WarmSynced),
            _ => None,
        }
    }

    /// The default job a `--sync` diagnostic runs with `--sync`.
    fn unsynced(self) -> Option<Key> {
        [Key::Save, Key::Warm].into_iter().find(|k| k.synced() == Some(self))
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
    list: PathBuf,
    urls: PathBuf,
    fetch_sha: PathBuf,
    expected_hex: BTreeSet<String>,
}

/// An argument of a command line: `&"save"`, `&path`, `&addr`.
type Arg<'x> = &'x dyn AsRef<OsStr>;

/// The store a timed hpn command uses, by its name in the work directory.
#[derive(Debug, Clone, Copy)]
enum Store {
    /// Created empty before the command and removed after it.
    Fresh(&'static str),
    /// Filled once, before the first run, and kept: every blob is there.
    Filled(&'static str),
}

/// One hpn command, set up the way every job sets one up: its store starts empty (unless it is a
/// filled one), its output file (`-o`) does not exist yet, the disk is synced, and then only the
/// command runs. Afterwards an empty-at-the-start store is removed, and the output file too
/// unless a later job reads it.
struct HpnRun<'b> {
    bench: &'b Bench,
    args: Vec<OsString>,
    store: Store,
    out: Option<PathBuf>,
    keep_out: bool,
    synced: bool,
    env: Vec<(&'static str, String)>,
}

impl HpnRun<'_> {
    /// Runs with `key=value` in the environment.
    fn env(mut self, key: &'static str, value: String) -> Self {
        self.env.push((key, value));
        self
    }

    /// Writes `-o FILE`.
    fn out(mut self, file: PathBuf) -> Self {
        self.out = Some(file);
        self
    }

    /// Leaves the output file for the jobs that read it.
    fn keep_out(mut self) -> Self {
        self.keep_out = true;
        self
    }

    /// Runs with `--sync`: every blob, index.json, archive and directory fsync'd.
    fn synced(mut self) -> Self {
        self.synced = true;
        self
    }

    /// Sets the scene, hands the command line to `run`, and cleans up after it.
    fn run_with<T>(self, run: impl FnOnce(&Cmd) -> Result<T>) -> Result<T> {
        let (fresh, store) = match self.store {
            Store::Fresh(name) => (true, self.bench.path(name)),
            Store::Filled(name) => (false, self.bench.path(name)),
        };
        if fresh {
            fresh_dir(&store)?;
        }
        let mut argv: Vec<OsString> = Vec::new();
        if self.synced {
            argv.push("--sync".into());
        }
        argv.extend(self.args);
        if let Some(out) = &self.out {
            remove(out)?;
            argv.extend(["-o".into(), out.clone().into_os_string()]);
        }
        argv.extend(["--store".into(), store.clone().into_os_string()]);
        sync_disk()?;
        let cmd = self.bench.hpn(&argv.iter().map(|a| a as Arg<'_>).collect::<Vec<_>>());
        let cmd = self.env.iter().fold(cmd, |cmd, (key, value)| cmd.with_env(key, value));
        let result = run(&cmd)?;
        if fresh {
            remove(&store)?;
        }
        if let Some(out) = self.out.filter(|_| !self.keep_out) {
            remove(&out)?;
        }
        Ok(result)
    }

    /// Runs it, timed.
    fn time(self) -> Result<Sample> {
        let timer = &self.bench.timer;
        self.run_with(|cmd| timer.time(cmd))
    }
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
            expected_hex: BTreeSet::new(),
        })
    }

    fn hpn(&self, args: &[Arg<'_>]) -> Cmd {
        let mut argv: Vec<OsString> = vec![self.hpn.clone().into(), "--quiet".into()];
        argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
        Cmd::new(argv)
    }

    /// `hpn ARGS --store STORE`, to be timed (or profiled) as a job.
    fn hpn_run(&self, store: Store, args: &[Arg<'_>]) -> HpnRun<'_> {
        HpnRun {
            bench: self,
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            store,
            out: None,
            keep_out: false,
            synced: false,
            env: Vec::new(),
        }
    }

    /// `hpn save -f LIST -o NAME --store STORE`, the corpus saved into one archive.
    fn save_list(&self, store: Store, out: &str) -> HpnRun<'_> {
        self.hpn_run(store, &[&"save", &"-f", &self.list]).out(self.path(out))
    }

    /// A job that times one hpn command, set up afresh for every run by `run`.
    fn hpn_job<'a>(&'a self, key: Key, run: impl Fn() -> HpnRun<'a> + 'a) -> Job<'a> {
        Job { key, run: Box::new(move |_| Ok((run().time()?, Vec::new()))) }
    }

    /// Syncs the disk and times one command per image, one after another, as a script runs them.
    fn time_per_image(
        &self,
        corpus: &Corpus,
        allow_fail: bool,
        cmd: impl FnMut(&BenchImage) -> Cmd,
    ) -> Result<(Sample, Vec<String>)> {
        sync_disk()?;
        let cmds: Vec<Cmd> = corpus.images.iter().map(cmd).collect();
        self.timer.time_loop(&cmds, allow_fail)
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
        Ok(())
    }

    fn main_jobs<'a>(&'a self, corpus: &'a Corpus) -> Vec<Job<'a>> {
        let one_tar = self.path("hpn-one.tar");
        let skopeo_archives = self.path("skopeo-archives");
        let mut jobs: Vec<Job<'a>> = Vec::new();

        // hpn save, cold. Its archive feeds load and push.
        jobs.push(
            self.hpn_job(Key::Save, move || self.save_list(Store::Fresh("save-store"), "hpn-one.tar").keep_out()),
        );
        // skopeo to docker-archive, one file per image: how users script it today.
        {
            let dir = skopeo_archives.clone();
            jobs.push(Job {
                key: Key::SkopeoArchive,
                run: Box::new(move |_| {
                    fresh_dir(&dir)?;
                    self.time_per_image(corpus, true, |image| {
                        let file = dir.join(format!("{}.tar", image.name));
                        let dest = if image.tagged {
                            format!("docker-archive:{}:{}", file.display(), image.source)
                        } else {
                            format!("docker-archive:{}", file.display())
                        };
                        skopeo_copy(&image.source_url(), &dest)
                    })
                }),
            });
        }
        // skopeo into one shared OCI layout.
        jobs.push(Job {
            key: Key::SkopeoOci,
            run: Box::new(move |_| {
                let dir = self.path("skopeo-oci");
                fresh_dir(&dir)?;
                let result = self.time_per_image(corpus, false, |image| {
                    skopeo_copy(
                        &image.source_url(),
                        &format!("oci:{}:{}-{}", dir.display(), image.name, image.dest_tag),
                    )
                });
                remove(&dir)?;
                result
            }),
        });
        // hpn pull into an empty store.
        jobs.push(
            self.hpn_job(Key::Pull, move || self.hpn_run(Store::Fresh("pull-store"), &[&"pull", &"-f", &self.list])),
        );
        // hpn save with every blob in the store (filled once, untimed, before the first run).
        jobs.push(Job {
            key: Key::Warm,
            run: Box::new(move |run| {
                if run == 0 {
                    let warm_store = self.path("warm-store");
                    fresh_dir(&warm_store)?;
                    self.timer.time(&self.hpn(&[&"pull", &"-f", &self.list, &"--store", &warm_store]))?;
                }
                Ok((self.save_list(Store::Filled("warm-store"), "warm.tar").time()?, Vec::new()))
            }),
        });
        // hpn load of the cold save's archive.
        {
            let one_tar = one_tar.clone();
            jobs.push(
                self.hpn_job(Key::Load, move || self.hpn_run(Store::Fresh("load-store"), &[&"load", &"-i", &one_tar])),
            );
        }
        // hpn push -i into a fresh registry B.
        jobs.push(Job {
            key: Key::Push,
            run: Box::new(move |_| {
                let registry_b = Registry::start()?;
                let push =
                    self.hpn_run(Store::Fresh("push-store"), &[&"push", &"-i", &one_tar, &"-r", &registry_b.addr()]);
                Ok((push.time()?, Vec::new()))
            }),
        });
        // skopeo pushing the docker-archives it wrote, into a fresh registry B.
        jobs.push(Job {
            key: Key::SkopeoPush,
            run: Box::new(move |_| {
                let registry_b = Registry::start()?;
                sync_disk()?;
                let mut cmds = Vec::new();
                let mut missing = Vec::new();
                for image in &corpus.images {
                    let file = skopeo_archives.join(format!("{}.tar", image.name));
                    if !file.exists() {
                        missing.push(format!("{}: no docker-archive to push (skopeo could not write it)", image.name));
                        continue;
                    }
                    cmds.push(skopeo_copy(
                        &format!("docker-archive:{}", file.display()),
                        &image.dest_url(registry_b.addr()),
                    ));
                }
                let (sample, mut failures) = self.timer.time_loop(&cmds, false)?;
                failures.extend(missing);
                Ok((sample, failures))
            }),
        });
        // Registry to registry, one process per image.
        jobs.push(Job {
            key: Key::Copy,
            run: Box::new(move |_| {
                let registry_b = Registry::start()?;
                let store = self.path("copy-store");
                fresh_dir(&store)?;
                let result = self.time_per_image(corpus, false, |image| {
                    self.hpn(&[&"copy", &image.source_url(), &image.dest_url(registry_b.addr()), &"--store", &store])
                });
                remove(&store)?;
                result
            }),
        });
        jobs.push(Job {
            key: Key::SkopeoCopy,
            run: Box::new(move |_| {
                let registry_b = Registry::start()?;
                self.time_per_image(corpus, false, |image| {
                    skopeo_copy(&image.source_url(), &image.dest_url(registry_b.addr()))
                })
            }),
        });
        // The raw limit.
        jobs.push(Job {
            key: Key::Curl,
            run: Box::new(move |_| {
                sync_disk()?;
                Ok((self.timer.time(&curl_all(&self.urls))?, Vec::new()))
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
        // Diagnostics: the same saves with --sync, which waits for every byte to reach the disk.
        // The warm one reads the store the warm job filled before it in the first run.
        jobs.push(self.hpn_job(Key::SaveSynced, move || {
            self.save_list(Store::Fresh("save-synced-store"), "save-synced.tar").synced()
        }));
        jobs.push(
            self.hpn_job(Key::WarmSynced, move || {
                self.save_list(Store::Filled("warm-store"), "warm-synced.tar").synced()
            }),
        );
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
        let one_tar = self.path("hpn-one.tar");
        profiles.extend(self.profile("hpn save (cold)", self.save_list(Store::Fresh("perf-store"), "perf.tar"))?);
        profiles.extend(self.profile("hpn save (warm)", self.save_list(Store::Filled("warm-store"), "perf.tar"))?);
        // push -i: the registry's side is another process, so this shows hpn's own share.
        if one_tar.exists() {
            let registry_b = Registry::start()?;
            let push = self.hpn_run(Store::Fresh("perf-store"), &[&"push", &"-i", &one_tar, &"-r", &registry_b.addr()]);
            profiles.extend(self.profile("hpn push -i", push)?);
        }
        Ok(profiles)
    }

    /// One run of `hpn` under `perf record`; None if perf failed.
    fn profile(&self, name: &str, hpn: HpnRun<'_>) -> Result<Option<Profile>> {
        let data = self.path("perf.data");
        let ok = hpn.run_with(|cmd| {
            Ok(Command::new("perf")
                .args(["record", "-q", "-F", "999", "-g", "-o"])
                .arg(&data)
                .arg("--")
                .args(&cmd.argv)
                .current_dir(&self.work)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()))
        })?;
        let profile = if ok { perf_report(name, &data)? } else { None };
        remove(&data)?;
        Ok(profile)
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

/// The raw fetch: every blob URL in `urls`, by parallel curls, into /dev/null.
fn curl_all(urls: &Path) -> Cmd {
    let script = format!("xargs -P {CURL_PARALLEL} -n 1 curl -sf -o /dev/null < \"$0\"");
    Cmd::new([OsStr::new("sh"), OsStr::new("-c"), OsStr::new(&script), urls.as_os_str()])
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
    /// The same save with `--sync`.
    save_synced: Vec<Sample>,
    /// HTTP requests hpn save sent to the registry, per image.
    requests_per_image: f64,
}

/// `hpn save` cold and `hpn push -i` with one per-host request limit.
#[derive(Debug)]
struct ConcurrencyPoint {
    requests_per_host: usize,
    save: Vec<Sample>,
    push: Vec<Sample>,
}

impl Bench {
    /// Times the two jobs that lean on one registry hardest for each limit in
    /// [`CONCURRENCY_SWEEP`], interleaved, `runs` times: the default is chosen by this table.
    fn concurrency(&self) -> Result<Vec<ConcurrencyPoint>> {
        let one_tar = self.path("hpn-one.tar");
        let mut points: Vec<ConcurrencyPoint> = CONCURRENCY_SWEEP
            .iter()
            .map(|&requests_per_host| ConcurrencyPoint { requests_per_host, save: Vec::new(), push: Vec::new() })
            .collect();
        for _ in 0..self.runs {
            for point in &mut points {
                let limit = point.requests_per_host.to_string();
                let save = self.save_list(Store::Fresh("sweep-store"), "sweep.tar");
                point.save.push(save.env("HPN_REQUESTS_PER_HOST", limit.clone()).time()?);
                let registry_b = Registry::start()?;
                let push =
                    self.hpn_run(Store::Fresh("sweep-store"), &[&"push", &"-i", &one_tar, &"-r", &registry_b.addr()]);
                point.push.push(push.env("HPN_REQUESTS_PER_HOST", limit).time()?);
            }
        }
        Ok(points)
    }
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
                save_synced: Vec::new(),
                requests_per_image: 0.0,
            };
            for run in 0..self.runs {
                let save = || {
                    self.hpn_run(Store::Fresh("scaling-store"), &[&"save", &"-f", &list]).out(self.path("scaling.tar"))
                };
                let before = registry.access_log().len();
                let sample = save().time()?;
                if run == 0 {
                    point.requests_per_image = (registry.access_log().len() - before) as f64 / n as f64;
                }
                point.save.push(sample);
                point.pull.push(self.hpn_run(Store::Fresh("scaling-store"), &[&"pull", &"-f", &list]).time()?);
                sync_disk()?;
                point.curl.push(self.timer.time(&curl_all(&urls))?);
                point.save_synced.push(save().synced().time()?);
                println!(
                    "run {}/{}  {n} images: save {:.2} s, pull {:.2} s, curl {:.2} s, save --sync {:.2} s",
                    run + 1,
                    self.runs,
                    point.save.last().map_or(0.0, |s| s.wall),
                    point.pull.last().map_or(0.0, |s| s.wall),
                    point.curl.last().map_or(0.0, |s| s.wall),
                    point.save_synced.last().map_or(0.0, |s| s.wall),
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

        let out = self.path("large.tar");
        let mut rows = Vec::new();
        let mut row = |name: &'static str, key: Key, sample: Sample| {
            rows.push((name, sample, Some(key)));
            print_large(rows.last());
        };
        row("hpn pull", Key::Pull, self.hpn_run(Store::Fresh("large-store"), &[&"pull", &reference]).time()?);
        let save = self.hpn_run(Store::Fresh("large-store"), &[&"save", &reference]).out(out.clone()).keep_out();
        row("hpn save (cold)", Key::Save, save.time()?);
        let registry_b = Registry::start()?;
        let push = self.hpn_run(Store::Fresh("large-push-store"), &[&"push", &"-i", &out, &"-r", &registry_b.addr()]);
        row("hpn push -i", Key::Push, push.time()?);
        drop(registry_b);
        row("hpn load -i", Key::Load, self.hpn_run(Store::Fresh("large-push-store"), &[&"load", &"-i", &out]).time()?);
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
    concurrency: Vec<ConcurrencyPoint>,
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
            Key::SaveSynced,
            Key::WarmSynced,
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
        if let Some(default) = key.unsynced().filter(|k| r.has(*k)) {
            parts.push(format!(
                "{:+.2} s ({:.2}×) against {} without --sync",
                r.wall(key) - r.wall(default),
                r.wall(key) / r.wall(default),
                short_label(default)
            ));
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
             every job alike. The disk is synced before each job and only the command is timed. By default \
             hpn, skopeo and curl all leave write-back to the kernel: none of them waits for its writes to reach \
             the disk, and what is still dirty when a command exits is flushed by the sync before the next job, \
             outside any clock. The `--sync` rows run hpn with `--sync`, which fsyncs every blob, index.json, \
             archive and directory before it reports success; the disk write rate above, measured with fsync, is \
             what bounds them.\n"
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
             half of the work on this {}-core machine.\n",
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            self.machine.cores
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
        self.write_durability(&mut md);

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
        self.write_concurrency(&mut md);
        self.write_large(&mut md);
        self.write_profiles(&mut md);
        self.write_regressions(&mut md);
        md
    }

    /// The file system the bench wrote to: "ext4".
    fn fs_type(&self) -> &str {
        self.machine.fs.split_whitespace().next().unwrap_or("the file system")
    }

    /// Bytes a job writes (what `--sync` waits for): every blob into the store and then the archive
    /// for a cold save, only the archive for a warm one.
    fn written_bytes(&self, key: Key) -> f64 {
        let archive = self.results.archive_bytes as f64;
        match key {
            Key::Save | Key::SaveSynced => archive + self.corpus.unique_bytes() as f64,
            Key::Warm | Key::WarmSynced => archive,
            _ => 0.0,
        }
    }

    /// What `--sync` costs a default job, from the two rows: "+0.61 s (+73%: 0.83 s → 1.45 s)".
    fn sync_cost(&self, key: Key) -> Option<String> {
        let r = &self.results;
        let synced = key.synced().filter(|k| r.has(*k) && r.has(key))?;
        let (default, with) = (r.wall(key), r.wall(synced));
        let cost = with - default;
        Some(if cost >= 0.0 {
            format!("costs {cost:.2} s more ({:+.0}%: {default:.2} s → {with:.2} s)", cost / default * 100.0)
        } else {
            format!("cost no time in this run: it took {:.2} s less ({default:.2} s → {with:.2} s)", -cost)
        })
    }

    /// What the `--sync` rows show: the cost of durability, and the disk rate behind it.
    fn write_durability(&self, md: &mut String) {
        let r = &self.results;
        let rows: Vec<(Key, &str, String)> = [
            (Key::Save, "cold save", "every blob into the store, then the archive"),
            (Key::Warm, "warm save", "the archive; the blobs are in the store already"),
        ]
        .into_iter()
        .filter_map(|(key, what, writes)| Some((key, what, writes, self.sync_cost(key)?)))
        .map(|(key, what, writes, cost)| {
            let written = self.written_bytes(key) / MB;
            let disk = r.disk_mb_s.map_or_else(String::new, |rate| {
                format!(": {:.2} s at this disk's {rate:.0} MB/s fsync'd write rate", written / rate)
            });
            (key, what, format!("with `--sync` it {cost}. It writes {written:.0} MB ({writes}){disk}."))
        })
        .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "The `--sync` rows run the same `hpn save` with `--sync`: hpn fsyncs every blob, index.json, the \
             archive and their directories before it reports success, so a power loss cannot take back what it \
             reported done. The other hpn rows, like skopeo's, leave write-back to the kernel. What that \
             durability costs:\n"
        );
        for (_, what, line) in &rows {
            let _ = writeln!(md, "- {what}: {line}");
        }
        let _ = writeln!(md);
        // A rate the --sync rows beat is no bound: say so rather than let the numbers contradict.
        if let Some(rate) = r.disk_mb_s {
            let beaten: Vec<String> = rows
                .iter()
                .filter_map(|(key, what, _)| {
                    let synced = r.wall(key.synced()?);
                    (synced < self.written_bytes(*key) / MB / rate).then(|| format!("{what} ({synced:.2} s)"))
                })
                .collect();
            if !beaten.is_empty() {
                let _ = writeln!(
                    md,
                    "The `--sync` {} finished sooner than its bytes take at the measured rate: in this run the disk \
                     took hpn's writes faster than the single 512 MiB file of the rate measurement (taken at the end \
                     of the bench), so that rate is only a rough bound here.\n",
                    beaten.join(" and ")
                );
            }
        }
    }

    /// Where a target is missed: the measured breakdown of the hpn job behind it.
    fn write_missed(&self, md: &mut String, targets: &[Target]) {
        let missed: Vec<&Target> = targets.iter().filter(|t| !t.pass).collect();
        if missed.is_empty() {
            return;
        }
        let r = &self.results;
        let cores = self.machine.cores;
        let _ = writeln!(md, "## Where the time goes\n");
        let _ = writeln!(
            md,
            "Measured in the same run, for the targets missed above. By default hpn, like skopeo and curl, does \
             not wait for the disk; the `--sync` rows run the same command waiting for every byte to reach it, so \
             their difference to the default row is what waiting for the disk would cost. {}\n",
            if self.profiles.is_empty() {
                "This run took no CPU profiles (`--quick`, or perf is not available)."
            } else {
                "The CPU profiles (perf, under \"Profiles\" below) show what the CPU time goes to."
            }
        );
        let breakdown = |md: &mut String, key: Key| {
            let wall = r.wall(key);
            let (user, sys) = r.cpu(key);
            let _ = writeln!(
                md,
                "- `{}`: {wall:.2} s wall, {user:.2} s user + {sys:.2} s system CPU = {:.0}% of one core of \
                 the {cores} (the rest of the time it waits: on the registries, on the kernel or on its own threads).",
                short_label(key),
                (user + sys) / wall * 100.0,
            );
            let registry = r.registry_cpu(key);
            if registry > 0.0 {
                let _ = writeln!(
                    md,
                    "  - the registries spent {registry:.2} s of CPU meanwhile: hpn and the registries together used {:.0}% of the {:.2} core-seconds the machine had.",
                    (user + sys + registry) / (wall * cores as f64) * 100.0,
                    wall * cores as f64
                );
            }
            let written = self.written_bytes(key) / MB;
            if written > 0.0 {
                let _ = writeln!(
                    md,
                    "  - it writes {written:.0} MB and, like skopeo, leaves them to the kernel's write-back instead \
                     of waiting for them to reach the disk. With `--sync`, which waits, it {}.",
                    self.sync_cost(key).unwrap_or_else(|| "was not measured".to_owned())
                );
                if let Some(rate) = r.disk_mb_s {
                    let disk = written / rate;
                    let against = match key.synced().filter(|k| r.has(*k)).map(|k| r.wall(k)) {
                        Some(synced) if synced >= disk => {
                            format!("{:.0}% of the `--sync` row's {synced:.2} s", disk / synced * 100.0)
                        }
                        Some(synced) => format!(
                            "more than the whole `--sync` row took ({synced:.2} s), so here the rate is only a rough \
                             bound"
                        ),
                        None => "what `--sync` would wait for".to_owned(),
                    };
                    let _ = writeln!(
                        md,
                        "  - at this disk's {rate:.0} MB/s fsync'd write rate those {written:.0} MB alone take \
                         {disk:.2} s: {against}."
                    );
                }
            }
            if let Some(profile) = self.profiles.iter().find(|p| p.name == short_label(key)) {
                let _ = writeln!(md, "  - CPU profile: {}.", profile_summary(profile));
            }
        };
        if missed.iter().any(|t| t.what.starts_with("`hpn save`")) {
            breakdown(md, Key::Save);
            let _ = writeln!(
                md,
                "  - the raw fetch it is compared with takes {:.2} s ({:.2} s with sha256), writing nothing; \
                 hpn hashes every blob and writes it twice (store, then archive).",
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
            breakdown(md, Key::Warm);
            let fs = self.fs_type();
            let how = if fs == "ext4" {
                "a copy in the kernel (ext4 has no reflink)".to_owned()
            } else {
                format!("done in the kernel ({fs}: a copy, or shared extents where it can reflink)")
            };
            let _ = writeln!(
                md,
                "  - the archive's blobs come from the store by copy_file_range; on {fs} that is {how}. By default \
                 hpn leaves the archive to write-back; with `--sync` it fsyncs the whole archive before it returns."
            );
        }
        if missed.iter().any(|t| t.what.starts_with("`hpn push")) {
            breakdown(md, Key::Push);
            let needed = r.wall(Key::SkopeoPush) / TARGET_PUSH_VS_SKOPEO;
            let registry = r.registry_cpu(Key::Push);
            let (su, ss) = r.cpu(Key::SkopeoPush);
            let _ = writeln!(
                md,
                "  - 5× the skopeo loop ({:.2} s) means {needed:.2} s. Registry B alone spent {registry:.2} CPU-seconds receiving hpn's upload (hashing and writing every byte), {:.2} s even if it kept {} busy. The skopeo loop spent {:.2} s of its own CPU (it gzips the layers the docker-archive holds uncompressed) and the registry {:.2} s.",
                r.wall(Key::SkopeoPush),
                registry / cores as f64,
                cores_phrase(cores),
                su + ss,
                r.registry_cpu(Key::SkopeoPush)
            );
        }
        if missed.iter().any(|t| t.what.starts_with("peak RSS")) {
            let _ = writeln!(md, "- peak RSS per job is in the results table.");
        }
        let _ = writeln!(md);
    }

    fn write_concurrency(&self, md: &mut String) {
        let points = &self.concurrency;
        if points.is_empty() {
            return;
        }
        let default = hpn_registry::ClientOptions::default().max_requests_per_host;
        let _ = writeln!(
            md,
            "## Concurrency: requests per registry host
"
        );
        let _ = writeln!(
            md,
            "The per-host request limit (`parallel.requests_per_host`, `HPN_REQUESTS_PER_HOST`; blob bodies \
             count against it) for the two jobs that load one registry most, median of {} run(s) each, \
             interleaved. The default is {default}.\n",
            self.runs
        );
        let _ = writeln!(md, "| requests per host | hpn save (cold) | hpn push -i | |");
        let _ = writeln!(md, "|---:|---:|---:|---|");
        let med = |v: &[Sample]| median(&v.iter().map(|x| x.wall).collect::<Vec<_>>());
        for point in points {
            let mark = if point.requests_per_host == default { "default" } else { "" };
            let _ = writeln!(
                md,
                "| {} | {:.2} s | {:.2} s | {mark} |",
                point.requests_per_host,
                med(&point.save),
                med(&point.push)
            );
        }
        let best = |time: &dyn Fn(&ConcurrencyPoint) -> f64| {
            points
                .iter()
                .map(|p| (p.requests_per_host, time(p)))
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a })
        };
        let (save_best, save_time) = best(&|p| med(&p.save));
        let (push_best, push_time) = best(&|p| med(&p.push));
        if let Some(at_default) = points.iter().find(|p| p.requests_per_host == default) {
            let _ = writeln!(
                md,
                "\nFastest save at {save_best} requests per host ({save_time:.2} s), fastest push at {push_best} \
                 ({push_time:.2} s); the default {default} is {:+.0}% and {:+.0}% off those.\n",
                (med(&at_default.save) / save_time - 1.0) * 100.0,
                (med(&at_default.push) / push_time - 1.0) * 100.0
            );
        }
    }

    fn write_scaling(&self, md: &mut String) {
        let s = &self.scaling;
        let (Some(small), Some(big)) = (s.points.first(), s.points.last()) else { return };
        let _ = writeln!(md, "## Scaling: many small images\n");
        let _ = writeln!(
            md,
            "Images generated by the bench: each is an OCI image with a shared {} base layer plus a {} layer and \
             a config of its own, in its own repository (`scaling/img-NNN:1`). `hpn save -f list -o` of the \
             first N, cold, by default and with `--sync`, and `hpn pull` of the same; the raw fetch is the parallel curl of the same blobs. \
             Requests are counted in the registry's access log. One manifest GET on a kept-alive connection \
             takes {:.2} ms here (curl, median of 100).\n",
            human_size(SCALING_BASE_BYTES as u64),
            human_size(SCALING_UNIQUE_BYTES as u64 + 1536),
            s.request_latency * 1000.0
        );
        let _ = writeln!(
            md,
            "| images | unique bytes | hpn save | per image | hpn pull | raw fetch | save --sync | requests per image | hpn CPU per image | registry CPU per image |"
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
                if p.save_synced.is_empty() { "–".to_owned() } else { format!("{:.2} s", med(&p.save_synced)) },
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
            "Against the machine's limit: the parallel curl of the same blobs (one process per blob, no manifests) takes {:.2} s for {} images, so `hpn save` runs at {:.2}× the raw fetch; the registry spends {registry_ms:.1} ms of CPU per image serving hpn, {:.1} ms of wall time per image even if it had {} to itself.\n",
            med(&big.curl),
            big.images,
            t_big / med(&big.curl),
            registry_ms / self.machine.cores as f64,
            cores_phrase(self.machine.cores)
        );
        if let (Some(synced_small), Some(synced_big)) = (
            (!small.save_synced.is_empty()).then(|| med(&small.save_synced)),
            (!big.save_synced.is_empty()).then(|| med(&big.save_synced)),
        ) {
            let synced_marginal = (synced_big - synced_small) / (big.images - small.images) as f64;
            let extra = synced_marginal - marginal;
            let verdict = if extra >= 0.0 {
                format!("waiting for the disk adds {:.1} ms to each image", extra * 1000.0)
            } else {
                format!("it cost no time per image in this run ({:.1} ms less)", -extra * 1000.0)
            };
            let _ = writeln!(
                md,
                "With `--sync` the {} images take {synced_big:.2} s instead of {t_big:.2} s, and an added image \
                 costs {:.1} ms instead of {:.1} ms: {verdict} (with `--sync` each image's blobs are fsync'd into \
                 the store, and index.json is rewritten and fsync'd).\n",
                big.images,
                synced_marginal * 1000.0,
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
             layer is {}.\n",
            human_size(large.layer_bytes),
            human_size(self.corpus.blobs.values().map(|(_, size)| *size).max().unwrap_or(0))
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
             entries by self time. `[kernel.kallsyms]` is work the kernel does for hpn: copying pages, TCP, {}.\n",
            self.fs_type()
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
        Key::SaveSynced => "hpn save --sync (cold)",
        Key::WarmSynced => "hpn save --sync (warm)",
        other => other.label(),
    }
}

/// "both cores", "all 4 cores".
fn cores_phrase(cores: usize) -> String {
    match cores {
        1 => "its one core".to_owned(),
        2 => "both cores".to_owned(),
        n => format!("all {n} cores"),
    }
}

/// A profile's top entries by kind: "its 12 top entries hold 60% of the samples: sha256 23%, …".
fn profile_summary(p: &Profile) -> String {
    let (mut sha, mut kernel, mut copies, mut rest) = (0.0, 0.0, 0.0, 0.0);
    for (pct, what) in &p.top {
        if what.contains("sha2::") || what.to_ascii_lowercase().contains("sha256") {
            sha += pct;
        } else if what.starts_with("[kernel") {
            kernel += pct;
        } else if what.starts_with("libc") && what.contains("mem") {
            copies += pct;
        } else {
            rest += pct;
        }
    }
    let parts: Vec<String> = [
        (sha, "sha256 hashing"),
        (kernel, "the kernel (copying pages, TCP, the file system)"),
        (copies, "libc's memcpy/memmove/memset"),
        (rest, "the rest"),
    ]
    .into_iter()
    .filter(|(pct, _)| *pct > 0.0)
    .map(|(pct, what)| format!("{what} {pct:.0}%"))
    .collect();
    let largest = p
        .top
        .first()
        .map_or_else(String::new, |(pct, what)| format!("; the largest is `{}` at {pct:.1}%", what.replace('`', "'")));
    format!(
        "{} samples; its {} top entries hold {:.0}% of them: {}{largest}",
        p.samples,
        p.top.len(),
        sha + kernel + copies + rest,
        parts.join(", ")
    )
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
