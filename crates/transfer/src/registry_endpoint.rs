use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};

use futures_util::future::{try_join, try_join_all};
use hpn_oci::{Descriptor, Digest, RawManifest, Reference, media_type};
use hpn_registry::{BodyFactory, MountOutcome, RegistryClient, RegistryError, UploadStream, body_from_bytes};
use tokio::sync::OnceCell;

use crate::attachments::{self, Attachment, AttachmentKind, fallback_tag, legacy_tag, tagged};
use crate::blob_locations::BlobLocations;
use crate::endpoint::{BlobContent, BlobReuse, CopiedImage, ImageDestination, ImageSource};
use crate::error::TransferError;
use crate::mirrors::Mirrors;
use crate::mutex::lock;

/// Read size for uploads from local files.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// Reads images from registries over the distribution API, through their
/// mirrors first when [`Mirrors`] has any for them.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    client: RegistryClient,
    mirrors: Arc<Mirrors>,
    /// Per image (by its own name), the mirror location its top manifest came
    /// from: its other reads go there first.
    served: Arc<Mutex<HashMap<Reference, Reference>>>,
    /// Mirror registries that could not be reached in this run (refused,
    /// unresolvable, timed out after the retry policy): not asked again, so a
    /// dead mirror costs its retries once per run, not once per image and blob.
    unreachable: Arc<Mutex<HashSet<String>>>,
    /// Per mirror registry, whether the first read made there in this run
    /// reached it. That read is made alone: images arriving meanwhile wait for
    /// its answer instead of each running the retry policy against a dead
    /// mirror at once.
    first_contact: Arc<Mutex<HashMap<String, Arc<OnceCell<bool>>>>>,
}

/// What the first read at a mirror registry means for a task that wants to
/// read there.
enum Contact<T> {
    /// This task made that read: its result.
    Made(Result<T, RegistryError>),
    /// Another task's read reached the mirror: read there.
    Reached,
    /// Another task's read found it unreachable: skip it.
    Unreachable,
}

impl RegistrySource {
    /// A source reading through `client`, from each image's own registry.
    pub fn new(client: RegistryClient) -> Self {
        Self::with_mirrors(client, Arc::new(Mirrors::new()))
    }

    /// A source reading through `client`, trying `mirrors` before each
    /// image's own registry.
    pub fn with_mirrors(client: RegistryClient, mirrors: Arc<Mirrors>) -> Self {
        Self { client, mirrors, served: Arc::default(), unreachable: Arc::default(), first_contact: Arc::default() }
    }

    /// The mirror location that served `image`, if a mirror did.
    pub fn served_from(&self, image: &Reference) -> Option<Reference> {
        self.served_by(image).filter(|location| location != image)
    }

    /// Where `image`'s top manifest came from: a mirror or its own registry.
    fn served_by(&self, image: &Reference) -> Option<Reference> {
        lock(&self.served).get(image).cloned()
    }

    /// Where to read `image` from, in order: the location that served its
    /// manifest so far, then the mirrors, then its own registry.
    /// Mirrors found unreachable earlier in the run are left out; the
    /// image's own registry never is.
    fn candidates(&self, image: &Reference) -> Vec<Reference> {
        let mut candidates = self.mirrors.locations(image);
        {
            let unreachable = lock(&self.unreachable);
            candidates.retain(|location| !unreachable.contains(location.registry()));
        }
        candidates.push(image.clone());
        if let Some(served) = self.served_by(image)
            && let Some(position) = candidates.iter().position(|candidate| *candidate == served)
        {
            candidates[..=position].rotate_right(1);
        }
        candidates
    }

