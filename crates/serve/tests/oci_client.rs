//! The Rust `oci-client` crate, an independent registry client, against `hpn serve` of a real
//! store: manifest and blob pulls (it checks digests), tags with pagination, referrers.
//! (oci-client has no catalog call; the CLI tests page through `_catalog` with curl.)

use hpn_oci::{Descriptor, Digest, media_type};
use hpn_serve::{ServeOptions, Server, Source};
use hpn_store::Store;
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
