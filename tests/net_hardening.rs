//! hpn against registries that are not friends: one that trickles its answers a byte at a time,
//! one that accepts connections and never answers, and the parties between hpn and a registry
//! (redirect targets, DNS, proxies) that must be blamed by name when they fail.

mod common;

use std::time::{Duration, Instant};

use common::{Workspace, seeded_registry_with, wait_with_limit};
use hpn_testkit::{RefusingProxy, Registry, SilentServer, TestCa, TrickleProxy};

/// The image the tests pull: three gzip layers, an OCI manifest.
const IMAGE: &str = "app-b";

/// A byte every 5 s: no single read waits long enough to count as a stall.
const TRICKLE: Duration = Duration::from_secs(5);

/// `hpn pull REFERENCE` with `env`, killed if it outlasts `limit`; how long it took.
fn pull_within(reference: &str, env: &[(&str, &str)], limit: Duration) -> (common::Run, Duration) {
    let work = Workspace::new();
    let started = Instant::now();
    let child = work.spawn(["pull", "--retries", "2", reference], env);
    let run = wait_with_limit(child, limit);
    (run, started.elapsed())
}

#[track_caller]
fn assert_says(run: &common::Run, parts: &[&str]) {
    for part in parts {
        assert!(run.stderr.contains(part), "no {part:?} in:\n{}", run.stderr);
    }
}

#[test]
fn a_manifest_trickled_a_byte_at_a_time_fails_within_the_body_timeout() {
    let seeded = seeded_registry_with(&[IMAGE]);
    let trickle = TrickleProxy::start(seeded.registry.addr(), "/manifests/", TRICKLE).unwrap();
    let reference = seeded.fixtures.image(IMAGE).reference.replacen(seeded.registry.addr(), trickle.addr(), 1);
    let (run, took) = pull_within(&reference, &[("HPN_BODY_TIMEOUT", "3")], Duration::from_secs(40));
    run.assert_code(5);
    // Two attempts of 3 s each, and the pauses between them.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_says(&run, &[trickle.addr(), "2 attempt", "still incomplete after 3 s"]);
}

#[test]
fn a_layer_trickled_below_the_minimum_rate_is_abandoned_after_the_retries() {
    let seeded = seeded_registry_with(&[IMAGE]);
    let layer = seeded.fixtures.image(IMAGE).amd64().layers[2].digest.clone();
    let trickle = TrickleProxy::start(seeded.registry.addr(), &format!("/blobs/{layer}"), TRICKLE).unwrap();
    let reference = seeded.fixtures.image(IMAGE).reference.replacen(seeded.registry.addr(), trickle.addr(), 1);
    // A window longer than the pause between two bytes: only the rate can catch this.
    let (run, took) = pull_within(&reference, &[("HPN_STALL_TIMEOUT", "6")], Duration::from_secs(60));
    run.assert_code(5);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_says(&run, &[layer.as_str(), trickle.addr(), "below the minimum of 1024 bytes/s"]);
}

#[test]
fn a_registry_that_never_answers_fails_within_the_response_timeout() {
    let silent = SilentServer::start().unwrap();
    let reference = format!("{}/team/app:1", silent.addr());
    let (run, took) = pull_within(&reference, &[("HPN_RESPONSE_TIMEOUT", "2")], Duration::from_secs(60));
    run.assert_code(5);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_says(&run, &[silent.addr(), "2 attempt", "no response came within 2 s"]);
    assert!(silent.connections() >= 2, "{} connections", silent.connections());
}

#[test]
fn a_name_that_does_not_resolve_is_not_advised_to_be_insecure() {
    let work = Workspace::new();
    let run = work.hpn(["pull", "--retries", "1", "no-such-registry.invalid/team/app:1"]);
    run.assert_code(5);
    assert_says(&run, &["no-such-registry.invalid", "does not resolve"]);
    assert!(!run.stderr.contains("--insecure-registry"), "plain HTTP will not resolve it either:\n{}", run.stderr);
}

#[test]
fn a_proxy_that_refuses_is_blamed_as_the_proxy() {
    let proxy = RefusingProxy::start().unwrap();
    let work = Workspace::new();
    let url = proxy.url();
    let env = [("HTTPS_PROXY", url.as_str()), ("HTTP_PROXY", url.as_str()), ("NO_PROXY", "")];
    let run = work.hpn_with_env(["pull", "--retries", "1", "registry.invalid:5000/team/app:1"], &env);
    run.assert_code(5);
    assert_says(&run, &["registry.invalid:5000", "proxy", "HTTPS_PROXY"]);
    assert!(!run.stderr.contains("--insecure-registry"), "{}", run.stderr);
    assert_eq!(proxy.refused(), ["CONNECT registry.invalid:5000"]);
}

/// A registry serving HTTPS with a certificate of `ca`, over the storage of `seeded` (where the
/// fixtures were pushed over plain HTTP).
fn tls_registry(seeded: &common::Seeded, ca: &TestCa, client_ca: bool) -> Registry {
    let server = ca.issue_server("registry", "127.0.0.1").unwrap();
    let builder = Registry::builder().tls(&server).storage(&seeded.registry.storage_dir());
    let builder = if client_ca { builder.client_ca(&ca.cert_path()) } else { builder };
    builder.start().unwrap()
}

