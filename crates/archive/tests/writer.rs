use std::fs;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use hpn_archive::{ArchiveCompression, ArchiveError, ArchiveImage, ArchiveWriter, DockerImageEntry};
use hpn_oci::{Descriptor, Digest, annotation, media_type};
use serde_json::{Value, json};

#[derive(Debug)]
struct Entry {
    name: String,
    kind: tar::EntryType,
    mode: u32,
    mtime: u64,
    data: Vec<u8>,
}

fn decompress(path: &Path, compression: ArchiveCompression) -> Vec<u8> {
    let raw = fs::read(path).unwrap();
    let mut out = Vec::new();
    match compression {
        ArchiveCompression::None => out = raw,
        ArchiveCompression::Gzip => {
            flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out).unwrap();
        }
        ArchiveCompression::Zstd => out = zstd::decode_all(raw.as_slice()).unwrap(),
    }
    out
}

fn read_entries(tar_bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let header = entry.header();
            Entry {
                name: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                mtime: header.mtime().unwrap(),
                data,
            }
        })
        .collect()
}

fn entry<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
    entries.iter().find(|entry| entry.name == name).unwrap_or_else(|| panic!("no entry {name}"))
}

fn json_entry(entries: &[Entry], name: &str) -> Value {
    serde_json::from_slice(&entry(entries, name).data).unwrap()
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Which manifest format a test image uses.
#[derive(Clone, Copy)]
enum Format {
    Docker,
    Oci,
}

impl Format {
    fn media_types(self) -> [&'static str; 3] {
        match self {
            Self::Docker => [media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG, media_type::DOCKER_LAYER_GZIP],
            Self::Oci => [media_type::OCI_MANIFEST, media_type::OCI_CONFIG, media_type::OCI_LAYER_GZIP],
        }
    }
}

/// A real image: a gzip layer with one file, a config with the layer's DiffID
/// and a Docker schema2 or OCI manifest.
struct TestImage {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
    format: Format,
}

impl TestImage {
    fn new(content: &[u8], format: Format) -> Self {
        let [manifest_type, config_type, layer_type] = format.media_types();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, "etc/motd", content).unwrap();
        let layer_tar = builder.into_inner().unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&layer_tar).unwrap();
        let layer = gzip.finish().unwrap();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer_tar).to_string()]},
            "history": [{"created_by": "hpn test"}]
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": Digest::of(&config), "size": config.len()},
            "layers": [{"mediaType": layer_type, "digest": Digest::of(&layer), "size": layer.len()}]
        }))
        .unwrap();
        Self { layer, config, manifest, format }
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.format.media_types()[0], Digest::of(&self.manifest), self.manifest.len() as u64)
    }

    fn add_blobs(&self, writer: &mut ArchiveWriter) {
        writer.add_blob_bytes(&Digest::of(&self.layer), &self.layer).unwrap();
        writer.add_blob_bytes(&Digest::of(&self.config), &self.config).unwrap();
        writer.add_blob_bytes(&Digest::of(&self.manifest), &self.manifest).unwrap();
    }

    fn archive_image(&self, name: &str, tag: Option<&str>, repo_tags: &[&str]) -> ArchiveImage {
        ArchiveImage {
            descriptor: self.descriptor(),
            name: name.to_owned(),
            tag: tag.map(str::to_owned),
            docker: Some(DockerImageEntry {
                config: Digest::of(&self.config),
                repo_tags: repo_tags.iter().map(|tag| (*tag).to_owned()).collect(),
                layers: vec![Digest::of(&self.layer)],
            }),
        }
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Builds the same multi-image archive for each compression and checks
/// everything a reader would look at.
fn write_and_check(compression: ArchiveCompression) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.tar");

    // A layer file in the store, large and not block-aligned.
    let big_layer: Vec<u8> = (0..3_000_001u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let big_digest = Digest::of(&big_layer);
    let big_file = dir.path().join("store-blob");
    fs::write(&big_file, &big_layer).unwrap();
    let streamed: Vec<u8> = b"streamed layer bytes ".repeat(1000);
    let streamed_digest = Digest::of(&streamed);
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let config_digest = Digest::of(&config);
    let manifest = br#"{"schemaVersion":2,"stand-in":"manifest"}"#.to_vec();
    let manifest_digest = Digest::of(&manifest);

    let mut writer = ArchiveWriter::create(&path, compression).unwrap();
    assert!(!path.exists(), "nothing under the final name before finish()");
    writer.add_blob_from_file(&big_digest, &big_file).unwrap();
    writer.add_blob_from_reader(&streamed_digest, streamed.len() as u64, &mut Cursor::new(&streamed)).unwrap();
    writer.add_blob_bytes(&config_digest, &config).unwrap();
    writer.add_blob_bytes(&manifest_digest, &manifest).unwrap();
    // Second adds of a digest are no-ops, whatever the source.
    writer.add_blob_bytes(&config_digest, &config).unwrap();
    writer.add_blob_from_file(&big_digest, &big_file).unwrap();
    writer.add_blob_from_reader(&streamed_digest, 1, &mut Cursor::new(b"ignored")).unwrap();
    assert!(writer.contains_blob(&big_digest) && !writer.contains_blob(&Digest::of(b"other")));

    let descriptor = Descriptor::new(media_type::OCI_MANIFEST, manifest_digest.clone(), manifest.len() as u64);
    let docker = DockerImageEntry {
        config: config_digest.clone(),
        repo_tags: vec!["localhost:5000/app:1".to_owned()],
        layers: vec![big_digest.clone(), streamed_digest.clone(), big_digest.clone()],
    };
    writer.add_image(ArchiveImage {
        descriptor: descriptor.clone(),
        name: "localhost:5000/app:1".to_owned(),
        tag: Some("1".to_owned()),
        docker: Some(docker.clone()),
    });
    // The same image under a second tag: one manifest.json entry with both tags.
    writer.add_image(ArchiveImage {
        descriptor: descriptor.clone(),
        name: "docker.io/library/app:latest".to_owned(),
        tag: Some("latest".to_owned()),
        docker: Some(DockerImageEntry { repo_tags: vec!["app:latest".to_owned()], ..docker.clone() }),
    });
    // Pulled by digest: no tag anywhere, still in index.json and manifest.json.
    let by_digest = format!("localhost:5000/other@{manifest_digest}");
    writer.add_image(ArchiveImage {
        descriptor: descriptor.clone(),
        name: by_digest.clone(),
        tag: None,
        docker: Some(DockerImageEntry { repo_tags: vec![], layers: vec![streamed_digest.clone()], ..docker }),
    });
    // An image without a loadable platform: index.json only.
    writer.add_image(ArchiveImage {
        descriptor: descriptor.clone(),
        name: "localhost:5000/wasm:1".to_owned(),
        tag: Some("1".to_owned()),
        docker: None,
    });
    let size = writer.finish().unwrap();

    assert_eq!(size, fs::metadata(&path).unwrap().len());
    assert_eq!(files_in(dir.path()), ["images.tar", "store-blob"], "no temp file left");

    let entries = read_entries(&decompress(&path, compression));
    let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    let expected_names = [
        "oci-layout".to_owned(),
        "blobs/".to_owned(),
        "blobs/sha256/".to_owned(),
        blob_name(&big_digest),
        blob_name(&streamed_digest),
        blob_name(&config_digest),
        blob_name(&manifest_digest),
        "hpn-contents.json".to_owned(),
        "index.json".to_owned(),
        "manifest.json".to_owned(),
        "repositories".to_owned(),
    ];
    assert_eq!(names, expected_names);
    for entry in &entries {
        assert_eq!(entry.mtime, 0, "{}", entry.name);
        match entry.kind {
            tar::EntryType::Directory => assert_eq!(entry.mode, 0o755),
            tar::EntryType::Regular => assert_eq!(entry.mode, 0o644),
            other => panic!("unexpected entry type {other:?} for {}", entry.name),
        }
    }

    assert_eq!(entry(&entries, &blob_name(&big_digest)).data, big_layer);
    assert_eq!(entry(&entries, &blob_name(&streamed_digest)).data, streamed);
    assert_eq!(entry(&entries, &blob_name(&config_digest)).data, config);
    assert_eq!(entry(&entries, &blob_name(&manifest_digest)).data, manifest);
    assert_eq!(json_entry(&entries, "oci-layout"), json!({"imageLayoutVersion": "1.0.0"}));

    let manifest_entry = |name: &str, tag: Option<&str>| {
        let mut annotations = json!({annotation::CONTAINERD_IMAGE_NAME: name});
        if let Some(tag) = tag {
            annotations[annotation::REF_NAME] = json!(tag);
        }
        json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": manifest_digest.to_string(),
            "size": manifest.len(),
            "annotations": annotations
        })
    };
    assert_eq!(
        json_entry(&entries, "index.json"),
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [
                manifest_entry("localhost:5000/app:1", Some("1")),
                manifest_entry("docker.io/library/app:latest", Some("latest")),
                manifest_entry(&by_digest, None),
                manifest_entry("localhost:5000/wasm:1", Some("1")),
            ]
        })
    );
    assert_eq!(
        json_entry(&entries, "manifest.json"),
        json!([
            {
                "Config": blob_name(&config_digest),
                "RepoTags": ["localhost:5000/app:1", "app:latest"],
                "Layers": [blob_name(&big_digest), blob_name(&streamed_digest), blob_name(&big_digest)]
            },
            {"Config": blob_name(&config_digest), "RepoTags": [], "Layers": [blob_name(&streamed_digest)]}
        ])
    );
    assert_eq!(
        json_entry(&entries, "repositories"),
        json!({
            "localhost:5000/app": {"1": big_digest.hex()},
            "app": {"latest": big_digest.hex()}
        })
    );
}

