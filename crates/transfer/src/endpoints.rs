//! Endpoints by name: skopeo's transport syntax parsed into an
//! [`EndpointName`], opened into an [`AnySource`] or an [`AnyDestination`],
//! and [`copy`], which moves one image between any two of them.
//!
//! The engine is generic over its source and destination (their futures are
//! not object-safe), so "any endpoint" is an enum that forwards each call to
//! the endpoint it holds: one match per trait method, no boxing per call.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hpn_archive::ArchiveCompression;
use hpn_fs::Durability;
use hpn_oci::{Descriptor, Digest, RawManifest, Reference};
use hpn_registry::RegistryClient;
use hpn_store::Store;

use crate::archive_endpoint::ArchiveDestination;
use crate::archive_source::ArchiveSource;
use crate::attachments::Attachment;
use crate::blob_locations::BlobLocations;
use crate::empty_endpoint::EmptyDestination;
use crate::endpoint::{BlobContent, BlobReuse, CopiedImage, ImageDestination, ImageSource};
use crate::engine::{CopyJob, Engine, EngineOptions};
use crate::error::TransferError;
use crate::mirrors::Mirrors;
use crate::mutex::lock;
use crate::registry_endpoint::{RegistryDestination, RegistrySource};
use crate::report::{CopyOutcome, Reporter};
use crate::store_endpoint::{StoreDestination, StoreSource};

/// One side of a copy, as skopeo names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointName {
    /// `docker://REF`, or a bare reference.
    Registry(Reference),
    /// `store:REF`: hpn's own store.
    Store(Reference),
    /// `oci:DIR[:REF]`: an OCI image layout directory (written as hpn's
    /// store writes, so skopeo and umoci read it, but with no lock file of
    /// hpn's left in it).
    OciLayout {
        /// The layout directory.
        path: PathBuf,
        /// The image in it; optional when it holds one image, or as a
        /// destination (the source's full name is recorded).
        name: Option<Reference>,
        /// `REF` as given, which a destination records verbatim
        /// (`oci:DIR:app:1` is `app:1` in index.json, as skopeo writes and
        /// looks it up), not as the full reference `name` normalizes it to.
        name_as_given: Option<String>,
    },
    /// `oci-archive:FILE[:REF]` or `docker-archive:FILE[:REF]`: hpn reads
    /// every archive format and writes the hybrid one both loaders accept.
    Archive {
        /// The archive file.
        path: PathBuf,
        /// The image in it, as for [`EndpointName::OciLayout`].
        name: Option<Reference>,
    },
}

/// An endpoint name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an image endpoint: {reason}")]
pub struct EndpointNameError {
    text: String,
    reason: String,
}

impl FromStr for EndpointName {
    type Err = EndpointNameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| EndpointNameError { text: text.to_owned(), reason };
        let reference = |part: &str| part.parse::<Reference>().map_err(|error| invalid(error.to_string()));
        let split = |rest: &str| -> (PathBuf, Option<String>) {
            match rest.split_once(':') {
                Some((path, name)) if !name.is_empty() => (PathBuf::from(path), Some(name.to_owned())),
                _ => (PathBuf::from(rest.trim_end_matches(':')), None),
            }
        };
        let path_and_name = |rest: &str| -> Result<(PathBuf, Option<Reference>), EndpointNameError> {
            let (path, name) = split(rest);
            Ok((path, name.as_deref().map(reference).transpose()?))
        };
        if let Some(rest) = text.strip_prefix("docker://") {
            Ok(Self::Registry(reference(rest)?))
        } else if let Some(rest) = text.strip_prefix("store:") {
            Ok(Self::Store(reference(rest)?))
        } else if let Some(rest) = text.strip_prefix("oci:") {
            let (path, name) = path_and_name(rest)?;
            Ok(Self::OciLayout { path, name, name_as_given: split(rest).1 })
        } else if let Some(rest) = text.strip_prefix("oci-archive:").or_else(|| text.strip_prefix("docker-archive:")) {
            let (path, name) = path_and_name(rest)?;
            Ok(Self::Archive { path, name })
        } else {
            Ok(Self::Registry(reference(text)?))
        }
    }
}

