//! `hpn save` and `hpn pull` end to end: a real distribution registry seeded
//! with the fixture images, the real `hpn` binary, and real dockerd, podman
//! and skopeo reading what it wrote.

mod common;

use std::collections::BTreeSet;

use common::{Workspace, archive_entries, blob_gets, digest_of, seeded_registry, tar_entry, tar_list};
use hpn_testkit::{Dockerd, Podman, skopeo, skopeo_inspect_raw};

fn image_list(seeded: &common::Seeded) -> String {
    let mut list = String::from("# every fixture image\n\n");
    for image in &seeded.fixtures.images {
        list.push_str(&image.reference);
        list.push('\n');
    }
    list
}

#[test]
fn one_archive_loads_in_docker_and_podman_with_the_configs_diff_ids() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let list = work.file("images.txt", &image_list(&seeded));
    work.hpn(["save", "-f", list.to_str().unwrap(), "-o", "images.tar"]).assert_ok();
    let archive = work.path().join("images.tar");

    // Each blob is in the archive once.
    let entries = tar_list(&archive);
    let blobs: Vec<&String> = entries.iter().filter(|e| e.starts_with("blobs/sha256/") && e.len() > 13).collect();
    let unique: BTreeSet<&String> = blobs.iter().copied().collect();
    assert_eq!(blobs.len(), unique.len(), "a blob appears twice in {entries:?}");

    let dockerd = Dockerd::start().expect("start dockerd");
    dockerd.load(&archive).expect("docker load");
    let podman = Podman::new();
    podman.load(&archive).expect("podman load");

    for image in &seeded.fixtures.images {
        let platform = image.amd64();
        let expected: Vec<serde_json::Value> = platform.diff_ids.iter().map(|d| d.clone().into()).collect();
        // An image saved by digest has no tag: docker loads it untagged, so look it up by its config (image ID).
        let name = image.tag_references.first().cloned().unwrap_or_else(|| platform.config.digest.clone());
        let docker = dockerd.image_inspect(&name).unwrap_or_else(|e| panic!("docker has no {name}: {e:#}"));
        assert_eq!(docker["RootFS"]["Layers"], serde_json::Value::from(expected.clone()), "docker layers of {name}");
        assert_eq!(docker["Id"], platform.config.digest.as_str(), "docker image ID of {name}");
        let podman_name =
            image.tag_references.first().cloned().unwrap_or_else(|| platform.config.digest[7..].to_owned());
        let inspected =
            podman.image_inspect(&podman_name).unwrap_or_else(|e| panic!("podman has no {podman_name}: {e:#}"));
        assert_eq!(inspected["RootFS"]["Layers"], serde_json::Value::from(expected), "podman layers of {name}");
    }
}

#[test]
fn archives_keep_the_registry_digests_for_skopeo() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let list = work.file("images.txt", &image_list(&seeded));
    work.hpn(["save", "-f", list.to_str().unwrap(), "--save-mode", "2"]).assert_ok();

    for image in &seeded.fixtures.images {
        let file_name = format!("{}.tar", image.reference.replace(['/', ':'], "_"));
        let archive = work.path().join("images").join(&file_name);
        assert!(archive.is_file(), "missing {file_name}");
        // One image per archive: skopeo needs no name to find it.
        let oci = format!("oci-archive:{}", archive.display());
        let docker = format!("docker-archive:{}", archive.display());
        // skopeo's oci transport only lists OCI-typed entries; Docker-typed
        // images are read through the archive's docker side instead, which
        // must hand out the very config the registry has.
        if image.media_type.starts_with("application/vnd.oci") {
            let raw = skopeo_inspect_raw(&oci).unwrap_or_else(|e| panic!("skopeo on {file_name}: {e:#}"));
            assert_eq!(digest_of(&raw), image.digest, "top manifest of {file_name}");
        } else {
            let config = skopeo(["inspect", "--config", "--raw", docker.as_str()]).expect("skopeo docker-archive");
            assert_eq!(digest_of(config.as_bytes()), image.amd64().config.digest, "config of {file_name}");
        }
        let index: serde_json::Value = serde_json::from_slice(&tar_entry(&archive, "index.json")).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], image.digest.as_str());
        assert_eq!(entry["annotations"]["io.containerd.image.name"], image.reference.as_str());
        let tag = image.tags.first().map(String::as_str);
        assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"].as_str(), tag);
    }
}

