//! How much of the store each image uses: what `hpn store ls` shows.

use std::collections::HashMap;

use hpn_oci::{Descriptor, Digest};

use crate::Store;
use crate::error::StoreError;

/// One named image and the disk it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageUsage {
    /// Its index.json name.
    pub name: String,
    /// What the name points at.
    pub descriptor: Descriptor,
    /// Bytes of the distinct blobs it reaches that are in the store
    /// (manifests, configs, layers; a layer used twice counts once).
    pub size: u64,
    /// Of those, the bytes no other index.json entry reaches: what removing
    /// this name (`hpn store rm`, then `hpn store gc`) would free.
    pub unique: u64,
}

impl Store {
    /// Every named entry with its size and unique size, in index.json order.
    /// Blobs shared by several entries count toward each one's `size` and
    /// none's `unique`; unnamed entries count as sharers but are not listed.
    pub fn usage(&self) -> Result<Vec<ImageUsage>, StoreError> {
        let entries = self.all_entries()?;
        let reached: Vec<Vec<Digest>> = entries
            .iter()
            .map(|(name, descriptor)| {
                let walk = self.walk(vec![(name.clone(), descriptor.clone())], Default::default());
                walk.reachable.into_iter().collect()
            })
            .collect();
        let mut sharers: HashMap<&Digest, usize> = HashMap::new();
        for digest in reached.iter().flatten() {
            *sharers.entry(digest).or_default() += 1;
        }
        let mut sizes: HashMap<&Digest, u64> = HashMap::with_capacity(sharers.len());
        for digest in sharers.keys() {
            sizes.insert(digest, self.blob_size(digest)?.unwrap_or(0));
        }
        Ok(entries
            .iter()
            .zip(&reached)
            .filter_map(|((name, descriptor), digests)| {
                let name = name.clone()?;
                let size = digests.iter().map(|digest| sizes[digest]).sum();
                let unique = digests.iter().filter(|digest| sharers[digest] == 1).map(|digest| sizes[digest]).sum();
                Some(ImageUsage { name, descriptor: descriptor.clone(), size, unique })
            })
            .collect())
    }
}
