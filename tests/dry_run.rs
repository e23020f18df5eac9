//! `--dry-run` on pull, save, load, push and copy: the plan (source →
//! destination, layers to copy and already there, bytes) and nothing written
//! anywhere — no store directory, no archive, no upload.

mod common;

use common::{Workspace, seeded_registry_with};
use hpn_testkit::Registry;

/// The requests after the first `from` that changed something in the registry, or read a
/// layer's bytes.
fn writes_and_layer_reads(registry: &Registry, from: usize, layers: &[String]) -> Vec<String> {
    registry
        .access_log()
        .into_iter()
        .skip(from)
        .filter(|entry| {
            !matches!(entry.method.as_str(), "GET" | "HEAD")
                || (entry.method == "GET" && layers.iter().any(|layer| entry.path.ends_with(layer.as_str())))
        })
        .map(|entry| format!("{} {}", entry.method, entry.path))
        .collect()
}

#[test]
fn dry_runs_plan_every_command_and_write_nothing() {
    let seeded = seeded_registry_with(&["app-a", "app-b"]);
    let (app, other) = (seeded.fixtures.image("app-a"), seeded.fixtures.image("app-b"));
    let layers: Vec<String> = app.amd64().layers.iter().map(|layer| layer.digest.clone()).collect();
    let layer_bytes: u64 = app.amd64().layers.iter().map(|layer| layer.size).sum();
    let work = Workspace::new();
    let store = work.store();

    // A first pull, planned: everything is to copy, and the store is not even created.
    let seeding = seeded.registry.access_log().len();
    let run = work.hpn(["--json", "pull", "--dry-run", app.reference.as_str()]);
    run.assert_ok();
    let plan = run.json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["images"][0]["digest"], app.digest.as_str());
    assert_eq!(plan["bytes_fetched"], layer_bytes);
    assert_eq!(plan["bytes_reused"], 0);
    assert!(!store.exists(), "a dry run created the store");
    assert_eq!(writes_and_layer_reads(&seeded.registry, seeding, &layers), Vec::<String>::new());

    let run = work.hpn(["save", "--dry-run", app.reference.as_str(), "-o", "app.tar"]);
    run.assert_ok();
    assert!(run.stdout.contains("would write app.tar"), "{}", run.stdout);
    assert!(run.stdout.contains(&app.reference), "{}", run.stdout);
    assert!(!work.path().join("app.tar").exists() && !store.exists());

    // With the image stored, the plan says every layer is already there.
    work.hpn(["pull", app.reference.as_str()]).assert_ok();
    let plan = work.hpn(["--json", "pull", "--dry-run", app.reference.as_str()]).json();
    assert_eq!((plan["bytes_fetched"].as_u64(), plan["bytes_reused"].as_u64()), (Some(0), Some(layer_bytes)));

    // Push: planned against the site's registry by HEAD requests alone, with the new names.
    let site = Registry::start().unwrap();
    let run = work.hpn(["--json", "push", "--dry-run", app.reference.as_str(), "-r", site.addr()]);
    run.assert_ok();
    let plan = run.json();
    assert_eq!(plan["images"][0]["destination"], format!("{}/app-a:1", site.addr()));
    assert_eq!(plan["bytes_fetched"], layer_bytes);
    assert_eq!(writes_and_layer_reads(&site, 0, &layers), Vec::<String>::new());
    assert!(site.manifest("app-a", "1").is_err(), "a dry run pushed a manifest");

    // Load and copy: no store, no layout, no archive appears.
    work.hpn(["save", app.reference.as_str(), other.reference.as_str(), "-o", "two.tar"]).assert_ok();
    let fresh = work.path().join("fresh-store");
    let fresh_store = fresh.to_str().unwrap();
    let run = work.hpn(["--json", "--store", fresh_store, "load", "--dry-run", "-i", "two.tar"]);
    run.assert_ok();
    assert_eq!(run.json()["ok"], 2);
    let layout = work.path().join("layout");
    let target = format!("oci:{}:app:1", layout.display());
    work.hpn(["copy", "--dry-run", &format!("store:{}", app.reference), &target]).assert_ok();
    let from_archive = format!("docker-archive:two.tar:{}", app.reference);
    work.hpn(["copy", "--dry-run", from_archive.as_str(), "oci-archive:out.tar"]).assert_ok();
    assert!(!fresh.exists() && !layout.exists() && !work.path().join("out.tar").exists());
}