#[test]
fn zstd_layers_get_an_uncompressed_copy_named_by_diff_id_for_docker() {
    let seeded = seeded_registry();
    let image = seeded.fixtures.image("zstd");
    let work = Workspace::new();
    work.hpn(["save", image.reference.as_str(), "-o", "zstd.tar"]).assert_ok();
    let archive = work.path().join("zstd.tar");
    let manifest: serde_json::Value = serde_json::from_slice(&tar_entry(&archive, "manifest.json")).unwrap();
    let layers: Vec<String> =
        manifest[0]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    let platform = image.amd64();
    for ((path, layer), diff_id) in layers.iter().zip(&platform.layers).zip(&platform.diff_ids) {
        let content = tar_entry(&archive, path);
        assert_eq!(&digest_of(&content), path.replace("blobs/sha256/", "sha256:").as_str());
        if layer.media_type.ends_with("+zstd") {
            assert_eq!(&format!("blobs/sha256/{}", &diff_id[7..]), path, "zstd layer must point at its DiffID copy");
            // The original zstd blob stays on the OCI side.
            assert_eq!(digest_of(&tar_entry(&archive, &format!("blobs/sha256/{}", &layer.digest[7..]))), layer.digest);
        } else {
            assert_eq!(path, &format!("blobs/sha256/{}", &layer.digest[7..]));
        }
    }
}

#[test]
fn platforms_are_chosen_from_indexes() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    for name in ["multi", "multi-docker"] {
        let image = seeded.fixtures.image(name);
        let arm64 = image.platform("linux/arm64/v8").expect("an arm64 platform");
        let out = format!("{name}-arm.tar");
        work.hpn(["save", image.reference.as_str(), "--platform", "linux/arm64", "-o", out.as_str()]).assert_ok();
        let archive = work.path().join(&out);
        let manifest: serde_json::Value = serde_json::from_slice(&tar_entry(&archive, "manifest.json")).unwrap();
        assert_eq!(manifest[0]["Config"], format!("blobs/sha256/{}", &arm64.config.digest[7..]));
        let entries = tar_list(&archive);
        let amd64 = image.amd64();
        assert!(!entries.contains(&format!("blobs/sha256/{}", &amd64.manifest.digest[7..])), "amd64 saved too");

        let out = format!("{name}-all.tar");
        work.hpn(["save", image.reference.as_str(), "--all-platforms", "-o", out.as_str()]).assert_ok();
        let entries = tar_list(&work.path().join(&out));
        for platform in &image.platforms {
            for digest in [&platform.manifest.digest, &platform.config.digest] {
                assert!(entries.contains(&format!("blobs/sha256/{}", &digest[7..])), "{} missing", platform.platform());
            }
        }
        let missing = work.hpn(["save", image.reference.as_str(), "--platform", "linux/s390x", "-o", "none.tar"]);
        missing.assert_code(4);
        assert!(missing.stderr.contains("linux/s390x") && missing.stderr.contains("linux/arm64"), "{}", missing.stderr);
        assert!(!work.path().join("none.tar").exists());
    }
}

