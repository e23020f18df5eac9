use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hpn_fs::Durability;
use hpn_oci::closure::ClosureFault;
use hpn_oci::{Descriptor, Digest, annotation, media_type};
use hpn_store::{BlobRole, Inventory, Problem, Store, StoreError};

fn descriptor_of(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
}

/// Names in a directory that are not the store's own fixed files.
/// Temp files (and any other hidden file but the store's verified-stat records).
fn hidden_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') && name != ".hpn-verified" && name != ".hpn-uncompressed")
        .collect()
}

fn blob_names(store: &Store) -> BTreeSet<String> {
    fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A real image: a gzip layer holding one file, a config with its DiffID,
/// an OCI manifest. Returns (manifest descriptor, config bytes, layer bytes).
struct TestImage {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

impl TestImage {
    fn new(content: &[u8]) -> Self {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, "hello.txt", content).unwrap();
        let layer_tar = builder.into_inner().unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&layer_tar).unwrap();
        let layer = gzip.finish().unwrap();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            Digest::of(&layer_tar)
        )
        .into_bytes();
        let config_descriptor = descriptor_of(media_type::OCI_CONFIG, &config);
        let layer_descriptor = descriptor_of(media_type::OCI_LAYER_GZIP, &layer);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
            media_type::OCI_MANIFEST,
            serde_json::to_string(&config_descriptor).unwrap(),
            serde_json::to_string(&layer_descriptor).unwrap()
        )
        .into_bytes();
        Self { manifest, config, layer }
    }

    fn descriptor(&self) -> Descriptor {
        descriptor_of(media_type::OCI_MANIFEST, &self.manifest)
    }

    fn store_into(&self, store: &Store, name: &str) -> Descriptor {
        store.put_blob_bytes(&descriptor_of(media_type::OCI_LAYER_GZIP, &self.layer), &self.layer).unwrap();
        store.put_blob_bytes(&descriptor_of(media_type::OCI_CONFIG, &self.config), &self.config).unwrap();
        store.put_blob_bytes(&self.descriptor(), &self.manifest).unwrap();
        store.set_ref(name, &self.descriptor()).unwrap();
        self.descriptor()
    }
}

#[test]
fn open_creates_a_valid_empty_layout_and_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    let layout: serde_json::Value = serde_json::from_slice(&fs::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout, serde_json::json!({"imageLayoutVersion": "1.0.0"}));
    let index: serde_json::Value = serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index, serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []}));
    assert!(root.join("blobs/sha256").is_dir());
    assert!(store.refs().unwrap().is_empty());
    drop(store);
    Store::open(&root).unwrap();
}

#[test]
fn refuses_other_layout_versions_and_foreign_directories() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("oci-layout"), br#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
    let error = Store::open(dir.path()).unwrap_err();
    assert!(matches!(&error, StoreError::UnsupportedLayoutVersion { found, .. } if found == "2.0.0"), "{error}");
    assert!(error.to_string().contains("--store"), "{error}");

    let documents = tempfile::tempdir().unwrap();
    fs::write(documents.path().join("thesis.odt"), b"precious").unwrap();
    let error = Store::open(documents.path()).unwrap_err();
    assert!(matches!(error, StoreError::InvalidLayout { .. }), "{error}");
    assert!(!documents.path().join("index.json").exists() && !documents.path().join("blobs").exists());
}

#[test]
fn streamed_blob_commits_under_its_digest_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Larger than the writer's buffer, written in uneven chunks.
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = Digest::of(&data);
    let mut writer = store.begin_blob(&digest, Some(data.len() as u64)).unwrap();
    for chunk in data.chunks(70_001) {
        writer.write_all(chunk).unwrap();
    }
    assert_eq!(writer.bytes_written(), data.len() as u64);
    assert!(!store.has_blob(&digest), "nothing is visible before commit");
    writer.commit().unwrap();

    assert!(store.has_blob(&digest));
    assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), data);
    assert_eq!(store.blob_path(&digest), dir.path().join("blobs/sha256").join(digest.hex()));
    assert_eq!(store.read_blob(&digest, 2_000_000).unwrap(), data);
    assert!(matches!(store.read_blob(&digest, 1000), Err(StoreError::BlobTooLarge { size: 1_000_003, .. })));
    assert!(hidden_files(&dir.path().join("blobs/sha256")).is_empty());
}

#[test]
fn digest_mismatch_leaves_neither_blob_nor_temp() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let expected = Digest::of(b"what the registry promised");
    let mut writer = store.begin_blob(&expected, None).unwrap();
    writer.write_all(b"what actually arrived").unwrap();
    match writer.commit() {
        Err(StoreError::DigestMismatch { expected: e, actual }) => {
            assert_eq!(e, expected);
            assert_eq!(actual, Digest::of(b"what actually arrived"));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!store.has_blob(&expected));
    assert!(blob_names(&store).is_empty(), "{:?}", blob_names(&store));
}

