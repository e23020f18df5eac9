//! `hpn save`: images pulled into the store and exported into archives, the
//! two overlapped, in an order that does not depend on timing.
//!
//! One engine copies source → [`SaveDestination`], a destination that is the
//! store with an archive behind it. Committing an image to the store then
//! exports it (its manifests and docker's files) from the store, where every
//! blob was verified on arrival.
//!
//! **The one archive's order** (`-o FILE`) is fixed by the request, so the
//! same list saved twice gives the same bytes whatever the concurrency, the
//! speed of each download, or what the store held already
//! ([`crate::archive_order`]): job after job, and within an image, per
//! platform in index order its config and its layers in manifest order, then
//! its platform manifests and its top manifest or index (written by the
//! export, after the attachments it carries). Each blob is written once, at its
//! first place. Downloads still overlap writing: a blob is appended as soon
//! as every place before it is written or released, and until then it waits
//! on disk in the store, never in memory. A download that starts when its
//! blob is the archive's next entry, or will be as soon as the writer has
//! appended blobs the store holds already (an image's config, typically),
//! claims that place ([`ArchiveOrder::claim_stream`]) and goes into the store
//! and the archive in one pass, so a big layer is not written a second time
//! from the store. The engine announces each image's
//! plan once its manifests are read ([`ImageDestination::image_planned`]); an
//! image not planned yet holds back what comes after it, and one that fails
//! ([`ImageDestination::image_failed`]) releases its place, so nothing waits
//! for it. Exports run in that order too, deferred past the commit (whose
//! failures [`ImageDestination::flush`] reports), so a slow image never holds
//! an image slot of the engine while it waits for its turn. Layers a
//! differential base holds are not placed: the export records them.
//!
//! An image failing before its plan (not found, no access) leaves no trace in
//! the archive. One failing halfway keeps what was appended of it already (a
//! tar is append-only): those blobs are in the archive and its bill, no
//! index names them.
//!
//! **Per-image archives** (`--save-mode`) are written whole when their image
//! is committed, in the same order within the image.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hpn_archive::{ArchiveCompression, ArchiveWriter, BillSigner, CreationTime};
use hpn_fs::Durability;
use hpn_oci::{Descriptor, Digest, RawManifest, Reference};
use hpn_store::Store;

use crate::archive_endpoint::{ArchiveDestination, LeftToBase};
use crate::archive_order::{ArchiveOrder, Step, image_blob_order};
use crate::attachments::Attachment;
use crate::base::Base;
use crate::endpoint::{BlobContent, BlobReuse, CopiedImage, ImageDestination, ImageSource};
use crate::endpoints::WrittenArchive;
use crate::engine::{CopyJob, Engine, EngineOptions, PullPolicy};
use crate::error::TransferError;
use crate::mutex::lock;
use crate::report::{CopyOutcome, NoReport, Reporter};
use crate::store_endpoint::{StoreDestination, StoreSource, drain_on_blocking_thread};

/// Where [`save`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutput {
    /// Every image into one archive, each shared blob once.
    OneArchive(PathBuf),
    /// One archive per image: the path of each job's archive, by job index.
    PerImage(Vec<PathBuf>),
}

/// How [`save`] writes archives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ArchiveOptions {
    /// Compression of each archive as a whole.
    pub compression: ArchiveCompression,
    /// Whether archives are fsynced before they count as written.
    pub durability: Durability,
    /// Set to cut the one archive into volumes of at most this many bytes.
    pub volume_size: Option<u64>,
    /// What the far side holds (`--since`): a differential bundle leaves
    /// those layers out, and images the far side has under the same name.
    pub base: Option<Arc<Base>>,
    /// Signs each archive's (each volume's) bill of contents.
    pub signer: Option<BillSigner>,
    /// The creation time recorded in each bill and as every entry's mtime
    /// (`--created`); without it, mtime 0 and none recorded.
    pub created: Option<CreationTime>,
}

impl ArchiveOptions {
    /// Archives compressed with `compression`, written with `durability`.
    pub fn new(compression: ArchiveCompression, durability: Durability) -> Self {
        Self { compression, durability, volume_size: None, base: None, signer: None, created: None }
    }

    /// These options, signing every bill of contents with `signer`.
    pub fn with_bill_signer(self, signer: Option<BillSigner>) -> Self {
        Self { signer, ..self }
    }

    /// These options, recording `created` as each archive's creation time
    /// ([`hpn_archive::ArchiveWriter::with_creation_time`]).
    pub fn with_creation_time(self, created: Option<CreationTime>) -> Self {
        Self { created, ..self }
    }

