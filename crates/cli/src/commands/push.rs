use std::sync::Arc;

use hpn_oci::Reference;
use hpn_transfer::{CopyJob, Engine, PlatformChoice, PushMode, PushTarget, StoreSource};

use super::{
    archive_summary, engine_options, mode, open_store, platform_choice, registry_destination, reporter, summary,
};
use crate::args::PushArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::{ImageList, Rejected};
use crate::summary::Summary;

pub async fn run(args: PushArgs, settings: &Settings) -> Result<Summary, Failure> {
    let registry = args.registry.clone().or_else(|| settings.registry.clone()).ok_or_else(|| {
        Failure::new(
            ExitStatus::BadArguments,
            anyhow::anyhow!("no target registry: pass -r REGISTRY, set HPN_REGISTRY, or put registry: in the config"),
        )
    })?;
    let push_mode = mode(args.push_mode.or(settings.default_push_mode), PushMode::from_number, "push")?;
    let target = PushTarget::new(&registry, push_mode, args.project.clone().or_else(|| settings.project.clone()));
    let name_for = |source: &Reference| {
        target.name_for(source).map_err(|error| format!("cannot name {source} in {}: {error}", target.registry()))
    };
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
    let mut jobs = Vec::new();
    let mut pushed = Vec::new();
    for image in &list.images {
        match name_for(&image.reference) {
            Ok(destination) => {
                jobs.push(CopyJob { index: jobs.len(), source: image.reference.clone(), destination });
                pushed.push(image.reference.clone());
            }
            Err(reason) => {
                list.rejected.push(Rejected { origin: "push target".to_owned(), text: image.written.clone(), reason })
            }
        }
    }
    let engine =
        Engine::new(Arc::new(StoreSource::new(open_store(settings)?)), destination, options, reporter(settings));
    let results = engine.copy_all(&jobs).await;
    let mut summary = summary("push", pushed, results, list.rejected);
    (summary.dry_run, summary.destinations) = (plan, jobs.into_iter().map(|job| job.destination).collect());
    Ok(summary)
}
