//! BENCHMARKS.md and the terminal summary, rendered from the measurements.

use std::fmt::Write as _;
use std::time::Duration;

use super::corpus::Corpus;
use super::features::{MirrorFallback, Referrers, SplitCost};
use super::machine::Machine;
use super::perf::{Profile, profile_summary};
use super::sampling::{Sample, median};
use super::scaling::{
    ConcurrencyPoint, Huge, LARGE_ONE_FILE_FLOOR, LARGE_TWO_FILES_FLOOR, Large, Scaling, ScalingPush,
};
use super::serve::{SERVE_CLIENTS, Serving, TARGET_SERVE_VS_REGISTRY};
use super::{
    CURL_PARALLEL, HUGE_IMAGE_BYTES, Key, LARGE_LAYER_BYTES, MB, Results, SCALING_BASE_BYTES, SCALING_UNIQUE_BYTES,
    TARGET_LARGE_SAVE_VS_PULL, TARGET_PUSH_VS_PUT, TARGET_RSS_MB, TARGET_SAVE_VS_ARCHIVE_LOOP, TARGET_SAVE_VS_OCI_LOOP,
    TARGET_SAVE_VS_RAW, TARGET_VERIFY_VS_SHA256SUM, TARGET_WARM_SECONDS, TARGET_WARM_VS_CAT,
};
use crate::human_size;

#[derive(Debug)]
pub(super) struct Report {
    pub(super) machine: Machine,
    pub(super) corpus: Corpus,
    pub(super) results: Results,
    pub(super) profiles: Vec<Profile>,
    pub(super) scaling: Option<Scaling>,
    pub(super) scaling_push: Option<ScalingPush>,
    pub(super) concurrency: Vec<ConcurrencyPoint>,
    pub(super) serving: Option<Serving>,
    pub(super) large: Option<Large>,
    pub(super) huge: Option<Huge>,
    pub(super) referrers: Option<Referrers>,
    pub(super) split: Option<SplitCost>,
    pub(super) mirror: Option<MirrorFallback>,
    pub(super) runs: usize,
    pub(super) total: Duration,
    pub(super) load_end: String,
}

/// One line of the targets table.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) what: String,
    pub(super) measured: String,
    pub(super) pass: bool,
    pub(super) margin: String,
}

impl Report {
    pub(super) fn baseline(key: Key) -> Option<(Key, &'static str)> {
        match key {
            Key::Save => Some((Key::SkopeoArchive, "skopeo docker-archive loop")),
            Key::Pull => Some((Key::SkopeoOci, "skopeo oci: loop")),
            Key::Push => Some((Key::SkopeoPush, "skopeo push loop")),
            Key::Copy | Key::CopyList => Some((Key::SkopeoCopy, "skopeo copy loop")),
            _ => None,
        }
    }

