//! The JSON files of a Docker archive, shared by the writer and the reader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub(crate) const OCI_LAYOUT: &str = "oci-layout";
pub(crate) const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
pub(crate) const INDEX_JSON: &str = "index.json";
pub(crate) const MANIFEST_JSON: &str = "manifest.json";
pub(crate) const REPOSITORIES: &str = "repositories";
pub(crate) const BLOBS_DIR: &str = "blobs/";
pub(crate) const BLOBS_SHA256_DIR: &str = "blobs/sha256/";

/// One element of `manifest.json`: what `docker load` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ManifestItem {
    /// Path of the config inside the archive.
    pub config: String,
    /// Familiar `name:tag` forms. Docker writes `null` for none; both load.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub repo_tags: Vec<String>,
    /// Paths of the layer files, base first.
    pub layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}

/// `repositories`: familiar repository → tag → top layer id (the legacy
/// format Docker still writes next to manifest.json).
pub(crate) type Repositories = BTreeMap<String, BTreeMap<String, String>>;

pub(crate) fn blob_path(hex: &str) -> String {
    format!("{BLOBS_SHA256_DIR}{hex}")
}

/// Splits a familiar `name:tag` into (name, tag): the tag follows the last
/// `:` that comes after the last `/` (`localhost:5000/app:1` → `localhost:5000/app`, `1`).
pub(crate) fn split_repo_tag(repo_tag: &str) -> Option<(&str, &str)> {
    let (name, tag) = repo_tag.rsplit_once(':')?;
    (!tag.contains('/') && !name.is_empty() && !tag.is_empty()).then_some((name, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_tags_split_at_the_tag_colon_not_the_port() {
        assert_eq!(split_repo_tag("nginx:latest"), Some(("nginx", "latest")));
        assert_eq!(split_repo_tag("localhost:5000/app:1"), Some(("localhost:5000/app", "1")));
        assert_eq!(split_repo_tag("localhost:5000/app"), None);
        assert_eq!(split_repo_tag("app"), None);
    }

    #[test]
    fn manifest_item_reads_docker_null_repo_tags() {
        let item: ManifestItem = serde_json::from_str(r#"{"Config":"c","RepoTags":null,"Layers":["l"]}"#).unwrap();
        assert!(item.repo_tags.is_empty());
        assert_eq!(serde_json::to_string(&item).unwrap(), r#"{"Config":"c","RepoTags":[],"Layers":["l"]}"#);
    }
}
