//! Manifest parsing (hpn_oci::ParsedManifest::parse): every image resolve parses an index or a
//! manifest, and the engine parses them again per platform.
//!
//! `cargo bench --bench manifest`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hpn_oci::{Digest, ParsedManifest, media_type};

fn digest(n: usize) -> String {
    Digest::of(format!("blob {n}").as_bytes()).to_string()
}

/// A Docker schema2 manifest of `layers` gzip layers, indented like Docker writes it.
fn image_manifest(layers: usize) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = (0..layers)
        .map(|i| {
            serde_json::json!({
                "mediaType": media_type::DOCKER_LAYER_GZIP,
                "size": 1_000_000 + i,
                "digest": digest(i),
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST,
        "config": {"mediaType": media_type::DOCKER_CONFIG, "size": 7023, "digest": digest(10_000)},
        "layers": layers,
    });
    serde_json::to_vec_pretty(&manifest).expect("json")
}

/// An OCI index of `platforms` manifests with platforms and annotations, compact.
fn index(platforms: usize) -> Vec<u8> {
    let archs = ["amd64", "arm64", "arm", "ppc64le", "s390x", "386", "riscv64", "mips64le"];
    let manifests: Vec<serde_json::Value> = (0..platforms)
        .map(|i| {
            serde_json::json!({
                "mediaType": media_type::OCI_MANIFEST,
                "digest": digest(20_000 + i),
                "size": 1_500 + i,
                "platform": {"architecture": archs[i % archs.len()], "os": "linux", "variant": if i % 3 == 2 { Some("v7") } else { None }},
                "annotations": {"org.opencontainers.image.ref.name": format!("platform-{i}")},
            })
        })
        .collect();
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": manifests});
    serde_json::to_vec(&index).expect("json")
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("manifest_parse");
    group.sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    let cases = [
        ("docker_manifest_5_layers", image_manifest(5), None),
        ("docker_manifest_40_layers", image_manifest(40), None),
        ("oci_index_16_platforms", index(16), Some(media_type::OCI_INDEX)),
    ];
    for (name, bytes, content_type) in &cases {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| ParsedManifest::parse(black_box(bytes), *content_type).expect("parses"));
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
