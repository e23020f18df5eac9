//! The air-gap half: archives and the store back into a registry with every
//! digest unchanged — hpn's own archives, real `docker save` output and
//! skopeo docker-archives — then read back by real docker and skopeo.

mod common;

use common::{Workspace, seeded_registry};
use hpn_testkit::{Dockerd, Registry, skopeo};

fn list_of(seeded: &common::Seeded) -> String {
    seeded.fixtures.images.iter().map(|image| format!("{}\n", image.reference)).collect()
}

#[test]
fn save_load_push_keeps_every_manifest_digest() {
    let seeded = seeded_registry();
    let site = Registry::start().expect("the site's registry");
    let online = Workspace::new();
    let list = online.file("images.txt", &list_of(&seeded));
    online.hpn(["save", "-f", list.to_str().unwrap(), "--all-platforms", "-o", "carry.tar"]).assert_ok();

    // Across the air gap: a fresh store, load, push with the images' own projects.
    let site_side = Workspace::new();
    let archive = online.path().join("carry.tar");
    site_side.hpn(["load", "-i", archive.to_str().unwrap()]).assert_ok();
    let list = site_side.file("images.txt", &list_of(&seeded));
    site_side.hpn(["push", "-f", list.to_str().unwrap(), "-r", site.addr(), "--push-mode", "2"]).assert_ok();

    for image in &seeded.fixtures.images {
        let reference = image.tags.first().map_or_else(|| image.digest.clone(), Clone::clone);
        let pushed = site.manifest(&image.repository, &reference).expect("pushed manifest");
        assert_eq!(pushed.digest.to_string(), image.digest, "{} changed digest", image.name);
    }

    // The images share their base layer, pushed into several repositories at once: its bytes
    // go up once, and the other repositories mount it.
    let uploads = common::blob_uploads(&site);
    assert!(!uploads.is_empty());
    assert!(uploads.values().all(|&count| count == 1), "blobs uploaded more than once: {uploads:#?}");
}

#[test]
fn push_straight_from_an_archive_in_push_mode_1() {
    let seeded = seeded_registry();
    let site = Registry::start().unwrap();
    let work = Workspace::new();
    let app = seeded.fixtures.image("app-a");
    let multi = seeded.fixtures.image("multi");
    work.hpn(["save", app.reference.as_str(), multi.reference.as_str(), "-o", "two.tar"]).assert_ok();
    let run = work.hpn(["push", "-i", "two.tar", "-r", site.addr(), "--json"]);
    run.assert_ok();
    assert_eq!(run.json()["ok"], 2);
    // Mode 1 keeps only the image's own name: registry/image:tag.
    assert_eq!(site.manifest("app-a", "1").unwrap().digest.to_string(), app.digest);
    // The archive holds one platform of the index, so that platform's manifest is pushed, as docker push does.
    assert_eq!(site.manifest("multi", "1").unwrap().digest.to_string(), multi.amd64().manifest.digest);
}

#[test]
fn real_docker_save_and_skopeo_archives_push_and_pull_back_in_docker() {
    let seeded = seeded_registry();
    let site = Registry::start().unwrap();
    let work = Workspace::new();
    let app = seeded.fixtures.image("app-a");
    let dockerd = Dockerd::start().expect("start dockerd");
    dockerd.pull(&app.reference).expect("docker pull from the seeded registry");
    let docker_archive = work.path().join("docker-save.tar");
    dockerd.save(&[app.reference.as_str()], &docker_archive).expect("docker save");
    let skopeo_archive = work.path().join("skopeo.tar");
    skopeo([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}", app.reference),
        &format!("docker-archive:{}:{}", skopeo_archive.display(), app.reference),
    ])
    .expect("skopeo docker-archive");

    for (archive, project) in [(&docker_archive, "from-docker"), (&skopeo_archive, "from-skopeo")] {
        work.hpn(["push", "-i", archive.to_str().unwrap(), "-r", site.addr(), "-p", project, "--push-mode", "2"])
            .assert_ok();
        let pushed = format!("{}/{project}/app-a:1", site.addr());
        dockerd.pull(&pushed).unwrap_or_else(|e| panic!("docker pull {pushed}: {e:#}"));
        let inspected = dockerd.image_inspect(&pushed).unwrap();
        let expected: Vec<serde_json::Value> = app.amd64().diff_ids.iter().map(|d| d.clone().into()).collect();
        assert_eq!(inspected["RootFS"]["Layers"], serde_json::Value::from(expected), "{project}");
        assert_eq!(inspected["Id"], app.amd64().config.digest.as_str(), "{project}: config changed");
    }

    // skopeo's docker-archive keeps plain tars and no manifest: hpn makes one up, and the
    // layers go to the registry gzip-compressed, as docker push sends them.
    let pushed = site.manifest("from-skopeo/app-a", "1").unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&pushed.bytes).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), app.amd64().layers.len());
    for layer in layers {
        assert_eq!(layer["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip", "{manifest:#}");
    }
    let plain: u64 = plain_layer_bytes(&skopeo_archive);
    let sent: u64 = layers.iter().map(|layer| layer["size"].as_u64().unwrap()).sum();
    let original: u64 = app.amd64().layers.iter().map(|layer| layer.size).sum();
    // The fixtures' content compresses little; what counts is landing where the registry's own
    // gzip layers did, not at the plain size.
    assert!(sent < plain && sent <= original + original / 50, "sent {sent}, plain {plain}, registry's gzip {original}");
}

/// The bytes of the plain layer tars in a docker-archive (its `*.tar` entries).
fn plain_layer_bytes(archive: &std::path::Path) -> u64 {
    common::archive_entries(archive)
        .iter()
        .filter(|(name, _)| name.ends_with(".tar"))
        .map(|(_, (_, bytes))| bytes.len() as u64)
        .sum()
}

