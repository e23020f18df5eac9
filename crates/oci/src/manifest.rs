use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type;
use crate::platform::Platform;

/// Annotation keys hpn writes into `index.json` files.
pub mod annotation {
    /// The OCI name of an entry (in archives: the tag, as Docker writes it).
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
    /// containerd's and Docker's full image name of an entry.
    pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
}

/// A content descriptor: what a blob is, where to find it, how big it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is (a manifest, a config, a gzip layer…); see [`media_type`].
    pub media_type: String,
    /// The blob's content address, which every reader checks it against.
    pub digest: Digest,
    /// The blob's exact length in bytes: a transfer that delivers more or
    /// less is refused.
    pub size: u64,
    /// In an index entry: the platform the manifest it points at is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Where else the blob can be fetched from (foreign layers); kept only so
    /// that a descriptor read survives being written into an index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Free-form metadata; in index.json files it carries the image names
    /// (see [`annotation`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor with no platform, URLs or annotations: what a manifest
    /// lists for a config or a layer.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest,
            size,
            platform: None,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// An image manifest (OCI or Docker schema2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2 for the formats hpn reads (schema 1 is refused).
    pub schema_version: u32,
    /// The document's own media type; optional in OCI manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// The layer blobs, base layer first.
    pub layers: Vec<Descriptor>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The document's own media type; optional in OCI indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// One entry per platform manifest (or attestation, or nested index).
    pub manifests: Vec<Descriptor>,
    /// Free-form metadata of the index itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of an image config hpn reads: platform and layer DiffIDs.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture in Go's naming (`amd64`, `arm64`); empty if absent.
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`); empty if absent.
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v8` of arm64), if the image names one.
    #[serde(default)]
    pub variant: Option<String>,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
}

/// The `rootfs` section of an image config: the DiffIDs (sha256 of each
/// layer *uncompressed*), which loaders check the layers against.
#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    /// Always `layers` in practice.
    #[serde(rename = "type")]
    pub kind: String,
    /// One DiffID per layer, in the manifest's layer order.
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    /// Parses config bytes (the blob stays as it is; this is a copy to read).
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes)
            .map_err(|error| ManifestError::Invalid { kind: "image config", reason: error.to_string() })
    }

    /// The platform the config says the image is for.
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// Why manifest, index or config bytes cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// A Docker schema 1 manifest, which hpn refuses rather than converts
    /// (conversion would change its digest).
    #[error(
        "Docker schema 1 manifests are not supported (deprecated since 2017 and removed from Docker 28); \
         re-push the image with a current client to convert it"
    )]
    Schema1,
    /// A media type that is neither an image manifest nor an index.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// The bytes are not valid JSON of the expected shape.
    #[error("invalid {kind}: {reason}")]
    Invalid {
        /// What was being parsed (`image manifest`, `image config`…).
        kind: &'static str,
        /// The parser's complaint.
        reason: String,
    },
}

/// A parsed copy of manifest bytes. Read from it; write the raw bytes.
#[derive(Debug, Clone)]
pub enum ParsedManifest {
    /// A single-platform image manifest.
    Image(ImageManifest),
    /// A multi-platform index (manifest list).
    Index(ImageIndex),
}

/// Only the fields needed to tell which kind of document a manifest is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestProbe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
}

impl ParsedManifest {
    /// Parses manifest bytes. The media type comes from the document itself
    /// when it says one, else from `content_type` (a registry's header or a
    /// descriptor), else from its shape.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<(Self, String), ManifestError> {
        let invalid = |reason: String| ManifestError::Invalid { kind: "manifest", reason };
        let probe: ManifestProbe = serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
        if probe.schema_version == Some(1) {
            return Err(ManifestError::Schema1);
        }
        let content_type = content_type
            .map(|value| value.split(';').next().unwrap_or(value).trim())
            .filter(|value| !value.is_empty() && *value != "application/json" && *value != "text/plain");
        let media_type = match (probe.media_type, content_type) {
            (Some(declared), _) => declared,
            (None, Some(header)) => header.to_owned(),
            (None, None) if probe.manifests.is_some() => media_type::OCI_INDEX.to_owned(),
            (None, None) if probe.config.is_some() => media_type::OCI_MANIFEST.to_owned(),
            (None, None) => return Err(invalid("neither an image manifest nor an index".to_owned())),
        };
        if media_type::is_schema1(&media_type) {
            return Err(ManifestError::Schema1);
        }
        let parsed = if media_type::is_index(&media_type) {
            Self::Index(serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?)
        } else if media_type::is_image_manifest(&media_type) {
            Self::Image(serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?)
        } else {
            return Err(ManifestError::UnsupportedMediaType(media_type));
        };
        Ok((parsed, media_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_an_oci_manifest_without_media_type_field() {
        let bytes = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{DIGEST}","size":2}},
               "layers":[{{"mediaType":"{}","digest":"{DIGEST}","size":3}}]}}"#,
            media_type::OCI_CONFIG,
            media_type::OCI_LAYER_ZSTD
        );
        let (parsed, media_type) = ParsedManifest::parse(bytes.as_bytes(), None).unwrap();
        assert_eq!(media_type, media_type::OCI_MANIFEST);
        let ParsedManifest::Image(manifest) = parsed else { panic!("expected an image manifest") };
        assert_eq!(manifest.layers[0].size, 3);
    }

    #[test]
    fn parses_a_docker_manifest_list_with_platforms() {
        let bytes = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{DIGEST}","size":7,
               "platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_MANIFEST
        );
        let (parsed, media_type) = ParsedManifest::parse(bytes.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(media_type, media_type::DOCKER_MANIFEST_LIST);
        let ParsedManifest::Index(index) = parsed else { panic!("expected an index") };
        assert_eq!(index.manifests[0].platform.as_ref().unwrap().to_string(), "linux/arm64/v8");
    }

    #[test]
    fn schema1_and_garbage_are_refused() {
        let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert_eq!(ParsedManifest::parse(schema1, None).unwrap_err(), ManifestError::Schema1);
        assert!(matches!(ParsedManifest::parse(b"not json", None), Err(ManifestError::Invalid { .. })));
        let helm = br#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart","config":{}}"#;
        assert!(matches!(ParsedManifest::parse(helm, None), Err(ManifestError::UnsupportedMediaType(_))));
    }

    #[test]
    fn config_reports_platform_and_diff_ids() {
        let bytes = format!(
            r#"{{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{{"type":"layers","diff_ids":["{DIGEST}"]}}}}"#
        );
        let config = ImageConfig::parse(bytes.as_bytes()).unwrap();
        assert_eq!(config.platform().to_string(), "linux/arm64/v8");
        assert_eq!(config.rootfs.diff_ids.len(), 1);
    }
}
