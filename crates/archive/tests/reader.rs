//! ArchiveReader on archives made here: hpn's own hybrid archives (with the
//! writer), crane-style tarballs and docker-only archives built by hand, OCI
//! layout directories, whole-file compression, stdin, and hostile input.
//! Archives made by real Docker and skopeo are in reader_peers.rs.

mod reader_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hpn_archive::{ArchiveCompression, ArchiveError, ArchiveImage, ArchiveReader, ArchiveWriter, DockerImageEntry};
use hpn_oci::{Descriptor, Digest, media_type};
use reader_support::*;
use serde_json::json;

/// One image's blobs, as a registry would have them.
struct Image {
    layers: Vec<(Vec<u8>, &'static str)>,
    /// Uncompressed layer tars, base first.
    tars: Vec<Vec<u8>>,
    config: Vec<u8>,
    manifest: Vec<u8>,
    manifest_type: &'static str,
}

impl Image {
    /// Layers: (file content, compression) where compression is "gzip", "zstd" or "none".
    fn new(seed: &str, layers: &[&'static str], oci: bool) -> Self {
        let tars: Vec<Vec<u8>> = (0..layers.len())
            .map(|position| layer_tar(&format!("{seed}/{position}"), format!("{seed} layer {position}").as_bytes()))
            .collect();
        let blobs: Vec<(Vec<u8>, &'static str)> =
            tars.iter().zip(layers).map(|(tar, compression)| layer_blob(tar, compression, oci)).collect();
        let tar_refs: Vec<&[u8]> = tars.iter().map(Vec::as_slice).collect();
        let config = config_for(&tar_refs);
        let (manifest, manifest_type) =
            image_manifest(&config, blobs.iter().map(|(blob, media)| (blob.as_slice(), *media)), oci);
        Self { layers: blobs, tars, config, manifest, manifest_type }
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.manifest_type, Digest::of(&self.manifest), self.manifest.len() as u64)
    }

    fn add_to(&self, writer: &mut ArchiveWriter) {
        for (blob, _) in &self.layers {
            writer.add_blob_bytes(&Digest::of(blob), blob).unwrap();
        }
        writer.add_blob_bytes(&Digest::of(&self.config), &self.config).unwrap();
        writer.add_blob_bytes(&Digest::of(&self.manifest), &self.manifest).unwrap();
    }

    /// The manifest.json entry hpn's writer makes: zstd layers replaced by an
    /// uncompressed copy named by DiffID (added here).
    fn docker_entry(&self, writer: &mut ArchiveWriter, repo_tags: &[&str]) -> DockerImageEntry {
        let mut layers = Vec::new();
        for ((blob, media), tar) in self.layers.iter().zip(&self.tars) {
            if *media == media_type::OCI_LAYER_ZSTD {
                writer.add_blob_bytes(&Digest::of(tar), tar).unwrap();
                layers.push(Digest::of(tar));
            } else {
                layers.push(Digest::of(blob));
            }
        }
        DockerImageEntry {
            config: Digest::of(&self.config),
            repo_tags: repo_tags.iter().map(|tag| (*tag).to_owned()).collect(),
            layers,
        }
    }
}

fn hybrid_archive(path: &Path, compression: ArchiveCompression) -> (Image, Image, Image, Vec<u8>) {
    let nginx = Image::new("nginx", &["gzip", "gzip"], false);
    let app = Image::new("app", &["gzip", "zstd", "none"], true);
    let pinned = Image::new("pinned", &["gzip"], true);
    // A two-platform index of which only the app manifest was saved.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [
            {"mediaType": media_type::OCI_MANIFEST, "digest": Digest::of(&app.manifest), "size": app.manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": media_type::OCI_MANIFEST, "digest": Digest::of(b"arm64 manifest not saved"), "size": 24,
             "platform": {"architecture": "arm64", "os": "linux"}},
        ]
    }))
    .unwrap();

    let mut writer = ArchiveWriter::create(path, compression).unwrap();
    nginx.add_to(&mut writer);
    app.add_to(&mut writer);
    pinned.add_to(&mut writer);
    writer.add_blob_bytes(&Digest::of(&index), &index).unwrap();
    let nginx_docker = nginx.docker_entry(&mut writer, &["nginx:latest"]);
    let nginx_docker_1 = nginx.docker_entry(&mut writer, &["nginx:1"]);
    let app_docker = app.docker_entry(&mut writer, &["registry.example.com:5000/team/app:2"]);
    let pinned_docker = pinned.docker_entry(&mut writer, &[]);
    writer.add_image(ArchiveImage {
        descriptor: nginx.descriptor(),
        name: "docker.io/library/nginx:latest".into(),
        tag: Some("latest".into()),
        docker: Some(nginx_docker),
    });
    writer.add_image(ArchiveImage {
        descriptor: nginx.descriptor(),
        name: "docker.io/library/nginx:1".into(),
        tag: Some("1".into()),
        docker: Some(nginx_docker_1),
    });
    writer.add_image(ArchiveImage {
        descriptor: Descriptor::new(media_type::OCI_INDEX, Digest::of(&index), index.len() as u64),
        name: "registry.example.com:5000/team/app:2".into(),
        tag: Some("2".into()),
        docker: Some(app_docker),
    });
    writer.add_image(ArchiveImage {
        descriptor: pinned.descriptor(),
        name: format!("registry.example.com:5000/pinned@{}", Digest::of(&pinned.manifest)),
        tag: None,
        docker: Some(pinned_docker),
    });
    writer.finish().unwrap();
    (nginx, app, pinned, index)
}

