use std::sync::Arc;

use hpn_oci::Platform;
use hpn_transfer::{CopyJob, Engine, PlatformChoice};

use super::{
    engine_options, platform_choice, pull_policy, registry_source, reporter, served_from, store_destination,
    store_plan, summary,
};
use crate::args::PullArgs;
use crate::config::Settings;
use crate::exit::Failure;
use crate::image_list::ImageList;
use crate::summary::Summary;

pub async fn run(args: PullArgs, settings: &Settings) -> Result<Summary, Failure> {
    let selection = &args.selection;
    let list = ImageList::collect(&selection.images, &selection.files)?;
    let platforms = platform_choice(
        selection.platform.as_deref(),
        selection.all_platforms,
        settings,
        PlatformChoice::One(Platform::host()),
    )?;
    let source = Arc::new(registry_source(settings)?);
    let engine = Engine::new(
        Arc::clone(&source),
        Arc::new(store_destination(settings, args.dry_run)?),
        engine_options(platforms, settings)
            .with_pull(pull_policy(&args.policy))
            .with_dry_run(args.dry_run)
            .with_attachments(args.referrers.policy()),
        reporter(settings),
    );
    let jobs = CopyJob::same_names(list.images.iter().map(|image| image.reference.clone()));
    let results = engine.copy_all(&jobs).await;
    let mut summary = summary("pull", list.references(), results, list.rejected);
    summary.dry_run = store_plan(settings, args.dry_run);
    summary.served_from = served_from(&source, &summary);
    Ok(summary)
}