#[test]
fn size_mismatch_short_and_long_streams_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = b"twelve bytes";
    let digest = Digest::of(data);

    let mut short = store.begin_blob(&digest, Some(20)).unwrap();
    short.write_all(data).unwrap();
    assert!(matches!(short.commit(), Err(StoreError::SizeMismatch { expected: 20, actual: 12, .. })));

    // Overflowing the expected size fails the write itself, and commit stays refused.
    let mut long = store.begin_blob(&digest, Some(5)).unwrap();
    assert!(long.write_all(data).is_err());
    assert!(matches!(long.commit(), Err(StoreError::SizeMismatch { expected: 5, actual: 12, .. })));

    let wrong_size = Descriptor::new(media_type::OCI_CONFIG, digest.clone(), 13);
    assert!(matches!(store.put_blob_bytes(&wrong_size, data), Err(StoreError::SizeMismatch { .. })));
    assert!(blob_names(&store).is_empty(), "{:?}", blob_names(&store));
}

#[test]
fn dropping_an_uncommitted_writer_removes_its_temp() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let digest = Digest::of(b"never finished");
    let mut writer = store.begin_blob(&digest, None).unwrap();
    writer.write_all(b"never").unwrap();
    writer.flush().unwrap();
    assert_eq!(hidden_files(&dir.path().join("blobs/sha256")).len(), 1, "the temp exists while writing");
    drop(writer);
    assert!(blob_names(&store).is_empty());
}

#[test]
fn put_blob_bytes_verifies_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let descriptor = descriptor_of(media_type::OCI_CONFIG, bytes);
    store.put_blob_bytes(&descriptor, bytes).unwrap();
    store.put_blob_bytes(&descriptor, bytes).unwrap();
    assert_eq!(blob_names(&store), BTreeSet::from([descriptor.digest.hex().to_owned()]));

    let mut tampered = *bytes;
    tampered[3] = b'R';
    assert!(matches!(store.put_blob_bytes(&descriptor, &tampered), Err(StoreError::DigestMismatch { .. })));

    let absent = Digest::of(b"absent");
    assert!(matches!(store.read_blob(&absent, 10), Err(StoreError::BlobNotFound { .. })));
}

#[test]
fn a_blob_writer_can_finish_on_another_thread() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = b"written on one thread, committed on another";
    let digest = Digest::of(data);
    let mut writer = store.begin_blob(&digest, Some(data.len() as u64)).unwrap();
    writer.write_all(&data[..10]).unwrap();
    std::thread::spawn(move || {
        writer.write_all(&data[10..]).unwrap();
        writer.commit().unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(store.read_blob(&digest, 100).unwrap(), data);
}

#[test]
fn two_writers_of_the_same_blob_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = b"same content from two downloads";
    let digest = Digest::of(data);
    let mut first = store.begin_blob(&digest, Some(data.len() as u64)).unwrap();
    let mut second = store.begin_blob(&digest, Some(data.len() as u64)).unwrap();
    first.write_all(data).unwrap();
    second.write_all(data).unwrap();
    first.commit().unwrap();
    second.commit().unwrap();
    assert_eq!(blob_names(&store), BTreeSet::from([digest.hex().to_owned()]));
}

#[test]
fn a_blob_cut_short_under_its_name_is_replaced_when_written_again() {
    // What a power loss can leave when blobs are not fsynced: the name, without all the bytes.
    for durability in [Durability::Buffered, Durability::Synced] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), durability).unwrap();
        let data = b"a layer the kernel had not written back yet";
        let digest = Digest::of(data);
        fs::write(store.blob_path(&digest), &data[..0]).unwrap();
        assert_eq!(store.blob_size(&digest).unwrap(), Some(0));

        let mut writer = store.begin_blob(&digest, Some(data.len() as u64)).unwrap();
        writer.write_all(data).unwrap();
        writer.commit().unwrap();
        assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), data, "{durability:?}");
        assert_eq!(blob_names(&store), BTreeSet::from([digest.hex().to_owned()]));
    }
}

#[test]
fn stale_temps_are_removed_on_open_but_live_ones_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = b"still downloading";
    let digest = Digest::of(data);
    let mut live = store.begin_blob(&digest, None).unwrap();
    live.write_all(&data[..5]).unwrap();
    live.flush().unwrap();

    // What a killed run leaves: unlocked temps in blobs/ and beside index.json.
    let stale_blob = dir.path().join("blobs/sha256/.tmp-4242-deadbeef");
    let stale_index = dir.path().join(".tmp-4242-cafe");
    fs::write(&stale_blob, b"partial layer").unwrap();
    fs::write(&stale_index, b"{\"schemaVer").unwrap();

    // Another process (here: another open file description) opens the store.
    let second = Store::open(dir.path()).unwrap();
    assert!(!stale_blob.exists() && !stale_index.exists());
    assert_eq!(hidden_files(&dir.path().join("blobs/sha256")).len(), 1, "the live temp survives");

    live.write_all(&data[5..]).unwrap();
    live.commit().unwrap();
    assert!(second.has_blob(&digest));
}

