//! Attachments: signatures, SBOMs and attestations, manifests that refer to
//! a manifest hpn copies. Two schemes exist side by side, and hpn carries
//! both (see the crate README):
//!
//! - cosign's legacy tags `sha256-<hex>.sig`, `.att`, `.sbom` in the
//!   subject's repository;
//! - OCI 1.1 referrers, manifests with a `subject` descriptor, listed by the
//!   referrers API or, on a registry without it, by the image index tagged
//!   `sha256-<hex>` (the distribution spec's referrers tag schema).

use hpn_oci::{Descriptor, Digest, Reference, media_type};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::TransferError;

/// How deep attachments of attachments are followed (a signature of an SBOM
/// of an image is two levels): deeper chains are not a thing tools make, and
/// the bound keeps a cyclic or hostile graph from costing unbounded requests.
pub(crate) const MAX_DEPTH: usize = 4;

/// Attachments carried per image at most, all levels together: each costs a
/// manifest fetch and its blobs, so a repository with thousands of referrers
/// of one image is cut off with a warning rather than copied without end.
pub(crate) const MAX_PER_IMAGE: usize = 256;

/// How an attachment is tied to its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttachmentKind {
    /// cosign's `sha256-<hex>.sig` tag.
    Signature,
    /// cosign's `sha256-<hex>.att` tag.
    Attestation,
    /// cosign's `sha256-<hex>.sbom` tag.
    Sbom,
    /// An OCI 1.1 manifest whose `subject` is the manifest.
    Referrer,
}

impl AttachmentKind {
    /// The three legacy tag kinds, in the order they are looked up.
    pub const LEGACY: [AttachmentKind; 3] = [Self::Signature, Self::Attestation, Self::Sbom];

    /// The tag suffix of a legacy kind (`sig`, `att`, `sbom`); `None` for a referrer.
    pub fn legacy_suffix(self) -> Option<&'static str> {
        match self {
            Self::Signature => Some("sig"),
            Self::Attestation => Some("att"),
            Self::Sbom => Some("sbom"),
            Self::Referrer => None,
        }
    }

    /// A word for summaries and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signature => "signature",
            Self::Attestation => "attestation",
            Self::Sbom => "sbom",
            Self::Referrer => "referrer",
        }
    }
}

impl std::fmt::Display for AttachmentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The legacy cosign tag of `kind` for `subject`: `sha256-<hex>.sig`.
pub fn legacy_tag(subject: &Digest, kind: AttachmentKind) -> Option<String> {
    kind.legacy_suffix().map(|suffix| format!("{}.{suffix}", fallback_tag(subject)))
}

/// The referrers tag schema's tag for `subject`'s referrers: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// What a tag says about attachments: `sha256-<hex>.sig` (`.att`, `.sbom`)
/// is that legacy attachment of the manifest `sha256:<hex>`, `sha256-<hex>`
/// its fallback index (kind `None`); any other tag is not an attachment's.
pub fn parse_tag(tag: &str) -> Option<(Digest, Option<AttachmentKind>)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, kind) = match rest.split_once('.') {
        None => (rest, None),
        Some((hex, suffix)) => {
            (hex, Some(AttachmentKind::LEGACY.into_iter().find(|kind| kind.legacy_suffix() == Some(suffix))?))
        }
    };
    Some((Digest::from_sha256_hex(hex).ok()?, kind))
}

/// `image`'s repository with `tag`.
pub(crate) fn tagged(image: &Reference, tag: &str) -> Reference {
    Reference::new(image.registry(), image.repository(), Some(tag), None)
        .expect("a repository that parsed takes a tag made of a digest's hex")
}

/// A manifest found referring to a manifest being copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The scheme that ties it to its subject.
    pub kind: AttachmentKind,
    /// The attachment's own manifest.
    pub descriptor: Descriptor,
    /// Its artifact type when the listing says (a referrers list does).
    pub artifact_type: Option<String>,
    /// The manifest it is attached to.
    pub subject: Digest,
}

