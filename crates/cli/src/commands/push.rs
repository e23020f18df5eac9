use std::sync::Arc;

use hpn_transfer::{Engine, PlatformChoice, StoreSource};

use super::{
    archive_summary, engine_options, jobs_named_for, open_store, platform_choice, push_target, registry_destination,
    reporter, summary, target_name,
};
use crate::args::PushArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::ImageList;
use crate::summary::Summary;

pub async fn run(args: PushArgs, settings: &Settings) -> Result<Summary, Failure> {
    let registry = args.registry.clone().or_else(|| settings.registry.clone()).ok_or_else(|| {
        Failure::new(
            ExitStatus::BadArguments,
            anyhow::anyhow!("no target registry: pass -r REGISTRY, set HPN_REGISTRY, or put registry: in the config"),
        )
    })?;
    let target = push_target(&registry, args.push_mode, args.project.as_deref(), settings)?;
    let name_for = |source: &_| target_name(&target, source);
    let platforms = platform_choice(args.platform.as_deref(), args.all_platforms, settings, PlatformChoice::Available)?;
    let options =
        engine_options(platforms, settings).with_dry_run(args.dry_run).with_attachments(args.referrers.policy());
    let plan = args.dry_run.then(|| format!("registry {registry}"));
    let destination = Arc::new(registry_destination(settings)?);

    if !args.inputs.is_empty() {
        let wanted = if args.images.is_empty() && args.files.is_empty() {
            None
        } else {
            Some(ImageList::collect(&args.images, &args.files)?.references())
        };
        let run = hpn_transfer::copy_from_archives(
            &args.inputs,
            destination,
            &options,
            reporter(settings),
            wanted.as_deref(),
            name_for,
        )
        .await;
        let destinations = run.images.iter().filter_map(|image| name_for(image).ok()).collect();
        let mut summary = archive_summary("push", run);
        (summary.dry_run, summary.destinations) = (plan, destinations);
        return Ok(summary);
    }

    let mut list = ImageList::collect(&args.images, &args.files)?;
    let (jobs, pushed) = jobs_named_for(&mut list, &target);
    let engine =
        Engine::new(Arc::new(StoreSource::new(open_store(settings)?)), destination, options, reporter(settings));
    let results = engine.copy_all(&jobs).await;
    let mut summary = summary("push", pushed, results, list.rejected);
    (summary.dry_run, summary.destinations) = (plan, jobs.into_iter().map(|job| job.destination).collect());
    Ok(summary)
}
