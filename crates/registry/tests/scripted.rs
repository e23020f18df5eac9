//! Behaviour a real registry will not show on demand: redirects to another
//! host, 503 with Retry-After, bodies that break or stall mid-way, closed
//! ports, insecure-registry fallback. Each peer is a real HTTP server on a
//! loopback address answering what the test scripts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Action, Scripted};
use futures_util::StreamExt as _;
use hpn_oci::{Descriptor, Digest, Reference, media_type};
use hpn_registry::{
    ClientOptions, Credentials, MountOutcome, RegistryClient, RegistryError, RetryPolicy, SizeProblem, body_from_bytes,
};
use hpn_testkit::Rng;
use hpn_testkit::http::basic_authorization;

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;

fn options() -> ClientOptions {
    ClientOptions::default()
        .with_retry(RetryPolicy::new(4, Duration::from_millis(10), Duration::from_millis(50)))
        .with_stall_timeout(Duration::from_secs(5))
}

fn reference(server: &Scripted, rest: &str) -> Reference {
    format!("{}/{rest}", server.host()).parse().unwrap()
}

fn blob_descriptor(blob: &[u8]) -> Descriptor {
    Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::of(blob), blob.len() as u64)
}

async fn fetch_blob(client: &RegistryClient, server: &Scripted, blob: &[u8]) -> Result<Vec<u8>, RegistryError> {
    let mut stream = client.get_blob(&reference(server, "test/app:v1"), &blob_descriptor(blob)).await?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.map_err(common::registry_error)?);
    }
    Ok(body)
}

fn manifest_ok() -> Action {
    Action::ok(MANIFEST).with_header("Content-Type", media_type::OCI_MANIFEST)
}

