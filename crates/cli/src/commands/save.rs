use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use clap::ValueEnum;
use hpn_archive::{ArchiveCompression, BillSigner};
use hpn_oci::Platform;
use hpn_store::Store;

use hpn_transfer::{ArchiveOptions, Base, CopyJob, Engine, PlatformChoice, SaveMode, SaveOutput};

use super::{
    engine_options, mode, open_store, platform_choice, pull_policy, registry_source, reporter, served_from,
    store_destination, store_plan, summary,
};
use crate::args::{Compression, SaveArgs};
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::ImageList;
use crate::summary::{Summary, VolumePlan};

pub fn archive_compression(choice: Option<Compression>) -> ArchiveCompression {
    match choice {
        None => ArchiveCompression::None,
        Some(Compression::Gzip) => ArchiveCompression::Gzip,
        Some(Compression::Zstd) => ArchiveCompression::Zstd,
    }
}

/// The compression a file name asks for (`.tar.gz`, `.tgz`, `.tar.zst`,
/// `.tzst`, `.tar`); `None` for a name that says nothing (`-`, `images`).
fn compression_named_by(path: &Path) -> Option<(ArchiveCompression, &'static str)> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    [
        (".tar.gz", ArchiveCompression::Gzip),
        (".tgz", ArchiveCompression::Gzip),
        (".tar.zst", ArchiveCompression::Zstd),
        (".tzst", ArchiveCompression::Zstd),
        (".tar", ArchiveCompression::None),
    ]
    .into_iter()
    .find(|(extension, _)| name.ends_with(extension))
    .map(|(extension, compression)| (compression, extension))
}

/// The compression of an archive written to `path`: `--compress` if given,
/// else what the name says, as tar's `-a` reads it. A name that says one
/// thing and a flag another would leave a file that lies about its content,
/// so that is refused.
pub fn compression_for_output(path: &Path, flag: Option<Compression>) -> Result<ArchiveCompression, Failure> {
    let named = compression_named_by(path);
    let Some(flag) = flag else { return Ok(named.map_or(ArchiveCompression::None, |(named, _)| named)) };
    match named {
        Some((named, extension)) if named != archive_compression(Some(flag)) => {
            let says = match named {
                ArchiveCompression::None => "an uncompressed tar",
                ArchiveCompression::Gzip => "gzip",
                ArchiveCompression::Zstd => "zstd",
            };
            let flag = flag.to_possible_value().map(|value| value.get_name().to_owned()).unwrap_or_default();
            Err(Failure::new(
                ExitStatus::BadArguments,
                anyhow::anyhow!(
                    "{} ends in {extension}, which says {says}, but --compress {flag} was given; \
                     name the file for its compression or leave --compress out",
                    path.display()
                ),
            ))
        }
        _ => Ok(archive_compression(Some(flag))),
    }
}

/// `hpn save`: pull into the store and export, one archive (`-o`) or one per
/// image in the Go hpn's layout for the save mode; hpn-transfer overlaps the two.
pub async fn run(args: SaveArgs, settings: &Settings) -> Result<Summary, Failure> {
    let selection = &args.selection;
    let list = ImageList::collect(&selection.images, &selection.files)?;
    let stdout_is_output = args.output.as_deref().is_some_and(is_stdout);
    if stdout_is_output {
        check_stdout_can_take_the_archive(settings)?;
    }
    let (output, compression) = match &args.output {
        Some(path) => (SaveOutput::OneArchive(path.clone()), compression_for_output(path, args.compress)?),
        None => {
            let compression = archive_compression(args.compress);
            let save_mode = mode(args.save_mode.or(settings.default_save_mode), SaveMode::from_number, "save")?;
            let paths = list
                .images
                .iter()
                .map(|image| save_mode.archive_path(Path::new("."), &image.written, &image.reference, compression))
                .collect();
            (SaveOutput::PerImage(paths), compression)
        }
    };
    let platforms = platform_choice(
        selection.platform.as_deref(),
        selection.all_platforms,
        settings,
        PlatformChoice::One(Platform::host()),
    )?;
    let jobs = CopyJob::same_names(list.references());
    let options = engine_options(platforms, settings)
        .with_pull(pull_policy(&args.policy))
        .with_attachments(args.referrers.policy());
    let signer = args.sign_key.as_deref().map(read_key(BillSigner::from_pem)).transpose()?;
    let mut archive_options = ArchiveOptions::new(compression, settings.durability)
        .with_volume_size(args.split)
        .with_bill_signer(signer)
        .with_creation_time(args.created);
    if !args.since.is_empty() {
        archive_options = archive_options.with_base(read_base(args.since).await?);
    }
    if let (true, Some(volume_size), SaveOutput::OneArchive(path)) = (args.dry_run, args.split, &output) {
        return plan_volumes(settings, list, &jobs, path, &archive_options, options, volume_size).await;
    }
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
        archive_options,
        options,
        reporter(settings),
    )
    .await
    .map_err(|error| Failure::new(ExitStatus::Filesystem, error))?;
    let mut summary = summary("save", list.references(), report.results, list.rejected);
    summary.archives = report.archives.into_iter().map(|archive| (archive.path, archive.size)).collect();
    summary.served_from = served_from(&source, &summary);
    summary.stdout_is_output = stdout_is_output;
    summary.differential = report.differential;
    Ok(summary)
}

