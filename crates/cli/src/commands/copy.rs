use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use hpn_oci::{Platform, Reference};
use hpn_store::Store;
use hpn_transfer::{
    ArchiveDestination, ArchiveSource, CopyJob, CopyOutcome, Engine, EngineOptions, ImageDestination, ImageSource,
    PlatformChoice, RegistryDestination, RegistrySource, StoreDestination, StoreSource, TransferError,
};

use super::save::archive_compression;
use super::{engine_options, open_store, platform_choice, registry_client, registry_destination, reporter, summary};
use crate::args::CopyArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::summary::Summary;

/// One side of `hpn copy`, in skopeo's transport syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// `docker://REF` or a bare reference.
    Registry(Reference),
    /// `store:REF`: hpn's own store.
    Store(Reference),
    /// `oci:DIR[:REF]`: an OCI image layout directory.
    OciLayout { path: PathBuf, name: Option<Reference> },
    /// `oci-archive:FILE[:REF]` or `docker-archive:FILE[:REF]`: hpn reads
    /// every archive format and writes the hybrid one both loaders accept.
    Archive { path: PathBuf, name: Option<Reference> },
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let reference = |text: &str| text.parse::<Reference>().map_err(|error| format!("{text:?}: {error}"));
    let path_and_name = |rest: &str| -> Result<(PathBuf, Option<Reference>), String> {
        match rest.split_once(':') {
            Some((path, name)) if !name.is_empty() => Ok((PathBuf::from(path), Some(reference(name)?))),
            _ => Ok((PathBuf::from(rest.trim_end_matches(':')), None)),
        }
    };
    if let Some(rest) = text.strip_prefix("docker://") {
        Ok(Endpoint::Registry(reference(rest)?))
    } else if let Some(rest) = text.strip_prefix("store:") {
        Ok(Endpoint::Store(reference(rest)?))
    } else if let Some(rest) = text.strip_prefix("oci:") {
        let (path, name) = path_and_name(rest)?;
        Ok(Endpoint::OciLayout { path, name })
    } else if let Some(rest) = text.strip_prefix("oci-archive:").or_else(|| text.strip_prefix("docker-archive:")) {
        let (path, name) = path_and_name(rest)?;
        Ok(Endpoint::Archive { path, name })
    } else {
        Ok(Endpoint::Registry(reference(text)?))
    }
}

pub async fn run(args: CopyArgs, settings: &Settings) -> Result<Summary, Failure> {
    let bad = |error: String| Failure::new(ExitStatus::BadArguments, anyhow!(error));
    let source = parse_endpoint(&args.source).map_err(bad)?;
    let destination = parse_endpoint(&args.destination).map_err(bad)?;
    let platforms =
        platform_choice(args.platform.as_deref(), args.all_platforms, settings, PlatformChoice::One(Platform::host()))?;
    let options = engine_options(platforms, settings);

    let opened_source = match &source {
        Endpoint::Registry(image) => {
            (OpenedSource::Registry(RegistrySource::new(registry_client(settings)?)), Some(image.clone()))
        }
        Endpoint::Store(image) => (OpenedSource::Store(StoreSource::new(open_store(settings)?)), Some(image.clone())),
        Endpoint::OciLayout { path, name } | Endpoint::Archive { path, name } => {
            let archive =
                ArchiveSource::open(path).await.map_err(|error| Failure::new(ExitStatus::of(&error), error))?;
            let name = match name {
                Some(name) => name.clone(),
                None => only_image(&archive).map_err(bad)?,
            };
            (OpenedSource::Archive(archive), Some(name))
        }
    };
    let (opened_source, Some(image)) = opened_source else { unreachable!("every source names its image") };
    let target = match &destination {
        Endpoint::Registry(name) | Endpoint::Store(name) => name.clone(),
        Endpoint::OciLayout { name, .. } | Endpoint::Archive { name, .. } => {
            name.clone().unwrap_or_else(|| image.clone())
        }
    };
    let opened_destination = match &destination {
        Endpoint::Registry(_) => OpenedDestination::Registry(registry_destination(settings)?),
        Endpoint::Store(_) => OpenedDestination::Store(StoreDestination::new(open_store(settings)?)),
        Endpoint::OciLayout { path, .. } => OpenedDestination::Store(StoreDestination::new(Arc::new(
            Store::open_with(path, settings.durability).map_err(|error| Failure::new(ExitStatus::Filesystem, error))?,
        ))),
        Endpoint::Archive { path, .. } => OpenedDestination::Archive(
            ArchiveDestination::create(path, archive_compression(args.compress), settings.durability)
                .map_err(|error| Failure::new(ExitStatus::Filesystem, error))?,
            path.clone(),
        ),
    };
    let job = CopyJob { index: 0, source: image.clone(), destination: target };
    let result = match opened_source {
        OpenedSource::Registry(source) => to_destination(source, opened_destination, &job, &options, settings).await,
        OpenedSource::Store(source) => to_destination(source, opened_destination, &job, &options, settings).await,
        OpenedSource::Archive(source) => to_destination(source, opened_destination, &job, &options, settings).await,
    };
    let (result, archives) = match result {
        Ok((outcome, archive)) => (Ok(outcome), archive.into_iter().collect()),
        Err(error) => (Err(error), Vec::new()),
    };
    let mut summary = summary("copy", vec![image], vec![result], Vec::new());
    summary.archives = archives;
    Ok(summary)
}

