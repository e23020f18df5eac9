use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use futures_util::{StreamExt, stream};
use hpn_archive::ArchiveCompression;
use hpn_oci::Platform;
use hpn_registry::{ClientOptions, Credentials, RegistryClient, RetryPolicy};
use hpn_store::Store;
use hpn_transfer::{
    ArchiveDestination, CopyJob, CopyOutcome, Engine, EngineOptions, PlatformChoice, RegistrySource, Reporter,
    StoreDestination, StoreSource, TransferError,
};
use tokio::sync::{mpsc, oneshot};

use crate::args::{Command, Compression, ImageSelection, PullArgs, SaveArgs};
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::{ImageList, RequestedImage};
use crate::progress;
use crate::summary::{ImageFailure, ImageResult, Summary};

/// Blobs in flight across all images; the registry client also caps
/// requests per host.
const BLOBS_IN_FLIGHT: usize = 8;

pub async fn run(command: Command, settings: Settings) -> Result<ExitStatus, Failure> {
    match command {
        Command::Pull(args) => pull(args, &settings).await,
        Command::Save(args) => save(args, &settings).await,
    }
}

/// What every command that reads registries into the store needs.
struct Session {
    list: ImageList,
    store: Arc<Store>,
    pull_engine: Engine<RegistrySource, StoreDestination>,
    options: EngineOptions,
}

impl Session {
    fn start(selection: &ImageSelection, settings: &Settings) -> Result<Self, Failure> {
        let list = ImageList::collect(&selection.images, &selection.files)?;
        let platforms = platform_choice(selection, settings)?;
        let store = Store::open(&settings.store_root)
            .map(Arc::new)
            .map_err(|error| Failure::new(ExitStatus::Filesystem, error))?;
        let credentials = Credentials::load_default().map_err(|error| Failure::new(ExitStatus::Config, error))?;
        let defaults = ClientOptions::default();
        let client = RegistryClient::new(ClientOptions {
            insecure_registries: settings.insecure_registries.clone(),
            credentials,
            retry: RetryPolicy { max_attempts: settings.attempts, ..defaults.retry.clone() },
            ..defaults
        })
        .map_err(|error| Failure::new(ExitStatus::General, error))?;
        let options = EngineOptions {
            platforms,
            max_concurrent_blobs: BLOBS_IN_FLIGHT.max(settings.jobs),
            max_concurrent_images: settings.jobs,
        };
        let reporter: Arc<dyn Reporter> = Arc::from(progress::reporter(settings.quiet, settings.json));
        let pull_engine = Engine::new(
            Arc::new(RegistrySource::new(client)),
            Arc::new(StoreDestination::new(Arc::clone(&store))),
            options.clone(),
            reporter,
        );
        Ok(Self { list, store, pull_engine, options })
    }

    fn jobs(&self) -> Vec<CopyJob> {
        self.list
            .images
            .iter()
            .enumerate()
            .map(|(index, image)| CopyJob {
                index,
                source: image.reference.clone(),
                destination: image.reference.clone(),
            })
            .collect()
    }

    fn summary(self, command: &'static str, results: Vec<Result<CopyOutcome, TransferError>>) -> Summary {
        let images = self
            .list
            .images
            .into_iter()
            .zip(results)
            .map(|(image, result)| ImageResult {
                image: image.reference,
                result: result
                    .map_err(|error| ImageFailure { status: ExitStatus::of(&error), message: error.to_string() }),
            })
            .collect();
        Summary { command, images, rejected: self.list.rejected, archives: Vec::new(), elapsed: Default::default() }
    }
}

fn platform_choice(selection: &ImageSelection, settings: &Settings) -> Result<PlatformChoice, Failure> {
    if selection.all_platforms {
        return Ok(PlatformChoice::All);
    }
    let parse = |text: &str, status: ExitStatus| {
        text.parse::<Platform>().map(PlatformChoice::One).map_err(|error| Failure::new(status, error))
    };
    match (&selection.platform, &settings.default_platform) {
        (Some(flag), _) => parse(flag, ExitStatus::BadArguments),
        (None, Some(configured)) => parse(configured, ExitStatus::Config),
        (None, None) => Ok(PlatformChoice::One(Platform::host())),
    }
}

async fn pull(args: PullArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let started = Instant::now();
    let session = Session::start(&args.selection, settings)?;
    let results = session.pull_engine.copy_all(&session.jobs()).await;
    let mut summary = session.summary("pull", results);
    summary.elapsed = started.elapsed();
    summary.print(settings.quiet, settings.json);
    Ok(summary.exit_status())
}

/// Where `hpn save` writes.
enum SaveTarget {
    /// Every image into one archive.
    Single(PathBuf),
    /// One archive per image, in the Go hpn's layout for the mode.
    PerImage(u8),
}