impl fmt::Display for EndpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_name = |f: &mut fmt::Formatter<'_>, prefix: &str, path: &Path, name: &Option<Reference>| match name {
            Some(name) => write!(f, "{prefix}:{}:{name}", path.display()),
            None => write!(f, "{prefix}:{}", path.display()),
        };
        match self {
            Self::Registry(image) => write!(f, "docker://{image}"),
            Self::Store(image) => write!(f, "store:{image}"),
            Self::OciLayout { path, name_as_given: Some(name), .. } => write!(f, "oci:{}:{name}", path.display()),
            Self::OciLayout { path, name, .. } => with_name(f, "oci", path, name),
            Self::Archive { path, name } => with_name(f, "oci-archive", path, name),
        }
    }
}

impl EndpointName {
    /// Whether opening this endpoint needs a registry client.
    pub fn uses_registry(&self) -> bool {
        matches!(self, Self::Registry(_))
    }
}

/// What endpoints are opened with: the resources one run shares.
///
/// The store is opened (and created) only when an endpoint needs it, so a
/// copy between two registries leaves no store directory behind.
#[derive(Debug)]
pub struct EndpointContext {
    registry: Option<RegistryClient>,
    store_root: PathBuf,
    store: Mutex<Option<Arc<Store>>>,
    durability: Durability,
    compression: ArchiveCompression,
    blob_locations: Arc<BlobLocations>,
    mirrors: Arc<Mirrors>,
}

impl EndpointContext {
    /// A context whose store lives at `store_root`. Without a registry
    /// client, opening a registry endpoint fails.
    pub fn new(store_root: PathBuf, durability: Durability) -> Self {
        Self {
            registry: None,
            store_root,
            store: Mutex::new(None),
            durability,
            compression: ArchiveCompression::None,
            blob_locations: Arc::new(BlobLocations::in_memory()),
            mirrors: Arc::new(Mirrors::new()),
        }
    }

    /// Registry sources read through `mirrors` first.
    pub fn with_mirrors(mut self, mirrors: Arc<Mirrors>) -> Self {
        self.mirrors = mirrors;
        self
    }

    /// Registry endpoints use `client`.
    pub fn with_registry(mut self, client: RegistryClient) -> Self {
        self.registry = Some(client);
        self
    }

    /// Archives written are compressed as a whole with `compression`.
    pub fn with_compression(mut self, compression: ArchiveCompression) -> Self {
        self.compression = compression;
        self
    }

    /// Registry destinations mount shared layers from, and record pushes in,
    /// `locations` (which may remember earlier runs).
    pub fn with_blob_locations(mut self, locations: Arc<BlobLocations>) -> Self {
        self.blob_locations = locations;
        self
    }

    /// The store, opened on first use and shared after.
    pub fn store(&self) -> Result<Arc<Store>, TransferError> {
        let mut opened = lock(&self.store);
        if let Some(store) = &*opened {
            return Ok(Arc::clone(store));
        }
        let store = Arc::new(Store::open_with(&self.store_root, self.durability)?);
        *opened = Some(Arc::clone(&store));
        Ok(store)
    }

    /// How archives and layouts written in this run reach the disk.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// How archives written in this run are compressed.
    pub fn compression(&self) -> ArchiveCompression {
        self.compression
    }

    /// The run's registry client; an error when it has none.
    pub(crate) fn registry_client(&self) -> Result<RegistryClient, TransferError> {
        self.registry.clone().ok_or_else(|| {
            TransferError::Unsupported("this run has no registry client; registry endpoints cannot be opened".into())
        })
    }

    /// A registry destination sharing this context's blob locations.
    pub fn registry_destination(&self) -> Result<RegistryDestination, TransferError> {
        Ok(RegistryDestination::with_locations(self.registry_client()?, Arc::clone(&self.blob_locations)))
    }

