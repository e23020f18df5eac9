//! The `archive_reader` fuzz target's seeds and regression inputs (tests/fuzz/), through the
//! very check the target runs (tests/fuzz/archive_reader.rs, which fuzz/ includes), so they run
//! on every `cargo test`; and the generator of those seeds
//! (`cargo test -p hpn-archive --test fuzz_regressions -- --ignored`).

#[path = "fuzz/archive_reader.rs"]
mod archive_reader;
mod reader_support;

use std::path::{Path, PathBuf};

use hpn_archive::{ArchiveCompression, ArchiveImage, ArchiveReader, ArchiveWriter, DockerImageEntry};
use hpn_oci::{Descriptor, Digest, media_type};
use hpn_testkit::fuzz;
use reader_support::{RawTar, config_for, image_manifest, layer_blob, layer_tar, zstd};
use serde_json::json;

/// This crate's fuzz inputs.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

#[test]
fn archive_inputs_pass_the_fuzz_check() {
    assert!(fuzz::replay(&fuzz_dir(), "archive_reader", archive_reader::check) >= 7);
}

/// The seeds are real archives: each opens, with at least one image. (Noise would leave the
/// fuzzer to find its way into the reader on its own.)
#[test]
fn archive_seeds_open() {
    for input in fuzz::inputs(&fuzz_dir(), "archive_reader") {
        if !input.file_name().unwrap().to_string_lossy().starts_with("seed-") {
            continue;
        }
        let scratch = tempfile::tempdir().unwrap();
        let reader = ArchiveReader::open_with_temp_dir(&input, scratch.path())
            .unwrap_or_else(|error| panic!("{}: {error}", input.display()));
        assert!(!reader.images().is_empty(), "{}", input.display());
    }
}

/// Writes the seed corpora of the `archive_reader` and `manifest` targets: small archives in
/// each layout the reader knows, and the manifests, indexes and configs of the archives.
/// Run by hand (`-- --ignored`) after a change to the formats; the output is committed.
#[test]
#[ignore = "writes the committed seed corpus; run by hand"]
fn write_seeds() {
    let archives = fuzz_dir().join("corpus/archive_reader");
    // The `manifest` target fuzzes hpn-oci, which keeps its inputs; only this generator, run
    // by hand in the workspace, writes there.
    let manifests = fuzz_dir().join("../../../oci/tests/fuzz/corpus/manifest");
    std::fs::create_dir_all(&archives).unwrap();
    let nginx = Image::new("nginx", &["gzip"], false);
    let app = Image::new("app", &["gzip", "zstd"], true);
    let index = index_of(&[(&app, "amd64"), (&Image::new("app-arm64", &["gzip"], true), "arm64")]);

    let hybrid = hybrid(&nginx, &app, &index, ArchiveCompression::None);
    write(&archives, "seed-hybrid.tar", &hybrid);
    write(&archives, "seed-hybrid.tar.gz", &self::hybrid(&nginx, &app, &index, ArchiveCompression::Gzip));
    write(&archives, "seed-docker-save-legacy.tar", &docker_save_legacy(&nginx));
    let layout = oci_layout(&app, &index);
    write(&archives, "seed-oci-layout.tar", &layout);
    write(&archives, "seed-oci-layout.tar.zst", &zstd(&layout));
    write(&archives, "seed-crane.tar", &crane(&nginx));
    write(&archives, "seed-pax-gnu-links.tar", &pax_gnu_links(&nginx));

    write(&manifests, "seed-archive-docker-manifest", &nginx.manifest);
    write(&manifests, "seed-archive-oci-manifest", &app.manifest);
    write(&manifests, "seed-archive-oci-index", &index);
    write(&manifests, "seed-config-archive-docker", &nginx.config);
    let regressions = fuzz_dir().join("regressions/archive_reader");
    std::fs::create_dir_all(&regressions).unwrap();
    write(&regressions, "index-fanout.tar", &index_fanout(40));
    // Check what was written, as the committed seeds are checked.
    archive_inputs_pass_the_fuzz_check();
    archive_seeds_open();
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// One image's blobs, as a registry has them; tiny, so the seeds stay a few KB.
struct Image {
    /// (blob, media type, uncompressed tar)
    layers: Vec<(Vec<u8>, &'static str, Vec<u8>)>,
    config: Vec<u8>,
    manifest: Vec<u8>,
    manifest_type: &'static str,
}

impl Image {
    fn new(seed: &str, compressions: &[&str], oci: bool) -> Self {
        let layers: Vec<_> = compressions
            .iter()
            .enumerate()
            .map(|(position, compression)| {
                let tar = layer_tar(&format!("{seed}/{position}"), seed.as_bytes());
                let (blob, media) = layer_blob(&tar, compression, oci);
                (blob, media, tar)
            })
            .collect();
        let tars: Vec<&[u8]> = layers.iter().map(|(_, _, tar)| tar.as_slice()).collect();
        let config = config_for(&tars);
        let (manifest, manifest_type) =
            image_manifest(&config, layers.iter().map(|(blob, media, _)| (blob.as_slice(), *media)), oci);
        Self { layers, config, manifest, manifest_type }
    }

    fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.manifest_type, self.digest(), self.manifest.len() as u64)
    }

    fn blobs(&self) -> Vec<(Digest, &[u8])> {
        let mut blobs: Vec<(Digest, &[u8])> =
            self.layers.iter().map(|(blob, _, _)| (Digest::of(blob), blob.as_slice())).collect();
        blobs.push((Digest::of(&self.config), &self.config));
        blobs.push((self.digest(), &self.manifest));
        blobs
    }
}