#[test]
fn set_ref_replaces_by_name_and_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    // index.json as another tool might have written it: an unnamed entry and an extra field.
    Store::open(dir.path()).unwrap();
    let foreign = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": media_type::OCI_MANIFEST, "digest": Digest::of(b"x").to_string(), "size": 1}],
        "annotations": {"written.by": "another tool"}
    });
    fs::write(dir.path().join("index.json"), serde_json::to_vec(&foreign).unwrap()).unwrap();
    let store = Store::open(dir.path()).unwrap();

    let one = descriptor_of(media_type::OCI_MANIFEST, b"one");
    let two = descriptor_of(media_type::OCI_MANIFEST, b"two");
    store.set_ref("example.com/app:1", &one).unwrap();
    store.set_ref("example.com/app:2", &one).unwrap();
    store.set_ref("example.com/app:1", &two).unwrap();

    let refs = store.refs().unwrap();
    let names: Vec<&str> = refs.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["example.com/app:2", "example.com/app:1"]);
    let resolved = store.resolve_ref("example.com/app:1").unwrap().unwrap();
    assert_eq!(resolved.digest, two.digest);
    assert_eq!(resolved.annotations[annotation::REF_NAME], "example.com/app:1");
    assert_eq!(resolved.annotations[annotation::CONTAINERD_IMAGE_NAME], "example.com/app:1");
    assert_eq!(store.resolve_ref("example.com/app:3").unwrap(), None);

    let index: serde_json::Value = serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["annotations"]["written.by"], "another tool");
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3, "the unnamed entry is kept");

    assert!(store.remove_ref("example.com/app:2").unwrap());
    assert!(!store.remove_ref("example.com/app:2").unwrap());
    assert_eq!(store.refs().unwrap().len(), 1);
    assert!(matches!(store.set_ref("", &one), Err(StoreError::InvalidRefName(_))));
    assert!(hidden_files(dir.path()).is_empty(), "no index temp left behind");
}

/// Naming images that already have exactly these names (a pull or a warm save of what is
/// there) leaves index.json as it is, wherever in it they stand; a changed name rewrites it.
#[test]
fn set_refs_leaves_index_json_alone_when_every_name_is_unchanged() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let names: Vec<String> = (0..10_000).map(|i| format!("example.com/app:{i}")).collect();
    let descriptors: Vec<Descriptor> =
        (0..10_000).map(|i| descriptor_of(media_type::OCI_MANIFEST, format!("image {i}").as_bytes())).collect();
    let batch: Vec<(&str, &Descriptor)> = names.iter().map(String::as_str).zip(&descriptors).collect();
    store.set_refs(&batch).unwrap();
    let inode = || fs::metadata(dir.path().join("index.json")).unwrap().ino();
    let written = inode();

    store.set_refs(&batch).unwrap();
    store.set_refs(&batch[10..20]).unwrap();
    assert_eq!(inode(), written, "unchanged names rewrote index.json");

    let other = descriptor_of(media_type::OCI_MANIFEST, b"other");
    store.set_refs(&[batch[10], ("example.com/app:11", &other)]).unwrap();
    assert_ne!(inode(), written, "a changed name did not rewrite index.json");
    assert_eq!(store.resolve_ref("example.com/app:11").unwrap().map(|d| d.digest), Some(other.digest));
}

#[test]
fn set_refs_names_ten_thousand_images_in_one_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kept = descriptor_of(media_type::OCI_MANIFEST, b"kept");
    store.set_ref("example.com/kept:1", &kept).unwrap();
    store.set_ref("example.com/app:0", &kept).unwrap();

    let names: Vec<String> = (0..10_000).map(|i| format!("example.com/app:{i}")).collect();
    let descriptors: Vec<Descriptor> =
        (0..10_000).map(|i| descriptor_of(media_type::OCI_MANIFEST, format!("image {i}").as_bytes())).collect();
    let mut batch: Vec<(&str, &Descriptor)> = names.iter().map(String::as_str).zip(&descriptors).collect();
    // A name twice in one batch: the last pair wins, as with set_ref called in order.
    let last = descriptor_of(media_type::OCI_MANIFEST, b"the last word");
    batch.push(("example.com/app:7", &last));
    store.set_refs(&batch).unwrap();

    let refs = store.refs().unwrap();
    assert_eq!(refs.len(), 10_001, "app:0 replaced, kept:1 kept");
    assert_eq!((refs[0].0.as_str(), &refs[0].1.digest), ("example.com/kept:1", &kept.digest));
    // Each name where its last pair put it, as with set_ref called in order.
    let mut expected: Vec<(&str, &Digest)> =
        batch.iter().map(|(name, descriptor)| (*name, &descriptor.digest)).collect();
    expected.remove(7);
    let found: Vec<(&str, &Digest)> =
        refs[1..].iter().map(|(name, descriptor)| (name.as_str(), &descriptor.digest)).collect();
    assert!(found == expected, "the batch's refs are not in order");
    assert!(hidden_files(dir.path()).is_empty(), "no index temp left behind");

    // An invalid name anywhere in a batch: none of it lands.
    let other = descriptor_of(media_type::OCI_MANIFEST, b"other");
    let error = store.set_refs(&[("example.com/new:1", &other), ("bad\nname", &other)]).unwrap_err();
    assert!(matches!(error, StoreError::InvalidRefName(_)), "{error}");
    assert_eq!(store.resolve_ref("example.com/new:1").unwrap(), None);
    store.set_refs(&[]).unwrap();
    assert_eq!(store.refs().unwrap().len(), 10_001);
}

#[test]
fn concurrent_set_ref_from_many_threads_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..15 {
                    let descriptor = descriptor_of(media_type::OCI_MANIFEST, format!("{thread}-{i}").as_bytes());
                    store.set_ref(&format!("example.com/t{thread}:{i}"), &descriptor).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let refs = store.refs().unwrap();
    assert_eq!(refs.len(), 8 * 15);
    for (name, descriptor) in refs {
        let (repo, tag) = name.strip_prefix("example.com/t").unwrap().split_once(':').unwrap();
        assert_eq!(descriptor.digest, Digest::of(format!("{repo}-{tag}").as_bytes()));
    }
}

