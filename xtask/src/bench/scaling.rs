//! The runs beyond the main corpus: many small images (scaling), the per-host request limit
//! (concurrency) and one 2 GiB layer (large).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Result;
use hpn_testkit::fixtures::media_types::OCI_MANIFEST;
use hpn_testkit::http::{Body, Client};
use hpn_testkit::{HashingWriter, Registry, Rng, sha256_digest};

use super::corpus::{image_documents, push_image, write_tar_layer};
use super::sampling::{Sample, median};
use super::{
    Bench, CONCURRENCY_SWEEP, Key, LARGE_LAYER_BYTES, MB, SCALING_BASE_BYTES, SCALING_UNIQUE_BYTES, Store, curl_all,
    remove, sync_disk,
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

#[derive(Debug)]
pub(super) struct Scaling {
    pub(super) points: Vec<ScalingPoint>,
    /// Median latency of one manifest GET on a kept-alive connection, in seconds.
    pub(super) request_latency: f64,
}

impl Bench {
    pub(super) fn scaling(&self, small: usize, big: usize) -> Result<Scaling> {
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
        for i in 0..big {
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

impl Bench {
    pub(super) fn large(&self) -> Result<Large> {
        let registry = Registry::start()?;
        let addr = registry.addr().to_owned();
        let start = Instant::now();
        let layer_path = self.path("large-layer.tar");
        let file = BufWriter::with_capacity(1 << 20, File::create(&layer_path)?);
        let mut writer = HashingWriter::new(file);
        // A 1 MiB random block, stamped with its position so no two blocks are alike.
        let mut block = vec![0u8; 1 << 20];
        Rng::new(0x1a26e).fill(&mut block);
        let mut counter = 0u64;
        let written = write_tar_layer(&mut writer, "data/large.bin", LARGE_LAYER_BYTES, |buf| {
            let n = buf.len();
            buf.copy_from_slice(&block[..n]);
            buf[..8].copy_from_slice(&counter.to_le_bytes());
            counter += 1;
        })?;
        writer.flush()?;
        let (layer_digest, _, inner) = writer.finish();
        inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
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

pub(super) fn print_large(row: Option<&(&str, Sample, Option<Key>)>) {
    if let Some((name, s, _)) = row {
        println!("{name:<20} {:>7.2} s  {:>6.1} MB RSS", s.wall, s.rss_kb as f64 * 1024.0 / MB);
    }
}
