//! hpn killed at random moments (SIGKILL: no chance to clean up) and stopped with Ctrl-C
//! (SIGINT: it must clean up). The runs go through the fault proxy, which throttles the
//! transfers so that every kill lands while work is in flight.
//!
//! After a SIGKILL nothing partial may be visible under a final name, `hpn store verify` must
//! pass at once, and a rerun must complete and leave no temp file behind. The kill moments
//! come from a seeded generator: set `HPN_TEST_SEED` to explore others; a failure names the
//! seed and the moment.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    Proxied, Run, Workspace, archive_entries, archive_leftovers, committed_blobs, proxied_registry, store_leftovers,
    wait_with_limit,
};
use hpn_testkit::{Fault, FaultProxy, Registry, Rng, Rule};
use rustix::process::{Pid, Signal, kill_process};

/// Kills per command; three commands, so 21 in all.
const KILLS: usize = 7;
/// The images each run transfers: manifests and indexes of both kinds, layers shared between
/// images, a zstd layer, and a layer listed twice in one image.
const IMAGES: &[&str] = &["app-a", "app-b", "multi", "zstd", "dup-layer"];
/// Bytes a second, per connection: a throttled run of [`IMAGES`] takes about two seconds, so
/// the kills (at most 0.9 s in) land mid-run.
const RATE: u64 = 500_000;
const LIMIT: Duration = Duration::from_secs(60);

/// When to kill: seeded (`HPN_TEST_SEED`), so a failing run can be repeated.
struct Moments(Rng);

