//! `hpn serve` end to end: a store filled by `hpn pull` from a real distribution registry (or
//! an archive from `hpn save`), served by the real binary, read by real clients: skopeo, curl,
//! dockerd (also through `registry-mirrors`), podman, and raw sockets for the hostile cases.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::served::Served;
use common::{Seeded, Workspace, digest_of, seeded_registry, seeded_registry_with};
use hpn_testkit::{Dockerd, Podman, htpasswd_line, skopeo, skopeo_inspect_raw};
use rustix::process::Signal;

/// An HTTP answer as curl saw it.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// `curl -sS -i --http1.1 ARGS`.
fn curl(args: &[&str]) -> Reply {
    let output = Command::new("curl").args(["-sS", "-i", "--http1.1"]).args(args).output().expect("run curl");
    assert!(output.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    let split = output.stdout.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP head");
    let head = String::from_utf8_lossy(&output.stdout[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Reply { status, headers, body: output.stdout[split + 4..].to_vec() }
}

/// Every fixture image pulled into the workspace's store.
fn pulled(seeded: &Seeded, work: &Workspace) {
    let list = work.file("images.txt", &seeded_list(seeded));
    work.hpn(["pull", "--all-platforms", "-f", list.to_str().unwrap()]).assert_ok();
}

/// Every tag of every fixture image, and the digest of an untagged one.
fn seeded_list(seeded: &Seeded) -> String {
    let mut list = String::new();
    for image in &seeded.fixtures.images {
        for reference in &image.tag_references {
            list.push_str(&format!("{reference}\n"));
        }
        if image.tag_references.is_empty() {
            list.push_str(&format!("{}\n", image.digest_reference));
        }
    }
    list
}

/// What clients ask for: the pushed reference without the registry host.
fn served_name(seeded: &Seeded, reference: &str) -> String {
    reference.strip_prefix(&format!("{}/", seeded.registry.addr())).unwrap().to_owned()
}

#[test]
fn skopeo_reads_every_image_of_a_served_store_with_its_digests() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    pulled(&seeded, &work);
    let served = Served::start(&work, &[]);

    for image in &seeded.fixtures.images {
        let name = served_name(&seeded, &image.digest_reference);
        let raw = skopeo_inspect_raw(&format!("docker://{}", served.reference(&name)))
            .unwrap_or_else(|e| panic!("skopeo inspect {name}: {e:#}"));
        assert_eq!(digest_of(&raw), image.digest, "{name}");
        for tagged in &image.tag_references {
            let name = served_name(&seeded, tagged);
            let raw = skopeo_inspect_raw(&format!("docker://{}", served.reference(&name))).unwrap();
            assert_eq!(digest_of(&raw), image.digest, "{name}");
        }
    }
    let tags = skopeo(["list-tags", "--tls-verify=false", &format!("docker://{}", served.reference("fixtures/base"))])
        .unwrap();
    let tags: serde_json::Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["1", "latest"]));

    // A copy verifies every blob against its digest; the copied manifest is the stored one.
    for name in ["app-b", "multi"] {
        let image = seeded.fixtures.image(name);
        let dir = work.path().join(format!("copy-{name}"));
        let source = format!("docker://{}", served.reference(&served_name(&seeded, &image.reference)));
        skopeo([
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &source,
            &format!("dir:{}", dir.display()),
        ])
        .unwrap_or_else(|e| panic!("skopeo copy {name}: {e:#}"));
        let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
        assert_eq!(digest_of(&manifest), image.digest, "{name}");
    }
}