#[tokio::test]
async fn redirects_keep_authorization_on_the_same_host_and_drop_it_elsewhere() {
    let blob = Rng::new(7).bytes(50_000);
    let digest = Digest::of(&blob);
    let served = blob.clone();
    // Object storage on another loopback address: authenticates by URL only and,
    // like S3, rejects a request carrying a second auth mechanism.
    let storage = Scripted::start("127.0.0.2", move |request| {
        if request.header("authorization").is_some() {
            return Action::Respond { status: 400, headers: Vec::new(), body: b"two auth mechanisms".to_vec() };
        }
        if request.target.contains("signature=abc") { Action::ok(&served) } else { Action::status(403) }
    });
    let storage_url = format!("http://{}/bucket/blob?signature=abc", storage.addr);
    let expected = basic_authorization("alice", "pw");
    let registry = Scripted::start("127.0.0.1", move |request| {
        let authorized = request.header("authorization") == Some(expected.as_str());
        match request.path() {
            _ if !authorized => Action::status(401).with_header("WWW-Authenticate", r#"Basic realm="scripted""#),
            "/v2/" => Action::status(200),
            path if path.starts_with("/v2/test/app/blobs/") => {
                Action::status(307).with_header("Location", "/internal/blob-location")
            }
            "/internal/blob-location" => Action::status(302).with_header("Location", &storage_url),
            _ => Action::status(404),
        }
    });
    let mut credentials = Credentials::default();
    credentials.insert(&registry.host(), "alice", "pw");
    let client = RegistryClient::new(options().with_credentials(credentials)).unwrap();

    assert_eq!(fetch_blob(&client, &registry, &blob).await.unwrap(), blob);
    let internal = registry.seen().into_iter().find(|seen| seen.path() == "/internal/blob-location").unwrap();
    assert!(internal.header("authorization").is_some(), "same-host redirect lost the Authorization header");
    assert_eq!(storage.count("/bucket/blob"), 1);
    assert!(storage.seen().iter().all(|seen| seen.header("authorization").is_none()));
    assert_eq!(registry.count(&format!("/v2/test/app/blobs/{digest}")), 1);
}

#[tokio::test]
async fn retry_after_on_503_is_honoured() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let server = Scripted::start("127.0.0.1", move |request| match request.path() {
        "/v2/" => Action::status(200),
        _ if counter.fetch_add(1, Ordering::SeqCst) == 0 => Action::Respond {
            status: 503,
            headers: vec![("Retry-After".into(), "1".into())],
            body: br#"{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}"#.to_vec(),
        },
        _ => manifest_ok(),
    });
    let client = RegistryClient::new(options()).unwrap();
    let started = Instant::now();
    let fetched = client.get_manifest(&reference(&server, "test/app:v1")).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(fetched.bytes, MANIFEST);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The policy's own backoff is at most 50 ms; the second try waited for Retry-After.
    assert!(elapsed >= Duration::from_millis(950), "retried after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn persistent_server_errors_give_a_status_error_after_the_policy() {
    let server = Scripted::start("127.0.0.1", |request| match request.path() {
        "/v2/" => Action::status(200),
        _ => Action::Respond { status: 502, headers: Vec::new(), body: b"bad gateway".to_vec() },
    });
    let client = RegistryClient::new(options()).unwrap();
    let error = client.get_manifest(&reference(&server, "test/app:v1")).await.unwrap_err();
    assert!(!error.is_network() && !error.is_not_found(), "{error:?}");
    assert!(matches!(error, RegistryError::Status { status: 502, attempts: 4, .. }), "{error:?}");
    assert_eq!(server.count("/v2/test/app/manifests/v1"), 4);
    let message = error.to_string();
    assert!(message.contains("bad gateway") && message.contains("try again later"), "{message}");

    // A 400 is not worth retrying.
    let refusing = Scripted::start("127.0.0.1", |request| match request.path() {
        "/v2/" => Action::status(200),
        _ => Action::status(400),
    });
    let error = client.get_manifest(&reference(&refusing, "test/app:v1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::Status { status: 400, attempts: 1, .. }), "{error:?}");
    assert_eq!(refusing.count("/v2/test/app/manifests/v1"), 1);
}

/// Serves `blob` honouring `Range: bytes=N-` with a 206 (or ignoring it with
/// a 200 when `ignore_range`), after breaking the first response with `first`.
fn flaky_blob_server(
    blob: Vec<u8>,
    ignore_range: bool,
    first: impl Fn(Vec<u8>) -> Action + Send + Sync + 'static,
) -> Scripted {
    let calls = AtomicUsize::new(0);
    Scripted::start("127.0.0.1", move |request| {
        if request.path() == "/v2/" {
            return Action::status(200);
        }
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return first(blob.clone());
        }
        let start = request
            .header("range")
            .and_then(|range| range.strip_prefix("bytes="))
            .and_then(|range| range.strip_suffix('-'))
            .map(|start| start.parse::<usize>().unwrap());
        match start {
            Some(start) if !ignore_range && start >= blob.len() => Action::status(416),
            Some(start) if !ignore_range => Action::Respond {
                status: 206,
                headers: vec![("Content-Range".into(), format!("bytes {start}-{}/{}", blob.len() - 1, blob.len()))],
                body: blob[start..].to_vec(),
            },
            _ => Action::ok(&blob),
        }
    })
}

#[tokio::test]
async fn a_body_reset_mid_way_resumes_with_range() {
    let blob = Rng::new(8).bytes(200_000);
    let server = flaky_blob_server(blob.clone(), false, |blob| Action::Truncate {
        status: 200,
        headers: Vec::new(),
        body: blob,
        send: 70_000,
    });
    let client = RegistryClient::new(options()).unwrap();
    assert_eq!(fetch_blob(&client, &server, &blob).await.unwrap(), blob);
    let requests: Vec<_> = server.seen().into_iter().filter(|seen| seen.path().contains("/blobs/")).collect();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("range"), None);
    let range = requests[1].header("range").expect("the resumed request asks for a range");
    let start: usize = range.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
    assert!(start > 0 && start <= 70_000, "{range}");
}

#[tokio::test]
async fn a_resume_answered_with_200_skips_what_was_delivered() {
    let blob = Rng::new(9).bytes(120_000);
    let server = flaky_blob_server(blob.clone(), true, |blob| Action::Truncate {
        status: 200,
        headers: Vec::new(),
        body: blob,
        send: 40_000,
    });
    let client = RegistryClient::new(options()).unwrap();
    assert_eq!(fetch_blob(&client, &server, &blob).await.unwrap(), blob);
    assert_eq!(server.count(&format!("/v2/test/app/blobs/{}", Digest::of(&blob))), 2);
}

#[tokio::test]
async fn a_stalled_body_is_abandoned_and_resumed() {
    let blob = Rng::new(10).bytes(100_000);
    let server = flaky_blob_server(blob.clone(), false, |blob| Action::Stall {
        status: 200,
        headers: Vec::new(),
        body: blob,
        send: 30_000,
        pause: Duration::from_secs(8),
    });
    let client = RegistryClient::new(options().with_stall_timeout(Duration::from_millis(300))).unwrap();
    let started = Instant::now();
    assert_eq!(fetch_blob(&client, &server, &blob).await.unwrap(), blob);
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    let resumed = server.seen().into_iter().filter(|seen| seen.header("range").is_some()).count();
    assert_eq!(resumed, 1);
}

#[tokio::test]
async fn bodies_shorter_or_longer_than_the_descriptor_fail() {
    let blob = Rng::new(11).bytes(20_000);
    // The registry's copy has only 15 000 bytes and sends them without a
    // Content-Length, then closes: a clean end, short of the descriptor. The
    // resume asks for bytes the registry does not have and gets a 416.
    let short = flaky_blob_server(blob[..15_000].to_vec(), false, |copy| Action::UntilClose {
        status: 200,
        headers: Vec::new(),
        body: copy,
    });
    let client = RegistryClient::new(options()).unwrap();
    let mut stream = client.get_blob(&reference(&short, "test/app:v1"), &blob_descriptor(&blob)).await.unwrap();
    let mut received = 0;
    let error = loop {
        match stream.next().await {
            Some(Ok(chunk)) => received += chunk.len(),
            Some(Err(error)) => break common::registry_error(error),
            None => panic!("a short body ended without an error"),
        }
    };
    assert_eq!(received, 15_000);
    assert!(
        matches!(error, RegistryError::SizeMismatch { expected: 20_000, actual: SizeProblem::EndedAt(15_000), .. }),
        "{error:?}"
    );
    assert!(stream.next().await.is_none(), "the stream ends after its error");

    // More bytes than the descriptor says, without a Content-Length to warn first.
    let doubled = blob.repeat(2);
    let long = Scripted::start("127.0.0.1", move |request| match request.path() {
        "/v2/" => Action::status(200),
        _ => Action::UntilClose { status: 200, headers: Vec::new(), body: doubled.clone() },
    });
    let mut stream = client.get_blob(&reference(&long, "test/app:v1"), &blob_descriptor(&blob)).await.unwrap();
    let mut received = 0;
    let error = loop {
        match stream.next().await.expect("an error before the end") {
            Ok(chunk) => received += chunk.len(),
            Err(error) => break common::registry_error(error),
        }
    };
    assert!(received <= 20_000);
    assert!(matches!(error, RegistryError::SizeMismatch { actual: SizeProblem::Exceeded, .. }), "{error:?}");
}

#[tokio::test]
async fn a_closed_port_is_a_network_error_after_quick_retries() {
    // A port just bound and released: nothing listens there.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let client = RegistryClient::new(ClientOptions::default().with_retry(RetryPolicy::new(
        3,
        Duration::from_millis(10),
        Duration::from_millis(20),
    )))
    .unwrap();
    let started = Instant::now();
    let reference: Reference = format!("{host}/test/app:v1").parse().unwrap();
    let error = client.get_manifest(&reference).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(error.is_network() && !error.is_not_found() && !error.is_auth(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&host) && message.contains("test/app:v1") && message.contains("3 attempt"), "{message}");
    assert!(message.contains("is the registry running"), "{message}");
    assert!(!message.contains("http://"), "URLs stay out of messages: {message}");
    assert!(client.ping(&host).await.unwrap_err().is_network());
}

