//! Bad input gets a clear error, the right exit code, and loses nothing:
//! real registries answering 404s and 401s, an unreachable port, a blob
//! corrupted in the registry's own storage, unwritable output paths.

mod common;

use base64::Engine as _;
use common::{Workspace, seeded_registry};
use hpn_testkit::Registry;
use hpn_testkit::fixtures::{self, Scale};

#[test]
fn unknown_tag_and_repository_name_the_image_and_the_registry_and_exit_4() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let addr = seeded.registry.addr();
    let missing_tag = format!("{addr}/fixtures/base:nope");
    let missing_repo = format!("{addr}/fixtures/nothing-here:1");
    let run = work.hpn(["save", missing_tag.as_str(), missing_repo.as_str(), "-o", "x.tar"]);
    run.assert_code(4);
    for reference in [&missing_tag, &missing_repo] {
        assert!(run.stderr.contains(reference.as_str()), "no mention of {reference}:\n{}", run.stderr);
    }
    assert!(run.stderr.contains("MANIFEST_UNKNOWN") || run.stderr.contains("NAME_UNKNOWN"), "{}", run.stderr);
    assert!(!work.path().join("x.tar").exists(), "an archive without images was written");
}

#[test]
fn one_failed_image_does_not_stop_the_others() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let good = &seeded.fixtures.image("app-a").reference;
    let bad = format!("{}/fixtures/app-a:missing", seeded.registry.addr());
    let list = work.file("images.txt", &format!("{good}\nNot A Reference\n{bad}\n"));
    let run = work.hpn(["save", "-f", list.to_str().unwrap(), "-o", "out.tar", "--json"]);
    // A bad line (exit 2) and a missing image (exit 4) together: general failure.
    run.assert_code(1);
    let summary = run.json();
    assert_eq!(summary["ok"], 1);
    assert_eq!(summary["failed"], 2);
    assert_eq!(summary["rejected"][0]["origin"], format!("{}:2", list.display()));
    assert!(run.stderr.contains(&format!("{}:2", list.display())), "{}", run.stderr);
    assert!(work.path().join("out.tar").is_file(), "the good image was not saved");
    let bad_line_only = work.file("bad.txt", &format!("{good}\nteam//app:1\n"));
    work.hpn(["save", "-f", bad_line_only.to_str().unwrap(), "-o", "out2.tar"]).assert_code(2);
    assert!(work.path().join("out2.tar").is_file());
}

#[test]
fn an_unreachable_registry_is_a_network_error() {
    let work = Workspace::new();
    // Nothing listens on port 1 of the loopback address.
    let run = work.hpn(["pull", "127.0.0.1:1/team/app:1", "--retries", "2"]);
    run.assert_code(5);
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.stderr);
}

#[test]
fn a_corrupted_blob_is_refused_and_nothing_is_stored_or_saved() {
    let seeded = seeded_registry();
    let image = seeded.fixtures.image("app-b");
    let layer = image.amd64().layers.last().unwrap().digest.clone();
    let hex = &layer[7..];
    let data = seeded.registry.storage_dir().join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = std::fs::read(&data).expect("the registry's copy of the layer");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let work = Workspace::new();
    let run = work.hpn(["save", image.reference.as_str(), "-o", "out.tar"]);
    run.assert_code(4);
    assert!(run.stderr.contains(hex) && run.stderr.contains("digest"), "{}", run.stderr);
    assert!(!work.store().join("blobs/sha256").join(hex).exists(), "a corrupt blob was stored");
    let leftovers: Vec<_> = std::fs::read_dir(work.store().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.len() != 64)
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    assert!(!work.path().join("out.tar").exists());
}

#[test]
fn an_unwritable_output_path_fails_at_once_naming_the_path() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let image = &seeded.fixtures.image("base").reference;
    let before = seeded.registry.access_log().len();
    let run = work.hpn(["save", image.as_str(), "-o", "no/such/dir/out.tar"]);
    run.assert_code(6);
    assert!(run.stderr.contains("no/such/dir/out.tar"), "{}", run.stderr);
    let fetched = seeded.registry.access_log().len() - before;
    assert_eq!(fetched, 0, "hpn downloaded before finding out it cannot write");

    // A path that is a directory cannot become an archive either.
    std::fs::create_dir_all(work.path().join("adir")).unwrap();
    work.hpn(["save", image.as_str(), "-o", "adir"]).assert_code(6);
    assert!(work.path().join("adir").is_dir());
}

