//! ArchiveReader on archives written by the real tools: `docker save` of
//! dockerd 20.10 (the Docker ≤24 layout) and skopeo's docker-archive,
//! oci-archive and oci layout directories, from fixture images pushed to a
//! local registry. Needs root (dockerd) and the Debian peers (`hpn_testkit::PEERS`, installed by .ci/run).

mod reader_support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use hpn_archive::{ArchiveCompression, ArchiveReader, ArchivedImage};
use hpn_oci::{Descriptor, Digest, ImageManifest, media_type};
use hpn_testkit::fixtures::{self, PushedFixtures, PushedImage};
use hpn_testkit::{Dockerd, Registry, skopeo, skopeo_inspect_raw};
use reader_support::*;

fn pushed_fixtures() -> (Registry, PushedFixtures) {
    let registry = Registry::start().expect("start docker-registry");
    let set = fixtures::build(fixtures::Scale::Small).unwrap();
    let pushed = fixtures::push(&set, registry.addr()).unwrap();
    (registry, pushed)
}

fn digests(layers: &[Descriptor]) -> Vec<String> {
    layers.iter().map(|layer| layer.digest.to_string()).collect()
}

/// A docker-saved image: synthesized Docker schema2 manifest, the registry's
/// config, and the layers uncompressed, so each layer digest is its DiffID.
fn check_docker_saved(reader: &ArchiveReader, image: &ArchivedImage, fixture: &PushedImage) {
    assert!(image.synthesized, "{image:?}");
    assert_eq!(image.manifest.media_type, media_type::DOCKER_MANIFEST);
    let checked = check_image(reader, image);
    let platform = fixture.amd64();
    assert_eq!(checked.configs, [platform.config.digest.parse::<Digest>().unwrap()]);
    assert_eq!(digests(&checked.layers), platform.diff_ids);
    assert!(checked.layers.iter().all(|layer| layer.media_type == DOCKER_LAYER));
}

/// skopeo reads the same archive and makes up its own manifest for it: the
/// config and the layer digests must agree with ours. Not the rest: skopeo
/// 1.9 calls these uncompressed tars `diff.tar.gzip` (it compresses them when
/// it pushes), and gives a layer reached through a docker-save `layer.tar`
/// symlink the symlink's size, 0. Our sizes are checked against the streamed
/// bytes by check_image.
fn assert_same_blobs_as_skopeo(archive: &Path, image: &ArchivedImage, selector: &str) {
    let raw = skopeo_inspect_raw(&format!("docker-archive:{}:{selector}", archive.display())).unwrap();
    let theirs: ImageManifest = serde_json::from_slice(&raw).unwrap();
    let ours: ImageManifest = serde_json::from_slice(&image.manifest.bytes).unwrap();
    assert_eq!(ours.media_type, theirs.media_type);
    assert_eq!(ours.config, theirs.config);
    assert_eq!(digests(&ours.layers), digests(&theirs.layers));
}

fn compressed_copies(path: &Path) -> Vec<(ArchiveCompression, std::path::PathBuf)> {
    let bytes = fs::read(path).unwrap();
    let gz = path.with_extension("tar.gz");
    fs::write(&gz, gzip(&bytes)).unwrap();
    // A name that says nothing: compression is judged by content.
    let zst = path.with_extension("archive");
    fs::write(&zst, zstd(&bytes)).unwrap();
    vec![(ArchiveCompression::Gzip, gz), (ArchiveCompression::Zstd, zst)]
}

