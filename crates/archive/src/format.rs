//! The JSON files of a Docker archive, shared by the writer and the reader.

use std::collections::BTreeMap;

use hpn_oci::Digest;

use crate::created::CreationTime;
use serde::{Deserialize, Serialize};

pub(crate) const OCI_LAYOUT: &str = "oci-layout";
pub(crate) const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
pub(crate) const INDEX_JSON: &str = "index.json";
pub(crate) const MANIFEST_JSON: &str = "manifest.json";
pub(crate) const REPOSITORIES: &str = "repositories";
pub(crate) const BLOBS_DIR: &str = "blobs/";
pub(crate) const BLOBS_SHA256_DIR: &str = "blobs/sha256/";
/// The bill of contents of an archive hpn writes ([`BillOfContents`]).
pub const BILL_OF_CONTENTS: &str = "hpn-contents.json";
/// Where the parts of blobs cut across volumes lie ([`BillPart`]): outside
/// `blobs/`, where docker, podman and OCI tools never look.
pub(crate) const PARTS_DIR: &str = "hpn-parts/";

/// What an archive hpn writes holds, listed in the archive itself
/// ([`BILL_OF_CONTENTS`], a small JSON file beside `index.json`) so that it
/// can be reviewed before it crosses and checked after (`hpn verify`).
/// Readers that do not know it (docker, podman, skopeo, OCI tools) ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BillOfContents {
    /// The format of this file: [`BillOfContents::SCHEMA`].
    pub schema: String,
    /// The hpn version that wrote the archive.
    pub hpn_version: String,
    /// Names the set of volumes the archive belongs to: the sha256 of its
    /// image and blob lists, so the same content always gets the same id.
    pub set: String,
    /// This archive's number in its set, from 1.
    pub volume: u32,
    /// How many volumes the set has.
    pub volumes: u32,
    /// Every image, in the order index.json lists them.
    pub images: Vec<BillImage>,
    /// Every blob, in digest order.
    pub blobs: Vec<BillBlob>,
    /// What a differential bundle (`hpn save --since`) does not carry but its
    /// images need: layers expected at the far side, each with the bundle or
    /// inventory that had it, in digest order. Empty (and left out of the
    /// JSON) for a bundle that holds all it needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_blobs: Vec<BaseBlob>,
    /// When the archive was made, RFC 3339 in UTC (`2024-05-01T12:00:00Z`),
    /// recorded only when the user gave it (`hpn save --created`,
    /// `SOURCE_DATE_EPOCH`); every entry's mtime is then that time. Absent
    /// otherwise, so that the bill depends on the content alone. Not part of
    /// the set id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

impl BillOfContents {
    /// The `schema` this version writes and reads.
    pub const SCHEMA: &'static str = "hpn.contents.v1";

    /// The bill of volume `volume` of `volumes`, its set id derived from
    /// the lists alone: the same content always gets the same id, and any
    /// edit to the lists shows as a set id that no longer matches.
    pub(crate) fn new(
        images: Vec<BillImage>,
        blobs: Vec<BillBlob>,
        base_blobs: Vec<BaseBlob>,
        volume: u32,
        volumes: u32,
    ) -> Self {
        Self {
            schema: Self::SCHEMA.to_owned(),
            hpn_version: env!("CARGO_PKG_VERSION").to_owned(),
            set: Self::set_id(&images, &blobs, &base_blobs),
            volume,
            volumes,
            images,
            blobs,
            base_blobs,
            created: None,
        }
    }

    /// This bill, recording `created` as its creation time.
    pub(crate) fn with_created(self, created: Option<CreationTime>) -> Self {
        Self { created: created.map(CreationTime::to_rfc3339), ..self }
    }

    /// The set id of these lists: the sha256 of their compact JSON. A
    /// differential bundle's base is part of what it is; a whole bundle's
    /// id covers its images and blobs alone.
    pub fn set_id(images: &[BillImage], blobs: &[BillBlob], base_blobs: &[BaseBlob]) -> String {
        let listing = if base_blobs.is_empty() {
            serde_json::to_vec(&(images, blobs))
        } else {
            serde_json::to_vec(&(images, blobs, base_blobs))
        }
        .expect("the bill's lists always serialize");
        Digest::of(&listing).to_string()
    }

    /// The bill as written into an archive.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the bill of contents always serializes")
    }
}

/// An image in a [`BillOfContents`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillImage {
    /// Its full name, as index.json's `io.containerd.image.name` gives it.
    pub name: String,
    /// Its top manifest or index.
    pub digest: Digest,
    /// That document's media type.
    pub media_type: String,
    /// The volumes its blobs lie in: one for an image whole in one volume
    /// (which then lists it in its index.json), several for one that is not.
    #[serde(default = "first_volume")]
    pub volumes: Vec<u32>,
    /// Set for an attachment (a cosign `sha256-<hex>.sig`/`.att`/`.sbom`
    /// tag, or the `sha256-<hex>` fallback index of OCI referrers): the
    /// manifest it is attached to. Left out of the JSON for an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

fn first_volume() -> Vec<u32> {
    vec![1]
}

/// A blob in a [`BillOfContents`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The volume that holds it (or, with `part`, that part of it). A blob
    /// several images of different volumes share is listed once per volume.
    pub volume: u32,
    /// Set when the blob is larger than a volume and cut into parts: which
    /// part this volume holds, at [`BillPart::entry_name`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<BillPart>,
}

/// One part of a blob cut across volumes ([`BillBlob::part`]); hpn joins
/// the parts in order and checks each part's digest and the whole blob's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillPart {
    /// Its number among the blob's parts, from 1.
    pub number: u32,
    /// How many parts the blob has.
    pub count: u32,
    /// Where in the blob it starts.
    pub offset: u64,
    /// Its length in bytes.
    pub size: u64,
    /// The sha256 of its bytes.
    pub digest: Digest,
}

impl BillPart {
    /// The tar entry holding the part of blob `blob`: `hpn-parts/<hex>.<number>`.
    pub fn entry_name(&self, blob: &Digest) -> String {
        part_entry_name(blob, self.number)
    }
}

pub(crate) fn part_entry_name(blob: &Digest, number: u32) -> String {
    format!("{PARTS_DIR}{}.{number:03}", blob.hex())
}

/// A blob a differential bundle expects at the far side (see
/// [`BillOfContents::base_blobs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The set id of the bundle, or the id of the inventory, that had it.
    pub set: String,
    /// The file that was read as that base (`hpn save --since FILE`).
    pub file: String,
}

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
