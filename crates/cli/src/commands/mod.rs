//! One module per command; what they share is here: opening the store,
//! building the registry client and engine options, and closing with the
//! summary.

mod copy;
mod inspect;
mod load;
mod login;
mod pull;
mod push;
mod remote;
mod save;
mod serve;
mod store;
mod verify;

use std::sync::Arc;
use std::time::Instant;

use hpn_oci::{Platform, Reference};
use hpn_registry::{ClientOptions, Credentials, RegistryClient};
use hpn_store::Store;
use hpn_transfer::{
    AnyDestination, ArchiveRun, BlobLocations, Concurrency, CopyJob, CopyOutcome, EmptyDestination, EndpointContext,
    EngineOptions, PlatformChoice, PullPolicy, PushMode, PushTarget, RegistryDestination, RegistrySource, Reporter,
    StoreDestination, TransferError,
};

use crate::args::{self, Command, PullPolicyArgs};
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::{ImageList, Rejected};
use crate::progress;
use crate::summary::{ImageFailure, ImageResult, Summary};

/// In hpn's cache directory: which repositories blobs were pushed to, for mounts in later runs.
const BLOB_LOCATIONS_FILE: &str = "blob-locations.json";

/// Runs the command; Ctrl-C stops it cleanly: the in-flight transfers are
/// dropped (which removes their temp files), what finished is reported, and
/// the exit status is 130.
pub async fn run_until_interrupted(command: Command, settings: Settings) -> Result<ExitStatus, Failure> {
    // A server's stop on a signal is its normal end, not an interruption of work.
    if let Command::Serve(args) = command {
        return serve::run(args, &settings).await;
    }
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
        Command::Verify(args) => return verify::run(args, settings).await,
        // Answered before any setting is read, so a broken config cannot hide the version.
        Command::Version => unreachable!("hpn version is answered in lib.rs"),
        Command::Inspect(args) => return inspect::run(args, settings).await,
        Command::Digest(args) => return inspect::digest(args, settings).await,
        Command::Tags(args) => return remote::tags(args, settings).await,
        Command::Catalog(args) => return remote::catalog(args, settings).await,
        Command::Tag(args) => return remote::tag(args, settings).await,
        Command::Delete(args) => return remote::delete(args, settings).await,
        Command::Login(args) => return login::login(args, settings).await,
        Command::Logout(args) => return login::logout(args, settings).await,
        // Answered before any setting is read (crate::run).
        Command::Completions(_) => return Ok(ExitStatus::Ok),
        Command::Serve(args) => return serve::run(args, settings).await,
    };
    summary.elapsed = started.elapsed();
    summary.print(settings.quiet, settings.json);
    Ok(summary.exit_status())
}

/// The store as a destination; for a dry run, read as it is, and planned
/// against as empty when it does not exist yet, so that nothing is created.
fn store_destination(settings: &Settings, dry_run: bool) -> Result<AnyDestination, Failure> {
    if dry_run && !Store::exists_at(&settings.store_root) {
        return Ok(AnyDestination::Empty(EmptyDestination));
    }
    Ok(AnyDestination::Store(StoreDestination::new(open_store(settings)?)))
}

/// What a dry run's summary says the images go into, when it is the store.
fn store_plan(settings: &Settings, dry_run: bool) -> Option<String> {
    dry_run.then(|| format!("the store at {}", settings.store_root.display()))
}

fn open_store(settings: &Settings) -> Result<Arc<Store>, Failure> {
    Store::open_with(&settings.store_root, settings.durability)
        .map(Arc::new)
        .map_err(|error| Failure::new(ExitStatus::Filesystem, error))
}

/// Which repositories blobs were pushed to in earlier runs
/// (`blob-locations.json` in hpn's cache directory), for mounts.
fn blob_locations() -> Arc<BlobLocations> {
    Arc::new(match crate::config::cache_dir() {
        Ok(dir) => BlobLocations::load(&dir.join(BLOB_LOCATIONS_FILE)),
        Err(_) => BlobLocations::in_memory(),
    })
}

/// A registry destination that mounts shared layers from where earlier runs
/// put them.
fn registry_destination(settings: &Settings) -> Result<RegistryDestination, Failure> {
    Ok(RegistryDestination::with_locations(registry_client(settings)?, blob_locations()))
}

/// What `copy` opens its endpoints with; the registry client (and its
/// credentials) only when an endpoint is a registry.
fn endpoint_context(settings: &Settings, with_registry: bool) -> Result<EndpointContext, Failure> {
    let context = EndpointContext::new(settings.store_root.clone(), settings.durability);
    Ok(if with_registry {
        context
            .with_registry(registry_client(settings)?)
            .with_blob_locations(blob_locations())
            .with_mirrors(Arc::clone(&settings.mirrors))
    } else {
        context
    })
}

/// A Go hpn mode number (already range-checked by clap and the config), or
/// the mode's default when none was given.
fn mode<M: Default>(number: Option<u8>, from_number: fn(u8) -> Option<M>, command: &str) -> Result<M, Failure> {
    match number {
        None => Ok(M::default()),
        Some(number) => from_number(number).ok_or_else(|| {
            Failure::new(ExitStatus::BadArguments, anyhow::anyhow!("there is no {command} mode {number}"))
        }),
    }
}

