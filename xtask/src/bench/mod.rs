//! `cargo xtask bench`: hpn against skopeo and against the raw limit of the machine, on real
//! registries, with every number written to BENCHMARKS.md.
//!
//! One run starts registry A, builds the bench fixtures (testkit's `Scale::Bench`) and pushes
//! them there, then runs every job `--runs` times, interleaved (run 1 of every job, then run 2,
//! …) so that drift of the machine spreads over all of them. Each job starts from the state the
//! issue names (an empty store, a fresh registry B, no output file), the disk is synced before it
//! and only the command itself is timed. Peak RSS comes from `/usr/bin/time` (for a loop of
//! processes: the largest one). Then a scaling run (200 small images), a sweep of the per-host
//! request limit (which picks the default), a 2 GiB single-layer image, a 6 GiB image of 5 layers,
//! the 200-image push against its PUT floor, what referrer discovery, `--split` and a dead first
//! mirror cost (`features.rs`), and diagnostics that explain a missed target: the same `hpn save` with `--sync` (every
//! blob, index.json and archive fsync'd, which hpn does not do by default), the disk's fsync'd
//! write rate and a `perf` profile.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hpn_testkit::fixtures::{self, Scale};
use hpn_testkit::{Registry, have_binary};

use crate::{cargo, human_size, status, workspace_root};

mod corpus;
mod features;
mod gate;
mod machine;
mod perf;
mod report;
mod sampling;
mod scaling;
mod serve;

use corpus::{BenchImage, Corpus};
use machine::{Machine, load_average};
use perf::{Profile, perf_report, perf_works};
use report::Report;
use sampling::{Cmd, Sample, Timer, median};

/// `cargo xtask bench` options.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Runs of each job; the median is reported [default: 3, or 5 with --quick]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=50))]
    runs: Option<u16>,
    /// The regression gate: a small generated corpus, the jobs behind each gate ratio, checked
    /// against xtask/bench-thresholds.toml (or --thresholds); exits non-zero when one is worse
    #[arg(long, conflicts_with = "out")]
    quick: bool,
    /// The gate's thresholds file [default: xtask/bench-thresholds.toml]
    #[arg(long, value_name = "FILE", requires = "quick")]
    thresholds: Option<PathBuf>,
    /// Where to write the report [default: BENCHMARKS.md at the workspace root]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Measure this hpn binary instead of building one (`cargo build --release`), e.g. to compare
    /// two builds
    #[arg(long, value_name = "FILE")]
    hpn: Option<PathBuf>,
    /// Run only these parts of the bench (comma-separated) and print their sections of the report
    /// (to --out if given) instead of rewriting BENCHMARKS.md
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART", conflicts_with = "quick")]
    only: Vec<Part>,
    /// With --only: measure on the gate's small generated corpus instead of the fixtures (a quick
    /// look at a part's output, not numbers to publish)
    #[arg(long, requires = "only")]
    small: bool,
}

/// The parts of a full bench run, which `--only` picks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// Every job of the corpus against skopeo and the floors (the main table).
    Main,
    /// perf profiles of the hardest hpn jobs.
    Profiles,
    /// 50 and 200 small images: save, pull, curl.
    Scaling,
    /// `hpn push -i` of the 200 images against the PUT floor of the same blobs.
    ScalingPush,
    /// The per-host request limit sweep.
    Concurrency,
    /// `hpn serve` against docker-registry.
    Serve,
    /// One image of a single 2 GiB layer.
    Large,
    /// A generated 6 GiB image of 5 layers: cold and warm save, pull, push -i, RSS.
    Huge,
    /// Pull with and without referrer discovery (`--no-referrers`), requests per image.
    Referrers,
    /// Warm save with `--split` (several volumes) against the same save in one archive.
    Split,
    /// Pull through a mirror list whose first mirror refuses connections, against a direct pull.
    Mirror,
}

/// Runs of each job in the gate: the median of five is steady on a loaded machine.
const GATE_RUNS: u16 = 5;

