use std::path::Path;
use std::sync::Arc;

use hpn_archive::ArchiveCompression;
use hpn_oci::Platform;

use hpn_transfer::{ArchiveOptions, CopyJob, Engine, PlatformChoice, SaveMode, SaveOutput};

use super::{
    engine_options, mode, open_store, platform_choice, pull_policy, registry_source, reporter, served_from,
    store_destination, store_plan, summary,
};
use crate::args::{Compression, SaveArgs};
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::ImageList;
use crate::summary::Summary;

pub fn archive_compression(choice: Option<Compression>) -> ArchiveCompression {
    match choice {
        None => ArchiveCompression::None,
        Some(Compression::Gzip) => ArchiveCompression::Gzip,
        Some(Compression::Zstd) => ArchiveCompression::Zstd,
    }
}

/// `hpn save`: pull into the store and export, one archive (`-o`) or one per
/// image in the Go hpn's layout for the save mode; hpn-transfer overlaps the two.
pub async fn run(args: SaveArgs, settings: &Settings) -> Result<Summary, Failure> {
    let selection = &args.selection;
    let list = ImageList::collect(&selection.images, &selection.files)?;
    let compression = archive_compression(args.compress);
    let output = match &args.output {
        Some(path) => SaveOutput::OneArchive(path.clone()),
        None => {
            let save_mode = mode(args.save_mode.or(settings.default_save_mode), SaveMode::from_number, "save")?;
            SaveOutput::PerImage(
                list.images
                    .iter()
                    .map(|image| save_mode.archive_path(Path::new("."), &image.written, &image.reference, compression))
                    .collect(),
            )
        }
    };
    let platforms = platform_choice(
        selection.platform.as_deref(),
        selection.all_platforms,
        settings,
        PlatformChoice::One(Platform::host()),
    )?;
    let jobs = CopyJob::same_names(list.references());
    let options = engine_options(platforms, settings).with_pull(pull_policy(&args.policy));
    if args.dry_run {
        // The archive would hold every blob of every image; what the plan can tell is what
        // the store lacks and would fetch first.
        let source = Arc::new(registry_source(settings)?);
        let engine = Engine::new(
            Arc::clone(&source),
            Arc::new(store_destination(settings, true)?),
            options.with_dry_run(true),
            reporter(settings),
        );
        let results = engine.copy_all(&jobs).await;
        let mut summary = summary("save", list.references(), results, list.rejected);
        summary.dry_run = store_plan(settings, true);
        summary.served_from = served_from(&source, &summary);
        summary.archives = match output {
            SaveOutput::OneArchive(path) => vec![(path, 0)],
            SaveOutput::PerImage(paths) => paths.into_iter().map(|path| (path, 0)).collect(),
        };
        return Ok(summary);
    }
    let source = registry_source(settings)?;
    let report = hpn_transfer::save(
        source.clone(),
        open_store(settings)?,
        &jobs,
        output,
        ArchiveOptions::new(compression, settings.durability),
        options,
        reporter(settings),
    )
    .await
    .map_err(|error| Failure::new(ExitStatus::Filesystem, error))?;
    let mut summary = summary("save", list.references(), report.results, list.rejected);
    summary.archives = report.archives.into_iter().map(|archive| (archive.path, archive.size)).collect();
    summary.served_from = served_from(&source, &summary);
    Ok(summary)
}
