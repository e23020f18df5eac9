//! Mirrors for reads (`--mirror`, config.yaml `mirrors:`, registries.conf):
//! tried in order before the image's own registry, with the logical name kept
//! and the serving location reported.

mod common;

use common::{Seeded, Workspace, seeded_registry_with};
use hpn_testkit::Registry;

/// Requests a registry saw after the first `from`.
fn requests_since(registry: &Registry, from: usize) -> usize {
    registry.access_log().len().saturating_sub(from)
}

#[test]
fn mirrors_serve_reads_in_order_and_the_origin_comes_last() {
    let Seeded { registry: origin, fixtures, .. } = seeded_registry_with(&["app-a"]);
    let app = fixtures.image("app-a");
    let mirror = Registry::start().unwrap();
    let empty_mirror = Registry::start().unwrap();
    let work = Workspace::new();
    let proxied = format!("{}/proxy/fixtures/app-a:1", mirror.addr());
    work.hpn(["copy", &format!("docker://{}", app.reference), &format!("docker://{proxied}")]).assert_ok();
    let map = |to: &str| format!("{}={to}", origin.addr());

    // A mirror without the image: the origin serves it, and no location is reported.
    let run =
        work.hpn(["--json", "--mirror", &map(empty_mirror.addr()), "--store", "s1", "pull", app.reference.as_str()]);
    run.assert_ok();
    assert!(run.json()["images"][0].get("source_location").is_none(), "{}", run.stdout);
    assert!(requests_since(&empty_mirror, 0) > 0, "the mirror was never asked");

    // A digest-only mirror (config.yaml) is not used for a tag…
    let config = work.file(
        "mirrors.yaml",
        &format!(
            "mirrors:\n  - prefix: {}\n    locations: [{}/proxy]\n    pull-from-mirror: digest-only\n",
            origin.addr(),
            mirror.addr()
        ),
    );
    let config = config.to_str().unwrap();
    let before = mirror.access_log().len();
    work.hpn(["--config", config, "--store", "s2", "pull", app.reference.as_str()]).assert_ok();
    assert_eq!(requests_since(&mirror, before), 0, "a digest-only mirror served a tag");

    // With the origin gone, registries.conf's mirrors serve: the dead one first, then the good one.
    let conf = work.file(
        "registries.conf",
        &format!(
            "[[registry]]\nprefix = \"{}\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:9\"\n\n\
             [[registry.mirror]]\nlocation = \"{}/proxy\"\n",
            origin.addr(),
            mirror.addr()
        ),
    );
    drop(origin);
    let conf = conf.to_str().unwrap();
    let env = [("CONTAINERS_REGISTRIES_CONF", conf)];
    let run = work.hpn_with_env(["--json", "--retries", "1", "--store", "s3", "pull", app.reference.as_str()], &env);
    run.assert_ok();
    let image = &run.json()["images"][0];
    assert_eq!(image["source_location"], proxied.as_str(), "{}", run.stdout);
    assert_eq!(image["digest"], app.digest.as_str());
    // …and the store keeps the image's own name.
    let listed = work.hpn_with_env(["--store", "s3", "store", "ls"], &env);
    listed.assert_ok();
    assert!(listed.stdout.contains(&app.reference), "{}", listed.stdout);

    // The digest-only mirror now serves a pull by digest.
    let run = work.hpn(["--json", "--config", config, "--store", "s4", "pull", app.digest_reference.as_str()]);
    run.assert_ok();
    assert!(run.json()["images"][0]["source_location"].as_str().is_some_and(|at| at.starts_with(mirror.addr())));
}

#[test]
fn an_unreachable_mirror_is_given_up_for_the_rest_of_the_run() {
    let names = ["base", "app-a", "app-b", "multi"];
    let Seeded { registry: origin, fixtures, .. } = seeded_registry_with(&names);
    let work = Workspace::new();
    // A port bound and let go again: nothing listens there, connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("{}=127.0.0.1:{port}", origin.addr());
    let mut args = vec!["-vv", "--retries", "3", "--mirror", dead.as_str(), "pull"];
    args.extend(names.iter().map(|name| fixtures.image(name).reference.as_str()));
    let run = work.hpn(args);
    run.assert_ok();
    let given_up = run.stderr.matches("mirror unreachable").count();
    let retried = run.stderr.matches("mirror failed").count();
    assert_eq!(
        (given_up, retried),
        (1, 0),
        "the dead mirror was asked again after it was found unreachable:\n{}",
        run.stderr
    );
    // The images start at once, but one read alone finds the mirror dead: its retries (3
    // attempts, 2 retries) are the run's only ones, not one chain per image waiting on it.
    let retries = run.stderr.lines().filter(|line| line.contains("retrying")).count();
    assert_eq!(retries, 2, "{}", run.stderr);
}