    /// `read` at each candidate location of `image` until one answers. A
    /// mirror that fails is logged and the next tried; when every location
    /// fails, the error reported is that of the image's own registry.
    async fn read_first<T, F, Fut>(&self, image: &Reference, read: F) -> Result<(T, Reference), TransferError>
    where
        F: Fn(Reference) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let candidates = self.candidates(image);
        let mut origin_error = None;
        for location in candidates {
            let result = if location == *image {
                read(location.clone()).await
            } else {
                match self.first_contact(&location, &read).await {
                    Contact::Made(result) => result,
                    Contact::Reached => read(location.clone()).await,
                    Contact::Unreachable => continue,
                }
            };
            match result {
                Ok(value) => return Ok((value, location)),
                Err(error) if location == *image => origin_error = Some(error),
                Err(error) if error.is_network() => {
                    if lock(&self.unreachable).insert(location.registry().to_owned()) {
                        tracing::warn!(
                            %image, mirror = %location, %error,
                            "mirror unreachable; not asking it again in this run"
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(%image, mirror = %location, %error, "mirror failed; trying the next location")
                }
            }
        }
        Err(origin_error.expect("the image's own registry is always a candidate").into())
    }

    /// Makes the run's first read at `location`'s mirror registry, or waits
    /// for the task making it (a task dropped while making it hands the read
    /// on to a waiting one).
    async fn first_contact<T, F, Fut>(&self, location: &Reference, read: &F) -> Contact<T>
    where
        F: Fn(Reference) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let cell = Arc::clone(lock(&self.first_contact).entry(location.registry().to_owned()).or_default());
        let mut made = None;
        let reached = *cell
            .get_or_init(|| async {
                let result = read(location.clone()).await;
                let reached = !matches!(&result, Err(error) if error.is_network());
                made = Some(result);
                reached
            })
            .await;
        match made {
            Some(result) => Contact::Made(result),
            None if reached => Contact::Reached,
            None => Contact::Unreachable,
        }
    }

    fn record(&self, image: &Reference, location: Reference) {
        lock(&self.served).insert(image.clone(), location);
    }
}

impl ImageSource for RegistrySource {
    async fn peek(&self, image: &Reference) -> Result<Option<Descriptor>, TransferError> {
        let client = &self.client;
        let (peeked, location) = self.read_first(image, |at| async move { client.head_manifest(&at).await }).await?;
        self.record(image, location);
        Ok(peeked)
    }

    async fn resolve(&self, image: &Reference) -> Result<RawManifest, TransferError> {
        let client = &self.client;
        let (manifest, location) = self.read_first(image, |at| async move { client.get_manifest(&at).await }).await?;
        self.record(image, location);
        Ok(manifest)
    }

    async fn manifest(&self, image: &Reference, descriptor: &Descriptor) -> Result<RawManifest, TransferError> {
        let client = &self.client;
        let digest = &descriptor.digest;
        let read = |at: Reference| async move { client.get_manifest(&at.with_digest_only(digest.clone())).await };
        Ok(self.read_first(image, read).await?.0)
    }

    /// Per subject: a `HEAD` of each legacy tag (three requests whatever the
    /// repository holds, where one `tags/list` would page through every tag
    /// of a large public repository), the referrers API, and on its 404 the
    /// `sha256-<hex>` fallback tag. Asked where the image's manifest came
    /// from (a mirror, or its own registry).
    async fn attachments(&self, image: &Reference, subject: &Digest) -> Result<Vec<Attachment>, TransferError> {
        let at = self.served_by(image).unwrap_or_else(|| image.clone());
        // Asked all at once: one subject's discovery costs the round trips of
        // its longest chain (referrers, then the fallback tag), not the sum.
        let legacy = try_join_all(AttachmentKind::LEGACY.map(|kind| {
            let tag = legacy_tag(subject, kind).expect("a legacy kind has a tag");
            let at = tagged(&at, &tag);
            async move {
                let found = self.client.head_manifest(&at).await?;
                Ok::<_, TransferError>(found.map(|descriptor| Attachment {
                    kind,
                    descriptor,
                    artifact_type: None,
                    subject: subject.clone(),
                }))
            }
        }));
        let listed = async {
            Ok::<_, TransferError>(match self.client.referrers(&at, subject).await? {
                Some(list) => Some(list),
                None => fallback_index(&self.client, &at, subject).await?.map(|index| index.bytes),
            })
        };
        let (legacy, listed) = try_join(legacy, listed).await?;
        let mut found: Vec<Attachment> = legacy.into_iter().flatten().collect();
        if let Some(list) = listed {
            let referrers = attachments::parse_referrers(&list, subject).map_err(|reason| {
                TransferError::Referrers { context: format!("referrers of {}@{subject}", at.name()), reason }
            })?;
            found.extend(referrers);
        }
        Ok(found)
    }