    pub(super) fn rows(&self) -> Vec<Key> {
        [
            Key::Save,
            Key::SkopeoArchive,
            Key::SkopeoOci,
            Key::Pull,
            Key::Warm,
            Key::WarmRehash,
            Key::CatFloor,
            Key::Load,
            Key::Verify,
            Key::ShaSum,
            Key::Push,
            Key::SkopeoPush,
            Key::Copy,
            Key::CopyList,
            Key::SkopeoCopy,
            Key::PutFloor,
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
    pub(super) fn versus(&self, key: Key) -> String {
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

    /// The floor a job is measured against: the least any tool could take for the same bytes.
    pub(super) fn floor(key: Key) -> Option<Key> {
        match key {
            Key::Save | Key::Pull | Key::SkopeoArchive | Key::SkopeoOci | Key::CurlSha | Key::SaveSynced => {
                Some(Key::Curl)
            }
            Key::Warm | Key::WarmRehash | Key::WarmSynced => Some(Key::CatFloor),
            Key::Push | Key::Copy | Key::CopyList | Key::SkopeoPush | Key::SkopeoCopy => Some(Key::PutFloor),
            Key::Verify => Some(Key::ShaSum),
            _ => None,
        }
    }

    /// The floor's time for a job: for `hpn verify`, sha256sum's time spread over every core.
    pub(super) fn floor_wall(&self, key: Key) -> Option<f64> {
        let floor = Self::floor(key).filter(|f| self.results.has(*f))?;
        let wall = self.results.wall(floor);
        Some(if floor == Key::ShaSum { wall / self.machine.cores as f64 } else { wall })
    }

    /// "1.23 (PUT)": a job's time over its floor's.
    pub(super) fn vs_floor(&self, key: Key) -> String {
        match (Self::floor(key), self.floor_wall(key)) {
            (Some(floor), Some(wall)) => format!("{:.2} ({})", self.results.wall(key) / wall, floor_name(floor)),
            _ => "–".to_owned(),
        }
    }

    /// Bytes a job moves, for CPU per GB: the corpus's unique blobs, or the archive for the jobs
    /// that read one whole.
    pub(super) fn moved_bytes(&self, key: Key) -> f64 {
        match key {
            Key::Verify | Key::ShaSum | Key::CatFloor => self.results.archive_bytes as f64,
            _ => self.corpus.unique_bytes() as f64,
        }
    }

    /// CPU-seconds per GB moved, the job's own and the registries' meanwhile: "0.52 + 0.80".
    pub(super) fn cpu_per_gb(&self, key: Key) -> String {
        let (user, sys) = self.results.cpu(key);
        let gb = self.moved_bytes(key) / 1e9;
        let registry = self.results.registry_cpu(key);
        if registry > 0.005 {
            format!("{:.2} + {:.2}", (user + sys) / gb, registry / gb)
        } else {
            format!("{:.2}", (user + sys) / gb)
        }
    }

    pub(super) fn vs_raw(&self, key: Key) -> String {
        let raw = self.results.wall(Key::Curl);
        match key {
            Key::Curl => "1.00".to_owned(),
            _ => format!("{:.2}", self.results.wall(key) / raw),
        }
    }

    pub(super) fn targets(&self) -> Vec<Target> {
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
        if r.has(Key::PutFloor) {
            for (key, what) in [
                (Key::Push, "`hpn push -i`"),
                (Key::CopyList, "`hpn copy -f list -r B`"),
                (Key::Copy, "`hpn copy` (per image)"),
            ] {
                t.push(at_most(
                    &format!("{what} ≤ {TARGET_PUSH_VS_PUT}× the PUT floor (parallel curl uploads)"),
                    r.wall(key) / r.wall(Key::PutFloor),
                    TARGET_PUSH_VS_PUT,
                    "×",
                ));
            }
        }
        t.push(at_most("warm `hpn save` under 0.5 s", r.wall(Key::Warm), TARGET_WARM_SECONDS, " s"));
        if r.has(Key::CatFloor) {
            t.push(at_most(
                &format!("warm `hpn save` ≤ {TARGET_WARM_VS_CAT}× `cat` of its archive into a new file"),
                r.wall(Key::Warm) / r.wall(Key::CatFloor),
                TARGET_WARM_VS_CAT,
                "×",
            ));
        }
        if let Some(floor) = self.floor_wall(Key::Verify) {
            t.push(at_least(
                &format!(
                    "`hpn verify` ≥ {TARGET_VERIFY_VS_SHA256SUM}× the throughput of {} × sha256sum",
                    self.machine.cores
                ),
                floor / r.wall(Key::Verify),
                TARGET_VERIFY_VS_SHA256SUM,
            ));
        }
        let (worst_key, worst) = self
            .rows()
            .into_iter()
            .filter(|k| k.is_hpn())
            .map(|k| (k, r.rss_mb(k)))
            .fold((Key::Save, 0.0), |a, b| if b.1 > a.1 { b } else { a });
        let mut rss = at_most("peak RSS ≤ 100 MB in every hpn job", worst, TARGET_RSS_MB, " MB");
        rss.measured = format!("{worst:.1} MB ({})", short_label(worst_key));
        t.push(rss);
        if let Some(serving) = &self.serving {
            t.push(at_least(
                "`hpn serve` ≥ 1.2× docker-registry's throughput (parallel curl, same blobs)",
                serving.curl_ratio(),
                TARGET_SERVE_VS_REGISTRY,
            ));
            t.push(at_most(
                &format!("`hpn serve` peak RSS ≤ 100 MB with {SERVE_CLIENTS} clients"),
                serving.rss_clients_mb(),
                TARGET_RSS_MB,
                " MB",
            ));
        }
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
            let wall = |name: &str| large.wall(name);
            if let (Some(pull), Some(save)) = (wall("hpn pull"), wall("hpn save (cold)")) {
                t.push(at_least(
                    &format!(
                        "cold `hpn save` of the {} layer ≥ {TARGET_LARGE_SAVE_VS_PULL}× `hpn pull`'s throughput",
                        human_size(large.layer_bytes)
                    ),
                    pull / save,
                    TARGET_LARGE_SAVE_VS_PULL,
                ));
            }
            if let (Some(save), Some(floor)) = (wall("hpn save (cold)"), wall(LARGE_TWO_FILES_FLOOR)) {
                t.push(at_most(
                    &format!(
                        "cold `hpn save` of the {} layer ≤ 1× the time curl takes to write it twice (tee)",
                        human_size(large.layer_bytes)
                    ),
                    save / floor,
                    1.0,
                    "×",
                ));
            }
        }
        t.extend(self.part_targets());
        t
    }

    /// The targets of the parts beyond the main corpus: the 200-image push against its PUT floor,
    /// and the huge image's peak RSS.
    pub(super) fn part_targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        if let Some(push) = &self.scaling_push {
            let ratio = push.ratio();
            t.push(Target {
                what: format!(
                    "`hpn push -i` of the {}-image list ≤ {TARGET_PUSH_VS_PUT}× the PUT floor of its blobs",
                    push.images
                ),
                measured: format!("{ratio:.2}×"),
                pass: ratio <= TARGET_PUSH_VS_PUT,
                margin: if ratio <= TARGET_PUSH_VS_PUT {
                    format!("{:.0}% under the limit", (1.0 - ratio / TARGET_PUSH_VS_PUT) * 100.0)
                } else {
                    format!("over by {:.0}%", (ratio / TARGET_PUSH_VS_PUT - 1.0) * 100.0)
                },
            });
        }
        if let Some(huge) = self.huge.as_ref().filter(|huge| huge.skipped.is_none()) {
            let (name, worst) = huge
                .rows
                .iter()
                .map(|(n, s, _)| (*n, s.rss_kb as f64 * 1024.0 / MB))
                .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
            t.push(Target {
                what: format!(
                    "peak RSS ≤ {TARGET_RSS_MB:.0} MB with a {} image of {} layers",
                    human_size(huge.image_bytes),
                    huge.layers
                ),
                measured: format!("{worst:.1} MB ({name})"),
                pass: worst <= TARGET_RSS_MB,
                margin: if worst <= TARGET_RSS_MB {
                    format!("{:.0}% under the limit", (1.0 - worst / TARGET_RSS_MB) * 100.0)
                } else {
                    format!("over by {:.1} MB", worst - TARGET_RSS_MB)
                },
            });
        }
        t
    }

    /// The report's sections of the parts that ran (`cargo xtask bench --only`), with their targets.
    pub(super) fn sections_markdown(&self) -> String {
        let mut md = String::new();
        let targets = self.part_targets();
        if !targets.is_empty() {
            let _ = writeln!(md, "| target | measured | result | margin |\n|---|---:|---|---|");
            for t in &targets {
                let verdict = if t.pass { "PASS" } else { "**MISS**" };
                let _ = writeln!(md, "| {} | {} | {verdict} | {} |", t.what, t.measured, t.margin);
            }
            let _ = writeln!(md);
        }
        self.write_scaling(&mut md);
        if !self.concurrency.is_empty() {
            self.write_concurrency(&mut md);
        }
        if let Some(serving) = &self.serving {
            md.push_str(&serving.markdown());
        }
        if self.large.is_some() {
            self.write_large(&mut md);
        }
        self.write_parts(&mut md);
        self.write_profiles(&mut md);
        md
    }

    /// The sections of the 200-image push, the huge image, and what features cost.
    pub(super) fn write_parts(&self, md: &mut String) {
        if let Some(push) = &self.scaling_push {
            let (push_wall, floor_wall) = (
                median(&push.push.iter().map(|s| s.wall).collect::<Vec<_>>()),
                median(&push.floor.iter().map(|s| s.wall).collect::<Vec<_>>()),
            );
            let _ = writeln!(md, "## {} images pushed, against the PUT floor\n", push.images);
            let _ = writeln!(
                md,
                "`hpn push -i` of the scaling list saved into one archive ({} of unique blobs: the shared base once, \
                 then each image's layer and config), into a fresh registry B, against the PUT floor: the same \
                 unique blobs uploaded by {CURL_PARALLEL} parallel curls (a POST and one monolithic PUT each), \
                 interleaved run by run. push also PUTs {} manifests and mounts the base into every repository, \
                 which the floor does not.\n",
                human_size(push.bytes),
                push.images
            );
            let _ = writeln!(md, "| job | median | peak RSS |\n|---|---:|---:|");
            let _ = writeln!(md, "| hpn push -i | {push_wall:.2} s | {:.1} MB |", max_rss(&push.push));
            let _ = writeln!(md, "| floor: parallel curl PUT | {floor_wall:.2} s | |");
            let _ = writeln!(
                md,
                "\npush ÷ floor: **{:.2}×** (median of the per-run ratios; target ≤ {TARGET_PUSH_VS_PUT}×).\n",
                push.ratio()
            );
        }
        if let Some(huge) = &self.huge {
            let _ = writeln!(md, "## A {} image of {} layers\n", human_size(HUGE_IMAGE_BYTES), huge.layers);
            if let Some(skipped) = &huge.skipped {
                let _ = writeln!(md, "Not measured on this run: {skipped}.\n");
            } else {
                let _ = writeln!(
                    md,
                    "A generated OCI image of {} uncompressed layers of incompressible bytes, {} in all, one run \
                     each (each job moves gigabytes). Peak RSS must stay flat: the corpus column is the same job on \
                     the bench corpus.\n",
                    huge.layers,
                    human_size(huge.image_bytes)
                );
                let _ = writeln!(
                    md,
                    "| job | wall | throughput | peak RSS | same job on the corpus |\n|---|---:|---:|---:|---:|"
                );
                for (name, s, key) in &huge.rows {
                    let _ = writeln!(
                        md,
                        "| {name} | {:.2} s | {:.0} MB/s | {:.1} MB | {} |",
                        s.wall,
                        huge.image_bytes as f64 / MB / s.wall,
                        s.rss_kb as f64 * 1024.0 / MB,
                        mb_or_dash(self.results.rss_mb(*key))
                    );
                }
                let rss: Vec<f64> = huge.rows.iter().map(|(_, s, _)| s.rss_kb as f64 * 1024.0 / MB).collect();
                let worst = rss.iter().copied().fold(0.0, f64::max);
                let _ = writeln!(
                    md,
                    "\nPeak RSS {:.1}–{worst:.1} MB over jobs moving {}{}.\n",
                    rss.iter().copied().fold(f64::INFINITY, f64::min),
                    human_size(huge.image_bytes),
                    if worst <= TARGET_RSS_MB {
                        format!(" — flat: under {TARGET_RSS_MB:.0} MB, bounded by buffers, not by the image's size")
                    } else {
                        " — NOT flat".to_owned()
                    }
                );
            }
        }
        if self.referrers.is_none() && self.split.is_none() && self.mirror.is_none() {
            return;
        }
        let _ = writeln!(md, "## What features cost\n");
        let _ = writeln!(
            md,
            "Each job with the feature and the same job without it, interleaved run by run on the corpus; the \
             ratio is the median of the per-run ratios.\n"
        );
        let _ = writeln!(md, "| feature | with | without | with ÷ without | notes |\n|---|---:|---:|---:|---|");
        if let Some(referrers) = &self.referrers {
            let (with, without) = referrers.pulls.walls();
            let (asked, not_asked) = referrers.requests_per_image;
            let _ = writeln!(
                md,
                "| referrer discovery: `hpn pull -f list` against `--no-referrers` | {with:.2} s | {without:.2} s | \
                 {:.2}× | {asked:.1} against {not_asked:.1} requests per image ({:+.1}), from registry A's access log |",
                referrers.pulls.ratio(),
                asked - not_asked
            );
        }
        if let Some(split) = &self.split {
            let (with, without) = split.saves.walls();
            let _ = writeln!(
                md,
                "| `--split {}`: warm `hpn save` into {} volumes against one {} archive | {with:.2} s | \
                 {without:.2} s | {:.2}× | the set goes through one temp tar, then is cut into volumes |",
                human_size(split.volume_size),
                split.volumes,
                human_size(split.archive_bytes),
                split.saves.ratio()
            );
        }
        if let Some(mirror) = &self.mirror {
            let (with, without) = mirror.pulls.walls();
            let _ = writeln!(
                md,
                "| mirror fallback: `hpn pull` through `--mirror A=DEAD` (connection refused, then A) against a \
                 direct pull | {with:.2} s | {without:.2} s | {:.2}× | |",
                mirror.pulls.ratio()
            );
        }
        let _ = writeln!(md);
    }

    pub(super) fn terminal_table(&self) -> String {
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

    pub(super) fn markdown(&self) -> String {
        let mut md = String::new();
        let r = &self.results;
        let m = &self.machine;
        let c = &self.corpus;
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Written by `cargo xtask bench` ({} run{} of each job, median reported; the whole bench took {:.0} s). \
             Every number below comes from that run: do not edit by hand, run it again.\n",
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            self.total.as_secs_f64()
        );

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
        let _ = writeln!(
            md,
            "| job | median | min–max | ÷ raw | ÷ floor | peak RSS | CPU user + sys | registry CPU | CPU s/GB (+ registry) | comparison |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for key in self.rows() {
            let (min, max) = r.spread(key);
            let (user, sys) = r.cpu(key);
            let _ = writeln!(
                md,
                "| {} | **{:.2} s** | {:.2}–{:.2} | {} | {} | {:.1} MB | {:.2} + {:.2} s | {:.2} s | {} | {} |",
                key.label().replace('|', "\\|"),
                r.wall(key),
                min,
                max,
                self.vs_raw(key),
                self.vs_floor(key),
                r.rss_mb(key),
                user,
                sys,
                r.registry_cpu(key),
                self.cpu_per_gb(key),
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
        self.write_floors(&mut md);

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
        if let Some(serving) = &self.serving {
            md.push_str(&serving.markdown());
        }
        self.write_large(&mut md);
        self.write_parts(&mut md);
        self.write_profiles(&mut md);
        self.write_regressions(&mut md);
        md
    }

    /// The file system the bench wrote to: "ext4".
    pub(super) fn fs_type(&self) -> &str {
        self.machine.fs.split_whitespace().next().unwrap_or("the file system")
    }

    /// Bytes a job writes (what `--sync` waits for): every blob into the store and then the archive
    /// for a cold save, only the archive for a warm one.
    pub(super) fn written_bytes(&self, key: Key) -> f64 {
        let archive = self.results.archive_bytes as f64;
        match key {
            Key::Save | Key::SaveSynced => archive + self.corpus.unique_bytes() as f64,
            Key::Warm | Key::WarmSynced => archive,
            _ => 0.0,
        }
    }

    /// What `--sync` costs a default job, from the two rows: "+0.61 s (+73%: 0.83 s → 1.45 s)".
    pub(super) fn sync_cost(&self, key: Key) -> Option<String> {
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
    pub(super) fn write_durability(&self, md: &mut String) {
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

    /// The store check, the push floor and verify's hashing floor, each as a ratio.
    pub(super) fn write_floors(&self, md: &mut String) {
        let r = &self.results;
        let mb_s = |key: Key| self.moved_bytes(key) / MB / r.wall(key);
        if r.has(Key::WarmRehash) && r.has(Key::CatFloor) {
            let (warm, rehash, cat) = (r.wall(Key::Warm), r.wall(Key::WarmRehash), r.wall(Key::CatFloor));
            let cpu = |key: Key| {
                let (user, sys) = r.cpu(key);
                user + sys
            };
            let _ = writeln!(
                md,
                "**The store check** (nothing leaves the store unverified): a warm save checks every blob before \
                 it goes into the archive, skipping the hash while the blob's stat matches its verified-stat record \
                 (`.hpn-verified/`). With the records: {warm:.2} s, {:.2} CPU-s, {:.2}× the `cat` floor \
                 ({cat:.2} s to copy the {:.0} MB archive into a new file). With the records removed before each \
                 run, every blob re-hashed: {rehash:.2} s, {:.2} CPU-s, {:.2}× the records' time and {:.2}× the \
                 `cat` floor.\n",
                cpu(Key::Warm),
                warm / cat,
                r.archive_bytes as f64 / MB,
                cpu(Key::WarmRehash),
                rehash / warm,
                rehash / cat
            );
        }
        if r.has(Key::PutFloor) {
            let put = r.wall(Key::PutFloor);
            let _ = writeln!(
                md,
                "**The push floor**: `xargs -P {CURL_PARALLEL}` curls each uploading one of the {} unique blobs \
                 (POST, then one PUT of the whole file with its digest) into a fresh registry B: {put:.2} s. \
                 `hpn push -i` takes {:.2}× that, `hpn copy -f list -r B` (every image in one run) {:.2}×, \
                 `hpn copy` one process per image {:.2}×, skopeo's push loop {:.2}× and skopeo's copy loop \
                 {:.2}×.\n",
                self.corpus.blobs.len(),
                r.wall(Key::Push) / put,
                r.wall(Key::CopyList) / put,
                r.wall(Key::Copy) / put,
                r.wall(Key::SkopeoPush) / put,
                r.wall(Key::SkopeoCopy) / put
            );
        }
        if let Some(floor) = self.floor_wall(Key::Verify) {
            let cores = self.machine.cores;
            let _ = writeln!(
                md,
                "**`hpn verify`** of the cold save's archive ({:.0} MB, page cache warm): {:.0} MB/s. \
                 `sha256sum` of the same file on one core: {:.0} MB/s, so {cores} × sha256sum is {:.0} MB/s; \
                 verify reaches {:.2}× that.\n",
                self.moved_bytes(Key::Verify) / MB,
                mb_s(Key::Verify),
                mb_s(Key::ShaSum),
                mb_s(Key::ShaSum) * cores as f64,
                floor / r.wall(Key::Verify)
            );
        }
    }

    /// Where a target is missed: the measured breakdown of the hpn job behind it.
    pub(super) fn write_missed(&self, md: &mut String, targets: &[Target]) {
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
                "This run took no CPU profiles (perf is not available)."
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
            let registry = r.registry_cpu(Key::Push);
            let floor_registry = r.registry_cpu(Key::PutFloor);
            let _ = writeln!(
                md,
                "  - the PUT floor ({:.2} s: curl uploading the same blobs, nothing else) kept registry B busy for \
                 {floor_registry:.2} CPU-seconds; hpn's push {registry:.2} s. What the registry spends receiving \
                 (hashing and writing every byte) is the bound on both: {:.2} s of wall time even with {} to itself.",
                r.wall(Key::PutFloor),
                floor_registry / cores as f64,
                cores_phrase(cores),
            );
        }
        if missed.iter().any(|t| t.what.starts_with("peak RSS")) {
            let _ = writeln!(md, "- peak RSS per job is in the results table.");
        }
        let _ = writeln!(md);
    }

    pub(super) fn write_concurrency(&self, md: &mut String) {
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

    pub(super) fn write_scaling(&self, md: &mut String) {
        let Some(s) = &self.scaling else { return };
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

    /// What bounds the big layer's pull and cold save: the bytes each writes, timed without hpn.
    fn write_large_floors(&self, md: &mut String, large: &Large) {
        let wall = |name: &str| large.wall(name);
        let (Some(pull), Some(save), Some(one), Some(two)) =
            (wall("hpn pull"), wall("hpn save (cold)"), wall(LARGE_ONE_FILE_FLOOR), wall(LARGE_TWO_FILES_FLOOR))
        else {
            return;
        };
        let _ = writeln!(
            md,
            "\n**What bounds the cold save here.** `hpn pull` writes the layer once, into the store; a cold \
             `hpn save` writes it twice, into the store and into the archive (one download streamed into both \
             in one pass: nothing is read back). The same writes without hpn: curl into one file {one:.2} s, \
             curl through `tee` into two files {two:.2} s, on {}: twice the bytes, {:.2}× the time, because once \
             the dirty pages pass the kernel's write-back thresholds (vm.dirty_background_ratio {}%, \
             vm.dirty_ratio {}% of the memory free for them) a writer is held to the rate the disk takes them. \
             `hpn pull` takes {:.2}× its floor and the cold save {:.2}× its own. The save's throughput is {:.2}× the pull's where the \
             floors' is {:.2}×: the second copy's writes, not hpn, keep a cold save from a pull's throughput \
             on this disk.",
            self.machine.fs,
            two / one,
            vm_setting("dirty_background_ratio"),
            vm_setting("dirty_ratio"),
            pull / one,
            save / two,
            pull / save,
            one / two
        );
    }

    pub(super) fn write_large(&self, md: &mut String) {
        let _ = writeln!(md, "## One {} layer\n", human_size(LARGE_LAYER_BYTES));
        let Some(large) = &self.large else { return };
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
            let _ = writeln!(
                md,
                "| {name} | {:.2} s | {:.0} MB/s | {:.1} MB | {} |",
                s.wall,
                large.layer_bytes as f64 / MB / s.wall,
                s.rss_kb as f64 * 1024.0 / MB,
                mb_or_dash(key.map_or(f64::NAN, |k| self.results.rss_mb(k)))
            );
        }
        self.write_large_floors(md, large);
        // Only where the corpus ran the same job (`--only` may leave it out).
        let growths: Vec<f64> = large
            .rows
            .iter()
            .filter_map(|(_, s, k)| k.map(|k| s.rss_kb as f64 * 1024.0 / MB - self.results.rss_mb(k)))
            .filter(|growth| !growth.is_nan())
            .collect();
        if growths.is_empty() {
            let _ = writeln!(
                md,
                "
The corpus jobs did not run: no growth of peak RSS to compare.
"
            );
            return;
        }
        let worst_growth = growths.into_iter().fold(f64::NEG_INFINITY, f64::max);
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

    pub(super) fn write_profiles(&self, md: &mut String) {
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

    pub(super) fn write_regressions(&self, md: &mut String) {
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
            "- **The gate**: `cargo xtask bench --quick` (run by `.ci/run`) measures cold save ÷ raw fetch, warm \
             save ÷ `cat`, push ÷ curl PUT and peak RSS on a small generated corpus and fails when one is worse \
             than `xtask/bench-thresholds.toml` allows twice running; that file's comments record the spread \
             each threshold was derived from."
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

/// A floor's name in the "÷ floor" column.
/// A kernel setting of /proc/sys/vm, as it reads, or "?".
fn vm_setting(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
        .map_or_else(|_| "?".to_owned(), |text| text.trim().to_owned())
}

/// The largest peak RSS of `samples`, in MB.
fn max_rss(samples: &[Sample]) -> f64 {
    samples.iter().map(|s| s.rss_kb).max().unwrap_or(0) as f64 * 1024.0 / MB
}

/// "12.3 MB", or "–" where the job did not run.
fn mb_or_dash(mb: f64) -> String {
    if mb.is_nan() { "–".to_owned() } else { format!("{mb:.1} MB") }
}

pub(super) fn floor_name(key: Key) -> &'static str {
    match key {
        Key::Curl => "raw fetch",
        Key::CatFloor => "cat",
        Key::PutFloor => "PUT",
        Key::ShaSum => "sha256sum ÷ cores",
        other => short_label(other),
    }
}

pub(super) fn short_label(key: Key) -> &'static str {
    match key {
        Key::Save => "hpn save (cold)",
        Key::Warm => "hpn save (warm)",
        Key::WarmRehash => "hpn save (warm, re-hashing)",
        Key::Verify => "hpn verify",
        Key::Pull => "hpn pull",
        Key::Load => "hpn load -i",
        Key::Push => "hpn push -i",
        Key::Copy => "hpn copy",
        Key::CopyList => "hpn copy -r",
        Key::SaveSynced => "hpn save --sync (cold)",
        Key::WarmSynced => "hpn save --sync (warm)",
        other => other.label(),
    }
}

/// "both cores", "all 4 cores".
pub(super) fn cores_phrase(cores: usize) -> String {
    match cores {
        1 => "its one core".to_owned(),
        2 => "both cores".to_owned(),
        n => format!("all {n} cores"),
    }
}

pub(super) fn scaling_verdict(
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
