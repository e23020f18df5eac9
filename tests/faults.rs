//! hpn through a fault-injecting proxy in front of the real registry: broken, stalled,
//! rate-limited and corrupted responses. Retried and resumed runs must give the very archive
//! a clean run gives; runs that cannot succeed must stop after the retries with a clear error
//! and leave nothing under a final name.

mod common;

use std::time::{Duration, Instant};

use common::{
    Proxied, Workspace, archive_leftovers, blob_path, committed_blobs, proxied_registry, store_leftovers,
    wait_with_limit,
};
use hpn_testkit::{Fault, Rule};

/// The image most faults are aimed at: an OCI manifest with three gzip layers.
const IMAGE: &str = "app-b";

fn layers(proxied: &Proxied) -> Vec<String> {
    proxied.image(IMAGE).amd64().layers.iter().map(|l| l.digest.clone()).collect()
}

/// `hpn save` of [`IMAGE`] through the proxy into `out.tar` of a fresh workspace.
fn save(proxied: &Proxied, extra: &[&str], env: &[(&str, &str)]) -> (Workspace, common::Run) {
    let work = Workspace::new();
    let reference = proxied.reference(IMAGE);
    let mut args = vec!["save", reference.as_str(), "-o", "out.tar"];
    args.extend_from_slice(extra);
    let run = work.hpn_with_env(args, env);
    (work, run)
}

/// The archive's entries. Not its bytes: blobs go into the tar in the order their copies
/// finish, which runs of the same save need not share; the entries (names, header fields,
/// content) are what must not change.
fn archive(work: &Workspace) -> std::collections::BTreeMap<String, (String, Vec<u8>)> {
    common::archive_entries(&work.path().join("out.tar"))
}

/// Nothing of a failed run under a final name: no archive, no temp archive, no store temp
/// file, and `missing` not in the store; what is in the store is intact.
#[track_caller]
fn assert_nothing_left(work: &Workspace, missing: &str) {
    assert!(!work.path().join("out.tar").exists(), "an archive was written by a failed run");
    assert_eq!(archive_leftovers(work.path()), Vec::<String>::new(), "unfinished archive left");
    assert_eq!(store_leftovers(&work.store()), Vec::<String>::new(), "temp files left in the store");
    let blobs = committed_blobs(&work.store());
    assert!(!blobs.iter().any(|d| d == missing), "the broken blob {missing} was stored");
    work.assert_store_verifies();
}

#[test]
fn broken_blob_bodies_resume_with_range_and_give_the_clean_archive() {
    let proxied = proxied_registry(&[IMAGE]);
    let layers = layers(&proxied);
    // Two clean runs give the same entries; everything below compares against that.
    let (first, run) = save(&proxied, &[], &[]);
    run.assert_ok();
    let (second, run) = save(&proxied, &[], &[]);
    run.assert_ok();
    let clean = archive(&first);
    assert!(clean == archive(&second), "two clean saves of one image differ");
    assert!(clean.len() >= 8, "{:?}", clean.keys());

    // One body cut cleanly after 100000 bytes, another reset (RST) after 50000.
    proxied.proxy.clear_log();
    proxied.proxy.add(Rule::new(&blob_path(&layers[0]), Fault::CutAfter(100_000)).method("GET").times(1));
    proxied.proxy.add(Rule::new(&blob_path(&layers[1]), Fault::ResetAfter(50_000)).method("GET").times(1));
    let (faulted, run) = save(&proxied, &[], &[]);
    run.assert_ok();
    assert!(archive(&faulted) == clean, "the archive of the resumed run differs from the clean one");
    faulted.assert_store_verifies();

    let cut = proxied.proxy.requests_to(&blob_path(&layers[0]));
    let gets: Vec<_> = cut.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 2, "{cut:#?}");
    assert_eq!((gets[0].range.as_deref(), gets[0].body_bytes), (None, 100_000));
    assert_eq!(gets[1].range.as_deref(), Some("bytes=100000-"), "{cut:#?}");
    assert_eq!(gets[1].status, Some(206));

    let reset = proxied.proxy.requests_to(&blob_path(&layers[1]));
    let gets: Vec<_> = reset.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 2, "{reset:#?}");
    let resumed_from = gets[1].range_start().unwrap_or_else(|| panic!("no Range after the reset: {reset:#?}"));
    assert!(resumed_from > 0 && resumed_from <= 50_000, "resumed from {resumed_from}: {reset:#?}");
}

