use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hpn_oci::{BlobStream, Descriptor, Digest, ParsedManifest, RawManifest, Reference, limits, media_type};
use hpn_store::{BlobCheck, Store, StoreError};
use tokio::sync::mpsc;

use crate::attachments::{self, Attachment, fallback_tag, legacy_tag};
use crate::endpoint::{BlobContent, BlobReuse, CopiedImage, ImageDestination, ImageSource, parse_manifest};
use crate::error::TransferError;
use crate::mutex::lock;

/// Chunks in flight between a download and the thread writing it: bounds memory per blob.
const STREAM_CHANNEL_DEPTH: usize = 16;

/// How long a finished image's name may wait to be written into index.json
/// with others, at least: short enough that a kill loses at most this much
/// of what was reported done, long enough that a load of thousands of small
/// images rewrites index.json a few times a second rather than once per
/// image. Once a rewrite itself takes longer (an index of many thousand
/// names), names wait [`FLUSH_COST_FACTOR`] times the last rewrite, so
/// rewriting stays a bounded share of the run and the whole stays linear.
const REF_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
const FLUSH_COST_FACTOR: u32 = 4;
/// Names written at once at most; a full batch is written at once by the
/// commit that filled it, which also holds back further commits meanwhile.
const REF_BATCH_LIMIT: usize = 1024;

/// Runs store (file system) work on the blocking pool, never on the async workers.
async fn blocking<T, F>(store: &Arc<Store>, work: F) -> Result<T, TransferError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, TransferError> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || work(&store)).await.map_err(|join| TransferError::task_failed("store", join))?
}

/// The store's name for an image: the full reference, digest refs included.
fn ref_name(image: &Reference) -> String {
    image.to_string()
}

/// The store's name for an attachment tag (`sha256-<hex>.sig`, or the
/// fallback index's `sha256-<hex>`) of an image named `image`: that tag in
/// the image's repository, as the registry it came from has it.
fn attachment_ref_name(image: &Reference, tag: &str) -> String {
    format!("{}:{tag}", image.name())
}

/// Reads images that an earlier pull put in the store.
#[derive(Debug, Clone)]
pub struct StoreSource {
    store: Arc<Store>,
}

impl StoreSource {
    /// Reads from (or writes to) `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

impl ImageSource for StoreSource {
    async fn resolve(&self, image: &Reference) -> Result<RawManifest, TransferError> {
        let name = ref_name(image);
        let descriptor = blocking(&self.store, {
            let name = name.clone();
            move |store| Ok(store.resolve_ref(&name)?)
        })
        .await?
        .ok_or_else(|| TransferError::NotInStore { name, store: self.store.root().to_owned() })?;
        self.manifest(image, &descriptor).await
    }

    async fn manifest(&self, _image: &Reference, descriptor: &Descriptor) -> Result<RawManifest, TransferError> {
        let wanted = descriptor.clone();
        blocking(&self.store, move |store| {
            if !store.has_blob(&wanted.digest) {
                return Err(TransferError::BlobMissing { digest: wanted.digest, store: store.root().to_owned() });
            }
            let bytes = store.read_blob(&wanted.digest, limits::MANIFEST)?;
            let (manifest, _) = parse_manifest(Bytes::from(bytes), Some(&wanted.media_type), || {
                format!("manifest {} in the store at {}", wanted.digest, store.root().display())
            })?;
            if manifest.digest != wanted.digest {
                return Err(TransferError::DigestMismatch {
                    what: "stored manifest",
                    expected: wanted.digest,
                    actual: manifest.digest,
                });
            }
            Ok(manifest)
        })
        .await
    }

    async fn has_manifest(&self, descriptor: &Descriptor) -> Result<bool, TransferError> {
        let digest = descriptor.digest.clone();
        blocking(&self.store, move |store| Ok(store.has_blob(&digest))).await
    }

    /// The legacy tags recorded as refs, and the referrers the fallback
    /// index of `subject` lists (see [`StoreDestination`]).
    async fn attachments(&self, image: &Reference, subject: &Digest) -> Result<Vec<Attachment>, TransferError> {
        let (image, subject) = (image.clone(), subject.clone());
        blocking(&self.store, move |store| {
            attachments::listed_under_tags(
                &subject,
                |tag| Ok(store.resolve_ref(&attachment_ref_name(&image, tag))?),
                |index| Ok(store.read_blob(&index.digest, limits::MANIFEST)?),
                |tag| format!("{} in the store at {}", attachment_ref_name(&image, tag), store.root().display()),
            )
        })
        .await
    }