enum OpenedSource {
    Registry(RegistrySource),
    Store(StoreSource),
    Archive(ArchiveSource),
}

enum OpenedDestination {
    Registry(RegistryDestination),
    Store(StoreDestination),
    Archive(ArchiveDestination, PathBuf),
}

/// The second half of the dispatch: the source type is now fixed, the
/// destination is picked here; the engine is the same for all pairs.
async fn to_destination<S: ImageSource>(
    source: S,
    destination: OpenedDestination,
    job: &CopyJob,
    options: &EngineOptions,
    settings: &Settings,
) -> Result<(CopyOutcome, Option<(PathBuf, u64)>), TransferError> {
    async fn copy<S: ImageSource, D: ImageDestination>(
        source: S,
        destination: Arc<D>,
        job: &CopyJob,
        options: &EngineOptions,
        settings: &Settings,
    ) -> Result<CopyOutcome, TransferError> {
        Engine::new(Arc::new(source), destination, options.clone(), reporter(settings)).copy(job).await
    }
    match destination {
        OpenedDestination::Registry(registry) => {
            Ok((copy(source, Arc::new(registry), job, options, settings).await?, None))
        }
        OpenedDestination::Store(store) => Ok((copy(source, Arc::new(store), job, options, settings).await?, None)),
        OpenedDestination::Archive(archive, path) => {
            let archive = Arc::new(archive);
            let outcome = copy(source, Arc::clone(&archive), job, options, settings).await?;
            let size = archive.finish().await?;
            Ok((outcome, Some((path, size))))
        }
    }
}

/// The image of a one-image archive; an archive of several needs a name.
fn only_image(archive: &ArchiveSource) -> Result<Reference, String> {
    match archive.images() {
        [image] => Ok(image.names.first().cloned().unwrap_or_else(|| {
            // An unnamed image is found by its digest; the placeholder name is never written anywhere.
            Reference::new("localhost", "unnamed", None, Some(image.digest.clone())).expect("a valid placeholder")
        })),
        images => Err(format!(
            "{} holds {} images; name one as FILE:REF ({})",
            archive.path().display(),
            images.len(),
            images.iter().flat_map(|image| image.names.iter().map(ToString::to_string)).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_use_skopeos_syntax() {
        let reference = |text: &str| text.parse::<Reference>().unwrap();
        assert_eq!(parse_endpoint("docker://nginx:1").unwrap(), Endpoint::Registry(reference("nginx:1")));
        assert_eq!(parse_endpoint("host:5000/a:1").unwrap(), Endpoint::Registry(reference("host:5000/a:1")));
        assert_eq!(parse_endpoint("store:a/b:2").unwrap(), Endpoint::Store(reference("a/b:2")));
        assert_eq!(
            parse_endpoint("oci:/tmp/layout:app:1").unwrap(),
            Endpoint::OciLayout { path: "/tmp/layout".into(), name: Some(reference("app:1")) }
        );
        assert_eq!(
            parse_endpoint("docker-archive:/tmp/x.tar").unwrap(),
            Endpoint::Archive { path: "/tmp/x.tar".into(), name: None }
        );
        assert!(parse_endpoint("docker://Bad Name").is_err());
    }
}
