//! What is served: repositories, their tags, the manifests and blobs each may
//! hand out, and the referrers of each manifest, built from a list of named
//! images. A catalog is immutable; a changed store gets a new one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use hpn_oci::{Descriptor, Digest, ParsedManifest, Reference, media_type};
use serde::{Deserialize, Serialize};

/// Where manifests come from: the store or the archives. Reads must verify
/// the bytes against the digest.
pub(crate) trait ManifestReader {
    /// The manifest's bytes, `Ok(None)` when the source does not hold it.
    fn read_manifest(&self, digest: &Digest) -> Result<Option<Bytes>, String>;
}

/// A named image as its source lists it.
#[derive(Debug, Clone)]
pub(crate) struct NamedImage {
    /// The name as stored (`docker.io/library/nginx:1.25`).
    pub name: String,
    /// Its top manifest or index.
    pub descriptor: Descriptor,
}

/// Two stored names that map to the same served `repository:tag` but to
/// different images. The first one listed is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// What clients ask for (`library/nginx:1.25`).
    pub served_as: String,
    /// The stored name that is served under it.
    pub kept: String,
    /// The stored name that is not reachable under it.
    pub hidden: String,
}

/// A manifest the catalog holds, verified, with what it points at.
#[derive(Debug)]
pub(crate) struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
    /// Child manifests (of an index).
    children: Vec<Digest>,
    /// Config and layers (of an image manifest).
    blobs: Vec<Digest>,
    /// The manifest it refers to (OCI 1.1 `subject`), and how it is listed
    /// among that manifest's referrers.
    referrer_of: Option<(Digest, Referrer)>,
}

/// One served repository.
#[derive(Debug, Default)]
pub(crate) struct Repository {
    pub tags: BTreeMap<String, Digest>,
    /// Every manifest reachable from the repository's names.
    pub manifests: HashMap<Digest, Arc<Manifest>>,
    /// Every config and layer those manifests list.
    pub blobs: HashSet<Digest>,
}

impl Repository {
    /// The manifests whose `subject` is `digest`, optionally only those of
    /// one artifact type, in digest order.
    pub fn referrers(&self, digest: &Digest, artifact_type: Option<&str>) -> Vec<Referrer> {
        let mut found: BTreeMap<Digest, Referrer> = BTreeMap::new();
        for manifest in self.manifests.values() {
            if let Some((subject, referrer)) = &manifest.referrer_of
                && subject == digest
            {
                found.insert(referrer.descriptor.digest.clone(), referrer.clone());
            }
        }
        // The distribution-spec fallback: an index tagged sha256-<hex> lists the referrers
        // that were pushed to registries without the API.
        let fallback_tag = format!("sha256-{}", digest.hex());
        if let Some(index) = self.tags.get(&fallback_tag).and_then(|digest| self.manifests.get(digest))
            && let Ok(index) = serde_json::from_slice::<ReferrersIndex>(&index.bytes)
        {
            for referrer in index.manifests {
                found.entry(referrer.descriptor.digest.clone()).or_insert(referrer);
            }
        }
        found
            .into_values()
            .filter(|referrer| artifact_type.is_none_or(|wanted| referrer.artifact_type.as_deref() == Some(wanted)))
            .collect()
    }
}

/// A descriptor in a referrers list: hpn_oci's [`Descriptor`] plus `artifactType`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Referrer {
    #[serde(flatten)]
    pub descriptor: Descriptor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct ReferrersIndex {
    manifests: Vec<Referrer>,
}

/// The referrers response: an OCI image index listing `referrers`.
pub(crate) fn referrers_index(referrers: &[Referrer]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": referrers,
    }))
    .expect("descriptors serialize")
}

/// Everything served, by repository name.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub repositories: BTreeMap<String, Repository>,
    /// Every manifest of every repository, by digest: reused when the next
    /// catalog is built, since content under a digest never changes.
    cache: HashMap<Digest, Arc<Manifest>>,
}