#[test]
fn uncompressed_archive_round_trips() {
    write_and_check(ArchiveCompression::None);
}

#[test]
fn gzip_archive_round_trips() {
    write_and_check(ArchiveCompression::Gzip);
}

#[test]
fn zstd_archive_round_trips() {
    write_and_check(ArchiveCompression::Zstd);
}

#[test]
fn compressed_archives_really_are_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![b'a'; 1 << 20];
    for (compression, magic) in
        [(ArchiveCompression::Gzip, &[0x1f, 0x8b][..]), (ArchiveCompression::Zstd, &[0x28, 0xb5, 0x2f, 0xfd][..])]
    {
        let path = dir.path().join(format!("{compression:?}.tar"));
        let mut writer = ArchiveWriter::create(&path, compression).unwrap();
        writer.add_blob_bytes(&Digest::of(&data), &data).unwrap();
        let size = writer.finish().unwrap();
        assert!(size < 64 * 1024, "{compression:?}: {size} bytes");
        assert!(fs::read(&path).unwrap().starts_with(magic), "{compression:?}");
    }
}

#[test]
fn an_empty_archive_is_still_a_valid_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.tar");
    ArchiveWriter::create(&path, ArchiveCompression::None).unwrap().finish().unwrap();
    let entries = read_entries(&fs::read(&path).unwrap());
    let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(names, ["oci-layout", "blobs/", "blobs/sha256/", "hpn-contents.json", "index.json", "manifest.json"]);
    assert_eq!(json_entry(&entries, "manifest.json"), json!([]));
    assert_eq!(json_entry(&entries, "index.json")["manifests"], json!([]));
}

