//! Image archives for hpn: the writer of the Docker 25+ "hybrid" archive
//! `hpn save` produces (an OCI layout and Docker's manifest.json in one tar,
//! sharing the original blobs), and the reader of the archives users already
//! have (docker save of any Docker version, skopeo, crane, oci-archive, OCI
//! layout directories; whole-file gzip/zstd; stdin).
//!
//! Synchronous std I/O; async callers use `spawn_blocking`.
//!
//! ```
//! use hpn_archive::{ArchiveCompression, ArchiveImage, ArchiveReader, ArchiveWriter, DockerImageEntry};
//! use hpn_oci::{Descriptor, Digest, media_type};
//!
//! // An image of one uncompressed layer: its DiffID is its own digest.
//! let layer = b"a layer tar, in real life";
//! let layer_digest = Digest::of(layer);
//! let config = format!(r#"{{"os":"linux","architecture":"amd64","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#);
//! let config_digest = Digest::of(config.as_bytes());
//! let manifest_bytes = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
//!     media_type::OCI_MANIFEST,
//!     serde_json::to_string(&Descriptor::new(media_type::OCI_CONFIG, config_digest.clone(), config.len() as u64)).unwrap(),
//!     serde_json::to_string(&Descriptor::new(media_type::OCI_LAYER, layer_digest.clone(), layer.len() as u64)).unwrap(),
//! );
//! let manifest =
//!     Descriptor::new(media_type::OCI_MANIFEST, Digest::of(manifest_bytes.as_bytes()), manifest_bytes.len() as u64);
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("app.tar");
//! let mut writer = ArchiveWriter::create(&path, ArchiveCompression::Gzip).unwrap();
//! writer.add_blob_bytes(&layer_digest, layer).unwrap();
//! writer.add_blob_bytes(&config_digest, config.as_bytes()).unwrap();
//! writer.add_blob_bytes(&manifest.digest, manifest_bytes.as_bytes()).unwrap();
//! writer.add_image(ArchiveImage {
//!     descriptor: manifest.clone(),
//!     name: "docker.io/library/app:1".to_owned(),
//!     tag: Some("1".to_owned()),
//!     docker: Some(DockerImageEntry { config: config_digest, repo_tags: vec!["app:1".to_owned()], layers: vec![layer_digest] }),
//! });
//! writer.finish().unwrap(); // only now does app.tar appear
//!
//! // Reading it back: the original manifest, digest intact, under both names.
//! let reader = ArchiveReader::open(&path).unwrap();
//! assert_eq!(reader.compression(), ArchiveCompression::Gzip);
//! let [image] = reader.images() else { panic!("one image was written") };
//! assert_eq!(image.manifest.digest, manifest.digest);
//! assert_eq!(image.names, ["docker.io/library/app:1", "app:1"]);
//! assert_eq!(reader.read_blob(&manifest.digest, hpn_archive::METADATA_LIMIT).unwrap(), manifest_bytes.as_bytes());
//! ```

#![warn(missing_docs)]

mod created;
mod error;
mod format;
mod reader;
mod signing;
mod tar_format;
mod volumes;
mod writer;

pub use created::CreationTime;
pub use error::ArchiveError;
pub use format::{BILL_OF_CONTENTS, BaseBlob, BillBlob, BillImage, BillOfContents, BillPart};
pub use reader::{ArchiveReader, ArchivedImage, BlobReader, IncompleteImage, METADATA_LIMIT, Problem, Verification};
pub use signing::{BILL_SIGNATURE, BillSigner, BillVerifier};
pub use volumes::{PartOutline, SetOutline, VolumeOutline, plan_volumes, volume_path};
pub use writer::{ArchiveCompression, ArchiveImage, ArchiveWriter, DockerImageEntry};