#[test]
fn curl_sees_the_distribution_api_headers_ranges_pagination_and_errors() {
    let seeded = seeded_registry();
    let work = Workspace::new();
    pulled(&seeded, &work);
    let served = Served::start(&work, &[]);

    let base = curl(&[&served.url("/v2/")]);
    assert_eq!(base.status, 200);
    assert_eq!(base.header("Docker-Distribution-API-Version"), Some("registry/2.0"));

    // Manifests: the stored bytes and their headers, for GET and HEAD.
    let app_b = seeded.fixtures.image("app-b");
    let path = "/v2/fixtures/app-b/manifests/1.0";
    let got = curl(&[&served.url(path)]);
    assert_eq!(got.status, 200);
    assert_eq!(digest_of(&got.body), app_b.digest);
    assert_eq!(got.header("Content-Type"), Some(app_b.media_type.as_str()));
    assert_eq!(got.header("Docker-Content-Digest"), Some(app_b.digest.as_str()));
    assert_eq!(got.header("Content-Length"), Some(got.body.len().to_string().as_str()));
    assert_eq!(got.header("ETag"), Some(format!("\"{}\"", app_b.digest).as_str()));
    let head = curl(&["-I", &served.url(path)]);
    assert_eq!((head.status, head.header("Content-Length")), (200, got.header("Content-Length")));
    assert!(head.body.is_empty());
    let by_digest = curl(&[&served.url(&format!("/v2/fixtures/app-b/manifests/{}", app_b.digest))]);
    assert_eq!(by_digest.body, got.body);

    // Blobs: whole, a range, a suffix range, out of range.
    let layer = &app_b.amd64().layers[0];
    let blob = format!("/v2/fixtures/app-b/blobs/{}", layer.digest);
    let whole = curl(&[&served.url(&blob)]);
    assert_eq!((whole.status, whole.body.len() as u64), (200, layer.size));
    assert_eq!(digest_of(&whole.body), layer.digest);
    let part = curl(&["-H", "Range: bytes=10-19", &served.url(&blob)]);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("Content-Range"), Some(format!("bytes 10-19/{}", layer.size).as_str()));
    assert_eq!(part.body, whole.body[10..20]);
    let tail = curl(&["-H", "Range: bytes=-5", &served.url(&blob)]);
    assert_eq!(tail.body, whole.body[whole.body.len() - 5..]);
    let beyond = curl(&["-H", &format!("Range: bytes={}-", layer.size), &served.url(&blob)]);
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("Content-Range"), Some(format!("bytes */{}", layer.size).as_str()));

    // Pagination: follow Link headers to the end; the pages add up to the catalog.
    let mut repositories = Vec::new();
    let mut next = Some("/v2/_catalog?n=3".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let page = curl(&[&served.url(&path)]);
        assert_eq!(page.status, 200);
        let names = page.json()["repositories"].as_array().unwrap().clone();
        assert!(names.len() <= 3);
        repositories.extend(names.into_iter().map(|n| n.as_str().unwrap().to_owned()));
        next = page.header("Link").map(|link| {
            assert!(link.ends_with("rel=\"next\""), "{link}");
            link[1..link.find('>').unwrap()].to_owned()
        });
        pages += 1;
    }
    let mut expected: Vec<String> = seeded.fixtures.images.iter().map(|i| i.repository.clone()).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(repositories, expected);
    assert_eq!(pages, expected.len().div_ceil(3));
    let first = curl(&[&served.url("/v2/fixtures/base/tags/list?n=1")]);
    assert_eq!(first.json(), serde_json::json!({"name": "fixtures/base", "tags": ["1"]}));
    assert_eq!(first.header("Link"), Some("</v2/fixtures/base/tags/list?n=1&last=1>; rel=\"next\""));
    let last = curl(&[&served.url("/v2/fixtures/base/tags/list?n=1&last=1")]);
    assert_eq!(last.json()["tags"], serde_json::json!(["latest"]));
    assert_eq!(last.header("Link"), None);
    assert_eq!(curl(&[&served.url("/v2/fixtures/base/tags/list?n=oops")]).status, 400);

    // Errors, with their OCI codes.
    let unknown_tag = curl(&[&served.url("/v2/fixtures/base/manifests/nope")]);
    assert_eq!((unknown_tag.status, unknown_tag.error_code().as_str()), (404, "MANIFEST_UNKNOWN"));
    let unknown_name = curl(&[&served.url("/v2/fixtures/nope/tags/list")]);
    assert_eq!((unknown_name.status, unknown_name.error_code().as_str()), (404, "NAME_UNKNOWN"));
    let zero = format!("sha256:{}", "0".repeat(64));
    let unknown_blob = curl(&[&served.url(&format!("/v2/fixtures/base/blobs/{zero}"))]);
    assert_eq!((unknown_blob.status, unknown_blob.error_code().as_str()), (404, "BLOB_UNKNOWN"));
    // A repository serves only what its own images reach.
    let zstd = seeded.fixtures.image("zstd");
    let foreign_layer = zstd.amd64().layers.last().unwrap();
    let foreign = curl(&[&served.url(&format!("/v2/fixtures/base/blobs/{}", foreign_layer.digest))]);
    assert_eq!((foreign.status, foreign.error_code().as_str()), (404, "BLOB_UNKNOWN"));
    let foreign = curl(&[&served.url(&format!("/v2/fixtures/base/manifests/{}", zstd.digest))]);
    assert_eq!((foreign.status, foreign.error_code().as_str()), (404, "MANIFEST_UNKNOWN"));
    // Referrers: none stored, so an empty index, not a 404.
    let referrers = curl(&[&served.url(&format!("/v2/fixtures/app-b/referrers/{}", app_b.digest))]);
    assert_eq!(referrers.status, 200);
    assert_eq!(referrers.header("Content-Type"), Some("application/vnd.oci.image.index.v1+json"));
    assert_eq!(referrers.json()["manifests"], serde_json::json!([]));
    let filtered = curl(&[&served.url(&format!("/v2/fixtures/app-b/referrers/{}?artifactType=a%2Fb", app_b.digest))]);
    assert_eq!(filtered.header("OCI-Filters-Applied"), Some("artifactType"));

    // Every write method: 405 UNSUPPORTED.
    for (method, path) in [
        ("PUT", "/v2/fixtures/base/manifests/2"),
        ("DELETE", "/v2/fixtures/base/manifests/1"),
        ("POST", "/v2/fixtures/base/blobs/uploads/"),
        ("PATCH", "/v2/fixtures/base/blobs/uploads/x"),
        ("DELETE", &blob),
    ] {
        let refused = curl(&["-X", method, "--data-binary", "x", &served.url(path)]);
        assert_eq!((refused.status, refused.error_code().as_str()), (405, "UNSUPPORTED"), "{method} {path}");
    }
}

