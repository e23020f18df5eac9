//! The client against a real distribution registry (`docker-registry`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestImage, TokenServer};
use futures_util::StreamExt as _;
use hpn_oci::{Descriptor, Digest, media_type};
use hpn_registry::{ClientOptions, Credentials, RegistryClient, RegistryError, RetryPolicy, SizeProblem};
use hpn_testkit::http::basic_authorization;
use hpn_testkit::{Registry, TokenSigner};

fn client(credentials: Credentials) -> RegistryClient {
    RegistryClient::new(ClientOptions::default().with_credentials(credentials).with_retry(RetryPolicy::new(
        3,
        Duration::from_millis(20),
        Duration::from_millis(200),
    )))
    .unwrap()
}

fn credentials_for(registry: &str, username: &str, password: &str) -> Credentials {
    let mut credentials = Credentials::default();
    credentials.insert(registry, username, password);
    credentials
}

async fn collect(
    client: &RegistryClient,
    registry: &Registry,
    repository: &str,
    descriptor: &Descriptor,
) -> Result<(Vec<u8>, usize), RegistryError> {
    let reference = registry.oci_reference(&format!("{repository}:unused"));
    let mut stream = client.get_blob(&reference, descriptor).await?;
    let (mut body, mut chunks) = (Vec::new(), 0);
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.map_err(common::registry_error)?);
        chunks += 1;
    }
    Ok((body, chunks))
}

#[tokio::test]
async fn manifests_by_tag_and_digest_and_head() {
    let registry = Registry::start().unwrap();
    let image = TestImage::build(1, 64 * 1024);
    image.push(&registry, "test/app", "v1", None);
    let client = client(Credentials::default());
    client.ping(registry.addr()).await.unwrap();

    let by_tag = client.get_manifest(&registry.oci_reference("test/app:v1")).await.unwrap();
    assert_eq!(by_tag.bytes, image.manifest);
    assert_eq!(by_tag.digest, image.manifest_digest());
    assert_eq!(by_tag.media_type, media_type::OCI_MANIFEST);

    let by_digest =
        client.get_manifest(&registry.oci_reference(&format!("test/app@{}", image.manifest_digest()))).await.unwrap();
    assert_eq!(by_digest, by_tag);

    let head = client.head_manifest(&registry.oci_reference("test/app:v1")).await.unwrap().expect("the tag exists");
    assert_eq!(head.digest, image.manifest_digest());
    assert_eq!(head.size, image.manifest.len() as u64);
    assert_eq!(head.media_type, media_type::OCI_MANIFEST);

    assert_eq!(client.head_manifest(&registry.oci_reference("test/app:nope")).await.unwrap(), None);
    assert_eq!(client.head_manifest(&registry.oci_reference("test/none:v1")).await.unwrap(), None);

    assert_eq!(
        client.head_blob(&registry.oci_reference("test/app:v1"), &Digest::of(&image.layer)).await.unwrap(),
        Some(image.layer.len() as u64)
    );
    assert_eq!(client.head_blob(&registry.oci_reference("test/app:v1"), &Digest::of(b"absent")).await.unwrap(), None);
}

#[tokio::test]
async fn unknown_tags_repositories_and_blobs_are_not_found_with_a_useful_message() {
    let registry = Registry::start().unwrap();
    TestImage::build(2, 1024).push(&registry, "test/app", "v1", None);
    let client = client(Credentials::default());

    let error = client.get_manifest(&registry.oci_reference("test/app:nope")).await.unwrap_err();
    assert!(error.is_not_found() && !error.is_network() && !error.is_auth(), "{error:?}");
    let message = error.to_string();
    for part in [registry.addr(), "test/app", "nope", "404", "MANIFEST_UNKNOWN", "check the image name and tag"] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }

    let error = client.get_manifest(&registry.oci_reference("no/such-repo:v1")).await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    let message = error.to_string();
    // distribution 2.8 answers MANIFEST_UNKNOWN here; others say NAME_UNKNOWN.
    assert!(
        message.contains("no/such-repo:v1") && message.contains(registry.addr()) && message.contains("404"),
        "{message}"
    );

    let missing = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::of(b"missing"), 7);
    let error = collect(&client, &registry, "test/app", &missing).await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    assert!(error.to_string().contains(&Digest::of(b"missing").to_string()), "{error}");
}

#[tokio::test]
async fn blobs_stream_in_chunks_and_sizes_are_enforced() {
    let registry = Registry::start().unwrap();
    let image = TestImage::build(3, 600 * 1024);
    image.push(&registry, "test/app", "v1", None);
    let client = client(Credentials::default());

    let descriptor = image.layer_descriptor();
    let (body, chunks) = collect(&client, &registry, "test/app", &descriptor).await.unwrap();
    assert_eq!(body, image.layer);
    assert!(chunks > 1, "a {} byte body came in {chunks} chunk(s)", body.len());

    // The registry announces the real length, which disagrees with a wrong descriptor.
    let mut too_big = descriptor.clone();
    too_big.size += 10;
    let error = collect(&client, &registry, "test/app", &too_big).await.unwrap_err();
    assert!(
        matches!(error, RegistryError::SizeMismatch { actual: SizeProblem::Announced(n), .. } if n == descriptor.size),
        "{error:?}"
    );
    assert!(error.to_string().contains(&descriptor.digest.to_string()), "{error}");
}

