use std::future::Future;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::StreamExt;
use hpn_oci::{BlobStream, Descriptor, Digest, ImageManifest, ParsedManifest, Platform, RawManifest, Reference};

use crate::attachments::Attachment;
use crate::error::TransferError;

/// Hashes and parses manifest bytes (see [`RawManifest::parse`]); a document
/// that does not parse is reported with `context` (which image, which file).
pub(crate) fn parse_manifest(
    bytes: Bytes,
    media_type_hint: Option<&str>,
    context: impl FnOnce() -> String,
) -> Result<(RawManifest, ParsedManifest), TransferError> {
    RawManifest::parse(bytes, media_type_hint).map_err(|source| TransferError::Manifest { context: context(), source })
}

/// A blob's bytes as a source can best offer them.
pub enum BlobContent {
    /// Arriving over the network; not yet verified.
    Stream(BlobStream),
    /// A local file that was verified when it was stored.
    File(PathBuf),
    /// Small content already in memory and verified (configs).
    Bytes(Bytes),
}

impl std::fmt::Debug for BlobContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stream(_) => f.write_str("BlobContent::Stream"),
            Self::File(path) => f.debug_tuple("BlobContent::File").field(path).finish(),
            Self::Bytes(bytes) => write!(f, "BlobContent::Bytes({} bytes)", bytes.len()),
        }
    }
}

impl BlobContent {
    /// Reads a small blob whole, verifying its digest. `limit` protects memory
    /// from a source that claims a config is gigabytes long.
    pub async fn read_verified(self, descriptor: &Descriptor, limit: u64) -> Result<Bytes, TransferError> {
        if descriptor.size > limit {
            return Err(TransferError::TooLarge {
                what: "blob",
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                limit,
            });
        }
        let bytes = match self {
            Self::Bytes(bytes) => bytes,
            Self::File(path) => Bytes::from(
                tokio::fs::read(&path)
                    .await
                    .map_err(|error| TransferError::io(format!("reading {}", path.display()), error))?,
            ),
            Self::Stream(mut stream) => {
                let mut buffer = Vec::with_capacity(descriptor.size as usize);
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(TransferError::from_stream)?;
                    if (buffer.len() + chunk.len()) as u64 > descriptor.size {
                        break;
                    }
                    buffer.extend_from_slice(&chunk);
                }
                Bytes::from(buffer)
            }
        };
        let actual = Digest::of(&bytes);
        if actual != descriptor.digest || bytes.len() as u64 != descriptor.size {
            return Err(TransferError::DigestMismatch { what: "blob", expected: descriptor.digest.clone(), actual });
        }
        Ok(bytes)
    }
}

/// What [`ImageDestination::try_reuse_blob`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobReuse {
    /// The destination holds the blob already.
    Present,
    /// The destination now holds it, borrowed without its bytes moving (a
    /// registry's cross-repository mount).
    Mounted,
    /// The bytes must be sent.
    Absent,
}

impl BlobReuse {
    /// Whether the blob is at the destination now.
    pub fn is_reused(self) -> bool {
        self != Self::Absent
    }
}

/// One platform's image inside a copied image.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// The platform's manifest, raw.
    pub manifest: RawManifest,
    /// A parsed copy of it.
    pub parsed: ImageManifest,
    /// The config blob's bytes (small, verified).
    pub config: Bytes,
    /// The platform, from the index entry or else the config.
    pub platform: Platform,
    /// The uncompressed digests of the layers, from the config, in layer order.
    pub diff_ids: Vec<Digest>,
}

/// Everything a destination needs to record an image once its blobs and
/// manifests are in place.
#[derive(Debug, Clone)]
pub struct CopiedImage {
    /// Position of the image in the user's request, so outputs list images
    /// in the order the user gave them rather than the order they finished.
    pub job_index: usize,
    /// The name to record the image under at the destination.
    pub destination: Reference,
    /// The top-level manifest or index.
    pub top: RawManifest,
    /// The platform images copied, in index order (one for a plain manifest).
    pub platforms: Vec<PlatformImage>,
    /// Which of `platforms` a single-platform consumer (docker load) gets.
    pub primary: usize,
}

/// Where images come from: a registry, the store, an archive, a directory.
pub trait ImageSource: Send + Sync + 'static {
    /// What `image` resolves to, if the source can tell cheaply (a registry's
    /// HEAD, which Docker Hub does not count as a pull). Lets the engine reuse
    /// a manifest the destination already holds instead of fetching it.
    fn peek(&self, _image: &Reference) -> impl Future<Output = Result<Option<Descriptor>, TransferError>> + Send {
        async { Ok(None) }
    }

    /// The top-level manifest or index that `image` names.
    fn resolve(&self, image: &Reference) -> impl Future<Output = Result<RawManifest, TransferError>> + Send;

    /// A manifest an index points to.
    fn manifest(
        &self,
        image: &Reference,
        descriptor: &Descriptor,
    ) -> impl Future<Output = Result<RawManifest, TransferError>> + Send;

    /// Whether the source can provide this manifest of an index. A store or
    /// an archive holds only the platforms that were pulled or saved.
    fn has_manifest(&self, _descriptor: &Descriptor) -> impl Future<Output = Result<bool, TransferError>> + Send {
        async { Ok(true) }
    }

    /// The attachments of `subject`, a manifest of `image` (signatures,
    /// SBOMs, attestations: see [`crate::attachments`]), as the source lists
    /// them: legacy cosign tags and OCI 1.1 referrers. A source that keeps
    /// none lists none.
    fn attachments(
        &self,
        _image: &Reference,
        _subject: &Digest,
    ) -> impl Future<Output = Result<Vec<Attachment>, TransferError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// A blob's bytes. Streams are verified by whoever consumes them.
    fn blob(
        &self,
        image: &Reference,
        descriptor: &Descriptor,
    ) -> impl Future<Output = Result<BlobContent, TransferError>> + Send;
}

