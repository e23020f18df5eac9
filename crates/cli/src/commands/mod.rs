//! One module per command; what they share is here: opening the store,
//! building the registry client and engine options, and closing with the
//! summary.

mod copy;
mod load;
mod pull;
mod push;
mod save;
mod store;

use std::sync::Arc;
use std::time::Instant;

use hpn_oci::{Platform, Reference};
use hpn_registry::{ClientOptions, Credentials, DEFAULT_REQUESTS_PER_HOST, RegistryClient};
use hpn_store::Store;
use hpn_transfer::{
    BlobLocations, CopyOutcome, EngineOptions, PlatformChoice, RegistryDestination, Reporter, TransferError,
};

use crate::args::Command;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::Rejected;
use crate::progress;
use crate::summary::{ImageFailure, ImageResult, Summary};

/// Blobs in flight across all images; the registry client also caps
/// requests per host.
const BLOBS_IN_FLIGHT: usize = 8;
/// In hpn's cache directory: which repositories blobs were pushed to, for mounts in later runs.
const BLOB_LOCATIONS_FILE: &str = "blob-locations.json";

/// Runs the command; Ctrl-C stops it cleanly: the in-flight transfers are
/// dropped (which removes their temp files), what finished is reported, and
/// the exit status is 130.
pub async fn run_until_interrupted(command: Command, settings: Settings) -> Result<ExitStatus, Failure> {
    let tally = Arc::new(progress::Tally::default());
    let settings = Settings { tally: Some(Arc::clone(&tally)), ..settings };
    let started = Instant::now();
    tokio::select! {
        status = run(command, &settings, started) => status,
        _ = tokio::signal::ctrl_c() => {
            let (done, failed) = tally.counts();
            eprintln!(
                "hpn: interrupted after {:.1}s: {done} image(s) done, {failed} failed, the rest stopped; \
                 no partial file was left under a final name",
                started.elapsed().as_secs_f64()
            );
            Ok(ExitStatus::Interrupted)
        }
    }
}

async fn run(command: Command, settings: &Settings, started: Instant) -> Result<ExitStatus, Failure> {
    let mut summary = match command {
        Command::Pull(args) => pull::run(args, settings).await?,
        Command::Save(args) => save::run(args, settings).await?,
        Command::Load(args) => load::run(args, settings).await?,
        Command::Push(args) => push::run(args, settings).await?,
        Command::Copy(args) => copy::run(args, settings).await?,
        Command::Store(command) => return store::run(command, settings).await,
    };
    summary.elapsed = started.elapsed();
    summary.print(settings.quiet, settings.json);
    Ok(summary.exit_status())
}

fn open_store(settings: &Settings) -> Result<Arc<Store>, Failure> {
    Store::open_with(&settings.store_root, settings.durability)
        .map(Arc::new)
        .map_err(|error| Failure::new(ExitStatus::Filesystem, error))
}

/// A registry destination that mounts shared layers from where earlier runs
/// put them (`blob-locations.json` in hpn's cache directory).
fn registry_destination(settings: &Settings) -> Result<RegistryDestination, Failure> {
    let locations = match hpn_store::cache_dir() {
        Ok(dir) => BlobLocations::load(&dir.join(BLOB_LOCATIONS_FILE)),
        Err(_) => BlobLocations::in_memory(),
    };
    Ok(RegistryDestination::with_locations(registry_client(settings)?, Arc::new(locations)))
}

fn registry_client(settings: &Settings) -> Result<RegistryClient, Failure> {
    let credentials = Credentials::load_default().map_err(|error| Failure::new(ExitStatus::Config, error))?;
    let mut options = ClientOptions::default()
        .with_credentials(credentials)
        .with_insecure_registries(settings.insecure_registries.clone())
        .with_max_requests_per_host(settings.requests_per_host.unwrap_or(DEFAULT_REQUESTS_PER_HOST));
    options.retry.max_attempts = settings.attempts;
    if let Some(stall_timeout) = settings.stall_timeout {
        options.stall_timeout = stall_timeout;
    }
    RegistryClient::new(options).map_err(|error| Failure::new(ExitStatus::General, error))
}

fn engine_options(platforms: PlatformChoice, settings: &Settings) -> EngineOptions {
    EngineOptions {
        platforms,
        max_concurrent_blobs: BLOBS_IN_FLIGHT.max(settings.jobs),
        max_concurrent_images: settings.jobs,
    }
}

