//! The base of a differential bundle (`hpn save --since PREVIOUS...`): what
//! earlier bundles or a far-side inventory say the far side holds, so that
//! the new bundle leaves it out.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use hpn_archive::{ArchiveReader, BaseBlob};
use hpn_oci::{Digest, Reference};
use hpn_store::Inventory;

use crate::error::TransferError;

/// How much of a file is read to tell an inventory from an archive.
const SNIFF_LEN: u64 = 4096;

/// What the far side holds, by the bundles and inventories read as the base.
#[derive(Debug, Default)]
pub struct Base {
    /// Blob → where it came from (the first base that had it).
    blobs: HashMap<Digest, BaseBlob>,
    /// The images the far side already has under each name.
    images: HashSet<(Reference, Digest)>,
}

impl Base {
    /// Reads every PREVIOUS: an inventory (`hpn store inventory`), or an
    /// archive of any format (an hpn bundle or any volume of one: its bill
    /// of contents, counting the blobs it expected from its own base; any
    /// other archive: the blobs it carries). Blocking: call it off async workers.
    pub fn read(files: &[PathBuf]) -> Result<Self, TransferError> {
        let mut base = Self::default();
        for file in files {
            if is_inventory(file)? {
                base.add_inventory(file)?;
            } else {
                base.add_archive(file)?;
            }
        }
        Ok(base)
    }

    /// Whether the far side holds the blob, and which base had it.
    pub fn blob(&self, digest: &Digest) -> Option<&BaseBlob> {
        self.blobs.get(digest)
    }

    /// Whether the far side has `name` pointing at `digest` already: such an
    /// image is not shipped again.
    pub fn has_image(&self, name: &Reference, digest: &Digest) -> bool {
        self.images.contains(&(name.clone(), digest.clone()))
    }

    fn add_blob(&mut self, blob: BaseBlob) {
        self.blobs.entry(blob.digest.clone()).or_insert(blob);
    }

    fn add_image(&mut self, name: &str, digest: &Digest) {
        if let Ok(reference) = name.parse::<Reference>() {
            self.images.insert((reference, digest.clone()));
        }
    }

    fn add_inventory(&mut self, file: &Path) -> Result<(), TransferError> {
        let bytes = std::fs::read(file)
            .map_err(|error| TransferError::io(format!("reading inventory {}", file.display()), error))?;
        let inventory = Inventory::parse(&bytes).map_err(|reason| {
            TransferError::Unsupported(format!("{} is not an inventory hpn can read: {reason}", file.display()))
        })?;
        let label = file.display().to_string();
        for image in &inventory.images {
            self.add_image(&image.name, &image.digest);
        }
        for blob in inventory.blobs {
            self.add_blob(BaseBlob {
                digest: blob.digest,
                size: blob.size,
                set: inventory.id.clone(),
                file: label.clone(),
            });
        }
        Ok(())
    }

    fn add_archive(&mut self, file: &Path) -> Result<(), TransferError> {
        let reader = ArchiveReader::open(file)?;
        let label = file.display().to_string();
        for image in reader.images() {
            for name in &image.names {
                self.add_image(name, &image.manifest.digest);
            }
        }
        match reader.bill_of_contents() {
            Some(bill) => {
                let bill = bill?;
                // What the earlier bundle needed from its base is at the far side too, once it loaded.
                for blob in bill.base_blobs {
                    self.add_blob(blob);
                }
                for image in &bill.images {
                    self.add_image(&image.name, &image.digest);
                }
                for blob in bill.blobs {
                    self.add_blob(BaseBlob {
                        digest: blob.digest,
                        size: blob.size,
                        set: bill.set.clone(),
                        file: label.clone(),
                    });
                }
            }
            None => {
                let mut held: Vec<(&Digest, u64)> = reader.stored_blobs().collect();
                held.sort();
                // No bill, no set id: one made the same way from what the archive holds.
                let listing = serde_json::to_vec(&held).expect("a blob list always serializes");
                let set = Digest::of(&listing).to_string();
                for (digest, size) in held {
                    self.add_blob(BaseBlob { digest: digest.clone(), size, set: set.clone(), file: label.clone() });
                }
            }
        }
        Ok(())
    }
}

/// Whether `file` is an inventory rather than an archive: it starts as one.
fn is_inventory(file: &Path) -> Result<bool, TransferError> {
    if file.is_dir() {
        return Ok(false);
    }
    let mut start = Vec::new();
    std::fs::File::open(file)
        .and_then(|opened| opened.take(SNIFF_LEN).read_to_end(&mut start))
        .map_err(|error| TransferError::io(format!("reading {}", file.display()), error))?;
    Ok(Inventory::looks_like(&start))
}
