//! `hpn_oci::ParsedManifest::parse` with no content type, with each type a registry or a
//! descriptor may give, and with one taken from the input (`<content type>\0<document>`);
//! `hpn_oci::ImageConfig::parse`. Nothing panics; what parses says the kind it was parsed as,
//! and serializing a parsed manifest (as the archive reader does for the manifests it
//! synthesizes) gives a document that parses back to the same thing.

use hpn_oci::{ImageConfig, ManifestError, ParsedManifest, media_type};

const HINTS: [&str; 10] = [
    media_type::OCI_MANIFEST,
    media_type::OCI_INDEX,
    media_type::DOCKER_MANIFEST,
    media_type::DOCKER_MANIFEST_LIST,
    media_type::DOCKER_SCHEMA1_SIGNED,
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    " ;",
    "application/vnd.cncf.helm.config.v1+json",
];

pub fn check(data: &[u8]) {
    check_document(data, None);
    for hint in HINTS {
        check_document(data, Some(hint));
    }
    if let Some(split) = data.iter().position(|&b| b == 0) {
        let hint = String::from_utf8_lossy(&data[..split]);
        check_document(&data[split + 1..], Some(&hint));
    }
    if let Ok(config) = ImageConfig::parse(data) {
        let platform = config.platform();
        let _ = platform.to_string();
        for diff_id in &config.rootfs.diff_ids {
            assert_eq!(diff_id.to_string().parse().as_ref(), Ok(diff_id));
        }
    }
}

fn check_document(bytes: &[u8], hint: Option<&str>) {
    let (parsed, kind) = match ParsedManifest::parse(bytes, hint) {
        Ok(parsed) => parsed,
        Err(ManifestError::Schema1 | ManifestError::UnsupportedMediaType(_) | ManifestError::Invalid { .. }) => return,
    };
    assert!(!media_type::is_schema1(&kind), "a schema 1 manifest parsed as {kind:?}");
    let serialized = match &parsed {
        ParsedManifest::Image(manifest) => {
            assert!(media_type::is_image_manifest(&kind), "an image manifest parsed with type {kind:?}");
            serde_json::to_vec(manifest).expect("a parsed manifest serializes")
        }
        ParsedManifest::Index(index) => {
            assert!(media_type::is_index(&kind), "an index parsed with type {kind:?}");
            for child in &index.manifests {
                if let Some(platform) = &child.platform {
                    let _ = platform.to_string();
                }
            }
            serde_json::to_vec(index).expect("a parsed index serializes")
        }
    };
    let (again, again_kind) = ParsedManifest::parse(&serialized, Some(&kind)).unwrap_or_else(|error| {
        panic!("{kind} parsed, but its serialized form {:?} does not: {error}", String::from_utf8_lossy(&serialized))
    });
    let reserialized = match &again {
        ParsedManifest::Image(manifest) => serde_json::to_vec(manifest),
        ParsedManifest::Index(index) => serde_json::to_vec(index),
    }
    .expect("a parsed manifest serializes");
    assert_eq!(std::mem::discriminant(&again), std::mem::discriminant(&parsed));
    assert_eq!(serialized, reserialized, "a serialized {kind} parses to something else");
    assert_eq!(again_kind, kind);
    // The type the document declares wins over the hint.
    let declared = match &parsed {
        ParsedManifest::Image(manifest) => &manifest.media_type,
        ParsedManifest::Index(index) => &index.media_type,
    };
    if let Some(declared) = declared {
        assert_eq!(&kind, declared, "the document declares {declared:?} but parsed as {kind:?}");
    }
}