fn files_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn hybrid_archives_keep_original_manifests_and_every_name() {
    for compression in [ArchiveCompression::None, ArchiveCompression::Gzip, ArchiveCompression::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.tar");
        let (nginx, app, pinned, index) = hybrid_archive(&path, compression);
        let scratch = tempfile::tempdir().unwrap();
        let reader = ArchiveReader::open_with_temp_dir(&path, scratch.path()).unwrap();
        // The decompressed copy is an unnamed file: nothing shows in the
        // directory even while the reader uses it, nothing is left after.
        assert_eq!(files_in(scratch.path()), Vec::<String>::new(), "{compression:?}");
        assert_eq!(reader.compression(), compression);
        assert_eq!(reader.path(), path);

        let images = reader.images();
        assert_eq!(images.len(), 3, "{images:#?}");
        assert!(images.iter().all(|image| !image.synthesized));
        assert_eq!(
            images[0].names,
            ["docker.io/library/nginx:latest", "docker.io/library/nginx:1", "nginx:latest", "nginx:1"]
        );
        assert_eq!(images[0].manifest.bytes, nginx.manifest, "original bytes, not re-serialized");
        assert_eq!(images[0].manifest.media_type, media_type::DOCKER_MANIFEST);
        assert_eq!(images[1].names, ["registry.example.com:5000/team/app:2"]);
        assert_eq!(images[1].manifest.bytes, index);
        assert_eq!(images[1].manifest.media_type, media_type::OCI_INDEX);
        assert_eq!(images[2].names, [format!("registry.example.com:5000/pinned@{}", Digest::of(&pinned.manifest))]);

        let checked = check_image(&reader, &images[1]);
        assert_eq!(checked.manifests, [(Digest::of(&app.manifest), media_type::OCI_MANIFEST.to_owned())]);
        assert_eq!(checked.layers[1].media_type, media_type::OCI_LAYER_ZSTD);
        check_image(&reader, &images[0]);
        check_image(&reader, &images[2]);
        // The uncompressed copy of the zstd layer that manifest.json points at is a blob too.
        assert_eq!(read_all(reader.open_blob(&Digest::of(&app.tars[1])).unwrap().unwrap()), app.tars[1]);
        drop(reader);
        assert_eq!(files_in(scratch.path()), Vec::<String>::new());
    }
}

/// go-containerregistry's `tarball` layout: config named `sha256:<hex>`,
/// layers `<hex>.tar.gz` named by their compressed digest, manifest.json, no
/// repositories, and `LayerSources` for foreign layers.
fn crane_tarball(images: &[(&Image, &[&str])], foreign: Option<(&Image, usize, Descriptor)>) -> Vec<u8> {
    let mut tar = RawTar::new();
    let mut items = Vec::new();
    let mut written = std::collections::HashSet::new();
    for (image, tags) in images {
        let config_name = Digest::of(&image.config).to_string();
        tar.file(&config_name, &image.config);
        let mut layer_files = Vec::new();
        for (blob, _) in &image.layers {
            let name = format!("{}.tar.gz", Digest::of(blob).hex());
            if written.insert(name.clone()) {
                tar.file(&name, blob);
            }
            layer_files.push(name);
        }
        let mut item = json!({"Config": config_name, "RepoTags": tags, "Layers": layer_files});
        if let Some((foreign_image, position, descriptor)) = &foreign
            && std::ptr::eq(*foreign_image, *image)
        {
            let diff_id = Digest::of(&image.tars[*position]).to_string();
            item["LayerSources"] = json!({ diff_id: descriptor });
        }
        items.push(item);
    }
    tar.file("manifest.json", &serde_json::to_vec(&items).unwrap());
    tar.finish()
}

