//! Shared by the reader tests: hand-made tars (including ones no well-behaved
//! writer would produce), test images, and a checker that walks every blob an
//! opened archive's manifests reference.

#![allow(dead_code)]

use std::io::{Read, Write};

use hpn_archive::{ArchiveReader, ArchivedImage};
use hpn_oci::{Descriptor, Digest, ImageConfig, ParsedManifest, media_type};
use serde_json::json;

pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Writes tar blocks by hand, so tests can make any header they like.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    /// A ustar header with `name` written as is (no checks at all).
    pub fn header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> [u8; 512] {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_cksum();
        let mut block = [0u8; 512];
        block.copy_from_slice(header.as_bytes());
        block
    }

    pub fn raw_entry(&mut self, name: &[u8], kind: u8, data: &[u8], link: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(&Self::header(name, kind, data.len() as u64, link));
        self.data(data)
    }

    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(data);
        self.bytes.resize(self.bytes.len().div_ceil(512) * 512, 0);
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw_entry(name.as_bytes(), b'0', data, b"")
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.raw_entry(name.as_bytes(), b'5', b"", b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw_entry(name.as_bytes(), b'2', b"", target.as_bytes())
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw_entry(name.as_bytes(), b'1', b"", target.as_bytes())
    }

    /// A PAX extended header carrying `records` for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw_entry(b"PaxHeaders.0/x", b'x', &data, b"")
    }

    /// A GNU `././@LongLink` header naming the next entry.
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.raw_entry(b"././@LongLink", b'L', &data, b"")
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.extend_from_slice(&[0; 1024]);
        bytes
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// A layer tar holding one file.
pub fn layer_tar(path: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, path, content).unwrap();
    builder.into_inner().unwrap()
}

/// An image config for layers with these uncompressed tars.
pub fn config_for(layer_tars: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layer_tars.iter().map(|tar| Digest::of(tar).to_string()).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A layer blob as a registry holds it and its media type: `tar` compressed as `compression`
/// says ("gzip", "zstd", anything else for none), typed the Docker or the OCI way.
pub fn layer_blob(tar: &[u8], compression: &str, oci: bool) -> (Vec<u8>, &'static str) {
    match (compression, oci) {
        ("gzip", false) => (gzip(tar), media_type::DOCKER_LAYER_GZIP),
        ("gzip", true) => (gzip(tar), media_type::OCI_LAYER_GZIP),
        ("zstd", _) => (zstd(tar), media_type::OCI_LAYER_ZSTD),
        (_, false) => (tar.to_vec(), DOCKER_LAYER),
        (_, true) => (tar.to_vec(), media_type::OCI_LAYER),
    }
}

/// An image manifest (indented, as Docker writes them: any re-serialization would show) for
/// `config` and `layers` (blob, media type), with its media type.
pub fn image_manifest<'a>(
    config: &[u8],
    layers: impl IntoIterator<Item = (&'a [u8], &'a str)>,
    oci: bool,
) -> (Vec<u8>, &'static str) {
    let (manifest_type, config_type) = if oci {
        (media_type::OCI_MANIFEST, media_type::OCI_CONFIG)
    } else {
        (media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG)
    };
    let layer_json: Vec<_> = layers
        .into_iter()
        .map(|(blob, media)| json!({"mediaType": media, "digest": Digest::of(blob), "size": blob.len()}))
        .collect();
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": Digest::of(config), "size": config.len()},
        "layers": layer_json,
    }))
    .unwrap();
    (manifest, manifest_type)
}

pub fn manifest_json(items: &[(&str, &[&str], &[&str])]) -> Vec<u8> {
    let items: Vec<_> = items
        .iter()
        .map(|(config, tags, layers)| json!({"Config": config, "RepoTags": tags, "Layers": layers}))
        .collect();
    serde_json::to_vec(&items).unwrap()
}

pub fn read_all(mut reader: impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    bytes
}