/// A two-platform OCI index of which only the first platform's image is in the archives.
fn index_of(platforms: &[(&Image, &str)]) -> Vec<u8> {
    let manifests: Vec<_> = platforms
        .iter()
        .map(|(image, architecture)| {
            json!({"mediaType": image.manifest_type, "digest": image.digest(), "size": image.manifest.len(),
                   "platform": {"architecture": architecture, "os": "linux"}})
        })
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": manifests}))
        .unwrap()
}

/// `hpn save`'s own archive, by the real writer.
fn hybrid(nginx: &Image, app: &Image, index: &[u8], compression: ArchiveCompression) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.tar");
    let mut writer = ArchiveWriter::create(&path, compression).unwrap();
    for (digest, blob) in nginx.blobs().into_iter().chain(app.blobs()) {
        writer.add_blob_bytes(&digest, blob).unwrap();
    }
    writer.add_blob_bytes(&Digest::of(index), index).unwrap();
    let mut docker_layers = |image: &Image| -> Vec<Digest> {
        // docker cannot read zstd layers: the writer's caller adds an uncompressed copy.
        image
            .layers
            .iter()
            .map(|(blob, media, tar)| {
                if *media == media_type::OCI_LAYER_ZSTD {
                    writer.add_blob_bytes(&Digest::of(tar), tar).unwrap();
                    Digest::of(tar)
                } else {
                    Digest::of(blob)
                }
            })
            .collect()
    };
    let nginx_layers = docker_layers(nginx);
    let app_layers = docker_layers(app);
    writer.add_image(ArchiveImage {
        descriptor: nginx.descriptor(),
        name: "docker.io/library/nginx:1.25".into(),
        tag: Some("1.25".into()),
        docker: Some(DockerImageEntry {
            config: Digest::of(&nginx.config),
            repo_tags: vec!["nginx:1.25".into()],
            layers: nginx_layers,
        }),
    });
    writer.add_image(ArchiveImage {
        descriptor: Descriptor::new(media_type::OCI_INDEX, Digest::of(index), index.len() as u64),
        name: "127.0.0.1:5000/team/app:2".into(),
        tag: Some("2".into()),
        docker: Some(DockerImageEntry {
            config: Digest::of(&app.config),
            repo_tags: vec!["127.0.0.1:5000/team/app:2".into()],
            layers: app_layers,
        }),
    });
    writer.finish().unwrap();
    std::fs::read(&path).unwrap()
}

/// `docker save` of Docker 24 and older: a directory a layer (`<id>/layer.tar`, `json`,
/// `VERSION`), the config as `<hex>.json`, manifest.json and repositories; the second layer
/// is a symlink to the first, as Docker writes a layer it already wrote.
fn docker_save_legacy(nginx: &Image) -> Vec<u8> {
    let mut tar = RawTar::new();
    let nginx_tar = &nginx.layers[0].2;
    let nginx_id = Digest::of(b"nginx layer id").hex().to_owned();
    let app_id = Digest::of(b"app layer id").hex().to_owned();
    tar.dir(&format!("{nginx_id}/"))
        .file(&format!("{nginx_id}/VERSION"), b"1.0")
        .file(&format!("{nginx_id}/json"), format!(r#"{{"id":"{nginx_id}"}}"#).as_bytes())
        .file(&format!("{nginx_id}/layer.tar"), nginx_tar);
    let config = config_for(&[nginx_tar, nginx_tar]);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    tar.file(&config_name, &config);
    tar.dir(&format!("{app_id}/")).symlink(&format!("{app_id}/layer.tar"), &format!("../{nginx_id}/layer.tar"));
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": ["nginx:1.25", "registry.example.com/web/nginx:1.25"],
        "Layers": [format!("{nginx_id}/layer.tar"), format!("{app_id}/layer.tar")],
    }]);
    tar.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let repositories = json!({"nginx": {"1.25": app_id}, "registry.example.com/web/nginx": {"1.25": app_id}});
    tar.file("repositories", &serde_json::to_vec(&repositories).unwrap());
    tar.finish()
}

