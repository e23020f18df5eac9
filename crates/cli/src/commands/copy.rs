use anyhow::anyhow;
use hpn_oci::Platform;
use hpn_transfer::{EndpointName, PlatformChoice};

use super::save::{archive_compression, check_stdout_can_take_the_archive, compression_for_output, is_stdout};
use super::{endpoint_context, engine_options, platform_choice, reporter, summary};
use crate::args::CopyArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::summary::Summary;

/// `hpn copy SOURCE DESTINATION`: one image between any two endpoints, named
/// in skopeo's transport syntax (parsed by hpn-transfer).
pub async fn run(args: CopyArgs, settings: &Settings) -> Result<Summary, Failure> {
    let parse = |text: &str| {
        text.parse::<EndpointName>().map_err(|error| Failure::new(ExitStatus::BadArguments, anyhow!(error)))
    };
    let (source, destination) = (parse(&args.source)?, parse(&args.destination)?);
    let platforms =
        platform_choice(args.platform.as_deref(), args.all_platforms, settings, PlatformChoice::One(Platform::host()))?;
    let uses_registry = source.uses_registry() || destination.uses_registry();
    let (compression, stdout_is_output) = match &destination {
        EndpointName::Archive { path, .. } => (compression_for_output(path, args.compress)?, is_stdout(path)),
        _ => (archive_compression(args.compress), false),
    };
    if stdout_is_output {
        check_stdout_can_take_the_archive(settings)?;
    }
    let context = endpoint_context(settings, uses_registry)?.with_compression(compression);
    let options =
        engine_options(platforms, settings).with_dry_run(args.dry_run).with_attachments(args.referrers.policy());
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