#[test]
fn a_body_broken_again_and_again_still_completes_while_each_resume_makes_progress() {
    let proxied = proxied_registry(&[IMAGE]);
    let base = &layers(&proxied)[0];
    let size = proxied.image(IMAGE).amd64().layers[0].size;
    // Every response to the base layer is cut after 200 kB: more breaks than --retries 2
    // allows, but each one moves the download forward.
    proxied.proxy.add(Rule::new(&blob_path(base), Fault::CutAfter(200_000)).method("GET"));
    let work = Workspace::new();
    work.hpn(["pull", proxied.reference(IMAGE).as_str(), "--retries", "2"]).assert_ok();
    let gets: Vec<_> = proxied.proxy.requests_to(&blob_path(base)).into_iter().filter(|r| r.method == "GET").collect();
    let starts: Vec<u64> = gets.iter().map(|r| r.range_start().unwrap_or(0)).collect();
    let expected: Vec<u64> = (0..size.div_ceil(200_000)).map(|i| i * 200_000).collect();
    assert_eq!(starts, expected, "{gets:#?}");
    assert!(committed_blobs(&work.store()).contains(base));
    work.assert_store_verifies();
}

#[test]
fn server_errors_are_retried_until_the_registry_recovers() {
    let proxied = proxied_registry(&[IMAGE]);
    let (clean_work, run) = save(&proxied, &[], &[]);
    run.assert_ok();
    let layers = layers(&proxied);
    proxied.proxy.clear_log();
    proxied.proxy.add(Rule::new("/v2/", Fault::Status(502)).times(1));
    proxied.proxy.add(Rule::new("/manifests/", Fault::Status(503)).times(2));
    proxied.proxy.add(Rule::new(&blob_path(&layers[2]), Fault::Status(500)).method("GET").times(2));
    let (work, run) = save(&proxied, &[], &[]);
    run.assert_ok();
    assert!(archive(&work) == archive(&clean_work), "the archive after retries differs from the clean one");
    let log = proxied.proxy.requests();
    let statuses: Vec<Option<u16>> = log.iter().map(|r| r.status).collect();
    for code in [500, 502, 503] {
        assert!(statuses.contains(&Some(code)), "no {code} was served: {log:#?}");
    }
    let layer_gets: Vec<Option<u16>> =
        log.iter().filter(|r| r.method == "GET" && r.path().ends_with(&layers[2])).map(|r| r.status).collect();
    assert_eq!(layer_gets, [Some(500), Some(500), Some(200)]);
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let proxied = proxied_registry(&[IMAGE]);
    let layer = &layers(&proxied)[1];
    proxied
        .proxy
        .add(Rule::new(&blob_path(layer), Fault::TooManyRequests { retry_after_secs: 1 }).method("GET").times(1));
    let work = Workspace::new();
    work.hpn(["pull", proxied.reference(IMAGE).as_str()]).assert_ok();
    let gets: Vec<_> = proxied.proxy.requests_to(&blob_path(layer)).into_iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!((gets[0].status, gets[1].status), (Some(429), Some(200)));
    let waited = gets[1].at - gets[0].done.expect("the 429 was sent");
    assert!(waited >= Duration::from_millis(950), "retried after {waited:?}, before Retry-After: 1 had passed");
    // The wait is Retry-After's, not an exponential backoff on top of it.
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert!(committed_blobs(&work.store()).contains(layer));
}

