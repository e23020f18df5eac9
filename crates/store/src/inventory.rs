//! `hpn store inventory`: what a store holds, written down so that it can be
//! carried back to where the next delivery is built (`hpn save --since`).

use hpn_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::{BlobCheck, Store};

/// What a store holds, as [`Store::inventory`] takes it: every intact blob
/// and every named image. It is a receipt of what arrived, not a list of
/// what was sent: a blob damaged or lost at the far side is not in it, so
/// the next differential bundle carries it again.
///
/// On disk it is compact JSON (see the crate README, "Inventories").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Inventory {
    /// The format: [`Inventory::SCHEMA`].
    pub schema: String,
    /// Names this inventory: the sha256 of its image and blob lists, so the
    /// same content always gets the same id.
    pub id: String,
    /// The hpn version that took it.
    pub hpn_version: String,
    /// Every named image, in index.json order.
    pub images: Vec<InventoryImage>,
    /// Every intact blob, in digest order.
    pub blobs: Vec<InventoryBlob>,
}

/// A named image of an [`Inventory`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryImage {
    /// Its name in the store.
    pub name: String,
    /// Its top manifest or index.
    pub digest: Digest,
    /// That document's media type.
    pub media_type: String,
}

/// A blob of an [`Inventory`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

impl Inventory {
    /// The `schema` this version writes and reads.
    pub const SCHEMA: &'static str = "hpn.inventory.v1";

    /// Reads an inventory; `Err` says why these bytes are not one this hpn reads.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let inventory: Self = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
        if inventory.schema != Self::SCHEMA {
            return Err(format!("it is of schema {:?}; this hpn reads {:?}", inventory.schema, Self::SCHEMA));
        }
        Ok(inventory)
    }

    /// The inventory as the compact JSON `hpn store inventory` writes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an inventory always serializes")
    }

    /// Whether these bytes start like an inventory rather than an archive:
    /// a JSON object naming the inventory schema, for callers given either.
    pub fn looks_like(bytes: &[u8]) -> bool {
        let start = bytes.iter().position(|byte| !byte.is_ascii_whitespace()).map_or(&[][..], |at| &bytes[at..]);
        start.starts_with(b"{") && start.windows(Self::SCHEMA.len()).any(|window| window == Self::SCHEMA.as_bytes())
    }
}

impl Store {
    /// What the store holds now: every blob that is intact ([`Store::check_blob`]:
    /// unchanged since verified, else re-hashed) and every named image.
    /// Changes nothing but verified-stat records.
    pub fn inventory(&self) -> Result<Inventory, StoreError> {
        let mut blobs = Vec::new();
        for (_, digest) in self.list_blob_files()? {
            let Some(digest) = digest else { continue };
            if self.check_blob(&digest, None)? != BlobCheck::Intact {
                continue;
            }
            if let Some(size) = self.blob_size(&digest)? {
                blobs.push(InventoryBlob { digest, size });
            }
        }
        let images: Vec<InventoryImage> = self
            .refs()?
            .into_iter()
            .map(|(name, descriptor)| InventoryImage {
                name,
                digest: descriptor.digest,
                media_type: descriptor.media_type,
            })
            .collect();
        let listing = serde_json::to_vec(&(&images, &blobs)).expect("the inventory's lists always serialize");
        Ok(Inventory {
            schema: Inventory::SCHEMA.to_owned(),
            id: Digest::of(&listing).to_string(),
            hpn_version: env!("CARGO_PKG_VERSION").to_owned(),
            images,
            blobs,
        })
    }
}
