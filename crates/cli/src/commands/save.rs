use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{StreamExt, stream};
use hpn_archive::ArchiveCompression;
use hpn_fs::Durability;
use hpn_oci::{Descriptor, Platform};
use hpn_store::Store;
use hpn_transfer::{
    ArchiveDestination, CopyJob, Engine, EngineOptions, NoReport, PlatformChoice, RegistrySource, StoreDestination,
    StoreSource, TransferError,
};
use tokio::sync::{mpsc, oneshot};

use super::{engine_options, open_store, platform_choice, registry_client, reporter, summary};
use crate::args::{Compression, SaveArgs};
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::{ImageList, RequestedImage};
use crate::summary::Summary;

/// Where `hpn save` writes.
enum SaveTarget {
    /// Every image into one archive.
    Single(PathBuf),
    /// One archive per image, in the Go hpn's layout for the mode.
    PerImage(u8),
}

pub fn archive_compression(choice: Option<Compression>) -> ArchiveCompression {
    match choice {
        None => ArchiveCompression::None,
        Some(Compression::Gzip) => ArchiveCompression::Gzip,
        Some(Compression::Zstd) => ArchiveCompression::Zstd,
    }
}

/// `Some((path, size))` when the export wrote an archive of its own.
type ExportResult = Result<Option<(PathBuf, u64)>, TransferError>;

/// Images are pulled into the store concurrently; each one pulled is exported
/// at once while the others still download. A single archive is written by
/// one exporter in the order images complete; its indexes list images in
/// request order when it is finished.
pub async fn run(args: SaveArgs, settings: &Settings) -> Result<Summary, Failure> {
    let selection = &args.selection;
    let list = ImageList::collect(&selection.images, &selection.files)?;
    let target = match (&args.output, args.save_mode.or(settings.default_save_mode)) {
        (Some(path), _) => SaveTarget::Single(path.clone()),
        (None, mode) => SaveTarget::PerImage(mode.unwrap_or(1)),
    };
    let compression = archive_compression(args.compress);
    let platforms = platform_choice(
        selection.platform.as_deref(),
        selection.all_platforms,
        settings,
        PlatformChoice::One(Platform::host()),
    )?;
    let options = engine_options(platforms, settings);
    let store = open_store(settings)?;
    let jobs = CopyJob::same_names(list.references());

    // Created before any download, so a bad output path fails at once.
    let single = match &target {
        SaveTarget::Single(path) => Some(Arc::new(
            ArchiveDestination::create(path, compression, settings.durability)
                .map_err(|error| Failure::new(ExitStatus::Filesystem, error))?,
        )),
        SaveTarget::PerImage(_) => None,
    };
    // Blobs go into the one archive as soon as the store holds them, while the
    // rest of their image still downloads; the image's export then finds them there.
    let (stored_blobs, mut stored_queue) = mpsc::unbounded_channel::<Descriptor>();
    let mut pull_destination = StoreDestination::new(Arc::clone(&store));
    if single.is_some() {
        pull_destination = pull_destination.notifying(stored_blobs);
    }
    let pull_engine = Engine::new(
        Arc::new(RegistrySource::new(registry_client(settings)?)),
        Arc::new(pull_destination),
        options.clone(),
        reporter(settings),
    );

    let (export_requests, mut export_queue) = mpsc::unbounded_channel::<(CopyJob, oneshot::Sender<ExportResult>)>();
    let exporter = async {
        let Some(archive) = &single else { return };
        let engine = export_engine(&store, Arc::clone(archive), &options);
        // The first failure of an early add (a full disk, say), and the end of early adds: an
        // image export that then fails reports it, as the cause of its own failure.
        let mut early_failure: Option<Arc<TransferError>> = None;
        loop {
            tokio::select! {
                request = export_queue.recv() => match request {
                    Some((job, reply)) => {
                        let exported = engine.copy(&job).await.map(|_| None);
                        let exported = match (&early_failure, exported) {
                            (Some(cause), Err(_)) => Err(TransferError::Shared(Arc::clone(cause))),
                            (_, exported) => exported,
                        };
                        let _ = reply.send(exported);
                    }
                    None => break,
                },
                Some(blob) = stored_queue.recv(), if early_failure.is_none() => {
                    if let Err(error) = archive.add_local_blob(&blob, store.blob_path(&blob.digest)).await {
                        tracing::debug!(digest = %blob.digest, %error, "adding a stored blob to the archive early failed");
                        early_failure = Some(Arc::new(error));
                    }
                }
            }
        }
    };
    let pulls = async {
        let results = stream::iter(jobs.iter().zip(&list.images))
            .map(|(job, requested)| {
                let export_requests = export_requests.clone();
                let (pull_engine, target, store, options) = (&pull_engine, &target, &store, &options);
                async move {
                    let outcome = pull_engine.copy(job).await?;
                    let archive = match target {
                        SaveTarget::Single(_) => {
                            let (reply, answer) = oneshot::channel();
                            export_requests.send((job.clone(), reply)).expect("the exporter outlives the pulls");
                            answer.await.expect("the exporter answers every request")?
                        }
                        SaveTarget::PerImage(mode) => {
                            let path = per_image_path(Path::new("."), requested, *mode, compression);
                            Some(save_one(store, options, job, path, (compression, settings.durability)).await?)
                        }
                    };
                    Ok::<_, TransferError>((outcome, archive))
                }
            })
            .buffered(options.max_concurrent_images.max(1))
            .collect::<Vec<_>>()
            .await;
        drop(export_requests);
        results
    };
    let (results, ()) = tokio::join!(pulls, exporter);

    let mut archives = Vec::new();
    let outcomes: Vec<_> = results
        .into_iter()
        .map(|result| {
            result.map(|(outcome, archive)| {
                archives.extend(archive);
                outcome
            })
        })
        .collect();
    if let (Some(archive), SaveTarget::Single(path)) = (single, &target) {
        if outcomes.iter().any(Result::is_ok) {
            let size = archive.finish().await.map_err(|error| Failure::new(ExitStatus::Filesystem, error))?;
            archives.push((path.clone(), size));
        } else {
            tracing::info!(path = %path.display(), "no image could be saved; no archive written");
        }
    }
    let mut summary = summary("save", list.references(), outcomes, list.rejected);
    summary.archives = archives;
    Ok(summary)
}