#[test]
fn dropping_an_unfinished_writer_leaves_no_file() {
    for compression in [ArchiveCompression::None, ArchiveCompression::Gzip, ArchiveCompression::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tar");
        let mut writer = ArchiveWriter::create(&path, compression).unwrap();
        writer.add_blob_bytes(&Digest::of(b"layer"), b"layer").unwrap();
        assert_eq!(files_in(dir.path()).len(), 1, "the hidden temp exists while writing");
        assert!(files_in(dir.path())[0].starts_with(".out.tar."));
        drop(writer);
        assert!(files_in(dir.path()).is_empty(), "{compression:?}: {:?}", files_in(dir.path()));
    }
}

#[test]
fn finish_replaces_an_existing_archive_only_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.tar");
    fs::write(&path, b"previous archive").unwrap();
    let mut writer = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
    writer.add_blob_bytes(&Digest::of(b"layer"), b"layer").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"previous archive");
    writer.finish().unwrap();
    assert_eq!(read_entries(&fs::read(&path).unwrap())[0].name, "oci-layout");
}

#[test]
fn unwritable_destinations_fail_with_the_path_in_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let no_parent = dir.path().join("missing-dir/out.tar");
    let error = ArchiveWriter::create(&no_parent, ArchiveCompression::None).unwrap_err();
    assert!(matches!(error, ArchiveError::Io { .. }), "{error}");
    assert!(error.to_string().contains(&no_parent.display().to_string()), "{error}");
    assert!(error.to_string().contains("does the directory exist"), "{error}");

    // A parent that is a file: fails even for root, which ignores permissions.
    let file = dir.path().join("plain-file");
    fs::write(&file, b"").unwrap();
    let under_file = file.join("out.tar");
    let error = ArchiveWriter::create(&under_file, ArchiveCompression::Gzip).unwrap_err();
    assert!(error.to_string().contains(&under_file.display().to_string()), "{error}");

    // /proc refuses new files to everyone, root included.
    let proc_path = PathBuf::from("/proc/hpn-test-archive.tar");
    let error = ArchiveWriter::create(&proc_path, ArchiveCompression::None).unwrap_err();
    assert!(error.to_string().contains("/proc/hpn-test-archive.tar"), "{error}");

    let error = ArchiveWriter::create(dir.path(), ArchiveCompression::None).unwrap_err();
    assert!(matches!(error, ArchiveError::InvalidPath { .. }), "{error}");
    assert_eq!(files_in(dir.path()), ["plain-file"]);
}

