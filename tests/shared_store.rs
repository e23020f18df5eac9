//! One store, several hpn processes: concurrent pulls lose no ref (skopeo #1018 lost them
//! here), `hpn store gc` removes exactly what no ref reaches, and gc never pulls a blob from
//! under a process that is using the store.

mod common;

use std::fs::{self, File};
use std::time::{Duration, Instant};

use common::{Workspace, blob_path, committed_blobs, digest_of, proxied_registry, store_leftovers, wait_with_limit};
use hpn_testkit::{Fault, FaultProxy, Registry, Rule};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn concurrent_pulls_of_overlapping_lists_all_succeed_and_every_ref_is_kept() {
    let proxied = proxied_registry(&[
        "base",
        "app-a",
        "app-b",
        "multi",
        "multi-docker",
        "zstd",
        "uncompressed",
        "dup-layer",
        "by-digest",
    ]);
    // Slow enough that the runs overlap for a second or more.
    proxied.proxy.add(Rule::new("/blobs/sha256:", Fault::ThrottleResponse(1_000_000)).method("GET"));
    let work = Workspace::new();
    let lists = [
        proxied.list_of(&["base", "app-a", "app-b", "multi", "zstd"]),
        proxied.list_of(&["app-b", "app-a", "multi-docker", "uncompressed", "dup-layer", "by-digest"]),
        proxied.list_of(&["uncompressed", "multi", "base", "dup-layer"]),
    ];
    let files: Vec<String> = lists
        .iter()
        .enumerate()
        .map(|(i, list)| work.file(&format!("list{i}.txt"), list).to_str().unwrap().to_owned())
        .collect();
    let started = Instant::now();
    let children: Vec<_> = files.iter().map(|file| work.spawn(["pull", "-f", file.as_str()], &[])).collect();
    let mut ended = Vec::new();
    for child in children {
        let run = wait_with_limit(child, LIMIT);
        run.assert_ok();
        ended.push(started.elapsed());
    }
    // They ran at the same time: all three started within milliseconds, and the first one
    // was still running well after that.
    assert!(ended[0] > Duration::from_millis(300), "the runs did not overlap: {ended:?}");

    let mut refs = work.store_refs();
    refs.sort();
    let mut expected: Vec<String> =
        proxied.seeded.fixtures.images.iter().map(|i| proxied.via_proxy(&i.reference)).collect();
    expected.sort();
    assert_eq!(refs, expected, "refs lost by concurrent index.json updates");
    work.assert_store_verifies();
    assert_eq!(store_leftovers(&work.store()), Vec::<String>::new());
}

fn index_json(work: &Workspace) -> serde_json::Value {
    serde_json::from_slice(&fs::read(work.store().join("index.json")).unwrap()).unwrap()
}