    /// Opens `name` as a source and says which image of it to read: the
    /// named one, or the only image of an archive or layout.
    pub async fn open_source(&self, name: &EndpointName) -> Result<(AnySource, Reference), TransferError> {
        match name {
            EndpointName::Registry(image) => {
                let source = RegistrySource::with_mirrors(self.registry_client()?, Arc::clone(&self.mirrors));
                Ok((AnySource::Registry(source), image.clone()))
            }
            EndpointName::Store(image) => Ok((AnySource::Store(StoreSource::new(self.store()?)), image.clone())),
            EndpointName::OciLayout { path, name, .. } | EndpointName::Archive { path, name } => {
                let archive = ArchiveSource::open(path).await?;
                let image = match name {
                    Some(name) => name.clone(),
                    None => archive.only_image()?,
                };
                Ok((AnySource::Archive(archive), image))
            }
        }
    }

    /// Opens `name` as a destination and says what the image is called
    /// there: its own name, else `source_image`'s. An archive file is created
    /// at once (in its temp name), so a bad output path fails before any
    /// download.
    pub async fn open_destination(
        &self,
        name: &EndpointName,
        source_image: &Reference,
    ) -> Result<(AnyDestination, Reference), TransferError> {
        let target = target_name(name, source_image);
        let destination = match name {
            EndpointName::Registry(_) => AnyDestination::Registry(self.registry_destination()?),
            EndpointName::Store(_) => AnyDestination::Store(StoreDestination::new(self.store()?)),
            EndpointName::OciLayout { path, name_as_given, .. } => {
                let layout = StoreDestination::new(Arc::new(Store::open_layout(path, self.durability)?));
                AnyDestination::Store(match name_as_given {
                    Some(name) => layout.with_name(name.clone()),
                    None => layout,
                })
            }
            EndpointName::Archive { path, .. } => {
                let (at, compression, durability) = (path.clone(), self.compression, self.durability);
                // Opening a FIFO waits for its reader: on the blocking pool, not an async worker.
                let archive =
                    tokio::task::spawn_blocking(move || ArchiveDestination::create(&at, compression, durability))
                        .await
                        .map_err(|join| TransferError::task_failed("archive", join))??;
                AnyDestination::Archive(archive, path.clone())
            }
        };
        Ok((destination, target))
    }

    /// [`EndpointContext::open_destination`] for a dry run, creating nothing:
    /// a store or layout that does not exist yet, and any archive (which
    /// would be written anew), are planned against as empty.
    pub fn open_planned_destination(
        &self,
        name: &EndpointName,
        source_image: &Reference,
    ) -> Result<(AnyDestination, Reference), TransferError> {
        let existing = |root: &Path| -> Result<AnyDestination, TransferError> {
            Ok(if Store::exists_at(root) {
                AnyDestination::Store(StoreDestination::new(Arc::new(Store::open_layout(root, self.durability)?)))
            } else {
                AnyDestination::Empty(EmptyDestination)
            })
        };
        let destination = match name {
            EndpointName::Registry(_) => AnyDestination::Registry(self.registry_destination()?),
            EndpointName::Store(_) if Store::exists_at(&self.store_root) => {
                AnyDestination::Store(StoreDestination::new(self.store()?))
            }
            EndpointName::Store(_) => AnyDestination::Empty(EmptyDestination),
            EndpointName::OciLayout { path, .. } => existing(path)?,
            EndpointName::Archive { .. } => AnyDestination::Empty(EmptyDestination),
        };
        Ok((destination, target_name(name, source_image)))
    }
}

/// The name an image gets at `name`: its own, else `source_image`'s.
fn target_name(name: &EndpointName, source_image: &Reference) -> Reference {
    match name {
        EndpointName::Registry(target) | EndpointName::Store(target) => target.clone(),
        EndpointName::OciLayout { name, .. } | EndpointName::Archive { name, .. } => {
            name.clone().unwrap_or_else(|| source_image.clone())
        }
    }
}

/// Any source hpn can read: each call goes to the endpoint inside.
#[derive(Debug)]
pub enum AnySource {
    /// A registry, over the distribution API.
    Registry(RegistrySource),
    /// hpn's store (or any OCI layout hpn opened as a store).
    Store(StoreSource),
    /// An archive file or layout directory, read in place.
    Archive(ArchiveSource),
}

