//! What a tampered store does to hpn: a store that lost its index.json is
//! refused, not emptied.

mod common;

use std::fs;

use common::{Workspace, committed_blobs};
use hpn_oci::{Descriptor, Digest, media_type};
use hpn_store::Store;

#[test]
fn store_ls_then_gc_of_a_store_without_index_json_removes_nothing() {
    let work = Workspace::new();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let descriptor = Descriptor::new(media_type::OCI_INDEX, Digest::of(manifest), manifest.len() as u64);
    let store = Store::open(&work.store()).unwrap();
    store.put_blob_bytes(&descriptor, manifest).unwrap();
    store.set_ref("example.com/app:1", &descriptor).unwrap();
    drop(store);
    let index = work.store().join("index.json");
    fs::remove_file(&index).unwrap();

    for command in ["ls", "gc"] {
        let run = work.hpn(["store", command]);
        run.assert_code(6);
        assert!(run.stderr.contains(&format!("{} is missing", index.display())), "{}", run.stderr);
        assert!(!index.exists(), "hpn store {command} wrote an index.json");
    }
    assert_eq!(committed_blobs(&work.store()), [descriptor.digest.to_string()]);
}