#[test]
fn hostile_requests_are_refused_and_slow_clients_cut_off() {
    let seeded = seeded_registry_with(&["base"]);
    let work = Workspace::new();
    work.hpn(["pull", &seeded.fixtures.image("base").reference]).assert_ok();
    let served = Served::start(&work, &["--header-timeout", "1"]);

    // Traversal: names and digests are checked before anything is looked up.
    for path in [
        "/v2/fixtures/base/blobs/sha256:../../../../etc/passwd",
        "/v2/../../../etc/passwd",
        "/v2/fixtures/../../etc/manifests/1",
        "/v2/fixtures/base/blobs/sha256%2F..%2F..%2Fetc%2Fpasswd",
        "/v2/FIXTURES/base/tags/list",
    ] {
        let reply = curl(&["--path-as-is", &served.url(path)]);
        assert!(matches!(reply.status, 400 | 404), "{path}: {}", reply.status);
    }
    // A served blob's file replaced by a symlink to a file outside the store is not followed.
    let layer = &seeded.fixtures.image("base").amd64().layers[0];
    let blob_file = work.store().join("blobs/sha256").join(&layer.digest[7..]);
    let outside = work.path().join("outside");
    std::fs::copy(&blob_file, &outside).unwrap();
    std::fs::remove_file(&blob_file).unwrap();
    std::os::unix::fs::symlink(&outside, &blob_file).unwrap();
    let linked = curl(&[&served.url(&format!("/v2/fixtures/base/blobs/{}", layer.digest))]);
    assert_eq!(linked.status, 500, "a symlinked blob must not be served");

    // An oversized head: 431, connection closed.
    let mut socket = TcpStream::connect(&served.addr).unwrap();
    let huge = format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = socket.write_all(huge.as_bytes());
    let answer = read_to_close(&mut socket);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

    // Keep-alive: two requests, one connection.
    let mut socket = TcpStream::connect(&served.addr).unwrap();
    socket
        .write_all(
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/_catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let answer = read_to_close(&mut socket);
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");

    // A client that stalls mid-head is cut off after --header-timeout, and others are served meanwhile.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(&served.addr).unwrap();
    stalled.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert_eq!(curl(&[&served.url("/v2/")]).status, 200);
    let answer = read_to_close(&mut stalled);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");
}

fn read_to_close(socket: &mut TcpStream) -> String {
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn images_pulled_while_serving_appear_complete_and_a_signal_stops_it_cleanly() {
    let seeded = seeded_registry_with(&["base", "app-a"]);
    let work = Workspace::new();
    work.hpn(["pull", &seeded.fixtures.image("base").reference]).assert_ok();
    let served = Served::start(&work, &["--json"]);
    assert_eq!(curl(&[&served.url("/v2/_catalog")]).json()["repositories"], serde_json::json!(["fixtures/base"]));

    let app_a = seeded.fixtures.image("app-a");
    work.hpn(["pull", &app_a.reference]).assert_ok();
    let started = Instant::now();
    loop {
        let reply = curl(&[&served.url("/v2/fixtures/app-a/manifests/1")]);
        if reply.status == 200 {
            assert_eq!(digest_of(&reply.body), app_a.digest);
            // Complete: every blob is there as soon as the name is.
            for digest in app_a.blob_digests().iter().filter(|d| **d != app_a.digest) {
                let blob = curl(&["-I", &served.url(&format!("/v2/fixtures/app-a/blobs/{digest}"))]);
                assert_eq!(blob.status, 200, "{digest}");
            }
            break;
        }
        assert_eq!(reply.error_code(), "NAME_UNKNOWN");
        assert!(started.elapsed() < Duration::from_secs(10), "the new image did not appear");
        std::thread::sleep(Duration::from_millis(100));
    }

    // --json: one object per request, no credentials.
    let log = served.access_log();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|l| l["target"] == "/v2/fixtures/app-a/manifests/1" && l["status"] == 200), "{log}");

    let (code, took) = served.stop_with(Signal::TERM);
    assert_eq!(code, 0);
    assert!(took < Duration::from_secs(5), "{took:?}");
    let interrupted = Served::start(&work, &[]);
    assert_eq!(interrupted.stop_with(Signal::INT).0, 130);
}