#[test]
fn crane_tarballs_get_a_deterministic_synthesized_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let base = Image::new("crane", &["gzip", "gzip"], false);
    let zstd_image = Image::new("crane-zstd", &["gzip", "zstd"], true);
    let path = dir.path().join("crane.tar");
    fs::write(&path, crane_tarball(&[(&base, &["example.com/app:1"]), (&zstd_image, &["example.com/z:1"])], None))
        .unwrap();
    let reader = ArchiveReader::open(&path).unwrap();
    assert_eq!(reader.images().len(), 2);

    let image = image_named(&reader, "example.com/app:1");
    assert!(image.synthesized);
    assert_eq!(image.manifest.media_type, media_type::DOCKER_MANIFEST);
    let layer = |index: usize| {
        let blob = &base.layers[index].0;
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            media_type::DOCKER_LAYER_GZIP,
            Digest::of(blob),
            blob.len()
        )
    };
    let expected = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{},{}]}}"#,
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_CONFIG,
        Digest::of(&base.config),
        base.config.len(),
        layer(0),
        layer(1)
    );
    assert_eq!(String::from_utf8(image.manifest.bytes.to_vec()).unwrap(), expected);
    let checked = check_image(&reader, image);
    assert_eq!(
        checked.layers.iter().map(|layer| &layer.digest).collect::<Vec<_>>(),
        [&Digest::of(&base.layers[0].0), &Digest::of(&base.layers[1].0)]
    );

    // Docker's media types cannot say zstd, so that image gets OCI ones throughout.
    let image = image_named(&reader, "example.com/z:1");
    assert_eq!(image.manifest.media_type, media_type::OCI_MANIFEST);
    let checked = check_image(&reader, image);
    let types: Vec<&str> = checked.layers.iter().map(|layer| layer.media_type.as_str()).collect();
    assert_eq!(types, [media_type::OCI_LAYER_GZIP, media_type::OCI_LAYER_ZSTD]);
    let config: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    assert_eq!(config["config"]["mediaType"], media_type::OCI_CONFIG);

    // Same archive, same digests.
    let again = ArchiveReader::open(&path).unwrap();
    assert_eq!(again.images(), reader.images());
}

#[test]
fn crane_foreign_layers_keep_their_descriptor_and_may_be_absent() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::new("windows", &["gzip", "gzip"], false);
    let foreign_blob = &image.layers[0].0;
    let mut foreign =
        Descriptor::new(media_type::DOCKER_LAYER_FOREIGN_GZIP, Digest::of(foreign_blob), foreign_blob.len() as u64);
    foreign.urls = vec!["https://mcr.example.com/blob".to_owned()];
    let mut bytes = crane_tarball(&[(&image, &["win:1"])], Some((&image, 0, foreign.clone())));
    let path = dir.path().join("with-foreign.tar");
    fs::write(&path, &bytes).unwrap();
    let reader = ArchiveReader::open(&path).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&reader.images()[0].manifest.bytes).unwrap();
    assert_eq!(manifest["layers"][0], serde_json::to_value(&foreign).unwrap());
    assert_eq!(manifest["layers"][1]["mediaType"], media_type::DOCKER_LAYER_GZIP);

    // Without the file: the descriptor alone, and no blob to open.
    let name = format!("{}.tar.gz", Digest::of(foreign_blob).hex());
    let position = bytes.windows(name.len()).position(|window| window == name.as_bytes()).unwrap();
    bytes[position] = b'X';
    let header = &mut bytes[position..position + 512];
    let mut checksum_block = [0u8; 512];
    checksum_block.copy_from_slice(header);
    let mut fixed = tar::Header::from_byte_slice(&checksum_block).clone();
    fixed.set_cksum();
    header.copy_from_slice(fixed.as_bytes());
    fs::write(&path, &bytes).unwrap();
    let reader = ArchiveReader::open(&path).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&reader.images()[0].manifest.bytes).unwrap();
    assert_eq!(manifest["layers"][0], serde_json::to_value(&foreign).unwrap());
    assert!(reader.open_blob(&foreign.digest).unwrap().is_none());
}

