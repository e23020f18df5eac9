//! The closure of a set of images — index → manifests → config + layers —
//! checked over whatever holds the blobs (an archive, the store): one walk for
//! `hpn verify` and `hpn store verify`. The holder does the reading; this
//! module only decides what must be there and what it must say.

use std::collections::HashSet;
use std::fmt;

use crate::media_type::{self, LayerCompression, layer_compression};
use crate::{Descriptor, Digest, ImageConfig, ParsedManifest, limits};

/// Index nesting followed; deeper ones are reported, not followed.
const MAX_INDEX_DEPTH: usize = 4;

/// Where the blobs are: an archive, a store.
pub trait BlobHolder {
    /// The size of the blob, `Ok(None)` if it is not held; `Err` says why it
    /// cannot be told.
    fn held_size(&self, digest: &Digest) -> Result<Option<u64>, String>;
    /// A small blob (a manifest, a config) whole, checked against its digest;
    /// `Err` says why it cannot be had.
    fn read_small(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String>;
}

/// What a blob is to the image that references it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRole {
    /// The manifest or index an image's name points at.
    Manifest,
    /// A manifest listed by an index (only the selected platforms may be present).
    ChildManifest,
    /// An image config.
    Config,
    /// A layer.
    Layer,
}

impl fmt::Display for BlobRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Manifest => "manifest",
            Self::ChildManifest => "platform manifest",
            Self::Config => "config",
            Self::Layer => "layer",
        })
    }
}

/// What is wrong with one blob of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosureFault {
    /// The image needs it and the holder does not have it.
    Missing,
    /// It has another size than the descriptor says.
    WrongSize {
        /// The descriptor's size.
        expected: u64,
        /// The held blob's.
        actual: u64,
    },
    /// A manifest, index or config that cannot be read or does not parse,
    /// so what it lists could not be checked.
    Unreadable(String),
    /// An index that lists none of the manifests the holder has.
    NoManifestHeld,
    /// An index nested deeper than hpn follows.
    TooDeep,
    /// A config listing another number of DiffIDs than its manifest has layers.
    DiffIdCount {
        /// DiffIDs in the config.
        diff_ids: usize,
        /// Layers in the manifest.
        layers: usize,
    },
    /// An uncompressed layer (whose digest is its DiffID) with another DiffID.
    DiffIdMismatch {
        /// The DiffID the config gives it.
        diff_id: Digest,
    },
}

impl fmt::Display for ClosureFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("is missing"),
            Self::WrongSize { expected, actual } => write!(f, "is {actual} bytes, its descriptor says {expected}"),
            Self::Unreadable(reason) => write!(f, "cannot be read: {reason}"),
            Self::NoManifestHeld => f.write_str("none of the manifests it lists is held"),
            Self::TooDeep => write!(f, "is nested more than {MAX_INDEX_DEPTH} indexes deep"),
            Self::DiffIdCount { diff_ids, layers } => write!(f, "lists {diff_ids} DiffIDs for {layers} layers"),
            Self::DiffIdMismatch { diff_id } => write!(f, "is uncompressed, but its DiffID is {diff_id}"),
        }
    }
}

/// One thing of an image's closure that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosureProblem {
    /// The image's name (or its digest, if unnamed).
    pub image: String,
    /// What the blob is to the image.
    pub role: BlobRole,
    /// The blob.
    pub digest: Digest,
    /// What is wrong.
    pub fault: ClosureFault,
}

impl fmt::Display for ClosureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} {} {}", self.image, self.role, self.digest, self.fault)
    }
}

/// What [`check_closure`] found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Closure {
    /// Every blob the images reach, held or not (what gc keeps).
    pub reachable: HashSet<Digest>,
    /// Manifests an index lists that the holder does not have (a save or
    /// pull of some platforms only): not a fault.
    pub platforms_absent: usize,
    /// Everything that does not hold, in walk order.
    pub problems: Vec<ClosureProblem>,
}

/// Blobs the walk treats specially.
#[derive(Debug, Clone, Default)]
pub struct KnownBlobs {
    /// Found corrupt by the caller's re-hash: reported there, once, and not
    /// read here.
    pub corrupt: HashSet<Digest>,
    /// Layers expected elsewhere (a differential bundle's base): not missing.
    pub elsewhere: HashSet<Digest>,
}

