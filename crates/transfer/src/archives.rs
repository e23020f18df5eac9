//! `hpn load` and `hpn push -i`: every image of some archive files, into one
//! destination.

use std::path::PathBuf;
use std::sync::Arc;

use hpn_oci::Reference;

use crate::archive_source::ArchiveSource;
use crate::endpoint::ImageDestination;
use crate::engine::{CopyJob, Engine, EngineOptions};
use crate::error::TransferError;
use crate::report::{CopyOutcome, Reporter};

/// What [`copy_from_archives`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ArchiveRun {
    /// The images copied (by their names in the archives), in order.
    pub images: Vec<Reference>,
    /// Each image's result, in the order of `images`.
    pub results: Vec<Result<CopyOutcome, TransferError>>,
    /// Archives, or images in them, that could not be used at all: what
    /// (a path, or a path and a digest, or a name) and why.
    pub unusable: Vec<(String, TransferError)>,
}

/// Copies every named image of each archive (or only those in `wanted`)
/// into `destination`, under the name `target` gives it (an `Err` says why
/// that name cannot be). A broken archive is reported and the other
/// archives still run; the images of one archive are copied concurrently.
pub async fn copy_from_archives<D: ImageDestination>(
    inputs: &[PathBuf],
    destination: Arc<D>,
    options: &EngineOptions,
    reporter: Arc<dyn Reporter>,
    wanted: Option<&[Reference]>,
    target: impl Fn(&Reference) -> Result<Reference, String>,
) -> ArchiveRun {
    let mut run = ArchiveRun::default();
    let mut held: Vec<Reference> = Vec::new();
    for (label, opened) in ArchiveSource::open_all(inputs).await {
        let opened = opened.and_then(|source| {
            // A dry run plans with the plain sizes rather than compress every layer to learn its size.
            if destination.prefers_compressed_layers() && !options.dry_run {
                source.compressing_plain_layers()
            } else {
                Ok(source)
            }
        });
        let source = match opened {
            Ok(source) => source,
            Err(error) => {
                run.unusable.push((label, error));
                continue;
            }
        };
        // Named images of a set that need volumes not given: held, not copied.
        for (name, error) in source.incomplete_images() {
            let reference = name.parse::<Reference>().ok();
            if wanted.is_some_and(|wanted| reference.as_ref().is_none_or(|reference| !wanted.contains(reference))) {
                continue;
            }
            held.extend(reference);
            run.unusable.push((name, error));
        }
        let input = source.path();
        let mut jobs = Vec::new();
        for image in source.images() {
            if image.names.is_empty() && wanted.is_none() {
                run.unusable.push((format!("{} image {}", input.display(), image.digest), TransferError::UnnamedImage));
            }
            for name in &image.names {
                held.push(name.clone());
                if wanted.is_some_and(|wanted| !wanted.contains(name)) {
                    continue;
                }
                match target(name) {
                    Ok(destination) => {
                        jobs.push(CopyJob { index: jobs.len(), source: name.clone(), destination });
                        run.images.push(name.clone());
                    }
                    Err(reason) => run.unusable.push((name.to_string(), TransferError::InvalidName(reason))),
                }
            }
        }
        let engine = Engine::new(Arc::new(source), Arc::clone(&destination), options.clone(), Arc::clone(&reporter));
        run.results.extend(engine.copy_all(&jobs).await);
    }
    // A name that matches nothing is a mistake to report, not a quiet success with nothing done.
    let archives = inputs.iter().map(|input| input.display().to_string()).collect::<Vec<_>>().join(", ");
    let held_names = held.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    for name in wanted.unwrap_or_default().iter().filter(|name| !held.contains(name)) {
        let error = TransferError::NotInArchives {
            name: name.to_string(),
            archives: archives.clone(),
            held: held_names.clone(),
        };
        run.unusable.push((name.to_string(), error));
    }
    run
}