#[test]
fn pull_fills_a_store_skopeo_can_read_and_never_fetches_a_blob_twice() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let list = work.file("images.txt", &image_list(&seeded));
    work.hpn(["pull", "-f", list.to_str().unwrap()]).assert_ok();
    // A first pull has no manifest it could reuse, so it asks for none with a HEAD first (the
    // HEADs of cosign's sha256-<hex>.sig/.att/.sbom tags look for attachments, not the image).
    let heads = |log: &[hpn_testkit::AccessLogEntry]| {
        log.iter()
            .filter(|e| e.method == "HEAD" && e.path.contains("/manifests/") && !e.path.contains("/manifests/sha256-"))
            .count()
    };
    assert_eq!(heads(&seeded.registry.access_log()), 0);

    // Shared base layers were fetched once although several images wanted them at the same time.
    let all_blobs: BTreeSet<String> = seeded
        .fixtures
        .images
        .iter()
        .flat_map(|i| i.platforms.iter().flat_map(|p| p.layers.iter().map(|l| l.digest.clone())))
        .collect();
    let amd64_blobs: BTreeSet<String> =
        seeded.fixtures.images.iter().flat_map(|i| i.amd64().layers.iter().map(|l| l.digest.clone())).collect();
    for digest in &all_blobs {
        let gets = blob_gets(&seeded.registry, digest);
        let expected = usize::from(amd64_blobs.contains(digest));
        assert_eq!(gets, expected, "blob {digest} fetched {gets} times");
    }

    let oci_image = seeded.fixtures.image("app-b");
    let raw = skopeo_inspect_raw(&format!("oci:{}:{}", work.store().display(), oci_image.reference))
        .expect("skopeo reads the store");
    assert_eq!(digest_of(&raw), oci_image.digest);

    // A second pull and a save find every blob in the store.
    let before = seeded.registry.access_log().len();
    let second = work.hpn(["pull", "-f", list.to_str().unwrap(), "--json"]);
    second.assert_ok();
    assert_eq!(second.json()["bytes_fetched"], 0);
    let later: Vec<_> =
        seeded.registry.access_log().into_iter().skip(before).filter(|e| e.path.contains("/blobs/")).collect();
    assert!(later.is_empty(), "blobs fetched again: {later:?}");
    let second_run: Vec<_> = seeded.registry.access_log().into_iter().skip(before).collect();
    assert!(heads(&second_run) > 0, "a known tag is checked with a HEAD");
    assert!(
        // The GETs of sha256-<hex> fallback tags look for referrers (new signatures may have come).
        !second_run
            .iter()
            .any(|e| e.method == "GET" && e.path.contains("/manifests/") && !e.path.contains("/manifests/sha256-")),
        "manifests the store has were fetched again: {second_run:?}"
    );
    work.hpn(["save", "-f", list.to_str().unwrap(), "-o", "again.tar", "--quiet"]).assert_ok();
    let after_save: Vec<_> =
        seeded.registry.access_log().into_iter().skip(before).filter(|e| e.path.contains("/blobs/")).collect();
    assert!(after_save.is_empty(), "save fetched blobs the store has: {after_save:?}");

    // A blob cut short under its name (a power loss before the kernel wrote it back) is
    // fetched again, with --sync too, and the store verifies after.
    let layer = &oci_image.amd64().layers[0].digest;
    let path = work.store().join("blobs/sha256").join(&layer["sha256:".len()..]);
    std::fs::write(&path, b"").unwrap();
    work.hpn(["pull", "--sync", oci_image.reference.as_str(), "--quiet"]).assert_ok();
    assert_eq!(digest_of(&std::fs::read(&path).unwrap()), *layer);
    assert_eq!(blob_gets(&seeded.registry, layer), 2);
    work.assert_store_verifies();
}

#[test]
fn save_modes_and_the_go_hpn_flag_form_name_files_like_the_go_hpn() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let app = &seeded.fixtures.image("app-a").reference;
    let base = &seeded.fixtures.image("base").reference;
    let list = work.file("images.txt", &format!("{app}\n{base}  # the base\n"));
    let file = |reference: &str| format!("{}.tar", reference.replace(['/', ':'], "_"));

    work.hpn(["-a", "save", "-f", list.to_str().unwrap(), "--save-mode", "1"]).assert_ok();
    work.hpn(["save", "-f", list.to_str().unwrap(), "--save-mode", "3"]).assert_ok();
    for reference in [app, base] {
        assert!(work.path().join(file(reference)).is_file(), "mode 1: {}", file(reference));
        // The project is the repository's first path component: `fixtures`.
        assert!(work.path().join("images/fixtures").join(file(reference)).is_file(), "mode 3: {}", file(reference));
    }
    // The config's save mode applies when no flag is given.
    std::fs::create_dir_all(work.path().join("home/.hpn")).unwrap();
    work.file("home/.hpn/config.yaml", "modes:\n  save_mode: 2\nparallel:\n  max_workers: 2\n");
    work.hpn(["save", app.as_str()]).assert_ok();
    assert!(work.path().join("images").join(file(app)).is_file());
}