#[test]
fn one_image_per_run_still_mounts_the_layers_an_earlier_run_pushed() {
    let seeded = seeded_registry();
    let site = Registry::start().unwrap();
    let work = Workspace::new();
    let (first, second) = (seeded.fixtures.image("app-a"), seeded.fixtures.image("app-b"));
    let layers = |image: &hpn_testkit::fixtures::PushedImage| -> Vec<String> {
        image.amd64().layers.iter().map(|layer| layer.digest.clone()).collect()
    };
    let shared: Vec<String> = layers(first).into_iter().filter(|layer| layers(second).contains(layer)).collect();
    assert!(!shared.is_empty(), "the fixtures share a base layer");

    // How scripts copy: one image per run, each into its own repository.
    for (image, repository) in [(first, "one/app"), (second, "two/app")] {
        let target = format!("docker://{}/{repository}:1", site.addr());
        work.hpn(["copy", &format!("docker://{}", image.reference), &target, "--quiet"]).assert_ok();
        assert_eq!(site.manifest(repository, "1").unwrap().digest.to_string(), image.digest);
    }
    let uploads = common::blob_uploads(&site);
    for layer in &shared {
        assert_eq!(uploads.get(layer), Some(&1), "{layer} uploaded more than once: {uploads:#?}");
    }
    let mounted = site.access_log().into_iter().filter(|entry| {
        entry.method == "POST"
            && entry.status == 201
            && entry.path.starts_with("/v2/two/app/")
            && entry.path.contains("mount=")
    });
    assert_eq!(mounted.count(), shared.len());
}

#[test]
fn copy_between_registries_layouts_and_archives() {
    let seeded = seeded_registry();
    let site = Registry::start().unwrap();
    let work = Workspace::new();
    let multi = seeded.fixtures.image("multi");
    let target = format!("{}/mirror/multi:1", site.addr());
    work.hpn(["copy", &format!("docker://{}", multi.reference), &format!("docker://{target}"), "--all-platforms"])
        .assert_ok();
    assert_eq!(site.manifest("mirror/multi", "1").unwrap().digest.to_string(), multi.digest);

    let app = seeded.fixtures.image("app-b");
    let layout = work.path().join("layout");
    work.hpn(["copy", app.reference.as_str(), &format!("oci:{}:{}", layout.display(), app.reference)]).assert_ok();
    let raw = skopeo(["inspect", "--raw", &format!("oci:{}:{}", layout.display(), app.reference)]).unwrap();
    assert_eq!(common::digest_of(raw.as_bytes()), app.digest);

    work.hpn([
        "copy",
        &format!("oci:{}", layout.display()),
        &format!("docker-archive:{}/app.tar", work.path().display()),
    ])
    .assert_ok();
    let back = format!("{}/back/app-b:1.0", site.addr());
    work.hpn(["copy", &format!("docker-archive:{}/app.tar", work.path().display()), &back]).assert_ok();
    assert_eq!(site.manifest("back/app-b", "1.0").unwrap().digest.to_string(), app.digest);
}

#[test]
fn copy_many_images_into_one_registry_at_once_without_the_store() {
    let seeded = seeded_registry();
    let site = Registry::start().unwrap();
    let work = Workspace::new();
    let list = work.file("images.txt", &list_of(&seeded));
    let run = work.hpn([
        "copy",
        "-f",
        list.to_str().unwrap(),
        "-r",
        site.addr(),
        "--push-mode",
        "2",
        "--all-platforms",
        "--json",
    ]);
    run.assert_ok();
    assert_eq!(run.json()["ok"], seeded.fixtures.images.len());
    for image in &seeded.fixtures.images {
        let reference = image.tags.first().map_or_else(|| image.digest.clone(), Clone::clone);
        let copied = site.manifest(&image.repository, &reference).expect("copied manifest");
        assert_eq!(copied.digest.to_string(), image.digest, "{} changed digest", image.name);
    }
    // One engine run: the base layer the images share goes up once and is mounted elsewhere.
    let uploads = common::blob_uploads(&site);
    assert!(uploads.values().all(|&count| count == 1), "blobs uploaded more than once: {uploads:#?}");
    assert!(!work.store().exists(), "hpn copy -r wrote a store");

    // The two forms do not mix, and say how to use the other one.
    let run = work.hpn(["copy", seeded.fixtures.image("app-a").reference.as_str()]);
    run.assert_code(2);
    assert!(run.stderr.contains("-r REGISTRY"), "{}", run.stderr);
    work.hpn(["copy", "-f", list.to_str().unwrap(), "docker://x/y:1"]).assert_code(2);
}

#[test]
fn broken_archives_name_the_archive_and_push_nothing() {
    let seeded = seeded_registry();
    let site = Registry::start().unwrap();
    let work = Workspace::new();
    let app = seeded.fixtures.image("app-a");
    work.hpn(["save", app.reference.as_str(), "-o", "good.tar"]).assert_ok();
    let good = std::fs::read(work.path().join("good.tar")).unwrap();
    work.file("not-a-tar.tar", "this is not an archive at all\n");
    std::fs::write(work.path().join("truncated.tar"), &good[..good.len() / 2]).unwrap();

    for broken in ["not-a-tar.tar", "truncated.tar"] {
        let run = work.hpn(["push", "-i", broken, "-r", site.addr()]);
        assert_ne!(run.code, 0, "{broken} was accepted");
        assert!(run.stderr.contains(broken), "{broken} not named: {}", run.stderr);
        let loaded = work.hpn(["load", "-i", broken]);
        assert_ne!(loaded.code, 0);
    }
    assert!(site.tags("app-a").unwrap_or_default().is_empty(), "a manifest was pushed from a broken archive");
}