    /// The blob's file, once [`Store::check_blob`] found it intact: nothing
    /// leaves the store unverified (push, copy, save's export).
    async fn blob(&self, _image: &Reference, descriptor: &Descriptor) -> Result<BlobContent, TransferError> {
        let (digest, size) = (descriptor.digest.clone(), descriptor.size);
        blocking(&self.store, move |store| match store.check_blob(&digest, Some(size))? {
            BlobCheck::Intact => Ok(BlobContent::File(store.blob_path(&digest))),
            BlobCheck::Missing => Err(TransferError::BlobMissing { digest, store: store.root().to_owned() }),
            BlobCheck::Damaged(damage) => {
                Err(StoreError::DamagedBlob { digest, root: store.root().to_owned(), damage }.into())
            }
        })
        .await
    }
}

/// Puts images into the store: blobs verified and renamed into place, then
/// the image's name recorded in index.json.
///
/// Names are recorded in batches (a group commit): a committed image's name
/// is queued and written with the others that finished within
/// 200 ms (longer once rewrites get slow), in one locked rewrite of index.json, so naming n
/// images costs O(n) however many there are. What is queued is written by
/// [`ImageDestination::flush`] at the end of a run, and when the destination
/// is dropped (Ctrl-C), so an interrupted run keeps the names of the images
/// it finished.
#[derive(Debug, Clone)]
pub struct StoreDestination {
    store: Arc<Store>,
    names: Arc<PendingNames>,
    /// The name every image is recorded under instead of its full reference.
    fixed_name: Option<String>,
}

/// Names committed but not yet written to index.json, and those whose write failed.
#[derive(Debug)]
struct PendingNames {
    store: Arc<Store>,
    state: Mutex<NameQueue>,
    /// Held while a batch is taken and written (see `write_queued`).
    writing: Mutex<()>,
}

#[derive(Debug, Default)]
struct NameQueue {
    /// Job index, name, descriptor, in commit order.
    queued: Vec<(usize, String, Descriptor)>,
    /// Whether a timed flush is on its way for what is queued.
    flush_scheduled: bool,
    /// How long the last rewrite of index.json took.
    last_flush: Duration,
    /// Jobs whose names could not be written, with why.
    failed: Vec<(usize, Arc<TransferError>)>,
}

impl PendingNames {
    fn state(&self) -> MutexGuard<'_, NameQueue> {
        lock(&self.state)
    }

    /// Writes what is queued, in one rewrite of index.json. Blocking.
    ///
    /// One writer at a time: a caller that finds the queue empty because
    /// another took its name must still return only once that name is
    /// written (a save reads its image back by name right after).
    fn write_queued(&self) -> Result<(), Arc<TransferError>> {
        let _writing = lock(&self.writing);
        let batch = {
            let mut state = self.state();
            state.flush_scheduled = false;
            std::mem::take(&mut state.queued)
        };
        if batch.is_empty() {
            return Ok(());
        }
        let refs: Vec<(&str, &Descriptor)> =
            batch.iter().map(|(_, name, descriptor)| (name.as_str(), descriptor)).collect();
        let started = std::time::Instant::now();
        let written = self.store.set_refs(&refs);
        self.state().last_flush = started.elapsed();
        let Err(error) = written else { return Ok(()) };
        let error = Arc::new(TransferError::from(error));
        tracing::error!(%error, images = batch.len(), "could not record the names of finished images");
        self.state().failed.extend(batch.iter().map(|(job, ..)| (*job, Arc::clone(&error))));
        Err(error)
    }
}

impl Drop for PendingNames {
    /// The last handle is gone (a run interrupted, a caller that never
    /// flushed): names of finished images are written now rather than lost.
    /// Blocking, once, at the end of a run.
    fn drop(&mut self) {
        let _ = self.write_queued();
    }
}

