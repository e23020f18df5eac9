//! `hpn save --sign-key` and `hpn verify --key`: the bill of contents signed
//! with ECDSA P-256 keys as openssl makes them, checked by hpn and by
//! `openssl dgst -sha256 -verify`; an edited bill, another key, a missing
//! signature and an encrypted key each refused.

mod common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::{Workspace, seeded_registry_with, tar_entry};

fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// A copy of `archive` with the entry `name` changed by `change`.
fn rewrite_entry(archive: &Path, name: &str, copy: &Path, change: impl Fn(Vec<u8>) -> Vec<u8>) {
    let mut tar = tar::Archive::new(fs::File::open(archive).unwrap());
    let mut builder = tar::Builder::new(fs::File::create(copy).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            data = change(data);
            header.set_size(data.len() as u64);
            header.set_cksum();
        }
        builder.append(&header, data.as_slice()).unwrap();
    }
    builder.finish().unwrap();
}

#[test]
fn signed_bills_verify_with_hpn_and_openssl_and_edits_other_keys_and_no_signature_fail() {
    let seeded = seeded_registry_with(&["app-a"]);
    let app = seeded.fixtures.image("app-a").reference.as_str();
    let work = Workspace::new();
    let dir = work.path();
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "key.pem"]);
    openssl(dir, &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sec1.pem"]);
    openssl(dir, &["pkey", "-in", "sec1.pem", "-pubout", "-out", "sec1-pub.pem"]);

    // PKCS#8, one archive.
    work.hpn(["save", app, "-o", "signed.tar", "--sign-key", "key.pem"]).assert_ok();
    work.hpn(["verify", "--key", "pub.pem", "signed.tar"]).assert_ok();
    let archive = dir.join("signed.tar");
    fs::write(dir.join("bill.json"), tar_entry(&archive, "hpn-contents.json")).unwrap();
    fs::write(dir.join("bill.sig"), tar_entry(&archive, "hpn-contents.json.sig")).unwrap();
    let checked = openssl(dir, &["dgst", "-sha256", "-verify", "pub.pem", "-signature", "bill.sig", "bill.json"]);
    assert!(String::from_utf8_lossy(&checked.stdout).contains("Verified OK"));

    // The same save again signs to the same bytes (RFC 6979): still reproducible.
    work.hpn(["save", app, "-o", "again.tar", "--sign-key", "key.pem"]).assert_ok();
    assert_eq!(
        tar_entry(&dir.join("again.tar"), "hpn-contents.json.sig"),
        tar_entry(&archive, "hpn-contents.json.sig")
    );

    // The wrong key, an edited bill, no signature: each fails, saying why.
    let run = work.hpn(["verify", "--key", "sec1-pub.pem", "signed.tar"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("does not match"), "{}", run.stderr);
    rewrite_entry(&archive, "hpn-contents.json", &dir.join("edited.tar"), |bill| {
        String::from_utf8(bill).unwrap().replace("\"volume\": 1", "\"volume\": 1 ").into_bytes()
    });
    let run = work.hpn(["verify", "--key", "pub.pem", "edited.tar"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("edited.tar") && run.stderr.contains("does not match"), "{}", run.stderr);
    work.hpn(["save", app, "-o", "unsigned.tar"]).assert_ok();
    let run = work.hpn(["verify", "--key", "pub.pem", "unsigned.tar"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("not signed"), "{}", run.stderr);
    // Without --key, verify does not ask for a signature.
    work.hpn(["verify", "unsigned.tar"]).assert_ok();

    // SEC1, a set of volumes: every volume's own bill is signed.
    work.hpn(["save", app, "-o", "set.tar", "--split", "256K", "--sign-key", "sec1.pem"]).assert_ok();
    let volumes: Vec<String> = (1..=3).map(|number| format!("set.{number:03}.tar")).collect();
    for volume in &volumes {
        assert!(dir.join(volume).is_file(), "{volume} was not written");
    }
    let mut args = vec!["verify", "--key", "sec1-pub.pem"];
    let all: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("set."))
        .collect();
    args.extend(all.iter().map(String::as_str));
    work.hpn(&args).assert_ok();
    let second = dir.join(&volumes[1]);
    fs::write(dir.join("bill2.json"), tar_entry(&second, "hpn-contents.json")).unwrap();
    fs::write(dir.join("bill2.sig"), tar_entry(&second, "hpn-contents.json.sig")).unwrap();
    openssl(dir, &["dgst", "-sha256", "-verify", "sec1-pub.pem", "-signature", "bill2.sig", "bill2.json"]);

    // An encrypted key is refused before anything is fetched.
    openssl(dir, &["pkcs8", "-topk8", "-in", "key.pem", "-passout", "pass:secret", "-out", "encrypted.pem"]);
    let run = work.hpn(["save", app, "-o", "never.tar", "--sign-key", "encrypted.pem"]);
    run.assert_code(2);
    assert!(run.stderr.contains("encrypted.pem") && run.stderr.contains("encrypted"), "{}", run.stderr);
    assert!(!dir.join("never.tar").exists());
}
