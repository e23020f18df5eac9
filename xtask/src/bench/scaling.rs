//! The runs beyond the main corpus: many small images (scaling), the per-host request limit
//! (concurrency) and one 2 GiB layer (large).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Context, Result};
use hpn_testkit::fixtures::media_types::OCI_MANIFEST;
use hpn_testkit::http::{Body, Client};
use hpn_testkit::{HashingWriter, Registry, Rng, sha256_digest};

use super::corpus::{image_documents, push_image, write_tar_layer};
use super::sampling::{Cmd, Sample, median};
use super::{
    Bench, CONCURRENCY_SWEEP, HUGE_IMAGE_BYTES, HUGE_LAYERS, Key, LARGE_LAYER_BYTES, MB, SCALING_BASE_BYTES,
    SCALING_UNIQUE_BYTES, Store, curl_all, fresh_dir, remove, sync_disk,
};
use crate::human_size;

#[derive(Debug)]
pub(super) struct ScalingPoint {
    pub(super) images: usize,
    pub(super) bytes: u64,
    pub(super) save: Vec<Sample>,
    pub(super) pull: Vec<Sample>,
    pub(super) curl: Vec<Sample>,
    /// The same save with `--sync`.
    pub(super) save_synced: Vec<Sample>,
    /// HTTP requests hpn save sent to the registry, per image.
    pub(super) requests_per_image: f64,
}

/// `hpn save` cold and `hpn push -i` with one per-host request limit.
#[derive(Debug)]
pub(super) struct ConcurrencyPoint {
    pub(super) requests_per_host: usize,
    pub(super) save: Vec<Sample>,
    pub(super) push: Vec<Sample>,
}