impl Moments {
    fn new(salt: u64) -> (Moments, u64) {
        let seed = std::env::var("HPN_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_4b11_u64);
        (Moments(Rng::new(seed ^ salt)), seed)
    }

    /// A moment between `low` and `high`.
    fn next(&mut self, low: Duration, high: Duration) -> Duration {
        low + (high - low).mul_f64(self.0.fraction())
    }
}

fn throttle_downloads(proxy: &FaultProxy) {
    proxy.add(Rule::new("/blobs/sha256:", Fault::ThrottleResponse(RATE)).method("GET"));
}

fn throttle_uploads(proxy: &FaultProxy) {
    proxy.add(Rule::new("/blobs/uploads/", Fault::ThrottleRequest(RATE)));
}

/// Starts `args` and SIGKILLs it after `after`; `Some(run)` if it finished on its own first.
fn kill_after(work: &Workspace, args: &[&str], env: &[(&str, &str)], after: Duration) -> Option<Run> {
    let mut child = work.spawn(args, env);
    let started = Instant::now();
    while started.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return Some(wait_with_limit(child, LIMIT));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL hpn");
    child.wait().unwrap();
    None
}

/// What must hold of a store right after a run was killed, before anything else touches it:
/// every blob under a final name is whole, and `hpn store verify` (which also sweeps the dead
/// run's temp files) passes.
#[track_caller]
fn check_killed_store(work: &Workspace, context: &str) {
    let committed = committed_blobs(&work.store());
    // A kill before the store was set up leaves nothing to verify; `store verify`
    // rightly refuses a store that does not exist rather than creating one.
    if committed.is_empty() && !work.store().join("index.json").exists() {
        return;
    }
    let run = work.hpn(["store", "verify"]);
    assert_eq!(run.code, 0, "{context}: store verify after the kill:\n{}{}", run.stdout, run.stderr);
}

#[track_caller]
fn check_rerun(work: &Workspace, run: &Run, context: &str) {
    assert_eq!(run.code, 0, "{context}: the rerun failed:\n{}{}", run.stdout, run.stderr);
    let verify = work.hpn(["store", "verify"]);
    assert_eq!(verify.code, 0, "{context}: store verify after the rerun:\n{}{}", verify.stdout, verify.stderr);
    assert_eq!(store_leftovers(&work.store()), Vec::<String>::new(), "{context}: temp files left in the store");
}

fn list_file(work: &Workspace, proxied: &Proxied) -> String {
    work.file("images.txt", &proxied.list_of(IMAGES)).to_str().unwrap().to_owned()
}

fn expected_refs(proxied: &Proxied) -> Vec<String> {
    let mut refs: Vec<String> = IMAGES.iter().map(|name| proxied.reference(name)).collect();
    refs.sort();
    refs
}

#[test]
fn pull_killed_at_random_moments_reruns_to_a_complete_verified_store() {
    let proxied = proxied_registry(IMAGES);
    let (mut moments, seed) = Moments::new(1);
    let (mut killed, mut left_temp_files) = (0, 0);
    for round in 0..KILLS {
        let work = Workspace::new();
        let list = list_file(&work, &proxied);
        let at = moments.next(Duration::from_millis(20), Duration::from_millis(900));
        let context = format!("pull round {round}, seed {seed}, SIGKILL after {at:?}");
        throttle_downloads(&proxied.proxy);
        let finished = kill_after(&work, &["pull", "-f", &list], &[], at);
        proxied.proxy.clear();
        if let Some(run) = &finished {
            assert_eq!(run.code, 0, "{context}: finished before the kill, but failed:\n{}", run.stderr);
        } else {
            killed += 1;
        }
        left_temp_files += usize::from(!store_leftovers(&work.store()).is_empty());
        check_killed_store(&work, &context);

        let rerun = work.hpn(["pull", "-f", &list]);
        check_rerun(&work, &rerun, &context);
        let mut refs = work.store_refs();
        refs.sort();
        assert_eq!(refs, expected_refs(&proxied), "{context}");
    }
    assert!(killed >= KILLS - 1, "only {killed} of {KILLS} pull runs were still running when killed");
    // Kills mid-blob happened: the sweep of dead runs' temp files was put to work.
    assert!(left_temp_files >= 1, "no kill left a temp file behind (seed {seed})");
}

#[test]
fn save_killed_at_random_moments_leaves_no_partial_archive_and_reruns() {
    let proxied = proxied_registry(IMAGES);
    let (mut moments, seed) = Moments::new(2);
    let (mut killed, mut left_archives) = (0, 0);
    for round in 0..KILLS {
        let work = Workspace::new();
        let list = list_file(&work, &proxied);
        let at = moments.next(Duration::from_millis(20), Duration::from_millis(900));
        let context = format!("save round {round}, seed {seed}, SIGKILL after {at:?}");
        throttle_downloads(&proxied.proxy);
        let finished = kill_after(&work, &["save", "-f", &list, "-o", "all.tar"], &[], at);
        proxied.proxy.clear();
        let archive = work.path().join("all.tar");
        match &finished {
            Some(run) => {
                assert_eq!(run.code, 0, "{context}: finished before the kill, but failed:\n{}", run.stderr);
                assert!(archive.is_file(), "{context}");
            }
            None => {
                killed += 1;
                assert!(!archive.exists(), "{context}: a partial archive under the final name");
                left_archives += usize::from(!archive_leftovers(work.path()).is_empty());
            }
        }
        check_killed_store(&work, &context);

        let rerun = work.hpn(["save", "-f", &list, "-o", "all.tar"]);
        check_rerun(&work, &rerun, &context);
        check_archive(&archive, &proxied, &context);
        assert_eq!(archive_leftovers(work.path()), Vec::<String>::new(), "{context}: unfinished archives left");
    }
    assert!(killed >= KILLS - 1, "only {killed} of {KILLS} save runs were still running when killed");
    // The reruns had unfinished archives of killed runs to sweep.
    assert!(left_archives >= 1, "no kill left an unfinished archive behind (seed {seed})");
}

/// The archive is a whole tar naming every image.
#[track_caller]
fn check_archive(archive: &Path, proxied: &Proxied, context: &str) {
    let entries = archive_entries(archive);
    let index: serde_json::Value = serde_json::from_slice(&entries["index.json"].1).expect("index.json");
    let mut names: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["annotations"]["io.containerd.image.name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, expected_refs(proxied), "{context}: images in the archive");
    for (name, (_, content)) in &entries {
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|hex| !hex.is_empty()) {
            assert_eq!(common::digest_of(content), format!("sha256:{hex}"), "{context}: {name} in the archive");
        }
    }
}

#[test]
fn push_killed_at_random_moments_reruns_and_keeps_every_digest() {
    let proxied = proxied_registry(IMAGES);
    let (mut moments, seed) = Moments::new(3);
    let source = Workspace::new();
    let list = source.file("images.txt", &proxied.list_of(IMAGES)).to_str().unwrap().to_owned();
    source.hpn(["pull", "--all-platforms", "-f", &list]).assert_ok();
    let site = Registry::start().expect("the site's registry");
    let site_proxy = FaultProxy::start(site.addr()).unwrap();
    let mut killed = 0;
    for round in 0..KILLS {
        let at = moments.next(Duration::from_millis(20), Duration::from_millis(1000));
        let context = format!("push round {round}, seed {seed}, SIGKILL after {at:?}");
        // A project of its own each round, and a cache of its own, so that every round uploads
        // everything again instead of mounting what earlier rounds pushed.
        let project = format!("round{round}");
        let cache = source.path().join(format!("cache-{round}"));
        let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];
        let args = ["push", "-f", &list, "-r", site_proxy.addr(), "--push-mode", "2", "-p", &project];
        throttle_uploads(&site_proxy);
        match kill_after(&source, &args, &env, at) {
            Some(run) => assert_eq!(run.code, 0, "{context}: finished before the kill, but failed:\n{}", run.stderr),
            None => killed += 1,
        }
        site_proxy.clear();
        check_killed_store(&source, &context);

        let rerun = source.hpn_with_env(args, &env);
        check_rerun(&source, &rerun, &context);
        for name in IMAGES {
            let image = proxied.image(name);
            let repository = format!("{project}/{name}");
            let pushed = site
                .manifest(&repository, &image.tags[0])
                .unwrap_or_else(|e| panic!("{context}: {repository} not pushed: {e:#}"));
            assert_eq!(pushed.digest.to_string(), image.digest, "{context}: {repository} changed digest");
        }
    }
    assert!(killed >= KILLS - 1, "only {killed} of {KILLS} push runs were still running when killed");
}

