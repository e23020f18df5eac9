//! How large a document hpn reads into memory may be: every such limit is
//! here, so that a registry, a store and an archive refuse the same sizes.
//!
//! Blobs (layers) have no limit: they stream, and memory is bounded by
//! buffers, not by their size.

/// Manifests and indexes. The distribution registry refuses to store a
/// manifest over 4 MiB, so no registry-held image has a larger one.
pub const MANIFEST: u64 = 4 * 1024 * 1024;

/// Image configs: a few KiB in practice; a huge one is broken or hostile.
pub const CONFIG: u64 = 16 * 1024 * 1024;

/// The metadata files of an archive (`manifest.json`, `index.json`,
/// `repositories`), which list every image it holds.
pub const ARCHIVE_METADATA: u64 = 8 * 1024 * 1024;

/// Small JSON files of hpn's own (the blob-locations cache).
pub const STATE_FILE: u64 = 16 * 1024 * 1024;