#[tokio::test]
async fn head_without_digest_header_falls_back_to_get() {
    let server = Scripted::start("127.0.0.1", |request| match (request.method.as_str(), request.path()) {
        (_, "/v2/") => Action::status(200),
        ("HEAD", _) => Action::ok(MANIFEST), // no Docker-Content-Digest, no Content-Type
        _ => manifest_ok(),
    });
    let client = RegistryClient::new(options()).unwrap();
    let descriptor = client.head_manifest(&reference(&server, "test/app:v1")).await.unwrap().unwrap();
    assert_eq!(descriptor.digest, Digest::of(MANIFEST));
    assert_eq!(descriptor.media_type, media_type::OCI_MANIFEST);
    assert_eq!(descriptor.size, MANIFEST.len() as u64);
    let methods: Vec<_> =
        server.seen().into_iter().filter(|seen| seen.path() != "/v2/").map(|seen| seen.method).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

#[tokio::test]
async fn a_docker_content_digest_that_disagrees_is_refused() {
    let server = Scripted::start("127.0.0.1", |request| match request.path() {
        "/v2/" => Action::status(200),
        _ => manifest_ok().with_header("Docker-Content-Digest", &Digest::of(b"other").to_string()),
    });
    let client = RegistryClient::new(options()).unwrap();
    let error = client.get_manifest(&reference(&server, "test/app:v1")).await.unwrap_err();
    assert!(matches!(error, RegistryError::DigestMismatch { .. }), "{error:?}");
    // And a digest reference whose bytes differ.
    let pinned = format!("test/app@{}", Digest::of(b"pinned"));
    let error = client.get_manifest(&reference(&server, &pinned)).await.unwrap_err();
    assert!(matches!(error, RegistryError::DigestMismatch { expected_from: "the reference", .. }), "{error:?}");
}

#[tokio::test]
async fn oversized_manifests_are_refused() {
    let huge = vec![b' '; hpn_oci::limits::MANIFEST as usize + 1];
    let server = Scripted::start("127.0.0.1", move |request| match request.path() {
        "/v2/" => Action::status(200),
        _ => Action::UntilClose { status: 200, headers: Vec::new(), body: huge.clone() },
    });
    let client = RegistryClient::new(options()).unwrap();
    let error = client.get_manifest(&reference(&server, "test/app:v1")).await.unwrap_err();
    assert!(
        matches!(error, RegistryError::Protocol { .. }) && error.to_string().contains("bytes hpn accepts"),
        "{error:?}"
    );
}

#[tokio::test]
async fn insecure_registries_fall_back_from_https_to_plain_http() {
    let server = Scripted::start("127.0.0.1", |request| match request.path() {
        "/v2/" => Action::status(200),
        _ => manifest_ok(),
    });
    let client = RegistryClient::new(options().with_insecure_registries(vec![server.host()])).unwrap();
    let fetched = client.get_manifest(&reference(&server, "test/app:v1")).await.unwrap();
    assert_eq!(fetched.bytes, MANIFEST);
    // HTTPS was tried first and refused by the plain server; then HTTP, once.
    assert_eq!(server.tls_handshakes(), 1);
    assert_eq!(server.count("/v2/"), 1);
    client.get_manifest(&reference(&server, "test/app:v1")).await.unwrap();
    assert_eq!(server.tls_handshakes(), 1, "the scheme is remembered");

    // A loopback registry not named insecure gets (verified) HTTPS first too, as docker
    // does, then plain HTTP; once per client.
    let plain = RegistryClient::new(options()).unwrap();
    plain.get_manifest(&reference(&server, "test/app:v1")).await.unwrap();
    plain.get_manifest(&reference(&server, "test/app:v1")).await.unwrap();
    assert_eq!(server.tls_handshakes(), 2);
}

#[tokio::test]
async fn bearer_tokens_are_cached_per_scope_and_refreshed_once_on_401() {
    let token_calls = Arc::new(AtomicUsize::new(0));
    let counter = token_calls.clone();
    let tokens = Scripted::start("127.0.0.1", move |request| {
        let number = counter.fetch_add(1, Ordering::SeqCst);
        assert!(request.target.contains("service=scripted"), "{}", request.target);
        Action::ok(format!(r#"{{"access_token":"token-{number}","expires_in":3600}}"#).as_bytes())
    });
    let realm = format!("http://{}/token", tokens.addr);
    let manifest_gets = AtomicUsize::new(0);
    let registry = Scripted::start("127.0.0.1", move |request| {
        let challenge = format!(r#"Bearer realm="{realm}",service="scripted""#);
        let auth = request.header("authorization").unwrap_or_default().to_owned();
        match request.path() {
            "/v2/" => Action::status(401).with_header("WWW-Authenticate", &challenge),
            // The registry "rotates" its keys after the second manifest GET:
            // token-0 stops working, a fresh token is needed.
            _ if auth.is_empty() => Action::status(401).with_header("WWW-Authenticate", &challenge),
            _ => {
                let number = manifest_gets.fetch_add(1, Ordering::SeqCst);
                if auth == "Bearer token-0" && number >= 2 {
                    Action::status(401).with_header("WWW-Authenticate", &challenge)
                } else {
                    manifest_ok()
                }
            }
        }
    });
    let client = RegistryClient::new(options()).unwrap();
    let app = reference(&registry, "test/app:v1");
    client.get_manifest(&app).await.unwrap();
    client.get_manifest(&app).await.unwrap();
    assert_eq!(token_calls.load(Ordering::SeqCst), 1, "one token for two requests of the same scope");
    client.get_manifest(&app).await.unwrap();
    assert_eq!(token_calls.load(Ordering::SeqCst), 2, "a refused token is replaced once");
    client.get_manifest(&reference(&registry, "test/other:v1")).await.unwrap();
    assert_eq!(token_calls.load(Ordering::SeqCst), 3, "another repository needs its own scope");
    let scopes: Vec<_> = tokens.seen().into_iter().map(|seen| seen.target).collect();
    assert!(scopes[0].contains("scope=repository%3Atest%2Fapp%3Apull"), "{scopes:?}");
    assert!(scopes[2].contains("scope=repository%3Atest%2Fother%3Apull"), "{scopes:?}");
}

/// Two manifest GETs through a registry that wants `Bearer good`, from a token
/// service that always gives `answer`. Returns the second GET's result and how
/// many tokens were asked for.
async fn two_gets_with_token_answer(answer: &'static str) -> (Result<(), RegistryError>, usize) {
    let tokens = Scripted::start("127.0.0.1", move |_| Action::ok(answer.as_bytes()));
    let realm = format!("http://{}/token", tokens.addr);
    let registry = Scripted::start("127.0.0.1", move |request| match request.header("authorization") {
        Some("Bearer good") if request.path() != "/v2/" => manifest_ok(),
        _ => Action::status(401).with_header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}",service="s""#)),
    });
    let client = RegistryClient::new(options()).unwrap();
    let app = reference(&registry, "test/app:v1");
    let first = client.get_manifest(&app).await.map(drop);
    let second = client.get_manifest(&app).await.map(drop);
    assert_eq!(first.is_ok(), second.is_ok(), "{first:?} {second:?}");
    (second, tokens.count("/token"))
}

#[tokio::test]
async fn hostile_token_lifetimes_are_clamped_not_fatal() {
    for answer in [
        r#"{"token":"good","expires_in":18446744073709551615}"#,
        r#"{"token":"good","expires_in":1e308}"#,
        r#"{"token":"good","expires_in":-1}"#,
        r#"{"token":"good","expires_in":0}"#,
        r#"{"token":"good","expires_in":"soon"}"#,
    ] {
        let (result, token_calls) = two_gets_with_token_answer(answer).await;
        result.unwrap_or_else(|error| panic!("{answer}: {error}"));
        // Even "expires in -1 s" is good for the spec's 60 s minimum.
        assert_eq!(token_calls, 1, "{answer}");
    }
}

#[tokio::test]
async fn unusable_token_answers_say_what_is_wrong() {
    for (answer, problem) in [
        (r#"{"token":"","expires_in":300}"#, "has no token"),
        (r#"{"token":12345}"#, "has no token"),
        (r#"["good"]"#, "is not a JSON object"),
        (r#"{"token":"good""#, "is not JSON"),
    ] {
        let error = two_gets_with_token_answer(answer).await.0.unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&format!("the token service's answer {problem}")), "{answer}: {message}");
        assert!(!message.contains("good"), "the message quotes the token: {message}");
    }
}

// ---------------------------------------------------------------- uploads

const UPLOADS: &str = "/v2/test/app/blobs/uploads/";

fn digest_query(digest: &Digest) -> String {
    format!("digest=sha256%3A{}", digest.hex())
}

fn created(digest: &Digest) -> Action {
    Action::status(201).with_header("Docker-Content-Digest", &digest.to_string())
}

/// A registry whose first blob PUT fails with 503. The first session's
/// Location is relative with a query, the second's absolute without one.
fn flaky_upload_server(blob: &[u8]) -> Scripted {
    let (expected, digest) = (blob.to_vec(), Digest::of(blob));
    let own_host = Arc::new(std::sync::OnceLock::<String>::new());
    let host = own_host.clone();
    let (sessions, puts) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let server = Scripted::start("127.0.0.1", move |request| match (request.method.as_str(), request.path()) {
        (_, "/v2/") => Action::status(200),
        ("POST", UPLOADS) => match sessions.fetch_add(1, Ordering::SeqCst) {
            0 => Action::status(202).with_header("Location", "/v2/test/app/blobs/uploads/s1?_state=opaque%3D%3D"),
            _ => Action::status(202)
                .with_header("Location", &format!("http://{}/v2/test/app/blobs/uploads/s2", host.get().unwrap())),
        },
        ("PUT", _) if puts.fetch_add(1, Ordering::SeqCst) == 0 => Action::Respond {
            status: 503,
            headers: Vec::new(),
            body: br#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#.to_vec(),
        },
        ("PUT", _) if request.body == expected && request.target.ends_with(&digest_query(&digest)) => created(&digest),
        ("PUT", _) => Action::status(400),
        ("HEAD", _) => Action::status(404),
        ("DELETE", _) => Action::status(204),
        _ => Action::status(404),
    });
    own_host.set(server.host()).unwrap();
    server
}

fn requests(server: &Scripted, method: &str) -> Vec<common::Seen> {
    server.seen().into_iter().filter(|seen| seen.method == method).collect()
}

#[tokio::test]
async fn a_failed_streamed_put_starts_over_in_a_new_session_with_a_fresh_body() {
    let blob = Rng::new(50).bytes(2 * 1024 * 1024);
    let digest = Digest::of(&blob);
    let server = flaky_upload_server(&blob);
    let client = RegistryClient::new(options()).unwrap();
    let (body, calls) = common::counted_body(&blob);
    client.upload_blob(&reference(&server, "test/app:v1"), &blob_descriptor(&blob), body).await.unwrap();

    assert_eq!(calls.load(Ordering::SeqCst), 2, "the retry re-opened the body");
    assert_eq!(requests(&server, "POST").len(), 2, "the retry opened a new session");
    let puts = requests(&server, "PUT");
    assert_eq!(puts.len(), 2);
    // `digest` joins the query the registry gave, or starts one.
    assert_eq!(puts[0].target, format!("/v2/test/app/blobs/uploads/s1?_state=opaque%3D%3D&{}", digest_query(&digest)));
    assert_eq!(puts[1].target, format!("/v2/test/app/blobs/uploads/s2?{}", digest_query(&digest)));
    for put in &puts {
        // One streamed request with its length announced, not chunked encoding.
        assert_eq!(put.header("content-length"), Some(blob.len().to_string().as_str()));
        assert_eq!(put.header("transfer-encoding"), None);
        assert!(put.body == blob);
    }
    assert!(requests(&server, "PATCH").is_empty());
    // The failed session was cancelled; before starting over the client checked
    // whether the blob had been committed after all.
    let deletes = requests(&server, "DELETE");
    assert_eq!(deletes.len(), 1);
    assert!(deletes[0].target.starts_with("/v2/test/app/blobs/uploads/s1"), "{}", deletes[0].target);
    assert_eq!(server.count(&format!("/v2/test/app/blobs/{digest}")), 1);
}

#[tokio::test]
async fn small_blobs_are_sent_again_from_memory() {
    let blob = Rng::new(51).bytes(4000);
    let server = flaky_upload_server(&blob);
    let client = RegistryClient::new(options()).unwrap();
    let (body, calls) = common::counted_body(&blob);
    client.upload_blob(&reference(&server, "test/app:v1"), &blob_descriptor(&blob), body).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a small blob is read once");
    assert_eq!(requests(&server, "POST").len(), 2);
    assert!(requests(&server, "PUT").iter().all(|put| put.body == blob));
}

#[tokio::test]
async fn a_refused_whole_put_falls_back_to_chunks_that_shrink_until_accepted() {
    const LIMIT: usize = 300 * 1024;
    let blob = Rng::new(52).bytes(1_500_000);
    let (expected, digest) = (blob.clone(), Digest::of(&blob));
    let served_digest = digest.clone();
    let received = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let store = received.clone();
    // Like a registry behind nginx with a body limit: large requests get 413.
    let server = Scripted::start("127.0.0.1", move |request| {
        let mut received = store.lock().unwrap();
        match (request.method.as_str(), request.path()) {
            (_, "/v2/") => Action::status(200),
            ("POST", UPLOADS) => {
                received.clear();
                Action::status(202).with_header("Location", "/v2/test/app/blobs/uploads/c?_state=0")
            }
            ("PUT" | "PATCH", _) if request.body.len() > LIMIT => Action::Respond {
                status: 413,
                headers: Vec::new(),
                body: b"<html><body>413 Request Entity Too Large</body></html>".to_vec(),
            },
            ("PATCH", _) => {
                let range = format!("{}-{}", received.len(), received.len() + request.body.len() - 1);
                if request.header("content-range") != Some(range.as_str())
                    || !request.target.ends_with(&format!("_state={}", received.len()))
                {
                    return Action::status(416);
                }
                received.extend_from_slice(&request.body);
                Action::status(202)
                    .with_header("Location", &format!("/v2/test/app/blobs/uploads/c?_state={}", received.len()))
                    .with_header("Range", &format!("0-{}", received.len() - 1))
            }
            ("PUT", _) if *received == expected && request.target.ends_with(&digest_query(&served_digest)) => {
                created(&served_digest)
            }
            ("PUT", _) => Action::status(400),
            ("DELETE", _) => Action::status(204),
            _ => Action::status(404),
        }
    });
    let client = RegistryClient::new(options()).unwrap();
    let (body, calls) = common::counted_body(&blob);
    client.upload_blob(&reference(&server, "test/app:v1"), &blob_descriptor(&blob), body).await.unwrap();

    assert_eq!(calls.load(Ordering::SeqCst), 2, "the chunked attempt re-opened the body");
    assert!(*received.lock().unwrap() == blob);
    let patches = requests(&server, "PATCH");
    let accepted: Vec<usize> = patches.iter().map(|patch| patch.body.len()).filter(|len| *len <= LIMIT).collect();
    assert_eq!(accepted.iter().sum::<usize>(), blob.len());
    assert!(patches.len() > accepted.len(), "no chunk was refused, so none was halved");
    assert!(accepted.iter().all(|len| *len >= 256 * 1024 || *len == blob.len() % (256 * 1024)), "{accepted:?}");
    let last = requests(&server, "PUT").pop().unwrap();
    assert_eq!(last.target, format!("/v2/test/app/blobs/uploads/c?_state={}&{}", blob.len(), digest_query(&digest)));
    assert!(last.body.is_empty());
}

#[tokio::test]
async fn the_session_a_refused_mount_opened_is_used_by_the_upload() {
    let blob = Rng::new(53).bytes(3000);
    let digest = Digest::of(&blob);
    let expected = blob.clone();
    let server = Scripted::start("127.0.0.1", move |request| match (request.method.as_str(), request.path()) {
        (_, "/v2/") => Action::status(200),
        ("POST", UPLOADS) if request.target.contains("mount=") => {
            Action::status(202).with_header("Location", "/v2/test/app/blobs/uploads/from-mount?_state=m")
        }
        ("POST", UPLOADS) => Action::status(202).with_header("Location", "/v2/test/app/blobs/uploads/fresh"),
        ("PUT", _) if request.body == expected => created(&Digest::of(&request.body)),
        _ => Action::status(400),
    });
    let client = RegistryClient::new(options()).unwrap();
    let target = reference(&server, "test/app:v1");
    assert_eq!(client.mount_blob(&target, &digest, "test/base").await.unwrap(), MountOutcome::NotMounted);
    client.upload_blob(&target, &blob_descriptor(&blob), body_from_bytes(blob.clone().into())).await.unwrap();

    let posts = requests(&server, "POST");
    assert_eq!(posts.len(), 1, "the upload opened another session");
    assert_eq!(posts[0].target, format!("{UPLOADS}?mount={digest}&from=test/base"));
    let put = requests(&server, "PUT").pop().unwrap();
    assert_eq!(put.target, format!("/v2/test/app/blobs/uploads/from-mount?_state=m&{}", digest_query(&digest)));

    // The session is used once: the next upload opens its own.
    client.upload_blob(&target, &blob_descriptor(&blob), body_from_bytes(blob.clone().into())).await.unwrap();
    assert_eq!(requests(&server, "POST").len(), 2);
    assert!(requests(&server, "PUT").pop().unwrap().target.starts_with("/v2/test/app/blobs/uploads/fresh?"));
}

#[tokio::test]
async fn answers_that_do_not_confirm_the_push_are_errors() {
    let blob = Rng::new(54).bytes(2000);
    let other = Digest::of(b"something else");
    let answer_with = other.clone();
    let server = Scripted::start("127.0.0.1", move |request| match (request.method.as_str(), request.path()) {
        (_, "/v2/") => Action::status(200),
        ("POST", UPLOADS) => Action::status(202).with_header("Location", "/v2/test/app/blobs/uploads/x"),
        ("POST", "/v2/test/ok200/blobs/uploads/") => {
            Action::status(202).with_header("Location", "/v2/test/ok200/blobs/uploads/y")
        }
        ("PUT", "/v2/test/ok200/blobs/uploads/y") => Action::status(200),
        ("PUT", "/v2/test/app/blobs/uploads/x") => created(&answer_with),
        ("PUT", "/v2/test/app/manifests/v1") => created(&answer_with),
        ("PUT", "/v2/test/app/manifests/v2") => {
            assert_eq!(request.header("content-type"), Some(media_type::OCI_MANIFEST));
            created(&Digest::of(&request.body))
        }
        ("DELETE", _) => Action::status(204),
        _ => Action::status(404),
    });
    let client = RegistryClient::new(options()).unwrap();
    let target = reference(&server, "test/app:v1");
    let error =
        client.upload_blob(&target, &blob_descriptor(&blob), body_from_bytes(blob.clone().into())).await.unwrap_err();
    assert!(matches!(error, RegistryError::Protocol { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&other.to_string()) && message.contains(&Digest::of(&blob).to_string()), "{message}");

    // A registry that says 200 where a commit says 201 has not said it committed.
    let ok200 = reference(&server, "test/ok200:v1");
    let error =
        client.upload_blob(&ok200, &blob_descriptor(&blob), body_from_bytes(blob.clone().into())).await.unwrap_err();
    assert!(error.to_string().contains("where 201 Created was expected"), "{error}");

    let error = client.put_manifest(&target, MANIFEST.into(), media_type::OCI_MANIFEST).await.unwrap_err();
    assert!(matches!(error, RegistryError::Protocol { .. }), "{error:?}");
    assert!(error.to_string().contains(&other.to_string()), "{error}");

    let v2 = reference(&server, "test/app:v2");
    let digest = client.put_manifest(&v2, MANIFEST.into(), media_type::OCI_MANIFEST).await.unwrap();
    assert_eq!(digest, Digest::of(MANIFEST));
    let sent = requests(&server, "PUT").pop().unwrap();
    assert_eq!(sent.body, MANIFEST, "the manifest's bytes were not sent as they are");
}

#[tokio::test]
async fn an_upload_the_registry_stops_reading_is_abandoned_as_stalled() {
    // Accepts connections and never reads from them.
    let black_hole = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let hole = black_hole.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in black_hole.incoming() {
            held.push(stream);
        }
    });
    let server = Scripted::start("127.0.0.1", move |request| match (request.method.as_str(), request.path()) {
        (_, "/v2/") => Action::status(200),
        ("POST", UPLOADS) => Action::status(202).with_header("Location", &format!("http://{hole}/upload/1")),
        _ => Action::status(404),
    });
    let client = RegistryClient::new(
        // The black hole never answers the session's cancelling DELETE either.
        ClientOptions::default()
            .with_stall_timeout(Duration::from_millis(700))
            .with_response_timeout(Duration::from_millis(700))
            .with_retry(RetryPolicy::new(2, Duration::from_millis(10), Duration::from_millis(10))),
    )
    .unwrap();
    // More than loopback socket buffers hold.
    let blob = Rng::new(55).bytes(32 * 1024 * 1024);
    let (body, calls) = common::counted_body(&blob);
    let started = Instant::now();
    let error =
        client.upload_blob(&reference(&server, "test/app:v1"), &blob_descriptor(&blob), body).await.unwrap_err();
    assert!(error.is_network(), "{error:?}");
    assert!(error.to_string().contains("the registry took no data"), "{error}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

/// distribution 2.8 (Debian's) lists every tag at once; registries that
/// paginate (distribution 3, Harbor, GHCR) send `Link` headers, followed to
/// the end here, and a `Link` back to a page already read is an error.
#[tokio::test]
async fn tags_list_follows_link_pagination_to_the_end() {
    let pages: Vec<(&str, &str, Option<&str>)> = vec![
        (
            "/v2/test/app/tags/list?n=2",
            r#"{"name":"test/app","tags":["a","b"]}"#,
            Some("/v2/test/app/tags/list?n=2&last=b"),
        ),
        (
            "/v2/test/app/tags/list?n=2&last=b",
            r#"{"name":"test/app","tags":["c","d"]}"#,
            Some("/v2/test/app/tags/list?n=2&last=d"),
        ),
        ("/v2/test/app/tags/list?n=2&last=d", r#"{"name":"test/app","tags":["e"]}"#, None),
        ("/v2/loop/app/tags/list", r#"{"name":"loop/app","tags":["x"]}"#, Some("/v2/loop/app/tags/list?last=x")),
        ("/v2/loop/app/tags/list?last=x", r#"{"name":"loop/app","tags":null}"#, Some("/v2/loop/app/tags/list?last=x")),
    ];
    let server = Scripted::start("127.0.0.1", move |request| {
        if request.target == "/v2/" {
            return Action::ok(b"{}");
        }
        match pages.iter().find(|(target, _, _)| *target == request.target) {
            Some((_, body, next)) => {
                let action = Action::ok(body.as_bytes()).with_header("Content-Type", "application/json");
                match next {
                    Some(next) => action.with_header("Link", &format!("<{next}>; rel=\"next\"")),
                    None => action,
                }
            }
            None => Action::status(404),
        }
    });
    let client = RegistryClient::new(options()).unwrap();
    let tags = client.list_tags(&server.host(), "test/app", Some(2)).await.unwrap();
    assert_eq!(tags, ["a", "b", "c", "d", "e"]);
    let error = client.list_tags(&server.host(), "loop/app", None).await.unwrap_err();
    assert!(error.to_string().contains("points back at a page"), "{error}");
}

#[tokio::test]
async fn a_failure_from_a_redirect_target_names_that_host_not_the_registry() {
    let blob = Rng::new(9).bytes(1000);
    // Object storage that has lost the blob, answering as S3 does.
    let storage = Scripted::start("127.0.0.2", |_| Action::Respond {
        status: 404,
        headers: Vec::new(),
        body: b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>".to_vec(),
    });
    let storage_url = format!("http://{}/bucket/blob?X-Amz-Signature=secret", storage.addr);
    let registry = Scripted::start("127.0.0.1", move |request| match request.path() {
        "/v2/" => Action::status(200),
        path if path.starts_with("/v2/test/app/blobs/") => Action::status(307).with_header("Location", &storage_url),
        _ => Action::status(404),
    });
    let client = RegistryClient::new(options()).unwrap();
    let error = fetch_blob(&client, &registry, &blob).await.unwrap_err();
    let text = error.to_string();
    assert!(error.is_not_found() && error.status() == Some(404), "{error:?}");
    let storage_host = storage.addr.to_string();
    assert!(text.contains(&format!("redirected the request to {storage_host}, which answered HTTP 404")), "{text}");
    assert!(text.contains(&format!("registry {}", registry.host())), "{text}");
    assert!(!text.contains("Signature") && !text.contains("secret"), "{text}");
    assert!(!text.contains("was not found on registry"), "the registry is blamed: {text}");
}

#[tokio::test]
async fn a_consumer_that_pauses_is_not_taken_for_a_slow_registry() {
    let blob = Rng::new(12).bytes(4 * 1024 * 1024);
    let served = blob.clone();
    let server = Scripted::start("127.0.0.1", move |request| match request.path() {
        "/v2/" => Action::status(200),
        _ => Action::ok(&served),
    });
    // A demanding rate: 3 MB in every 300 ms spent waiting for the registry.
    let options = options().with_stall_timeout(Duration::from_millis(300)).with_min_transfer_rate(10_000_000);
    let client = RegistryClient::new(options).unwrap();
    let descriptor = blob_descriptor(&blob);
    let mut stream = client.get_blob(&reference(&server, "test/app:v1"), &descriptor).await.unwrap();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        if body.is_empty() {
            // The disk is busy: the registry waits on us, not we on it.
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        body.extend_from_slice(&chunk.map_err(common::registry_error).unwrap());
    }
    assert!(body == blob, "the blob came back different");
    assert_eq!(server.count(&format!("/v2/test/app/blobs/{}", descriptor.digest)), 1, "the body was resumed");
}
