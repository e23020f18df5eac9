//! The `reference` and `manifest` fuzz targets' seeds and regression inputs (tests/fuzz/),
//! through the very checks the targets run (tests/fuzz/*.rs, which fuzz/ includes), so they run
//! on every `cargo test`.

#[path = "fuzz/manifest.rs"]
mod manifest;
#[path = "fuzz/reference.rs"]
mod reference;

use hpn_oci::{ParsedManifest, Reference};
use hpn_testkit::fuzz;

/// This crate's fuzz inputs.
fn fuzz_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

#[test]
fn reference_inputs_pass_the_fuzz_check() {
    assert!(fuzz::replay(&fuzz_dir(), "reference", reference::check) >= 40);
}

#[test]
fn manifest_inputs_pass_the_fuzz_check() {
    assert!(fuzz::replay(&fuzz_dir(), "manifest", manifest::check) >= 15);
}

/// Found by the `reference` target: `docker.io/library/a/b:1` had the familiar form `a/b:1`,
/// which is `docker.io/a/b`, another repository; `docker save` would have tagged the image
/// under that name. Docker only drops `library/` from one-component names.
#[test]
fn familiar_form_of_a_nested_library_repository_keeps_the_prefix() {
    let nested: Reference = "docker.io/library/a/b:1".parse().unwrap();
    assert_eq!(nested.familiar_tagged().as_deref(), Some("library/a/b:1"));
    assert_eq!(nested.familiar_name().parse::<Reference>().unwrap().repository(), "library/a/b");
    let official: Reference = "docker.io/library/nginx:1".parse().unwrap();
    assert_eq!(official.familiar_tagged().as_deref(), Some("nginx:1"));
}

/// The seeds are real documents, not noise: each one parses as a manifest, index or config,
/// or is a schema 1 manifest, which hpn must refuse with a clear error.
#[test]
fn manifest_seeds_are_real_documents() {
    for input in fuzz::inputs(&fuzz_dir(), "manifest") {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("seed-") {
            continue;
        }
        let data = std::fs::read(&input).unwrap();
        let (hint, document) = match data.iter().position(|&b| b == 0) {
            Some(split) => (Some(String::from_utf8(data[..split].to_vec()).unwrap()), &data[split + 1..]),
            None => (None, &data[..]),
        };
        let parsed = ParsedManifest::parse(document, hint.as_deref());
        let refused = name.contains("schema1");
        let config = name.starts_with("seed-config");
        if config {
            hpn_oci::ImageConfig::parse(document).unwrap_or_else(|error| panic!("{name}: {error}"));
        } else {
            assert_eq!(parsed.is_err(), refused, "{name}: {:?}", parsed.err());
        }
    }
}
