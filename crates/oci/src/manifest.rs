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
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
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
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of an image config hpn reads: platform and layer DiffIDs.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes)
            .map_err(|error| ManifestError::Invalid { kind: "image config", reason: error.to_string() })
    }

    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error(
        "Docker schema 1 manifests are not supported (deprecated since 2017 and removed from Docker 28); \
         re-push the image with a current client to convert it"
    )]
    Schema1,
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("invalid {kind}: {reason}")]
    Invalid { kind: &'static str, reason: String },
}

/// A parsed copy of manifest bytes. Read from it; write the raw bytes.
#[derive(Debug, Clone)]
pub enum ParsedManifest {
    Image(ImageManifest),
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
