use std::path::Path;

use anyhow::anyhow;
use hpn_transfer::{LoadMode, PlatformChoice};

use super::{archive_summary, engine_options, mode, reporter, store_destination, store_plan};
use crate::args::LoadArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::ImageList;
use crate::summary::Summary;

/// Archives named by `-i`, else found by the Go hpn's load mode, go into the
/// store with every image and name they hold, or only the images named.
pub async fn run(args: LoadArgs, settings: &Settings) -> Result<Summary, Failure> {
    let inputs = if args.inputs.is_empty() {
        let load_mode = mode(args.load_mode.or(settings.default_load_mode), LoadMode::from_number, "load")?;
        let dir = load_mode.directory(Path::new("."));
        let bad = |message: String| Failure::new(ExitStatus::BadArguments, anyhow!(message));
        let found = load_mode
            .find_archives(Path::new("."))
            .map_err(|error| bad(format!("cannot list archives in {}: {error}", dir.display())))?;
        if found.is_empty() {
            return Err(bad(format!(
                "no archives (*.tar, *.tar.gz, *.tar.zst) in {}; name them with -i FILE",
                dir.display()
            )));
        }
        found
    } else {
        args.inputs
    };
    let wanted = if args.images.is_empty() { None } else { Some(ImageList::collect(&args.images, &[])?.references()) };
    let destination = std::sync::Arc::new(store_destination(settings, args.dry_run)?);
    let options = engine_options(PlatformChoice::Available, settings).with_dry_run(args.dry_run);
    let run = hpn_transfer::copy_from_archives(
        &inputs,
        destination,
        &options,
        reporter(settings),
        wanted.as_deref(),
        |name| Ok(name.clone()),
    )
    .await;
    let mut summary = archive_summary("load", run);
    summary.dry_run = store_plan(settings, args.dry_run);
    Ok(summary)
}