#[test]
fn colliding_names_are_reported_and_keep_host_serves_both() {
    let seeded = seeded_registry_with(&["base", "app-a"]);
    let work = Workspace::new();
    let base = seeded.fixtures.image("base");
    let app_a = seeded.fixtures.image("app-a");
    // Two registries' images under one repository path and tag.
    work.hpn(["copy", &format!("docker://{}", base.reference), "store:docker.io/fixtures/app:1"]).assert_ok();
    work.hpn(["copy", &format!("docker://{}", app_a.reference), "store:quay.io/fixtures/app:1"]).assert_ok();
    let served = Served::start(&work, &[]);
    let stderr = served.stderr();
    assert!(stderr.contains("would both be fixtures/app:1") && stderr.contains("--keep-host"), "{stderr}");
    drop(served);

    let served = Served::start(&work, &["--keep-host"]);
    assert!(!served.stderr().contains("would both be"));
    let docker = curl(&[&served.url("/v2/docker.io/fixtures/app/manifests/1")]);
    let quay = curl(&[&served.url("/v2/quay.io/fixtures/app/manifests/1")]);
    assert_eq!(digest_of(&docker.body), base.digest);
    assert_eq!(digest_of(&quay.body), app_a.digest);
}

#[test]
fn docker_pulls_from_a_served_store_directly_and_as_its_registry_mirror() {
    let seeded = seeded_registry_with(&["multi", "app-a"]);
    let work = Workspace::new();
    let multi = seeded.fixtures.image("multi");
    let app_a = seeded.fixtures.image("app-a");
    work.hpn(["pull", "--all-platforms", &multi.reference]).assert_ok();
    work.hpn(["copy", &format!("docker://{}", app_a.reference), "store:docker.io/library/app-a:1"]).assert_ok();
    let served = Served::start(&work, &[]);

    let dockerd = Dockerd::start_with_mirror(&format!("http://{}", served.addr)).expect("start dockerd");
    let name = served.reference(&served_name(&seeded, &multi.reference));
    dockerd.pull(&name).unwrap_or_else(|e| panic!("docker pull {name}: {e:#}\n{}", dockerd.log_tail(30)));
    let inspected = dockerd.image_inspect(&name).unwrap();
    assert_eq!(inspected["Id"], multi.amd64().config.digest.as_str(), "image ID = config digest");
    assert!(inspected["RepoDigests"].to_string().contains(&multi.digest), "{}", inspected["RepoDigests"]);

    // docker.io/library/app-a:1 through the mirror: nothing else is reachable from here.
    dockerd.pull("app-a:1").unwrap_or_else(|e| panic!("docker pull app-a:1 via the mirror: {e:#}"));
    let inspected = dockerd.image_inspect("app-a:1").unwrap();
    assert_eq!(inspected["Id"], app_a.amd64().config.digest.as_str());
    assert!(served.access_log().contains("/v2/library/app-a/manifests/1"), "the mirror was not asked");
}