/// An attachment carried to the destination, as the summary and `--json` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedAttachment {
    /// The scheme that ties it to its subject.
    pub kind: AttachmentKind,
    /// What it is (see [`artifact_type`]).
    pub artifact_type: Option<String>,
    /// The attachment manifest's digest, the same at both ends.
    pub digest: Digest,
    /// The manifest it is attached to.
    pub subject: Digest,
}

/// Why an attachment did not travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    /// It is attached to an index that did not go whole: the destination
    /// needs every platform of an index, and one platform's manifest went
    /// instead, so nothing there could check it.
    IndexNotCopied,
    /// The destination cannot keep attachments (an archive).
    DestinationCannotKeep,
}

impl LeftReason {
    /// A word for `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IndexNotCopied => "index-not-copied",
            Self::DestinationCannotKeep => "destination-cannot-keep",
        }
    }
}

/// An attachment the source has that did not travel, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftAttachment {
    /// The scheme that ties it to its subject.
    pub kind: AttachmentKind,
    /// Its artifact type when the source's listing says.
    pub artifact_type: Option<String>,
    /// The attachment manifest's digest.
    pub digest: Digest,
    /// The manifest it is attached to.
    pub subject: Digest,
    /// Why it stayed behind.
    pub reason: LeftReason,
}

/// Which attachments a copy carries: all by default; none with
/// `--no-referrers`; only some artifact types with `--referrers-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentPolicy {
    enabled: bool,
    types: Vec<String>,
}

impl Default for AttachmentPolicy {
    fn default() -> Self {
        Self::all()
    }
}

impl AttachmentPolicy {
    /// Every attachment travels.
    pub fn all() -> Self {
        Self { enabled: true, types: Vec::new() }
    }

    /// No attachment is looked for.
    pub fn none() -> Self {
        Self { enabled: false, types: Vec::new() }
    }

    /// Only attachments of these artifact types ([`artifact_type`]); every
    /// attachment when `types` is empty.
    pub fn only(types: Vec<String>) -> Self {
        Self { enabled: true, types }
    }

    /// Whether attachments are looked for at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether an attachment of this artifact type travels.
    pub fn wants(&self, artifact_type: Option<&str>) -> bool {
        self.enabled
            && (self.types.is_empty() || artifact_type.is_some_and(|wanted| self.types.iter().any(|t| t == wanted)))
    }
}

/// The fields of an attachment manifest that say what it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestProbe {
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<MediaTypeProbe>,
    #[serde(default)]
    layers: Vec<MediaTypeProbe>,
    #[serde(default)]
    annotations: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaTypeProbe {
    media_type: String,
}

/// The OCI empty descriptor's media type, the config of most artifacts.
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// What an attachment is, for `--referrers-type` and the summary: its
/// `artifactType`, else its config's media type unless that says only
/// "image config" or "empty", else its first layer's media type. The last
/// step names cosign's legacy signatures (an image config, one
/// `application/vnd.dev.cosign.simplesigning.v1+json` layer) by what they
/// carry. `None` for bytes that are not a manifest.
pub fn artifact_type(manifest: &[u8]) -> Option<String> {
    let probe: ManifestProbe = serde_json::from_slice(manifest).ok()?;
    let generic =
        |media: &str| media == media_type::OCI_CONFIG || media == media_type::DOCKER_CONFIG || media == EMPTY_CONFIG;
    probe
        .artifact_type
        .or_else(|| probe.config.map(|config| config.media_type).filter(|media| !generic(media)))
        .or_else(|| probe.layers.into_iter().next().map(|layer| layer.media_type))
}

/// The entry a referrers list holds for a manifest, as the distribution
/// spec defines it: media type, digest, size, `artifactType` (else the
/// config's media type) and the manifest's annotations.
pub(crate) fn referrer_entry(manifest: &hpn_oci::RawManifest) -> Value {
    let mut entry = Map::new();
    entry.insert("mediaType".into(), Value::from(manifest.media_type.clone()));
    entry.insert("digest".into(), Value::from(manifest.digest.to_string()));
    entry.insert("size".into(), Value::from(manifest.bytes.len() as u64));
    if let Ok(probe) = serde_json::from_slice::<ManifestProbe>(&manifest.bytes) {
        if let Some(kind) = probe.artifact_type.or_else(|| probe.config.map(|config| config.media_type)) {
            entry.insert("artifactType".into(), Value::from(kind));
        }
        if let Some(annotations) = probe.annotations.filter(|annotations| !annotations.is_empty()) {
            entry.insert("annotations".into(), Value::Object(annotations));
        }
    }
    Value::Object(entry)
}

