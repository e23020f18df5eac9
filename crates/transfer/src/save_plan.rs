//! `hpn save --dry-run --split`: the volumes a save would write, planned
//! before any layer is fetched.
//!
//! Manifests and configs are read (they are small, and say what an image
//! holds); layer sizes come from their descriptors; the volumes are planned
//! by [`hpn_archive::plan_volumes`], the planning `--split` itself writes by,
//! over the blobs and images the archive would get. One size no descriptor
//! gives: the uncompressed copy of a zstd layer that docker before 23 needs
//! (ARCHITECTURE.md, "Formats"). Where the store holds it (named by its
//! DiffID) its size is exact; elsewhere it is estimated, and the plan says so.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use hpn_archive::{ArchiveImage, BaseBlob, SetOutline, VolumeOutline, plan_volumes};
use hpn_oci::media_type::{LayerCompression, layer_compression};
use hpn_oci::{Digest, RawManifest};
use hpn_store::Store;

use crate::archive_endpoint::{archive_image, base_layer};
use crate::endpoint::{CopiedImage, ImageDestination, ImageSource};
use crate::engine::{CopyJob, Engine, EngineOptions};
use crate::error::TransferError;
use crate::report::{CopyOutcome, Reporter};
use crate::save::ArchiveOptions;

/// What an uncompressed copy of a zstd layer is assumed to weigh, as a
/// multiple of the compressed layer, when the store does not hold it: a
/// middling ratio for filesystem layers (zstd's default level gives 2–5×).
pub const ZSTD_COPY_ESTIMATE_RATIO: u64 = 3;

/// The uncompressed copy of a zstd layer whose size the plan only estimates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EstimatedCopy {
    /// The zstd layer.
    pub layer: Digest,
    /// Its size.
    pub layer_size: u64,
    /// The copy's digest (the layer's DiffID), the name it has in the archive.
    pub diff_id: Digest,
    /// The size the plan assumed: [`ZSTD_COPY_ESTIMATE_RATIO`] × `layer_size`.
    pub assumed_size: u64,
}

/// What [`plan_save`] found.
#[derive(Debug)]
#[non_exhaustive]
pub struct SavePlan {
    /// Each job's plan (what the store lacks and would fetch), in job order.
    pub results: Vec<Result<CopyOutcome, TransferError>>,
    /// The volumes `--split` would write, in order.
    pub volumes: Vec<VolumeOutline>,
    /// Sizes in the plan that are estimates: with other true sizes the real
    /// volumes differ in size, and images may fall into other volumes.
    pub estimated: Vec<EstimatedCopy>,
}