/// `hpn save --dry-run --split`: what the store lacks, as a plain dry run
/// says, and the volumes `--split` would write, from the images' manifests
/// and configs; no layer is fetched and nothing is written.
async fn plan_volumes(
    settings: &Settings,
    list: ImageList,
    jobs: &[CopyJob],
    path: &Path,
    archive_options: &ArchiveOptions,
    options: hpn_transfer::EngineOptions,
    volume_size: u64,
) -> Result<Summary, Failure> {
    let source = registry_source(settings)?;
    let store = if Store::exists_at(&settings.store_root) { Some(open_store(settings)?) } else { None };
    let attachments_left_out = options.attachments.enabled();
    let plan = hpn_transfer::plan_save(
        source.clone(),
        store_destination(settings, true)?,
        store,
        jobs,
        path,
        archive_options,
        options,
        reporter(settings),
    )
    .await
    .map_err(|error| Failure::new(ExitStatus::of(&error), anyhow::anyhow!(crate::exit::describe(&error))))?;
    let mut summary = summary("save", list.references(), plan.results, list.rejected);
    summary.dry_run = store_plan(settings, true);
    summary.served_from = served_from(&source, &summary);
    summary.archives = plan.volumes.iter().map(|volume| (volume.path.clone(), volume.tar_size)).collect();
    summary.volume_plan = Some(VolumePlan {
        volume_size,
        compressed: archive_options.compression != ArchiveCompression::None,
        volumes: plan.volumes,
        estimated: plan.estimated,
        attachments_left_out,
    });
    Ok(summary)
}

/// The `--since` files, read before anything is fetched: a base that cannot
/// be read would make a bundle that ships the wrong things.
async fn read_base(files: Vec<std::path::PathBuf>) -> Result<Arc<Base>, Failure> {
    tokio::task::spawn_blocking(move || Base::read(&files))
        .await
        .map_err(|join| Failure::new(ExitStatus::General, anyhow::anyhow!("reading --since failed: {join}")))?
        .map(Arc::new)
        .map_err(|error| {
            Failure::new(ExitStatus::of(&error), anyhow::anyhow!("--since: {}", crate::exit::describe(&error)))
        })
}

/// Reads a PEM key file with `parse`; a key that cannot be used is a bad argument, named.
pub fn read_key<K>(parse: fn(&str) -> Result<K, String>) -> impl Fn(&Path) -> Result<K, Failure> {
    move |path| {
        let bad = |reason: String| {
            Failure::new(ExitStatus::BadArguments, anyhow::anyhow!("cannot use key {}: {reason}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|error| bad(error.to_string()))?;
        parse(&text).map_err(bad)
    }
}

/// Whether `path` names this process's stdout: `-`, or a path that opens the
/// same file (`/dev/stdout`, `/proc/self/fd/1`).
pub fn is_stdout(path: &Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    if path == Path::new("-") {
        return true;
    }
    let stdout =
        std::io::stdout().as_fd().try_clone_to_owned().map(std::fs::File::from).and_then(|file| file.metadata());
    match (stdout, std::fs::metadata(path)) {
        (Ok(stdout), Ok(named)) => stdout.dev() == named.dev() && stdout.ino() == named.ino(),
        _ => false,
    }
}

/// An archive on stdout leaves no room there for the summary (it goes to
/// stderr) or for --json, and is binary noise on a terminal (docker save
/// refuses that too).
pub fn check_stdout_can_take_the_archive(settings: &Settings) -> Result<(), Failure> {
    let refuse = |message: &str| Err(Failure::new(ExitStatus::BadArguments, anyhow::anyhow!(message.to_owned())));
    if settings.json {
        return refuse("--json prints the summary on stdout, where -o sends the archive; leave one of them out");
    }
    if std::io::stdout().is_terminal() {
        return refuse("stdout is a terminal; redirect it (hpn save -o - IMAGE > FILE) or pipe it to a program");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_comes_from_the_flag_or_the_name_and_a_mismatch_is_refused() {
        let output = |name: &str, flag| compression_for_output(Path::new(name), flag).map_err(|failure| failure.status);
        assert_eq!(output("x.tar.gz", None), Ok(ArchiveCompression::Gzip));
        assert_eq!(output("dir/X.TGZ", None), Ok(ArchiveCompression::Gzip));
        assert_eq!(output("x.tar.zst", None), Ok(ArchiveCompression::Zstd));
        assert_eq!(output("x.tar", None), Ok(ArchiveCompression::None));
        assert_eq!(output("-", None), Ok(ArchiveCompression::None));
        assert_eq!(output("-", Some(Compression::Zstd)), Ok(ArchiveCompression::Zstd));
        assert_eq!(output("images", Some(Compression::Gzip)), Ok(ArchiveCompression::Gzip));
        assert_eq!(output("x.tar.zst", Some(Compression::Zstd)), Ok(ArchiveCompression::Zstd));
        assert_eq!(output("x.tar.gz", Some(Compression::Zstd)), Err(ExitStatus::BadArguments));
        assert_eq!(output("x.tar", Some(Compression::Gzip)), Err(ExitStatus::BadArguments));
        let message =
            format!("{:#}", compression_for_output(Path::new("x.tar.gz"), Some(Compression::Zstd)).unwrap_err().error);
        assert!(message.contains("x.tar.gz ends in .tar.gz, which says gzip, but --compress zstd"), "{message}");
    }
}