#[test]
fn gc_removes_exactly_the_blobs_no_ref_reaches() {
    let proxied = proxied_registry(&["app-a", "app-b", "zstd"]);
    let work = Workspace::new();
    let names = ["app-a", "app-b", "zstd"];
    let list = work.file("images.txt", &proxied.list_of(&names));
    work.hpn(["pull", "-f", list.to_str().unwrap()]).assert_ok();
    let before = committed_blobs(&work.store());

    // Untag app-b by editing index.json, as any OCI layout tool may; its manifest, config
    // and own layer become unreachable, the layers it shares with app-a do not.
    let app_b = proxied.image("app-b").amd64();
    let mut index = index_json(&work);
    let manifests = index["manifests"].as_array_mut().unwrap();
    let count = manifests.len();
    manifests.retain(|m| m["digest"] != proxied.image("app-b").digest.as_str());
    assert_eq!(manifests.len(), count - 1, "app-b's entry was not in index.json");
    fs::write(work.store().join("index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    // A whole, valid blob no ref mentions, and a temp file of a run that died.
    let stray = b"a blob nothing refers to".to_vec();
    let stray_digest = digest_of(&stray);
    fs::write(work.store().join("blobs/sha256").join(&stray_digest[7..]), &stray).unwrap();
    fs::write(work.store().join("blobs/sha256/.tmp-999999-0000000000000000"), b"partial").unwrap();

    let gc = work.hpn(["store", "gc", "--json"]);
    gc.assert_ok();
    let report = gc.json();
    let unreachable = [
        proxied.image("app-b").digest.clone(),
        app_b.config.digest.clone(),
        app_b.layers[2].digest.clone(),
        stray_digest,
    ];
    assert_eq!(report["blobs_removed"], unreachable.len(), "{report}");
    let after = committed_blobs(&work.store());
    for digest in &before {
        assert_eq!(after.contains(digest), !unreachable.contains(digest), "{digest} after gc: {report}");
    }
    assert!(!after.contains(&unreachable[3]));
    assert_eq!(store_leftovers(&work.store()), Vec::<String>::new());
    work.assert_store_verifies();
    let mut refs = work.store_refs();
    refs.sort();
    assert_eq!(refs, [proxied.reference("app-a"), proxied.reference("zstd")]);

    // Pulling app-b again fetches only what gc removed.
    proxied.proxy.clear_log();
    work.hpn(["pull", proxied.reference("app-b").as_str()]).assert_ok();
    let fetched: Vec<String> = proxied
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path().contains("/blobs/"))
        .map(|r| r.path().rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(fetched.len(), 2, "{fetched:?}");
    for digest in [&app_b.config.digest, &app_b.layers[2].digest] {
        assert!(fetched.contains(digest), "{digest} not fetched again: {fetched:?}");
    }
    work.assert_store_verifies();
}

/// Waits until the proxy has passed blob bytes: the other process is mid-transfer.
fn wait_for_transfer(proxy: &FaultProxy, pattern: &str) {
    let started = Instant::now();
    while !proxy.requests_to(pattern).iter().any(|r| r.body_bytes > 0 || r.method == "PATCH" || r.method == "PUT") {
        assert!(started.elapsed() < Duration::from_secs(20), "no transfer started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[track_caller]
fn assert_gc_refused(work: &Workspace) {
    let gc = work.hpn(["store", "gc"]);
    gc.assert_code(6);
    assert!(gc.stderr.contains("in use by another hpn process"), "{}", gc.stderr);
}

#[test]
fn gc_is_refused_while_another_process_pulls_or_pushes_and_nothing_is_lost() {
    let proxied = proxied_registry(&["app-a", "app-b", "multi"]);
    let work = Workspace::new();
    // A stray blob gc would remove, had it run.
    let stray = b"unreferenced".to_vec();
    let stray_path = work.store().join("blobs/sha256").join(&digest_of(&stray)[7..]);

    // While a pull is downloading (its fresh blobs are in no ref yet).
    let list = work.file("images.txt", &proxied.list_of(&["app-a", "app-b", "multi"]));
    proxied.proxy.add(Rule::new("/blobs/sha256:", Fault::ThrottleResponse(500_000)).method("GET"));
    let pull = work.spawn(["pull", "-f", list.to_str().unwrap()], &[]);
    wait_for_transfer(&proxied.proxy, "/blobs/sha256:");
    fs::write(&stray_path, &stray).unwrap();
    assert_gc_refused(&work);
    assert!(stray_path.exists(), "gc removed something although it was refused");
    wait_with_limit(pull, LIMIT).assert_ok();
    proxied.proxy.clear();
    work.assert_store_verifies();

    // While a push reads blobs from the store.
    let site = Registry::start().unwrap();
    let site_proxy = FaultProxy::start(site.addr()).unwrap();
    site_proxy.add(Rule::new("/blobs/uploads/", Fault::ThrottleRequest(500_000)));
    let push = work.spawn(["push", "-f", list.to_str().unwrap(), "-r", site_proxy.addr()], &[]);
    wait_for_transfer(&site_proxy, "/blobs/uploads/");
    assert_gc_refused(&work);
    wait_with_limit(push, LIMIT).assert_ok();
    assert_eq!(site.manifest("app-a", "1").unwrap().digest.to_string(), proxied.image("app-a").digest);

    // With nobody else using the store, gc runs and takes only the stray blob.
    let gc = work.hpn(["store", "gc", "--json"]);
    gc.assert_ok();
    assert_eq!(gc.json()["blobs_removed"], 1, "{}", gc.stdout);
    assert!(!stray_path.exists());
    work.assert_store_verifies();
    assert_eq!(work.store_refs().len(), 3);
}

#[test]
fn a_pull_started_during_gc_waits_for_it() {
    let proxied = proxied_registry(&["app-a"]);
    let work = Workspace::new();
    hpn_store::Store::open(&work.store()).unwrap();
    // Hold the store's usage lock the way gc does (exclusively).
    let usage = File::options().read(true).write(true).open(work.store().join("store.lock")).unwrap();
    usage.lock().unwrap();
    let pull = work.spawn(["pull", proxied.reference("app-a").as_str()], &[]);
    std::thread::sleep(Duration::from_millis(700));
    let mut pull = pull;
    assert!(pull.try_wait().unwrap().is_none(), "the pull did not wait for gc");
    assert!(proxied.proxy.requests_to(&blob_path("")).is_empty(), "the pull fetched blobs during gc");
    usage.unlock().unwrap();
    wait_with_limit(pull, LIMIT).assert_ok();
    work.assert_store_verifies();
}