fn interrupt(child: &std::process::Child) {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    kill_process(pid, Signal::INT).expect("SIGINT hpn");
}

/// Starts `args` throttled, waits until blob bodies are flowing, sends SIGINT.
fn interrupted_run(work: &Workspace, proxy: &FaultProxy, args: &[&str], pattern: &str) -> Run {
    let child = work.spawn(args, &[]);
    let started = Instant::now();
    while !proxy.requests_to(pattern).iter().any(|r| r.body_bytes > 0 || r.method != "GET") {
        assert!(started.elapsed() < Duration::from_secs(20), "no transfer started");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    interrupt(&child);
    wait_with_limit(child, Duration::from_secs(20))
}

#[track_caller]
fn assert_interrupted(run: &Run) {
    run.assert_code(130);
    assert!(run.stderr.contains("hpn: interrupted"), "no interruption report:\n{}", run.stderr);
}

#[test]
fn ctrl_c_stops_save_pull_and_push_cleanly_with_exit_130() {
    let proxied = proxied_registry(IMAGES);
    throttle_downloads(&proxied.proxy);

    // save: no archive, no unfinished archive, no temp file in the store, at once (before any
    // other hpn run could sweep them).
    let work = Workspace::new();
    let list = list_file(&work, &proxied);
    let run = interrupted_run(&work, &proxied.proxy, &["save", "-f", &list, "-o", "all.tar"], "/blobs/sha256:");
    assert_interrupted(&run);
    assert!(!work.path().join("all.tar").exists(), "a partial archive under the final name");
    assert_eq!(archive_leftovers(work.path()), Vec::<String>::new(), "the unfinished archive was not removed");
    assert_eq!(store_leftovers(&work.store()), Vec::<String>::new(), "temp files left in the store");
    let _ = committed_blobs(&work.store());
    work.assert_store_verifies();

    // pull
    let work = Workspace::new();
    let list = list_file(&work, &proxied);
    proxied.proxy.clear_log();
    let run = interrupted_run(&work, &proxied.proxy, &["pull", "-f", &list], "/blobs/sha256:");
    assert_interrupted(&run);
    assert_eq!(store_leftovers(&work.store()), Vec::<String>::new(), "temp files left in the store");
    let _ = committed_blobs(&work.store());
    work.assert_store_verifies();

    // push, from a complete store
    proxied.proxy.clear();
    work.hpn(["pull", "-f", &list]).assert_ok();
    let site = Registry::start().unwrap();
    let site_proxy = FaultProxy::start(site.addr()).unwrap();
    throttle_uploads(&site_proxy);
    let run = interrupted_run(&work, &site_proxy, &["push", "-f", &list, "-r", site_proxy.addr()], "/blobs/uploads/");
    assert_interrupted(&run);
    assert_eq!(store_leftovers(&work.store()), Vec::<String>::new(), "temp files left in the store");
    work.assert_store_verifies();
}