/// The referrers listed by a referrers API answer or a fallback index, as
/// attachments of `subject`. Entries hpn cannot read are skipped (logged):
/// the others still travel.
pub(crate) fn parse_referrers(list: &[u8], subject: &Digest) -> Result<Vec<Attachment>, String> {
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        manifests: Vec<Value>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        #[serde(flatten)]
        descriptor: Descriptor,
        #[serde(default)]
        artifact_type: Option<String>,
    }
    let list: List = serde_json::from_slice(list).map_err(|error| format!("not an image index: {error}"))?;
    Ok(list
        .manifests
        .into_iter()
        .filter_map(|entry| match serde_json::from_value::<Entry>(entry) {
            Ok(entry) => Some(Attachment {
                kind: AttachmentKind::Referrer,
                descriptor: entry.descriptor,
                artifact_type: entry.artifact_type,
                subject: subject.clone(),
            }),
            Err(error) => {
                tracing::warn!(%subject, %error, "skipping a referrers entry hpn cannot read");
                None
            }
        })
        .collect())
}

/// The attachments of `subject` that a place keeping them under names
/// lists: its legacy tags (`sha256-<hex>.sig`, `.att`, `.sbom`) and the
/// referrers its fallback index `sha256-<hex>` lists. The store (refs in
/// index.json) and archives (entries of their index.json) keep them so, and
/// this one reader serves both: `resolve` finds what a tag of the subject's
/// repository names, `read_index` reads a fallback index, and `place` says
/// where a tag is, for errors.
pub(crate) fn listed_under_tags(
    subject: &Digest,
    mut resolve: impl FnMut(&str) -> Result<Option<Descriptor>, TransferError>,
    mut read_index: impl FnMut(&Descriptor) -> Result<Vec<u8>, TransferError>,
    place: impl Fn(&str) -> String,
) -> Result<Vec<Attachment>, TransferError> {
    let mut found = Vec::new();
    for kind in AttachmentKind::LEGACY {
        let tag = legacy_tag(subject, kind).expect("a legacy kind has a tag");
        if let Some(descriptor) = resolve(&tag)? {
            found.push(Attachment { kind, descriptor, artifact_type: None, subject: subject.clone() });
        }
    }
    let fallback = fallback_tag(subject);
    if let Some(index) = resolve(&fallback)? {
        let bytes = read_index(&index)?;
        let referrers = parse_referrers(&bytes, subject)
            .map_err(|reason| TransferError::Referrers { context: place(&fallback), reason })?;
        found.extend(referrers);
    }
    Ok(found)
}