#[test]
fn stalled_responses_and_bodies_are_abandoned_and_resumed() {
    let proxied = proxied_registry(&[IMAGE]);
    let layers = layers(&proxied);
    let stall = Duration::from_secs(30);
    // A body that stops after 64 KiB, and a request that gets no answer at all.
    proxied.proxy.add(Rule::new(&blob_path(&layers[0]), Fault::StallBody { after: 65_536, duration: stall }).times(1));
    proxied.proxy.add(Rule::new(&blob_path(&layers[2]), Fault::StallBeforeResponse(stall)).method("GET").times(1));
    let work = Workspace::new();
    let bad = work.hpn_with_env(["pull", proxied.reference(IMAGE).as_str()], &[("HPN_STALL_TIMEOUT", "soon")]);
    bad.assert_code(3);
    assert!(bad.stderr.contains("HPN_STALL_TIMEOUT"), "{}", bad.stderr);
    let started = Instant::now();
    let child = work.spawn(
        ["pull", proxied.reference(IMAGE).as_str()],
        &[("HPN_STALL_TIMEOUT", "1"), ("HPN_RESPONSE_TIMEOUT", "1")],
    );
    // Well under the 30 s the proxy would hold the connections.
    let run = wait_with_limit(child, Duration::from_secs(20));
    run.assert_ok();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1), "the stall detector cannot have waited its second: {elapsed:?}");

    let body = proxied.proxy.requests_to(&blob_path(&layers[0]));
    let gets: Vec<_> = body.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 2, "{body:#?}");
    assert_eq!(gets[1].range.as_deref(), Some("bytes=65536-"), "{body:#?}");
    let detected = gets[1].at - gets[0].at;
    assert!(detected >= Duration::from_millis(900) && detected < Duration::from_secs(10), "resumed after {detected:?}");

    let silent = proxied.proxy.requests_to(&blob_path(&layers[2]));
    let gets: Vec<_> = silent.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 2, "{silent:#?}");
    assert_eq!((gets[0].status, gets[1].status), (None, Some(200)));
    work.assert_store_verifies();
}

#[test]
fn a_blob_that_breaks_on_every_attempt_fails_after_the_retries_and_leaves_nothing() {
    let proxied = proxied_registry(&[IMAGE]);
    let layers = layers(&proxied);
    let broken = &layers[2];
    proxied.proxy.add(Rule::new(&blob_path(broken), Fault::ResetAfter(0)).method("GET"));
    let (work, run) = save(&proxied, &["--retries", "3"], &[]);
    run.assert_code(5);
    for part in [broken.as_str(), proxied.proxy.addr(), "3 attempt", "reset"] {
        assert!(run.stderr.contains(part), "no {part:?} in:\n{}", run.stderr);
    }
    let gets = proxied.proxy.requests_to(&blob_path(broken)).into_iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 3, "--retries 3 means three attempts");
    assert_nothing_left(&work, broken);
}

#[test]
fn a_registry_that_keeps_failing_is_reported_after_the_retries_and_leaves_nothing() {
    let proxied = proxied_registry(&[IMAGE]);
    let layers = layers(&proxied);
    let broken = &layers[1];
    proxied.proxy.add(Rule::new(&blob_path(broken), Fault::Status(503)).method("GET"));
    let (work, run) = save(&proxied, &["--retries", "2"], &[]);
    // The network is fine and the registry answers: a registry error (4), not a network one.
    run.assert_code(4);
    for part in [broken.as_str(), "503", "2 attempt"] {
        assert!(run.stderr.contains(part), "no {part:?} in:\n{}", run.stderr);
    }
    let gets = proxied.proxy.requests_to(&blob_path(broken)).into_iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 2, "--retries 2 means two attempts");
    assert_nothing_left(&work, broken);
}

#[test]
fn a_body_corrupted_after_a_resume_fails_its_digest_and_is_not_stored() {
    let proxied = proxied_registry(&[IMAGE]);
    let base = &layers(&proxied)[0];
    // The first response is cut; every resumed one has a byte flipped: the whole blob's
    // digest is checked, not only the part received first.
    proxied.proxy.add(Rule::new(&blob_path(base), Fault::CutAfter(300_000)).method("GET").times(1));
    proxied.proxy.add(Rule::new(&blob_path(base), Fault::Corrupt { offset: 1000 }).method("GET"));
    let (work, run) = save(&proxied, &[], &[]);
    run.assert_code(4);
    assert!(run.stderr.contains(base.as_str()) && run.stderr.contains("digest"), "{}", run.stderr);
    let gets: Vec<_> = proxied.proxy.requests_to(&blob_path(base)).into_iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets[1].range.as_deref(), Some("bytes=300000-"), "{gets:#?}");
    assert_nothing_left(&work, base);
}