/// Parallel curls for the raw-fetch limit.
const CURL_PARALLEL: usize = 8;
/// Scaling images: a shared base layer plus one small layer and a config of their own.
const SCALING_IMAGES: usize = 200;
const SCALING_IMAGES_SMALL: usize = 50;
const SCALING_BASE_BYTES: usize = 8 << 20;
const SCALING_UNIQUE_BYTES: usize = 64 << 10;
/// The single layer of the large image.
const LARGE_LAYER_BYTES: u64 = 2 << 30;
/// The huge image: this many bytes in all, in this many layers of equal size.
const HUGE_IMAGE_BYTES: u64 = 6 << 30;
const HUGE_LAYERS: usize = 5;
/// The issue's targets.
const TARGET_SAVE_VS_ARCHIVE_LOOP: f64 = 10.0;
const TARGET_SAVE_VS_OCI_LOOP: f64 = 0.6;
const TARGET_SAVE_VS_RAW: f64 = 1.3;
const TARGET_WARM_SECONDS: f64 = 0.5;
/// Wave 2 (issue 14): each job against its floor.
const TARGET_WARM_VS_CAT: f64 = 1.5;
const TARGET_PUSH_VS_PUT: f64 = 1.1;
const TARGET_LARGE_SAVE_VS_PULL: f64 = 0.8;
/// `hpn verify` close to every core hashing (issue 12): sha256sum's throughput × cores.
const TARGET_VERIFY_VS_SHA256SUM: f64 = 0.8;
const TARGET_RSS_MB: f64 = 100.0;
/// Requests per registry host tried by the concurrency sweep (`parallel.requests_per_host`).
/// Blobs in flight are capped at 8 elsewhere, so more than 8 would measure nothing new.
const CONCURRENCY_SWEEP: [usize; 6] = [1, 2, 3, 4, 6, 8];
const MB: f64 = 1_000_000.0;
/// The store the warm jobs read, filled once; and the archive the warm save writes there.
const WARM_STORE: &str = "warm-store";
const WARM_ARCHIVE: &str = "warm.tar";
/// The store's verified-stat records (crates/store/README.md): removed, every blob is re-hashed.
const VERIFIED_RECORDS: &str = ".hpn-verified";