impl Bench {
    /// Times the two jobs that lean on one registry hardest for each limit in
    /// [`CONCURRENCY_SWEEP`], interleaved, `runs` times: the default is chosen by this table.
    pub(super) fn concurrency(&self) -> Result<Vec<ConcurrencyPoint>> {
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

/// `hpn push -i` of the scaling images against the PUT floor of their blobs.
#[derive(Debug, Default)]
pub(super) struct ScalingPush {
    pub(super) images: usize,
    /// The unique blobs' bytes.
    pub(super) bytes: u64,
    pub(super) push: Vec<Sample>,
    pub(super) floor: Vec<Sample>,
}

impl ScalingPush {
    /// The median over runs of push ÷ floor in the same run.
    pub(super) fn ratio(&self) -> f64 {
        median(&self.push.iter().zip(&self.floor).map(|(push, floor)| push.wall / floor.wall).collect::<Vec<_>>())
    }
}

#[derive(Debug)]
pub(super) struct Scaling {
    pub(super) points: Vec<ScalingPoint>,
    /// Median latency of one manifest GET on a kept-alive connection, in seconds.
    pub(super) request_latency: f64,
}

/// The scaling images, pushed into a registry of their own.
pub(super) struct ScalingCorpus {
    registry: Registry,
    /// `ADDR/scaling/img-NNN:1`, in order.
    refs: Vec<String>,
    /// The base once (the first image's), then each image's own layer and config.
    blob_urls: Vec<String>,
    /// Each image's own layer and config bytes.
    bytes_per_image: Vec<u64>,
    base_bytes: u64,
    /// digest → (a repository that has it, size), as [`super::Corpus::blobs`].
    blobs: BTreeMap<String, (String, u64)>,
}

impl Bench {
    /// Generates `count` scaling images and pushes them.
    pub(super) fn scaling_corpus(&self, count: usize) -> Result<ScalingCorpus> {
        let registry = Registry::start()?;
        let addr = registry.addr().to_owned();
        let client = Client::new(&addr, None);
        let start = Instant::now();
        // The shared base layer, uploaded once and mounted into every other repository.
        let mut base = Vec::new();
        let mut rng = Rng::new(0xba5e);
        write_tar_layer(&mut base, "usr/share/bench/base.bin", SCALING_BASE_BYTES as u64, |b| rng.fill(b))?;
        let base_digest = sha256_digest(&base);
        let mut refs = Vec::new();
        let mut blob_urls = Vec::new();
        let mut bytes_per_image = Vec::new();
        let mut blobs = BTreeMap::new();
        for i in 0..count {
            let repo = format!("scaling/img-{i:03}");
            let mut layer = Vec::new();
            let mut rng = Rng::new(i as u64 + 1);
            write_tar_layer(&mut layer, &format!("etc/bench/img-{i:03}"), SCALING_UNIQUE_BYTES as u64, |b| {
                rng.fill(b)
            })?;
            let layer_digest = sha256_digest(&layer);
            let (config, manifest) = image_documents(
                &format!("img-{i:03}"),
                &[(base_digest.clone(), base.len() as u64), (layer_digest.clone(), layer.len() as u64)],
            )?;
            let from = (i > 0).then_some("scaling/img-000");
            client.upload_blob(&repo, &base_digest, Body::Bytes(&base), from)?;
            client.upload_blob(&repo, &layer_digest, Body::Bytes(&layer), None)?;
            push_image(&client, &repo, &config, &manifest)?;
            let config_digest = sha256_digest(&config);
            refs.push(format!("{addr}/{repo}:1"));
            if i == 0 {
                blob_urls.push(format!("http://{addr}/v2/{repo}/blobs/{base_digest}"));
            }
            blob_urls.push(format!("http://{addr}/v2/{repo}/blobs/{layer_digest}"));
            blob_urls.push(format!("http://{addr}/v2/{repo}/blobs/{config_digest}"));
            blobs.entry(base_digest.clone()).or_insert((repo.clone(), base.len() as u64));
            blobs.insert(layer_digest, (repo.clone(), layer.len() as u64));
            blobs.insert(config_digest, (repo, config.len() as u64));
            bytes_per_image.push((layer.len() + config.len()) as u64);
        }
        println!("pushed {count} images to {addr} in {:.1?}", start.elapsed());
        Ok(ScalingCorpus { registry, refs, blob_urls, bytes_per_image, base_bytes: base.len() as u64, blobs })
    }

    /// `hpn push -i` of the first `count` scaling images, saved into one archive, into a fresh
    /// registry B, against the PUT floor of the same blobs (each unique blob uploaded once by
    /// parallel curls), interleaved run by run.
    pub(super) fn scaling_push(&self, corpus: &ScalingCorpus, count: usize) -> Result<ScalingPush> {
        let list = self.path(&format!("scaling-push-{count}.txt"));
        fs::write(&list, corpus.refs[..count].join("\n") + "\n")?;
        let archive = self.path("scaling-push.tar");
        let store = self.path("scaling-push-store");
        fresh_dir(&store)?;
        self.timer.time(&self.hpn(&[&"save", &"-f", &list, &"-o", &archive, &"--store", &store]))?;
        let put_list = self.path("scaling-put-blobs.txt");
        let blobs: BTreeMap<String, (String, u64)> = corpus
            .blobs
            .iter()
            .filter(|(_, (repo, _))| corpus.refs[..count].iter().any(|r| r.contains(&format!("/{repo}:"))))
            .map(|(digest, entry)| (digest.clone(), entry.clone()))
            .collect();
        self.write_put_list(&put_list, &store, &blobs)?;
        let mut result =
            ScalingPush { images: count, bytes: blobs.values().map(|(_, size)| size).sum(), ..Default::default() };
        for run in 0..self.runs {
            let registry_b = Registry::start()?;
            let push =
                self.hpn_run(Store::Fresh("scaling-push-run"), &[&"push", &"-i", &archive, &"-r", &registry_b.addr()]);
            result.push.push(push.time()?);
            drop(registry_b);
            let registry_b = Registry::start()?;
            result.floor.push(self.put_floor(registry_b.addr(), &put_list)?);
            println!(
                "run {}/{}  push -i of {count} images {:.2} s, PUT floor {:.2} s",
                run + 1,
                self.runs,
                result.push.last().map_or(0.0, |s| s.wall),
                result.floor.last().map_or(0.0, |s| s.wall)
            );
        }
        remove(&archive)?;
        remove(&store)?;
        Ok(result)
    }

    pub(super) fn scaling(&self, corpus: &ScalingCorpus, small: usize, big: usize) -> Result<Scaling> {
        let registry = &corpus.registry;
        let addr = registry.addr().to_owned();
        let (refs, blob_urls, bytes_per_image) = (&corpus.refs, &corpus.blob_urls, &corpus.bytes_per_image);
        let request_latency = self.request_latency(&addr, refs)?;
        let mut points = Vec::new();
        for n in [small, big] {
            let list = self.path(&format!("scaling-{n}.txt"));
            fs::write(&list, refs[..n].join("\n") + "\n")?;
            // Base once, then each image's own layer and config.
            let urls = self.path(&format!("scaling-{n}-urls.txt"));
            fs::write(&urls, blob_urls[..1 + 2 * n].join("\n") + "\n")?;
            let bytes = corpus.base_bytes + bytes_per_image[..n].iter().sum::<u64>();
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
    pub(super) fn request_latency(&self, addr: &str, refs: &[String]) -> Result<f64> {
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
pub(super) struct Large {
    pub(super) layer_bytes: u64,
    pub(super) rows: Vec<(&'static str, Sample, Option<Key>)>,
}

impl Large {
    /// The wall time of the row named `name`, if it ran.
    pub(super) fn wall(&self, name: &str) -> Option<f64> {
        self.rows.iter().find(|(n, _, _)| *n == name).map(|(_, s, _)| s.wall)
    }
}

impl Bench {
    /// Writes a tar layer of one file of `bytes` incompressible bytes to `path` (a random 1 MiB
    /// block from `seed`, stamped with its position so no two blocks are alike). Returns its
    /// digest and size.
    fn generate_layer(&self, path: &Path, name: &str, bytes: u64, seed: u64) -> Result<(String, u64)> {
        let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let mut writer = HashingWriter::new(file);
        let mut block = vec![0u8; 1 << 20];
        Rng::new(seed).fill(&mut block);
        let mut counter = 0u64;
        let written = write_tar_layer(&mut writer, name, bytes, |buf| {
            let n = buf.len();
            buf.copy_from_slice(&block[..n]);
            buf[..8].copy_from_slice(&counter.to_le_bytes());
            counter += 1;
        })?;
        writer.flush()?;
        let (digest, _, inner) = writer.finish();
        inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok((digest, written))
    }

    pub(super) fn large(&self) -> Result<Large> {
        let registry = Registry::start()?;
        let addr = registry.addr().to_owned();
        let start = Instant::now();
        let layer_path = self.path("large-layer.tar");
        let (layer_digest, written) = self.generate_layer(&layer_path, "data/large.bin", LARGE_LAYER_BYTES, 0x1a26e)?;
        let (config, manifest) = image_documents("large", &[(layer_digest.clone(), written)])?;
        let repo = "large/one-layer";
        let client = Client::new(&addr, None);
        client.upload_blob(repo, &layer_digest, Body::File(&layer_path), None)?;
        push_image(&client, repo, &config, &manifest)?;
        remove(&layer_path)?;
        let reference = format!("{addr}/{repo}:1");
        println!("built and pushed {reference} ({}) in {:.1?}", human_size(written), start.elapsed());

        let out = self.path("large.tar");
        let mut rows = Vec::new();
        let mut row = |name: &'static str, key: Option<Key>, sample: Sample| {
            rows.push((name, sample, key));
            print_large(rows.last());
        };
        row("hpn pull", Some(Key::Pull), self.hpn_run(Store::Fresh("large-store"), &[&"pull", &reference]).time()?);
        let save = self.hpn_run(Store::Fresh("large-store"), &[&"save", &reference]).out(out.clone()).keep_out();
        row("hpn save (cold)", Some(Key::Save), save.time()?);
        row(LARGE_ONE_FILE_FLOOR, None, self.large_write_floor(&addr, repo, (&layer_digest, written), 1)?);
        row(LARGE_TWO_FILES_FLOOR, None, self.large_write_floor(&addr, repo, (&layer_digest, written), 2)?);
        let registry_b = Registry::start()?;
        let push = self.hpn_run(Store::Fresh("large-push-store"), &[&"push", &"-i", &out, &"-r", &registry_b.addr()]);
        row("hpn push -i", Some(Key::Push), push.time()?);
        drop(registry_b);
        row(
            "hpn load -i",
            Some(Key::Load),
            self.hpn_run(Store::Fresh("large-push-store"), &[&"load", &"-i", &out]).time()?,
        );
        remove(&out)?;
        Ok(Large { layer_bytes: written, rows })
    }
}

/// The rows of [`Bench::large_write_floor`], by how many copies they write.
pub(super) const LARGE_ONE_FILE_FLOOR: &str = "floor: curl of the layer → a file";
pub(super) const LARGE_TWO_FILES_FLOOR: &str = "floor: curl of the layer through tee → two files";

impl Bench {
    /// The floor of a job that writes the downloaded layer `copies` times (1: a pull into the
    /// store; 2: a cold save, into the store and the archive): curl of the blob into one file,
    /// or through `tee` into two, timed like hpn's jobs (disk synced first, write-back left
    /// to the kernel).
    fn large_write_floor(&self, addr: &str, repo: &str, blob: (&str, u64), copies: usize) -> Result<Sample> {
        let (digest, size) = blob;
        let files: Vec<_> = (0..copies).map(|n| self.path(&format!("large-floor-{n}"))).collect();
        let script = match copies {
            1 => r#"curl -sf -o "$1" "$0""#,
            _ => r#"curl -sf "$0" | tee "$1" > "$2""#,
        };
        let url = format!("http://{addr}/v2/{repo}/blobs/{digest}");
        let mut argv = vec![OsStr::new("sh"), OsStr::new("-c"), OsStr::new(script), OsStr::new(&url)];
        argv.extend(files.iter().map(|file| file.as_os_str()));
        sync_disk()?;
        let sample = self.timer.time(&Cmd::new(argv))?;
        for file in &files {
            // sh has no pipefail: a curl that failed inside the pipe shows as a short file.
            let got = fs::metadata(file)?.len();
            anyhow::ensure!(
                got == size,
                "the floor's curl wrote {got} bytes of the {size}-byte layer to {}",
                file.display()
            );
            remove(file)?;
        }
        Ok(sample)
    }
}

pub(super) fn print_large(row: Option<&(&str, Sample, Option<Key>)>) {
    if let Some((name, s, _)) = row {
        println!("{name:<20} {:>7.2} s  {:>6.1} MB RSS", s.wall, s.rss_kb as f64 * 1024.0 / MB);
    }
}

// ---------------------------------------------------------------------------------------------
// Huge: a generated image of several large layers.

/// What the huge image's jobs hold at once at most: registry A's copy, the store and an archive
/// (the push: A, the archive and registry B), and one layer file while it is generated.
fn huge_disk_needed() -> u64 {
    3 * HUGE_IMAGE_BYTES + HUGE_IMAGE_BYTES / HUGE_LAYERS as u64 + (1 << 30)
}

#[derive(Debug)]
pub(super) struct Huge {
    pub(super) image_bytes: u64,
    pub(super) layers: usize,
    /// (job, sample, the corpus job whose RSS it is compared with).
    pub(super) rows: Vec<(&'static str, Sample, Key)>,
    /// Why the image was not measured (not enough free disk).
    pub(super) skipped: Option<String>,
}

impl Bench {
    /// Generates an image of [`HUGE_LAYERS`] layers, [`HUGE_IMAGE_BYTES`] in all, and times cold
    /// save, warm save, pull and push -i of it once each (each moves gigabytes: one run bounds the
    /// time), with peak RSS, which must not follow the image's size.
    pub(super) fn huge(&self) -> Result<Huge> {
        let mut huge = Huge { image_bytes: 0, layers: HUGE_LAYERS, rows: Vec::new(), skipped: None };
        let free = free_disk_bytes(&self.work)?;
        if free < huge_disk_needed() {
            let reason = format!(
                "skipped: its jobs need {} of free disk at once, {} has {}",
                human_size(huge_disk_needed()),
                self.work.display(),
                human_size(free)
            );
            println!("{reason}");
            huge.skipped = Some(reason);
            return Ok(huge);
        }
        let registry = Registry::start()?;
        let addr = registry.addr().to_owned();
        let client = Client::new(&addr, None);
        let repo = "huge/five-layers";
        let start = Instant::now();
        let layer_path = self.path("huge-layer.tar");
        let mut layers = Vec::new();
        for n in 0..HUGE_LAYERS {
            let name = format!("data/huge-{n}.bin");
            let (digest, size) =
                self.generate_layer(&layer_path, &name, HUGE_IMAGE_BYTES / HUGE_LAYERS as u64, 0x6b16 + n as u64)?;
            client.upload_blob(repo, &digest, Body::File(&layer_path), None)?;
            remove(&layer_path)?;
            layers.push((digest, size));
        }
        huge.image_bytes = layers.iter().map(|(_, size)| size).sum();
        let (config, manifest) = image_documents("huge", &layers)?;
        push_image(&client, repo, &config, &manifest)?;
        let reference = format!("{addr}/{repo}:1");
        println!("built and pushed {reference} ({}) in {:.1?}", human_size(huge.image_bytes), start.elapsed());

        let mut row = |name: &'static str, key: Key, sample: Sample| {
            println!("{name:<20} {:>7.2} s  {:>6.1} MB RSS", sample.wall, sample.rss_kb as f64 * 1024.0 / MB);
            huge.rows.push((name, sample, key));
        };
        row("hpn pull", Key::Pull, self.hpn_run(Store::Fresh("huge-store"), &[&"pull", &reference]).time()?);
        // The cold save fills the store the warm one reads; only the warm save's archive is kept, for push -i.
        let store = self.path("huge-store");
        fresh_dir(&store)?;
        let cold = self.hpn_run(Store::Filled("huge-store"), &[&"save", &reference]).out(self.path("huge-cold.tar"));
        row("hpn save (cold)", Key::Save, cold.time()?);
        let out = self.path("huge.tar");
        let warm = self.hpn_run(Store::Filled("huge-store"), &[&"save", &reference]).out(out.clone()).keep_out();
        row("hpn save (warm)", Key::Warm, warm.time()?);
        remove(&store)?;
        let registry_b = Registry::start()?;
        let push = self.hpn_run(Store::Fresh("huge-store"), &[&"push", &"-i", &out, &"-r", &registry_b.addr()]);
        row("hpn push -i", Key::Push, push.time()?);
        drop(registry_b);
        remove(&out)?;
        Ok(huge)
    }
}

/// Free bytes on the file system holding `path`, as `df` reports them.
fn free_disk_bytes(path: &Path) -> Result<u64> {
    let output = Command::new("df").args(["-B1", "--output=avail"]).arg(path).stdin(Stdio::null()).output()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("df reported no free space for {}", path.display()))
}
