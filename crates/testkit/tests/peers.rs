//! The testkit against the real peers it manages: if these fail, every end-to-end test would.

use std::collections::BTreeSet;

use hpn_testkit::fixtures::{self, Scale, media_types as mt};
use hpn_testkit::{Dockerd, Podman, Registry, skopeo, skopeo_inspect, skopeo_inspect_raw};
use sha2::{Digest as _, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn pushed_fixtures_are_what_skopeo_sees() {
    let registry = Registry::start().unwrap();
    let set = fixtures::build(Scale::Small).unwrap();
    let pushed = fixtures::push(&set, registry.addr()).unwrap();
    assert_eq!(pushed.images.len(), set.images().len());

    for image in &pushed.images {
        let refs: Vec<&String> = image.tag_references.iter().chain([&image.digest_reference]).collect();
        for reference in refs {
            let docker_ref = format!("docker://{reference}");
            let raw = skopeo_inspect_raw(&docker_ref).unwrap();
            assert_eq!(sha256(&raw), image.digest, "raw manifest of {reference}");
            assert_eq!(raw, set.read_blob(&image.digest).unwrap(), "{reference} bytes changed on the way");
        }

        for p in &image.platforms {
            let inspected =
                skopeo_inspect(&format!("docker://{}/{}@{}", pushed.registry, image.repository, p.manifest.digest))
                    .unwrap();
            assert_eq!(inspected["Digest"], p.manifest.digest.as_str(), "{} {}", image.name, p.platform());
            assert_eq!(inspected["Architecture"], p.architecture.as_str());
            let layers: Vec<&str> =
                inspected["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
            assert_eq!(layers, p.layers.iter().map(|l| l.digest.as_str()).collect::<Vec<_>>());
        }
        if image.media_type == mt::DOCKER_MANIFEST || image.media_type == mt::OCI_MANIFEST {
            // Without a digest or platform in the reference, skopeo reports the manifest's digest.
            let v = skopeo_inspect(&format!("docker://{}", image.reference)).unwrap();
            assert_eq!(v["Digest"], image.digest.as_str(), "{}", image.reference);
        }
    }

    // Tags exist exactly as listed; the digest-only image has none.
    for image in &pushed.images {
        let tags = registry.tags(&image.repository);
        if image.tags.is_empty() {
            assert!(tags.map(|t| t.is_empty()).unwrap_or(true), "{} got tags", image.name);
        } else {
            let got: BTreeSet<String> = tags.unwrap().into_iter().collect();
            assert_eq!(got, image.tags.iter().cloned().collect(), "tags of {}", image.repository);
        }
    }

    // The index keeps its children reachable by digest; the registry serves the exact bytes.
    let multi = pushed.image("multi");
    let m = registry.manifest(&multi.repository, &multi.tags[0]).unwrap();
    assert_eq!((m.media_type.as_str(), m.digest.to_string()), (mt::OCI_INDEX, multi.digest.clone()));
    assert!(registry.has_blob("fixtures/app-b", &pushed.image("app-a").amd64().layers[0].digest).unwrap());

    // A second push finds every blob already there and uploads nothing.
    let before = registry.access_log().len();
    fixtures::push(&set, registry.addr()).unwrap();
    let uploads = registry.access_log()[before..]
        .iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(uploads, 0);
}

#[test]
fn basic_auth_registry_wants_the_credentials() {
    let registry = Registry::start_with_htpasswd("hpn", "s3cret pass").unwrap();
    assert_eq!(registry.credentials(), Some(("hpn", "s3cret pass")));
    let set = fixtures::build(Scale::Small).unwrap();
    assert!(fixtures::push(&set, registry.addr()).is_err(), "push without credentials succeeded");
    let pushed = fixtures::push_to(&set, &registry).unwrap();

    let base = pushed.image("base");
    let docker_ref = format!("docker://{}", base.reference);
    let err = skopeo(["inspect", "--tls-verify=false", "--no-creds", &docker_ref]).unwrap_err();
    assert!(format!("{err:#}").contains("401") || format!("{err:#}").contains("unauthorized"), "{err:#}");
    let out = skopeo(["inspect", "--tls-verify=false", "--creds", "hpn:s3cret pass", &docker_ref]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], base.digest.as_str());
    let statuses: BTreeSet<u16> = registry.access_log().iter().map(|e| e.status).collect();
    assert!(statuses.contains(&401) && statuses.contains(&200), "{statuses:?}");
}

/// dockerd and podman load an archive skopeo made from a fixture and see the fixture's DiffIDs;
/// dockerd also pulls from the loopback registry over plain HTTP and saves.
#[test]
fn dockerd_and_podman_load_a_fixture() {
    let registry = Registry::start().unwrap();
    let set = fixtures::build(Scale::Small).unwrap();
    let pushed = fixtures::push(&set, registry.addr()).unwrap();
    let app = pushed.image("app-a");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app-a.tar");
    skopeo([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}", app.reference),
        &format!("docker-archive:{}:fixtures/app-a:1", archive.display()),
    ])
    .unwrap();

    let docker = Dockerd::start().unwrap();
    let out = docker.load(&archive).unwrap();
    assert!(out.contains("fixtures/app-a:1"), "{out}");
    let inspect = docker.image_inspect("fixtures/app-a:1").unwrap();
    let layers: Vec<&str> =
        inspect["RootFS"]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(layers, app.amd64().diff_ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(inspect["Id"], app.amd64().config.digest.as_str());

    docker.pull(&pushed.image("multi").reference).unwrap();
    let multi = docker.image_inspect(&pushed.image("multi").reference).unwrap();
    assert_eq!(multi["Id"], pushed.image("multi").amd64().config.digest.as_str());
    let saved = dir.path().join("saved.tar");
    docker.save(&[&pushed.image("multi").reference], &saved).unwrap();
    assert!(saved.metadata().unwrap().len() > 0);
    assert!(docker.images().unwrap().len() >= 2);

    let podman = Podman::new();
    let out = podman.load(&archive).unwrap();
    assert!(out.contains("fixtures/app-a:1"), "{out}");
    let inspect = podman.image_inspect("fixtures/app-a:1").unwrap();
    let layers: Vec<&str> =
        inspect["RootFS"]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(layers, app.amd64().diff_ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(podman.images().unwrap().len(), 1);
}

#[test]
fn registry_on_a_taken_port_fails_with_its_log() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = Registry::builder().port(port).start().unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("address already in use"), "{msg}");
}