    async fn blob(&self, image: &Reference, descriptor: &Descriptor) -> Result<BlobContent, TransferError> {
        let client = &self.client;
        let (stream, _) = self.read_first(image, |at| async move { client.get_blob(&at, descriptor).await }).await?;
        Ok(BlobContent::Stream(stream))
    }
}

/// Pushes images into registries: blobs the repository has are skipped,
/// blobs another repository of the same registry has are mounted, the rest
/// uploaded; platform manifests go by digest, the image itself by its tag.
#[derive(Debug)]
pub struct RegistryDestination {
    client: RegistryClient,
    /// Repositories known to hold a blob: the candidates a mount can borrow it from.
    locations: Arc<BlobLocations>,
    /// Per repository (`Reference::name`), whether the registry answers the
    /// referrers API there (asked once).
    lists_referrers: Mutex<HashMap<String, bool>>,
    /// Held while a fallback index is read, merged and written back, so two
    /// images of this run attaching to one subject do not drop each other's entry.
    fallback_writes: tokio::sync::Mutex<()>,
}

/// Mounts tried per blob before it is uploaded: each failed one costs a request.
const MOUNT_ATTEMPTS: usize = 3;

impl RegistryDestination {
    /// A destination that knows only what it sees in this run.
    pub fn new(client: RegistryClient) -> Self {
        Self::with_locations(client, Arc::new(BlobLocations::in_memory()))
    }

    /// A destination that mounts from, and adds to, `locations` (which may
    /// remember earlier runs).
    pub fn with_locations(client: RegistryClient, locations: Arc<BlobLocations>) -> Self {
        Self { client, locations, lists_referrers: Mutex::default(), fallback_writes: tokio::sync::Mutex::new(()) }
    }

    /// Whether `target`'s repository answers the referrers API (then a
    /// pushed referrer is listed by the registry itself).
    async fn lists_referrers(&self, target: &Reference, subject: &Digest) -> Result<bool, TransferError> {
        let repository = target.name();
        let known = lock(&self.lists_referrers).get(&repository).copied();
        if let Some(known) = known {
            return Ok(known);
        }
        let answers = self.client.referrers(target, subject).await?.is_some();
        lock(&self.lists_referrers).insert(repository, answers);
        Ok(answers)
    }

    /// Adds `manifest` to the `sha256-<hex>` fallback index of its subject,
    /// keeping every entry it lists already.
    async fn add_to_fallback_index(
        &self,
        target: &Reference,
        subject: &Digest,
        manifest: &RawManifest,
    ) -> Result<(), TransferError> {
        let _writing = self.fallback_writes.lock().await;
        let existing = fallback_index(&self.client, target, subject).await?;
        let merged = attachments::merge_fallback_index(
            existing.as_ref().map(|index| &index.bytes[..]),
            attachments::referrer_entry(manifest),
        )
        .map_err(|reason| TransferError::Referrers {
            context: format!("fallback index {} of {}", fallback_tag(subject), target.name()),
            reason,
        })?;
        if let Some(bytes) = merged {
            self.client
                .put_manifest(&tagged(target, &fallback_tag(subject)), bytes.into(), media_type::OCI_INDEX)
                .await?;
        }
        Ok(())
    }

    fn remember(&self, target: &Reference, digest: &Digest) {
        self.locations.remember(target, digest);
    }

    fn mount_candidates(&self, target: &Reference, digest: &Digest, source: &Reference) -> Vec<String> {
        let mut candidates = self.locations.repositories(target.registry(), digest);
        if source.registry() == target.registry() {
            candidates.insert(0, source.repository().to_owned());
        }
        let mut seen = HashSet::new();
        candidates.retain(|repository| repository != target.repository() && seen.insert(repository.clone()));
        candidates.truncate(MOUNT_ATTEMPTS);
        candidates
    }
}

