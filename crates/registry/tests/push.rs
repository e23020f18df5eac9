//! The write side against a real distribution registry (`docker-registry`):
//! blob uploads small and large, manifests, mounts, auth, and what the
//! registry says when the content is wrong.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{TestImage, TokenServer, counted_body};
use futures_util::StreamExt as _;
use hpn_oci::{Descriptor, Digest, media_type};
use hpn_registry::{
    BodyFactory, ClientOptions, Credentials, MountOutcome, RegistryClient, RegistryError, RetryPolicy, UploadStream,
    body_from_bytes,
};
use hpn_testkit::{Registry, Rng, TokenSigner};

fn client_with(credentials: Credentials, max_requests_per_host: usize) -> RegistryClient {
    RegistryClient::new(
        ClientOptions::default()
            .with_credentials(credentials)
            .with_retry(RetryPolicy::new(3, Duration::from_millis(20), Duration::from_millis(200)))
            .with_max_requests_per_host(max_requests_per_host),
    )
    .unwrap()
}

fn client(credentials: Credentials) -> RegistryClient {
    client_with(credentials, 6)
}

fn credentials_for(registry: &str, username: &str, password: &str) -> Credentials {
    let mut credentials = Credentials::default();
    credentials.insert(registry, username, password);
    credentials
}

fn descriptor(media_type: &str, blob: &[u8]) -> Descriptor {
    Descriptor::new(media_type, Digest::of(blob), blob.len() as u64)
}

/// A Docker schema2 manifest for the image's config and layer.
fn schema2_manifest(image: &TestImage) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":{},"digest":"{}"}},"layers":[{{"mediaType":"{}","size":{},"digest":"{}"}}]}}"#,
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_CONFIG,
        image.config.len(),
        Digest::of(&image.config),
        media_type::DOCKER_LAYER_GZIP,
        image.layer.len(),
        Digest::of(&image.layer),
    )
    .into_bytes()
}

