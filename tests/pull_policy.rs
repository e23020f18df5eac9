//! `--pull always|missing|never` on pull and save: what hpn asks the registry
//! about an image the store already holds, tried with the registry gone.

mod common;

use common::{Seeded, Workspace, seeded_registry_with};

#[test]
fn the_store_serves_saves_when_the_registry_is_down_as_the_pull_policy_allows() {
    let work = Workspace::new();
    let Seeded { registry, fixtures, .. } = seeded_registry_with(&["app-a", "app-b"]);
    let (stored, absent) = (fixtures.image("app-a"), fixtures.image("app-b"));
    work.hpn(["pull", stored.reference.as_str()]).assert_ok();
    // Nothing listens there any more: every request to it fails to connect.
    drop(registry);

    // A tag is looked up by default, so a dead registry fails the save as a network error…
    let always = work.hpn(["save", stored.reference.as_str(), "-o", "always.tar"]);
    always.assert_code(5);
    assert!(!work.path().join("always.tar").exists());

    // …while a digest names content the store holds completely: no registry needed.
    work.hpn(["save", stored.digest_reference.as_str(), "-o", "digest.tar"]).assert_ok();

    for policy in ["missing", "never"] {
        let output = format!("{policy}.tar");
        let run = work.hpn(["--json", "save", "--pull", policy, stored.reference.as_str(), "-o", output.as_str()]);
        run.assert_ok();
        assert_eq!(run.json()["images"][0]["digest"], stored.digest.as_str(), "{}", run.stdout);
        assert!(work.path().join(&output).is_file());
    }
    work.hpn(["pull", "--pull", "missing", stored.reference.as_str()]).assert_ok();

    // An image the store lacks: `missing` must ask (and fails to connect); `never` refuses
    // without asking, and says what to do.
    work.hpn(["pull", "--pull", "missing", absent.reference.as_str()]).assert_code(5);
    let never = work.hpn(["pull", "--pull", "never", absent.reference.as_str()]);
    never.assert_code(4);
    assert!(never.stderr.contains("is not complete in the store"), "{}", never.stderr);
    assert!(never.stderr.contains("--pull never"), "{}", never.stderr);
}