/// The fallback index (`sha256-<hex>` tag) with `entry` added: `existing`
/// kept whole, every entry someone else attached included, and `None` when
/// it lists that digest already (nothing to write).
pub(crate) fn merge_fallback_index(existing: Option<&[u8]>, entry: Value) -> Result<Option<Vec<u8>>, String> {
    let mut index = match existing {
        Some(bytes) => serde_json::from_slice::<Value>(bytes).map_err(|error| format!("not JSON: {error}"))?,
        None => serde_json::json!({ "schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": [] }),
    };
    let manifests = index
        .as_object_mut()
        .ok_or("not a JSON object")?
        .entry("manifests")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("its manifests are not a list")?;
    if manifests.iter().any(|listed| listed.get("digest") == entry.get("digest")) {
        return Ok(None);
    }
    manifests.push(entry);
    serde_json::to_vec(&index).map(Some).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(json: &str) -> hpn_oci::RawManifest {
        let bytes = bytes::Bytes::from(json.to_owned());
        hpn_oci::RawManifest { digest: Digest::of(&bytes), bytes, media_type: media_type::OCI_MANIFEST.to_owned() }
    }

    #[test]
    fn tags_name_the_subject_digest() {
        let subject = Digest::of(b"image");
        let hex = subject.hex();
        assert_eq!(fallback_tag(&subject), format!("sha256-{hex}"));
        assert_eq!(legacy_tag(&subject, AttachmentKind::Signature).unwrap(), format!("sha256-{hex}.sig"));
        assert_eq!(legacy_tag(&subject, AttachmentKind::Sbom).unwrap(), format!("sha256-{hex}.sbom"));
        assert_eq!(legacy_tag(&subject, AttachmentKind::Referrer), None);
    }

    #[test]
    fn attachment_tags_parse_back() {
        let subject = Digest::of(b"image");
        assert_eq!(parse_tag(&fallback_tag(&subject)), Some((subject.clone(), None)));
        let signature = legacy_tag(&subject, AttachmentKind::Attestation).unwrap();
        assert_eq!(parse_tag(&signature), Some((subject.clone(), Some(AttachmentKind::Attestation))));
        assert_eq!(parse_tag(&format!("{}.other", fallback_tag(&subject))), None);
        assert_eq!(parse_tag("sha256-abc"), None);
        assert_eq!(parse_tag("latest"), None);
    }

    #[test]
    fn artifact_type_prefers_the_declared_type_then_what_the_content_is() {
        let declared = r#"{"artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json"},"layers":[{"mediaType":"x"}]}"#;
        assert_eq!(artifact_type(declared.as_bytes()).as_deref(), Some("application/spdx+json"));
        let by_config = r#"{"config":{"mediaType":"application/vnd.example.config"},"layers":[]}"#;
        assert_eq!(artifact_type(by_config.as_bytes()).as_deref(), Some("application/vnd.example.config"));
        let cosign = r#"{"config":{"mediaType":"application/vnd.oci.image.config.v1+json"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json"}]}"#;
        assert_eq!(
            artifact_type(cosign.as_bytes()).as_deref(),
            Some("application/vnd.dev.cosign.simplesigning.v1+json")
        );
        assert_eq!(artifact_type(b"not json"), None);
    }

    #[test]
    fn policy_filters_by_artifact_type() {
        assert!(AttachmentPolicy::all().wants(None));
        assert!(!AttachmentPolicy::none().wants(Some("a")));
        let only = AttachmentPolicy::only(vec!["a".into()]);
        assert!(only.wants(Some("a")) && !only.wants(Some("b")) && !only.wants(None));
    }

    #[test]
    fn fallback_index_merges_without_dropping_others_entries() {
        let subject = Digest::of(b"image");
        let sbom = manifest(
            r#"{"schemaVersion":2,"artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"annotations":{"a":"b"}}"#,
        );
        let first = merge_fallback_index(None, referrer_entry(&sbom)).unwrap().unwrap();
        let listed = parse_referrers(&first, &subject).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].descriptor.digest, sbom.digest);
        assert_eq!(listed[0].artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(listed[0].descriptor.annotations.get("a").map(String::as_str), Some("b"));
        // Adding it again changes nothing.
        assert_eq!(merge_fallback_index(Some(&first), referrer_entry(&sbom)).unwrap(), None);

        // Someone else's entry, and a field hpn does not know, survive a merge.
        let theirs = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":3,"x-extra":1}}],"annotations":{{"k":"v"}}}}"#,
            media_type::OCI_INDEX,
            media_type::OCI_MANIFEST,
            Digest::of(b"theirs")
        );
        let merged = merge_fallback_index(Some(theirs.as_bytes()), referrer_entry(&sbom)).unwrap().unwrap();
        let value: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(value["manifests"].as_array().unwrap().len(), 2);
        assert_eq!(value["manifests"][0]["x-extra"], 1);
        assert_eq!(value["annotations"]["k"], "v");
        assert!(merge_fallback_index(Some(b"[1]"), referrer_entry(&sbom)).is_err());
    }
}
