use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::try_join_all;
use futures_util::{StreamExt, TryStreamExt, stream};
use hpn_oci::{Descriptor, Digest, ImageConfig, ParsedManifest, Platform, RawManifest, Reference, limits};
use tokio::sync::Semaphore;

use crate::attachments::{
    self, Attachment, AttachmentKind, AttachmentPolicy, CopiedAttachment, LeftAttachment, LeftReason,
};
use crate::endpoint::{BlobContent, CopiedImage, ImageDestination, ImageSource, PlatformImage, parse_manifest};
use crate::error::TransferError;
use crate::mutex::lock;
use crate::report::{BlobOrigin, CopyOutcome, Reporter};
use crate::single_flight::SingleFlight;

/// Which platforms of a multi-platform image to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformChoice {
    /// The one platform that matches (`--platform`, or the host's).
    One(Platform),
    /// Every platform the index lists (`--all-platforms`).
    All,
    /// Every platform the source holds (a store or archive keeps only what
    /// was pulled or saved); used when pushing what is already local.
    Available,
}

/// When the engine asks the source about an image the destination already
/// holds under its name (podman's `--pull`). A digest reference names
/// content, which cannot change: a complete copy at the destination is used
/// under every policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Ask the source what a tag names now (a HEAD when the destination has
    /// the tag), and fetch what changed.
    #[default]
    Always,
    /// Take the destination's copy of a tag it holds, without asking the
    /// source; fetch only images it lacks.
    Missing,
    /// Never ask the source: an image the destination does not hold
    /// completely is an error ([`TransferError::NotLocal`]).
    Never,
}

/// How the engine copies: which platforms, how much at once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Which platforms of a multi-platform image to copy.
    pub platforms: PlatformChoice,
    /// Blobs moving at once across all images of the run.
    pub max_concurrent_blobs: usize,
    /// Images in progress at once in [`Engine::copy_all`].
    pub max_concurrent_images: usize,
    /// When the source is asked about an image the destination holds.
    pub pull: PullPolicy,
    /// Only plan: report what would move, write nothing ([`Engine::copy`]).
    pub dry_run: bool,
    /// Which signatures, SBOMs and attestations travel with their images.
    pub attachments: AttachmentPolicy,
}

/// How much runs at once. Every concurrency default of hpn is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Concurrency {
    /// Images in progress at once (`-j`).
    pub images: usize,
    /// Blobs moving at once across all images of the run.
    pub blobs: usize,
    /// Requests in flight to one registry host, blob bodies included: more
    /// than a handful buys nothing on one connection pool (BENCHMARKS.md).
    pub requests_per_host: usize,
}

impl Concurrency {
    /// Blobs in flight when few images run: enough to fill a link.
    const MIN_BLOBS: usize = 8;

    /// `images` at once, with enough blob slots for each to move one.
    pub fn with_images(images: usize) -> Self {
        Self { images: images.max(1), blobs: Self::MIN_BLOBS.max(images), ..Self::default() }
    }
}

impl Default for Concurrency {
    fn default() -> Self {
        Self { images: 4, blobs: Self::MIN_BLOBS, requests_per_host: hpn_registry::DEFAULT_REQUESTS_PER_HOST }
    }
}

impl EngineOptions {
    /// Options for `platforms` with the limits of `concurrency`.
    pub fn new(platforms: PlatformChoice, concurrency: &Concurrency) -> Self {
        Self {
            platforms,
            max_concurrent_blobs: concurrency.blobs,
            max_concurrent_images: concurrency.images,
            pull: PullPolicy::default(),
            dry_run: false,
            attachments: AttachmentPolicy::default(),
        }
    }

    /// These options carrying the attachments `attachments` allows.
    pub fn with_attachments(self, attachments: AttachmentPolicy) -> Self {
        Self { attachments, ..self }
    }

    /// These options as a dry run, or not.
    pub fn with_dry_run(self, dry_run: bool) -> Self {
        Self { dry_run, ..self }
    }

    /// These options with pull policy `pull`.
    pub fn with_pull(self, pull: PullPolicy) -> Self {
        Self { pull, ..self }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self::new(PlatformChoice::One(Platform::host()), &Concurrency::default())
    }
}

/// How [`Engine::platform_images`] came by an image's top manifest.
#[derive(Debug, Clone)]
pub(crate) struct TopOrigin {
    /// Whether the source was asked about the image (a HEAD or a GET), not
    /// only the destination's copy: only then are attachments looked for.
    asked_source: bool,
    /// The index the image had at the source when the destination got one
    /// platform's manifest instead (it needs complete indexes), or got the
    /// index without all its platforms and does not keep the attachments of
    /// such an index ([`ImageDestination::keeps_attachments_of_partial_indexes`]).
    index_left_out: Option<Digest>,
}

