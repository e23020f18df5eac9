//! OCI layout directories generated for scale tests: one small image under
//! many names, or an index that lists one manifest many times.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::sha256_digest;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A small single-platform image as descriptors (the blobs are in the layout).
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// The manifest's descriptor, as an index.json entry carries it.
    pub manifest: Value,
    /// The manifest's digest.
    pub digest: String,
}

/// Writes `dir` as an OCI layout holding one linux/amd64 image (an
/// uncompressed one-file layer) and returns it; add names with [`name_image`].
pub fn layout_with_image(dir: &Path) -> Result<LayoutImage> {
    fs::create_dir_all(dir.join("blobs/sha256")).with_context(|| format!("create {}", dir.display()))?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    let content = b"one small layer\n";
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, "hello.txt", &content[..])?;
    let layer = builder.into_inner()?;
    let layer_digest = write_blob(dir, &layer)?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))?;
    let config_digest = write_blob(dir, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))?;
    let digest = write_blob(dir, &manifest)?;
    let descriptor = json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
                            "platform": {"architecture": "amd64", "os": "linux"}});
    Ok(LayoutImage { manifest: descriptor, digest })
}

/// Writes index.json naming `image` once per name.
pub fn name_image(dir: &Path, image: &LayoutImage, names: impl IntoIterator<Item = String>) -> Result<()> {
    let entries: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let mut entry = image.manifest.clone();
            entry["annotations"] = json!({"org.opencontainers.image.ref.name": name});
            entry
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

/// An image index listing `image`'s manifest `copies` times; returns its bytes.
pub fn index_repeating(image: &LayoutImage, copies: usize) -> Vec<u8> {
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": vec![image.manifest.clone(); copies]});
    serde_json::to_vec(&index).expect("JSON serializes")
}

/// Stores `bytes` under their digest in the layout at `dir`; returns the digest.
pub fn write_blob(dir: &Path, bytes: &[u8]) -> Result<String> {
    let digest = sha256_digest(bytes);
    let path = dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
    Ok(digest)
}