#[test]
fn podman_pulls_from_a_served_store() {
    let seeded = seeded_registry_with(&["app-b"]);
    let work = Workspace::new();
    let app_b = seeded.fixtures.image("app-b");
    work.hpn(["pull", &app_b.reference]).assert_ok();
    let served = Served::start(&work, &[]);
    let podman = Podman::new();
    std::fs::write(podman.dir().join("auth.json"), "{}").unwrap();
    let name = served.reference(&served_name(&seeded, &app_b.reference));
    podman.podman(["pull", "--tls-verify=false", &name]).unwrap_or_else(|e| panic!("podman pull {name}: {e:#}"));
    let inspected = podman.image_inspect(&name).unwrap();
    assert_eq!(inspected["Digest"], app_b.digest.as_str());
    assert_eq!(inspected["Id"], &app_b.amd64().config.digest[7..]);
}

#[test]
fn a_saved_bundle_is_served_in_place_and_docker_pulls_it_with_every_digest_unchanged() {
    // Not the zstd fixture: docker 20.10 cannot unpack zstd layers (skopeo reads it below).
    let seeded = seeded_registry_with(&["app-a", "multi", "zstd", "uncompressed"]);
    let packer = Workspace::new();
    let list = packer.file("images.txt", &seeded_list(&seeded));
    packer.hpn(["save", "-f", list.to_str().unwrap(), "-o", "bundle.tar"]).assert_ok();
    // Carried to a machine with an empty store.
    let site = Workspace::new();
    let bundle = site.path().join("bundle.tar");
    std::fs::rename(packer.path().join("bundle.tar"), &bundle).unwrap();
    let served = Served::start(&site, &["-i", bundle.to_str().unwrap()]);
    assert!(!site.store().join("index.json").exists(), "serving an archive must not fill the store");

    for image in &seeded.fixtures.images {
        let name = served.reference(&served_name(&seeded, &image.reference));
        let raw = skopeo_inspect_raw(&format!("docker://{name}")).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(digest_of(&raw), image.digest, "{name}");
    }
    let dockerd = Dockerd::start().expect("start dockerd");
    for image in seeded.fixtures.images.iter().filter(|image| image.name != "zstd") {
        let name = served.reference(&served_name(&seeded, &image.reference));
        dockerd.pull(&name).unwrap_or_else(|e| panic!("docker pull {name}: {e:#}"));
        let inspected = dockerd.image_inspect(&name).unwrap();
        assert_eq!(inspected["Id"], image.amd64().config.digest.as_str(), "{name}");
        let expected: Vec<serde_json::Value> = image.amd64().diff_ids.iter().map(|d| d.clone().into()).collect();
        assert_eq!(inspected["RootFS"]["Layers"], serde_json::Value::from(expected), "{name}");
    }
}

