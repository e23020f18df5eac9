//! Hot path of every download: sha256 over the bytes (hpn_oci::Sha256Hasher, SHA-NI where the
//! CPU has it) and writing them into the store (hpn_store::BlobWriter).
//!
//! `cargo bench --bench digest_store`. Throughput is in bytes per second; compare runs with
//! `--save-baseline NAME` / `--baseline NAME` (see BENCHMARKS.md).

mod common;

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hpn_oci::{Digest, Sha256Hasher};
use hpn_store::Store;

fn sha256(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256");
    group.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let data = common::incompressible(16 << 20, 1);
    // 64 KiB is what a network read hands over; 1 MiB what a file copy does.
    for chunk in [64 << 10, 1 << 20] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("16MiB_in_chunks_of", chunk), &chunk, |b, &chunk| {
            b.iter(|| {
                let mut hasher = Sha256Hasher::new();
                for piece in data.chunks(chunk) {
                    hasher.update(black_box(piece));
                }
                hasher.finish()
            });
        });
    }
    group.finish();
}

fn blob_writer(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_blob_writer");
    group.sample_size(10).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let data = common::incompressible(16 << 20, 2);
    let digest = Digest::of(&data);
    group.throughput(Throughput::Bytes(data.len() as u64));

    // Hash + write into the temp file, then drop: what a download costs the CPU, without waiting
    // for the disk.
    group.bench_function("hash_and_write_16MiB", |b| {
        b.iter(|| {
            let mut writer = store.begin_blob(&digest, Some(data.len() as u64)).expect("begin");
            for piece in data.chunks(64 << 10) {
                writer.write_all(piece).expect("write");
            }
            writer.flush().expect("flush");
            drop(writer);
        });
    });

    // The whole ingest: hash, write, check the digest, fsync, rename into place.
    group.bench_function("hash_write_commit_16MiB", |b| {
        b.iter(|| {
            let mut writer = store.begin_blob(&digest, Some(data.len() as u64)).expect("begin");
            for piece in data.chunks(64 << 10) {
                writer.write_all(piece).expect("write");
            }
            writer.commit().expect("commit");
            std::fs::remove_file(store.blob_path(&digest)).expect("remove the blob for the next round");
        });
    });
    group.finish();
}

criterion_group!(benches, sha256, blob_writer);
criterion_main!(benches);