#[test]
fn a_stream_with_the_wrong_digest_or_length_is_refused_and_breaks_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let promised = b"the layer the manifest promised";

    let path = dir.path().join("mismatch.tar");
    let mut writer = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
    let digest = Digest::of(promised);
    let arrived = b"a layer of the very same length!";
    let arrived = &arrived[..promised.len()];
    let error = writer.add_blob_from_reader(&digest, promised.len() as u64, &mut Cursor::new(arrived)).unwrap_err();
    match &error {
        ArchiveError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, &digest);
            assert_eq!(actual, &Digest::of(arrived));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!writer.contains_blob(&digest));
    assert!(matches!(writer.add_blob_bytes(&Digest::of(b"x"), b"x"), Err(ArchiveError::Broken { .. })));
    assert!(matches!(writer.finish(), Err(ArchiveError::Broken { .. })));
    assert!(files_in(dir.path()).is_empty(), "{:?}", files_in(dir.path()));

    let mut writer = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
    let short = writer.add_blob_from_reader(&digest, promised.len() as u64 + 5, &mut Cursor::new(promised));
    assert!(matches!(short, Err(ArchiveError::SizeMismatch { actual, .. }) if actual == promised.len() as u64));
    drop(writer);

    let mut writer = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
    let long = writer.add_blob_from_reader(&digest, promised.len() as u64 - 1, &mut Cursor::new(promised));
    assert!(matches!(long, Err(ArchiveError::SizeMismatch { .. })), "{long:?}");
    drop(writer);

    let mut writer = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
    let wrong_bytes = writer.add_blob_bytes(&digest, b"not it");
    assert!(matches!(wrong_bytes, Err(ArchiveError::DigestMismatch { .. })));
    // Refused before anything was written: the archive is still fine.
    writer.add_blob_bytes(&digest, promised).unwrap();
    writer.finish().unwrap();
}