#[test]
fn tls_and_basic_auth_guard_the_registry_and_the_log_holds_no_credentials() {
    let seeded = seeded_registry_with(&["base"]);
    let work = Workspace::new();
    let base = seeded.fixtures.image("base");
    work.hpn(["pull", &base.reference]).assert_ok();
    let (cert, key) = self_signed(work.path());
    let htpasswd = work.file("htpasswd", &htpasswd_line("alice", "s3cret-pass").unwrap());
    let served = Served::start(
        &work,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--htpasswd",
            htpasswd.to_str().unwrap(),
        ],
    );
    assert!(served.stderr().contains("listening on https://"));
    let url = format!("https://{}/v2/fixtures/base/manifests/1", served.addr);
    let cacert = cert.to_str().unwrap();

    let anonymous = curl(&["--cacert", cacert, &url]);
    assert_eq!((anonymous.status, anonymous.error_code().as_str()), (401, "UNAUTHORIZED"));
    assert!(anonymous.header("WWW-Authenticate").is_some_and(|v| v.starts_with("Basic realm=")));
    let wrong = curl(&["--cacert", cacert, "-u", "alice:nope", &url]);
    assert_eq!(wrong.status, 401);
    let manifest = curl(&["--cacert", cacert, "-u", "alice:s3cret-pass", &url]);
    assert_eq!(manifest.status, 200);
    assert_eq!(digest_of(&manifest.body), base.digest);
    // A blob over TLS goes through the buffered path: whole and verified.
    let layer = &base.amd64().layers[0];
    let blob_url = format!("https://{}/v2/fixtures/base/blobs/{}", served.addr, layer.digest);
    let blob = curl(&["--cacert", cacert, "-u", "alice:s3cret-pass", &blob_url]);
    assert_eq!(digest_of(&blob.body), layer.digest);
    let raw = skopeo([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret-pass",
        &format!("docker://{}/fixtures/base:1", served.addr),
    ])
    .unwrap();
    assert_eq!(digest_of(raw.as_bytes()), base.digest);

    let log = served.access_log();
    assert!(log.contains(" alice \"GET /v2/fixtures/base/manifests/1\" 200"), "{log}");
    assert!(!log.contains("s3cret") && !log.contains("YWxpY2"), "credentials in the access log:\n{log}");
}

/// A self-signed certificate for 127.0.0.1, made by openssl.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

#[test]
fn connections_over_the_limit_are_refused_with_429_until_one_closes() {
    let work = Workspace::new();
    let served = Served::start(&work, &["--max-connections", "1"]);
    let holder = TcpStream::connect(&served.addr).unwrap();
    // The first connection is accepted before the second one: make sure it holds the slot.
    std::thread::sleep(Duration::from_millis(200));
    let mut refused = TcpStream::connect(&served.addr).unwrap();
    let answer = read_to_close(&mut refused);
    assert!(answer.starts_with("HTTP/1.1 429 ") && answer.contains("TOOMANYREQUESTS"), "{answer}");
    drop(holder);
    let started = Instant::now();
    loop {
        let mut socket = TcpStream::connect(&served.addr).unwrap();
        socket.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let answer = read_to_close(&mut socket);
        if answer.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the slot was not released: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