/// A Docker ≤24-shaped archive: `<id>/layer.tar` uncompressed, config
/// `<hex>.json`, manifest.json and repositories.
fn legacy_archive(image: &Image, tags: Option<&[&str]>, repositories: Option<&str>) -> RawTar {
    let mut tar = RawTar::new();
    let mut layers = Vec::new();
    for (position, layer_tar) in image.tars.iter().enumerate() {
        let id = format!("{position:064x}");
        tar.dir(&format!("{id}/"));
        tar.file(&format!("{id}/VERSION"), b"1.0");
        tar.file(&format!("{id}/layer.tar"), layer_tar);
        layers.push(format!("{id}/layer.tar"));
    }
    let config_name = format!("{}.json", Digest::of(&image.config).hex());
    tar.file(&config_name, &image.config);
    let items = json!([{"Config": config_name, "RepoTags": tags, "Layers": layers}]);
    tar.file("manifest.json", &serde_json::to_vec(&items).unwrap());
    if let Some(repositories) = repositories {
        tar.file("repositories", repositories.as_bytes());
    }
    tar
}

#[test]
fn docker_save_layout_names_come_from_repo_tags_and_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::new("legacy", &["none", "none"], false);
    let top = format!("{:064x}", 1);
    let repositories = format!(r#"{{"legacy":{{"1":"{top}","extra":"{top}"}},"other":{{"x":"{:064x}"}}}}"#, 7);
    let path = dir.path().join("legacy.tar");
    fs::write(&path, legacy_archive(&image, Some(&["legacy:1"]), Some(&repositories)).finish()).unwrap();
    let reader = ArchiveReader::open(&path).unwrap();
    assert_eq!(reader.images().len(), 1);
    let found = &reader.images()[0];
    assert_eq!(found.names, ["legacy:1", "legacy:extra"], "repositories adds what RepoTags lacks");
    assert!(found.synthesized);
    let checked = check_image(&reader, found);
    // Uncompressed layers: digest = DiffID, and the Docker type for a plain tar.
    assert_eq!(checked.layers[0].digest, Digest::of(&image.tars[0]));
    assert_eq!(checked.layers[0].media_type, DOCKER_LAYER);

    // Untagged (RepoTags null, no repositories): no names.
    fs::write(&path, legacy_archive(&image, None, None).finish()).unwrap();
    let reader = ArchiveReader::open(&path).unwrap();
    assert_eq!(reader.images()[0].names, Vec::<String>::new());
}

#[test]
fn a_layer_that_contradicts_its_diff_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut image = Image::new("swapped", &["none", "none"], false);
    // Config says layer 1 is one tar; the archive holds another.
    image.tars[1] = layer_tar("evil", b"not what the config says");
    let path = dir.path().join("swapped.tar");
    fs::write(&path, legacy_archive(&image, Some(&["swapped:1"]), None).finish()).unwrap();
    let error = ArchiveReader::open(&path).unwrap_err();
    assert!(matches!(error, ArchiveError::DiffIdMismatch { .. }), "{error:?}");
    let message = error.to_string();
    let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    for part in [
        path.display().to_string(),
        format!("{:064x}/layer.tar", 1),
        Digest::of(&image.tars[1]).to_string(),
        config["rootfs"]["diff_ids"][1].as_str().unwrap().to_owned(),
    ] {
        assert!(message.contains(&part), "{message:?} lacks {part:?}");
    }
    assert!(error.is_invalid_archive());
}