/// Whether [`Engine::platform_images`] hands configs to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Configs {
    /// A copy: each config goes to the destination as it is read.
    Copy,
    /// A plan: configs are only read.
    ReadOnly,
}

/// A dry run's plan of one image, and the image as a copy would commit it.
pub(crate) type PlannedImage = (CopyOutcome, CopiedImage);

/// One image to copy: what to read and the name to record it under.
#[derive(Debug, Clone)]
pub struct CopyJob {
    /// Position in the request: results and archive indexes keep this order.
    pub index: usize,
    /// The image to read from the source.
    pub source: Reference,
    /// The name it gets at the destination.
    pub destination: Reference,
}

impl CopyJob {
    /// Jobs that keep each image's name, numbered in order.
    pub fn same_names(images: impl IntoIterator<Item = Reference>) -> Vec<CopyJob> {
        images
            .into_iter()
            .enumerate()
            .map(|(index, image)| CopyJob { index, source: image.clone(), destination: image })
            .collect()
    }
}

/// The transfer engine: drives any source into any destination.
pub struct Engine<S, D> {
    source: Arc<S>,
    destination: Arc<D>,
    options: EngineOptions,
    reporter: Arc<dyn Reporter>,
    blob_slots: Semaphore,
    /// Per destination repository (`Reference::name`) and blob: the reuse
    /// check and, if needed, the transfer, once however many images want it.
    layers: SingleFlight<(String, Digest), BlobOrigin>,
    configs: SingleFlight<(String, Digest), Bytes>,
    /// Byte transfers by digest alone, across repositories: a layer that
    /// several repositories of one registry want at once is sent to the first
    /// and reused (mounted) by the others, rather than uploaded once each.
    transfers: SingleFlight<Digest, ()>,
    /// Which image each transfer in flight is for, so an image that waits on
    /// it can say so.
    transferring_for: Mutex<HashMap<Digest, Reference>>,
}

/// Marks a blob's transfer as being for an image until dropped (the
/// transfer ended, or its future was dropped).
struct TransferMark<'a> {
    marks: &'a Mutex<HashMap<Digest, Reference>>,
    digest: Digest,
}

impl<'a> TransferMark<'a> {
    fn new(marks: &'a Mutex<HashMap<Digest, Reference>>, digest: &Digest, image: &Reference) -> Self {
        lock(marks).insert(digest.clone(), image.clone());
        Self { marks, digest: digest.clone() }
    }
}

impl Drop for TransferMark<'_> {
    fn drop(&mut self) {
        lock(self.marks).remove(&self.digest);
    }
}

impl<S, D> std::fmt::Debug for Engine<S, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("options", &self.options).finish_non_exhaustive()
    }
}

impl<S: ImageSource, D: ImageDestination> Engine<S, D> {
    /// An engine copying from `source` to `destination`, telling `reporter`
    /// of progress.
    pub fn new(source: Arc<S>, destination: Arc<D>, options: EngineOptions, reporter: Arc<dyn Reporter>) -> Self {
        Self {
            source,
            destination,
            blob_slots: Semaphore::new(options.max_concurrent_blobs.max(1)),
            options,
            reporter,
            layers: SingleFlight::new(),
            configs: SingleFlight::new(),
            transfers: SingleFlight::new(),
            transferring_for: Mutex::new(HashMap::new()),
        }
    }

    /// Copies every job, several at once; one failure does not stop the
    /// others. Results come back in job order, once the destination has
    /// completed every commit it deferred ([`ImageDestination::flush`]).
    pub async fn copy_all(&self, jobs: &[CopyJob]) -> Vec<Result<CopyOutcome, TransferError>> {
        self.reporter.images_queued(jobs.len());
        let mut results: Vec<(usize, Result<CopyOutcome, TransferError>)> = stream::iter(jobs)
            .map(|job| async move { (job.index, self.copy(job).await) })
            .buffer_unordered(self.options.max_concurrent_images.max(1))
            .collect()
            .await;
        results.sort_by_key(|(index, _)| *index);
        for (job, error) in self.destination.flush().await {
            if let Ok(position) = results.binary_search_by_key(&job, |(index, _)| *index) {
                results[position].1 = Err(error);
            }
        }
        results.into_iter().map(|(_, result)| result).collect()
    }

