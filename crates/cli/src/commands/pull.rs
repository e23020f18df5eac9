use std::sync::Arc;

use hpn_oci::Platform;
use hpn_transfer::{CopyJob, Engine, PlatformChoice, RegistrySource, StoreDestination};

use super::{engine_options, open_store, platform_choice, pull_policy, registry_client, reporter, summary};
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
    let engine = Engine::new(
        Arc::new(RegistrySource::new(registry_client(settings)?)),
        Arc::new(StoreDestination::new(open_store(settings)?)),
        engine_options(platforms, settings).with_pull(pull_policy(&args.policy)),
        reporter(settings),
    );
    let jobs = CopyJob::same_names(list.images.iter().map(|image| image.reference.clone()));
    let results = engine.copy_all(&jobs).await;
    Ok(summary("pull", list.references(), results, list.rejected))
}