#[test]
fn oci_layout_directories_are_read_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let one = Image::new("dir-one", &["gzip"], true);
    let two = Image::new("dir-two", &["zstd", "none"], true);
    for image in [&one, &two] {
        for blob in image.layers.iter().map(|(blob, _)| blob).chain([&image.config, &image.manifest]) {
            fs::write(blobs.join(Digest::of(blob).hex()), blob).unwrap();
        }
    }
    let entry = |image: &Image, name: &str| {
        let mut descriptor = image.descriptor();
        descriptor.annotations.insert("org.opencontainers.image.ref.name".into(), name.into());
        descriptor
    };
    let index = json!({"schemaVersion": 2, "manifests": [entry(&one, "v1"), entry(&two, "example.com/two:2"), entry(&one, "v1-again")]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();

    let reader = ArchiveReader::open(&layout).unwrap();
    assert_eq!(reader.images().len(), 2);
    assert_eq!(reader.images()[0].names, ["v1", "v1-again"]);
    assert_eq!(reader.images()[1].names, ["example.com/two:2"]);
    for image in reader.images() {
        assert!(!image.synthesized);
        check_image(&reader, image);
    }

    // A blob swapped for a symlink after opening is refused, not followed.
    let layer = Digest::of(&one.layers[0].0);
    let blob_path = blobs.join(layer.hex());
    let outside = dir.path().join("outside");
    fs::write(&outside, &one.layers[0].0).unwrap();
    fs::remove_file(&blob_path).unwrap();
    std::os::unix::fs::symlink(&outside, &blob_path).unwrap();
    let error = reader.open_blob(&layer).unwrap_err();
    assert!(matches!(&error, ArchiveError::BadEntry { reason, .. } if reason.contains("replaced")), "{error:?}");

    // At open, a symlink leading out of the layout is refused.
    let error = ArchiveReader::open(&layout).unwrap_err();
    assert!(matches!(&error, ArchiveError::BadEntry { reason, .. } if reason.contains("absolute")), "{error}");
    fs::remove_file(&blob_path).unwrap();
    std::os::unix::fs::symlink("../../../outside", &blob_path).unwrap();
    let error = ArchiveReader::open(&layout).unwrap_err();
    assert!(matches!(&error, ArchiveError::BadEntry { reason, .. } if reason.contains("outside")), "{error}");
}

/// A tar of an OCI layout as GNU tar writes one from inside the directory
/// (`./` names), with GNU long-name and PAX headers on the way.
#[test]
fn gnu_and_pax_names_and_dot_slash_prefixes() {
    let image = Image::new("gnu", &["gzip"], true);
    let mut tar = RawTar::new();
    tar.dir("./").dir("./blobs/").dir("./blobs/sha256/");
    let long_dir = "d".repeat(120);
    tar.gnu_long_name(format!("./{long_dir}/ignored").as_bytes()).file("short-name-replaced", b"x");
    for (position, blob) in image.layers.iter().map(|(blob, _)| blob).chain([&image.config]).enumerate() {
        let name = format!("./blobs/sha256/{}", Digest::of(blob).hex());
        if position == 0 {
            tar.pax(&[("path", name.as_bytes()), ("mtime", b"0")]).file("PaxHeaders-replaced", blob);
        } else {
            tar.gnu_long_name(name.as_bytes()).file("gnu-replaced", blob);
        }
    }
    tar.file(&format!("./blobs/sha256/{}", Digest::of(&image.manifest).hex()), &image.manifest);
    let mut descriptor = image.descriptor();
    descriptor.annotations.insert("org.opencontainers.image.ref.name".into(), "gnu".into());
    tar.file("./index.json", &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [descriptor]})).unwrap());
    tar.file("./oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gnu.tar");
    fs::write(&path, tar.finish()).unwrap();
    let reader = ArchiveReader::open(&path).unwrap();
    assert_eq!(reader.images()[0].names, ["gnu"]);
    check_image(&reader, &reader.images()[0]);
}

/// `open_stdin` for real: this test binary runs itself with the archive on
/// its standard input, and the child (the ignored test below) reports what
/// it read.
#[test]
fn stdin_is_spooled_and_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stdin.tar.zst");
    let (_, app, _, _) = hybrid_archive(&path, ArchiveCompression::Zstd);
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stdin_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("HPN_READER_STDIN_CHILD", "1")
        .stdin(fs::File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // libtest may print its "test stdin_child ... " on the same line.
    let line = stdout.lines().find_map(|line| line.split_once("STDIN-READ ")).expect("the child reported").1;
    assert_eq!(line, format!("3 images, Zstd, <stdin>, app config {}", Digest::of(&app.config)));
}

#[test]
#[ignore = "run by stdin_is_spooled_and_decompressed in a child process, with an archive on stdin"]
fn stdin_child() {
    assert_eq!(std::env::var("HPN_READER_STDIN_CHILD").as_deref(), Ok("1"), "only meant to run as a child");
    let reader = ArchiveReader::open_stdin().unwrap();
    let app = image_named(&reader, "registry.example.com:5000/team/app:2");
    let checked = check_image(&reader, app);
    println!(
        "STDIN-READ {} images, {:?}, {}, app config {}",
        reader.images().len(),
        reader.compression(),
        reader.path().display(),
        checked.configs[0]
    );
    assert_eq!(format!("{:?}", reader.compression()), "Zstd");
}

// ---------------------------------------------------------------- hostile input

fn open_bytes(bytes: &[u8]) -> (Result<ArchiveReader, ArchiveError>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.tar");
    fs::write(&path, bytes).unwrap();
    (ArchiveReader::open_with_temp_dir(&path, dir.path()), path, dir)
}

