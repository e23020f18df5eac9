//! Reproducible archives (issue 12, item 5): the same list saved twice from the same
//! registry gives the same bytes, whatever the concurrency, whether the store was cold or
//! warm, and however long any one download took; an image that fails in the middle of the
//! list leaves the others as they would be without it.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Proxied, Workspace, blob_path, digest_of, proxied_registry, wait_with_limit};
use hpn_testkit::{Fault, Rule};

/// Images sharing layers (base, runtime), an index, a zstd layer (with its uncompressed copy),
/// 32 layers, a layer listed twice and an uncompressed layer: many blobs whose downloads finish
/// in no fixed order.
const IMAGES: &[&str] = &["base", "app-a", "app-b", "multi", "zstd", "many-layers", "dup-layer", "uncompressed"];

/// A save should take seconds; a stalled sequencer would take forever.
const LIMIT: Duration = Duration::from_secs(120);

fn sha256_of(path: &Path) -> String {
    digest_of(&fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display())))
}

/// `hpn save` of `list` (a file of references) in `work` into `output`, with `extra` flags.
#[track_caller]
fn save(work: &Workspace, list: &str, output: &str, extra: &[&str]) -> common::Run {
    let list_file = work.file("images.txt", list);
    let mut args = vec!["save", "-f", list_file.to_str().unwrap(), "-o", output];
    args.extend_from_slice(extra);
    wait_with_limit(work.spawn(&args, &[]), LIMIT)
}

/// The same list, saved cold with one image at a time and with eight, warm, and cold again
/// with one early blob slowed down: the same file every time. Returns that file's sha256.
fn same_bytes_every_way(proxied: &Proxied, output: &str, extra: &[&str]) -> String {
    let list = proxied.list_of(IMAGES);
    let with = |more: &[&str]| -> Vec<String> { extra.iter().chain(more).map(|s| (*s).to_owned()).collect() };
    let run = |work: &Workspace, name: &str, flags: Vec<String>| {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        save(work, &list, name, &flags).assert_ok();
        sha256_of(&work.path().join(name))
    };

    let serial = Workspace::new();
    let expected = run(&serial, output, with(&["-j", "1"]));
    let warm = run(&serial, &format!("warm-{output}"), with(&[]));
    assert_eq!(warm, expected, "{output}: a save from a warm store differs from the cold one");

    let parallel = Workspace::new();
    assert_eq!(run(&parallel, output, with(&["-j", "8"])), expected, "{output}: -j 8 differs from -j 1");

    // The base layer is the first layer of the first image: slowed down, every other blob is
    // in the store long before it.
    let base_layer = proxied.image("base").amd64().layers[0].digest.clone();
    proxied.proxy.add(Rule::new(&blob_path(&base_layer), Fault::ThrottleResponse(256 * 1024)).times(1));
    let delayed = Workspace::new();
    assert_eq!(run(&delayed, output, with(&[])), expected, "{output}: a slow first layer changed the archive");
    assert!(
        proxied
            .proxy
            .requests()
            .iter()
            .any(|request| request.path().ends_with(&blob_path(&base_layer)) && request.fault.is_some()),
        "the slow-down was never applied"
    );
    proxied.proxy.clear();
    expected
}

#[test]
fn one_archive_is_byte_identical_whatever_the_concurrency_timing_or_store() {
    let proxied = proxied_registry(IMAGES);
    same_bytes_every_way(&proxied, "images.tar", &[]);

    // Fixed headers: root-owned, no user or group names, fixed modes, mtime 0.
    let archive = Workspace::new();
    save(&archive, &proxied.list_of(IMAGES), "one.tar", &[]).assert_ok();
    let mut tar = tar::Archive::new(fs::File::open(archive.path().join("one.tar")).unwrap());
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0), "{name}");
        assert_eq!(header.username_bytes().unwrap_or_default(), b"", "{name}");
        assert_eq!(header.groupname_bytes().unwrap_or_default(), b"", "{name}");
        assert_eq!(header.mtime().unwrap(), 0, "{name}");
        let mode = if name.ends_with('/') { 0o755 } else { 0o644 };
        assert_eq!(header.mode().unwrap(), mode, "{name}");
    }
}

#[test]
fn compressed_archives_are_byte_identical_too() {
    let proxied = proxied_registry(IMAGES);
    same_bytes_every_way(&proxied, "images.tar.gz", &[]);
    same_bytes_every_way(&proxied, "images.tar.zst", &["--all-platforms"]);
}

#[test]
fn per_image_archives_are_byte_identical() {
    let proxied = proxied_registry(IMAGES);
    let list = proxied.list_of(IMAGES);
    let save_each = |work: &Workspace, jobs: &str| {
        let list_file = work.file("images.txt", &list);
        let args = ["save", "-f", list_file.to_str().unwrap(), "--save-mode", "2", "-j", jobs];
        wait_with_limit(work.spawn(args, &[]), LIMIT).assert_ok();
        let mut archives: Vec<(String, String)> = fs::read_dir(work.path().join("images"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), sha256_of(&path)))
            .collect();
        archives.sort();
        archives
    };
    let first = save_each(&Workspace::new(), "1");
    assert_eq!(first.len(), IMAGES.len(), "{first:?}");
    assert_eq!(save_each(&Workspace::new(), "8"), first);
}