/// Uploads the image's config and layer to `repository`.
async fn upload_image_blobs(client: &RegistryClient, registry: &Registry, repository: &str, image: &TestImage) {
    let target = registry.oci_reference(&format!("{repository}:unused"));
    for (blob, kind) in [(&image.config, media_type::OCI_CONFIG), (&image.layer, media_type::OCI_LAYER_GZIP)] {
        let (body, calls) = counted_body(blob);
        client.upload_blob(&target, &descriptor(kind, blob), body).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

async fn skopeo_digest(reference: &str) -> String {
    let output = tokio::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .await
        .expect("skopeo must be installed");
    assert!(output.status.success(), "skopeo inspect {reference}: {}", String::from_utf8_lossy(&output.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    inspected["Digest"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn small_and_large_blobs_and_both_manifest_kinds_round_trip() {
    let registry = Registry::start().unwrap();
    let client = client(Credentials::default());
    // A 5 MB layer takes the streamed path, the config the in-memory one.
    let image = TestImage::build(21, 5_000_000);
    assert!(image.layer.len() > 4_000_000 && image.config.len() < 1024);
    let target = registry.oci_reference("test/app:v1");
    let (config_digest, layer_digest) = (Digest::of(&image.config), Digest::of(&image.layer));

    assert!(!client.blob_exists(&target, &config_digest).await.unwrap());
    assert!(!client.blob_exists(&target, &layer_digest).await.unwrap());
    upload_image_blobs(&client, &registry, "test/app", &image).await;
    assert!(client.blob_exists(&target, &config_digest).await.unwrap());
    assert!(client.blob_exists(&target, &layer_digest).await.unwrap());

    let mut stream = client.get_blob(&target, &image.layer_descriptor()).await.unwrap();
    let mut layer = Vec::new();
    while let Some(chunk) = stream.next().await {
        layer.extend_from_slice(&chunk.unwrap());
    }
    assert!(layer == image.layer, "the layer read back differs");

    let schema2 = schema2_manifest(&image);
    for (tag, bytes, kind) in [
        ("v2", schema2.clone(), media_type::DOCKER_MANIFEST),
        ("oci", image.manifest.clone(), media_type::OCI_MANIFEST),
    ] {
        let reference = registry.oci_reference(&format!("test/app:{tag}"));
        let digest = client.put_manifest(&reference, Bytes::from(bytes.clone()), kind).await.unwrap();
        assert_eq!(digest, Digest::of(&bytes));

        let by_tag = client.get_manifest(&registry.oci_reference(&format!("test/app:{tag}"))).await.unwrap();
        assert_eq!((&by_tag.bytes[..], by_tag.media_type.as_str()), (bytes.as_slice(), kind));
        let by_digest = client.get_manifest(&registry.oci_reference(&format!("test/app@{digest}"))).await.unwrap();
        assert_eq!(by_digest.bytes, bytes);
        assert_eq!(skopeo_digest(&format!("{}/test/app:{tag}", registry.addr())).await, digest.to_string());
    }

    // By digest only: the manifest lands under its digest in another repository.
    upload_image_blobs(&client, &registry, "test/bydigest", &image).await;
    let by_digest = registry.oci_reference(&format!("test/bydigest@{}", Digest::of(&schema2)));
    let digest =
        client.put_manifest(&by_digest, Bytes::from(schema2.clone()), media_type::DOCKER_MANIFEST).await.unwrap();
    assert_eq!(digest, Digest::of(&schema2));
    assert_eq!(client.get_manifest(&by_digest).await.unwrap().bytes, schema2);
}

#[tokio::test]
async fn mounts_link_blobs_and_fall_back_to_uploads() {
    let registry = Registry::start().unwrap();
    let client = client(Credentials::default());
    let image = TestImage::build(22, 2_000_000);
    upload_image_blobs(&client, &registry, "team/a", &image).await;

    let b = registry.oci_reference("team/b:v1");
    for blob in [&image.config, &image.layer] {
        assert!(!client.blob_exists(&b, &Digest::of(blob)).await.unwrap());
        assert_eq!(client.mount_blob(&b, &Digest::of(blob), "team/a").await.unwrap(), MountOutcome::Mounted);
        assert!(client.blob_exists(&b, &Digest::of(blob)).await.unwrap());
    }
    // B's manifest can reference the mounted blobs.
    let digest = client.put_manifest(&b, Bytes::from(image.manifest.clone()), media_type::OCI_MANIFEST).await.unwrap();
    assert_eq!(client.get_manifest(&b).await.unwrap().digest, digest);

    // team/c lacks the layer (it exists elsewhere in the registry): no
    // mount, and the upload that follows (in the session the mount opened) works.
    let d = registry.oci_reference("team/d:v1");
    let layer = Digest::of(&image.layer);
    assert_eq!(client.mount_blob(&d, &layer, "team/c").await.unwrap(), MountOutcome::NotMounted);
    assert!(!client.blob_exists(&d, &layer).await.unwrap());
    let (body, calls) = counted_body(&image.layer);
    client.upload_blob(&d, &image.layer_descriptor(), body).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(client.blob_exists(&d, &layer).await.unwrap());

    // The same for a small blob nobody has.
    let fresh = Rng::new(23).bytes(1000);
    assert_eq!(client.mount_blob(&d, &Digest::of(&fresh), "team/a").await.unwrap(), MountOutcome::NotMounted);
    client
        .upload_blob(&d, &descriptor(media_type::OCI_CONFIG, &fresh), body_from_bytes(fresh.clone().into()))
        .await
        .unwrap();
    assert!(client.blob_exists(&d, &Digest::of(&fresh)).await.unwrap());
}

#[tokio::test]
async fn pushing_with_htpasswd_basic_auth() {
    let registry = Registry::start_with_htpasswd("alice", "push-pass").unwrap();
    let image = TestImage::build(24, 1_500_000);
    let target = registry.oci_reference("private/app:v1");

    let good = client(credentials_for(registry.addr(), "alice", "push-pass"));
    upload_image_blobs(&good, &registry, "private/app", &image).await;
    good.put_manifest(&target, Bytes::from(image.manifest.clone()), media_type::OCI_MANIFEST).await.unwrap();
    assert_eq!(good.get_manifest(&target).await.unwrap().bytes, image.manifest);

    let other = Rng::new(25).bytes(2_000_000);
    let other_descriptor = descriptor(media_type::OCI_LAYER_GZIP, &other);
    for (client, secret) in [
        (client(credentials_for(registry.addr(), "alice", "wrong-password")), Some("wrong-password")),
        (client(Credentials::default()), None),
    ] {
        let (body, _) = counted_body(&other);
        let error = client.upload_blob(&target, &other_descriptor, body).await.unwrap_err();
        assert!(matches!(error, RegistryError::Unauthorized { .. }), "{error:?}");
        let message = error.to_string();

        assert!(message.contains("private/app") && message.contains("may push"), "{message}");
        if let Some(secret) = secret {
            assert!(!message.contains(secret) && !format!("{error:?}").contains(secret), "{message}");
        }
        let error = client.put_manifest(&target, Bytes::from(image.manifest.clone()), media_type::OCI_MANIFEST).await;
        assert!(error.unwrap_err().is_auth());
    }
    assert!(!good.blob_exists(&target, &other_descriptor.digest).await.unwrap());
}

#[tokio::test]
async fn pushing_with_bearer_tokens_needs_pull_and_push() {
    let signer = Arc::new(TokenSigner::generate().unwrap());
    let tokens = TokenServer::start_with_users(
        signer.clone(),
        &[("alice", "alice-pass", &["pull", "push"]), ("bob", "bob-pass", &["pull"])],
        false,
    );
    let registry = Registry::builder().token_auth(&tokens.realm(), &signer).start().unwrap();
    let image = TestImage::build(26, 1_200_000);
    let target = registry.oci_reference("team/app:v1");

    let alice = client(credentials_for(registry.addr(), "alice", "alice-pass"));
    assert!(!alice.blob_exists(&target, &Digest::of(&image.layer)).await.unwrap());
    upload_image_blobs(&alice, &registry, "team/app", &image).await;
    alice.put_manifest(&target, Bytes::from(image.manifest.clone()), media_type::OCI_MANIFEST).await.unwrap();
    assert!(alice.blob_exists(&target, &Digest::of(&image.layer)).await.unwrap());
    // One pull,push token served the checks, the uploads and the manifest.
    assert_eq!(tokens.issued.load(Ordering::SeqCst), 1);
    let first = &tokens.seen()[0];
    assert!(first.target.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush"), "{}", first.target);

    // A mount needs push on the target and pull on the source in one token.
    let other = registry.oci_reference("team/other:v1");
    let mounted = alice.mount_blob(&other, &Digest::of(&image.layer), "team/app").await.unwrap();
    assert_eq!(mounted, MountOutcome::Mounted);
    let both = tokens.seen().into_iter().any(|seen| {
        seen.target.contains("scope=repository%3Ateam%2Fother%3Apull%2Cpush")
            && seen.target.contains("scope=repository%3Ateam%2Fapp%3Apull")
    });
    assert!(both, "no token request carried both scopes: {:?}", tokens.seen());

    // Bob may pull only.
    let bob = client(credentials_for(registry.addr(), "bob", "bob-pass"));
    assert!(bob.blob_exists(&target, &Digest::of(&image.layer)).await.unwrap());
    let fresh = Rng::new(27).bytes(300_000);
    let error = bob
        .upload_blob(&target, &descriptor(media_type::OCI_LAYER_GZIP, &fresh), body_from_bytes(fresh.clone().into()))
        .await
        .unwrap_err();
    // Logged in, but without the right: DENIED rather than "log in".
    assert!(matches!(error, RegistryError::Denied { status: 401, .. }), "{error:?}");
    let message = error.to_string();

    for part in [registry.addr(), "team/app", &Digest::of(&fresh).to_string(), "may push"] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    let error = bob.put_manifest(&target, Bytes::from(image.manifest.clone()), media_type::OCI_MANIFEST).await;
    assert!(error.unwrap_err().is_auth());
    let mount = bob.mount_blob(&registry.oci_reference("team/bob:v1"), &Digest::of(&image.layer), "team/app").await;
    assert_eq!(mount.unwrap(), MountOutcome::NotMounted);
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused_by_the_registry() {
    let registry = Registry::start().unwrap();
    let client = client(Credentials::default());
    let target = registry.oci_reference("test/app:v1");
    for size in [2000, 3_000_000] {
        let claimed = Rng::new(30).bytes(size);
        let sent = Rng::new(31).bytes(size);
        let (body, calls) = counted_body(&sent);
        let error = client.upload_blob(&target, &descriptor(media_type::OCI_LAYER_GZIP, &claimed), body).await;
        let error = error.unwrap_err();
        let message = error.to_string();

        assert!(matches!(error, RegistryError::Status { .. }), "{error:?}");
        assert!(message.contains("DIGEST_INVALID") && message.contains("does not match its digest"), "{message}");
        assert!(message.contains(&Digest::of(&claimed).to_string()) && message.contains("test/app"), "{message}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a content error is not retried");
        assert!(!client.blob_exists(&target, &Digest::of(&claimed)).await.unwrap());
        assert!(!client.blob_exists(&target, &Digest::of(&sent)).await.unwrap());
    }
}

fn failing_body(bytes: Vec<u8>, fail_after: usize) -> BodyFactory {
    Arc::new(move || {
        let head = Bytes::copy_from_slice(&bytes[..fail_after]);
        Box::pin(async move {
            let items: Vec<std::io::Result<Bytes>> =
                vec![Ok(head), Err(std::io::Error::other("the archive is truncated"))];
            Ok(Box::pin(futures_util::stream::iter(items)) as UploadStream)
        })
    })
}

#[tokio::test]
async fn bodies_of_the_wrong_size_or_failing_sources_are_never_committed() {
    let registry = Registry::start().unwrap();
    let client = client(Credentials::default());
    let target = registry.oci_reference("test/app:v1");
    for size in [5000, 2_500_000] {
        let blob = Rng::new(32).bytes(size);
        let wanted = descriptor(media_type::OCI_LAYER_GZIP, &blob);
        let cases: [(&[u8], &str); 2] =
            [(&blob[..size - 100], "ended after"), (&[&blob[..], b"extra"].concat(), "longer than")];
        for (body, problem) in cases {
            let (body, calls) = counted_body(body);
            let error = client.upload_blob(&target, &wanted, body).await.unwrap_err();
            assert!(matches!(error, RegistryError::Content { .. }), "{error:?}");
            assert!(
                error.to_string().contains(problem) && error.to_string().contains("nothing was committed"),
                "{error}"
            );
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
        let error = client.upload_blob(&target, &wanted, failing_body(blob.clone(), size / 2)).await.unwrap_err();
        assert!(matches!(error, RegistryError::Content { .. }), "{error:?}");
        assert!(error.to_string().contains("could not be read: the archive is truncated"), "{error}");

        let unopenable: BodyFactory = Arc::new(|| Box::pin(async { Err(std::io::Error::other("no such file")) }));
        let error = client.upload_blob(&target, &wanted, unopenable).await.unwrap_err();
        assert!(error.to_string().contains("cannot open the content to push: no such file"), "{error}");
        assert!(!client.blob_exists(&target, &wanted.digest).await.unwrap());
    }
}

#[tokio::test]
async fn manifests_needing_missing_blobs_or_with_another_digest_are_refused() {
    let registry = Registry::start().unwrap();
    let client = client(Credentials::default());
    let image = TestImage::build(33, 10_000);
    // Only the config is there; the layer is missing.
    let target = registry.oci_reference("test/app:v1");
    client
        .upload_blob(
            &target,
            &descriptor(media_type::OCI_CONFIG, &image.config),
            body_from_bytes(image.config.clone().into()),
        )
        .await
        .unwrap();
    let error =
        client.put_manifest(&target, Bytes::from(image.manifest.clone()), media_type::OCI_MANIFEST).await.unwrap_err();
    let message = error.to_string();

    assert!(
        message.contains("MANIFEST_BLOB_UNKNOWN") && message.contains("a blob the manifest needs is missing"),
        "{message}"
    );
    assert!(message.contains("test/app:v1") && message.contains(registry.addr()), "{message}");
    assert_eq!(client.head_manifest(&target).await.unwrap(), None);

    // A digest reference that is not the bytes' digest is refused before sending.
    let wrong = registry.oci_reference(&format!("test/app@{}", Digest::of(b"other")));
    let error =
        client.put_manifest(&wrong, Bytes::from(image.manifest.clone()), media_type::OCI_MANIFEST).await.unwrap_err();
    assert!(matches!(error, RegistryError::Content { .. }), "{error:?}");
    assert!(error.to_string().contains(&image.manifest_digest().to_string()), "{error}");
}

/// A slow body that records how many bodies are being sent at once.
fn watched_body(bytes: Vec<u8>, active: Arc<AtomicUsize>, peak: Arc<AtomicUsize>) -> BodyFactory {
    let bytes = Bytes::from(bytes);
    Arc::new(move || {
        let (bytes, active, peak) = (bytes.clone(), active.clone(), peak.clone());
        Box::pin(async move {
            let total = bytes.len();
            let stream = futures_util::stream::iter((0..total).step_by(64 * 1024)).then(move |start| {
                let (bytes, active, peak) = (bytes.clone(), active.clone(), peak.clone());
                async move {
                    if start == 0 {
                        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    let end = (start + 64 * 1024).min(total);
                    if end == total {
                        active.fetch_sub(1, Ordering::SeqCst);
                    }
                    Ok::<_, std::io::Error>(bytes.slice(start..end))
                }
            });
            Ok(Box::pin(stream) as UploadStream)
        })
    })
}

#[tokio::test]
async fn uploads_respect_the_per_host_limit() {
    let registry = Registry::start().unwrap();
    let target = registry.oci_reference("test/app:v1");
    let blobs: Vec<Vec<u8>> = (0..3).map(|seed| Rng::new(40 + seed).bytes(1_500_000)).collect();
    for (limit, expected_peak) in [(1, 1), (3, 3)] {
        let client = client_with(Credentials::default(), limit);
        let (active, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let uploads = blobs.iter().map(|blob| {
            let body = watched_body(blob.clone(), active.clone(), peak.clone());
            let descriptor = descriptor(media_type::OCI_LAYER_GZIP, blob);
            let (client, target) = (client.clone(), target.clone());
            async move { client.upload_blob(&target, &descriptor, body).await }
        });
        for result in futures_util::future::join_all(uploads).await {
            result.unwrap();
        }
        // With three slots all three go at once, so the limit is what held them back.
        assert_eq!(peak.load(Ordering::SeqCst), expected_peak, "limit {limit}");
        let fresh = registry.oci_reference(&format!("test/limit{limit}:v1"));
        for blob in &blobs {
            assert!(client.mount_blob(&fresh, &Digest::of(blob), "test/app").await.unwrap() == MountOutcome::Mounted);
        }
    }
}

#[tokio::test]
async fn waiting_for_an_upload_slot_is_not_a_stall() {
    let registry = Registry::start().unwrap();
    let target = registry.oci_reference("test/app:v1");
    let client = RegistryClient::new(
        ClientOptions::default().with_max_requests_per_host(1).with_stall_timeout(Duration::from_millis(400)),
    )
    .unwrap();
    // Each body takes about a second to send: the second upload waits that
    // long for the only slot, more than the stall timeout, without stalling.
    let blobs: Vec<Vec<u8>> = (0..2).map(|seed| Rng::new(60 + seed).bytes(1_600_000)).collect();
    let uploads = blobs.iter().map(|blob| {
        let bytes = Bytes::from(blob.clone());
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let body: BodyFactory = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let bytes = bytes.clone();
            Box::pin(async move {
                let total = bytes.len();
                let stream = futures_util::stream::iter((0..total).step_by(64 * 1024)).then(move |start| {
                    let bytes = bytes.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        Ok::<_, std::io::Error>(bytes.slice(start..(start + 64 * 1024).min(total)))
                    }
                });
                Ok(Box::pin(stream) as UploadStream)
            })
        });
        let descriptor = descriptor(media_type::OCI_LAYER_GZIP, blob);
        let (client, target) = (client.clone(), target.clone());
        async move {
            client.upload_blob(&target, &descriptor, body).await.unwrap();
            calls.load(Ordering::SeqCst)
        }
    });
    assert_eq!(futures_util::future::join_all(uploads).await, [1, 1], "an upload was retried");
}
