//! Differential bundles (`hpn save --since`) and inventories (`hpn store
//! inventory`): a chain of bundles that each ship only what the far side
//! lacks, loaded, verified and pushed there with every digest intact.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{Workspace, seeded_registry_with};
use hpn_testkit::Registry;

/// The blobs an archive carries (`blobs/sha256/…` entries), by digest, with their sizes.
fn carried_blobs(archive: &Path) -> BTreeMap<String, u64> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut blobs = BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|hex| !hex.is_empty()) {
            blobs.insert(format!("sha256:{hex}"), entry.size());
        }
    }
    blobs
}

fn bill(archive: &Path) -> serde_json::Value {
    serde_json::from_slice(&common::tar_entry(archive, "hpn-contents.json")).unwrap()
}

fn base_blobs(archive: &Path) -> Vec<String> {
    bill(archive)["base_blobs"]
        .as_array()
        .map(|blobs| blobs.iter().map(|blob| blob["digest"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The names index.json of a store records.
fn store_refs(store: &Path) -> Vec<String> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["annotations"]["io.containerd.image.name"].as_str().map(str::to_owned))
        .collect()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_chain_of_three_differential_bundles_loads_verifies_and_pushes_with_every_digest() {
    let seeded = seeded_registry_with(&["base", "app-a", "app-b", "multi"]);
    let image = |name: &str| seeded.fixtures.image(name);
    let work = Workspace::new();
    // A tag that moves between deliveries: first the base image, then app-a, then app-b.
    let moving = format!("{}/fixtures/moving:1", seeded.registry.addr());
    let point_moving_at = |name: &str| {
        work.hpn(["copy", &format!("docker://{}", image(name).reference), &format!("docker://{moving}")]).assert_ok();
    };
    let save = |output: &str, images: &[&str], since: &[&str]| {
        let mut args = vec!["--json", "save", "--all-platforms", "-o", output];
        args.extend_from_slice(images);
        for previous in since {
            args.extend_from_slice(&["--since", previous]);
        }
        let run = work.hpn(args);
        run.assert_ok();
        run.json()
    };

    point_moving_at("base");
    let first = save("one.tar", &[image("base").reference.as_str(), moving.as_str()], &[]);
    assert!(first.get("differential").is_none(), "a whole bundle is not differential: {first:#}");

    // Second: the moving tag now names app-a, and app-a is new; the base image is unchanged.
    point_moving_at("app-a");
    let second = save(
        "two.tar",
        &[image("base").reference.as_str(), moving.as_str(), image("app-a").reference.as_str()],
        &["one.tar"],
    );
    let differential = &second["differential"];
    assert_eq!(differential["unchanged"], serde_json::json!([format!("{}", image("base").reference)]), "{second:#}");
    // app-a sits on the base image's layer, which the first bundle carried.
    let shared_layer = &image("base").amd64().layers[0].digest;
    assert_eq!(&image("app-a").amd64().layers[0].digest, shared_layer);
    let two = work.path().join("two.tar");
    assert!(!carried_blobs(&two).contains_key(shared_layer), "the base's layer was shipped again");
    assert!(base_blobs(&two).contains(shared_layer), "{:#}", bill(&two));
    assert!(differential["bytes_saved"].as_u64().unwrap() >= image("base").amd64().layers[0].size, "{second:#}");
    assert_eq!(differential["docker_loadable"], false, "{second:#}");
    assert!(!carried_blobs(&two).contains_key(&image("base").digest), "an unchanged image's manifest was shipped");

    // Third, over the second only: app-b and multi are new, the tag moves to app-b. What the
    // second bundle needed from the first counts as being at the far side too.
    point_moving_at("app-b");
    save(
        "three.tar",
        &[
            image("app-a").reference.as_str(),
            image("app-b").reference.as_str(),
            image("multi").reference.as_str(),
            moving.as_str(),
        ],
        &["two.tar"],
    );
    let three = work.path().join("three.tar");
    assert!(!carried_blobs(&three).contains_key(shared_layer), "a layer of the first bundle was shipped again");
    let base_three = base_blobs(&three);
    assert!(base_three.contains(shared_layer), "{:#}", bill(&three));
    for carried in carried_blobs(&three).keys() {
        assert!(!base_three.contains(carried), "{carried} is both carried and left to the base");
    }

    // Each verifies on its own: base layers are expected elsewhere, not missing.
    let run = work.hpn(["--json", "verify", "one.tar", "two.tar", "three.tar"]);
    run.assert_ok();
    for report in run.json().as_array().unwrap() {
        assert_eq!(report["ok"], true, "{report:#}");
    }
    assert!(run.json()[1]["expected_elsewhere"].as_u64().unwrap() >= 1, "{:#}", run.json());

    // The far side: the three bundles, in order, into one store, verified, pushed.
    let far = Workspace::new();
    for bundle in ["one.tar", "two.tar", "three.tar"] {
        far.hpn(["load", "-i", path_str(&work.path().join(bundle))]).assert_ok();
    }
    let verified = far.hpn(["--json", "store", "verify"]);
    verified.assert_ok();
    assert_eq!(verified.json()["ok"], true, "{:#}", verified.json());
    let site = Registry::start().expect("the site's registry");
    let wanted: Vec<String> = ["base", "app-a", "app-b", "multi"]
        .iter()
        .map(|name| image(name).reference.clone())
        .chain([moving.clone()])
        .collect();
    let mut push = vec!["push", "-r", site.addr(), "--push-mode", "2", "--all-platforms"];
    push.extend(wanted.iter().map(String::as_str));
    far.hpn(push).assert_ok();
    for name in ["base", "app-a", "app-b", "multi"] {
        let pushed = site.manifest(&image(name).repository, &image(name).tags[0]).expect("pushed manifest");
        assert_eq!(pushed.digest.to_string(), image(name).digest, "{name} changed digest");
    }
    let pushed = site.manifest("fixtures/moving", "1").expect("pushed moving tag");
    assert_eq!(pushed.digest.to_string(), image("app-b").digest, "the moving tag is not the last delivery's");
}

#[test]
fn a_differential_without_its_base_records_no_ref_and_names_the_missing_layers() {
    let seeded = seeded_registry_with(&["base", "app-a"]);
    let (base, app) = (seeded.fixtures.image("base"), seeded.fixtures.image("app-a"));
    let work = Workspace::new();
    work.hpn(["save", base.reference.as_str(), "-o", "base.tar"]).assert_ok();
    work.hpn(["save", app.reference.as_str(), "-o", "app.tar", "--since", "base.tar"]).assert_ok();
    let shared_layer = &base.amd64().layers[0].digest;

    let far = Workspace::new();
    let run = far.hpn(["load", "-i", path_str(&work.path().join("app.tar"))]);
    run.assert_code(4);
    assert!(
        run.stderr.contains(shared_layer) && run.stderr.contains("base.tar") && run.stderr.contains("app.tar"),
        "{}",
        run.stderr
    );
    assert!(store_refs(&far.store()).is_empty(), "a ref with an incomplete closure was recorded");
    far.hpn(["store", "verify"]).assert_ok();

    // A push straight from the bundle to a registry without the base fails the same way.
    let site = Registry::start().expect("the site's registry");
    let run = far.hpn(["push", "-i", path_str(&work.path().join("app.tar")), "-r", site.addr()]);
    run.assert_code(4);
    assert!(run.stderr.contains(shared_layer) && run.stderr.contains("base.tar"), "{}", run.stderr);

    // Into a registry that holds the base, the bundle pushes straight, digest intact.
    far.hpn(["push", "-i", path_str(&work.path().join("base.tar")), "-r", site.addr(), "--push-mode", "2"]).assert_ok();
    far.hpn(["push", "-i", path_str(&work.path().join("app.tar")), "-r", site.addr(), "--push-mode", "2"]).assert_ok();
    let pushed = site.manifest(&app.repository, &app.tags[0]).expect("pushed manifest");
    assert_eq!(pushed.digest.to_string(), app.digest);

    // With the base loaded first, the same bundle records its image.
    far.hpn(["load", "-i", path_str(&work.path().join("base.tar"))]).assert_ok();
    far.hpn(["load", "-i", path_str(&work.path().join("app.tar"))]).assert_ok();
    assert!(store_refs(&far.store()).contains(&app.reference), "{:?}", store_refs(&far.store()));
    far.hpn(["store", "verify"]).assert_ok();
}

#[test]
fn an_inventory_round_trip_ships_nothing_the_site_already_has() {
    let seeded = seeded_registry_with(&["base", "app-a", "app-b"]);
    let image = |name: &str| seeded.fixtures.image(name);
    let work = Workspace::new();
    work.hpn(["save", image("base").reference.as_str(), image("app-a").reference.as_str(), "-o", "first.tar"])
        .assert_ok();

    // The site loads it and sends back what it holds.
    let site = Workspace::new();
    site.hpn(["load", "-i", path_str(&work.path().join("first.tar"))]).assert_ok();
    let run = site.hpn(["--json", "store", "inventory", "-o", "held.json"]);
    run.assert_ok();
    let inventory: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.path().join("held.json")).unwrap()).unwrap();
    assert_eq!(inventory["schema"], "hpn.inventory.v1");
    assert_eq!(run.json()["inventory"], inventory["id"]);
    let held: BTreeMap<String, u64> = inventory["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|blob| (blob["digest"].as_str().unwrap().to_owned(), blob["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(held, carried_blobs(&work.path().join("first.tar")), "the inventory is not what the site holds");
    let held_file: PathBuf = site.path().join("held.json");

    // The same images again: nothing to ship.
    let run = work.hpn([
        "--json",
        "save",
        image("base").reference.as_str(),
        image("app-a").reference.as_str(),
        "-o",
        "again.tar",
        "--since",
        path_str(&held_file),
    ]);
    run.assert_ok();
    assert_eq!(carried_blobs(&work.path().join("again.tar")).len(), 0, "{:#}", run.json());
    assert_eq!(run.json()["differential"]["unchanged"].as_array().unwrap().len(), 2, "{:#}", run.json());

    // One new image: exactly its blobs the site lacks, with their bytes.
    let run = work.hpn([
        "--json",
        "save",
        image("base").reference.as_str(),
        image("app-a").reference.as_str(),
        image("app-b").reference.as_str(),
        "-o",
        "next.tar",
        "--since",
        path_str(&held_file),
    ]);
    run.assert_ok();
    let shipped = carried_blobs(&work.path().join("next.tar"));
    let lacking: Vec<String> =
        image("app-b").blob_digests().into_iter().filter(|digest| !held.contains_key(digest)).collect();
    assert_eq!(shipped.keys().cloned().collect::<BTreeSet<_>>(), lacking.into_iter().collect(), "{:#}", run.json());
    // Its own layer, config and manifest: nothing of what the site has, every byte of what it lacks.
    let app_b = image("app-b").amd64();
    let new_layers: u64 =
        app_b.layers.iter().filter(|layer| !held.contains_key(&layer.digest)).map(|layer| layer.size).sum();
    assert_eq!(shipped.values().sum::<u64>(), new_layers + app_b.config.size + image("app-b").size);
    assert!(run.json()["differential"]["base_blobs"].as_u64().unwrap() >= 2, "{:#}", run.json());

    // The site loads it on top and holds every image whole.
    site.hpn(["load", "-i", path_str(&work.path().join("next.tar"))]).assert_ok();
    site.hpn(["store", "verify"]).assert_ok();
    assert!(store_refs(&site.store()).contains(&image("app-b").reference));
}
