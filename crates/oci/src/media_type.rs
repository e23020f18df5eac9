//! Media types hpn reads and writes, and the questions hpn asks of them
//! (is this an index? how is this layer compressed?).

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed OCI layer: its digest is its DiffID.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed OCI layer, which Docker before 23 cannot load.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// A gzip OCI layer registries may decline to host (Windows base layers).
pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

/// A Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker manifest list: Docker's multi-platform index.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// A gzip-compressed Docker layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// A gzip Docker layer hosted outside the registry (see a descriptor's `urls`).
pub const DOCKER_LAYER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema 1, unsigned: recognised only to be refused clearly.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1, signed: recognised only to be refused clearly.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every manifest type hpn can copy, in the order the `Accept` header lists them.
pub const ACCEPTED_MANIFESTS: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Whether the type is a multi-platform index, OCI or Docker.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether the type is a single-platform image manifest, OCI or Docker.
pub fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Whether the type is Docker schema 1, which hpn refuses.
pub fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED
}

/// How a layer blob is compressed, judged from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// A plain tar: its sha256 is its DiffID.
    None,
    /// gzip, which every loader reads.
    Gzip,
    /// zstd, which Docker before 23 cannot read.
    Zstd,
}

/// `None` when the media type is not a layer type hpn knows.
pub fn layer_compression(media_type: &str) -> Option<LayerCompression> {
    match media_type {
        OCI_LAYER | "application/vnd.docker.image.rootfs.diff.tar" => Some(LayerCompression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN_GZIP | OCI_LAYER_NONDISTRIBUTABLE_GZIP => {
            Some(LayerCompression::Gzip)
        }
        OCI_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(LayerCompression::Zstd),
        _ => None,
    }
}
