use anyhow::anyhow;
use hpn_store::{Store, StoreError};
use indicatif::HumanBytes;

use super::open_store;
use crate::args::StoreCommand;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};

/// `hpn store ls | verify | gc`: file I/O and hashing, so on the blocking pool.
pub async fn run(command: StoreCommand, settings: &Settings) -> Result<ExitStatus, Failure> {
    let store = open_store(settings)?;
    let (quiet, json) = (settings.quiet, settings.json);
    tokio::task::spawn_blocking(move || match command {
        StoreCommand::Ls => list(&store, json),
        StoreCommand::Verify => verify(&store, quiet, json),
        StoreCommand::Gc => collect_garbage(&store, quiet, json),
    })
    .await
    .map_err(|join| Failure::new(ExitStatus::General, anyhow!("store task failed: {join}")))?
}

fn filesystem(error: StoreError) -> Failure {
    Failure::new(ExitStatus::Filesystem, error)
}

fn list(store: &Store, json: bool) -> Result<ExitStatus, Failure> {
    let refs = store.refs().map_err(filesystem)?;
    if json {
        let entries: Vec<serde_json::Value> = refs
            .iter()
            .map(|(name, descriptor)| {
                serde_json::json!({"name": name, "digest": descriptor.digest.to_string(),
                                   "media_type": descriptor.media_type, "size": descriptor.size})
            })
            .collect();
        crate::print_line(serde_json::Value::from(entries));
    } else {
        for (name, descriptor) in refs {
            out!("{name}\t{}", descriptor.digest);
        }
    }
    Ok(ExitStatus::Ok)
}

/// Exit 6 when anything is damaged: the store is files on disk.
fn verify(store: &Store, quiet: bool, json: bool) -> Result<ExitStatus, Failure> {
    let root = store.root().display().to_string();
    let report = store.verify().map_err(filesystem)?;
    for problem in &report.problems {
        eprintln!("hpn: store {root}: {problem}");
    }
    if json {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        crate::print_line(
            serde_json::json!({"store": root, "ok": report.is_ok(), "blobs_checked": report.blobs_checked,
            "bytes_checked": report.bytes_checked, "images_checked": report.refs_checked, "problems": problems}),
        );
    } else if !quiet {
        out!(
            "store {root}: {} image(s), {} blob(s), {} checked; {} problem(s)",
            report.refs_checked,
            report.blobs_checked,
            HumanBytes(report.bytes_checked),
            report.problems.len()
        );
    }
    Ok(if report.is_ok() { ExitStatus::Ok } else { ExitStatus::Filesystem })
}

fn collect_garbage(store: &Store, quiet: bool, json: bool) -> Result<ExitStatus, Failure> {
    let root = store.root().display().to_string();
    let report = store.gc().map_err(filesystem)?;
    if json {
        crate::print_line(serde_json::json!({"store": root, "blobs_kept": report.blobs_kept,
            "blobs_removed": report.blobs_removed, "bytes_freed": report.bytes_freed,
            "temp_files_removed": report.temp_files_removed}));
    } else if !quiet {
        out!(
            "store {root}: removed {} blob(s), freed {}, kept {}",
            report.blobs_removed,
            HumanBytes(report.bytes_freed),
            report.blobs_kept
        );
    }
    Ok(ExitStatus::Ok)
}