/// Opens `bytes` expecting an error; checks it names the archive and
/// contains every one of `parts`.
fn expect_error(bytes: &[u8], parts: &[&str]) -> ArchiveError {
    let (result, path, _dir) = open_bytes(bytes);
    let error = result.expect_err("the archive should be refused");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message:?} does not name the archive");
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    assert!(error.is_invalid_archive(), "{error:?}");
    error
}

/// A small valid docker-only archive as separate pieces, for variations.
fn small_docker_archive(extra: impl FnOnce(&mut RawTar)) -> Vec<u8> {
    let layer = layer_tar("f", b"content");
    let config = config_for(&[&layer]);
    let mut tar = RawTar::new();
    extra(&mut tar);
    tar.file("layer.tar", &layer);
    tar.file("config.json", &config);
    tar.file("manifest.json", &manifest_json(&[("config.json", &["t:1"], &["layer.tar"])]));
    tar.finish()
}

#[test]
fn the_small_archive_used_below_is_valid() {
    let (result, _, _dir) = open_bytes(&small_docker_archive(|_| {}));
    let reader = result.unwrap();
    assert_eq!(reader.images()[0].names, ["t:1"]);
}

#[test]
fn truncated_archives_are_refused() {
    let bytes = small_docker_archive(|_| {});
    // Mid-data, mid-header, and cut exactly before the end-of-archive marker.
    let config_header = bytes.windows(11).position(|window| window == b"config.json").unwrap();
    for cut in [700, config_header + 100, bytes.len() - 1024] {
        let error = expect_error(&bytes[..cut], &["truncated"]);
        assert!(matches!(error, ArchiveError::Truncated { .. }), "cut at {cut}: {error:?}");
    }
    // Compressed and cut: the decompressor notices.
    let compressed = gzip(&bytes);
    let error = expect_error(&compressed[..compressed.len() - 40], &["gzip"]);
    assert!(matches!(error, ArchiveError::Truncated { .. }), "{error:?}");
    let compressed = zstd(&bytes);
    let error = expect_error(&compressed[..compressed.len() / 2], &["zstd"]);
    assert!(matches!(error, ArchiveError::Truncated { .. }), "{error:?}");
    // A header whose size runs past the end of the file.
    let mut tar = RawTar::new();
    tar.bytes.extend_from_slice(&RawTar::header(b"manifest.json", b'0', 1 << 30, b""));
    tar.data(b"[]");
    let error = expect_error(&tar.finish(), &["manifest.json", "1073741824"]);
    assert!(matches!(error, ArchiveError::Truncated { .. }), "{error:?}");
    // A GNU base-256 size near 2^64 on an entry that is skipped unread.
    let mut header = RawTar::header(b"caf\xe9", b'0', 0, b"");
    header[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let mut fixed = tar::Header::from_byte_slice(&header).clone();
    fixed.set_cksum();
    let mut tar = RawTar::new();
    tar.bytes.extend_from_slice(fixed.as_bytes());
    let error = expect_error(&tar.finish(), &["cut short"]);
    assert!(matches!(error, ArchiveError::Truncated { .. }), "{error:?}");
}

#[test]
fn things_that_are_not_tar_archives_are_refused() {
    for (bytes, hint) in [
        (Vec::new(), "empty"),
        (b"{\"schemaVersion\":2}".to_vec(), "JSON"),
        (vec![0x42; 4096], "not a tar"),
        ([b"PK\x03\x04".as_slice(), &[0; 1020]].concat(), "zip"),
        ([&[0xfd, b'7', b'z', b'X', b'Z', 0][..], &[0; 1000]].concat(), "xz"),
    ] {
        let error = expect_error(&bytes, &[hint]);
        assert!(matches!(error, ArchiveError::NotAnArchive { .. }), "{error:?}");
    }
    // A tar, but not of an image.
    let error = expect_error(&RawTar::new().file("hello.txt", b"hi").finish(), &["manifest.json", "index.json"]);
    assert!(matches!(error, ArchiveError::NotAnArchive { .. }), "{error:?}");
    // gzip of something that is not a tar.
    let error = expect_error(&gzip(&[7; 5000]), &["gzip"]);
    assert!(matches!(error, ArchiveError::NotAnArchive { .. }), "{error:?}");
}

#[test]
fn unsafe_entry_names_are_refused() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (RawTar::new().file("../escape", b"x").finish(), "../escape"),
        (RawTar::new().file("a/../../escape", b"x").finish(), "a/../../escape"),
        (RawTar::new().file("/etc/cron.d/x", b"x").finish(), "/etc/cron.d/x"),
        (RawTar::new().pax(&[("path", b"a\0b")]).file("ignored", b"x").finish(), "NUL"),
        (RawTar::new().gnu_long_name(b"ok/\0/../x").file("ignored", b"x").finish(), "NUL"),
        (RawTar::new().pax(&[("path", b"../pax-escape")]).file("ignored", b"x").finish(), "pax-escape"),
    ];
    for (bytes, part) in cases {
        let error = expect_error(&bytes, &[part]);
        assert!(matches!(error, ArchiveError::BadEntry { .. }), "{error:?}");
    }
}