/// Checks every image of `images` (its name and top descriptor): each
/// blob present at its descriptor's size; each manifest and index readable;
/// an index holding at least one of its manifests; each config readable,
/// with one DiffID per layer, equal to the digest of an uncompressed layer.
/// A layer with `urls` (non-distributable) may be absent. Each manifest is
/// read once however many images share it.
pub fn check_closure(images: &[(String, Descriptor)], holder: &impl BlobHolder, known: &KnownBlobs) -> Closure {
    let mut closure = Closure::default();
    let mut parsed = HashSet::new();
    let mut stack: Vec<(String, Descriptor, BlobRole, usize)> = images
        .iter()
        .rev()
        .map(|(name, descriptor)| (name.clone(), descriptor.clone(), BlobRole::Manifest, 0))
        .collect();
    while let Some((image, descriptor, role, depth)) = stack.pop() {
        let digest = descriptor.digest.clone();
        closure.reachable.insert(digest.clone());
        let problem = |fault| ClosureProblem { image: image.clone(), role, digest: digest.clone(), fault };
        if known.corrupt.contains(&digest) {
            continue;
        }
        match holder.held_size(&digest) {
            Ok(Some(actual)) if actual != descriptor.size => {
                closure.problems.push(problem(ClosureFault::WrongSize { expected: descriptor.size, actual }));
                continue;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                let optional = match role {
                    BlobRole::ChildManifest => true,
                    BlobRole::Layer => !descriptor.urls.is_empty() || known.elsewhere.contains(&digest),
                    BlobRole::Manifest | BlobRole::Config => false,
                };
                if !optional {
                    closure.problems.push(problem(ClosureFault::Missing));
                }
                continue;
            }
            Err(reason) => {
                closure.problems.push(problem(ClosureFault::Unreadable(reason)));
                continue;
            }
        }
        let is_manifest =
            media_type::is_index(&descriptor.media_type) || media_type::is_image_manifest(&descriptor.media_type);
        if !is_manifest || !parsed.insert(digest.clone()) {
            continue;
        }
        let manifest = holder.read_small(&digest, limits::MANIFEST).and_then(|bytes| {
            ParsedManifest::parse(&bytes, Some(&descriptor.media_type)).map_err(|error| error.to_string())
        });
        match manifest {
            Err(reason) => closure.problems.push(problem(ClosureFault::Unreadable(reason))),
            Ok((ParsedManifest::Index(_), _)) if depth >= MAX_INDEX_DEPTH => {
                closure.problems.push(problem(ClosureFault::TooDeep));
            }
            Ok((ParsedManifest::Index(index), _)) => {
                let held = index
                    .manifests
                    .iter()
                    .filter(|child| matches!(holder.held_size(&child.digest), Ok(Some(_))))
                    .count();
                if held == 0 && !index.manifests.is_empty() {
                    closure.problems.push(problem(ClosureFault::NoManifestHeld));
                }
                closure.platforms_absent += index.manifests.len() - held;
                for child in index.manifests.into_iter().rev() {
                    stack.push((image.clone(), child, BlobRole::ChildManifest, depth + 1));
                }
            }
            Ok((ParsedManifest::Image(manifest), _)) => {
                check_diff_ids(&image, &manifest.config, &manifest.layers, holder, known, &mut closure.problems);
                for layer in manifest.layers.into_iter().rev() {
                    stack.push((image.clone(), layer, BlobRole::Layer, depth));
                }
                stack.push((image, manifest.config, BlobRole::Config, depth));
            }
        }
    }
    closure
}

/// The config's DiffIDs against the manifest's layers. A config that is
/// missing, corrupt or the wrong size is reported when the walk reaches it.
/// An artifact's config (an SBOM's or attestation's: the OCI empty
/// descriptor, or a type of its own) is no image config and lists no DiffIDs.
fn check_diff_ids(
    image: &str,
    config: &Descriptor,
    layers: &[Descriptor],
    holder: &impl BlobHolder,
    known: &KnownBlobs,
    problems: &mut Vec<ClosureProblem>,
) {
    if !matches!(config.media_type.as_str(), media_type::OCI_CONFIG | media_type::DOCKER_CONFIG)
        || known.corrupt.contains(&config.digest)
        || !matches!(holder.held_size(&config.digest), Ok(Some(size)) if size == config.size)
    {
        return;
    }
    let problem =
        |role, digest: &Digest, fault| ClosureProblem { image: image.to_owned(), role, digest: digest.clone(), fault };
    let diff_ids = match holder
        .read_small(&config.digest, limits::CONFIG)
        .and_then(|bytes| ImageConfig::parse(&bytes).map_err(|error| error.to_string()))
    {
        Ok(config) => config.rootfs.diff_ids,
        Err(reason) => {
            return problems.push(problem(BlobRole::Config, &config.digest, ClosureFault::Unreadable(reason)));
        }
    };
    if diff_ids.len() != layers.len() {
        problems.push(problem(
            BlobRole::Config,
            &config.digest,
            ClosureFault::DiffIdCount { diff_ids: diff_ids.len(), layers: layers.len() },
        ));
    }
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        let uncompressed = layer_compression(&layer.media_type) == Some(LayerCompression::None);
        if uncompressed && *diff_id != layer.digest {
            problems.push(problem(
                BlobRole::Layer,
                &layer.digest,
                ClosureFault::DiffIdMismatch { diff_id: diff_id.clone() },
            ));
        }
    }
}
