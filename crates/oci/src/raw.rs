//! The two shapes content takes between hpn's crates: a manifest as raw
//! bytes, and a blob as a stream of chunks.

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures_core::Stream;

use crate::{Descriptor, Digest, ManifestError, ParsedManifest};

/// Manifest or index bytes exactly as their source holds them, with their
/// media type and digest. Every crate passes manifests in this form and
/// writes these bytes, never a re-serialization, so digests survive.
#[derive(Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// The document, byte for byte.
    pub bytes: Bytes,
    /// Its media type: the document's own `mediaType`, else what the
    /// transport said (a Content-Type, a descriptor), else its shape.
    pub media_type: String,
    /// The sha256 of `bytes`.
    pub digest: Digest,
}

impl RawManifest {
    /// Hashes and parses `bytes`. `media_type_hint` is what the transport
    /// said (Content-Type, a descriptor's media type), used when the document
    /// names none.
    pub fn parse(bytes: Bytes, media_type_hint: Option<&str>) -> Result<(Self, ParsedManifest), ManifestError> {
        let (parsed, media_type) = ParsedManifest::parse(&bytes, media_type_hint)?;
        let digest = Digest::of(&bytes);
        Ok((Self { bytes, media_type, digest }, parsed))
    }

    /// A descriptor of these bytes, for an index entry or a store ref.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, self.digest.clone(), self.bytes.len() as u64)
    }
}

impl std::fmt::Debug for RawManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawManifest")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A blob's bytes as they arrive, in chunks, not yet verified: whoever
/// consumes the stream hashes it against the descriptor it asked for.
///
/// Errors are `io::Error`s so that any reader can consume the stream; a
/// crate that produces one wraps its own error inside
/// (`io::Error::other(RegistryError)`), and a consumer that wants it back
/// downcasts [`io::Error::get_ref`].
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_the_bytes_and_hashes_them() {
        let bytes = Bytes::from_static(br#"{"schemaVersion":2,"manifests":[]}"#);
        let (raw, parsed) = RawManifest::parse(bytes.clone(), None).unwrap();
        assert!(matches!(parsed, ParsedManifest::Index(_)));
        assert_eq!(raw.bytes, bytes);
        assert_eq!(raw.digest, Digest::of(&bytes));
        assert_eq!(raw.descriptor().size, bytes.len() as u64);
        assert_eq!(raw.media_type, crate::media_type::OCI_INDEX);
    }
}