/// The fields of a manifest that say whether it is a referrer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerProbe {
    subject: Option<SubjectProbe>,
    artifact_type: Option<String>,
    config: Option<ConfigProbe>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct SubjectProbe {
    digest: Digest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigProbe {
    media_type: String,
}

impl Catalog {
    /// Builds the catalog of `images`, reading each manifest (and each child
    /// of an index) once; manifests already in `previous` are not read again.
    /// A child manifest the source does not hold (a platform that was not
    /// pulled) is left out; an image whose top manifest is unreadable is left
    /// out with a warning. Returns the name collisions too.
    pub fn build(
        images: &[NamedImage],
        keep_host: bool,
        reader: &dyn ManifestReader,
        previous: &Catalog,
    ) -> (Catalog, Vec<Collision>) {
        let mut catalog = Catalog::default();
        let mut collisions = Vec::new();
        // served repository:tag → stored name that claimed it
        let mut claimed: HashMap<(String, String), String> = HashMap::new();
        for image in images {
            let reference = match image.name.parse::<Reference>() {
                Ok(reference) => reference,
                Err(error) => {
                    tracing::warn!(name = %image.name, %error, "not serving an image whose name is not a reference");
                    continue;
                }
            };
            let repository_name = if keep_host { reference.name() } else { reference.repository().to_owned() };
            let Some(top) = catalog.load(&image.descriptor.digest, reader, previous, &image.name) else {
                continue;
            };
            if let Some(tag) = reference.tag() {
                let key = (repository_name.clone(), tag.to_owned());
                let repository = catalog.repositories.entry(repository_name.clone()).or_default();
                match repository.tags.get(tag) {
                    Some(existing) if *existing != top.digest => {
                        collisions.push(Collision {
                            served_as: format!("{repository_name}:{tag}"),
                            kept: claimed.get(&key).cloned().unwrap_or_default(),
                            hidden: image.name.clone(),
                        });
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        repository.tags.insert(tag.to_owned(), top.digest.clone());
                        claimed.insert(key, image.name.clone());
                    }
                }
            }
            let tree = catalog.tree(&top);
            let repository = catalog.repositories.entry(repository_name).or_default();
            for manifest in tree {
                repository.blobs.extend(manifest.blobs.iter().cloned());
                repository.manifests.insert(manifest.digest.clone(), manifest);
            }
        }
        (catalog, collisions)
    }

    /// A manifest by digest, from this catalog's cache, the previous one's,
    /// or the source; its children are loaded too.
    fn load(
        &mut self,
        digest: &Digest,
        reader: &dyn ManifestReader,
        previous: &Catalog,
        image: &str,
    ) -> Option<Arc<Manifest>> {
        if let Some(found) = self.cache.get(digest).or_else(|| previous.cache.get(digest)) {
            let found = Arc::clone(found);
            self.cache.insert(digest.clone(), Arc::clone(&found));
            for child in &found.children {
                self.load(child, reader, previous, image);
            }
            return Some(found);
        }
        let bytes = match reader.read_manifest(digest) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(image, %digest, %error, "not serving a manifest that cannot be read");
                return None;
            }
        };
        let manifest = match parse(bytes, digest) {
            Ok(manifest) => Arc::new(manifest),
            Err(error) => {
                tracing::warn!(image, %digest, %error, "not serving a manifest hpn cannot parse");
                return None;
            }
        };
        self.cache.insert(digest.clone(), Arc::clone(&manifest));
        for child in &manifest.children {
            self.load(child, reader, previous, image);
        }
        Some(manifest)
    }

    /// `top` and every loaded manifest below it.
    fn tree(&self, top: &Arc<Manifest>) -> Vec<Arc<Manifest>> {
        let mut tree = vec![Arc::clone(top)];
        let mut next = 0;
        while next < tree.len() {
            let children: Vec<Arc<Manifest>> =
                tree[next].children.iter().filter_map(|child| self.cache.get(child).cloned()).collect();
            for child in children {
                if !tree.iter().any(|seen| seen.digest == child.digest) {
                    tree.push(child);
                }
            }
            next += 1;
        }
        tree
    }
}

