//! Hashing what passes through a writer, and checking that a compressed layer
//! decompresses to the DiffID its image config lists.

use std::io::{self, Write};

use hpn_oci::media_type::{LayerCompression, layer_compression};
use hpn_oci::{Descriptor, Digest, Sha256Hasher};

use crate::error::TransferError;

/// Passes writes on to `inner` and hashes what it took.
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: Sha256Hasher,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256Hasher::new() }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Sink = HashingWriter<io::Sink>;

enum Decoder {
    Gzip(Box<flate2::write::MultiGzDecoder<Sink>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Sink>>),
}

/// Decompresses a layer as its compressed bytes stream past and hashes the
/// result, which must be the DiffID every config that lists the layer names.
/// Sources whose content nobody vouched for (an archive from elsewhere) use
/// it: a registry or docker would refuse such an image only later, at pull or
/// load time, on another machine.
pub(crate) struct DiffIdCheck {
    layer: Digest,
    /// Where the layer comes from, for messages.
    origin: String,
    expected: Vec<Digest>,
    decoder: Decoder,
}

impl DiffIdCheck {
    /// A check for a compressed layer; `Ok(None)` when there is nothing to
    /// decompress. An uncompressed layer's DiffID is its digest, which is
    /// compared here at once and verified by whoever consumes the bytes.
    pub(crate) fn new(layer: &Descriptor, expected: &[Digest], origin: String) -> Result<Option<Self>, TransferError> {
        let decoder = match layer_compression(&layer.media_type) {
            Some(LayerCompression::Gzip) => {
                Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Sink::new(io::sink()))))
            }
            Some(LayerCompression::Zstd) => Decoder::Zstd(Box::new(
                zstd::stream::write::Decoder::new(Sink::new(io::sink()))
                    .map_err(|error| TransferError::io("starting a zstd decoder", error))?,
            )),
            Some(LayerCompression::None) => {
                return match expected.iter().find(|diff_id| **diff_id != layer.digest) {
                    Some(diff_id) => Err(mismatch(&layer.digest, origin, diff_id, layer.digest.clone())),
                    None => Ok(None),
                };
            }
            // Not a layer type hpn knows how to open: nothing to check it with.
            None => return Ok(None),
        };
        Ok(Some(Self { layer: layer.digest.clone(), origin, expected: expected.to_vec(), decoder }))
    }

    /// Feeds the next compressed bytes.
    pub(crate) fn update(&mut self, compressed: &[u8]) -> Result<(), TransferError> {
        let written = match &mut self.decoder {
            Decoder::Gzip(decoder) => decoder.write_all(compressed),
            Decoder::Zstd(decoder) => decoder.write_all(compressed),
        };
        written.map_err(|error| undecodable(&self.layer, &self.origin, error))
    }

    /// After the last bytes: the DiffID matches, or why not.
    pub(crate) fn finish(self) -> Result<(), TransferError> {
        let finished = match self.decoder {
            Decoder::Gzip(decoder) => decoder.finish(),
            Decoder::Zstd(mut decoder) => decoder.flush().map(|()| decoder.into_inner()),
        };
        let sink = match finished {
            Ok(sink) => sink,
            Err(error) => return Err(undecodable(&self.layer, &self.origin, error)),
        };
        let actual = sink.hasher.finish();
        match self.expected.iter().find(|diff_id| **diff_id != actual) {
            Some(diff_id) => Err(mismatch(&self.layer, self.origin, diff_id, actual)),
            None => Ok(()),
        }
    }
}

fn undecodable(layer: &Digest, origin: &str, error: io::Error) -> TransferError {
    TransferError::io(
        format!("decompressing layer {layer} ({origin}) to check its DiffID; the layer is corrupt"),
        error,
    )
}

fn mismatch(layer: &Digest, origin: String, expected: &Digest, actual: Digest) -> TransferError {
    TransferError::DiffIdMismatch { layer: layer.clone(), origin, expected: expected.clone(), actual }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use hpn_oci::media_type::{OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};

    use super::*;

    const TAR: &[u8] = b"not really a tar, but what the layer decompresses to, repeated a little. repeated a little.";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// Feeds `compressed` in small pieces, as chunks arrive from a reader.
    fn check(media_type: &str, compressed: &[u8], expected: &[Digest]) -> Result<(), TransferError> {
        let layer = Descriptor::new(media_type, Digest::of(compressed), compressed.len() as u64);
        let Some(mut check) = DiffIdCheck::new(&layer, expected, "in a test".to_owned())? else { return Ok(()) };
        for piece in compressed.chunks(7) {
            check.update(piece)?;
        }
        check.finish()
    }

    #[test]
    fn gzip_and_zstd_layers_match_the_digest_of_what_they_decompress_to() {
        let diff_id = Digest::of(TAR);
        check(OCI_LAYER_GZIP, &gzip(TAR), std::slice::from_ref(&diff_id)).unwrap();
        check(OCI_LAYER_ZSTD, &zstd::encode_all(TAR, 3).unwrap(), std::slice::from_ref(&diff_id)).unwrap();
        // Two gzip members decompress to their concatenation, as `gzip -d` and docker see it.
        let halves = [gzip(&TAR[..40]), gzip(&TAR[40..])].concat();
        check(OCI_LAYER_GZIP, &halves, &[diff_id]).unwrap();
    }

    #[test]
    fn a_wrong_diff_id_names_the_layer_and_both_digests() {
        let compressed = gzip(TAR);
        let wrong = Digest::of(b"something else");
        let error = check(OCI_LAYER_GZIP, &compressed, &[Digest::of(TAR), wrong.clone()]).unwrap_err().to_string();
        for part in [Digest::of(&compressed).to_string(), wrong.to_string(), Digest::of(TAR).to_string()] {
            assert!(error.contains(&part), "{part} is not in: {error}");
        }
        assert!(error.contains("in a test"), "{error}");
    }

    #[test]
    fn an_uncompressed_layer_must_be_its_own_diff_id_and_garbage_is_corrupt() {
        check(OCI_LAYER, TAR, &[Digest::of(TAR)]).unwrap();
        assert!(matches!(check(OCI_LAYER, TAR, &[Digest::of(b"x")]), Err(TransferError::DiffIdMismatch { .. })));
        let garbage = check(OCI_LAYER_GZIP, b"this is no gzip stream at all", &[Digest::of(TAR)]).unwrap_err();
        assert!(garbage.to_string().contains("corrupt"), "{garbage}");
    }
}