#[test]
fn an_image_failing_in_the_middle_neither_stalls_nor_reorders_the_others() {
    let proxied = proxied_registry(IMAGES);
    let (head, tail) = IMAGES.split_at(3);
    let without = proxied.list_of(IMAGES);
    let missing = format!("{}/fixtures/base:no-such-tag\n", proxied.proxy.addr());
    let with_failure = format!("{}{missing}{}", proxied.list_of(head), proxied.list_of(tail));

    let clean = Workspace::new();
    save(&clean, &without, "images.tar", &[]).assert_ok();
    let failing = Workspace::new();
    let run = save(&failing, &with_failure, "images.tar", &[]);
    assert_ne!(run.code, 0, "a missing image must fail the run\n{}", run.stderr);
    assert!(run.stderr.contains("no-such-tag"), "{}", run.stderr);
    assert_eq!(
        sha256_of(&failing.path().join("images.tar")),
        sha256_of(&clean.path().join("images.tar")),
        "the failed image left a trace in the archive, or moved the others"
    );
}

#[test]
fn created_dates_the_archive_reproducibly_and_docker_still_loads_it() {
    use common::archive_entries;
    let seeded = common::seeded_registry_with(&["app-a"]);
    let app = seeded.fixtures.image("app-a");
    let reference = app.reference.as_str();
    let work = Workspace::new();
    let dated = |name: &str, created: &str, env: &[(&str, &str)]| {
        let other = Workspace::new();
        other.hpn_with_env(["save", reference, "-o", name, "--created", created], env).assert_ok();
        fs::copy(other.path().join(name), work.path().join(name)).unwrap();
        work.path().join(name)
    };
    const MAY: u64 = 1_714_564_800;
    let first = dated("may.tar", "2024-05-01T12:00:00Z", &[]);
    // The same time, given as seconds; and the flag wins over SOURCE_DATE_EPOCH.
    let again = dated("may-again.tar", "@1714564800", &[("SOURCE_DATE_EPOCH", "86400")]);
    assert_eq!(sha256_of(&first), sha256_of(&again), "the same --created gave different archives");
    // SOURCE_DATE_EPOCH alone, as reproducible-builds tools set it.
    work.hpn_with_env(["save", reference, "-o", "epoch.tar"], &[("SOURCE_DATE_EPOCH", &MAY.to_string())]).assert_ok();
    assert_eq!(sha256_of(&work.path().join("epoch.tar")), sha256_of(&first), "SOURCE_DATE_EPOCH was not honoured");

    // Another time: only the mtimes and the bill's `created` differ.
    let june = dated("june.tar", "2024-06-01T00:00:00+02:00", &[]);
    let (may_entries, june_entries) = (archive_entries(&first), archive_entries(&june));
    assert_eq!(may_entries.keys().collect::<Vec<_>>(), june_entries.keys().collect::<Vec<_>>());
    let june_seconds = MAY + 31 * 86400 - 12 * 3600 - 2 * 3600;
    for (name, (may_meta, may_content)) in &may_entries {
        let (june_meta, june_content) = &june_entries[name];
        assert!(may_meta.contains(&format!("mtime={MAY} ")), "{name}: {may_meta}");
        assert_eq!(may_meta.replace(&MAY.to_string(), &june_seconds.to_string()), *june_meta, "{name}");
        if name == "hpn-contents.json" {
            let may: serde_json::Value = serde_json::from_slice(may_content).unwrap();
            let mut june: serde_json::Value = serde_json::from_slice(june_content).unwrap();
            assert_eq!(may["created"], "2024-05-01T12:00:00Z");
            assert_eq!(june["created"], "2024-05-31T22:00:00Z");
            june["created"] = may["created"].clone();
            assert_eq!(may, june, "the bills differ beyond their creation time");
        } else {
            assert!(may_content == june_content, "{name}: content changed with the creation time");
        }
    }
    // Without --created: mtime 0 and no creation time in the bill.
    work.hpn(["save", reference, "-o", "undated.tar"]).assert_ok();
    let bill: serde_json::Value =
        serde_json::from_slice(&common::tar_entry(&work.path().join("undated.tar"), "hpn-contents.json")).unwrap();
    assert!(bill.get("created").is_none(), "{bill:#}");

    // A bad time is a bad argument, naming the flag with an example.
    let run = work.hpn(["save", reference, "-o", "bad.tar", "--created", "2024-05-01"]);
    run.assert_code(2);
    assert!(run.stderr.contains("--created") && run.stderr.contains("2024-05-01T12:00:00Z"), "{}", run.stderr);
    assert!(!work.path().join("bad.tar").exists());

    let dockerd = hpn_testkit::Dockerd::start().expect("start dockerd");
    dockerd.load(&first).unwrap_or_else(|error| panic!("docker load of a dated archive: {error:#}"));
    let tagged = &app.tag_references[0];
    let image = dockerd.image_inspect(tagged).unwrap_or_else(|error| panic!("docker has no {tagged}: {error:#}"));
    assert_eq!(image["Id"], app.amd64().config.digest.as_str());
}