#[test]
fn docker_20_10_save_archives() {
    let (_registry, pushed) = pushed_fixtures();
    let dockerd = Dockerd::start().expect("start dockerd");
    for name in ["app-a", "app-b", "base", "dup-layer"] {
        for reference in &pushed.image(name).tag_references {
            dockerd.pull(reference).unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let app_a = pushed.image("app-a");

    // One image.
    let single = dir.path().join("single.tar");
    dockerd.save(&[&app_a.reference], &single).unwrap();
    let reader = ArchiveReader::open(&single).unwrap();
    assert_eq!(reader.images().len(), 1);
    let image = &reader.images()[0];
    assert_eq!(image.names, std::slice::from_ref(&app_a.reference));
    check_docker_saved(&reader, image, app_a);
    assert_same_blobs_as_skopeo(&single, image, &app_a.reference);

    // Several images in one save: shared base layers, one image under two
    // tags, and dup-layer, whose repeated layer docker stores as a symlink to
    // the first copy.
    let base = pushed.image("base");
    let dup = pushed.image("dup-layer");
    let app_b = pushed.image("app-b");
    let multi = dir.path().join("multi.tar");
    let mut refs: Vec<&str> = vec![&app_a.reference, &app_b.reference, &dup.reference];
    refs.extend(base.tag_references.iter().map(String::as_str));
    dockerd.save(&refs, &multi).unwrap();
    let listing = Command::new("tar").arg("tvf").arg(&multi).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.lines().any(|line| line.starts_with('l') && line.contains("layer.tar ->")), "{listing}");

    let reader = ArchiveReader::open(&multi).unwrap();
    assert_eq!(reader.images().len(), 4, "{:#?}", reader.images());
    for fixture in [app_a, app_b, dup] {
        let image = image_named(&reader, &fixture.reference);
        assert_eq!(image.names, std::slice::from_ref(&fixture.reference));
        check_docker_saved(&reader, image, fixture);
        assert_same_blobs_as_skopeo(&multi, image, &fixture.reference);
    }
    let base_image = image_named(&reader, &base.tag_references[0]);
    let mut names = base_image.names.clone();
    names.sort();
    let mut expected = base.tag_references.clone();
    expected.sort();
    assert_eq!(names, expected, "both tags of the one base image");
    check_docker_saved(&reader, base_image, base);
    let dup_manifest: ImageManifest =
        serde_json::from_slice(&image_named(&reader, &dup.reference).manifest.bytes).unwrap();
    assert_eq!(dup_manifest.layers[1], dup_manifest.layers[3]);

    // The same archive compressed as a whole, and through a FIFO: same images.
    for (compression, path) in compressed_copies(&multi) {
        let compressed = ArchiveReader::open(&path).unwrap();
        assert_eq!(compressed.compression(), compression);
        assert_eq!(compressed.images(), reader.images());
        check_image(&compressed, image_named(&compressed, &dup.reference));
    }
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let writer = {
        let (fifo, multi) = (fifo.clone(), multi.clone());
        std::thread::spawn(move || {
            let bytes = fs::read(multi).unwrap();
            fs::OpenOptions::new().write(true).open(fifo).unwrap().write_all(&bytes).unwrap();
        })
    };
    let piped = ArchiveReader::open(&fifo).unwrap();
    writer.join().unwrap();
    assert_eq!(piped.images(), reader.images());
    check_image(&piped, image_named(&piped, &app_b.reference));
}

#[test]
fn skopeo_docker_archives_oci_archives_and_layouts() {
    let (_registry, pushed) = pushed_fixtures();
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &PushedImage, to: String, all: bool| {
        let mut args = vec!["copy".to_owned(), "--quiet".to_owned(), "--src-tls-verify=false".to_owned()];
        if all {
            args.push("--all".to_owned());
        }
        args.push(format!("docker://{}", from.reference));
        args.push(to);
        skopeo(args).unwrap();
    };

    // docker-archive: uncompressed `<diffid>.tar` layers, config `<hex>.json`.
    for name in ["app-a", "dup-layer"] {
        let fixture = pushed.image(name);
        let path = dir.path().join(format!("{name}.docker.tar"));
        copy(fixture, format!("docker-archive:{}:fixtures/{name}:1", path.display()), false);
        let reader = ArchiveReader::open(&path).unwrap();
        assert_eq!(reader.images().len(), 1);
        let image = &reader.images()[0];
        // skopeo writes the name normalized (docker.io/fixtures/app-a:1).
        assert_eq!(image.names.len(), 1, "{:?}", image.names);
        assert!(image.names[0].ends_with(&format!("fixtures/{name}:1")), "{:?}", image.names);
        check_docker_saved(&reader, image, fixture);
        assert_same_blobs_as_skopeo(&path, image, &image.names[0]);
    }

    // oci-archive: the original OCI manifest (or, with --all, index), digest
    // preserved, named by the tag given.
    for (name, all) in [("app-b", false), ("multi", true), ("zstd", false)] {
        let fixture = pushed.image(name);
        let path = dir.path().join(format!("{name}.oci.tar"));
        copy(fixture, format!("oci-archive:{}:{name}-tag", path.display()), all);
        let reader = ArchiveReader::open(&path).unwrap();
        assert_eq!(reader.images().len(), 1);
        let image = &reader.images()[0];
        assert_eq!(image.names, [format!("{name}-tag")]);
        assert!(!image.synthesized);
        assert_eq!(image.manifest.digest.to_string(), fixture.digest, "{name}: the registry digest is kept");
        assert_eq!(image.manifest.media_type, fixture.media_type);
        let checked = check_image(&reader, image);
        assert_eq!(checked.manifests.len(), fixture.platforms.len());
        for (compression, copy) in compressed_copies(&path) {
            let compressed = ArchiveReader::open(&copy).unwrap();
            assert_eq!(compressed.compression(), compression);
            assert_eq!(compressed.images(), reader.images());
            check_image(&compressed, &compressed.images()[0]);
        }
    }

    // An OCI layout directory holding several images. skopeo compresses the
    // plain-tar layer of `uncompressed` on the way (an OCI layout destination
    // wants compressed layers), so that one gets a new manifest; whatever skopeo
    // wrote, the reader must report the manifest skopeo itself reads back.
    let layout = dir.path().join("layout");
    let names = [("app-b", "t1", true), ("uncompressed", "t2", false), ("zstd", "t3", true), ("by-digest", "t4", true)];
    for (name, tag, _) in names {
        copy(pushed.image(name), format!("oci:{}:{tag}", layout.display()), false);
    }
    let reader = ArchiveReader::open(&layout).unwrap();
    assert_eq!(reader.compression(), ArchiveCompression::None);
    assert_eq!(reader.images().len(), names.len());
    for (name, tag, unchanged) in names {
        let fixture = pushed.image(name);
        let image = image_named(&reader, tag);
        assert_eq!(image.names, [tag]);
        let theirs = skopeo_inspect_raw(&format!("oci:{}:{tag}", layout.display())).unwrap();
        assert_eq!(image.manifest.bytes, theirs, "{name}");
        assert_eq!(image.manifest.digest.to_string() == fixture.digest, unchanged, "{name}");
        let checked = check_image(&reader, image);
        assert_eq!(checked.configs, [fixture.amd64().config.digest.parse::<Digest>().unwrap()]);
        if unchanged {
            let layers: Vec<String> = fixture.amd64().layers.iter().map(|layer| layer.digest.clone()).collect();
            assert_eq!(digests(&checked.layers), layers);
        }
    }
}
