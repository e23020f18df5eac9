//! The attachments an archive keeps (see [`crate::attachments`]), recorded
//! as the store records them so that one reader serves both
//! ([`crate::attachments::listed_under_tags`]): a legacy cosign tag as an
//! index.json entry named `REPO:sha256-<hex>.sig` (`.att`, `.sbom`), the
//! OCI referrers of a manifest in the fallback index `REPO:sha256-<hex>`.
//! They never go into manifest.json or `repositories`, which docker and
//! podman load images from.

use std::collections::BTreeMap;

use hpn_archive::{ArchiveImage, ArchiveWriter};
use hpn_oci::{Descriptor, Digest, RawManifest, Reference, media_type};

use crate::attachments::{self, Attachment, fallback_tag, legacy_tag, tagged};
use crate::error::TransferError;

/// What an archive destination has been given to record, by entry name;
/// written into the archive when it is finished, once each (a fallback
/// index grows with every referrer of its subject until then).
#[derive(Debug, Default)]
pub(crate) struct ArchiveAttachments {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    tag: String,
    subject: Digest,
    document: Document,
}

#[derive(Debug)]
enum Document {
    /// A legacy tag names the attachment's own manifest, in the archive already.
    Manifest(Descriptor),
    /// A fallback index, written at the end.
    FallbackIndex(Vec<u8>),
}

impl ArchiveAttachments {
    /// Records `attachment` (its manifest already in the archive) for the
    /// image saved as `target`.
    pub(crate) fn record(
        &mut self,
        target: &Reference,
        attachment: &Attachment,
        manifest: &RawManifest,
        archive: &std::path::Path,
    ) -> Result<(), TransferError> {
        let subject = attachment.subject.clone();
        if let Some(tag) = legacy_tag(&subject, attachment.kind) {
            let document = Document::Manifest(manifest.descriptor());
            self.entries.insert(tagged(target, &tag).to_string(), Entry { tag, subject, document });
            return Ok(());
        }
        let tag = fallback_tag(&subject);
        let name = tagged(target, &tag).to_string();
        let existing = match self.entries.get(&name).map(|entry| &entry.document) {
            Some(Document::FallbackIndex(bytes)) => Some(bytes.as_slice()),
            _ => None,
        };
        let merged =
            attachments::merge_fallback_index(existing, attachments::referrer_entry(manifest)).map_err(|reason| {
                TransferError::Referrers { context: format!("{name} in {}", archive.display()), reason }
            })?;
        if let Some(bytes) = merged {
            self.entries.insert(name, Entry { tag, subject, document: Document::FallbackIndex(bytes) });
        }
        Ok(())
    }

    /// Adds every recorded entry (and each fallback index's bytes) to `writer`.
    pub(crate) fn write_into(self, writer: &mut ArchiveWriter) -> Result<(), TransferError> {
        for (name, entry) in self.entries {
            let descriptor = match entry.document {
                Document::Manifest(descriptor) => descriptor,
                Document::FallbackIndex(bytes) => {
                    let descriptor = Descriptor::new(media_type::OCI_INDEX, Digest::of(&bytes), bytes.len() as u64);
                    if !writer.contains_blob(&descriptor.digest) {
                        writer.add_blob_bytes(&descriptor.digest, &bytes)?;
                    }
                    descriptor
                }
            };
            writer.add_attachment(ArchiveImage { descriptor, name, tag: Some(entry.tag), docker: None }, entry.subject);
        }
        Ok(())
    }
}