pub(crate) fn run(args: BenchArgs) -> Result<()> {
    let runs = usize::from(args.runs.unwrap_or(if args.quick { GATE_RUNS } else { 3 }));
    let out = args.out.clone().unwrap_or_else(|| workspace_root().join("BENCHMARKS.md"));
    for program in ["docker-registry", "skopeo", "curl", "/usr/bin/time", "sha256sum", "xargs", "sync", "openssl"] {
        if !have_binary(program) {
            // The packages CI installs (.ci/packages), those dpkg lacks first.
            let missing = hpn_testkit::missing_debian_packages();
            let packages = if missing.is_empty() { hpn_testkit::debian_packages() } else { missing };
            bail!("`{program}` is missing: apt-get install -y --no-install-recommends {}", packages.join(" "));
        }
    }

    let hpn = match args.hpn {
        Some(hpn) => fs::canonicalize(&hpn).with_context(|| format!("the hpn to measure, {}", hpn.display()))?,
        None => {
            step("building hpn (cargo build --release --bin hpn)");
            let mut build = cargo();
            // `cargo xtask` runs under `cargo run`, which sets xtask's own CARGO_PKG_* and
            // CARGO_MANIFEST_* variables; build scripts that watch them (ring's) would rebuild
            // what a plain `cargo build --release` already built.
            for (key, _) in std::env::vars_os() {
                if key.to_str().is_some_and(|k| k.starts_with("CARGO_PKG_") || k.starts_with("CARGO_MANIFEST_")) {
                    build.env_remove(key);
                }
            }
            status(build.args(["build", "--release", "--bin", "hpn"]))?;
            target_dir().join("release").join("hpn")
        }
    };
    let started = Instant::now();

    let work = tempfile::Builder::new().prefix("hpn-bench-").tempdir()?;
    let mut bench = Bench::new(hpn, work.path().to_owned(), runs)?;
    let machine = Machine::probe(work.path());
    println!("{}", machine.summary());
    if args.quick {
        let thresholds = args.thresholds.unwrap_or_else(|| workspace_root().join(gate::THRESHOLDS_FILE));
        let result = bench.gate(&thresholds);
        println!(
            "bench gate took {:.0} s after the build (load average {})",
            started.elapsed().as_secs_f64(),
            load_average()
        );
        return result;
    }

    let only = |part: Part| args.only.is_empty() || args.only.contains(&part);
    let registry_a = Registry::start()?;
    let corpus = if args.small {
        step("registry A and the gate's small generated corpus (--small)");
        gate::generate(registry_a.addr())?
    } else {
        step("registry A and the bench corpus (fixtures at Scale::Bench)");
        let build_start = Instant::now();
        let set = fixtures::build(Scale::Bench)?;
        println!(
            "built {} images, {} in {:.1?}",
            set.images().len(),
            human_size(set.unique_bytes()),
            build_start.elapsed()
        );
        let pushed = fixtures::push(&set, registry_a.addr())?;
        Corpus::new(&pushed, set.unique_bytes())
    };
    println!("{}", corpus.summary());
    bench.prepare(&corpus)?;

    let mut results = Results::default();
    if only(Part::Main) {
        step(&format!("measuring: {runs} run(s) of every job, interleaved"));
        let jobs = bench.main_jobs(&corpus);
        results = bench.measure(jobs)?;
    }

    let profiles = if !only(Part::Profiles) || !perf_works() {
        Vec::new()
    } else {
        step("profiles (perf record)");
        bench.profiles()?
    };

    let scaling_corpus = if only(Part::Scaling) || only(Part::ScalingPush) {
        step(&format!("scaling: {SCALING_IMAGES} small images"));
        Some(bench.scaling_corpus(SCALING_IMAGES)?)
    } else {
        None
    };
    let scaling = match &scaling_corpus {
        Some(scaling_corpus) if only(Part::Scaling) => {
            step(&format!("scaling: {SCALING_IMAGES_SMALL} and {SCALING_IMAGES} small images"));
            Some(bench.scaling(scaling_corpus, SCALING_IMAGES_SMALL, SCALING_IMAGES)?)
        }
        _ => None,
    };
    let scaling_push = match &scaling_corpus {
        Some(scaling_corpus) if only(Part::ScalingPush) => {
            step(&format!("scaling push: push -i of {SCALING_IMAGES} images against the PUT floor"));
            Some(bench.scaling_push(scaling_corpus, SCALING_IMAGES)?)
        }
        _ => None,
    };
    drop(scaling_corpus);

    let concurrency = if only(Part::Concurrency) {
        step(&format!("concurrency: requests per registry host {CONCURRENCY_SWEEP:?}"));
        if !bench.path("hpn-one.tar").exists() {
            bench.save_list(Store::Fresh("save-store"), "hpn-one.tar").keep_out().time()?;
        }
        bench.concurrency()?
    } else {
        Vec::new()
    };

    let serving = if only(Part::Serve) {
        step("serve: hpn serve against docker-registry, the same blobs to the same clients");
        Some(bench.serving(&corpus)?)
    } else {
        None
    };

    let referrers = if only(Part::Referrers) {
        step("referrers: pull with referrer discovery and with --no-referrers");
        Some(bench.referrers(&registry_a, corpus.images.len())?)
    } else {
        None
    };
    let split = if only(Part::Split) {
        step("split: warm save with --split against one archive");
        Some(bench.split_cost()?)
    } else {
        None
    };
    let mirror = if only(Part::Mirror) {
        step("mirror: pull through a dead first mirror against a direct pull");
        Some(bench.mirror_fallback(&registry_a)?)
    } else {
        None
    };

    let large = if only(Part::Large) {
        step(&format!("large: one image with a single {} layer", human_size(LARGE_LAYER_BYTES)));
        Some(bench.large()?)
    } else {
        None
    };
    let huge = if only(Part::Huge) {
        step(&format!("huge: one image of {HUGE_LAYERS} layers, {} in all", human_size(HUGE_IMAGE_BYTES)));
        Some(bench.huge()?)
    } else {
        None
    };

    if only(Part::Main) {
        step("disk: fsync'd write rate");
        results.disk_mb_s = Some(bench.disk_rate()?);
    }

    let report = Report {
        machine,
        corpus,
        results,
        profiles,
        scaling,
        scaling_push,
        concurrency,
        serving,
        large,
        huge,
        referrers,
        split,
        mirror,
        runs,
        total: started.elapsed(),
        load_end: load_average(),
    };
    if !args.only.is_empty() {
        // Only some parts ran: their sections, not a BENCHMARKS.md with holes.
        let sections = report.sections_markdown();
        println!("\n{sections}");
        if let Some(out) = &args.out {
            fs::write(out, &sections).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
        }
        return Ok(());
    }
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
    CopyList,
    SkopeoCopy,
    Curl,
    CurlSha,
    CatFloor,
    WarmRehash,
    PutFloor,
    Verify,
    ShaSum,
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
            Key::CopyList => "hpn copy -f list -r B (every image in one run)",
            Key::SkopeoCopy => "skopeo copy docker://A/… docker://B/…, per image",
            Key::Curl => "raw: parallel curl of every unique blob → /dev/null",
            Key::CurlSha => "raw: parallel curl | sha256sum of every unique blob",
            Key::CatFloor => "floor: cat of the warm save's archive → a new file",
            Key::WarmRehash => "hpn save (warm, verified-stat records removed: all re-hashed)",
            Key::PutFloor => "floor: parallel curl PUT of every unique blob → B",
            Key::Verify => "hpn verify one.tar (warm page cache)",
            Key::ShaSum => "floor: sha256sum one.tar (one core)",
            Key::SaveSynced => "diagnostic: hpn save cold with --sync (fsync everything)",
            Key::WarmSynced => "diagnostic: hpn save warm with --sync",
        }
    }

    fn is_hpn(self) -> bool {
        matches!(
            self,
            Key::Save
                | Key::Pull
                | Key::Warm
                | Key::WarmRehash
                | Key::Load
                | Key::Push
                | Key::Copy
                | Key::CopyList
                | Key::Verify
                | Key::SaveSynced
                | Key::WarmSynced
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
    /// `REPOSITORY DIGEST FILE` a line: every unique blob, as the warm store holds it, for the PUT floor.
    put_list: PathBuf,
    put_script: PathBuf,
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
            put_list: work.join("put-blobs.txt"),
            put_script: work.join("put-blobs.sh"),
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
        // The PUT floor uploads the files the warm store holds (filled before the floor first runs).
        self.write_put_list(&self.put_list, &self.path(WARM_STORE), &corpus.blobs)?;
        // Each blob a monolithic upload, as docker and hpn push one that fits in a request: a POST
        // for a session, then one PUT of the whole file with its digest, which the registry checks.
        fs::write(
            &self.put_script,
            format!(
                "#!/bin/sh\n# $1: the registry, $2: the list\nexport registry=\"$1\"\n\
                 xargs -P {CURL_PARALLEL} -n 3 sh -c '\n\
                 loc=$(curl -sf -X POST -o /dev/null -w \"%header{{location}}\" \"http://$registry/v2/$0/blobs/uploads/\") || exit 1\n\
                 case $loc in /*) loc=\"http://$registry$loc\";; esac\n\
                 case $loc in *\\?*) sep=\"&\";; *) sep=\"?\";; esac\n\
                 curl -sf -T \"$2\" -H \"Content-Type: application/octet-stream\" -o /dev/null \"$loc${{sep}}digest=$1\"' < \"$2\"\n"
            ),
        )?;
        fs::write(
            &self.fetch_sha,
            format!("#!/bin/sh\nxargs -P {CURL_PARALLEL} -n 1 sh -c 'curl -sf \"$0\" | sha256sum' < \"$1\"\n"),
        )?;
        Ok(())
    }

    /// The PUT floor's list (`REPOSITORY DIGEST FILE` a line) of `blobs` (digest → (repository,
    /// size)), as files of `store`.
    fn write_put_list(&self, list: &Path, store: &Path, blobs: &BTreeMap<String, (String, u64)>) -> Result<()> {
        let blob_dir = store.join("blobs").join("sha256");
        let mut put = String::new();
        for (digest, (repo, _)) in blobs {
            let file = blob_dir.join(digest.trim_start_matches("sha256:"));
            writeln!(put, "{repo} {digest} {}", file.display())?;
        }
        fs::write(list, put).with_context(|| format!("writing {}", list.display()))
    }

    /// The PUT floor: every blob of `list` ([`Bench::write_put_list`]) uploaded by parallel
    /// curls into `registry`, timed.
    fn put_floor(&self, registry: &str, list: &Path) -> Result<Sample> {
        sync_disk()?;
        let cmd = Cmd::new([OsStr::new("sh"), self.put_script.as_os_str(), OsStr::new(registry), list.as_os_str()]);
        self.timer.time(&cmd)
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
                    let warm_store = self.path(WARM_STORE);
                    fresh_dir(&warm_store)?;
                    self.timer.time(&self.hpn(&[&"pull", &"-f", &self.list, &"--store", &warm_store]))?;
                }
                Ok((self.save_list(Store::Filled(WARM_STORE), WARM_ARCHIVE).keep_out().time()?, Vec::new()))
            }),
        });
        // The same warm save with the store's verified-stat records gone: every blob is re-hashed
        // on its way out, which is what the records save (crates/store/README.md, "Verified reads").
        jobs.push(Job {
            key: Key::WarmRehash,
            run: Box::new(move |_| {
                remove(&self.path(WARM_STORE).join(VERIFIED_RECORDS))?;
                Ok((self.save_list(Store::Filled(WARM_STORE), "warm-rehash.tar").time()?, Vec::new()))
            }),
        });
        // The copy floor of a warm save: `cat` of the archive it wrote into a new file.
        jobs.push(Job {
            key: Key::CatFloor,
            run: Box::new(move |_| {
                let copy = self.path("cat-copy.tar");
                remove(&copy)?;
                sync_disk()?;
                let cmd = Cmd::new([
                    OsStr::new("sh"),
                    OsStr::new("-c"),
                    OsStr::new("cat \"$0\" > \"$1\""),
                    self.path(WARM_ARCHIVE).as_os_str(),
                    copy.as_os_str(),
                ]);
                let sample = self.timer.time(&cmd)?;
                remove(&copy)?;
                Ok((sample, Vec::new()))
            }),
        });
        // hpn load of the cold save's archive.
        {
            let one_tar = one_tar.clone();
            jobs.push(
                self.hpn_job(Key::Load, move || self.hpn_run(Store::Fresh("load-store"), &[&"load", &"-i", &one_tar])),
            );
        }
        // hpn verify of the cold save's archive, and the hashing floor on the same bytes.
        {
            let one_tar = one_tar.clone();
            jobs.push(Job {
                key: Key::Verify,
                run: Box::new(move |_| {
                    sync_disk()?;
                    Ok((self.timer.time(&self.hpn(&[&"verify", &one_tar]))?, Vec::new()))
                }),
            });
        }
        {
            let one_tar = one_tar.clone();
            jobs.push(Job {
                key: Key::ShaSum,
                run: Box::new(move |_| {
                    sync_disk()?;
                    let cmd = Cmd::new([OsStr::new("sha256sum"), one_tar.as_os_str()]);
                    Ok((self.timer.time(&cmd)?, Vec::new()))
                }),
            });
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
        // The push floor: every unique blob uploaded by curl into a fresh registry B.
        jobs.push(Job {
            key: Key::PutFloor,
            run: Box::new(move |_| {
                let registry_b = Registry::start()?;
                Ok((self.put_floor(registry_b.addr(), &self.put_list)?, Vec::new()))
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
        // Registry to registry, every image in one run (no store).
        jobs.push(Job {
            key: Key::CopyList,
            run: Box::new(move |_| {
                let registry_b = Registry::start()?;
                let copy =
                    self.hpn_run(Store::Fresh("copy-store"), &[&"copy", &"-f", &self.list, &"-r", &registry_b.addr()]);
                Ok((copy.time()?, Vec::new()))
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
                self.save_list(Store::Filled(WARM_STORE), "warm-synced.tar").synced()
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
        profiles.extend(self.profile("hpn save (warm)", self.save_list(Store::Filled(WARM_STORE), "perf.tar"))?);
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
