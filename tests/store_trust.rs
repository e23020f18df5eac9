//! A store that is trusted must be trustworthy (issue 15): damaged blobs are
//! fetched again rather than handed on, writes never follow a link out of a
//! store or layout, thousands of names load in linear time, an `oci:` name is
//! kept as given, and the store commands neither create a store nor leave
//! gc nothing to free.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Workspace, blob_gets, digest_of, seeded_registry, tar_entry};
use hpn_testkit::http::{Body, Client};
use hpn_testkit::layouts::{self, LayoutImage};
use hpn_testkit::{Registry, skopeo};

fn blob_file(store: &Path, digest: &str) -> std::path::PathBuf {
    store.join("blobs/sha256").join(&digest["sha256:".len()..])
}

/// The same bytes with one flipped: a same-size corruption only a hash finds.
fn flip_a_byte(path: &Path) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn a_corrupt_layer_is_fetched_again_by_save_and_never_archived() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let image = seeded.fixtures.image("app-a");
    let layer = &image.amd64().layers[2].digest;
    work.hpn(["pull", &image.reference]).assert_ok();
    let gets = blob_gets(&seeded.registry, layer);

    flip_a_byte(&blob_file(&work.store(), layer));
    work.hpn(["save", &image.reference, "-o", "app.tar"]).assert_ok();
    let archived = tar_entry(&work.path().join("app.tar"), &format!("blobs/sha256/{}", &layer[7..]));
    assert_eq!(&digest_of(&archived), layer, "the corrupt layer went into the archive");
    assert_eq!(blob_gets(&seeded.registry, layer), gets + 1, "the corrupt layer was not fetched again");
    assert_eq!(
        &digest_of(&fs::read(blob_file(&work.store(), layer)).unwrap()),
        layer,
        "the store kept the corrupt copy"
    );
    work.hpn(["store", "verify"]).assert_ok();
}

#[test]
fn a_planted_link_or_fifo_under_a_blob_name_is_replaced_not_read() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let image = seeded.fixtures.image("app-a");
    let layer = &image.amd64().layers[2].digest;
    work.hpn(["pull", &image.reference]).assert_ok();
    let path = blob_file(&work.store(), layer);

    // A same-size file outside the store, linked in under the layer's name.
    let outside = work.path().join("outside");
    fs::copy(&path, &outside).unwrap();
    let planted = flip_a_byte(&outside);
    fs::remove_file(&path).unwrap();
    symlink(&outside, &path).unwrap();
    work.hpn(["save", &image.reference, "-o", "app.tar"]).assert_ok();
    let archived = tar_entry(&work.path().join("app.tar"), &format!("blobs/sha256/{}", &layer[7..]));
    assert_eq!(&digest_of(&archived), layer, "an outside file's bytes went into the archive");
    assert_eq!(fs::read(&outside).unwrap(), planted, "the outside file was written to");
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file(), "the link is still there");

    // A FIFO: a pull neither blocks on it nor trusts it.
    fs::remove_file(&path).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
    work.hpn(["pull", &image.reference]).assert_ok();
    assert_eq!(&digest_of(&fs::read(&path).unwrap()), layer);
}

#[test]
fn a_corrupt_config_no_longer_fails_every_later_pull() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let image = seeded.fixtures.image("app-b");
    let config = &image.amd64().config.digest;
    work.hpn(["pull", &image.reference]).assert_ok();
    flip_a_byte(&blob_file(&work.store(), config));

    work.hpn(["pull", &image.reference]).assert_ok();
    assert_eq!(&digest_of(&fs::read(blob_file(&work.store(), config)).unwrap()), config);
    work.hpn(["save", &image.reference, "-o", "app.tar"]).assert_ok();
}