    /// These options, cutting the one archive into volumes of at most
    /// `volume_size` bytes ([`hpn_archive::ArchiveWriter::create_volumes`]).
    pub fn with_volume_size(self, volume_size: Option<u64>) -> Self {
        Self { volume_size, ..self }
    }

    /// Differential archives over `base`.
    pub fn with_base(self, base: Arc<Base>) -> Self {
        Self { base: Some(base), ..self }
    }
}

/// What a differential save left to its base.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Differential {
    /// Layers, their bytes, and the images needing them, over every archive written.
    pub left_to_base: LeftToBase,
    /// Images the far side has already under the same name: not shipped.
    pub unchanged: Vec<Reference>,
}

/// What [`save`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct SaveReport {
    /// Each job's result, in job order.
    pub results: Vec<Result<CopyOutcome, TransferError>>,
    /// The archives written, complete under their final names.
    pub archives: Vec<WrittenArchive>,
    /// For a save with a base: what the archives leave to it.
    pub differential: Option<Differential>,
}

/// Copies every job from `source` into `store` and exports it into the
/// archive(s) of `output`. One image failing does not stop the others.
///
/// The `Err` is a failure of the run as a whole: the one archive could not
/// be created (before any download) or finished.
pub async fn save<S: ImageSource>(
    source: S,
    store: Arc<Store>,
    jobs: &[CopyJob],
    output: SaveOutput,
    archive_options: ArchiveOptions,
    options: EngineOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<SaveReport, TransferError> {
    let store_source = Arc::new(StoreSource::new(Arc::clone(&store)));
    // The pull policy is about the registry; exports read the store, which is always asked.
    // One blob at a time: what an export still writes (manifests, attachments) goes in the
    // order the engine lists it, not the order concurrent copies finish in.
    let export_options = EngineOptions { max_concurrent_blobs: 1, ..options.clone().with_pull(PullPolicy::Always) };
    let order =
        matches!(output, SaveOutput::OneArchive(_)).then(|| ArchiveOrder::new(jobs.iter().map(|job| job.index)));
    let (export, single) = match output {
        SaveOutput::OneArchive(path) => {
            let archive = Arc::new(create_archive(&path, &archive_options, &store).await?);
            let exporter =
                Engine::new(Arc::clone(&store_source), Arc::clone(&archive), export_options, Arc::new(NoReport));
            (Export::One { archive, exporter: Box::new(exporter) }, Some(path))
        }
        SaveOutput::PerImage(paths) => (Export::PerImage { paths, options: export_options }, None),
    };
    let destination = Arc::new(SaveDestination {
        store: StoreDestination::new(Arc::clone(&store)),
        blobs: store,
        store_source,
        export,
        order,
        archive_options,
        written: Mutex::new(Vec::new()),
        unchanged: Mutex::new(Vec::new()),
        left_to_base: Mutex::new(LeftToBase::default()),
    });
    let engine = Engine::new(Arc::new(source), Arc::clone(&destination), options, reporter);
    let (results, ()) = tokio::join!(engine.copy_all(jobs), destination.write_in_order());

    let mut written = std::mem::take(&mut *lock(&destination.written));
    written.sort_by_key(|(index, _)| *index);
    let mut archives: Vec<WrittenArchive> = written.into_iter().map(|(_, archive)| archive).collect();
    if let (Export::One { archive, .. }, Some(path)) = (&destination.export, single) {
        destination.tally_left_to_base(archive);
        if results.iter().any(Result::is_ok) {
            archives.extend(archive.finish_all().await?);
        } else {
            // Dropped unfinished, the archive's temp file goes with it.
            tracing::info!(path = %path.display(), "no image could be saved; no archive written");
        }
    }
    let differential = destination.archive_options.base.is_some().then(|| {
        let mut unchanged = std::mem::take(&mut *lock(&destination.unchanged));
        unchanged.sort_by_key(|(index, _)| *index);
        Differential {
            left_to_base: std::mem::take(&mut *lock(&destination.left_to_base)),
            unchanged: unchanged.into_iter().map(|(_, name)| name).collect(),
        }
    });
    Ok(SaveReport { results, archives, differential })
}

/// Starts an archive on the blocking pool: opening a FIFO waits for its reader.
/// The uncompressed copies of its zstd layers come from `store`, which keeps them.
async fn create_archive(
    path: &Path,
    options: &ArchiveOptions,
    store: &Arc<Store>,
) -> Result<ArchiveDestination, TransferError> {
    let (path, options, store) = (path.to_owned(), options.clone(), Arc::clone(store));
    tokio::task::spawn_blocking(move || {
        let writer = match options.volume_size {
            Some(volume_size) => ArchiveWriter::create_volumes(&path, options.compression, volume_size),
            None => ArchiveWriter::create(&path, options.compression),
        }?;
        let writer = writer
            .with_durability(options.durability)
            .with_bill_signer(options.signer)
            .with_creation_time(options.created);
        Ok(ArchiveDestination::from_writer(&path, writer, options.base, Some(store)))
    })
    .await
    .map_err(|join| TransferError::task_failed("archive", join))?
}

/// How committed images leave the store.
#[derive(Debug)]
enum Export {
    /// Into one archive, by one exporter whose single-flight spans the run.
    One { archive: Arc<ArchiveDestination>, exporter: Box<Engine<StoreSource, ArchiveDestination>> },
    /// Each into an archive of its own, created when the image is committed.
    PerImage { paths: Vec<PathBuf>, options: EngineOptions },
}

/// The store, with the archive(s) of a save behind it.
#[derive(Debug)]
struct SaveDestination {
    store: StoreDestination,
    /// The same store, for blob paths.
    blobs: Arc<Store>,
    store_source: Arc<StoreSource>,
    export: Export,
    /// The one archive's order; `None` for per-image archives.
    order: Option<ArchiveOrder>,
    archive_options: ArchiveOptions,
    /// Per-image archives written so far, with their job index.
    written: Mutex<Vec<(usize, WrittenArchive)>>,
    /// Images the base has under the same name, with their job index.
    unchanged: Mutex<Vec<(usize, Reference)>>,
    /// Summed over the archives written.
    left_to_base: Mutex<LeftToBase>,
}

impl SaveDestination {
    fn tally_left_to_base(&self, archive: &ArchiveDestination) {
        let left = archive.left_to_base();
        let mut total = lock(&self.left_to_base);
        total.blobs += left.blobs;
        total.bytes += left.bytes;
        total.images.extend(left.images);
    }

    /// Tells the one archive's order that the store holds `digest`.
    fn stored(&self, digest: &Digest) {
        if let Some(order) = &self.order {
            order.stored(digest);
        }
    }

    /// Writes the one archive in its order (see the module doc) until every
    /// job is written, failed or given up; returns at once for per-image
    /// archives. Runs beside the engine: each blob the store gets may let
    /// the cursor on, and each commit lets its export run.
    async fn write_in_order(&self) {
        let (Some(order), Export::One { archive, .. }) = (&self.order, &self.export) else { return };
        let mut changes = order.subscribe();
        loop {
            changes.borrow_and_update();
            match order.next_step() {
                Step::Write { job, blob } => {
                    // A failure here (a full disk) fails the image with its cause.
                    if let Err(error) = archive.add_local_blob(&blob, self.blobs.blob_path(&blob.digest)).await {
                        order.write_failed(job, error);
                    }
                }
                Step::Export(image) => {
                    if let Err(error) = self.export(&image).await {
                        order.write_failed(image.job_index, error);
                    }
                }
                Step::Wait => {
                    if changes.changed().await.is_err() {
                        return;
                    }
                }
                Step::Done => return,
            }
        }
    }

    async fn export(&self, image: &CopiedImage) -> Result<(), TransferError> {
        // The far side has this very image under this name: nothing of it to ship.
        if let Some(base) = &self.archive_options.base
            && base.has_image(&image.destination, &image.top.digest)
        {
            lock(&self.unchanged).push((image.job_index, image.destination.clone()));
            return Ok(());
        }
        let job = CopyJob {
            index: image.job_index,
            source: image.destination.clone(),
            destination: image.destination.clone(),
        };
        match &self.export {
            Export::One { exporter, .. } => exporter.copy(&job).await.map(drop),
            Export::PerImage { paths, options } => {
                let path = paths.get(image.job_index).ok_or_else(|| {
                    TransferError::Unsupported(format!("no archive path was given for image {}", image.destination))
                })?;
                if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .map_err(|error| TransferError::io(format!("creating directory {}", dir.display()), error))?;
                }
                let per_image = self.archive_options.clone().with_volume_size(None);
                let archive = Arc::new(create_archive(path, &per_image, &self.blobs).await?);
                // Config and layers in the one archive's order; the export adds the manifests.
                for blob in image_blob_order(image) {
                    archive.add_local_blob(&blob, self.blobs.blob_path(&blob.digest)).await?;
                }
                Engine::new(Arc::clone(&self.store_source), Arc::clone(&archive), options.clone(), Arc::new(NoReport))
                    .copy(&job)
                    .await?;
                self.tally_left_to_base(&archive);
                let size = archive.finish().await?;
                lock(&self.written).push((image.job_index, WrittenArchive { path: path.clone(), size }));
                Ok(())
            }
        }
    }
}