pub fn decompressed(media_type: &str, blob: &[u8]) -> Vec<u8> {
    match media_type::layer_compression(media_type) {
        Some(media_type::LayerCompression::Gzip) => read_all(flate2::read::MultiGzDecoder::new(blob)),
        Some(media_type::LayerCompression::Zstd) => zstd::decode_all(blob).unwrap(),
        _ => blob.to_vec(),
    }
}

/// Streams the blob through `open_blob`, checks its size and digest, and
/// returns it.
pub fn stream_blob(reader: &ArchiveReader, descriptor: &Descriptor) -> Vec<u8> {
    let digest = &descriptor.digest;
    let blob = reader.open_blob(digest).unwrap().unwrap_or_else(|| panic!("blob {digest} is not findable"));
    assert_eq!(blob.size(), descriptor.size, "size of {digest}");
    assert_eq!(reader.blob_size(digest), Some(descriptor.size));
    let bytes = read_all(blob);
    assert_eq!(Digest::of(&bytes), *digest, "content of {digest}");
    bytes
}

/// What [`check_image`] saw.
#[derive(Debug, Default)]
pub struct Checked {
    /// Image manifests walked (one per platform present).
    pub manifests: Vec<(Digest, String)>,
    pub configs: Vec<Digest>,
    /// Layer descriptors, in manifest order.
    pub layers: Vec<Descriptor>,
}

/// Walks an image: its manifest (or index and the platforms present), each
/// config read with `read_blob`, each layer streamed with `open_blob` and
/// checked against its digest, size, and (decompressed) the config's DiffID.
pub fn check_image(reader: &ArchiveReader, image: &ArchivedImage) -> Checked {
    let manifest = &image.manifest;
    assert_eq!(Digest::of(&manifest.bytes), manifest.digest, "the manifest bytes are the digest's");
    assert_eq!(reader.read_blob(&manifest.digest, 1 << 20).unwrap(), manifest.bytes, "the manifest is a blob too");
    let mut checked = Checked::default();
    check_manifest(reader, &manifest.bytes, &manifest.media_type, &manifest.digest, &mut checked);
    checked
}

fn check_manifest(reader: &ArchiveReader, bytes: &[u8], media: &str, digest: &Digest, checked: &mut Checked) {
    let (parsed, media) = ParsedManifest::parse(bytes, Some(media)).unwrap();
    match parsed {
        ParsedManifest::Index(index) => {
            let mut present = 0;
            for child in &index.manifests {
                if !reader.contains_blob(&child.digest) {
                    continue;
                }
                present += 1;
                let child_bytes = reader.read_blob(&child.digest, 1 << 20).unwrap();
                check_manifest(reader, &child_bytes, &child.media_type, &child.digest, checked);
            }
            assert!(present > 0, "index {digest} has no platform in the archive");
        }
        ParsedManifest::Image(manifest) => {
            checked.manifests.push((digest.clone(), media));
            let config_bytes = reader.read_blob(&manifest.config.digest, 1 << 20).unwrap();
            assert_eq!(config_bytes.len() as u64, manifest.config.size);
            let config = ImageConfig::parse(&config_bytes).unwrap();
            assert_eq!(config.rootfs.diff_ids.len(), manifest.layers.len());
            checked.configs.push(manifest.config.digest.clone());
            for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
                let blob = stream_blob(reader, layer);
                let tar = decompressed(&layer.media_type, &blob);
                assert_eq!(Digest::of(&tar), *diff_id, "DiffID of layer {} ({})", layer.digest, layer.media_type);
                checked.layers.push(layer.clone());
            }
        }
    }
}

/// The image carrying `name`, or a panic listing what there is.
pub fn image_named<'a>(reader: &'a ArchiveReader, name: &str) -> &'a ArchivedImage {
    reader.images().iter().find(|image| image.names.iter().any(|n| n == name)).unwrap_or_else(|| {
        let names: Vec<_> = reader.images().iter().map(|image| &image.names).collect();
        panic!("no image named {name}; there are {names:?}")
    })
}