    /// Copies one image (or plans it, in a dry run), reporting its start and end.
    pub async fn copy(&self, job: &CopyJob) -> Result<CopyOutcome, TransferError> {
        self.reporter.image_started(&job.source);
        let result = if self.options.dry_run {
            self.plan(job).await
        } else {
            let result = self.copy_unreported(job).await;
            if result.is_err() {
                self.destination.image_failed(job.index);
            }
            result
        };
        self.reporter.image_finished(&job.source, result.as_ref());
        result
    }

    /// What copying `job` would do, with nothing written anywhere (a dry
    /// run, [`EngineOptions::dry_run`]): the image's digest and platforms,
    /// and its layers split into those the destination holds and those that
    /// would move. Manifests and configs are read from the source (or the
    /// destination's copies); no layer is, and nothing is mounted, uploaded
    /// or stored.
    async fn plan(&self, job: &CopyJob) -> Result<CopyOutcome, TransferError> {
        self.plan_image(job).await.map(|(outcome, _)| outcome)
    }

    /// Plans every job as a dry run does ([`Engine::copy_all`] with
    /// [`EngineOptions::dry_run`]), reporting each, and returns with each plan
    /// the image as a copy would hand it to the destination's commit: what
    /// `hpn save --dry-run --split` cuts into volumes.
    pub(crate) async fn plan_images(&self, jobs: &[CopyJob]) -> Vec<Result<(CopyOutcome, CopiedImage), TransferError>> {
        self.reporter.images_queued(jobs.len());
        let mut results: Vec<(usize, Result<PlannedImage, TransferError>)> = stream::iter(jobs)
            .map(|job| async move {
                self.reporter.image_started(&job.source);
                let result = self.plan_image(job).await;
                self.reporter.image_finished(&job.source, result.as_ref().map(|(outcome, _)| outcome));
                (job.index, result)
            })
            .buffer_unordered(self.options.max_concurrent_images.max(1))
            .collect()
            .await;
        results.sort_by_key(|(index, _)| *index);
        results.into_iter().map(|(_, result)| result).collect()
    }

    async fn plan_image(&self, job: &CopyJob) -> Result<PlannedImage, TransferError> {
        let (top, platforms, primary, _) = self.platform_images(job, Configs::ReadOnly).await?;
        let layers = distinct_layers(&platforms);
        let mut outcome = CopyOutcome {
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
            platforms: platforms.iter().map(|platform| platform.platform.clone()).collect(),
            blobs_transferred: 0,
            bytes_transferred: 0,
            blobs_present: 0,
            bytes_present: 0,
            attachments: Vec::new(),
            attachments_left: Vec::new(),
        };
        // Owned descriptors, for the reason given in `copy_unreported`.
        let present: Vec<bool> = stream::iter(layers.clone())
            .map(|layer| async move { self.destination.holds_blob(&job.destination, &layer).await })
            .buffered(self.options.max_concurrent_blobs.max(1))
            .try_collect()
            .await?;
        for (layer, present) in layers.iter().zip(present) {
            if present {
                outcome.blobs_present += 1;
                outcome.bytes_present += layer.size;
            } else {
                outcome.blobs_transferred += 1;
                outcome.bytes_transferred += layer.size;
            }
        }
        let image = CopiedImage { job_index: job.index, destination: job.destination.clone(), top, platforms, primary };
        Ok((outcome, image))
    }

    async fn copy_unreported(&self, job: &CopyJob) -> Result<CopyOutcome, TransferError> {
        let (image, target) = (&job.source, &job.destination);
        let (top, platforms, primary, origin) = self.platform_images(job, Configs::Copy).await?;
        let copied =
            CopiedImage { job_index: job.index, destination: job.destination.clone(), top, platforms, primary };
        self.destination.image_planned(&copied);

        // Owned descriptors: a stream closure over `&Descriptor` would make this
        // future's Send-ness depend on a higher-ranked lifetime that rustc
        // cannot prove, and callers (a save's export) need it Send.
        let layers = distinct_layers(&copied.platforms);
        let planned_bytes: u64 = layers.iter().map(|layer| layer.size).sum();
        let layer_count = layers.len();
        self.reporter.image_planned(image, layers.len(), planned_bytes);

        let transferred = (AtomicUsize::new(0), AtomicU64::new(0));
        let counters = &transferred;
        stream::iter(layers)
            .map(|layer| async move {
                let layer = &layer;
                let origin = self.layer(image, target, layer).await?;
                if origin == BlobOrigin::Transferred {
                    counters.0.fetch_add(1, Ordering::Relaxed);
                    counters.1.fetch_add(layer.size, Ordering::Relaxed);
                }
                self.reporter.blob_done(image, layer, origin);
                Ok::<_, TransferError>(())
            })
            .buffer_unordered(self.options.max_concurrent_blobs.max(1))
            .try_collect::<()>()
            .await?;

        for platform in &copied.platforms {
            if platform.manifest.digest != copied.top.digest {
                self.destination.put_manifest(target, &platform.manifest).await?;
            }
        }

        // Before the name: a named image has its signatures with it.
        let mut subjects = vec![copied.top.digest.clone()];
        subjects.extend(copied.platforms.iter().map(|platform| platform.manifest.digest.clone()));
        subjects.dedup();
        let (attachments, attachments_left) = self.copy_attachments(image, target, subjects, &origin).await?;

        self.destination.commit(&copied).await?;

        let (blobs_transferred, bytes_transferred) = (transferred.0.into_inner(), transferred.1.into_inner());
        Ok(CopyOutcome {
            digest: copied.top.digest,
            media_type: copied.top.media_type,
            platforms: copied.platforms.into_iter().map(|platform| platform.platform).collect(),
            blobs_transferred,
            bytes_transferred,
            blobs_present: layer_count - blobs_transferred,
            bytes_present: planned_bytes - bytes_transferred,
            attachments,
            attachments_left,
        })
    }