const CHILD_ROOT_ENV: &str = "HPN_STORE_TEST_CHILD_ROOT";
const CHILD_PREFIX_ENV: &str = "HPN_STORE_TEST_CHILD_PREFIX";
const REFS_PER_PROCESS: usize = 40;

fn set_many_refs(root: &Path, prefix: &str) {
    let store = Store::open(root).unwrap();
    for i in 0..REFS_PER_PROCESS {
        let descriptor = descriptor_of(media_type::OCI_MANIFEST, format!("{prefix}{i}").as_bytes());
        store.set_ref(&format!("example.com/{prefix}:{i}"), &descriptor).unwrap();
    }
}

/// Runs itself as child processes (selected by an environment variable) so
/// that three processes rewrite one index.json at the same time.
#[test]
fn concurrent_set_ref_from_several_processes_loses_nothing() {
    if let Some(root) = std::env::var_os(CHILD_ROOT_ENV) {
        set_many_refs(Path::new(&root), &std::env::var(CHILD_PREFIX_ENV).unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    let children: Vec<_> = ["child-a", "child-b"]
        .into_iter()
        .map(|prefix| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "concurrent_set_ref_from_several_processes_loses_nothing", "--test-threads=1"])
                .env(CHILD_ROOT_ENV, dir.path())
                .env(CHILD_PREFIX_ENV, prefix)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    set_many_refs(dir.path(), "parent");
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let store = Store::open(dir.path()).unwrap();
    let names: BTreeSet<String> = store.refs().unwrap().into_iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), 3 * REFS_PER_PROCESS, "{names:?}");
    for prefix in ["parent", "child-a", "child-b"] {
        assert!(names.contains(&format!("example.com/{prefix}:{}", REFS_PER_PROCESS - 1)));
    }
}

#[test]
fn verify_passes_a_sound_store_and_reports_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = TestImage::new(b"hello from the verify test\n");
    image.store_into(&store, "example.com/app:1");
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.blobs_checked, report.refs_checked), (3, 1));
    assert_eq!(report.bytes_checked, (image.manifest.len() + image.config.len() + image.layer.len()) as u64);

    // Flip one byte of the layer in place; remove the config.
    let layer_digest = Digest::of(&image.layer);
    let layer_path = store.blob_path(&layer_digest);
    let mut layer = fs::read(&layer_path).unwrap();
    layer[10] ^= 0xff;
    fs::write(&layer_path, &layer).unwrap();
    let config_digest = Digest::of(&image.config);
    fs::remove_file(store.blob_path(&config_digest)).unwrap();
    fs::write(dir.path().join("blobs/sha256/not-a-digest"), b"?").unwrap();

    let report = store.verify().unwrap();
    assert!(!report.is_ok());
    assert!(report.problems.contains(&Problem::CorruptBlob { digest: layer_digest, actual: Digest::of(&layer) }));
    assert!(report.problems.contains(&Problem::MissingBlob {
        image: "example.com/app:1".to_owned(),
        digest: config_digest,
        role: BlobRole::Config,
    }));
    assert!(report.problems.iter().any(|problem| matches!(problem, Problem::StrayFile { .. })));
    assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
}

#[test]
fn read_blob_detects_a_corrupt_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = TestImage::new(b"x");
    let descriptor = image.store_into(&store, "example.com/app:1");
    let path = store.blob_path(&descriptor.digest);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] = b' ';
    fs::write(&path, bytes).unwrap();
    let error = store.read_blob(&descriptor.digest, 1 << 20).unwrap_err();
    assert!(matches!(error, StoreError::CorruptBlob { .. }), "{error}");
}

#[test]
fn gc_keeps_what_refs_reach_and_removes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kept = TestImage::new(b"kept image\n");
    let dropped = TestImage::new(b"dropped image\n");
    kept.store_into(&store, "example.com/app:kept");
    dropped.store_into(&store, "example.com/app:dropped");

    // An index whose second platform was never pulled, pointing at the kept manifest.
    let missing_platform = descriptor_of(media_type::OCI_MANIFEST, b"arm64 manifest not pulled");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{}]}}"#,
        media_type::OCI_INDEX,
        serde_json::to_string(&kept.descriptor()).unwrap(),
        serde_json::to_string(&missing_platform).unwrap()
    );
    let index_descriptor = descriptor_of(media_type::OCI_INDEX, index.as_bytes());
    store.put_blob_bytes(&index_descriptor, index.as_bytes()).unwrap();
    store.set_ref("example.com/multi:1", &index_descriptor).unwrap();
    let orphan = descriptor_of(media_type::OCI_LAYER_GZIP, b"orphan layer");
    store.put_blob_bytes(&orphan, b"orphan layer").unwrap();

    assert!(store.remove_ref("example.com/app:dropped").unwrap());
    // The kept manifest stays reachable through the index alone.
    assert!(store.remove_ref("example.com/app:kept").unwrap());
    let report = store.gc().unwrap();
    assert_eq!(report.blobs_removed, 4, "{report:?}");
    assert_eq!(report.blobs_kept, 4, "{report:?}");
    assert_eq!(
        report.bytes_freed,
        (dropped.manifest.len() + dropped.config.len() + dropped.layer.len() + b"orphan layer".len()) as u64
    );
    for bytes in [&kept.manifest, &kept.config, &kept.layer, &index.as_bytes().to_vec()] {
        assert!(store.has_blob(&Digest::of(bytes)));
    }
    for bytes in [&dropped.manifest, &dropped.config, &dropped.layer] {
        assert!(!store.has_blob(&Digest::of(bytes)));
    }
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.gc().unwrap().blobs_removed, 0);
}

