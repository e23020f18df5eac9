//! Uncompressed copies of compressed layers, kept in the store beside them.
//!
//! docker before 23 cannot read zstd layers, so an archive hpn writes carries, for each zstd
//! layer, an uncompressed copy named by its DiffID, which manifest.json points at. Made afresh
//! by every save, that copy would cost a decompression of every zstd layer every time; so the
//! first save stores it as an ordinary blob, `blobs/sha256/<DiffID>`, hashed as it is written
//! (its name is what it hashes to) and trusted afterwards through its verified-stat record like
//! any other blob. Which layer it is the copy of is recorded in `.hpn-uncompressed/<layer hex>`
//! (the text `sha256:<DiffID hex>`), because no manifest references the copy: gc reads the
//! records and keeps a copy exactly while its layer is kept, and drops the record with the
//! layer. Nothing else reaches the copy: push, copy and serve walk manifests, so the copy is
//! never sent as a layer, and `verify` re-hashes it like every blob in `blobs/sha256/`.
//!
//! A record whose copy is missing or damaged counts as no copy: the caller decompresses again
//! and the new copy replaces the damaged one. An OCI layout hpn does not own keeps no copies
//! (nothing of hpn's stays in it).

use std::io::{self, Read, Write};
use std::sync::Arc;

use hpn_fs::{Dir, Durability};
use hpn_oci::Digest;

use crate::error::StoreError;
use crate::verified::BlobCheck;
use crate::writer::BlobWriter;
use crate::{Store, temp};

/// A relation record holds one digest: `sha256:` and 64 hex digits, and a newline.
const RECORD_LIMIT: u64 = 128;

/// An uncompressed copy of a layer being written into the store
/// ([`Store::begin_uncompressed_copy`]): hashed as it is written, stored
/// under what it hashes to by [`UncompressedCopyWriter::commit`]. Dropped
/// without committing, nothing of it stays.
#[derive(Debug)]
pub struct UncompressedCopyWriter {
    blob: BlobWriter,
    layer: Digest,
    records: Arc<Dir>,
    durability: Durability,
}

impl UncompressedCopyWriter {
    /// Stores the copy under its digest (the layer's DiffID) and records
    /// which layer it is the copy of. Returns the DiffID.
    ///
    /// The caller compares it with the DiffID the image's config lists: a
    /// copy is trusted as what it hashes to, not as what a config says.
    pub fn commit(self) -> Result<Digest, StoreError> {
        let UncompressedCopyWriter { blob, layer, records, durability } = self;
        let diff_id = blob.commit_named()?;
        // Without its record the copy is only unreachable: gc removes it and
        // the next save decompresses again, so a failure here is logged, not fatal.
        if let Err(error) = write_record(&records, &layer, &diff_id, durability) {
            tracing::warn!(%layer, %diff_id, %error, "could not record the uncompressed copy of a layer");
        }
        Ok(diff_id)
    }
}

impl Write for UncompressedCopyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.blob.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.blob.flush()
    }
}

fn write_record(records: &Dir, layer: &Digest, diff_id: &Digest, durability: Durability) -> Result<(), StoreError> {
    let (mut file, temp_name) = temp::create_locked(records)?;
    let target = records.join(layer.hex());
    let result = file
        .write_all(format!("{diff_id}\n").as_bytes())
        .and_then(|()| durability.sync_file(&file))
        .and_then(|()| records.rename(&temp_name, layer.hex()))
        .map_err(|error| StoreError::io("write", &target, error));
    if result.is_err() {
        let _ = records.remove_file(&temp_name);
    }
    result?;
    temp::sync_dir(records, durability)
}

/// The DiffID a record names, `None` when there is no record or it is not one.
fn read_record(records: &Dir, layer_hex: &str) -> Option<Digest> {
    let mut text = String::new();
    records.open_regular(layer_hex).ok()?.take(RECORD_LIMIT).read_to_string(&mut text).ok()?;
    text.trim_end().parse().ok()
}

impl Store {
    /// The DiffID of the stored uncompressed copy of the compressed layer
    /// `layer`, if one was made ([`Store::begin_uncompressed_copy`]) and
    /// [`Store::check_blob`] finds it intact; its file is
    /// [`Store::blob_path`] of that DiffID. `None` means: make it (again).
    pub fn uncompressed_copy(&self, layer: &Digest) -> Result<Option<Digest>, StoreError> {
        let Some(records) = &self.uncompressed_records else { return Ok(None) };
        let Some(diff_id) = read_record(records, layer.hex()) else { return Ok(None) };
        Ok((self.check_blob(&diff_id, None)? == BlobCheck::Intact).then_some(diff_id))
    }

    /// Starts storing the uncompressed copy of the compressed layer `layer`
    /// (see [`Store::uncompressed_copy`]): write the decompressed bytes,
    /// then [`UncompressedCopyWriter::commit`]. gc keeps the copy while it
    /// keeps `layer`. Only hpn's store keeps copies: `None` for an OCI
    /// layout opened with [`Store::open_layout`].
    pub fn begin_uncompressed_copy(&self, layer: &Digest) -> Result<Option<UncompressedCopyWriter>, StoreError> {
        let Some(records) = &self.uncompressed_records else { return Ok(None) };
        let blob = BlobWriter::new(Arc::clone(&self.blobs_dir), Arc::clone(&self.verified), None, self.durability)?;
        Ok(Some(UncompressedCopyWriter {
            blob,
            layer: layer.clone(),
            records: Arc::clone(records),
            durability: self.durability,
        }))
    }

    /// For gc: the copies to keep, those of the layers in `kept`. The
    /// records of layers not kept (and records that are not records) are
    /// removed; their copies go with every other unreachable blob.
    pub(crate) fn uncompressed_copies_of(
        &self,
        kept: &std::collections::HashSet<Digest>,
    ) -> Result<std::collections::HashSet<Digest>, StoreError> {
        let mut copies = std::collections::HashSet::new();
        let Some(records) = &self.uncompressed_records else { return Ok(copies) };
        let names = records.names().map_err(|error| StoreError::io("list", records.path(), error))?;
        for name in names {
            let Some(name) = name.to_str().filter(|name| !name.starts_with(temp::TEMP_PREFIX)) else { continue };
            let layer = Digest::from_sha256_hex(name).ok();
            match (layer.filter(|layer| kept.contains(layer)), read_record(records, name)) {
                (Some(_), Some(diff_id)) => {
                    copies.insert(diff_id);
                }
                _ => match records.remove_file(name) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(StoreError::io("remove", records.join(name), error)),
                },
            }
        }
        temp::sync_dir(records, self.durability)?;
        Ok(copies)
    }
}