    /// Carries the attachments of `subjects` (the manifests just copied),
    /// and theirs in turn, up to [`attachments::MAX_DEPTH`] levels and
    /// [`attachments::MAX_PER_IMAGE`] in all. Nothing is looked for when
    /// the options or the destination say no, or the pull policy forbids
    /// asking the source.
    ///
    /// Also says which attachments stayed behind: those of `index_left_out`
    /// (an index the destination got one platform of), and every one when
    /// the destination cannot keep attachments.
    async fn copy_attachments(
        &self,
        image: &Reference,
        target: &Reference,
        subjects: Vec<Digest>,
        origin: &TopOrigin,
    ) -> Result<(Vec<CopiedAttachment>, Vec<LeftAttachment>), TransferError> {
        // An image the destination's copy answered for (a digest it holds, `--pull missing`)
        // is taken as it is, attachments too: the source, maybe unreachable, is not asked.
        if !self.options.attachments.enabled() || !origin.asked_source {
            return Ok((Vec::new(), Vec::new()));
        }
        let index_left_out = origin.index_left_out.clone();
        // An index that went without all its platforms is still among `subjects`
        // where the destination keeps it; its attachments stay behind all the same.
        let subjects: Vec<Digest> =
            subjects.into_iter().filter(|subject| Some(subject) != index_left_out.as_ref()).collect();
        if !self.destination.keeps_attachments() {
            let subjects: Vec<Digest> = index_left_out.into_iter().chain(subjects).collect();
            return Ok((Vec::new(), self.left_behind(image, &subjects, LeftReason::DestinationCannotKeep).await?));
        }
        let left = match index_left_out {
            Some(index) => self.left_behind(image, &[index], LeftReason::IndexNotCopied).await?,
            None => Vec::new(),
        };
        Ok((self.carry_attachments(image, target, subjects).await?, left))
    }

    /// The attachments of `subjects` that the policy wants, as left behind
    /// for `reason` (their own attachments stay with them, unlisted).
    async fn left_behind(
        &self,
        image: &Reference,
        subjects: &[Digest],
        reason: LeftReason,
    ) -> Result<Vec<LeftAttachment>, TransferError> {
        let mut left = Vec::new();
        for attachments in self.attachments_of_each(image, subjects).await? {
            for attachment in attachments {
                if attachment.artifact_type.is_none()
                    || self.options.attachments.wants(attachment.artifact_type.as_deref())
                {
                    left.push(LeftAttachment {
                        kind: attachment.kind,
                        artifact_type: attachment.artifact_type,
                        digest: attachment.descriptor.digest,
                        subject: attachment.subject,
                        reason,
                    });
                }
            }
        }
        Ok(left)
    }

    /// What the source lists as attached to `subject`, a failure named as discovery's.
    async fn attachments_of(&self, image: &Reference, subject: &Digest) -> Result<Vec<Attachment>, TransferError> {
        self.source
            .attachments(image, subject)
            .await
            .map_err(|source| TransferError::Discovery { image: image.to_string(), source: Box::new(source) })
    }

    /// [`Engine::attachments_of`] each subject, asked at once: an index's
    /// platforms are discovered in the time of one.
    async fn attachments_of_each(
        &self,
        image: &Reference,
        subjects: &[Digest],
    ) -> Result<Vec<Vec<Attachment>>, TransferError> {
        try_join_all(subjects.iter().map(|subject| self.attachments_of(image, subject))).await
    }

