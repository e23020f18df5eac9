//! The Rust `oci-client` crate, an independent registry client, against `hpn serve` of a real
//! store: manifest and blob pulls (it checks digests), tags with pagination, referrers.
//! (oci-client has no catalog call; the CLI tests page through `_catalog` with curl.) And the
//! referrers of images hpn pulled from a real registry, signatures and SBOMs attached.

use std::sync::Arc;

use hpn_oci::{Descriptor, Digest, media_type};
use hpn_registry::{ClientOptions, RegistryClient};
use hpn_serve::{ServeOptions, Server, Source};
use hpn_store::Store;
use hpn_testkit::Registry;
use hpn_testkit::fixtures::attachments::{AttachedKind, SPDX, SigningKey, Subject, attach};
use hpn_testkit::fixtures::{self, Scale};
use hpn_transfer::{
    Concurrency, CopyJob, Engine, EngineOptions, NoReport, PlatformChoice, RegistrySource, StoreDestination,
};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

const SIGNATURE_TYPE: &str = "application/vnd.example.signature";

/// A stored image: a config, a 300 KB layer, the manifest, five tags, and a signature whose
/// `subject` is the manifest. Returns (manifest, layer, signature) descriptors.
fn fill(store: &Store) -> (Descriptor, Descriptor, Descriptor) {
    let put = |media_type: &str, bytes: &[u8]| {
        let descriptor = Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64);
        store.put_blob_bytes(&descriptor, bytes).unwrap();
        descriptor
    };
    let layer_bytes: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let layer = put(media_type::OCI_LAYER, &layer_bytes);
    let config = put(
        media_type::OCI_CONFIG,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let manifest_json = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST, "config": config, "layers": [layer],
    });
    let manifest = put(media_type::OCI_MANIFEST, manifest_json.to_string().as_bytes());
    let empty = put("application/vnd.oci.empty.v1+json", b"{}");
    let signature_json = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST, "artifactType": SIGNATURE_TYPE,
        "config": empty, "layers": [], "subject": manifest,
    });
    let signature = put(media_type::OCI_MANIFEST, signature_json.to_string().as_bytes());
    let mut refs: Vec<(String, &Descriptor)> = ["t1", "t2", "t3", "t4", "t5"]
        .iter()
        .map(|tag| (format!("registry.example:5000/team/app:{tag}"), &manifest))
        .collect();
    refs.push(("registry.example:5000/team/app:signature".to_owned(), &signature));
    let refs: Vec<(&str, &Descriptor)> = refs.iter().map(|(name, descriptor)| (name.as_str(), *descriptor)).collect();
    store.set_refs(&refs).unwrap();
    (manifest, layer, signature)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pulls_lists_tags_page_by_page_and_finds_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, layer, signature) = fill(&Store::open(dir.path()).unwrap());
    let server =
        Server::bind(Source::Store(dir.path().to_owned()), "127.0.0.1:0".parse().unwrap(), ServeOptions::default())
            .await
            .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let client = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..ClientConfig::default() });
    let auth = RegistryAuth::Anonymous;
    let image: Reference = format!("{addr}/team/app:t1").parse().unwrap();

    let (bytes, digest) = client.pull_manifest_raw(&image, &auth, &[media_type::OCI_MANIFEST]).await.unwrap();
    assert_eq!(digest, manifest.digest.to_string());
    assert_eq!(Digest::of(&bytes), manifest.digest);
    let mut blob = Vec::new();
    client.pull_blob(&image, layer.digest.to_string().as_str(), &mut blob).await.unwrap();
    assert_eq!((Digest::of(&blob), blob.len() as u64), (layer.digest.clone(), layer.size));

    let mut tags = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = client.list_tags(&image, &auth, Some(2), last.as_deref()).await.unwrap();
        assert_eq!(page.name, "team/app");
        assert!(page.tags.len() <= 2);
        let Some(final_tag) = page.tags.last().cloned() else { break };
        tags.extend(page.tags);
        last = Some(final_tag);
    }
    assert_eq!(tags, ["signature", "t1", "t2", "t3", "t4", "t5"]);

    let pinned = Reference::with_digest(addr.to_string(), "team/app".to_owned(), manifest.digest.to_string());
    let all = client.pull_referrers(&pinned, None).await.unwrap();
    assert_eq!(
        all.manifests.iter().map(|entry| entry.digest.clone()).collect::<Vec<_>>(),
        [signature.digest.to_string()]
    );
    let signatures = client.pull_referrers(&pinned, Some(SIGNATURE_TYPE)).await.unwrap();
    assert_eq!(signatures.manifests.len(), 1);
    let others = client.pull_referrers(&pinned, Some("application/other")).await.unwrap();
    assert!(others.manifests.is_empty());

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// `hpn serve` of a store that hpn's engine pulled from a registry holding an index with an SBOM
/// and an attestation (OCI 1.1 referrers, which distribution 2.8 lists only in the fallback
/// index): oci-client's referrers call finds both, filters them by artifact type, and finds
/// nothing for a manifest nothing refers to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_finds_the_referrers_of_a_pulled_image() {
    let registry = Registry::start().unwrap();
    let set = fixtures::build(Scale::Small).unwrap();
    let pushed = fixtures::push_images_to(&set, &registry, &["multi"]).unwrap();
    let multi = pushed.image("multi");
    let key = SigningKey::generate().unwrap();
    let subject = Subject { media_type: multi.media_type.clone(), digest: multi.digest.clone(), size: multi.size };
    let attached = attach(&registry, &multi.repository, &subject, &key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let options = EngineOptions::new(PlatformChoice::All, &Concurrency::default());
    let engine = Engine::new(
        Arc::new(RegistrySource::new(client)),
        Arc::new(StoreDestination::new(Arc::clone(&store))),
        options,
        Arc::new(NoReport),
    );
    let outcome = engine.copy_all(&CopyJob::same_names([multi.reference.parse().unwrap()])).await;
    assert_eq!(outcome[0].as_ref().unwrap().attachments.len(), attached.len());
    drop(engine);

    let server =
        Server::bind(Source::Store(dir.path().to_owned()), "127.0.0.1:0".parse().unwrap(), ServeOptions::default())
            .await
            .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..ClientConfig::default() });
    let pinned = Reference::with_digest(addr.to_string(), multi.repository.clone(), multi.digest.clone());
    let mut listed: Vec<String> =
        client.pull_referrers(&pinned, None).await.unwrap().manifests.into_iter().map(|entry| entry.digest).collect();
    listed.sort();
    let mut expected: Vec<String> = attached
        .iter()
        .filter(|one| matches!(one.kind, AttachedKind::Sbom | AttachedKind::Attestation))
        .map(|one| one.digest.clone())
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    let sboms = client.pull_referrers(&pinned, Some(SPDX)).await.unwrap();
    assert_eq!(sboms.manifests.len(), 1);
    let platform =
        Reference::with_digest(addr.to_string(), multi.repository.clone(), multi.platforms[1].manifest.digest.clone());
    assert!(client.pull_referrers(&platform, None).await.unwrap().manifests.is_empty());

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
