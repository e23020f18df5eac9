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