/// Plans the volumes `hpn_transfer::save` would cut `path` into with
/// `archive_options` (whose `volume_size` must be set), reading `jobs`' manifests and configs
/// from `source` (or `destination`'s copies, as the pull policy says) and
/// writing nothing. `store`, where it exists, gives the exact size of the
/// zstd layers' uncompressed copies it holds.
#[allow(clippy::too_many_arguments)]
pub async fn plan_save<S: ImageSource, D: ImageDestination>(
    source: S,
    destination: D,
    store: Option<Arc<Store>>,
    jobs: &[CopyJob],
    path: &Path,
    archive_options: &ArchiveOptions,
    options: EngineOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<SavePlan, TransferError> {
    let volume_size = archive_options.volume_size.ok_or_else(|| {
        TransferError::Unsupported(format!("no volume size was given to plan the volumes of {}", path.display()))
    })?;
    let engine = Engine::new(Arc::new(source), Arc::new(destination), options.with_dry_run(true), reporter);
    let planned = engine.plan_images(jobs).await;
    let mut results = Vec::with_capacity(planned.len());
    let mut images = Vec::new();
    for result in planned {
        match result {
            Ok((outcome, image)) => {
                results.push(Ok(outcome));
                images.push(image);
            }
            Err(error) => results.push(Err(error)),
        }
    }
    let (path, archive_options) = (path.to_owned(), archive_options.clone());
    let (volumes, estimated) = tokio::task::spawn_blocking(move || {
        let set = ArchiveSet::of(&images, &path, &archive_options, store.as_deref())?;
        let outline = SetOutline {
            path: &path,
            blobs: &set.blobs,
            manifests: &set.manifests,
            images: &set.images,
            // Attachments are not discovered by a dry run: their blobs (signatures, SBOMs) are
            // left out of the plan.
            attachment_subjects: &BTreeMap::new(),
            base_blobs: &set.base_blobs,
            created: archive_options.created,
        };
        let volumes =
            plan_volumes(&outline, archive_options.compression, volume_size, archive_options.signer.is_some())?;
        Ok::<_, TransferError>((volumes, set.estimated))
    })
    .await
    .map_err(|join| TransferError::task_failed("volume plan", join))??;
    Ok(SavePlan { results, volumes, estimated })
}

/// What the one archive of a save would hold.
#[derive(Default)]
struct ArchiveSet {
    blobs: BTreeMap<Digest, u64>,
    manifests: BTreeMap<Digest, Vec<u8>>,
    images: Vec<ArchiveImage>,
    base_blobs: BTreeMap<Digest, BaseBlob>,
    estimated: Vec<EstimatedCopy>,
}

impl ArchiveSet {
    /// The blobs and entries the save's archive destination would get for
    /// `images`: the same choices it makes (a differential bundle's base
    /// layers left out, images the base has unchanged not shipped, zstd
    /// layers with their uncompressed copies).
    fn of(
        images: &[CopiedImage],
        path: &Path,
        options: &ArchiveOptions,
        store: Option<&Store>,
    ) -> Result<Self, TransferError> {
        let base = options.base.as_deref();
        let mut set = Self::default();
        let mut uncompressed_copies: HashMap<Digest, Digest> = HashMap::new();
        for image in images {
            if base.is_some_and(|base| base.has_image(&image.destination, &image.top.digest)) {
                continue;
            }
            set.add_manifest(&image.top);
            for platform in &image.platforms {
                set.add_manifest(&platform.manifest);
                set.blobs.insert(platform.parsed.config.digest.clone(), platform.config.len() as u64);
                for (layer, diff_id) in platform.parsed.layers.iter().zip(&platform.diff_ids) {
                    if let Some(blob) = base_layer(base, layer) {
                        set.base_blobs.entry(blob.digest.clone()).or_insert_with(|| blob.clone());
                        continue;
                    }
                    set.blobs.insert(layer.digest.clone(), layer.size);
                    if layer_compression(&layer.media_type) != Some(LayerCompression::Zstd)
                        || uncompressed_copies.insert(layer.digest.clone(), diff_id.clone()).is_some()
                    {
                        continue;
                    }
                    let held = store.map(|store| store.blob_size(diff_id)).transpose()?.flatten();
                    let size = held.unwrap_or_else(|| {
                        let assumed_size = layer.size.saturating_mul(ZSTD_COPY_ESTIMATE_RATIO);
                        set.estimated.push(EstimatedCopy {
                            layer: layer.digest.clone(),
                            layer_size: layer.size,
                            diff_id: diff_id.clone(),
                            assumed_size,
                        });
                        assumed_size
                    });
                    set.blobs.insert(diff_id.clone(), size);
                }
            }
            let (archive_image, _) = archive_image(image, &uncompressed_copies, base, path)?;
            // As the archive writer does, a second image of the same name replaces the first.
            match set.images.iter_mut().find(|existing| existing.name == archive_image.name) {
                Some(existing) => *existing = archive_image,
                None => set.images.push(archive_image),
            }
        }
        Ok(set)
    }

    fn add_manifest(&mut self, manifest: &RawManifest) {
        self.blobs.insert(manifest.digest.clone(), manifest.bytes.len() as u64);
        self.manifests.insert(manifest.digest.clone(), manifest.bytes.to_vec());
    }
}