/// Where images go. Each call must leave the destination consistent if the
/// process dies right after it: blobs land whole and verified or not at all,
/// and an image's name is recorded last, by `commit`.
///
/// `target` is the name the image gets at the destination; a registry keeps
/// blobs per repository, the store and archives ignore it.
pub trait ImageDestination: Send + Sync + 'static {
    /// Whether an index may only be written with every manifest it lists (a
    /// registry checks). When some are missing, the engine writes the chosen
    /// platform's manifest as the image instead, as `docker push` does.
    fn requires_complete_index(&self) -> bool {
        false
    }

    /// Whether layers should arrive compressed where a source can choose (a
    /// plain tar in a docker-only archive): a registry keeps them for every
    /// later pull.
    fn prefers_compressed_layers(&self) -> bool {
        false
    }

    /// Whether the destination records attachments
    /// ([`ImageDestination::put_attachment`]); the engine looks for them
    /// only then.
    fn keeps_attachments(&self) -> bool {
        false
    }

    /// Whether the attachments of an index travel when only some of its
    /// platforms do. The store keeps them, with the index, for a later copy
    /// of its other platforms; an archive does not: its far side gets one
    /// platform's manifest (a registry takes no index without all its
    /// manifests), where nothing could check a signature of the index, so
    /// they are reported as left behind. A registry never gets such an
    /// index ([`ImageDestination::requires_complete_index`]).
    fn keeps_attachments_of_partial_indexes(&self) -> bool {
        true
    }

    /// Records an attachment of an image at `target`, once its blobs are in
    /// place: a legacy tag as that tag in `target`'s repository, a referrer
    /// by digest, and where the destination cannot list referrers itself, in
    /// the `sha256-<hex>` fallback index, merged with what it lists already.
    fn put_attachment(
        &self,
        target: &Reference,
        attachment: &Attachment,
        manifest: &RawManifest,
    ) -> impl Future<Output = Result<(), TransferError>> + Send {
        async move {
            let _ = manifest;
            Err(TransferError::Unsupported(format!(
                "this destination does not keep attachments ({} {} of {target})",
                attachment.kind, attachment.descriptor.digest
            )))
        }
    }

    /// The top manifest or index the destination has recorded under `name`
    /// already, if it keeps names it can read back (the store): only then is
    /// it worth asking the source cheaply (a HEAD) whether that image
    /// changed, or, under [`PullPolicy::Missing`](crate::PullPolicy::Missing),
    /// not asking at all. A first pull skips the round trip.
    fn recorded_image(
        &self,
        _name: &Reference,
    ) -> impl Future<Output = Result<Option<Descriptor>, TransferError>> + Send {
        async { Ok(None) }
    }

    /// A small blob (manifest, config) the destination already holds,
    /// verified, so it need not be fetched from the source again.
    fn cached(
        &self,
        _digest: &Digest,
        _limit: u64,
    ) -> impl Future<Output = Result<Option<Bytes>, TransferError>> + Send {
        async { Ok(None) }
    }

    /// Makes the blob present at `target` without its bytes if it can, and
    /// says how: already there, or borrowed from elsewhere (a registry mounts
    /// it from a sibling repository, trying where `source` lives and where
    /// earlier runs put it). The destination decides; the engine sends the
    /// bytes only on [`BlobReuse::Absent`]. Like containers/image's
    /// `TryReusingBlob`.
    fn try_reuse_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        source: &Reference,
    ) -> impl Future<Output = Result<BlobReuse, TransferError>> + Send;

    /// Whether the destination holds the blob at `target` now, asked without
    /// changing anything (no mount): what a dry run reports as already there.
    fn holds_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
    ) -> impl Future<Output = Result<bool, TransferError>> + Send;

    /// Takes a blob; stream content must be verified against `descriptor`.
    fn put_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        content: BlobContent,
    ) -> impl Future<Output = Result<(), TransferError>> + Send;

    /// Takes a platform manifest of an index, after every blob it references.
    fn put_manifest(
        &self,
        target: &Reference,
        manifest: &RawManifest,
    ) -> impl Future<Output = Result<(), TransferError>> + Send;

    /// The engine knows what it will copy of job [`CopiedImage::job_index`]:
    /// its manifests are read and its configs in place, its layers about to
    /// move. `image` is what [`ImageDestination::commit`] gets if the copy
    /// succeeds. A destination that writes in a fixed order (a save's one
    /// archive) lays out the image's place now.
    fn image_planned(&self, _image: &CopiedImage) {}

    /// The copy of job `job_index` failed, before or in its commit: it will
    /// never be committed, and a destination waiting for it stops waiting.
    fn image_failed(&self, _job_index: usize) {}

    /// Writes the top-level manifest or index and records the image under its
    /// name, after all its content is in place. A destination may defer
    /// recording the name to batch it with others (the store does) until
    /// [`ImageDestination::flush`].
    fn commit(&self, image: &CopiedImage) -> impl Future<Output = Result<(), TransferError>> + Send;

    /// Completes every deferred commit. Returns the jobs (by
    /// [`CopiedImage::job_index`]) whose commit could not be completed, with why.
    fn flush(&self) -> impl Future<Output = Vec<(usize, TransferError)>> + Send {
        async { Vec::new() }
    }
}
