//! Looking at an image without copying it: its top manifest or index, the
//! config of one platform, and a summary of both in the shape of
//! `skopeo inspect`. Works on every endpoint kind through [`ImageSource`].

use std::collections::BTreeMap;

use bytes::Bytes;
use hpn_oci::{Descriptor, Digest, ImageManifest, ParsedManifest, Platform, RawManifest, Reference, limits};
use serde::{Deserialize, Serialize};

use crate::endpoint::{ImageSource, parse_manifest};
use crate::endpoints::{AnySource, EndpointContext, EndpointName};
use crate::error::TransferError;

/// What `skopeo inspect` prints, field for field where hpn knows the value,
/// plus `Platforms` when the image is an index. Field names are skopeo's so
/// scripts written for it read this too.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ImageInspection {
    /// Registry and repository, without tag or digest.
    pub name: String,
    /// The digest of the top manifest or index (what a pull by digest names).
    pub digest: Digest,
    /// The repository's tags, for a registry image (other places have none to list).
    pub repo_tags: Vec<String>,
    /// When the image was built, as its config says (RFC 3339).
    pub created: Option<String>,
    /// The docker version that built it, when the config says.
    pub docker_version: String,
    /// The config's labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// The inspected platform's CPU architecture.
    pub architecture: String,
    /// Its CPU variant, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Its operating system.
    pub os: String,
    /// The layer digests, base first.
    pub layers: Vec<Digest>,
    /// The layers' descriptors, as skopeo's `LayersData`.
    pub layers_data: Vec<LayerData>,
    /// The config's environment, `KEY=value`.
    pub env: Vec<String>,
    /// For an index: every entry with its platform; which of them the other
    /// fields describe is the one whose digest is [`Self::platform_digest`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<IndexEntry>,
    /// For an index: the digest of the platform manifest described.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_digest: Option<Digest>,
}

/// One layer as skopeo's `LayersData` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct LayerData {
    /// The layer's media type.
    #[serde(rename = "MIMEType")]
    pub mime_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its compressed size in bytes.
    pub size: u64,
    /// Its annotations, when it has any.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One entry of an index.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct IndexEntry {
    /// `os/arch[/variant]`, or empty when the entry names no platform.
    pub platform: String,
    /// The entry's manifest digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The parts of a config `inspect` shows (the rest of hpn reads only
