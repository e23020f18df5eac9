//! The commands that look at images without pulling them (inspect, digest,
//! tags, catalog) and the registry chores (tag, delete), against the real
//! distribution registry, with skopeo reading the same images as the judge.

mod common;

use common::{Workspace, seeded_registry};
use hpn_testkit::{Registry, skopeo, skopeo_inspect};

/// The fields of skopeo inspect hpn fills in the same way, for one platform.
fn platform_fields(inspection: &serde_json::Value) -> serde_json::Value {
    let field = |name: &str| inspection[name].clone();
    serde_json::json!({
        "Layers": field("Layers"), "Architecture": field("Architecture"), "Os": field("Os"),
        "Env": field("Env"), "Labels": field("Labels"), "Created": field("Created"),
    })
}

#[test]
fn inspect_agrees_with_skopeo_on_registry_store_layout_and_archives() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    for name in ["app-a", "multi", "zstd"] {
        let image = seeded.fixtures.image(name);
        let run = work.hpn(["inspect", &format!("docker://{}", image.reference)]);
        run.assert_ok();
        let ours = run.json();
        let theirs = skopeo_inspect(&format!("docker://{}", image.reference)).unwrap();
        assert_eq!(platform_fields(&ours), platform_fields(&theirs), "{name}");
        // For an index both name the index's digest; hpn also lists its platforms.
        assert_eq!(ours["Digest"], theirs["Digest"], "{name}");
        assert_eq!(ours["Digest"], image.digest.as_str(), "{name}");
        assert_eq!(ours["Name"], theirs["Name"], "{name}");
        assert_eq!(ours["RepoTags"], serde_json::json!(image.tags), "{name}");
        assert_eq!(
            ours["Platforms"].as_array().map(Vec::len),
            (image.platforms.len() > 1).then_some(image.platforms.len())
        );
    }

    // The same image everywhere hpn can put it: the store, a layout directory, both archive kinds.
    let app = seeded.fixtures.image("app-a");
    let registry_view = platform_fields(&work.hpn(["inspect", app.reference.as_str()]).json());
    work.hpn(["pull", app.reference.as_str()]).assert_ok();
    let layout = work.path().join("layout");
    work.hpn(["copy", &app.reference, &format!("oci:{}", layout.display())]).assert_ok();
    work.hpn(["save", app.reference.as_str(), "-o", "app.tar"]).assert_ok();
    let archive = work.path().join("app.tar");
    for endpoint in [
        format!("store:{}", app.reference),
        format!("oci:{}", layout.display()),
        format!("oci-archive:{}", archive.display()),
        format!("docker-archive:{}", archive.display()),
    ] {
        let run = work.hpn(["inspect", &endpoint]);
        run.assert_ok();
        let ours = run.json();
        assert_eq!(platform_fields(&ours), registry_view, "{endpoint}");
        assert_eq!(ours["Digest"], app.digest.as_str(), "{endpoint}");
        assert_eq!(work.hpn(["digest", &endpoint]).assert_ok().stdout.trim(), app.digest, "{endpoint}");
    }
    // skopeo reads the layout and the archive itself; its view agrees.
    for endpoint in [format!("oci:{}", layout.display()), format!("oci-archive:{}", archive.display())] {
        let theirs = skopeo_inspect(&endpoint).unwrap();
        assert_eq!(platform_fields(&theirs), registry_view, "skopeo {endpoint}");
    }
}

#[test]
fn inspect_raw_and_config_print_the_stored_bytes() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let multi = seeded.fixtures.image("multi");
    let raw = work.command().args(["inspect", "--raw", &multi.reference]).output().unwrap();
    assert!(raw.status.success());
    assert_eq!(common::digest_of(&raw.stdout), multi.digest, "--raw is the index, byte for byte");
    let arm =
        work.command().args(["inspect", "--image-config", "--platform", "linux/arm64", &multi.reference]).output();
    let arm = arm.unwrap();
    assert!(arm.status.success(), "{}", String::from_utf8_lossy(&arm.stderr));
    let config: serde_json::Value = serde_json::from_slice(&arm.stdout).unwrap();
    assert_eq!(config["architecture"], "arm64");
    let wanted = multi.platforms.iter().find(|platform| platform.platform().starts_with("linux/arm64")).unwrap();
    assert_eq!(common::digest_of(&arm.stdout), wanted.config.digest, "--image-config is the config blob");

    let missing = work.hpn(["inspect", &seeded.registry.reference("fixtures/nothing:1")]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("fixtures/nothing") && missing.stderr.contains("not found"), "{}", missing.stderr);
    let bad = work.hpn(["inspect", "docker://Bad Name"]);
    bad.assert_code(2);
}