/// docker before 23 reads gzip-compressed archives but not zstd-compressed
/// ones (dockerd 20.10 here); podman reads both.
#[test]
fn compressed_archives_load_in_docker_and_podman() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let app = &seeded.fixtures.image("app-a");
    work.hpn(["save", app.reference.as_str(), "-o", "app.tar.gz", "--compress", "gzip"]).assert_ok();
    work.hpn(["save", app.reference.as_str(), "-o", "app.tar.zst", "--compress", "zstd"]).assert_ok();
    let gzip = work.path().join("app.tar.gz");
    assert_eq!(&std::fs::read(&gzip).unwrap()[..2], &[0x1f, 0x8b]);
    let zstd = work.path().join("app.tar.zst");
    assert_eq!(&std::fs::read(&zstd).unwrap()[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    let dockerd = Dockerd::start().expect("start dockerd");
    let podman = Podman::new();
    dockerd.load(&gzip).unwrap_or_else(|e| panic!("docker load {}: {e:#}", gzip.display()));
    for archive in [&gzip, &zstd] {
        podman.load(archive).unwrap_or_else(|e| panic!("podman load {}: {e:#}", archive.display()));
    }
    let inspected = dockerd.image_inspect(&app.reference).unwrap();
    assert_eq!(inspected["Id"], app.amd64().config.digest.as_str());
}

/// A zstd layer's uncompressed copy is made once, into the store: a warm save decompresses
/// nothing (the debug log names every decompression, and the cold save's lines show the log is
/// on), a damaged copy is noticed and made again, docker loads the warm archive, and gc drops
/// the copy with the last image that has its layer.
#[test]
fn warm_saves_take_zstd_layers_uncompressed_copies_from_the_store() {
    let seeded = common::seeded_registry_with(&["zstd"]);
    let image = seeded.fixtures.image("zstd");
    let platform = image.amd64();
    let copies: Vec<String> = platform
        .layers
        .iter()
        .zip(&platform.diff_ids)
        .filter(|(layer, _)| layer.media_type.ends_with("+zstd"))
        .map(|(_, diff_id)| diff_id.clone())
        .collect();
    assert!(!copies.is_empty(), "the zstd fixture has no zstd layer");
    let work = Workspace::new();
    let save = |out: &str| {
        let run =
            work.hpn_with_env(["save", image.reference.as_str(), "-o", out], &[("RUST_LOG", "hpn_transfer=debug")]);
        run.assert_ok();
        (
            run.stderr.matches("decompressing a zstd layer into the store").count(),
            archive_entries(&work.path().join(out)),
        )
    };
    let copy_path = |diff_id: &str| work.store().join("blobs/sha256").join(&diff_id[7..]);

    let (decompressed, cold) = save("cold.tar");
    assert_eq!(decompressed, copies.len(), "the cold save decompresses each zstd layer once");
    for diff_id in &copies {
        assert_eq!(digest_of(&std::fs::read(copy_path(diff_id)).unwrap()), *diff_id, "the store's copy");
    }
    let (decompressed, warm) = save("warm.tar");
    assert_eq!(decompressed, 0, "a warm save must take the copies from the store");
    assert_eq!(warm, cold, "the warm archive holds what the cold one does");
    let dockerd = Dockerd::start().expect("start dockerd");
    dockerd.load(&work.path().join("warm.tar")).expect("docker load of the warm archive");
    let inspected = dockerd.image_inspect(&image.reference).unwrap();
    assert_eq!(inspected["RootFS"]["Layers"], serde_json::Value::from(platform.diff_ids.clone()));

    // Same size, other bytes: found by its changed stat and re-hash, and made again.
    let damaged = copy_path(&copies[0]);
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    let (decompressed, remade) = save("remade.tar");
    assert_eq!(decompressed, 1, "the damaged copy must be made again, and only it");
    assert_eq!(remade, cold);
    assert_eq!(digest_of(&std::fs::read(&damaged).unwrap()), copies[0], "the damaged copy was replaced");
    work.assert_store_verifies();

    work.hpn(["store", "rm", image.reference.as_str()]).assert_ok();
    work.hpn(["store", "gc"]).assert_ok();
    for diff_id in &copies {
        assert!(!copy_path(diff_id).exists(), "gc kept the copy {diff_id} of a layer it removed");
    }
    let records = std::fs::read_dir(work.store().join(".hpn-uncompressed")).unwrap().count();
    assert_eq!(records, 0, "gc kept the record of a removed layer's copy");
}

/// A cold save writes each download into the store and the archive in one pass (no second
/// write of it from the store afterwards; the debug log names each one), and the archive holds
/// exactly what a warm save, which copies every blob from the store, writes.
#[test]
fn a_cold_save_writes_each_download_into_the_store_and_the_archive_in_one_pass() {
    let seeded = common::seeded_registry_with(&["base"]);
    let image = seeded.fixtures.image("base");
    let work = Workspace::new();
    let cold =
        work.hpn_with_env(["save", image.reference.as_str(), "-o", "cold.tar"], &[("RUST_LOG", "hpn_transfer=debug")]);
    cold.assert_ok();
    for layer in &image.amd64().layers {
        let line = format!("downloading into the store and the archive in one pass blob={}", layer.digest);
        assert!(cold.stderr.contains(&line), "layer {} took two passes:\n{}", layer.digest, cold.stderr);
    }
    work.assert_store_verifies();
    work.hpn(["save", image.reference.as_str(), "-o", "warm.tar"]).assert_ok();
    assert_eq!(archive_entries(&work.path().join("cold.tar")), archive_entries(&work.path().join("warm.tar")));
}