impl StoreDestination {
    /// Reads from (or writes to) `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            names: Arc::new(PendingNames {
                store: Arc::clone(&store),
                state: Mutex::default(),
                writing: Mutex::default(),
            }),
            store,
            fixed_name: None,
        }
    }

    /// Records images under `name` verbatim rather than under their full
    /// reference: `oci:DIR:app:1` names its image `app:1`, as skopeo does.
    pub fn with_name(mut self, name: String) -> Self {
        self.fixed_name = Some(name);
        self
    }

    /// What `image` is called in index.json.
    fn name_for(&self, image: &Reference) -> String {
        self.fixed_name.clone().unwrap_or_else(|| ref_name(image))
    }

    /// Writes the top manifest and queues the image's name (see the type's
    /// documentation); a full batch is written at once.
    async fn queue_commit(&self, image: &CopiedImage) -> Result<(), TransferError> {
        let name = self.name_for(&image.destination);
        let (descriptor, bytes) = (image.top.descriptor(), image.top.bytes.clone());
        let queued = descriptor.clone();
        blocking(&self.store, move |store| Ok(store.put_blob_bytes(&descriptor, &bytes)?)).await?;
        let (full, schedule) = {
            let mut state = self.names.state();
            state.queued.push((image.job_index, name, queued));
            let schedule = !state.flush_scheduled;
            state.flush_scheduled = true;
            let delay = REF_FLUSH_INTERVAL.max(state.last_flush * FLUSH_COST_FACTOR);
            (state.queued.len() >= REF_BATCH_LIMIT, schedule.then_some(delay))
        };
        if full {
            return self.write_names().await;
        }
        if let Some(delay) = schedule {
            let names = Arc::clone(&self.names);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tokio::task::spawn_blocking(move || names.write_queued()).await;
            });
        }
        Ok(())
    }

    /// Writes every queued name now.
    async fn write_names(&self) -> Result<(), TransferError> {
        let names = Arc::clone(&self.names);
        tokio::task::spawn_blocking(move || names.write_queued())
            .await
            .map_err(|join| TransferError::task_failed("store", join))?
            .map_err(TransferError::Shared)
    }

    /// Commits the image and writes its name (and any queued) before
    /// returning: for callers that read the image back by name at once.
    pub(crate) async fn commit_now(&self, image: &CopiedImage) -> Result<(), TransferError> {
        self.queue_commit(image).await?;
        self.write_names().await
    }

    /// Writes a blob into the store, verified against `descriptor`.
    async fn store_blob(&self, descriptor: &Descriptor, content: BlobContent) -> Result<(), TransferError> {
        let expected = descriptor.clone();
        match content {
            BlobContent::Bytes(bytes) => {
                blocking(&self.store, move |store| Ok(store.put_blob_bytes(&expected, &bytes)?)).await
            }
            BlobContent::File(path) => {
                blocking(&self.store, move |store| {
                    let mut file = std::fs::File::open(&path)
                        .map_err(|error| TransferError::io(format!("opening {}", path.display()), error))?;
                    let mut writer = store.begin_blob(&expected.digest, Some(expected.size))?;
                    io::copy(&mut file, &mut writer).map_err(|error| {
                        TransferError::io(format!("copying {} into the store", path.display()), error)
                    })?;
                    Ok(writer.commit()?)
                })
                .await
            }
            BlobContent::Stream(stream) => {
                let store = Arc::clone(&self.store);
                drain_on_blocking_thread(stream, move |reader| {
                    let mut writer = store.begin_blob(&expected.digest, Some(expected.size))?;
                    io::copy(reader, &mut writer).map_err(|error| {
                        TransferError::io(format!("writing blob {} into the store", expected.digest), error)
                    })?;
                    Ok(writer.commit()?)
                })
                .await
            }
        }
    }
}

impl ImageDestination for StoreDestination {
    async fn recorded_image(&self, name: &Reference) -> Result<Option<Descriptor>, TransferError> {
        let name = self.name_for(name);
        blocking(&self.store, move |store| Ok(store.resolve_ref(&name)?)).await
    }