/// The uncompressed copy of a layer: stored under what it hashes to, found again, counted as
/// missing once damaged (and then replaced by the next one made), kept by gc exactly while its
/// layer is, and never in someone else's OCI layout.
#[test]
fn uncompressed_copies_are_named_by_content_remade_when_damaged_and_kept_with_their_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = TestImage::new(b"a layer with an uncompressed copy\n");
    image.store_into(&store, "example.com/app:1");
    let layer = Digest::of(&image.layer);
    let mut uncompressed = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&image.layer[..]), &mut uncompressed).unwrap();
    let diff_id = Digest::of(&uncompressed);
    let make_copy = || {
        let mut copy = store.begin_uncompressed_copy(&layer).unwrap().expect("hpn's store keeps copies");
        copy.write_all(&uncompressed).unwrap();
        copy.commit().unwrap()
    };

    assert_eq!(store.uncompressed_copy(&layer).unwrap(), None, "no copy made yet");
    assert_eq!(make_copy(), diff_id);
    assert_eq!(store.uncompressed_copy(&layer).unwrap(), Some(diff_id.clone()));
    assert_eq!(fs::read(store.blob_path(&diff_id)).unwrap(), uncompressed);
    assert!(store.verify().unwrap().is_ok(), "a copy is a blob that hashes to its name");

    // Damaged (same size, other bytes): no copy, until a new one replaces it.
    let mut damaged = uncompressed.clone();
    damaged[600] ^= 0xff;
    fs::write(store.blob_path(&diff_id), &damaged).unwrap();
    assert_eq!(store.uncompressed_copy(&layer).unwrap(), None, "a damaged copy must not be used");
    assert_eq!(make_copy(), diff_id);
    assert_eq!(store.uncompressed_copy(&layer).unwrap(), Some(diff_id.clone()));
    assert_eq!(fs::read(store.blob_path(&diff_id)).unwrap(), uncompressed);

    // gc keeps the copy with its layer, and drops both (and the record) with the image.
    let report = store.gc().unwrap();
    assert_eq!((report.blobs_kept, report.blobs_removed), (4, 0), "{report:?}");
    assert!(store.has_blob(&diff_id));
    assert!(store.remove_ref("example.com/app:1").unwrap());
    let report = store.gc().unwrap();
    assert_eq!((report.blobs_kept, report.blobs_removed), (0, 4), "{report:?}");
    assert!(!store.has_blob(&diff_id) && !store.has_blob(&layer));
    assert_eq!(fs::read_dir(dir.path().join(".hpn-uncompressed")).unwrap().count(), 0, "the record stays");
    assert_eq!(store.uncompressed_copy(&layer).unwrap(), None);

    // Someone else's OCI layout gets no copies, nor the directory of their records.
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = Store::open_layout(layout_dir.path(), Durability::Buffered).unwrap();
    assert!(layout.begin_uncompressed_copy(&layer).unwrap().is_none());
    assert!(!layout_dir.path().join(".hpn-uncompressed").exists());
}

#[test]
fn gc_refuses_while_another_user_has_the_store_open_and_on_unreadable_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let orphan = descriptor_of(media_type::OCI_LAYER_GZIP, b"orphan");
    store.put_blob_bytes(&orphan, b"orphan").unwrap();

    let other = Store::open(dir.path()).unwrap();
    assert!(matches!(store.gc(), Err(StoreError::InUse { .. })));
    assert!(store.has_blob(&orphan.digest));
    drop(other);

    // A referenced "manifest" that does not parse: gc must not guess.
    let garbage = descriptor_of(media_type::OCI_MANIFEST, b"not json");
    store.put_blob_bytes(&garbage, b"not json").unwrap();
    store.set_ref("example.com/broken:1", &garbage).unwrap();
    assert!(matches!(store.gc(), Err(StoreError::UnreadableManifest { .. })));
    assert!(store.has_blob(&orphan.digest));

    store.remove_ref("example.com/broken:1").unwrap();
    assert_eq!(store.gc().unwrap().blobs_removed, 2);
    // The shared lock is back: a later gc from another store still sees this one.
    let other = Store::open(dir.path()).unwrap();
    assert!(matches!(other.gc(), Err(StoreError::InUse { .. })));
}

