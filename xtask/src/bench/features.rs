//! What a feature costs, each measured side by side with the same job without it, interleaved
//! run by run: referrer discovery on pull, `--split` on a warm save, a mirror list whose first
//! mirror is dead on pull.

use std::fs;
use std::net::TcpListener;

use anyhow::Result;
use hpn_testkit::Registry;

use super::sampling::{Sample, median};
use super::{Bench, Store, WARM_STORE, fresh_dir, remove};

/// A job with a feature and the same job without it.
#[derive(Debug, Default)]
pub(super) struct Pair {
    pub(super) with: Vec<Sample>,
    pub(super) without: Vec<Sample>,
}

impl Pair {
    /// The median over runs of (with ÷ without) in the same run.
    pub(super) fn ratio(&self) -> f64 {
        median(&self.with.iter().zip(&self.without).map(|(with, without)| with.wall / without.wall).collect::<Vec<_>>())
    }

    pub(super) fn walls(&self) -> (f64, f64) {
        let wall = |samples: &[Sample]| median(&samples.iter().map(|sample| sample.wall).collect::<Vec<_>>());
        (wall(&self.with), wall(&self.without))
    }
}

/// Pull with referrer discovery (the default) against `--no-referrers`.
#[derive(Debug, Default)]
pub(super) struct Referrers {
    pub(super) pulls: Pair,
    /// HTTP requests to the registry per image, with and without discovery (first run).
    pub(super) requests_per_image: (f64, f64),
}

/// A warm save cut into volumes against the same save into one archive.
#[derive(Debug, Default)]
pub(super) struct SplitCost {
    pub(super) saves: Pair,
    pub(super) volume_size: u64,
    pub(super) volumes: usize,
    pub(super) archive_bytes: u64,
}

/// Pull through `--mirror A=DEAD` (refused connections, then A itself) against a direct pull.
#[derive(Debug, Default)]
pub(super) struct MirrorFallback {
    pub(super) pulls: Pair,
}

impl Bench {
    /// Fills the store the warm jobs read, unless a main run already did.
    pub(super) fn fill_warm_store(&self) -> Result<()> {
        let warm_store = self.path(WARM_STORE);
        if !warm_store.join("index.json").exists() {
            fresh_dir(&warm_store)?;
            self.timer.time(&self.hpn(&[&"pull", &"-f", &self.list, &"--store", &warm_store]))?;
        }
        Ok(())
    }

    /// `hpn pull -f list` into an empty store, with referrer discovery and without.
    pub(super) fn referrers(&self, registry: &Registry, images: usize) -> Result<Referrers> {
        let mut result = Referrers::default();
        for run in 0..self.runs {
            let mut requests = [0.0; 2];
            for (position, extra) in [None, Some("--no-referrers")].into_iter().enumerate() {
                let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"pull", &"-f", &self.list];
                if let Some(flag) = &extra {
                    args.push(flag);
                }
                let before = registry.access_log().len();
                let sample = self.hpn_run(Store::Fresh("referrers-store"), &args).time()?;
                requests[position] = (registry.access_log().len() - before) as f64 / images as f64;
                if extra.is_none() { &mut result.pulls.with } else { &mut result.pulls.without }.push(sample);
            }
            if run == 0 {
                result.requests_per_image = (requests[0], requests[1]);
            }
            println!(
                "run {}/{}  pull with referrers {:.2} s ({:.1} requests/image), --no-referrers {:.2} s ({:.1})",
                run + 1,
                self.runs,
                result.pulls.with.last().map_or(0.0, |s| s.wall),
                requests[0],
                result.pulls.without.last().map_or(0.0, |s| s.wall),
                requests[1]
            );
        }
        Ok(result)
    }

    /// A warm save with `--split` at a quarter of the archive's size (so several volumes), against
    /// the same warm save into one archive.
    pub(super) fn split_cost(&self) -> Result<SplitCost> {
        self.fill_warm_store()?;
        let mut result = SplitCost::default();
        for run in 0..self.runs {
            let whole = self.save_list(Store::Filled(WARM_STORE), "split-whole.tar").keep_out();
            result.saves.without.push(whole.time()?);
            let whole_path = self.path("split-whole.tar");
            if run == 0 {
                result.archive_bytes = fs::metadata(&whole_path)?.len();
                // A quarter, and at least 1 MiB: room for the lists of contents of any volume.
                result.volume_size = (result.archive_bytes / 4).max(1 << 20);
            }
            remove(&whole_path)?;
            let size = result.volume_size.to_string();
            let split = self.hpn_run(Store::Filled(WARM_STORE), &[&"save", &"-f", &self.list, &"--split", &size]);
            result.saves.with.push(split.out(self.path("split.tar")).time()?);
            let volumes: Vec<_> = fs::read_dir(&self.work)?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| {
                    path.file_name()
                        .and_then(|name| name.to_str())
                        .is_some_and(|name| name.starts_with("split.") && name.ends_with(".tar") && name != "split.tar")
                })
                .collect();
            result.volumes = volumes.len();
            for volume in volumes {
                remove(&volume)?;
            }
            let (with, without) = (result.saves.with.last(), result.saves.without.last());
            println!(
                "run {}/{}  warm save --split {} ({} volumes) {:.2} s, one archive {:.2} s",
                run + 1,
                self.runs,
                result.volume_size,
                result.volumes,
                with.map_or(0.0, |s| s.wall),
                without.map_or(0.0, |s| s.wall)
            );
        }
        Ok(result)
    }

    /// `hpn pull -f list` into an empty store through a mirror of registry A that refuses
    /// connections (so each image falls back to A), against the same pull straight from A.
    pub(super) fn mirror_fallback(&self, registry: &Registry) -> Result<MirrorFallback> {
        // A port nothing listens on: bound, then closed, so a connection is refused at once.
        let dead = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mirror = format!("{}=127.0.0.1:{}", registry.addr(), dead.port());
        let mut result = MirrorFallback::default();
        for run in 0..self.runs {
            let direct = self.hpn_run(Store::Fresh("mirror-store"), &[&"pull", &"-f", &self.list]);
            result.pulls.without.push(direct.time()?);
            let mirrored =
                self.hpn_run(Store::Fresh("mirror-store"), &[&"--mirror", &mirror, &"pull", &"-f", &self.list]);
            result.pulls.with.push(mirrored.time()?);
            println!(
                "run {}/{}  pull through a dead first mirror {:.2} s, direct {:.2} s",
                run + 1,
                self.runs,
                result.pulls.with.last().map_or(0.0, |s| s.wall),
                result.pulls.without.last().map_or(0.0, |s| s.wall)
            );
        }
        Ok(result)
    }
}