fn parse(bytes: Bytes, digest: &Digest) -> Result<Manifest, String> {
    let (parsed, media_type) = ParsedManifest::parse(&bytes, None).map_err(|error| error.to_string())?;
    let (children, blobs) = match &parsed {
        ParsedManifest::Index(index) => (index.manifests.iter().map(|d| d.digest.clone()).collect(), Vec::new()),
        ParsedManifest::Image(image) => {
            let mut blobs = vec![image.config.digest.clone()];
            blobs.extend(image.layers.iter().map(|layer| layer.digest.clone()));
            (Vec::new(), blobs)
        }
    };
    let probe: ReferrerProbe = serde_json::from_slice(&bytes).map_err(|error| error.to_string())?;
    let referrer_of = probe.subject.map(|subject| {
        let mut descriptor = Descriptor::new(&media_type, digest.clone(), bytes.len() as u64);
        descriptor.annotations = probe.annotations;
        // The spec: a manifest without artifactType is listed with its config's media type.
        let artifact_type = probe.artifact_type.or(probe.config.map(|config| config.media_type));
        (subject.digest, Referrer { descriptor, artifact_type })
    });
    Ok(Manifest { bytes, media_type, digest: digest.clone(), children, blobs, referrer_of })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Memory(HashMap<Digest, Bytes>);

    impl ManifestReader for Memory {
        fn read_manifest(&self, digest: &Digest) -> Result<Option<Bytes>, String> {
            Ok(self.0.get(digest).cloned())
        }
    }

    fn manifest(config: &str, extra: &str) -> Bytes {
        let config_digest = Digest::of(config.as_bytes());
        Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[]{extra}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            config.len()
        ))
    }

    fn named(name: &str, bytes: &Bytes) -> NamedImage {
        NamedImage {
            name: name.to_owned(),
            descriptor: Descriptor::new(media_type::OCI_MANIFEST, Digest::of(bytes), bytes.len() as u64),
        }
    }

    #[test]
    fn names_lose_their_host_and_collisions_are_reported() {
        let a = manifest("a", "");
        let b = manifest("b", "");
        let reader = Memory([(Digest::of(&a), a.clone()), (Digest::of(&b), b.clone())].into());
        let images = [
            named("docker.io/library/nginx:1.25", &a),
            named("127.0.0.1:5055/library/nginx:1.25", &b),
            named("127.0.0.1:5055/team/app:1", &b),
        ];
        let (catalog, collisions) = Catalog::build(&images, false, &reader, &Catalog::default());
        assert_eq!(catalog.repositories.keys().collect::<Vec<_>>(), ["library/nginx", "team/app"]);
        assert_eq!(catalog.repositories["library/nginx"].tags["1.25"], Digest::of(&a));
        assert_eq!(
            collisions,
            [Collision {
                served_as: "library/nginx:1.25".into(),
                kept: "docker.io/library/nginx:1.25".into(),
                hidden: "127.0.0.1:5055/library/nginx:1.25".into(),
            }]
        );
        // The hidden image's manifest does not belong to library/nginx.
        assert!(!catalog.repositories["library/nginx"].manifests.contains_key(&Digest::of(&b)));

        let (kept, collisions) = Catalog::build(&images, true, &reader, &catalog);
        assert!(collisions.is_empty());
        assert_eq!(
            kept.repositories.keys().collect::<Vec<_>>(),
            ["127.0.0.1:5055/library/nginx", "127.0.0.1:5055/team/app", "docker.io/library/nginx"]
        );
    }

    #[test]
    fn referrers_come_from_subjects_and_filter_by_artifact_type() {
        let image = manifest("image", "");
        let subject = format!(
            r#","subject":{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            media_type::OCI_MANIFEST,
            Digest::of(&image),
            image.len()
        );
        let signature = manifest("sig", &format!(r#"{subject},"artifactType":"application/example.sig""#));
        let sbom = manifest("sbom", &subject);
        let reader =
            Memory([&image, &signature, &sbom].into_iter().map(|bytes| (Digest::of(bytes), bytes.clone())).collect());
        let images = [named("h:1/app:1", &image), named("h:1/app:sig", &signature), named("h:1/app:sbom", &sbom)];
        let (catalog, _) = Catalog::build(&images, false, &reader, &Catalog::default());
        let repository = &catalog.repositories["app"];
        assert_eq!(repository.referrers(&Digest::of(&image), None).len(), 2);
        let signatures = repository.referrers(&Digest::of(&image), Some("application/example.sig"));
        assert_eq!(signatures.len(), 1);
        let index: serde_json::Value = serde_json::from_slice(&referrers_index(&signatures)).unwrap();
        assert_eq!(index["manifests"][0]["artifactType"], "application/example.sig");
        assert_eq!(index["manifests"][0]["digest"], Digest::of(&signature).to_string());
        assert!(index["manifests"][0].get("annotations").is_none());
        let untyped = repository.referrers(&Digest::of(&image), Some(media_type::OCI_CONFIG));
        assert_eq!(untyped[0].descriptor.digest, Digest::of(&sbom), "listed by its config's media type");
        assert!(repository.referrers(&Digest::of(&sbom), None).is_empty());
    }
}