impl ImageDestination for SaveDestination {
    async fn recorded_image(&self, name: &Reference) -> Result<Option<Descriptor>, TransferError> {
        self.store.recorded_image(name).await
    }

    async fn cached(&self, digest: &Digest, limit: u64) -> Result<Option<Bytes>, TransferError> {
        self.store.cached(digest, limit).await
    }

    async fn holds_blob(&self, target: &Reference, descriptor: &Descriptor) -> Result<bool, TransferError> {
        self.store.holds_blob(target, descriptor).await
    }

    async fn try_reuse_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        source: &Reference,
    ) -> Result<BlobReuse, TransferError> {
        let reuse = self.store.try_reuse_blob(target, descriptor, source).await?;
        if reuse.is_reused() {
            self.stored(&descriptor.digest);
        }
        Ok(reuse)
    }

    async fn put_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        content: BlobContent,
    ) -> Result<(), TransferError> {
        // A download that is the one archive's next entry goes into the store and the
        // archive in one pass: no second write of it from the store afterwards.
        let content = match (content, &self.export, &self.order) {
            (BlobContent::Stream(stream), Export::One { archive, .. }, Some(order)) => {
                match order.claim_stream(&descriptor.digest).await {
                    Some(claim) => {
                        let (archive, store, blob) = (Arc::clone(archive), Arc::clone(&self.blobs), descriptor.clone());
                        let added = drain_on_blocking_thread(stream, move |reader| {
                            archive.store_while_adding(&store, &blob, reader)
                        })
                        .await?;
                        if added {
                            claim.written();
                        }
                        // Not taken (a zstd layer, a compressed archive): the store has it, the
                        // cursor copies it from there.
                        self.stored(&descriptor.digest);
                        return Ok(());
                    }
                    None => BlobContent::Stream(stream),
                }
            }
            (content, ..) => content,
        };
        self.store.put_blob(target, descriptor, content).await?;
        self.stored(&descriptor.digest);
        Ok(())
    }

    async fn put_manifest(&self, target: &Reference, manifest: &RawManifest) -> Result<(), TransferError> {
        self.store.put_manifest(target, manifest).await
    }

    /// Into the store; the export carries them from there into the archive.
    fn keeps_attachments(&self) -> bool {
        true
    }

    /// As the archive behind it (see [`ArchiveDestination`]).
    fn keeps_attachments_of_partial_indexes(&self) -> bool {
        false
    }

    async fn put_attachment(
        &self,
        target: &Reference,
        attachment: &Attachment,
        manifest: &RawManifest,
    ) -> Result<(), TransferError> {
        self.store.put_attachment(target, attachment, manifest).await
    }

    fn image_planned(&self, image: &CopiedImage) {
        let Some(order) = &self.order else { return };
        // What the base holds waits for the export, which knows whether its image ships at all.
        let base = self.archive_options.base.as_deref();
        let blobs = image_blob_order(image)
            .into_iter()
            .filter(|blob| base.is_none_or(|base| base.blob(&blob.digest).is_none()))
            .collect();
        order.planned(image.job_index, blobs);
    }

    fn image_failed(&self, job_index: usize) {
        if let Some(order) = &self.order {
            order.failed(job_index);
        }
    }

    async fn commit(&self, image: &CopiedImage) -> Result<(), TransferError> {
        // Named at once, not batched: the export reads the image back by its name.
        self.store.commit_now(image).await?;
        match &self.order {
            // Exported in the archive's order by write_in_order; a failure comes back from flush.
            Some(order) => {
                order.committed(image);
                Ok(())
            }
            None => self.export(image).await,
        }
    }

    async fn flush(&self) -> Vec<(usize, TransferError)> {
        let Some(order) = &self.order else { return Vec::new() };
        let mut changes = order.subscribe();
        order.close();
        while !order.is_finished() {
            if changes.changed().await.is_err() {
                break;
            }
        }
        order.take_errors()
    }
}