/// An `oci-archive:` tar as skopeo writes it: `oci-layout`, `index.json` naming an index,
/// `blobs/sha256/`, with `./`-prefixed names and directory entries.
fn oci_layout(app: &Image, index: &[u8]) -> Vec<u8> {
    let mut tar = RawTar::new();
    tar.dir("./").dir("./blobs/").dir("./blobs/sha256/");
    for (digest, blob) in app.blobs() {
        tar.file(&format!("./blobs/sha256/{}", digest.hex()), blob);
    }
    tar.file(&format!("./blobs/sha256/{}", Digest::of(index).hex()), index);
    tar.file("./oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let top = json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": [{
        "mediaType": media_type::OCI_INDEX, "digest": Digest::of(index), "size": index.len(),
        "annotations": {"org.opencontainers.image.ref.name": "2"},
    }]});
    tar.file("./index.json", &serde_json::to_vec(&top).unwrap());
    tar.finish()
}

/// go-containerregistry's `tarball`: the config named `sha256:<hex>`, layers `<hex>.tar.gz`,
/// manifest.json with `LayerSources`, no repositories.
fn crane(nginx: &Image) -> Vec<u8> {
    let (blob, media, tar_bytes) = &nginx.layers[0];
    let mut tar = RawTar::new();
    let config_name = format!("sha256:{}", Digest::of(&nginx.config).hex());
    let layer_name = format!("{}.tar.gz", Digest::of(blob).hex());
    tar.file(&config_name, &nginx.config).file(&layer_name, blob);
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": ["quay.io/org/nginx:1.25"],
        "Layers": [layer_name],
        "LayerSources": {Digest::of(tar_bytes).to_string(): {"mediaType": media, "digest": Digest::of(blob), "size": blob.len()}},
    }]);
    tar.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    tar.finish()
}

/// A docker-only archive whose names come through PAX `path` records, a GNU long name, and a
/// hard link: the tar extensions real writers use.
fn pax_gnu_links(nginx: &Image) -> Vec<u8> {
    let layer = &nginx.layers[0].2;
    let long_dir = "d".repeat(120);
    let mut tar = RawTar::new();
    tar.pax(&[("path", format!("{long_dir}/layer.tar").as_bytes())]).file("PaxHeaders/layer.tar", layer);
    let config = config_for(&[layer, layer]);
    tar.gnu_long_name(format!("{long_dir}/config.json").as_bytes()).file("././@LongLink-config", &config);
    tar.pax(&[("linkpath", format!("{long_dir}/layer.tar").as_bytes())]).hardlink("second/layer.tar", "short");
    let manifest = json!([{
        "Config": format!("{long_dir}/config.json"),
        "RepoTags": ["localhost:5000/long:1"],
        "Layers": [format!("{long_dir}/layer.tar"), "second/layer.tar"],
    }]);
    tar.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    tar.finish()
}

/// Four levels of indexes, each listing the level below `fanout` times over, above one image
/// manifest. The reader checked every path through them, fanout⁴ of them: with a fanout of
/// 40 a 30 KB archive took minutes to open (a hang to the fuzzer), with 1000 it would take
/// longer than anyone waits. Each manifest is now checked once.
fn index_fanout(fanout: usize) -> Vec<u8> {
    let app = Image::new("app", &["gzip"], true);
    let mut tar = RawTar::new();
    for (digest, blob) in app.blobs() {
        tar.file(&format!("blobs/sha256/{}", digest.hex()), blob);
    }
    let mut child = app.descriptor();
    for _ in 0..4 {
        let manifests = vec![&child; fanout];
        let index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": manifests}),
        )
        .unwrap();
        tar.file(&format!("blobs/sha256/{}", Digest::of(&index).hex()), &index);
        child = Descriptor::new(media_type::OCI_INDEX, Digest::of(&index), index.len() as u64);
    }
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar.file("index.json", &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [child]})).unwrap());
    tar.finish()
}

#[test]
fn an_index_listing_its_manifests_many_times_over_opens_at_once() {
    let archive = index_fanout(1000);
    let scratch = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let reader = ArchiveReader::open_reader(archive.as_slice(), Path::new("fanout.tar"), scratch.path()).unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "took {:?}", start.elapsed());
    assert_eq!(reader.images().len(), 1);
    assert_eq!(reader.images()[0].manifest.media_type, media_type::OCI_INDEX);
}