#[test]
fn a_push_from_the_store_refuses_a_corrupt_blob_and_says_which() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let image = seeded.fixtures.image("app-b");
    let layer = &image.amd64().layers[2].digest;
    work.hpn(["pull", &image.reference]).assert_ok();
    flip_a_byte(&blob_file(&work.store(), layer));

    // Another registry, so the layer must be sent rather than mounted.
    let other = Registry::start().expect("start a second registry");
    let target = format!("docker://{}", other.reference("copied/app-b:1"));
    let run = work.hpn(["copy", &format!("store:{}", image.reference), &target]);
    run.assert_code(6);
    assert!(run.stderr.contains(&format!("blob {layer}")) && run.stderr.contains("damaged"), "{}", run.stderr);
    assert!(!other.has_blob("copied/app-b", layer).unwrap(), "the corrupt layer was pushed");
}

#[test]
fn an_oci_destination_whose_blob_directory_is_a_link_is_refused_by_name() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let image = seeded.fixtures.image("app-b");
    let elsewhere = work.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let layout = work.path().join("layout");
    fs::create_dir_all(layout.join("blobs")).unwrap();
    symlink(&elsewhere, layout.join("blobs/sha256")).unwrap();

    let run = work.hpn(["copy", &format!("docker://{}", image.reference), &format!("oci:{}:app:1", layout.display())]);
    run.assert_code(6);
    let named = format!("{}/blobs/sha256 is a symbolic link", layout.display());
    assert!(run.stderr.contains(&named), "{}", run.stderr);
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0, "blobs were written through the link");
}

#[test]
fn an_oci_name_is_kept_as_given_and_no_lock_file_is_left_in_the_layout() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let image = seeded.fixtures.image("app-b");
    let layout = work.path().join("layout");
    work.hpn(["copy", &format!("docker://{}", image.reference), &format!("oci:{}:app:1", layout.display())])
        .assert_ok();

    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "app:1");
    let mut names: Vec<String> =
        fs::read_dir(&layout).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["blobs", "index.json", "oci-layout"], "hpn left files of its own in the layout");

    let inspected = skopeo(["inspect", "--raw", &format!("oci:{}:app:1", layout.display())]).expect("skopeo inspect");
    assert_eq!(digest_of(inspected.as_bytes()), image.digest);
    // And hpn reads it back by the same name.
    let target = format!("docker://{}", seeded.registry.reference("from-layout/app:1"));
    work.hpn(["copy", &format!("oci:{}:app:1", layout.display()), &target]).assert_ok();
}

#[test]
fn store_commands_never_create_a_store_and_rm_lets_gc_free_an_image() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let missing = work.path().join("no/such/dir");
    for command in ["verify", "gc", "rm", "ls"] {
        let mut args = vec!["store", command, "--store", missing.to_str().unwrap()];
        if command == "rm" {
            args.push("example.com/app:1");
        }
        let run = work.hpn(&args);
        // Listing a store that does not exist yet shows no images; the others are errors.
        run.assert_code(if command == "ls" { 0 } else { 6 });
        assert!(run.stderr.contains(&format!("there is no store at {}", missing.display())), "{}", run.stderr);
        assert!(!work.path().join("no").exists(), "hpn store {command} created the store");
    }

    let (a, b) = (seeded.fixtures.image("app-a"), seeded.fixtures.image("app-b"));
    work.hpn(["pull", &a.reference, &b.reference]).assert_ok();
    let listed = work.hpn(["store", "ls", "--json"]).assert_ok().json();
    let entries = listed.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{listed}");
    for entry in entries {
        let (size, unique) = (entry["size"].as_u64().unwrap(), entry["unique_size"].as_u64().unwrap());
        assert!(unique > 0 && unique < size, "app-a and app-b share their base layers: {entry}");
    }
    let unique_a = entries.iter().find(|entry| entry["name"] == a.reference.as_str()).unwrap()["unique_size"].as_u64();

    let run = work.hpn(["store", "rm", &a.reference, "example.com/nothing:1"]);
    run.assert_code(1);
    assert!(run.stderr.contains("holds no image named example.com/nothing:1"), "{}", run.stderr);
    assert_eq!(
        work.hpn(["store", "ls", "--json"]).json().as_array().unwrap().len(),
        2,
        "a failed rm removed something"
    );

    work.hpn(["store", "rm", &a.reference]).assert_ok();
    let gc = work.hpn(["store", "gc", "--json"]).assert_ok().json();
    assert_eq!(gc["bytes_freed"].as_u64(), unique_a, "{gc}");
    work.hpn(["store", "verify"]).assert_ok();
    work.hpn(["save", &b.reference, "-o", "b.tar"]).assert_ok();
}

