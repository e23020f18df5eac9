//! `hpn verify`: archives checked offline — hpn's own, docker's and skopeo's —
//! and each corrupt or missing piece named.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use common::{Workspace, seeded_registry_with};
use hpn_testkit::skopeo;

/// Where the data of `name` starts in a tar file.
fn entry_offset(archive: &Path, name: &str) -> u64 {
    let mut tar = tar::Archive::new(fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            return entry.raw_file_position();
        }
    }
    panic!("{name} is not in {}", archive.display());
}

/// A copy of `archive` without the entry `name`.
fn without_entry(archive: &Path, name: &str, copy: &Path) {
    let mut tar = tar::Archive::new(fs::File::open(archive).unwrap());
    let mut builder = tar::Builder::new(fs::File::create(copy).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            continue;
        }
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        builder.append(&header, data.as_slice()).unwrap();
    }
    builder.finish().unwrap();
}

#[test]
fn verify_passes_good_archives_of_every_kind_and_names_each_damaged_piece() {
    let seeded = seeded_registry_with(&["app-a", "multi"]);
    let (app, multi) = (seeded.fixtures.image("app-a"), seeded.fixtures.image("multi"));
    let work = Workspace::new();
    work.hpn(["save", app.reference.as_str(), multi.reference.as_str(), "-o", "hpn.tar"]).assert_ok();
    for (transport, file) in [("docker-archive", "skopeo-docker.tar"), ("oci-archive", "skopeo-oci.tar")] {
        let destination = format!("{transport}:{}:{}", work.path().join(file).display(), app.reference);
        skopeo(["copy", "--src-tls-verify=false", &format!("docker://{}", app.reference), &destination]).unwrap();
    }

    let run = work.hpn(["--json", "verify", "hpn.tar", "skopeo-docker.tar", "skopeo-oci.tar"]);
    run.assert_ok();
    let reports = run.json();
    for report in reports.as_array().unwrap() {
        assert_eq!(report["ok"], true, "{report:#}");
        assert!(report["blobs"].as_u64().unwrap() >= 3, "{report:#}");
    }
    // Only one platform of `multi` was saved: said, not counted as a fault.
    assert!(reports[0]["platforms_absent"].as_u64().unwrap() >= 1, "{:#}", reports[0]);

    // One byte flipped inside a layer: that entry and digest are named.
    let layer = &app.amd64().layers[0].digest;
    let entry = format!("blobs/sha256/{}", layer.strip_prefix("sha256:").unwrap());
    let flipped = work.path().join("flipped.tar");
    fs::copy(work.path().join("hpn.tar"), &flipped).unwrap();
    let mut file = fs::OpenOptions::new().read(true).write(true).open(&flipped).unwrap();
    let offset = entry_offset(&flipped, &entry) + 100;
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&[byte[0] ^ 0xff]).unwrap();
    drop(file);
    let run = work.hpn(["verify", "flipped.tar"]);
    run.assert_code(6);
    assert!(
        run.stderr.contains(&entry) && run.stderr.contains(layer) && run.stderr.contains("corrupt"),
        "{}",
        run.stderr
    );

    // A layer missing: the layer and the manifest that needs it are named.
    without_entry(&work.path().join("hpn.tar"), &entry, &work.path().join("missing.tar"));
    let run = work.hpn(["--json", "verify", "missing.tar", "hpn.tar"]);
    run.assert_code(6);
    let reports = run.json();
    assert_eq!((reports[0]["ok"].as_bool(), reports[1]["ok"].as_bool()), (Some(false), Some(true)));
    let error = reports[0]["error"].as_str().unwrap();
    assert!(error.contains(layer) && error.contains(&app.amd64().manifest.digest), "{error}");

    // Not an archive at all.
    fs::write(work.path().join("junk.tar"), b"not a tar").unwrap();
    work.hpn(["verify", "junk.tar"]).assert_code(4);
}