    /// Copies the attachments of `subjects` and theirs (see [`Engine::copy_attachments`]).
    async fn carry_attachments(
        &self,
        image: &Reference,
        target: &Reference,
        subjects: Vec<Digest>,
    ) -> Result<Vec<CopiedAttachment>, TransferError> {
        let policy = &self.options.attachments;
        let mut visited: HashSet<Digest> = subjects.iter().cloned().collect();
        let mut recorded: HashSet<(AttachmentKind, Digest)> = HashSet::new();
        let mut copied = Vec::new();
        let mut level = subjects;
        for _ in 0..attachments::MAX_DEPTH {
            let mut next = Vec::new();
            for attachments in self.attachments_of_each(image, &level).await? {
                for attachment in attachments {
                    let digest = attachment.descriptor.digest.clone();
                    if attachment.artifact_type.is_some() && !policy.wants(attachment.artifact_type.as_deref()) {
                        continue;
                    }
                    if !recorded.insert((attachment.kind, digest.clone())) {
                        continue;
                    }
                    if copied.len() >= attachments::MAX_PER_IMAGE {
                        tracing::warn!(%image, limit = attachments::MAX_PER_IMAGE, "too many attachments; the rest stay behind");
                        return Ok(copied);
                    }
                    if let Some(done) = self.copy_attachment(image, target, &attachment).await? {
                        if visited.insert(digest.clone()) {
                            next.push(digest);
                        }
                        copied.push(done);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        Ok(copied)
    }

    /// One attachment: its manifest read (the destination's copy if it has
    /// one), its blobs moved like layers, then recorded by the destination.
    /// An attachment that is an index (an artifact of several manifests)
    /// goes with the manifests it lists and their blobs, those first.
    /// `None` when it is not carried: not of a wanted artifact type, or an
    /// index listing an index (attachments nest no deeper).
    async fn copy_attachment(
        &self,
        image: &Reference,
        target: &Reference,
        attachment: &Attachment,
    ) -> Result<Option<CopiedAttachment>, TransferError> {
        let descriptor = &attachment.descriptor;
        let context = || format!("image {image}, {} {} of {}", attachment.kind, descriptor.digest, attachment.subject);
        let manifest = self.attachment_manifest(image, descriptor).await?;
        let (_, parsed) = parse_manifest(manifest.bytes.clone(), Some(&descriptor.media_type), context)?;
        let artifact_type = attachments::artifact_type(&manifest.bytes);
        if !self.options.attachments.wants(artifact_type.as_deref()) {
            return Ok(None);
        }
        let (mut blobs, mut listed) = (Vec::new(), Vec::new());
        match parsed {
            ParsedManifest::Image(parsed) => blobs.extend(std::iter::once(parsed.config).chain(parsed.layers)),
            ParsedManifest::Index(index) => {
                for child in &index.manifests {
                    let child_manifest = self.attachment_manifest(image, child).await?;
                    let (_, child_parsed) =
                        parse_manifest(child_manifest.bytes.clone(), Some(&child.media_type), context)?;
                    let ParsedManifest::Image(child_parsed) = child_parsed else {
                        tracing::warn!(%image, digest = %descriptor.digest, "an attachment index listing an index is not carried");
                        return Ok(None);
                    };
                    blobs.extend(std::iter::once(child_parsed.config).chain(child_parsed.layers));
                    listed.push(child_manifest);
                }
            }
        }
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        blobs.dedup_by(|a, b| a.digest == b.digest);
        stream::iter(blobs)
            .map(|blob| async move { self.layer(image, target, &blob).await.map(drop) })
            .buffer_unordered(self.options.max_concurrent_blobs.max(1))
            .try_collect::<()>()
            .await?;
        for child in &listed {
            self.destination.put_manifest(target, child).await?;
        }
        self.destination.put_attachment(target, attachment, &manifest).await?;
        Ok(Some(CopiedAttachment {
            kind: attachment.kind,
            artifact_type,
            digest: manifest.digest,
            subject: attachment.subject.clone(),
        }))
    }

    /// An attachment's manifest (or one its index lists): the destination's
    /// copy if it has one, else the source's, checked against its digest.
    async fn attachment_manifest(
        &self,
        image: &Reference,
        descriptor: &Descriptor,
    ) -> Result<RawManifest, TransferError> {
        let manifest = match self.destination.cached(&descriptor.digest, limits::MANIFEST).await? {
            Some(bytes) => {
                RawManifest { bytes, media_type: descriptor.media_type.clone(), digest: descriptor.digest.clone() }
            }
            None => self.source.manifest(image, descriptor).await?,
        };
        if manifest.digest != descriptor.digest {
            return Err(TransferError::DigestMismatch {
                what: "attachment manifest",
                expected: descriptor.digest.clone(),
                actual: manifest.digest,
            });
        }
        Ok(manifest)
    }

    /// What `job`'s image is: its top manifest or index (as the destination
    /// gets it), each platform image with its config, and which platform a
    /// single-platform consumer gets. `configs` says whether the configs
    /// also go to the destination (a copy) or are only read (a plan).
    pub(crate) async fn platform_images(
        &self,
        job: &CopyJob,
        configs: Configs,
    ) -> Result<(RawManifest, Vec<PlatformImage>, usize, TopOrigin), TransferError> {
        let (image, target) = (&job.source, &job.destination);
        let (top, asked_source) = self.resolve_top(image).await?;
        let (_, parsed) = parse_manifest(top.bytes.clone(), Some(&top.media_type), || format!("image {image}"))?;
        let mut origin = TopOrigin { asked_source, index_left_out: None };
        let (top, (platform_manifests, primary)) = match parsed {
            ParsedManifest::Image(manifest) => (top.clone(), (vec![(top, manifest, None)], 0)),
            ParsedManifest::Index(index) => {
                let selected = self.select_platforms(image, &index.manifests).await?;
                let distinct: HashSet<&Digest> = index.manifests.iter().map(|entry| &entry.digest).collect();
                if selected.0.len() < distinct.len() && self.destination.requires_complete_index() {
                    // The index cannot go without all its manifests: the image becomes
                    // the chosen platform's manifest, digest as the source has it.
                    let (mut platforms, primary) = selected;
                    let chosen = platforms.swap_remove(primary);
                    tracing::info!(%image, platform = ?chosen.2, "not every platform is available; writing one platform's manifest");
                    origin.index_left_out = Some(top.digest.clone());
                    (chosen.0.clone(), (vec![chosen], 0))
                } else {
                    if selected.0.len() < distinct.len() && !self.destination.keeps_attachments_of_partial_indexes() {
                        origin.index_left_out = Some(top.digest.clone());
                    }
                    (top, selected)
                }
            }
        };

        let mut platforms = Vec::with_capacity(platform_manifests.len());
        for (manifest, parsed, index_platform) in platform_manifests {
            let config = match configs {
                Configs::Copy => self.config(image, target, &parsed.config).await?,
                Configs::ReadOnly => self.read_config(image, &parsed.config).await?,
            };
            let image_config = ImageConfig::parse(&config).map_err(|source| TransferError::Manifest {
                context: format!("image {image}, config {}", parsed.config.digest),
                source,
            })?;
            if image_config.rootfs.diff_ids.len() != parsed.layers.len() {
                return Err(TransferError::LayerCountMismatch {
                    layers: parsed.layers.len(),
                    diff_ids: image_config.rootfs.diff_ids.len(),
                });
            }
            let platform = index_platform.unwrap_or_else(|| image_config.platform());
            platforms.push(PlatformImage {
                manifest,
                parsed,
                config,
                platform,
                diff_ids: image_config.rootfs.diff_ids,
            });
        }
        Ok((top, platforms, primary, origin))
    }

    /// Fails when the source (a store or an archive, which keep only the
    /// platforms pulled or saved) lacks a chosen platform's manifest, naming
    /// the platforms it holds rather than a missing blob.
    async fn check_source_holds(
        &self,
        image: &Reference,
        candidates: &[&Descriptor],
        chosen: &[&Descriptor],
    ) -> Result<(), TransferError> {
        let mut held = Vec::new();
        let mut missing = Vec::new();
        for entry in candidates {
            let platform = entry.platform.as_ref().map_or_else(|| entry.digest.to_string(), Platform::to_string);
            if self.source.has_manifest(entry).await? {
                held.push(platform);
            } else if chosen.iter().any(|chosen| chosen.digest == entry.digest) {
                missing.push(platform);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let held = if held.is_empty() { "no".to_owned() } else { held.join(", ") };
        Err(TransferError::PlatformNotHeld { image: image.to_string(), missing: missing.join(", "), held })
    }

    /// Picks the index entries to copy and fetches their manifests. Returns
    /// them with the position of the one a single-platform consumer gets.
    async fn select_platforms(
        &self,
        image: &Reference,
        entries: &[Descriptor],
    ) -> Result<(Vec<(RawManifest, hpn_oci::ImageManifest, Option<Platform>)>, usize), TransferError> {
        // Attestations and signatures ride in indexes as unknown/unknown entries.
        // An index may list one manifest many times: each is fetched and
        // checked once (the first entry's platform names it).
        let mut seen = HashSet::new();
        let candidates: Vec<&Descriptor> = entries
            .iter()
            .filter(|entry| hpn_oci::media_type::is_image_manifest(&entry.media_type))
            .filter(|entry| entry.platform.as_ref().is_none_or(|platform| platform.os != "unknown"))
            .filter(|entry| seen.insert(&entry.digest))
            .collect();
        let host = Platform::host();
        let chosen: Vec<&Descriptor> = match &self.options.platforms {
            PlatformChoice::All => candidates.clone(),
            PlatformChoice::Available => {
                let mut available = Vec::with_capacity(candidates.len());
                for entry in &candidates {
                    if self.source.has_manifest(entry).await? {
                        available.push(*entry);
                    }
                }
                available
            }
            PlatformChoice::One(wanted) => {
                candidates.iter().copied().find(|entry| entry_matches(entry, wanted)).into_iter().collect()
            }
        };
        if !matches!(self.options.platforms, PlatformChoice::Available) && !chosen.is_empty() {
            self.check_source_holds(image, &candidates, &chosen).await?;
        }
        if chosen.is_empty() {
            let wanted = match &self.options.platforms {
                PlatformChoice::One(wanted) => wanted.clone(),
                PlatformChoice::All | PlatformChoice::Available => host.clone(),
            };
            let available = candidates
                .iter()
                .filter_map(|entry| entry.platform.as_ref().map(Platform::to_string))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(TransferError::NoMatchingPlatform { wanted, available });
        }
        let primary = match &self.options.platforms {
            PlatformChoice::One(_) => 0,
            PlatformChoice::All | PlatformChoice::Available => {
                chosen.iter().position(|entry| entry_matches(entry, &host)).unwrap_or(0)
            }
        };
        let mut selected = Vec::with_capacity(chosen.len());
        for entry in chosen {
            let manifest = match self.destination.cached(&entry.digest, limits::MANIFEST).await? {
                Some(bytes) => {
                    RawManifest { bytes, media_type: entry.media_type.clone(), digest: entry.digest.clone() }
                }
                None => self.source(image)?.manifest(image, entry).await?,
            };
            if manifest.digest != entry.digest {
                return Err(TransferError::DigestMismatch {
                    what: "manifest",
                    expected: entry.digest.clone(),
                    actual: manifest.digest,
                });
            }
            let (_, parsed) = parse_manifest(manifest.bytes.clone(), Some(&entry.media_type), || {
                format!("image {image}, platform manifest {}", entry.digest)
            })?;
            let ParsedManifest::Image(parsed) = parsed else {
                return Err(TransferError::Unsupported(format!(
                    "image {image}: index entry {} is itself an index; nested indexes are not supported",
                    entry.digest
                )));
            };
            selected.push((manifest, parsed, entry.platform.clone()));
        }
        Ok((selected, primary))
    }

    /// The top-level manifest: from the destination when the source says it
    /// has not changed (a tag the destination knows is resolved with a cheap
    /// HEAD first) or the pull policy says not to ask, else fetched. A HEAD
    /// that fails is not fatal: the GET then says why.
    async fn resolve_top(&self, image: &Reference) -> Result<(RawManifest, bool), TransferError> {
        let mut asked_source = false;
        let known = match image.digest() {
            Some(digest) => Some((digest.clone(), None)),
            None => match self.destination.recorded_image(image).await? {
                None => None,
                Some(recorded) if self.options.pull != PullPolicy::Always => {
                    Some((recorded.digest, Some(recorded.media_type)))
                }
                Some(_) => match self.source(image)?.peek(image).await.inspect(|_| asked_source = true) {
                    Ok(peeked) => peeked.map(|descriptor| (descriptor.digest, Some(descriptor.media_type))),
                    Err(error) => {
                        tracing::debug!(%image, %error, "HEAD failed; fetching the manifest instead");
                        None
                    }
                },
            },
        };
        if let Some((digest, media_type)) = known
            && let Some(bytes) = self.destination.cached(&digest, limits::MANIFEST).await?
        {
            let (manifest, _) = parse_manifest(bytes, media_type.as_deref(), || format!("image {image}"))?;
            return Ok((manifest, asked_source));
        }
        Ok((self.source(image)?.resolve(image).await?, true))
    }

    /// The source, unless the pull policy forbids asking it about `image`.
    fn source(&self, image: &Reference) -> Result<&S, TransferError> {
        match self.options.pull {
            PullPolicy::Never => Err(TransferError::NotLocal { image: image.to_string() }),
            PullPolicy::Always | PullPolicy::Missing => Ok(&self.source),
        }
    }

    /// A config blob: read whole (it is small and needed to plan the copy),
    /// verified, and handed to the destination once per run.
    async fn config(
        &self,
        image: &Reference,
        target: &Reference,
        descriptor: &Descriptor,
    ) -> Result<Bytes, TransferError> {
        let key = (target.name(), descriptor.digest.clone());
        let (result, _) = self
            .configs
            .run(key, || async {
                let bytes = self.read_config(image, descriptor).await?;
                if !self.destination.try_reuse_blob(target, descriptor, image).await?.is_reused() {
                    self.destination.put_blob(target, descriptor, BlobContent::Bytes(bytes.clone())).await?;
                }
                Ok(bytes)
            })
            .await;
        result.map_err(TransferError::Shared)
    }

    /// A config's bytes, verified: the destination's copy, else the source's.
    async fn read_config(&self, image: &Reference, descriptor: &Descriptor) -> Result<Bytes, TransferError> {
        match self.destination.cached(&descriptor.digest, limits::CONFIG).await? {
            Some(bytes) => Ok(bytes),
            None => self.source(image)?.blob(image, descriptor).await?.read_verified(descriptor, limits::CONFIG).await,
        }
    }

    /// A layer: reused when the destination can (present, or mounted), else
    /// moved — once per run however many images want it.
    async fn layer(
        &self,
        image: &Reference,
        target: &Reference,
        descriptor: &Descriptor,
    ) -> Result<BlobOrigin, TransferError> {
        let key = (target.name(), descriptor.digest.clone());
        let (result, ran_here) = self
            .layers
            .run(key, || async {
                if self.destination.try_reuse_blob(target, descriptor, image).await?.is_reused() {
                    return Ok(BlobOrigin::AlreadyPresent);
                }
                let fetching_for = lock(&self.transferring_for)
                    .get(&descriptor.digest)
                    .filter(|other| *other != image)
                    .cloned();
                if let Some(other) = fetching_for {
                    self.reporter.blob_waiting(image, descriptor, &other);
                }
                let (sent, sent_here) = self
                    .transfers
                    .run(descriptor.digest.clone(), || async {
                        let _mark = TransferMark::new(&self.transferring_for, &descriptor.digest, image);
                        self.move_blob(image, target, descriptor).await
                    })
                    .await;
                match sent {
                    Ok(()) if sent_here => return Ok(BlobOrigin::Transferred),
                    Err(error) if sent_here => return Err(TransferError::Shared(error)),
                    // Another repository (or image) got it, maybe while we waited: reuse it from there.
                    Ok(()) => {
                        if self.destination.try_reuse_blob(target, descriptor, image).await?.is_reused() {
                            return Ok(BlobOrigin::AlreadyPresent);
                        }
                    }
                    // Sending it to another repository failed, perhaps for a reason of that
                    // repository's own (no push right there): this one tries for itself.
                    Err(error) => {
                        tracing::debug!(%image, digest = %descriptor.digest, %error, "another repository's transfer of this blob failed; sending it here");
                    }
                }
                self.move_blob(image, target, descriptor).await?;
                Ok(BlobOrigin::Transferred)
            })
            .await;
        // Whoever waited on another image's transfer found the blob present.
        let origin = result.map_err(TransferError::Shared)?;
        Ok(if ran_here { origin } else { BlobOrigin::AlreadyPresent })
    }
}

impl<S: ImageSource, D: ImageDestination> Engine<S, D> {
    /// Sends a blob's bytes from the source to the destination, holding one of
    /// the run's blob slots meanwhile.
    async fn move_blob(
        &self,
        image: &Reference,
        target: &Reference,
        descriptor: &Descriptor,
    ) -> Result<(), TransferError> {
        let _slot = self.blob_slots.acquire().await.expect("the semaphore is never closed");
        let content = match self.source(image)?.blob(image, descriptor).await? {
            BlobContent::Stream(stream) => {
                let reporter = Arc::clone(&self.reporter);
                let image = image.clone();
                BlobContent::Stream(Box::pin(stream.inspect_ok(move |chunk| {
                    reporter.bytes_transferred(&image, chunk.len() as u64);
                })))
            }
            local => {
                self.reporter.bytes_transferred(image, descriptor.size);
                local
            }
        };
        self.destination.put_blob(target, descriptor, content).await
    }
}

/// Every layer of the platform images, once each, in digest order.
fn distinct_layers(platforms: &[PlatformImage]) -> Vec<Descriptor> {
    let mut layers: Vec<Descriptor> = platforms.iter().flat_map(|platform| &platform.parsed.layers).cloned().collect();
    layers.sort_by(|a, b| a.digest.cmp(&b.digest));
    layers.dedup_by(|a, b| a.digest == b.digest);
    layers
}

fn entry_matches(entry: &Descriptor, wanted: &Platform) -> bool {
    entry.platform.as_ref().is_some_and(|platform| wanted.matches(platform))
}