/// platform and DiffIDs, in [`hpn_oci::ImageConfig`]).
#[derive(Deserialize, Default)]
struct ConfigSummary {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    docker_version: Option<String>,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// The top manifest or index `name` resolves to, as its bytes: `inspect
/// --raw` and `digest`.
pub async fn inspect_manifest(context: &EndpointContext, name: &EndpointName) -> Result<RawManifest, TransferError> {
    let (source, image) = context.open_source(name).await?;
    source.resolve(&image).await
}

/// The config of `name`'s image for `platform` (the only one for a
/// single-platform image), verified, as its bytes: `inspect --config`.
pub async fn inspect_config(
    context: &EndpointContext,
    name: &EndpointName,
    platform: &Platform,
) -> Result<Bytes, TransferError> {
    let (source, image) = context.open_source(name).await?;
    let top = source.resolve(&image).await?;
    let chosen = choose_platform(&source, &image, &top, platform).await?;
    config_bytes(&source, &image, &chosen.manifest).await
}

/// `skopeo inspect`'s summary of `name`'s image; for an index, of its
/// `platform` image. `with_tags` lists the repository's tags when the image
/// is in a registry (one more request, which some registries refuse).
pub async fn inspect(
    context: &EndpointContext,
    name: &EndpointName,
    platform: &Platform,
    with_tags: bool,
) -> Result<ImageInspection, TransferError> {
    let (source, image) = context.open_source(name).await?;
    let top = source.resolve(&image).await?;
    let chosen = choose_platform(&source, &image, &top, platform).await?;
    let config_bytes = config_bytes(&source, &image, &chosen.manifest).await?;
    let config: ConfigSummary = serde_json::from_slice(&config_bytes).map_err(|error| TransferError::Manifest {
        context: format!("config {} of {image}", chosen.manifest.config.digest),
        source: hpn_oci::ManifestError::Invalid { kind: "image config", reason: error.to_string() },
    })?;
    let repo_tags = match &source {
        AnySource::Registry(_) if with_tags => {
            context.registry_client()?.list_tags(image.registry(), image.repository(), None).await?
        }
        _ => Vec::new(),
    };
    let run = config.config.unwrap_or_default();
    Ok(ImageInspection {
        name: image.name(),
        digest: top.digest.clone(),
        repo_tags,
        created: config.created,
        docker_version: config.docker_version.unwrap_or_default(),
        labels: run.labels,
        architecture: config.architecture,
        variant: config.variant,
        os: config.os,
        layers: chosen.manifest.layers.iter().map(|layer| layer.digest.clone()).collect(),
        layers_data: chosen.manifest.layers.iter().map(LayerData::of).collect(),
        env: run.env.unwrap_or_default(),
        platforms: chosen.index_entries,
        platform_digest: chosen.platform_digest,
    })
}

impl LayerData {
    fn of(layer: &Descriptor) -> Self {
        Self {
            mime_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
            annotations: (!layer.annotations.is_empty()).then(|| layer.annotations.clone()),
        }
    }
}

/// The image manifest an inspection describes, and what the index around it listed.
struct Chosen {
    manifest: ImageManifest,
    index_entries: Vec<IndexEntry>,
    platform_digest: Option<Digest>,
}

/// The manifest itself, or the index's entry for `wanted` that the source
/// holds (a store or an archive has only the platforms that were saved).
async fn choose_platform(
    source: &AnySource,
    image: &Reference,
    top: &RawManifest,
    wanted: &Platform,
) -> Result<Chosen, TransferError> {
    let parse = |raw: &RawManifest| {
        parse_manifest(raw.bytes.clone(), Some(&raw.media_type), || format!("manifest {} of {image}", raw.digest))
    };
    let index = match parse(top)?.1 {
        ParsedManifest::Image(manifest) => {
            return Ok(Chosen { manifest, index_entries: Vec::new(), platform_digest: None });
        }
        ParsedManifest::Index(index) => index,
    };
    let mut chosen = None;
    for entry in &index.manifests {
        let matches = hpn_oci::media_type::is_image_manifest(&entry.media_type)
            && entry.platform.as_ref().is_some_and(|platform| wanted.matches(platform));
        if matches && source.has_manifest(entry).await? {
            chosen = Some(entry);
            break;
        }
    }
    let Some(entry) = chosen else {
        let available = index
            .manifests
            .iter()
            .filter_map(|entry| entry.platform.as_ref())
            .filter(|platform| platform.os != "unknown")
            .map(Platform::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(TransferError::NoMatchingPlatform { wanted: wanted.clone(), available });
    };
    let raw = source.manifest(image, entry).await?;
    if raw.digest != entry.digest {
        return Err(TransferError::DigestMismatch {
            what: "manifest",
            expected: entry.digest.clone(),
            actual: raw.digest,
        });
    }
    let ParsedManifest::Image(manifest) = parse(&raw)?.1 else {
        return Err(TransferError::Unsupported(format!(
            "index entry {} of {image} is itself an index; hpn inspects one level",
            entry.digest
        )));
    };
    let index_entries = index
        .manifests
        .iter()
        .map(|entry| IndexEntry {
            platform: entry.platform.as_ref().map(Platform::to_string).unwrap_or_default(),
            digest: entry.digest.clone(),
            media_type: entry.media_type.clone(),
            size: entry.size,
        })
        .collect();
    Ok(Chosen { manifest, index_entries, platform_digest: Some(entry.digest.clone()) })
}

async fn config_bytes(source: &AnySource, image: &Reference, manifest: &ImageManifest) -> Result<Bytes, TransferError> {
    source.blob(image, &manifest.config).await?.read_verified(&manifest.config, limits::CONFIG).await
}