fn export_engine(
    store: &Arc<Store>,
    archive: Arc<ArchiveDestination>,
    options: &EngineOptions,
) -> Engine<StoreSource, ArchiveDestination> {
    Engine::new(Arc::new(StoreSource::new(Arc::clone(store))), archive, options.clone(), Arc::new(NoReport))
}

/// Writes one image from the store into its own archive at `path`.
async fn save_one(
    store: &Arc<Store>,
    options: &EngineOptions,
    job: &CopyJob,
    path: PathBuf,
    (compression, durability): (ArchiveCompression, Durability),
) -> Result<(PathBuf, u64), TransferError> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|error| TransferError::io(format!("creating directory {}", dir.display()), error))?;
    }
    let archive = Arc::new(ArchiveDestination::create(&path, compression, durability)?);
    export_engine(store, Arc::clone(&archive), options).copy(job).await?;
    let size = archive.finish().await?;
    Ok((path, size))
}

/// `nginx:1.25` → `nginx_1.25.tar`: the reference as the user wrote it, with
/// `/` and `:` made `_`. Mode 1 is the base dir, 2 `images/`, 3
/// `images/<project>/` where the project is the repository's first path
/// component (`library` for Docker Hub's official images).
fn per_image_path(base: &Path, requested: &RequestedImage, mode: u8, compression: ArchiveCompression) -> PathBuf {
    let extension = match compression {
        ArchiveCompression::None => "",
        ArchiveCompression::Gzip => ".gz",
        ArchiveCompression::Zstd => ".zst",
    };
    let file_name = format!("{}.tar{extension}", requested.written.replace(['/', ':'], "_"));
    match mode {
        1 => base.join(file_name),
        2 => base.join("images").join(file_name),
        _ => base.join("images").join(super::push::own_project(&requested.reference)).join(file_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(text: &str) -> RequestedImage {
        RequestedImage { written: text.to_owned(), reference: text.parse().unwrap() }
    }

    #[test]
    fn per_image_names_follow_the_go_hpn() {
        let base = Path::new("/w");
        let none = ArchiveCompression::None;
        assert_eq!(per_image_path(base, &requested("nginx:latest"), 1, none), Path::new("/w/nginx_latest.tar"));
        assert_eq!(
            per_image_path(base, &requested("quay.io/prometheus/alertmanager:v0.30.1"), 2, none),
            Path::new("/w/images/quay.io_prometheus_alertmanager_v0.30.1.tar")
        );
        assert_eq!(
            per_image_path(base, &requested("harbor.local/team/app:1"), 3, ArchiveCompression::Gzip),
            Path::new("/w/images/team/harbor.local_team_app_1.tar.gz")
        );
        assert_eq!(per_image_path(base, &requested("nginx"), 3, none), Path::new("/w/images/library/nginx.tar"));
    }
}