#[test]
fn links_never_lead_outside_the_archive() {
    // Referenced by manifest.json: refused with the reason.
    for (link, reason) in [("/etc/passwd", "absolute"), ("../../etc/passwd", "outside")] {
        let layer = layer_tar("f", b"content");
        let config = config_for(&[&layer]);
        let mut tar = RawTar::new();
        tar.file("config.json", &config).symlink("layer.tar", link);
        tar.file("manifest.json", &manifest_json(&[("config.json", &["t:1"], &["layer.tar"])]));
        let error = expect_error(&tar.finish(), &["layer.tar", reason]);
        assert!(matches!(error, ArchiveError::BadEntry { .. }), "{error:?}");
    }
    // Hard links out, and loops.
    let mut tar = RawTar::new();
    tar.file("config.json", &config_for(&[b"".as_slice()])).hardlink("layer.tar", "../x");
    tar.file("manifest.json", &manifest_json(&[("config.json", &[], &["layer.tar"])]));
    expect_error(&tar.finish(), &["layer.tar", "refused"]);
    let mut tar = RawTar::new();
    tar.file("config.json", &config_for(&[b"".as_slice()])).symlink("a", "b").symlink("b", "a");
    tar.file("manifest.json", &manifest_json(&[("config.json", &[], &["a"])]));
    expect_error(&tar.finish(), &["loop"]);

    // Unreferenced links pointing anywhere are inert: never followed, no error.
    let bytes = small_docker_archive(|tar| {
        tar.symlink("etc-passwd", "/etc/passwd").hardlink("up", "../../x");
    });
    let (result, _, _dir) = open_bytes(&bytes);
    result.unwrap();

    // Links inside the archive are what docker save writes for a repeated
    // layer; they resolve to the archive's own bytes.
    let layer = layer_tar("f", b"content");
    let config = config_for(&[&layer, &layer]);
    let mut tar = RawTar::new();
    tar.file("one/layer.tar", &layer).symlink("two/layer.tar", "../one/layer.tar").file("config.json", &config);
    tar.file("manifest.json", &manifest_json(&[("config.json", &["t:1"], &["one/layer.tar", "two/layer.tar"])]));
    let (result, _, _dir) = open_bytes(&tar.finish());
    let reader = result.unwrap();
    let checked = check_image(&reader, &reader.images()[0]);
    assert_eq!(checked.layers[0], checked.layers[1]);
}

#[test]
fn special_files_and_sparse_files_are_not_image_content() {
    for (kind, word) in [(b'3', "character device"), (b'6', "FIFO"), (b'S', "sparse")] {
        let mut tar = RawTar::new();
        tar.file("config.json", &config_for(&[b"".as_slice()])).raw_entry(b"layer.tar", kind, b"", b"");
        tar.file("manifest.json", &manifest_json(&[("config.json", &[], &["layer.tar"])]));
        let error = expect_error(&tar.finish(), &["layer.tar", word]);
        assert!(matches!(error, ArchiveError::BadEntry { .. }), "{error:?}");
    }
}

#[test]
fn missing_files_and_blobs_are_named() {
    let layer = layer_tar("f", b"content");
    let config = config_for(&[&layer]);
    let mut tar = RawTar::new();
    tar.file("config.json", &config);
    tar.file("manifest.json", &manifest_json(&[("config.json", &["t:1"], &["gone/layer.tar"])]));
    let error = expect_error(&tar.finish(), &["gone/layer.tar", "manifest.json"]);
    assert!(matches!(error, ArchiveError::MissingEntry { .. }), "{error:?}");

    // An OCI layout whose manifest lists a layer that is not there.
    let image = Image::new("missing", &["gzip"], true);
    let mut tar = RawTar::new();
    tar.file(&format!("blobs/sha256/{}", Digest::of(&image.config).hex()), &image.config);
    tar.file(&format!("blobs/sha256/{}", Digest::of(&image.manifest).hex()), &image.manifest);
    tar.file(
        "index.json",
        &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [image.descriptor()]})).unwrap(),
    );
    let layer_digest = Digest::of(&image.layers[0].0).to_string();
    let error = expect_error(&tar.finish(), &[&layer_digest, "layer"]);
    assert!(matches!(error, ArchiveError::BlobNotFound { .. }), "{error:?}");
}