    /// A damaged copy is not an answer: the engine then fetches the blob
    /// from the source, and storing it replaces the damaged one (a corrupt
    /// config once made every later pull of its image fail).
    async fn cached(&self, digest: &Digest, limit: u64) -> Result<Option<Bytes>, TransferError> {
        let digest = digest.clone();
        blocking(&self.store, move |store| match store.read_blob(&digest, limit) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(StoreError::BlobNotFound { .. } | StoreError::CorruptBlob { .. } | StoreError::DamagedBlob { .. }) => {
                Ok(None)
            }
            Err(error) => Err(error.into()),
        })
        .await
    }

    /// The reuse check of this destination changes nothing (no mounts).
    async fn holds_blob(&self, target: &Reference, descriptor: &Descriptor) -> Result<bool, TransferError> {
        Ok(self.try_reuse_blob(target, descriptor, target).await?.is_reused())
    }

    /// Present only if intact: a damaged blob (corrupt, cut short, a link or
    /// a FIFO under its name) counts as missing, and the copy fetched again
    /// replaces it.
    async fn try_reuse_blob(
        &self,
        _target: &Reference,
        descriptor: &Descriptor,
        _source: &Reference,
    ) -> Result<BlobReuse, TransferError> {
        let (digest, size) = (descriptor.digest.clone(), descriptor.size);
        let check = blocking(&self.store, move |store| Ok(store.check_blob(&digest, Some(size))?)).await?;
        Ok(if check == BlobCheck::Intact { BlobReuse::Present } else { BlobReuse::Absent })
    }

    async fn put_blob(
        &self,
        _target: &Reference,
        descriptor: &Descriptor,
        content: BlobContent,
    ) -> Result<(), TransferError> {
        self.store_blob(descriptor, content).await?;
        Ok(())
    }

    async fn put_manifest(&self, _target: &Reference, manifest: &RawManifest) -> Result<(), TransferError> {
        let (descriptor, bytes) = (manifest.descriptor(), manifest.bytes.clone());
        blocking(&self.store, move |store| Ok(store.put_blob_bytes(&descriptor, &bytes)?)).await
    }

    fn keeps_attachments(&self) -> bool {
        true
    }

    /// The manifest stored like any; a legacy tag recorded as a ref
    /// (`REPO:sha256-<hex>.sig`), a referrer added to the fallback index
    /// `REPO:sha256-<hex>` under the index lock, as regclient keeps them in
    /// a layout: the subject → referrer relation is read from index.json
    /// alone, gc keeps what those refs reach, and `hpn serve` lists them.
    async fn put_attachment(
        &self,
        target: &Reference,
        attachment: &Attachment,
        manifest: &RawManifest,
    ) -> Result<(), TransferError> {
        let (descriptor, bytes) = (manifest.descriptor(), manifest.bytes.clone());
        let (target, attachment) = (target.clone(), attachment.clone());
        let entry = attachments::referrer_entry(manifest);
        blocking(&self.store, move |store| {
            store.put_blob_bytes(&descriptor, &bytes)?;
            if let Some(tag) = legacy_tag(&attachment.subject, attachment.kind) {
                return Ok(store.set_ref(&attachment_ref_name(&target, &tag), &descriptor)?);
            }
            let name = attachment_ref_name(&target, &fallback_tag(&attachment.subject));
            let mut unreadable = None;
            store.update_ref(&name, limits::MANIFEST, |existing| {
                match attachments::merge_fallback_index(existing.as_deref(), entry) {
                    Ok(merged) => merged.map(|bytes| {
                        (Descriptor::new(media_type::OCI_INDEX, Digest::of(&bytes), bytes.len() as u64), bytes)
                    }),
                    Err(reason) => {
                        unreadable = Some(reason);
                        None
                    }
                }
            })?;
            match unreadable {
                Some(reason) => Err(TransferError::Referrers {
                    context: format!("{name} in the store at {}", store.root().display()),
                    reason,
                }),
                None => Ok(()),
            }
        })
        .await
    }

    async fn commit(&self, image: &CopiedImage) -> Result<(), TransferError> {
        self.queue_commit(image).await
    }

    async fn flush(&self) -> Vec<(usize, TransferError)> {
        // A failure is recorded per job by write_queued itself.
        let _ = self.write_names().await;
        let failed = std::mem::take(&mut self.names.state().failed);
        failed.into_iter().map(|(job, error)| (job, TransferError::Shared(error))).collect()
    }
}

/// Feeds an async stream to blocking code as a `Read`, through a bounded
/// channel: the download and the hashing + writing overlap, and memory stays
/// at a few chunks whatever the blob's size. A stream error wins over the
/// I/O error the reader then sees, so the user is told the real cause.
pub(crate) async fn drain_on_blocking_thread<T, F>(mut stream: BlobStream, consume: F) -> Result<T, TransferError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Read) -> Result<T, TransferError> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel::<Option<Bytes>>(STREAM_CHANNEL_DEPTH);
    let consumer = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader { receiver, current: Bytes::new(), failed: false };
        consume(&mut reader)
    });
    let mut stream_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                if sender.send(Some(chunk)).await.is_err() {
                    break; // the consumer stopped early; its result says why
                }
            }
            Err(error) => {
                let _ = sender.send(None).await;
                stream_error = Some(TransferError::from_stream(error));
                break;
            }
        }
    }
    drop(sender);
    let consumed = consumer.await.map_err(|join| TransferError::task_failed("blob writer", join))?;
    match stream_error {
        Some(error) => Err(error),
        None => consumed,
    }
}

