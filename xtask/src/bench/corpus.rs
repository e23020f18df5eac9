//! The images the bench measures: the fixture corpus as the bench sees it (the images, and the
//! blobs `hpn save` has to move), and the images it generates itself for the scaling and large
//! runs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::Result;
use hpn_testkit::fixtures::media_types::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use hpn_testkit::fixtures::{self, PushedFixtures};
use hpn_testkit::http::{Body, Client};
use hpn_testkit::sha256_digest;
use serde_json::json;

use super::MB;
use crate::human_size;

#[derive(Debug, Clone)]
pub(super) struct BenchImage {
    /// Fixture name, e.g. `app-a`.
    pub(super) name: String,
    /// What goes into the image list: `A/fixtures/app-a:1`, or a digest reference.
    pub(super) source: String,
    /// The tag a copy gets in registry B (`bench` for an image that has none).
    pub(super) dest_tag: String,
    /// Whether skopeo can write it as a docker-archive (it cannot for zstd layers: skopeo #1286).
    pub(super) tagged: bool,
}

impl BenchImage {
    /// The image in registry A, as skopeo and `hpn copy` name it.
    pub(super) fn source_url(&self) -> String {
        format!("docker://{}", self.source)
    }

    /// Where a copy of it goes in `registry`.
    pub(super) fn dest_url(&self, registry: &str) -> String {
        format!("docker://{registry}/{}:{}", self.name, self.dest_tag)
    }
}

#[derive(Debug)]
pub(super) struct Corpus {
    pub(super) images: Vec<BenchImage>,
    /// digest → (a repository that has it, size): configs and layers of the linux/amd64 images.
    pub(super) blobs: BTreeMap<String, (String, u64)>,
    /// All blobs of the fixture set, every platform.
    pub(super) set_bytes: u64,
    pub(super) layers: usize,
    pub(super) max_layers: (String, usize),
    pub(super) shared_base: usize,
    pub(super) zstd_images: Vec<String>,
}

impl Corpus {
    pub(super) fn new(pushed: &PushedFixtures, set_bytes: u64) -> Corpus {
        let mut images = Vec::new();
        let mut blobs = BTreeMap::new();
        let mut layer_digests = BTreeSet::new();
        let mut max_layers = (String::new(), 0);
        let mut zstd_images = Vec::new();
        let base_layer = pushed.get("base").map(|b| b.amd64().layers[0].digest.clone());
        let mut shared_base = 0;
        for image in &pushed.images {
            let tagged = !image.tags.is_empty();
            images.push(BenchImage {
                name: image.name.clone(),
                source: image.reference.clone(),
                dest_tag: image.tags.first().cloned().unwrap_or_else(|| "bench".to_owned()),
                tagged,
            });
            let platform = image.amd64();
            blobs.entry(platform.config.digest.clone()).or_insert((image.repository.clone(), platform.config.size));
            for layer in &platform.layers {
                blobs.entry(layer.digest.clone()).or_insert((image.repository.clone(), layer.size));
                layer_digests.insert(layer.digest.clone());
            }
            if platform.layers.len() > max_layers.1 {
                max_layers = (image.name.clone(), platform.layers.len());
            }
            if platform.layers.iter().any(|l| l.compression == fixtures::Compression::Zstd) {
                zstd_images.push(image.name.clone());
            }
            if base_layer.as_ref().is_some_and(|b| platform.layers.iter().any(|l| &l.digest == b)) {
                shared_base += 1;
            }
        }
        Corpus { images, blobs, set_bytes, layers: layer_digests.len(), max_layers, shared_base, zstd_images }
    }

    pub(super) fn unique_bytes(&self) -> u64 {
        self.blobs.values().map(|(_, size)| size).sum()
    }

    pub(super) fn summary(&self) -> String {
        format!(
            "corpus: {} images, {} unique amd64 layers + configs = {} ({:.0} MB); largest image {} with {} layers; \
             base layer shared by {} images",
            self.images.len(),
            self.blobs.len(),
            human_size(self.unique_bytes()),
            self.unique_bytes() as f64 / MB,
            self.max_layers.0,
            self.max_layers.1,
            self.shared_base
        )
    }

    /// The requirements on the corpus, as (requirement, measured, ok).
    pub(super) fn checks(&self) -> Vec<(String, String, bool)> {
        let bytes = self.unique_bytes() as f64 / MB;
        vec![
            ("≥ 5 images".to_owned(), self.images.len().to_string(), self.images.len() >= 5),
            (
                "≥ 300 MB unique compressed (what a linux/amd64 save moves)".to_owned(),
                format!("{bytes:.0} MB"),
                bytes >= 300.0,
            ),
            (
                "shared base layers".to_owned(),
                format!("base layer in {} images", self.shared_base),
                self.shared_base >= 2,
            ),
            (
                "one image ≥ 30 layers".to_owned(),
                format!("{}: {} layers", self.max_layers.0, self.max_layers.1),
                self.max_layers.1 >= 30,
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Generated images: tar layers, and the documents that make them an image. They are pushed with
// testkit's HTTP client and filled by its seeded RNG.

/// Writes a tar with one regular file of `size` bytes, whose content `content` produces in
/// pieces; returns the bytes written.
pub(super) fn write_tar_layer(
    out: &mut impl Write,
    name: &str,
    size: u64,
    mut content: impl FnMut(&mut [u8]),
) -> Result<u64> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        content(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let pad = (512 - size % 512) % 512;
    out.write_all(&vec![0u8; pad as usize + 1024])?;
    Ok(512 + size + pad + 1024)
}

/// Config and manifest for an OCI image of uncompressed layers, given as (digest, size): their
/// digests are their DiffIDs.
pub(super) fn image_documents(label: &str, layers: &[(String, u64)]) -> Result<(Vec<u8>, Vec<u8>)> {
    let diff_ids: Vec<&str> = layers.iter().map(|(d, _)| d.as_str()).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"org.opencontainers.image.title": label}, "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created": "2024-01-01T00:00:00Z", "created_by": "hpn bench"})).collect::<Vec<_>>(),
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
        "layers": layers.iter().map(|(d, size)| json!({"mediaType": OCI_LAYER, "digest": d, "size": size})).collect::<Vec<_>>(),
    }))?;
    Ok((config, manifest))
}

/// Uploads a generated image's config and manifest (as `repo:1`), after its layers.
pub(super) fn push_image(client: &Client, repo: &str, config: &[u8], manifest: &[u8]) -> Result<()> {
    client.upload_blob(repo, &sha256_digest(config), Body::Bytes(config), None)?;
    client.put_manifest(repo, "1", OCI_MANIFEST, manifest, &sha256_digest(manifest))
}