#[test]
fn a_missing_index_is_never_recreated_empty_over_blobs_and_gc_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let image = TestImage::new(b"precious\n");
    let store = Store::open(dir.path()).unwrap();
    image.store_into(&store, "example.com/app:1");
    drop(store);
    let index_path = dir.path().join("index.json");
    fs::remove_file(&index_path).unwrap();

    // What `hpn store ls` then `hpn store gc` do, each in its own process.
    let store = Store::open(dir.path()).unwrap();
    assert!(!index_path.exists(), "open wrote an index over existing blobs");
    let error = store.refs().unwrap_err();
    assert!(matches!(error, StoreError::UnusableIndex { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("missing") && message.contains(&dir.path().display().to_string()), "{message}");
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let error = store.gc().unwrap_err();
    assert!(matches!(error, StoreError::UnusableIndex { .. }), "{error:?}");
    assert!(store.set_ref("example.com/other:1", &image.descriptor()).is_err());
    assert!(!index_path.exists());
    assert_eq!(blob_names(&store).len(), 3, "gc removed blobs without an index");
}

#[test]
fn gc_refuses_an_unreadable_index_and_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    TestImage::new(b"precious\n").store_into(&store, "example.com/app:1");
    let orphan = descriptor_of(media_type::OCI_LAYER_GZIP, b"orphan");
    store.put_blob_bytes(&orphan, b"orphan").unwrap();
    let index_path = dir.path().join("index.json");
    let sound = fs::read(&index_path).unwrap();
    let entry_without_digest = br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","size":1}]}"#;
    for damaged in [&b"{\"schemaVersion\":2,"[..], br#"{"schemaVersion":2}"#, entry_without_digest] {
        fs::write(&index_path, damaged).unwrap();
        let error = store.gc().unwrap_err();
        assert!(matches!(error, StoreError::UnusableIndex { .. }), "{error:?}");
        assert!(error.to_string().contains(&index_path.display().to_string()), "{error}");
        assert_eq!(blob_names(&store).len(), 4);
    }
    fs::write(&index_path, sound).unwrap();
    assert_eq!(store.gc().unwrap().blobs_removed, 1);
}

#[test]
fn an_index_lost_before_any_blob_arrived_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    fs::remove_file(dir.path().join("index.json")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.refs().unwrap().is_empty());
}

fn skopeo() -> Command {
    let path = PathBuf::from("/usr/bin/skopeo");
    assert!(path.exists(), "these tests read the store with skopeo: install the Debian package `skopeo`");
    Command::new(path)
}

#[test]
fn skopeo_reads_an_image_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = TestImage::new(b"hello from hpn\n");
    let descriptor = image.store_into(&store, "example.com/app:1");
    TestImage::new(b"another image\n").store_into(&store, "example.com/other:2");

    let output =
        skopeo().args(["inspect", &format!("oci:{}:example.com/app:1", dir.path().display())]).output().unwrap();
    assert!(output.status.success(), "skopeo: {}", String::from_utf8_lossy(&output.stderr));
    let inspect: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspect["Digest"], descriptor.digest.to_string());
    assert_eq!(inspect["Layers"][0], Digest::of(&image.layer).to_string());

    let raw = skopeo()
        .args(["inspect", "--raw", &format!("oci:{}:example.com/app:1", dir.path().display())])
        .output()
        .unwrap();
    assert!(raw.status.success(), "skopeo: {}", String::from_utf8_lossy(&raw.stderr));
    assert_eq!(raw.stdout, image.manifest);
}

#[test]
fn a_damaged_blob_counts_as_missing_and_writing_it_again_replaces_it() {
    use hpn_store::{BlobCheck, BlobDamage};
    use std::os::unix::fs::symlink;

    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = b"layer bytes of some length";
    let layer = descriptor_of(media_type::OCI_LAYER_GZIP, data);
    store.put_blob_bytes(&layer, data).unwrap();
    assert_eq!(store.check_blob(&layer.digest, Some(layer.size)).unwrap(), BlobCheck::Intact);

    // Same size, other bytes: found by its changed stat, then by its hash.
    let mut flipped = data.to_vec();
    flipped[3] ^= 1;
    fs::write(store.blob_path(&layer.digest), &flipped).unwrap();
    let check = store.check_blob(&layer.digest, Some(layer.size)).unwrap();
    assert!(matches!(check, BlobCheck::Damaged(BlobDamage::Corrupt { .. })), "{check:?}");
    store.put_blob_bytes(&layer, data).unwrap();
    assert_eq!(fs::read(store.blob_path(&layer.digest)).unwrap(), data);

    // A same-size link to a file outside: never read through, replaced not written through.
    let planted = outside.path().join("secret");
    fs::write(&planted, &flipped).unwrap();
    fs::remove_file(store.blob_path(&layer.digest)).unwrap();
    symlink(&planted, store.blob_path(&layer.digest)).unwrap();
    let check = store.check_blob(&layer.digest, Some(layer.size)).unwrap();
    assert!(
        matches!(&check, BlobCheck::Damaged(BlobDamage::NotRegular(what)) if what.contains("symbolic link")),
        "{check:?}"
    );
    assert!(!store.has_blob(&layer.digest));
    assert!(store.read_blob(&layer.digest, 1024).is_err(), "read through a link");
    store.put_blob_bytes(&layer, data).unwrap();
    assert_eq!(fs::read(&planted).unwrap(), flipped, "the outside file was written to");
    assert!(fs::symlink_metadata(store.blob_path(&layer.digest)).unwrap().is_file());

    // A FIFO is found without blocking on it.
    fs::remove_file(store.blob_path(&layer.digest)).unwrap();
    assert!(Command::new("mkfifo").arg(store.blob_path(&layer.digest)).status().unwrap().success());
    let check = store.check_blob(&layer.digest, Some(layer.size)).unwrap();
    assert!(matches!(&check, BlobCheck::Damaged(BlobDamage::NotRegular(what)) if what.contains("FIFO")), "{check:?}");
    let report = store.verify().unwrap();
    assert!(report.problems.iter().any(|problem| matches!(problem, Problem::NotRegular { .. })), "{report:?}");
    store.put_blob_bytes(&layer, data).unwrap();
    assert_eq!(store.check_blob(&layer.digest, Some(layer.size)).unwrap(), BlobCheck::Intact);
    assert_eq!(
        store.check_blob(&layer.digest, Some(layer.size + 1)).unwrap(),
        BlobCheck::Damaged(BlobDamage::WrongSize { expected: layer.size + 1, actual: layer.size })
    );
}