#[test]
fn a_loopback_registry_with_a_trusted_certificate_gets_https() {
    let seeded = seeded_registry_with(&[IMAGE]);
    let ca = TestCa::generate().unwrap();
    let registry = tls_registry(&seeded, &ca, false);
    let reference = seeded.fixtures.image(IMAGE).reference.replacen(seeded.registry.addr(), registry.addr(), 1);
    let ca_file = ca.cert_path();
    let work = Workspace::new();
    let run = work.hpn_with_env(["pull", &reference], &[("SSL_CERT_FILE", ca_file.to_str().unwrap())]);
    run.assert_ok();
    work.assert_store_verifies();
    let served = registry.access_log();
    assert!(served.iter().any(|entry| entry.method == "GET" && entry.path.contains("/manifests/")), "{served:?}");

    // Untrusted, the certificate is what the error is about, not a plain-HTTP answer.
    let run = Workspace::new().hpn(["pull", "--retries", "1", &reference]);
    run.assert_code(5);
    assert_says(&run, &[registry.addr(), "certificate"]);
    assert!(!run.stderr.contains("HTTP request to an HTTPS server"), "{}", run.stderr);
}

#[test]
fn loopback_registries_are_never_reached_through_a_proxy() {
    let seeded = seeded_registry_with(&[IMAGE]);
    // Nothing listens on port 1: a proxied request could only fail.
    let dead = "http://127.0.0.1:1";
    let env = [("HTTPS_PROXY", dead), ("HTTP_PROXY", dead), ("ALL_PROXY", dead), ("NO_PROXY", "")];
    let work = Workspace::new();
    let run = work.hpn_with_env(["pull", "--retries", "1", &seeded.fixtures.image(IMAGE).reference], &env);
    run.assert_ok();
    work.assert_store_verifies();
}

/// A certs.d tree with `ca`'s certificate for `registry` (and `client`'s certificate, when
/// given), as docker's `/etc/docker/certs.d`; the directory to name in `HPN_CERTS_DIRS`.
fn certs_d(work: &Workspace, registry: &Registry, ca: &TestCa, client: Option<&hpn_testkit::Issued>) -> String {
    let base = work.path().join("certs.d");
    let host_dir = base.join(registry.addr());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(ca.cert_path(), host_dir.join("ca.crt")).unwrap();
    if let Some(client) = client {
        client.install_as_client(&host_dir).unwrap();
    }
    base.to_str().unwrap().to_owned()
}

#[test]
fn a_registry_ca_is_found_in_certs_d() {
    let seeded = seeded_registry_with(&[IMAGE]);
    let ca = TestCa::generate().unwrap();
    let registry = tls_registry(&seeded, &ca, false);
    let reference = seeded.fixtures.image(IMAGE).reference.replacen(seeded.registry.addr(), registry.addr(), 1);
    let work = Workspace::new();
    let certs = certs_d(&work, &registry, &ca, None);
    work.hpn_with_env(["pull", &reference], &[("HPN_CERTS_DIRS", &format!("/no/such/dir:{certs}"))]).assert_ok();
    work.assert_store_verifies();
}

#[test]
fn a_registry_that_requires_a_client_certificate_gets_the_one_in_certs_d() {
    let seeded = seeded_registry_with(&[IMAGE]);
    let ca = TestCa::generate().unwrap();
    let registry = tls_registry(&seeded, &ca, true);
    let reference = seeded.fixtures.image(IMAGE).reference.replacen(seeded.registry.addr(), registry.addr(), 1);

    // The CA alone: the registry refuses the handshake.
    let work = Workspace::new();
    let certs = certs_d(&work, &registry, &ca, None);
    let run = work.hpn_with_env(["pull", "--retries", "1", &reference], &[("HPN_CERTS_DIRS", &certs)]);
    run.assert_code(5);
    assert_says(&run, &[registry.addr(), "refused the TLS handshake", "client certificate", "HPN_CERTS_DIRS"]);
    assert!(!run.stderr.contains("--insecure-registry"), "{}", run.stderr);

    let work = Workspace::new();
    let client = ca.issue_client("hpn-client").unwrap();
    let certs = certs_d(&work, &registry, &ca, Some(&client));
    work.hpn_with_env(["pull", &reference], &[("HPN_CERTS_DIRS", &certs)]).assert_ok();
    work.assert_store_verifies();
}

#[test]
fn tls_verify_false_reaches_a_registry_whose_certificate_is_not_trusted() {
    let seeded = seeded_registry_with(&[IMAGE]);
    let ca = TestCa::generate().unwrap();
    let registry = tls_registry(&seeded, &ca, false);
    let reference = seeded.fixtures.image(IMAGE).reference.replacen(seeded.registry.addr(), registry.addr(), 1);
    let work = Workspace::new();
    work.hpn(["pull", "--tls-verify=false", &reference]).assert_ok();
    work.assert_store_verifies();
    let served = registry.access_log();
    assert!(served.iter().any(|entry| entry.path.contains("/manifests/")), "not served over TLS: {served:?}");
}