/// Where `-r`, `-p` and `--push-mode` send images (`hpn push`, `hpn copy -r`): the
/// project and mode fall back to the config's.
fn push_target(
    registry: &str,
    push_mode: Option<u8>,
    project: Option<&str>,
    settings: &Settings,
) -> Result<PushTarget, Failure> {
    let push_mode = mode(push_mode.or(settings.default_push_mode), PushMode::from_number, "push")?;
    let project = project.map(str::to_owned).or_else(|| settings.project.clone());
    Ok(PushTarget::new(registry, push_mode, project))
}

/// The name `source` gets at `target`, or why it cannot get one.
fn target_name(target: &PushTarget, source: &Reference) -> Result<Reference, String> {
    target.name_for(source).map_err(|error| format!("cannot name {source} in {}: {error}", target.registry()))
}

/// A job per image of `list` into `target`, and the images they copy; an
/// image the target cannot name moves to the list's rejected ones.
fn jobs_named_for(list: &mut ImageList, target: &PushTarget) -> (Vec<CopyJob>, Vec<Reference>) {
    let mut jobs = Vec::new();
    let mut sources = Vec::new();
    for image in &list.images {
        match target_name(target, &image.reference) {
            Ok(destination) => {
                jobs.push(CopyJob { index: jobs.len(), source: image.reference.clone(), destination });
                sources.push(image.reference.clone());
            }
            Err(reason) => {
                list.rejected.push(Rejected { origin: "push target".to_owned(), text: image.written.clone(), reason })
            }
        }
    }
    (jobs, sources)
}

fn registry_client(settings: &Settings) -> Result<RegistryClient, Failure> {
    let options = client_options(settings, login::credentials(settings)?);
    RegistryClient::new(options).map_err(|error| Failure::new(ExitStatus::General, error))
}

/// The client options of the settings, with these credentials.
fn client_options(settings: &Settings, credentials: Credentials) -> ClientOptions {
    let mut options = ClientOptions::default()
        .with_credentials(credentials)
        .with_insecure_registries(settings.insecure_registries.clone())
        .with_certs_dirs(settings.certs_dirs.clone())
        .with_max_requests_per_host(settings.requests_per_host.unwrap_or(Concurrency::default().requests_per_host));
    options.retry.max_attempts = settings.attempts;
    options.tls_verify = settings.tls_verify;
    if let Some(stall_timeout) = settings.stall_timeout {
        options.stall_timeout = stall_timeout;
    }
    if let Some(response_timeout) = settings.response_timeout {
        options.response_timeout = response_timeout;
    }
    if let Some(body_timeout) = settings.body_timeout {
        options.body_timeout = body_timeout;
    }
    if let Some(rate) = settings.min_transfer_rate {
        options.min_transfer_rate = rate;
    }
    options
}

/// A failure of a library call, with the command line's advice.
fn transfer_failure(error: TransferError) -> Failure {
    Failure::new(ExitStatus::of(&error), anyhow::anyhow!(crate::exit::describe(&error)))
}

fn registry_failure(error: hpn_registry::RegistryError) -> Failure {
    transfer_failure(TransferError::from(error))
}

fn engine_options(platforms: PlatformChoice, settings: &Settings) -> EngineOptions {
    EngineOptions::new(platforms, &Concurrency::with_images(settings.jobs))
}

/// A registry source reading through the configured mirrors.
fn registry_source(settings: &Settings) -> Result<RegistrySource, Failure> {
    Ok(RegistrySource::with_mirrors(registry_client(settings)?, Arc::clone(&settings.mirrors)))
}

/// Per image of `summary`, the mirror location that served it.
fn served_from(source: &RegistrySource, summary: &Summary) -> Vec<Option<Reference>> {
    summary.images.iter().map(|image| source.served_from(&image.image)).collect()
}

/// The library's pull policy for `--pull`.
fn pull_policy(args: &PullPolicyArgs) -> PullPolicy {
    match args.policy {
        args::PullPolicy::Always => PullPolicy::Always,
        args::PullPolicy::Missing => PullPolicy::Missing,
        args::PullPolicy::Never => PullPolicy::Never,
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
    Summary {
        command,
        images,
        rejected,
        unusable: Vec::new(),
        archives: Vec::new(),
        elapsed: Default::default(),
        dry_run: None,
        destinations: Vec::new(),
        served_from: Vec::new(),
        stdout_is_output: false,
        differential: None,
        volume_plan: None,
    }
}

/// The summary of a load or push from archives: the images tried, and the
/// archives or images that could not be used at all.
fn archive_summary(command: &'static str, run: ArchiveRun) -> Summary {
    let mut summary = summary(command, run.images, run.results, Vec::new());
    summary.unusable = run.unusable.iter().map(|(what, error)| (what.clone(), failure_of(error))).collect();
    summary
}

fn failure_of(error: &TransferError) -> ImageFailure {
    ImageFailure { status: ExitStatus::of(error), message: crate::exit::describe(error) }
}