#[test]
fn tags_follow_pagination_and_tag_moves_no_blob() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let app = seeded.fixtures.image("app-a");
    let mut expected: Vec<String> = app.tags.clone();
    let uploads_before = common::blob_uploads(&seeded.registry);
    for tag in ["t1", "t2", "t3", "t4", "t5", "sha256-0123abcd.sig"] {
        let run = work.hpn(["tag", &app.reference, tag]);
        run.assert_ok();
        assert!(run.stdout.contains(&app.digest), "{}", run.stdout);
        expected.push(tag.to_owned());
    }
    // Re-tagging is a manifest PUT: no blob was uploaded.
    assert_eq!(common::blob_uploads(&seeded.registry), uploads_before, "tag moved blobs");
    assert_eq!(seeded.registry.manifest(&app.repository, "t3").unwrap().digest.to_string(), app.digest);

    // distribution 2.8 sends every tag at once (the scripted registry test of hpn-registry
    // covers `Link` pagination of tags); its catalog paginates, below.
    let repository = seeded.registry.reference(&app.repository);
    let run = work.hpn(["tags", "--page-size", "2", &repository]);
    run.assert_ok();
    let mut listed: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);

    let run = work.hpn(["--json", "tags", "--omit-digest-tags", &repository]);
    run.assert_ok();
    let tags = run.json()["Tags"].as_array().unwrap().clone();
    assert_eq!(tags.len(), expected.len() - 1);
    assert!(tags.iter().all(|tag| !tag.as_str().unwrap().starts_with("sha256-")));
    // skopeo list-tags agrees.
    let theirs: serde_json::Value =
        serde_json::from_str(&skopeo(["list-tags", "--tls-verify=false", &format!("docker://{repository}")]).unwrap())
            .unwrap();
    assert_eq!(theirs["Tags"].as_array().unwrap().len(), expected.len());

    let before = seeded.registry.access_log().len();
    let run = work.hpn(["catalog", "--page-size", "3", seeded.registry.addr()]);
    run.assert_ok();
    let mut repositories: Vec<&str> = run.stdout.lines().collect();
    repositories.sort_unstable();
    let mut wanted: Vec<&str> = seeded.fixtures.images.iter().map(|image| image.repository.as_str()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    assert_eq!(repositories, wanted);
    let pages = seeded.registry.access_log()[before..]
        .iter()
        .filter(|entry| entry.method == "GET" && entry.path.starts_with("/v2/_catalog") && entry.status == 200)
        .count();
    assert!(wanted.len() > 3, "more repositories than one page");
    // The registry sends a Link after a full page, so an exact multiple costs one empty page more.
    assert!(pages >= wanted.len().div_ceil(3), "one request per page of three: {pages}");
}

#[test]
fn delete_asks_unless_told_and_reports_a_registry_that_refuses() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let app = seeded.fixtures.image("app-a");
    let tag = app.tags[0].clone();
    // Not a terminal and no --yes: refused, nothing deleted.
    let run = work.hpn(["delete", &app.reference]);
    run.assert_code(2);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert!(seeded.registry.manifest(&app.repository, &tag).is_ok());

    let refusing = Registry::builder().delete_disabled().start().unwrap();
    let reference = refusing.reference("copy/app:1");
    work.hpn(["copy", &app.digest_reference, &reference]).assert_ok();

    let run = work.hpn(["delete", "--yes", &app.reference]);
    run.assert_ok();
    assert!(run.stdout.contains(&app.digest), "{}", run.stdout);
    assert!(seeded.registry.manifest(&app.repository, &app.digest).is_err(), "the manifest is gone");
    assert!(seeded.registry.manifest(&app.repository, &tag).is_err(), "and its tag with it");

    let run = work.hpn(["delete", "--yes", &reference]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("does not allow deleting") && run.stderr.contains("405"), "{}", run.stderr);
    assert!(refusing.manifest("copy/app", "1").is_ok());
}

#[test]
fn image_lists_are_read_from_stdin() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    let app = seeded.fixtures.image("app-a");
    let zstd = seeded.fixtures.image("zstd");
    let mut child = work
        .command()
        .args(["--json", "pull", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    let list = format!("# from a pipe\n{}\n{}\n", app.reference, zstd.reference);
    child.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["ok"], 2, "{summary}");
}

#[test]
fn completions_and_help_examples() {
    let work = Workspace::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = work.hpn(["completions", shell]);
        run.assert_ok();
        assert!(run.stdout.contains("inspect") && run.stdout.contains("login"), "{shell}");
    }
    let bash = work.hpn(["completions", "bash"]);
    let check = std::process::Command::new("bash").args(["-n", "-c", &bash.stdout]).output().unwrap();
    assert!(check.status.success(), "bash cannot parse the script: {}", String::from_utf8_lossy(&check.stderr));
    let help = work.hpn(["inspect", "--help"]);
    help.assert_ok();
    assert!(help.stdout.contains("Examples:") && help.stdout.contains("hpn inspect --raw"), "{}", help.stdout);
    work.hpn(["completions", "tcsh"]).assert_code(2);
}