#[test]
fn a_blob_edited_after_it_was_verified_is_hashed_again_and_loses_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"verified once";
    let layer = descriptor_of(media_type::OCI_LAYER_GZIP, data);
    Store::open(dir.path()).unwrap().put_blob_bytes(&layer, data).unwrap();
    let record = dir.path().join(".hpn-verified").join(layer.digest.hex());
    assert!(record.is_file(), "committing a blob records its verified stat");

    // An edit changes the stat the record holds: the next check (in another
    // process, so nothing is cached in memory) hashes it again.
    let path = dir.path().join("blobs/sha256").join(layer.digest.hex());
    let mut flipped = data.to_vec();
    flipped[0] ^= 1;
    fs::write(&path, &flipped).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(store.check_blob(&layer.digest, None).unwrap(), hpn_store::BlobCheck::Damaged(_)));
    assert!(!record.exists(), "a damaged blob's record is dropped");
    assert!(matches!(store.verify().unwrap().problems[0], Problem::CorruptBlob { .. }));
}

#[test]
fn a_symlinked_blob_directory_or_index_is_refused_by_name() {
    use std::os::unix::fs::symlink;

    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("blobs")).unwrap();
    symlink(outside.path(), dir.path().join("blobs/sha256")).unwrap();
    let error = Store::open_layout(dir.path(), Durability::Buffered).unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&format!("{}/blobs/sha256 is a symbolic link", dir.path().display())), "{text}");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);

    let dir = tempfile::tempdir().unwrap();
    symlink(outside.path(), dir.path().join("blobs")).unwrap();
    let text = Store::open(dir.path()).unwrap_err().to_string();
    assert!(text.contains(&format!("{}/blobs is a symbolic link", dir.path().display())), "{text}");

    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    let foreign_index = outside.path().join("index.json");
    fs::write(&foreign_index, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
    fs::remove_file(dir.path().join("index.json")).unwrap();
    symlink(&foreign_index, dir.path().join("index.json")).unwrap();
    let text = Store::open(dir.path()).unwrap_err().to_string();
    assert!(text.contains(&format!("{}/index.json is a symbolic link", dir.path().display())), "{text}");
}

#[test]
fn open_existing_never_creates_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir");
    let text = Store::open_existing(&missing, Durability::Buffered).unwrap_err().to_string();
    assert!(text.contains(&format!("there is no store at {}: it does not exist", missing.display())), "{text}");
    assert!(!dir.path().join("no").exists());
    let text = Store::open_existing(dir.path(), Durability::Buffered).unwrap_err().to_string();
    assert!(text.contains("no oci-layout file"), "{text}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    Store::open(&missing).unwrap();
    Store::open_existing(&missing, Durability::Buffered).unwrap();
}

#[test]
fn a_layout_hpn_does_not_own_keeps_no_file_of_hpns() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Store::open_layout(dir.path(), Durability::Buffered).unwrap();
    let image = TestImage::new(b"layout image\n");
    image.store_into(&layout, "app:1");
    assert!(matches!(layout.gc(), Err(StoreError::NotAStore { .. })));
    drop(layout);
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["blobs", "index.json", "oci-layout"]);
    assert_eq!(blob_names(&Store::open_layout(dir.path(), Durability::Buffered).unwrap()).len(), 3);
}

#[test]
fn remove_refs_is_all_or_nothing_and_names_what_matches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let one = descriptor_of(media_type::OCI_MANIFEST, b"one");
    store.set_refs(&[("example.com/a:1", &one), ("example.com/b:1", &one)]).unwrap();
    let error = store.remove_refs(&["example.com/a:1", "example.com/nope:1"]).unwrap_err();
    assert!(error.to_string().contains("holds no image named example.com/nope:1"), "{error}");
    assert_eq!(store.refs().unwrap().len(), 2);
    store.remove_refs(&["example.com/a:1", "example.com/b:1"]).unwrap();
    assert!(store.refs().unwrap().is_empty());
}

#[test]
fn usage_counts_shared_blobs_toward_each_image_but_not_as_unique() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = TestImage::new(b"shared image\n");
    image.store_into(&store, "example.com/a:1");
    store.set_ref("example.com/b:1", &image.descriptor()).unwrap();
    let other = TestImage::new(b"own image\n");
    other.store_into(&store, "example.com/c:1");

    let usage = store.usage().unwrap();
    let total = |image: &TestImage| (image.manifest.len() + image.config.len() + image.layer.len()) as u64;
    let sizes: Vec<(&str, u64, u64)> =
        usage.iter().map(|usage| (usage.name.as_str(), usage.size, usage.unique)).collect();
    assert_eq!(
        sizes,
        [
            ("example.com/a:1", total(&image), 0),
            ("example.com/b:1", total(&image), 0),
            ("example.com/c:1", total(&other), total(&other))
        ]
    );
}

