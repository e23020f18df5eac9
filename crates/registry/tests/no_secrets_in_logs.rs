//! Tracing output, at every level and from every crate below (reqwest,
//! hyper), must not carry passwords, tokens, Authorization headers or
//! pre-signed redirect URLs. In its own test binary: the subscriber is global.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Action, Scripted};
use futures_util::StreamExt as _;
use hpn_oci::{Descriptor, Digest, media_type};
use hpn_registry::{ClientOptions, Credentials, RegistryClient, RetryPolicy, body_from_bytes};
use hpn_testkit::Rng;
use hpn_testkit::http::basic_authorization;

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;

/// Collects formatted tracing output.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tracing_output_at_every_level_carries_no_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Global, in a binary of its own: tracing caches callsite interest
    // process-wide, so a thread-local subscriber races with other tests.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let blob = Rng::new(12).bytes(10_000);
    let served = blob.clone();
    let storage = Scripted::start("127.0.0.2", move |_| Action::ok(&served));
    let storage_url = format!("http://{}/bucket/blob?X-Amz-Signature=presigned-SECRET", storage.addr);
    let tokens = Scripted::start("127.0.0.1", |_| Action::ok(br#"{"token":"token-SECRET-value"}"#));
    let realm = format!("http://{}/token", tokens.addr);
    let registry =
        Scripted::start("127.0.0.1", move |request| match (request.path(), request.header("authorization")) {
            (_, None) => {
                Action::status(401).with_header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}",service="s""#))
            }
            ("/v2/test/app/manifests/v1", Some(_)) => {
                Action::ok(MANIFEST).with_header("Content-Type", media_type::OCI_MANIFEST)
            }
            ("/v2/test/app/manifests/missing", Some(_)) => Action::status(404),
            ("/v2/test/app/blobs/uploads/", Some(_)) => {
                Action::status(202).with_header("Location", "/v2/test/app/blobs/uploads/u1?_state=upload-SECRET-state")
            }
            ("/v2/test/app/blobs/uploads/u1", Some(_)) => Action::Respond {
                status: 400,
                headers: Vec::new(),
                body: br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match"}]}"#.to_vec(),
            },
            (_, Some(_)) => Action::status(307).with_header("Location", &storage_url),
        });
    let mut credentials = Credentials::default();
    credentials.insert(&registry.host(), "alice", "password-SECRET");
    let client =
        RegistryClient::new(ClientOptions::default().with_credentials(credentials).with_retry(RetryPolicy::new(
            2,
            Duration::from_millis(10),
            Duration::from_millis(20),
        )))
        .unwrap();
    let app = |rest: &str| format!("{}/test/app{rest}", registry.host()).parse().unwrap();
    let fetched = client.get_manifest(&app(":v1")).await.unwrap();
    assert_eq!(fetched.bytes, MANIFEST);
    let descriptor = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::of(&blob), blob.len() as u64);
    let mut stream = client.get_blob(&app(":v1"), &descriptor).await.unwrap();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(body, blob);
    // A failing request too: errors are formatted into events as well.
    let error = client.get_manifest(&app(":missing")).await.unwrap_err();
    tracing::debug!("failed: {error}");
    tracing::debug!("client state: {client:?}");
    // An upload into a session whose URL carries the registry's state.
    let pushed = Rng::new(13).bytes(3000);
    let descriptor = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::of(&pushed), pushed.len() as u64);
    let error = client.upload_blob(&app(":v1"), &descriptor, body_from_bytes(pushed.into())).await.unwrap_err();
    assert!(error.to_string().contains("DIGEST_INVALID"), "{error}");
    tracing::debug!("failed: {error} / {error:?}");

    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(output.contains("registry request"), "our own events are missing: {output}");
    assert!(output.contains("hyper"), "the HTTP stack's events are missing: {output}");
    assert!(output.contains("/v2/test/app/blobs/uploads/u1"), "the upload's requests are missing: {output}");
    let basic = basic_authorization("alice", "password-SECRET");
    for secret in ["SECRET", basic.trim_start_matches("Basic "), "X-Amz-Signature"] {
        assert!(!output.contains(secret), "{secret:?} leaked into tracing output:\n{output}");
    }
}
