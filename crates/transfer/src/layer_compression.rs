//! Layers that never had a compressed form are gzip-compressed on their way
//! to a registry, as `docker push` does.
//!
//! `docker save` before 25 and skopeo's docker-archives keep each layer as a
//! plain tar, and the manifest such an archive gets is one hpn made up
//! ([`hpn_archive::ArchivedImage::synthesized`]): no digest of it was ever
//! published, so nothing is lost by describing gzip layers in it instead, and
//! a registry then stores and serves a third of the bytes. The config is kept
//! as it is: its DiffIDs are the digests of the uncompressed tars, which a
//! gzip layer still decompresses to. Layers that came from a registry, in
//! any archive with its original manifest, keep their exact bytes.
//!
//! A layer's compressed digest must be in the manifest before any blob moves
//! (the engine plans reuse by digest), so each layer is compressed once, when
//! its image is resolved, into a spool file the push then reads; the layers of
//! one image are compressed at once on the blocking pool.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::try_join_all;
use hpn_archive::ArchiveReader;
use hpn_oci::media_type::{self, LayerCompression, layer_compression};
use hpn_oci::{Descriptor, Digest, ImageManifest, RawManifest, Sha256Hasher};

use crate::error::TransferError;
use crate::hashing::HashingWriter;
use crate::mutex::lock;
use crate::single_flight::SingleFlight;

/// zlib level 6, gzip's and Go's default, which `docker push` uses: the
/// registry keeps these bytes for every later pull, so size matters more
/// than the seconds saved by a faster level.
const GZIP_LEVEL: u32 = 6;
/// Read size from the archive while compressing.
const CHUNK: usize = 256 * 1024;

/// Compresses the plain-tar layers of synthesized manifests into a spool
/// directory, once per layer however many images share it.
pub(crate) struct LayerCompressor {
    spool: tempfile::TempDir,
    /// Uncompressed layer digest → the descriptor of its gzip form.
    made: SingleFlight<Digest, Descriptor>,
    /// Gzip digest → its spool file, for the blob reads of the push.
    files: Mutex<HashMap<Digest, PathBuf>>,
}

impl std::fmt::Debug for LayerCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerCompressor").field("spool", &self.spool.path()).finish_non_exhaustive()
    }
}

impl LayerCompressor {
    /// A compressor spooling into a new directory under the system's temp
    /// directory (`TMPDIR`), removed when the compressor is dropped.
    pub(crate) fn new() -> Result<Self, TransferError> {
        let spool = tempfile::Builder::new()
            .prefix("hpn-gzip-layers-")
            .tempdir()
            .map_err(|error| TransferError::io("creating a spool directory for compressed layers", error))?;
        Ok(Self { spool, made: SingleFlight::new(), files: Mutex::new(HashMap::new()) })
    }

    /// The spool file of a layer this compressor made, by its gzip digest.
    pub(crate) fn spooled(&self, digest: &Digest) -> Option<PathBuf> {
        lock(&self.files).get(digest).cloned()
    }

    /// `manifest` with each plain-tar layer replaced by its gzip form, or
    /// `manifest` itself when it has none.
    pub(crate) async fn compress_layers(
        &self,
        reader: &Arc<ArchiveReader>,
        manifest: RawManifest,
        parsed: ImageManifest,
    ) -> Result<RawManifest, TransferError> {
        let plain = |layer: &Descriptor| layer_compression(&layer.media_type) == Some(LayerCompression::None);
        if !parsed.layers.iter().any(plain) {
            return Ok(manifest);
        }
        let oci = parsed.media_type.as_deref() == Some(media_type::OCI_MANIFEST);
        let layers = try_join_all(parsed.layers.iter().map(|layer| async move {
            if !plain(layer) {
                return Ok(layer.clone());
            }
            let (made, _) = self.made.run(layer.digest.clone(), || self.compress(reader, layer, oci)).await;
            made.map_err(TransferError::Shared)
        }))
        .await?;
        let rewritten = ImageManifest { layers, ..parsed };
        // Serialized as the archive reader serializes what it synthesizes.
        let bytes = Bytes::from(serde_json::to_vec(&rewritten).expect("a manifest always serializes"));
        let digest = Digest::of(&bytes);
        Ok(RawManifest { bytes, media_type: manifest.media_type, digest })
    }

    /// Gzips one layer out of the archive into the spool, checking that the
    /// plain bytes hash to the layer's digest on the way.
    async fn compress(
        &self,
        reader: &Arc<ArchiveReader>,
        layer: &Descriptor,
        oci: bool,
    ) -> Result<Descriptor, TransferError> {
        let (reader, layer_owned) = (Arc::clone(reader), layer.clone());
        let path = self.spool.path().join(layer.digest.hex());
        let spool_path = path.clone();
        let (digest, size) = tokio::task::spawn_blocking(move || gzip_layer(&reader, &layer_owned, &spool_path))
            .await
            .map_err(|join| TransferError::task_failed("layer compression", join))??;
        tracing::debug!(layer = %layer.digest, gzip = %digest, size, "compressed a plain-tar layer for the registry");
        lock(&self.files).insert(digest.clone(), path);
        let media_type = if oci { media_type::OCI_LAYER_GZIP } else { media_type::DOCKER_LAYER_GZIP };
        Ok(Descriptor { media_type: media_type.to_owned(), digest, size, ..layer.clone() })
    }
}

/// Writes `layer`'s gzip form to `path`; returns its digest and size.
fn gzip_layer(
    reader: &ArchiveReader,
    layer: &Descriptor,
    path: &std::path::Path,
) -> Result<(Digest, u64), TransferError> {
    let archive = reader.path().display().to_string();
    let mut blob = reader.open_blob(&layer.digest)?.ok_or_else(|| {
        TransferError::Unsupported(format!("archive {archive} lacks layer {}; the archive is incomplete", layer.digest))
    })?;
    let spool_error = |error| TransferError::io(format!("writing a compressed layer into {}", path.display()), error);
    let file = File::create(path).map_err(spool_error)?;
    let mut encoder = flate2::write::GzEncoder::new(
        HashingWriter::new(BufWriter::with_capacity(CHUNK, file)),
        flate2::Compression::new(GZIP_LEVEL),
    );
    let mut plain = Sha256Hasher::new();
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = match blob.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(TransferError::io(format!("reading {} from {archive}", layer.digest), error)),
        };
        plain.update(&buffer[..read]);
        encoder.write_all(&buffer[..read]).map_err(spool_error)?;
    }
    let (read, actual) = (plain.bytes(), plain.finish());
    if actual != layer.digest || read != layer.size {
        return Err(TransferError::DigestMismatch { what: "layer", expected: layer.digest.clone(), actual });
    }
    let mut hashing = encoder.finish().map_err(spool_error)?;
    hashing.flush().map_err(spool_error)?;
    let size = hashing.hasher.bytes();
    Ok((hashing.hasher.finish(), size))
}