/// The closure check `hpn verify` makes of archives: a config whose DiffIDs
/// do not match its manifest's layers is found in the store too.
#[test]
fn verify_checks_configs_against_their_layers_as_archive_verify_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = TestImage::new(b"one layer, two DiffIDs\n");
    let config = String::from_utf8(image.config.clone()).unwrap();
    let diff_id = config.split("\"diff_ids\":[").nth(1).unwrap().split(']').next().unwrap().to_owned();
    let config = config.replace(&format!("[{diff_id}]"), &format!("[{diff_id},{diff_id}]")).into_bytes();
    let config_descriptor = descriptor_of(media_type::OCI_CONFIG, &config);
    let layer_descriptor = descriptor_of(media_type::OCI_LAYER_GZIP, &image.layer);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
        media_type::OCI_MANIFEST,
        serde_json::to_string(&config_descriptor).unwrap(),
        serde_json::to_string(&layer_descriptor).unwrap()
    );
    let manifest_descriptor = descriptor_of(media_type::OCI_MANIFEST, manifest.as_bytes());
    store.put_blob_bytes(&layer_descriptor, &image.layer).unwrap();
    store.put_blob_bytes(&config_descriptor, &config).unwrap();
    store.put_blob_bytes(&manifest_descriptor, manifest.as_bytes()).unwrap();
    store.set_ref("example.com/odd:1", &manifest_descriptor).unwrap();

    let report = store.verify().unwrap();
    let [Problem::Inconsistent(problem)] = report.problems.as_slice() else { panic!("{:?}", report.problems) };
    assert_eq!(problem.fault, ClosureFault::DiffIdCount { diff_ids: 2, layers: 1 });
    assert_eq!((problem.role, &problem.digest), (BlobRole::Config, &config_descriptor.digest));
    assert!(problem.to_string().contains("example.com/odd:1"), "{problem}");
}

#[test]
fn an_inventory_lists_the_images_and_only_the_intact_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = TestImage::new(b"inventoried\n");
    let manifest = image.store_into(&store, "example.com/app:1");
    let inventory = store.inventory().unwrap();
    assert_eq!(inventory.schema, Inventory::SCHEMA);
    assert_eq!(inventory.images.len(), 1);
    assert_eq!(
        (inventory.images[0].name.as_str(), &inventory.images[0].digest),
        ("example.com/app:1", &manifest.digest)
    );
    let listed: BTreeSet<(Digest, u64)> = inventory.blobs.iter().map(|blob| (blob.digest.clone(), blob.size)).collect();
    let stored: BTreeSet<(Digest, u64)> = [&image.manifest, &image.config, &image.layer]
        .into_iter()
        .map(|bytes| (Digest::of(bytes), bytes.len() as u64))
        .collect();
    assert_eq!(listed, stored);
    // Read back as written; the same content gives the same id.
    assert_eq!(Inventory::parse(&inventory.to_json()).unwrap(), inventory);
    assert!(Inventory::looks_like(&inventory.to_json()));
    assert_eq!(store.inventory().unwrap().id, inventory.id);

    // A damaged blob is not acknowledged: the next delivery carries it again.
    let layer_path = store.blob_path(&Digest::of(&image.layer));
    let mut layer = fs::read(&layer_path).unwrap();
    layer[10] ^= 0xff;
    fs::write(&layer_path, &layer).unwrap();
    let damaged = store.inventory().unwrap();
    assert!(damaged.blobs.iter().all(|blob| blob.digest != Digest::of(&image.layer)), "{damaged:?}");
    assert_ne!(damaged.id, inventory.id);
    assert!(
        Inventory::parse(br#"{"schema":"hpn.inventory.v0","id":"","hpn_version":"","images":[],"blobs":[]}"#)
            .unwrap_err()
            .contains("hpn.inventory.v0")
    );
}

#[test]
fn update_ref_rewrites_what_a_name_points_at_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let append = |store: &Store, item: &str| {
        store
            .update_ref("r/app:sha256-x", 1024, |current| {
                let mut list: Vec<String> =
                    current.map(|bytes| serde_json::from_slice(&bytes).unwrap()).unwrap_or_default();
                if list.iter().any(|listed| listed == item) {
                    return None;
                }
                list.push(item.to_owned());
                let bytes = serde_json::to_vec(&list).unwrap();
                Some((descriptor_of(media_type::OCI_INDEX, &bytes), bytes))
            })
            .unwrap();
    };
    // Updates from many threads all land: each reads what the last one wrote.
    std::thread::scope(|scope| {
        for item in ["a", "b", "c", "d"] {
            let store = Arc::clone(&store);
            scope.spawn(move || append(&store, item));
        }
    });
    let read = |store: &Store| {
        let descriptor = store.resolve_ref("r/app:sha256-x").unwrap().unwrap();
        let mut list: Vec<String> =
            serde_json::from_slice(&store.read_blob(&descriptor.digest, 1024).unwrap()).unwrap();
        list.sort();
        (descriptor, list)
    };
    let (before, list) = read(&store);
    assert_eq!(list, ["a", "b", "c", "d"]);
    // `None` changes nothing.
    append(&store, "a");
    assert_eq!(read(&store).0, before);
    assert_eq!(store.refs().unwrap().len(), 1);
}