/// Any destination hpn can write.
#[derive(Debug)]
pub enum AnyDestination {
    /// A registry: blobs per repository, mounts, manifests by digest then tag.
    Registry(RegistryDestination),
    /// hpn's store or an OCI layout directory.
    Store(StoreDestination),
    /// An archive file, finished by [`AnyDestination::finish`].
    Archive(ArchiveDestination, PathBuf),
    /// A place a dry run plans against because it does not exist yet.
    Empty(EmptyDestination),
}

/// An archive file a run wrote, complete under its final name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenArchive {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

impl AnyDestination {
    /// Completes what the destination needs completing once every image is
    /// in: an archive writes its indexes and moves to its final name; the
    /// store (or layout) writes the names it batched.
    pub async fn finish(&self) -> Result<Option<WrittenArchive>, TransferError> {
        match self {
            Self::Archive(archive, path) => {
                Ok(Some(WrittenArchive { path: path.clone(), size: archive.finish().await? }))
            }
            Self::Store(store) => match store.flush().await.pop() {
                Some((_, error)) => Err(error),
                None => Ok(None),
            },
            Self::Registry(_) | Self::Empty(_) => Ok(None),
        }
    }
}

/// Forwards a method call to whichever endpoint the enum holds; `extra`
/// names the variants only one of the enums has.
macro_rules! forward {
    ($self:ident, $endpoint:ident => $call:expr $(, $extra:ident)*) => {
        match $self {
            Self::Registry($endpoint) => $call,
            Self::Store($endpoint) => $call,
            Self::Archive($endpoint, ..) => $call,
            $(Self::$extra($endpoint) => $call,)*
        }
    };
}

impl ImageSource for AnySource {
    async fn peek(&self, image: &Reference) -> Result<Option<Descriptor>, TransferError> {
        forward!(self, source => source.peek(image).await)
    }

    async fn resolve(&self, image: &Reference) -> Result<RawManifest, TransferError> {
        forward!(self, source => source.resolve(image).await)
    }

    async fn manifest(&self, image: &Reference, descriptor: &Descriptor) -> Result<RawManifest, TransferError> {
        forward!(self, source => source.manifest(image, descriptor).await)
    }

    async fn has_manifest(&self, descriptor: &Descriptor) -> Result<bool, TransferError> {
        forward!(self, source => source.has_manifest(descriptor).await)
    }

    async fn attachments(&self, image: &Reference, subject: &Digest) -> Result<Vec<Attachment>, TransferError> {
        forward!(self, source => source.attachments(image, subject).await)
    }

    async fn blob(&self, image: &Reference, descriptor: &Descriptor) -> Result<BlobContent, TransferError> {
        forward!(self, source => source.blob(image, descriptor).await)
    }
}

impl ImageDestination for AnyDestination {
    fn requires_complete_index(&self) -> bool {
        forward!(self, destination => destination.requires_complete_index(), Empty)
    }

    fn prefers_compressed_layers(&self) -> bool {
        forward!(self, destination => destination.prefers_compressed_layers(), Empty)
    }

    fn keeps_attachments(&self) -> bool {
        forward!(self, destination => destination.keeps_attachments(), Empty)
    }

    fn keeps_attachments_of_partial_indexes(&self) -> bool {
        forward!(self, destination => destination.keeps_attachments_of_partial_indexes(), Empty)
    }

    async fn put_attachment(
        &self,
        target: &Reference,
        attachment: &Attachment,
        manifest: &RawManifest,
    ) -> Result<(), TransferError> {
        forward!(self, destination => destination.put_attachment(target, attachment, manifest).await, Empty)
    }

    async fn recorded_image(&self, name: &Reference) -> Result<Option<Descriptor>, TransferError> {
        forward!(self, destination => destination.recorded_image(name).await, Empty)
    }

    async fn cached(&self, digest: &Digest, limit: u64) -> Result<Option<Bytes>, TransferError> {
        forward!(self, destination => destination.cached(digest, limit).await, Empty)
    }

    async fn holds_blob(&self, target: &Reference, descriptor: &Descriptor) -> Result<bool, TransferError> {
        forward!(self, destination => destination.holds_blob(target, descriptor).await, Empty)
    }