/// A body the registry client can open again for a retried upload. Files and
/// in-memory bytes re-open; a stream from another registry can be sent once.
fn body_factory(content: BlobContent) -> BodyFactory {
    match content {
        BlobContent::Bytes(bytes) => body_from_bytes(bytes),
        BlobContent::File(path) => Arc::new(move || {
            let path = path.clone();
            Box::pin(async move {
                let file = tokio::fs::File::open(&path).await?;
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK)) as UploadStream)
            })
        }),
        BlobContent::Stream(stream) => {
            let once = Arc::new(Mutex::new(Some(stream)));
            Arc::new(move || {
                let taken = lock(&once).take();
                Box::pin(async move {
                    let stream = taken.ok_or_else(|| {
                        io::Error::other("a blob streamed from another registry cannot be re-sent; run the copy again")
                    })?;
                    Ok(stream as UploadStream)
                })
            })
        }
    }
}

impl ImageDestination for RegistryDestination {
    fn prefers_compressed_layers(&self) -> bool {
        true
    }

    fn requires_complete_index(&self) -> bool {
        true
    }

    async fn holds_blob(&self, target: &Reference, descriptor: &Descriptor) -> Result<bool, TransferError> {
        Ok(self.client.blob_exists(target, &descriptor.digest).await?)
    }

    /// Present in the repository (a HEAD), else mounted from the source's
    /// repository or one the locations remember.
    async fn try_reuse_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        source: &Reference,
    ) -> Result<BlobReuse, TransferError> {
        if self.client.blob_exists(target, &descriptor.digest).await? {
            self.remember(target, &descriptor.digest);
            return Ok(BlobReuse::Present);
        }
        for from in self.mount_candidates(target, &descriptor.digest, source) {
            if self.client.mount_blob(target, &descriptor.digest, &from).await? == MountOutcome::Mounted {
                self.remember(target, &descriptor.digest);
                return Ok(BlobReuse::Mounted);
            }
        }
        Ok(BlobReuse::Absent)
    }

    async fn put_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        content: BlobContent,
    ) -> Result<(), TransferError> {
        self.client.upload_blob(target, descriptor, body_factory(content)).await?;
        self.remember(target, &descriptor.digest);
        Ok(())
    }

    async fn put_manifest(&self, target: &Reference, manifest: &RawManifest) -> Result<(), TransferError> {
        let by_digest = target.with_digest_only(manifest.digest.clone());
        self.client.put_manifest(&by_digest, manifest.bytes.clone(), &manifest.media_type).await?;
        Ok(())
    }

    fn keeps_attachments(&self) -> bool {
        true
    }

    async fn put_attachment(
        &self,
        target: &Reference,
        attachment: &Attachment,
        manifest: &RawManifest,
    ) -> Result<(), TransferError> {
        if let Some(tag) = legacy_tag(&attachment.subject, attachment.kind) {
            self.client.put_manifest(&tagged(target, &tag), manifest.bytes.clone(), &manifest.media_type).await?;
            return Ok(());
        }
        self.put_manifest(target, manifest).await?;
        if self.lists_referrers(target, &attachment.subject).await? {
            return Ok(());
        }
        self.add_to_fallback_index(target, &attachment.subject, manifest).await
    }

    async fn commit(&self, image: &CopiedImage) -> Result<(), TransferError> {
        let pushed =
            self.client.put_manifest(&image.destination, image.top.bytes.clone(), &image.top.media_type).await?;
        if pushed != image.top.digest {
            return Err(TransferError::DigestMismatch {
                what: "pushed manifest",
                expected: image.top.digest.clone(),
                actual: pushed,
            });
        }
        Ok(())
    }
}

/// The `sha256-<hex>` fallback index of `subject` in `image`'s repository,
/// if there is one.
async fn fallback_index(
    client: &RegistryClient,
    image: &Reference,
    subject: &Digest,
) -> Result<Option<RawManifest>, TransferError> {
    match client.get_manifest(&tagged(image, &fallback_tag(subject))).await {
        Ok(index) => Ok(Some(index)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error.into()),
    }
}