#[test]
fn argument_and_config_errors_have_their_own_exit_codes() {
    let work = Workspace::new();
    let run = work.hpn(["save", "-f", "missing.txt", "-o", "x.tar"]);
    run.assert_code(2);
    assert!(run.stderr.contains("missing.txt"), "{}", run.stderr);
    work.hpn(["save"]).assert_code(2);
    work.hpn(["frobnicate"]).assert_code(2);
    let config = work.file("bad.yaml", "parallel: [1\n");
    let run = work.hpn(["--config", config.to_str().unwrap(), "pull", "nginx"]);
    run.assert_code(3);
    assert!(run.stderr.contains("bad.yaml"), "{}", run.stderr);
    let auth = work.file("auth.json", "{ not json");
    let run = work.hpn_with_env(["pull", "nginx"], &[("REGISTRY_AUTH_FILE", auth.to_str().unwrap())]);
    run.assert_code(3);
    assert!(run.stderr.contains("auth.json"), "{}", run.stderr);
}

#[test]
fn basic_auth_uses_the_auth_file_and_a_wrong_password_is_an_auth_error() {
    let registry = Registry::start_with_htpasswd("ops", "s3cret-pass").expect("registry with htpasswd");
    let set = fixtures::build(Scale::Small).unwrap();
    let pushed = fixtures::push_with_basic_auth(&set, registry.addr(), "ops", "s3cret-pass").unwrap();
    let image = &pushed.image("app-a").reference;
    let work = Workspace::new();
    let auth_file = |password: &str| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("ops:{password}"));
        work.file("auth.json", &format!(r#"{{"auths":{{"{}":{{"auth":"{token}"}}}}}}"#, registry.addr()))
    };
    let path = auth_file("s3cret-pass");
    work.hpn_with_env(["save", image.as_str(), "-o", "ok.tar"], &[("REGISTRY_AUTH_FILE", path.to_str().unwrap())])
        .assert_ok();

    let other = Workspace::new();
    let path = auth_file("wrong");
    let run = other.hpn_with_env(["pull", image.as_str()], &[("REGISTRY_AUTH_FILE", path.to_str().unwrap())]);
    run.assert_code(4);
    assert!(run.stderr.contains(registry.addr()), "{}", run.stderr);
    assert!(!run.stderr.contains("s3cret-pass") && !run.stderr.contains("wrong"), "a password leaked: {}", run.stderr);
    assert!(run.stderr.contains("refused the credentials configured for it"), "{}", run.stderr);
    let entry = format!("refused: the entry for {} in {}", registry.addr(), path.display());
    assert!(run.stderr.contains(&entry), "the refused entry is not named: {}", run.stderr);
    let anonymous = Workspace::new().hpn(["pull", image.as_str()]);
    anonymous.assert_code(4);
    assert!(anonymous.stderr.contains("no credentials are configured for this registry"), "{}", anonymous.stderr);
}

/// A tmpfs too small for the image: the disk really fills up mid-write.
struct TinyDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root, as CI has");
        Self { path, _dir: dir }
    }

    fn entries(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut pending = vec![self.path.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    pending.push(entry.path());
                } else {
                    names.push(entry.path().strip_prefix(&self.path).unwrap().display().to_string());
                }
            }
        }
        names
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_is_a_filesystem_error_and_leaves_nothing_partial() {
    let seeded = seeded_registry();
    let image = &seeded.fixtures.image("many-layers");
    // The archive does not fit on the disk; the store (elsewhere) does.
    let disk = TinyDisk::mount(256 * 1024);
    let work = Workspace::new();
    let archive = disk.path.join("out.tar");
    let run = work.hpn(["save", image.reference.as_str(), "-o", archive.to_str().unwrap()]);
    run.assert_code(6);
    assert!(run.stderr.contains(archive.to_str().unwrap()) && run.stderr.contains("full"), "{}", run.stderr);
    assert!(disk.entries().is_empty(), "left on the disk: {:?}", disk.entries());

    // The store itself on the full disk.
    let store = disk.path.join("store");
    let run = work.hpn_with_env(["pull", image.reference.as_str()], &[("HPN_STORE", store.to_str().unwrap())]);
    run.assert_code(6);
    assert!(run.stderr.contains("space"), "{}", run.stderr);
    let partial: Vec<String> = disk
        .entries()
        .into_iter()
        .filter(|name| name.starts_with("store/blobs/sha256/") && name.len() != "store/blobs/sha256/".len() + 64)
        .collect();
    assert!(partial.is_empty(), "temp files left in the store: {partial:?}");
}
