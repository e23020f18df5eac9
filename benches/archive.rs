//! The archive: writing the tar (hpn_archive::ArchiveWriter, from memory and from store files)
//! and indexing one to read it (hpn_archive::ArchiveReader::open).
//!
//! `cargo bench --bench archive`.

mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hpn_archive::{ArchiveCompression, ArchiveImage, ArchiveReader, ArchiveWriter, DockerImageEntry};
use hpn_oci::{Descriptor, Digest, media_type};

fn blobs(count: usize, len: usize, seed: u64) -> Vec<(Digest, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let bytes = common::incompressible(len, seed + i as u64);
            (Digest::of(&bytes), bytes)
        })
        .collect()
}

fn write_tar(c: &mut Criterion) {
    let mut group = c.benchmark_group("archive_write");
    group.sample_size(10).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("bench.tar");

    // Manifests and configs come from memory; add_blob_bytes hashes them to check the digest.
    let small = blobs(64, 64 << 10, 100);
    group.throughput(Throughput::Bytes(small.iter().map(|(_, b)| b.len() as u64).sum()));
    group.bench_function("add_blob_bytes_64x64KiB", |b| {
        b.iter(|| {
            let mut writer = ArchiveWriter::create(&target, ArchiveCompression::None).expect("create");
            for (digest, bytes) in &small {
                writer.add_blob_bytes(digest, black_box(bytes)).expect("add");
            }
            // Dropped unfinished: no fsync, the temp file goes away.
            drop(writer);
        });
    });

    // Layers come from store files, copied file to file in the kernel.
    let layers = blobs(8, 4 << 20, 200);
    let files: Vec<(Digest, PathBuf)> = layers
        .iter()
        .map(|(digest, bytes)| {
            let path = dir.path().join(digest.hex());
            std::fs::write(&path, bytes).expect("write layer file");
            (digest.clone(), path)
        })
        .collect();
    group.throughput(Throughput::Bytes(layers.iter().map(|(_, b)| b.len() as u64).sum()));
    group.bench_function("add_blob_from_file_8x4MiB", |b| {
        b.iter(|| {
            let mut writer = ArchiveWriter::create(&target, ArchiveCompression::None).expect("create");
            for (digest, path) in &files {
                writer.add_blob_from_file(digest, path).expect("add");
            }
            drop(writer);
        });
    });
    group.finish();
}

/// A finished hybrid archive: one image of `layer_count` layers of `layer_len` bytes.
fn build_archive(path: &Path, layer_count: usize, layer_len: usize) -> u64 {
    let layers = blobs(layer_count, layer_len, 300);
    let diff_ids: Vec<String> = layers.iter().map(|(d, _)| d.to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("config");
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().map(|(d, b)| serde_json::json!({
            "mediaType": media_type::OCI_LAYER, "digest": d.to_string(), "size": b.len(),
        })).collect::<Vec<_>>(),
    }))
    .expect("manifest");
    let manifest_digest = Digest::of(&manifest);

    let mut writer = ArchiveWriter::create(path, ArchiveCompression::None).expect("create");
    for (digest, bytes) in &layers {
        writer.add_blob_bytes(digest, bytes).expect("layer");
    }
    writer.add_blob_bytes(&config_digest, &config).expect("config");
    writer.add_blob_bytes(&manifest_digest, &manifest).expect("manifest");
    writer.add_image(ArchiveImage {
        descriptor: Descriptor::new(media_type::OCI_MANIFEST, manifest_digest, manifest.len() as u64),
        name: "127.0.0.1:5000/bench/app:1".to_owned(),
        tag: Some("1".to_owned()),
        docker: Some(DockerImageEntry {
            config: config_digest,
            repo_tags: vec!["127.0.0.1:5000/bench/app:1".to_owned()],
            layers: layers.iter().map(|(d, _)| d.clone()).collect(),
        }),
    });
    writer.finish().expect("finish")
}

fn open_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("archive_open");
    group.sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("temp dir");
    // Many entries (what indexing walks) rather than many bytes (which it seeks over).
    let path = dir.path().join("index.tar");
    let size = build_archive(&path, 40, 256 << 10);
    group.throughput(Throughput::Bytes(size));
    group.bench_function("hybrid_40_layers", |b| {
        b.iter(|| {
            let reader = ArchiveReader::open(black_box(&path)).expect("open");
            assert_eq!(reader.images().len(), 1);
            reader
        });
    });
    group.finish();
}

criterion_group!(benches, write_tar, open_index);
criterion_main!(benches);