/// An entry checked elsewhere (a download teed into the store) stands when the check passes and
/// is taken back when it or the stream fails: the archive goes on, byte for byte as if the
/// failed entries had never been started; a compressed archive refuses, having nothing to cut.
#[test]
fn an_entry_checked_elsewhere_is_taken_back_when_its_check_or_stream_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, failed, cut) = (&b"a blob the store took"[..], &b"a blob the store refused"[..], &b"cut short"[..]);
    let path = dir.path().join("teed.tar");
    let mut writer = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
    assert!(writer.can_take_back());
    let refused = writer.add_blob_checked_elsewhere(&Digest::of(failed), failed.len() as u64, failed, |_| {
        Err(ArchiveError::DigestMismatch { expected: Digest::of(failed), actual: Digest::of(b"other") })
    });
    assert!(matches!(refused, Err(ArchiveError::DigestMismatch { .. })), "{refused:?}");
    assert!(!writer.contains_blob(&Digest::of(failed)));
    let short =
        writer.add_blob_checked_elsewhere(&Digest::of(cut), cut.len() as u64 + 9, cut, |_| Ok::<_, ArchiveError>(()));
    assert!(matches!(short, Err(ArchiveError::SizeMismatch { .. })), "{short:?}");
    writer
        .add_blob_checked_elsewhere(&Digest::of(kept), kept.len() as u64, kept, |_| Ok::<_, ArchiveError>(()))
        .unwrap();
    writer.finish().unwrap();

    let expected_path = dir.path().join("plain.tar");
    let mut expected = ArchiveWriter::create(&expected_path, ArchiveCompression::None).unwrap();
    expected.add_blob_bytes(&Digest::of(kept), kept).unwrap();
    expected.finish().unwrap();
    assert_eq!(fs::read(&path).unwrap(), fs::read(&expected_path).unwrap(), "the taken-back entries left traces");

    let mut compressed = ArchiveWriter::create(&dir.path().join("c.tar.gz"), ArchiveCompression::Gzip).unwrap();
    assert!(!compressed.can_take_back());
    let refused = compressed
        .add_blob_checked_elsewhere(&Digest::of(kept), kept.len() as u64, kept, |_| Ok::<_, ArchiveError>(()));
    assert!(matches!(refused, Err(ArchiveError::InvalidPath { .. })), "{refused:?}");
    assert!(!compressed.contains_blob(&Digest::of(kept)));
}

#[test]
fn finish_refuses_an_archive_that_lacks_a_referenced_blob() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("incomplete.tar");
    let image = TestImage::new(b"hi\n", Format::Docker);
    let mut writer = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
    writer.add_blob_bytes(&Digest::of(&image.manifest), &image.manifest).unwrap();
    writer.add_blob_bytes(&Digest::of(&image.config), &image.config).unwrap();
    writer.add_image(image.archive_image("example.com/app:1", Some("1"), &["example.com/app:1"]));
    let error = writer.finish().unwrap_err();
    assert!(
        matches!(&error, ArchiveError::MissingBlob { role: "layer", digest, .. } if *digest == Digest::of(&image.layer)),
        "{error}"
    );
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn the_writer_can_move_between_threads() {
    fn assert_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ArchiveWriter::create(&dir.path().join("a.tar"), ArchiveCompression::Zstd).unwrap();
    assert_send(&writer);
    let handle = std::thread::spawn(move || {
        writer.add_blob_bytes(&Digest::of(b"x"), b"x").unwrap();
        writer
    });
    handle.join().unwrap().finish().unwrap();
}