/// `None` in the channel means the stream failed: reading then errors, so a
/// partial blob is never committed as if it had ended.
struct ChannelReader {
    receiver: mpsc::Receiver<Option<Bytes>>,
    current: Bytes,
    failed: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.failed {
                return Err(io::Error::other("the source stream failed"));
            }
            match self.receiver.blocking_recv() {
                Some(Some(chunk)) => self.current = chunk,
                Some(None) => self.failed = true,
                None => return Ok(0),
            }
        }
        let count = buffer.len().min(self.current.len());
        buffer[..count].copy_from_slice(&self.current.split_to(count));
        Ok(count)
    }
}

/// The attachment refs of the store (cosign tags, fallback indexes) that
/// removing the refs `removing` leaves without a subject: attached to a
/// manifest only those images reached (their top manifest or index and its
/// platform manifests), or to such an attachment, and to nothing a kept
/// image reaches. `hpn store rm` removes them with the images, so that
/// `hpn store gc` can then reclaim their blobs. Attachments of images the
/// removed ones never reached are left alone, also those of an image a
/// concurrent pull has recorded the attachments of but not yet named.
pub fn orphaned_attachment_refs(store: &Store, removing: &[&str]) -> Result<Vec<String>, TransferError> {
    let refs = store.refs()?;
    let is_attachment = |name: &str| name.rsplit_once(':').and_then(|(_, tag)| attachments::parse_tag(tag)).is_some();
    let (attachment_refs, images): (Vec<_>, Vec<_>) = refs.into_iter().partition(|(name, _)| is_attachment(name));
    let (removed, kept): (Vec<_>, Vec<_>) = images.into_iter().partition(|(name, _)| removing.contains(&name.as_str()));
    let reach = |roots: &[(String, Descriptor)]| -> Result<HashSet<Digest>, TransferError> {
        let mut reached = HashSet::new();
        for (_, descriptor) in roots {
            reached.insert(descriptor.digest.clone());
            if media_type::is_index(&descriptor.media_type) && store.has_blob(&descriptor.digest) {
                let bytes = store.read_blob(&descriptor.digest, limits::MANIFEST)?;
                if let Ok((ParsedManifest::Index(index), _)) =
                    ParsedManifest::parse(&bytes, Some(&descriptor.media_type))
                {
                    reached.extend(index.manifests.into_iter().map(|entry| entry.digest));
                }
            }
        }
        Ok(reached)
    };
    let (mut kept_reach, mut removed_reach) = (reach(&kept)?, reach(&removed)?);
    // Attachments (and theirs) of what is kept are kept; those of what goes, go.
    let mut undecided: Vec<(String, Descriptor)> =
        attachment_refs.into_iter().filter(|(name, _)| !removing.contains(&name.as_str())).collect();
    let mut orphans = Vec::new();
    loop {
        let before = undecided.len();
        let mut still = Vec::new();
        for (name, descriptor) in undecided {
            let (_, tag) = name.rsplit_once(':').expect("an attachment ref has a tag");
            let (subject, _) = attachments::parse_tag(tag).expect("an attachment ref's tag parses");
            let target = if kept_reach.contains(&subject) {
                &mut kept_reach
            } else if removed_reach.contains(&subject) {
                orphans.push(name.clone());
                &mut removed_reach
            } else {
                still.push((name, descriptor));
                continue;
            };
            target.insert(descriptor.digest.clone());
            if media_type::is_index(&descriptor.media_type) {
                let bytes = store.read_blob(&descriptor.digest, limits::MANIFEST)?;
                let listed = attachments::parse_referrers(&bytes, &subject).unwrap_or_default();
                target.extend(listed.into_iter().map(|referrer| referrer.descriptor.digest));
            }
        }
        undecided = still;
        if undecided.len() == before {
            break;
        }
    }
    Ok(orphans)
}
