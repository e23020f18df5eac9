use std::sync::Arc;

use anyhow::anyhow;
use hpn_oci::Platform;
use hpn_transfer::{EndpointName, Engine, EngineOptions, PlatformChoice};

use super::save::{archive_compression, check_stdout_can_take_the_archive, compression_for_output, is_stdout};
use super::{
    endpoint_context, engine_options, jobs_named_for, platform_choice, push_target, registry_destination,
    registry_source, reporter, served_from, summary,
};
use crate::args::CopyArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::ImageList;
use crate::summary::Summary;

/// `hpn copy SOURCE DESTINATION`: one image between any two endpoints, named
/// in skopeo's transport syntax (parsed by hpn-transfer); `hpn copy -r
/// REGISTRY IMAGE… [-f LIST]`: many images from their registries into one,
/// all in one engine run.
pub async fn run(args: CopyArgs, settings: &Settings) -> Result<Summary, Failure> {
    match &args.registry {
        Some(registry) => copy_into_registry(registry, &args, settings).await,
        None => copy_one(&args, settings).await,
    }
}

async fn copy_one(args: &CopyArgs, settings: &Settings) -> Result<Summary, Failure> {
    let bad_arguments = |message: String| Failure::new(ExitStatus::BadArguments, anyhow!(message));
    let [source, destination] = args.endpoints.as_slice() else {
        return Err(bad_arguments(format!(
            "hpn copy takes a SOURCE and a DESTINATION, got {} argument(s); to copy many images into one \
             registry, name it with -r REGISTRY",
            args.endpoints.len()
        )));
    };
    let parse = |text: &str| text.parse::<EndpointName>().map_err(|error| bad_arguments(error.to_string()));
    let (source, destination) = (parse(source)?, parse(destination)?);
    let uses_registry = source.uses_registry() || destination.uses_registry();
    let (compression, stdout_is_output) = match &destination {
        EndpointName::Archive { path, .. } => (compression_for_output(path, args.compress)?, is_stdout(path)),
        _ => (archive_compression(args.compress), false),
    };
    if stdout_is_output {
        check_stdout_can_take_the_archive(settings)?;
    }
    let context = endpoint_context(settings, uses_registry)?.with_compression(compression);
    let options = copy_options(args, settings)?;
    let report = hpn_transfer::copy(&source, &destination, &context, options, reporter(settings))
        .await
        .map_err(|error| Failure::new(ExitStatus::of(&error), error))?;
    let mut summary = summary("copy", vec![report.image], vec![report.outcome], Vec::new());
    summary.archives = report.archive.into_iter().map(|archive| (archive.path, archive.size)).collect();
    summary.dry_run = args.dry_run.then(|| destination.to_string());
    summary.served_from = vec![report.served_from];
    summary.stdout_is_output = stdout_is_output;
    Ok(summary)
}

/// Every image straight from its registry into `registry`: the engine reads
/// them all at once (bounded by -j), a blob both registries' repositories
/// share is mounted or skipped as `hpn push` does, and nothing is stored.
async fn copy_into_registry(registry: &str, args: &CopyArgs, settings: &Settings) -> Result<Summary, Failure> {
    let target = push_target(registry, args.push_mode, args.project.as_deref(), settings)?;
    let mut list = ImageList::collect(&args.endpoints, &args.files)?;
    let (jobs, sources) = jobs_named_for(&mut list, &target);
    let options = copy_options(args, settings)?;
    let source = Arc::new(registry_source(settings)?);
    let engine =
        Engine::new(Arc::clone(&source), Arc::new(registry_destination(settings)?), options, reporter(settings));
    let results = engine.copy_all(&jobs).await;
    let mut summary = summary("copy", sources, results, list.rejected);
    summary.dry_run = args.dry_run.then(|| format!("registry {registry}"));
    summary.destinations = jobs.into_iter().map(|job| job.destination).collect();
    summary.served_from = served_from(&source, &summary);
    Ok(summary)
}

/// The engine options both forms take from the arguments: the platforms (the
/// host's by default), `--dry-run` and the referrer choice.
fn copy_options(args: &CopyArgs, settings: &Settings) -> Result<EngineOptions, Failure> {
    let platforms =
        platform_choice(args.platform.as_deref(), args.all_platforms, settings, PlatformChoice::One(Platform::host()))?;
    Ok(engine_options(platforms, settings).with_dry_run(args.dry_run).with_attachments(args.referrers.policy()))
}