/// An archive holding an OCI image and a Docker schema2 image, the way
/// `hpn save` of two images would write it.
fn build_real_archive(dir: &Path) -> (PathBuf, TestImage, TestImage) {
    let path = dir.join("app.tar");
    let oci = TestImage::new(b"hello from an hpn archive\n", Format::Oci);
    let docker = TestImage::new(b"hello from a docker schema2 image\n", Format::Docker);
    let mut writer = ArchiveWriter::create(&path, ArchiveCompression::None).unwrap();
    // A layer goes in the way a store blob does: file to file.
    let layer_file = dir.join("layer-blob");
    fs::write(&layer_file, &oci.layer).unwrap();
    writer.add_blob_from_file(&Digest::of(&oci.layer), &layer_file).unwrap();
    oci.add_blobs(&mut writer);
    docker.add_blobs(&mut writer);
    writer.add_image(oci.archive_image("example.com/app:1", Some("1"), &["example.com/app:1"]));
    writer.add_image(docker.archive_image("example.com/legacy:2", Some("2"), &["example.com/legacy:2"]));
    writer.finish().unwrap();
    (path, oci, docker)
}

fn tool(path: &str) -> Command {
    assert!(Path::new(path).exists(), "this test checks archives with {path}: install its Debian package");
    Command::new(path)
}

fn skopeo_inspect(args: &[&str]) -> Vec<u8> {
    let output = tool("/usr/bin/skopeo").arg("inspect").args(args).output().unwrap();
    assert!(output.status.success(), "skopeo inspect {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

#[test]
fn skopeo_reads_the_archive_as_oci_and_as_docker() {
    let dir = tempfile::tempdir().unwrap();
    let (path, oci, docker) = build_real_archive(dir.path());
    let path = path.display();

    // The OCI side, by the tag in org.opencontainers.image.ref.name: the
    // original manifest digest. (containers/image only looks at OCI-typed
    // index.json entries, so the schema2 image is not reachable this way.)
    let inspect: Value = serde_json::from_slice(&skopeo_inspect(&[&format!("oci-archive:{path}:1")])).unwrap();
    assert_eq!(inspect["Digest"], Digest::of(&oci.manifest).to_string());
    assert_eq!(inspect["Layers"], json!([Digest::of(&oci.layer).to_string()]));
    assert_eq!(inspect["Architecture"], "amd64");
    let raw = skopeo_inspect(&["--raw", &format!("oci-archive:{path}:1")]);
    assert_eq!(raw, oci.manifest);

    // The Docker side (manifest.json), for both images, by RepoTag.
    for (image, name) in [(&docker, "example.com/legacy:2"), (&oci, "example.com/app:1")] {
        let config = skopeo_inspect(&["--config", "--raw", &format!("docker-archive:{path}:{name}")]);
        assert_eq!(config, image.config, "{name}");
        let inspect: Value =
            serde_json::from_slice(&skopeo_inspect(&[&format!("docker-archive:{path}:{name}")])).unwrap();
        assert_eq!(inspect["Os"], "linux", "{name}");
    }
}

#[test]
fn gnu_tar_lists_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (path, oci, docker) = build_real_archive(dir.path());
    let output = tool("/usr/bin/tar").arg("tf").arg(&path).output().unwrap();
    assert!(output.status.success(), "tar: {}", String::from_utf8_lossy(&output.stderr));
    let listed: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect();
    let mut expected = vec!["oci-layout".to_owned(), "blobs/".to_owned(), "blobs/sha256/".to_owned()];
    let blobs = [&oci.layer, &oci.config, &oci.manifest, &docker.layer, &docker.config, &docker.manifest];
    expected.extend(blobs.map(|bytes| blob_name(&Digest::of(bytes))));
    expected.extend(["hpn-contents.json", "index.json", "manifest.json", "repositories"].map(str::to_owned));
    assert_eq!(listed, expected);
}