fn reporter(settings: &Settings) -> Arc<dyn Reporter> {
    let display = progress::reporter(settings.quiet, settings.json);
    match &settings.tally {
        Some(tally) => Arc::new(progress::Tallied { tally: Arc::clone(tally), display }),
        None => Arc::from(display),
    }
}

/// `--all-platforms`, else `--platform`, else the config's platform, else `fallback`.
fn platform_choice(
    flag: Option<&str>,
    all_platforms: bool,
    settings: &Settings,
    fallback: PlatformChoice,
) -> Result<PlatformChoice, Failure> {
    if all_platforms {
        return Ok(PlatformChoice::All);
    }
    let parse = |text: &str, status: ExitStatus| {
        text.parse::<Platform>().map(PlatformChoice::One).map_err(|error| Failure::new(status, error))
    };
    match (flag, &settings.default_platform) {
        (Some(flag), _) => parse(flag, ExitStatus::BadArguments),
        (None, Some(configured)) => parse(configured, ExitStatus::Config),
        (None, None) => Ok(fallback),
    }
}

/// Pairs each requested image with its result.
fn summary(
    command: &'static str,
    images: Vec<Reference>,
    results: Vec<Result<CopyOutcome, TransferError>>,
    rejected: Vec<Rejected>,
) -> Summary {
    let images = images
        .into_iter()
        .zip(results)
        .map(|(image, result)| ImageResult { image, result: result.map_err(|error| failure_of(&error)) })
        .collect();
    Summary { command, images, rejected, unusable: Vec::new(), archives: Vec::new(), elapsed: Default::default() }
}

/// Images copied out of archive files: every named image of each archive (or
/// those in `wanted`), under the name `target` gives it. A broken archive is
/// reported and the other archives still run.
async fn copy_from_archives<D: hpn_transfer::ImageDestination>(
    inputs: &[std::path::PathBuf],
    destination: Arc<D>,
    options: &EngineOptions,
    settings: &Settings,
    wanted: Option<&[Reference]>,
    target: impl Fn(&Reference) -> Result<Reference, String>,
) -> ArchiveRun {
    let mut run = ArchiveRun::default();
    let reporter = reporter(settings);
    for input in inputs {
        let source = match hpn_transfer::ArchiveSource::open(input).await {
            Ok(source) => source,
            Err(error) => {
                run.unusable.push((input.display().to_string(), failure_of(&error)));
                continue;
            }
        };
        let mut jobs = Vec::new();
        let mut references = Vec::new();
        for image in source.images() {
            if image.names.is_empty() && wanted.is_none() {
                run.unusable.push((
                    format!("{} image {}", input.display(), image.digest),
                    ImageFailure {
                        status: ExitStatus::Runtime,
                        message: "the archive gives this image no name, so it cannot be stored or pushed under one; \
                                  save it again with a tag"
                            .to_owned(),
                    },
                ));
            }
            for name in &image.names {
                if wanted.is_some_and(|wanted| !wanted.contains(name)) {
                    continue;
                }
                match target(name) {
                    Ok(destination) => {
                        jobs.push(hpn_transfer::CopyJob { index: jobs.len(), source: name.clone(), destination });
                        references.push(name.clone());
                    }
                    Err(reason) => run
                        .unusable
                        .push((name.to_string(), ImageFailure { status: ExitStatus::BadArguments, message: reason })),
                }
            }
        }
        let engine = hpn_transfer::Engine::new(
            Arc::new(source),
            Arc::clone(&destination),
            options.clone(),
            Arc::clone(&reporter),
        );
        run.results.extend(engine.copy_all(&jobs).await);
        run.references.extend(references);
    }
    run
}

#[derive(Default)]
struct ArchiveRun {
    references: Vec<Reference>,
    results: Vec<Result<CopyOutcome, TransferError>>,
    /// Archives or images that could not be used at all.
    unusable: Vec<(String, ImageFailure)>,
}

impl ArchiveRun {
    fn into_summary(self, command: &'static str) -> Summary {
        let mut summary = summary(command, self.references, self.results, Vec::new());
        summary.unusable = self.unusable;
        summary
    }
}

fn failure_of(error: &TransferError) -> ImageFailure {
    ImageFailure { status: ExitStatus::of(error), message: crate::exit::describe(error) }
}