/// `hpn load` of a generated layout naming one image `count` times: how long it took, and the peak RSS in KiB.
fn load_many(work: &Workspace, image_dir: &Path, image: &LayoutImage, count: usize) -> (Duration, u64) {
    layouts::name_image(image_dir, image, (0..count).map(|i| format!("example.com/many/app:{i}"))).unwrap();
    let store = work.path().join(format!("store-{count}"));
    let started = Instant::now();
    let output = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_hpn"))
        .args(["load", "-i"])
        .arg(image_dir)
        .args(["--quiet", "--store"])
        .arg(&store)
        .env("HOME", work.path().join("home"))
        .output()
        .expect("run hpn under /usr/bin/time");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "hpn load of {count} refs failed:\n{stderr}");
    let peak_kib = stderr.lines().last().and_then(|line| line.trim().parse().ok()).expect("time's %M line");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(store.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), count, "not every name was recorded");
    (elapsed, peak_kib)
}

#[test]
fn loading_ten_thousand_refs_is_linear_in_time_and_bounded_in_memory() {
    let work = Workspace::new();
    let layout = work.path().join("layout");
    let image = layouts::layout_with_image(&layout).unwrap();
    // 1,000 rather than 100 as the base: start-up would dominate a 100-ref
    // run, and this machine's load makes such short runs noisy.
    let (small, small_rss) = load_many(&work, &layout, &image, 1_000);
    let (large, large_rss) = load_many(&work, &layout, &image, 10_000);
    eprintln!("1,000 refs: {small:?}, {small_rss} KiB; 10,000 refs: {large:?}, {large_rss} KiB");
    // Linear is 10 times the small run; rewriting index.json per name was 100 times.
    assert!(large < small * 30, "10,000 refs took {large:?}, 1,000 refs {small:?}: not linear");
    // 328 MB was seen when index.json was re-read and rewritten per name.
    assert!(large_rss < small_rss + 200 * 1024, "peak RSS {large_rss} KiB for 10,000 refs, {small_rss} KiB for 1,000");
}

#[test]
fn an_index_listing_one_manifest_five_thousand_times_fetches_it_once() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let layout = work.path().join("layout");
    let image = layouts::layout_with_image(&layout).unwrap();
    let client = Client::new(seeded.registry.addr(), None);
    let manifest_bytes = fs::read(blob_file(&layout, &image.digest)).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    for blob in [&manifest["config"], &manifest["layers"][0]] {
        let digest = blob["digest"].as_str().unwrap();
        client.upload_blob("many/app", digest, Body::File(&blob_file(&layout, digest)), None).unwrap();
    }
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    client.put_manifest("many/app", &image.digest, media_type, &manifest_bytes, &image.digest).unwrap();
    let index = layouts::index_repeating(&image, 5_000);
    let index_type = "application/vnd.oci.image.index.v1+json";
    client.put_manifest("many/app", "1", index_type, &index, &digest_of(&index)).unwrap();

    work.hpn(["pull", "--all-platforms", &seeded.registry.reference("many/app:1")]).assert_ok();
    let child_gets = seeded
        .registry
        .access_log()
        .iter()
        .filter(|entry| entry.method == "GET" && entry.path.ends_with(&format!("/manifests/{}", image.digest)))
        .count();
    assert_eq!(child_gets, 1, "the repeated child manifest was fetched {child_gets} times");
}