#[test]
fn oversized_metadata_is_refused_before_it_is_read() {
    let huge = vec![b' '; 9 * 1024 * 1024];
    for name in ["manifest.json", "index.json"] {
        let error = expect_error(&RawTar::new().file(name, &huge).finish(), &[name, "9437184"]);
        assert!(matches!(error, ArchiveError::TooLarge { .. }), "{error:?}");
    }
    // read_blob checks its own limit against the size, not the content.
    let (result, _, _dir) = open_bytes(&small_docker_archive(|_| {}));
    let reader = result.unwrap();
    let layer = Digest::of(&layer_tar("f", b"content"));
    let error = reader.read_blob(&layer, 100).unwrap_err();
    assert!(matches!(error, ArchiveError::TooLarge { limit: 100, .. }), "{error:?}");
}

#[test]
fn duplicate_names_must_agree() {
    let same = small_docker_archive(|tar| {
        tar.file("layer.tar", &layer_tar("f", b"content"));
    });
    let (result, _, _dir) = open_bytes(&same);
    result.expect("the same bytes twice are harmless (tar appends)");

    let different = small_docker_archive(|tar| {
        tar.file("layer.tar", &layer_tar("f", b"CONTENT"));
    });
    let error = expect_error(&different, &["layer.tar", "twice"]);
    assert!(matches!(error, ArchiveError::BadEntry { .. }), "{error:?}");

    let file_and_link = small_docker_archive(|tar| {
        tar.symlink("layer.tar", "config.json");
    });
    expect_error(&file_and_link, &["layer.tar", "twice"]);
}

#[test]
fn corrupt_blobs_fail_read_blob_and_are_streamed_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.tar");
    let (nginx, _, _, _) = hybrid_archive(&path, ArchiveCompression::None);
    let mut bytes = fs::read(&path).unwrap();
    // Flip a byte inside the first layer blob's data (same size, other content).
    let layer = &nginx.layers[0].0;
    let position = bytes.windows(layer.len()).position(|window| window == layer.as_slice()).unwrap();
    bytes[position + layer.len() / 2] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let reader = ArchiveReader::open(&path).expect("layers are verified when read, not at open");
    let digest = Digest::of(layer);
    let error = reader.read_blob(&digest, 1 << 20).unwrap_err();
    assert!(matches!(error, ArchiveError::CorruptBlob { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&digest.to_string()) && message.contains(digest.hex()), "{message}");
    let streamed = read_all(reader.open_blob(&digest).unwrap().unwrap());
    assert_eq!(streamed.len(), layer.len());
    assert_ne!(Digest::of(&streamed), digest, "open_blob leaves verification to the caller");

    // A corrupt manifest is caught at open: it has to be read to know the image.
    let manifest = &nginx.manifest;
    let position = bytes.windows(manifest.len()).position(|window| window == manifest.as_slice()).unwrap();
    bytes[position + 1] = b' ';
    fs::write(&path, &bytes).unwrap();
    let error = ArchiveReader::open(&path).unwrap_err();
    assert!(matches!(error, ArchiveError::CorruptBlob { .. }), "{error:?}");
    assert!(error.to_string().contains(&Digest::of(manifest).to_string()));
}

#[test]
fn blob_readers_fail_rather_than_end_early() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shrinks.tar");
    let (_, app, _, _) = hybrid_archive(&path, ArchiveCompression::None);
    let reader = ArchiveReader::open(&path).unwrap();
    // The archive file is cut after opening (another process truncating it),
    // 100 bytes into the uncompressed layer.
    let layer = &app.tars[2];
    let bytes = fs::read(&path).unwrap();
    let offset = bytes.windows(layer.len()).position(|window| window == layer.as_slice()).unwrap();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(offset as u64 + 100).unwrap();
    let digest = Digest::of(layer);
    let mut blob = reader.open_blob(&digest).unwrap().unwrap();
    assert_eq!(blob.size(), layer.len() as u64);
    let mut sink = Vec::new();
    let error = std::io::Read::read_to_end(&mut blob, &mut sink).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(sink.len(), 100);
    let error = blob.error(error).to_string();
    assert!(error.contains(&path.display().to_string()) && error.contains(digest.hex()), "{error}");
}