async fn save(args: SaveArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let started = Instant::now();
    let target = match (&args.output, args.save_mode.or(settings.default_save_mode)) {
        (Some(path), _) => SaveTarget::Single(path.clone()),
        (None, mode) => SaveTarget::PerImage(mode.unwrap_or(1)),
    };
    let compression = match args.compress {
        None => ArchiveCompression::None,
        Some(Compression::Gzip) => ArchiveCompression::Gzip,
        Some(Compression::Zstd) => ArchiveCompression::Zstd,
    };
    let session = Session::start(&args.selection, settings)?;
    let jobs = session.jobs();

    // The archive is created before any download so a bad output path fails
    // at once, not after minutes of pulling.
    let single = match &target {
        SaveTarget::Single(path) => Some(Arc::new(
            ArchiveDestination::create(path, compression)
                .map_err(|error| Failure::new(ExitStatus::Filesystem, anyhow!(error)))?,
        )),
        SaveTarget::PerImage(_) => None,
    };

    // Images are pulled concurrently; each one pulled is exported at once
    // while the others are still downloading. A single archive is written
    // by one exporter, in the order images complete; its indexes are put in
    // request order when it is finished.
    let (export_requests, mut export_queue) = mpsc::unbounded_channel::<(CopyJob, oneshot::Sender<ExportResult>)>();
    let exporter = async {
        let Some(archive) = &single else { return };
        let engine = export_engine(&session, Arc::clone(archive));
        while let Some((job, reply)) = export_queue.recv().await {
            let _ = reply.send(engine.copy(&job).await.map(|_| None));
        }
    };
    let pulls = async {
        let results = stream::iter(jobs.iter().zip(&session.list.images))
            .map(|(job, requested)| {
                let export_requests = export_requests.clone();
                let session = &session;
                let target = &target;
                async move {
                    let outcome = session.pull_engine.copy(job).await?;
                    let archive = match target {
                        SaveTarget::Single(_) => {
                            let (reply, answer) = oneshot::channel();
                            export_requests.send((job.clone(), reply)).expect("the exporter outlives the pulls");
                            answer.await.expect("the exporter answers every request")?
                        }
                        SaveTarget::PerImage(mode) => {
                            Some(save_one(session, job, requested, *mode, compression).await?)
                        }
                    };
                    Ok::<_, TransferError>((outcome, archive))
                }
            })
            .buffered(session.options.max_concurrent_images.max(1))
            .collect::<Vec<_>>()
            .await;
        drop(export_requests);
        results
    };
    let (results, ()) = tokio::join!(pulls, exporter);

    let mut archives: Vec<(PathBuf, u64)> = Vec::new();
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok((outcome, archive)) => {
                archives.extend(archive);
                outcomes.push(Ok(outcome));
            }
            Err(error) => outcomes.push(Err(error)),
        }
    }
    if let (Some(archive), SaveTarget::Single(path)) = (single, &target) {
        if outcomes.iter().any(Result::is_ok) {
            let size = archive
                .finish()
                .await
                .map_err(|error| Failure::new(ExitStatus::Filesystem, anyhow!(error).context("writing the archive")))?;
            archives.push((path.clone(), size));
        } else {
            tracing::info!(path = %path.display(), "no image could be saved; no archive written");
        }
    }
    let mut summary = session.summary("save", outcomes);
    summary.archives = archives;
    summary.elapsed = started.elapsed();
    summary.print(settings.quiet, settings.json);
    Ok(summary.exit_status())
}

/// `Some((path, size))` when the export wrote an archive of its own.
type ExportResult = Result<Option<(PathBuf, u64)>, TransferError>;

fn export_engine(session: &Session, archive: Arc<ArchiveDestination>) -> Engine<StoreSource, ArchiveDestination> {
    Engine::new(
        Arc::new(StoreSource::new(Arc::clone(&session.store))),
        archive,
        session.options.clone(),
        Arc::new(hpn_transfer::NoReport),
    )
}

/// Writes one image into its own archive, named as the Go hpn names it.
async fn save_one(
    session: &Session,
    job: &CopyJob,
    requested: &RequestedImage,
    mode: u8,
    compression: ArchiveCompression,
) -> Result<(PathBuf, u64), TransferError> {
    let path = per_image_path(Path::new("."), requested, mode, compression);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|error| TransferError::io(format!("creating directory {}", dir.display()), error))?;
    }
    let archive = Arc::new(ArchiveDestination::create(&path, compression)?);
    export_engine(session, Arc::clone(&archive)).copy(job).await?;
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
    let dir = match mode {
        1 => base.to_owned(),
        2 => base.join("images"),
        _ => {
            let project = requested.reference.repository().split('/').next().unwrap_or("library");
            base.join("images").join(project)
        }
    };
    dir.join(file_name)
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