    async fn try_reuse_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        source: &Reference,
    ) -> Result<BlobReuse, TransferError> {
        forward!(self, destination => destination.try_reuse_blob(target, descriptor, source).await, Empty)
    }

    async fn put_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        content: BlobContent,
    ) -> Result<(), TransferError> {
        forward!(self, destination => destination.put_blob(target, descriptor, content).await, Empty)
    }

    async fn put_manifest(&self, target: &Reference, manifest: &RawManifest) -> Result<(), TransferError> {
        forward!(self, destination => destination.put_manifest(target, manifest).await, Empty)
    }

    async fn commit(&self, image: &CopiedImage) -> Result<(), TransferError> {
        forward!(self, destination => destination.commit(image).await, Empty)
    }

    async fn flush(&self) -> Vec<(usize, TransferError)> {
        forward!(self, destination => destination.flush().await, Empty)
    }
}

/// What [`copy`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct CopyReport {
    /// The image read from the source.
    pub image: Reference,
    /// The copy's result (an archive that could not be finished fails it).
    pub outcome: Result<CopyOutcome, TransferError>,
    /// The archive written, when the destination was one.
    pub archive: Option<WrittenArchive>,
    /// The mirror location the image was read from, when a mirror served it.
    pub served_from: Option<Reference>,
}

/// Copies one image from `source` to `destination`, any kinds: `hpn copy`.
///
/// Failing to open either side is the `Err`; a copy that started and failed
/// is reported in [`CopyReport::outcome`].
pub async fn copy(
    source: &EndpointName,
    destination: &EndpointName,
    context: &EndpointContext,
    options: EngineOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<CopyReport, TransferError> {
    let (source, image) = context.open_source(source).await?;
    let (destination, target) = if options.dry_run {
        context.open_planned_destination(destination, &image)?
    } else {
        context.open_destination(destination, &image).await?
    };
    let source = match source {
        // A dry run plans with the plain sizes rather than compress every layer to learn its size.
        AnySource::Archive(archive) if destination.prefers_compressed_layers() && !options.dry_run => {
            AnySource::Archive(archive.compressing_plain_layers()?)
        }
        source => source,
    };
    let destination = Arc::new(destination);
    let job = CopyJob { index: 0, source: image.clone(), destination: target };
    let source = Arc::new(source);
    let engine = Engine::new(Arc::clone(&source), Arc::clone(&destination), options, reporter);
    let (outcome, archive) = match engine.copy(&job).await {
        Ok(outcome) => match destination.finish().await {
            Ok(archive) => (Ok(outcome), archive),
            Err(error) => (Err(error), None),
        },
        Err(error) => (Err(error), None),
    };
    let served_from = match &*source {
        AnySource::Registry(registry) => registry.served_from(&image),
        AnySource::Store(_) | AnySource::Archive(_) => None,
    };
    Ok(CopyReport { image, outcome, archive, served_from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_use_skopeos_syntax() {
        let reference = |text: &str| text.parse::<Reference>().unwrap();
        let parse = |text: &str| text.parse::<EndpointName>();
        assert_eq!(parse("docker://nginx:1").unwrap(), EndpointName::Registry(reference("nginx:1")));
        assert_eq!(parse("host:5000/a:1").unwrap(), EndpointName::Registry(reference("host:5000/a:1")));
        assert_eq!(parse("store:a/b:2").unwrap(), EndpointName::Store(reference("a/b:2")));
        assert_eq!(
            parse("oci:/tmp/layout:app:1").unwrap(),
            EndpointName::OciLayout {
                path: "/tmp/layout".into(),
                name: Some(reference("app:1")),
                name_as_given: Some("app:1".into())
            }
        );
        assert_eq!(
            parse("docker-archive:/tmp/x.tar").unwrap(),
            EndpointName::Archive { path: "/tmp/x.tar".into(), name: None }
        );
        assert!(parse("docker://Bad Name").is_err());
    }

    #[test]
    fn names_print_as_they_parse() {
        for text in [
            "docker://docker.io/library/nginx:1",
            "store:docker.io/a/b:2",
            "oci:/tmp/l:docker.io/library/app:1",
            "oci:/tmp/l:app:1",
        ] {
            assert_eq!(text.parse::<EndpointName>().unwrap().to_string(), text);
        }
    }
}