#[tokio::test]
async fn open_blob_bodies_count_against_the_per_host_limit() {
    let registry = Registry::start().unwrap();
    let image = TestImage::build(4, 32 * 1024);
    image.push(&registry, "test/app", "v1", None);
    let client = RegistryClient::new(ClientOptions::default().with_max_requests_per_host(1)).unwrap();
    let reference = registry.oci_reference("test/app:v1");

    let open = client.get_blob(&reference, &image.layer_descriptor()).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(500), client.get_manifest(&reference)).await;
    assert!(waiting.is_err(), "a second request went out while the only slot was held by an open blob");
    drop(open);
    let fetched =
        tokio::time::timeout(Duration::from_secs(10), client.get_manifest(&reference)).await.unwrap().unwrap();
    assert_eq!(fetched.bytes, image.manifest);
}

#[tokio::test]
async fn basic_auth_with_htpasswd() {
    let registry = Registry::start_with_htpasswd("alice", "s3cret-pass").unwrap();
    let image = TestImage::build(5, 8 * 1024);
    image.push(&registry, "private/app", "v1", Some(&basic_authorization("alice", "s3cret-pass")));
    let reference = registry.oci_reference("private/app:v1");

    let good = client(credentials_for(registry.addr(), "alice", "s3cret-pass"));
    good.ping(registry.addr()).await.unwrap();
    assert_eq!(good.get_manifest(&reference).await.unwrap().bytes, image.manifest);
    let (layer, _) = collect(&good, &registry, "private/app", &image.layer_descriptor()).await.unwrap();
    assert_eq!(layer, image.layer);

    let wrong = client(credentials_for(registry.addr(), "alice", "wrong-password"));
    let error = wrong.get_manifest(&reference).await.unwrap_err();
    assert!(error.is_auth() && !error.is_not_found(), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("401")
            && message.contains("refused the credentials configured for it")
            && error.status() == Some(401),
        "{message}"
    );
    assert!(!message.contains("wrong-password") && !format!("{error:?}").contains("wrong-password"), "{message}");
    assert!(wrong.ping(registry.addr()).await.unwrap_err().is_auth());

    let anonymous = client(Credentials::default());
    let error = anonymous.get_manifest(&reference).await.unwrap_err();
    assert!(error.is_auth(), "{error:?}");
    assert!(error.to_string().contains("no credentials are configured for this registry"), "{error}");
}

#[tokio::test]
async fn bearer_token_auth_against_the_real_registry() {
    let signer = Arc::new(TokenSigner::generate().unwrap());
    // The first token is expired though it claims five minutes: the registry
    // refuses it and the client must fetch a fresh one once.
    let tokens = TokenServer::start(signer.clone(), "alice", "token-pass", true);
    let registry = Registry::builder().token_auth(&tokens.realm(), &signer).start().unwrap();
    let image = TestImage::build(6, 16 * 1024);
    let push_token = signer.token(Some("team/app"), &["pull", "push"], 300);
    image.push(&registry, "team/app", "v1", Some(&format!("Bearer {push_token}")));
    let reference = registry.oci_reference("team/app:v1");

    let good = client(credentials_for(registry.addr(), "alice", "token-pass"));
    assert_eq!(good.get_manifest(&reference).await.unwrap().bytes, image.manifest);
    assert_eq!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst), 2, "expired token, then a fresh one");
    let head = good.head_manifest(&reference).await.unwrap().unwrap();
    assert_eq!(head.digest, image.manifest_digest());
    let (layer, _) = collect(&good, &registry, "team/app", &image.layer_descriptor()).await.unwrap();
    assert_eq!(layer, image.layer);
    assert_eq!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst), 2, "the fresh token is reused");

    let requests = tokens.seen();
    let last = requests.last().unwrap();
    assert!(last.target.contains("scope=repository%3Ateam%2Fapp%3Apull"), "{}", last.target);
    assert!(last.target.contains("service=hpn-test-registry"), "{}", last.target);
    assert_eq!(last.header("authorization"), Some(basic_authorization("alice", "token-pass").as_str()));

    let wrong = client(credentials_for(registry.addr(), "alice", "nope"));
    let error = wrong.get_manifest(&reference).await.unwrap_err();
    assert!(error.is_auth(), "{error:?}");
    assert!(error.to_string().contains("incorrect username or password"), "{error}");

    // Anonymous tokens carry no access: after one fresh token the 401 stands.
    let anonymous = client(Credentials::default());
    let error = anonymous.get_manifest(&reference).await.unwrap_err();
    assert!(error.is_auth(), "{error:?}");
    assert!(error.to_string().contains("team/app"), "{error}");
}
