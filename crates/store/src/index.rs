//! index.json: the store's list of named images.
//!
//! It is edited as a `serde_json::Value`, not through our own structs, so that
//! fields and entries written by other tools (skopeo, umoci) survive our
//! rewrites untouched.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

use hpn_oci::{Descriptor, annotation, media_type};
use serde_json::{Value, json};

use crate::error::StoreError;
use crate::temp::TEMP_PREFIX;
use crate::verified::StatKey;
use crate::{INDEX_FILE, INDEX_LOCK_FILE, Ownership, Store, open_lock_file};

/// index.json as last read, kept while the file's stat is unchanged: every
/// write replaces it by rename (a new inode), another tool's edit changes
/// its mtime and ctime. Looking a name up in an index of n entries then
/// costs a stat, not a parse of n entries, which made naming n images O(n²).
#[derive(Debug)]
pub(crate) struct IndexSnapshot {
    stat: StatKey,
    index: Value,
    /// Name → position in `manifests`; of duplicates, the last.
    by_name: HashMap<String, usize>,
}

/// Holds the exclusive index lock; released when dropped (the fd closes).
#[derive(Debug)]
pub(crate) struct IndexLock {
    _file: File,
}

impl Store {
    /// Points `name` at `descriptor`, replacing any entry of that name. Safe
    /// against concurrent callers in this and other processes: all of them
    /// land. For many refs at once, [`Store::set_refs`] rewrites index.json once.
    pub fn set_ref(&self, name: &str, descriptor: &Descriptor) -> Result<(), StoreError> {
        self.set_refs(&[(name, descriptor)])
    }

    /// [`Store::set_ref`] for each pair, in one locked read and rewrite of
    /// index.json, so naming n images costs O(n) rather than n rewrites of
    /// an index that grows with each. All land or, when a name is invalid,
    /// none; of pairs with the same name the last wins.
    pub fn set_refs(&self, refs: &[(&str, &Descriptor)]) -> Result<(), StoreError> {
        for (name, _) in refs {
            validate_ref_name(name)?;
        }
        let names: HashSet<&str> = refs.iter().map(|(name, _)| *name).collect();
        let mut added = HashSet::new();
        // Walked from the end so that the last pair of a name is the one kept.
        let mut entries: Vec<Value> = refs
            .iter()
            .rev()
            .filter(|(name, _)| added.insert(*name))
            .map(|(name, descriptor)| ref_entry(name, descriptor))
            .collect();
        entries.reverse();

        let _lock = self.lock_index()?;
        let mut index = self.read_index_fresh()?;
        let manifests = manifests_mut(&mut index);
        // Nothing to write when each name is there once, as exactly this entry
        // (a pull or a warm save of what is there): a rewrite would only move it.
        // One pass over the index, not one per name: naming n images stays O(n).
        let mut existing: HashMap<&str, (&Value, usize)> = HashMap::new();
        for entry in manifests.iter() {
            if let Some(name) = ref_name(entry).filter(|name| names.contains(name)) {
                existing.entry(name).and_modify(|(_, count)| *count += 1).or_insert((entry, 1));
            }
        }
        let unchanged =
            entries.iter().all(|entry| ref_name(entry).and_then(|name| existing.get(name)) == Some(&(entry, 1)));
        if unchanged {
            return Ok(());
        }
        manifests.retain(|existing| ref_name(existing).is_none_or(|name| !names.contains(name)));
        manifests.append(&mut entries);
        self.write_index(&index)
    }

    /// Points `name` at what `update` makes of the blob it points at now
    /// (`None` when there is no such entry), in one locked read and rewrite
    /// of index.json: two processes adding to one document (a referrers
    /// fallback index) both land. The blob `update` returns is stored first,
    /// verified against its descriptor; `None` from `update` changes nothing.
    /// The current blob is read up to `max_len` bytes.
    pub fn update_ref(
        &self,
        name: &str,
        max_len: u64,
        update: impl FnOnce(Option<Vec<u8>>) -> Option<(Descriptor, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        validate_ref_name(name)?;
        let _lock = self.lock_index()?;
        let mut index = self.read_index_fresh()?;
        let current = index_manifests(&index).iter().rev().find(|entry| ref_name(entry) == Some(name)).cloned();
        let existing = match current {
            Some(entry) => {
                let descriptor = serde_json::from_value::<Descriptor>(entry)
                    .map_err(|error| self.unusable_index(format!("has an entry {name:?} hpn cannot read ({error})")))?;
                Some(self.read_blob(&descriptor.digest, max_len)?)
            }
            None => None,
        };
        let Some((descriptor, bytes)) = update(existing) else { return Ok(()) };
        self.put_blob_bytes(&descriptor, &bytes)?;
        let manifests = manifests_mut(&mut index);
        manifests.retain(|existing| ref_name(existing) != Some(name));
        manifests.push(ref_entry(name, &descriptor));
        self.write_index(&index)
    }

    /// Removes the entry named `name`. Returns whether there was one. The
    /// blobs stay until [`Store::gc`].
    pub fn remove_ref(&self, name: &str) -> Result<bool, StoreError> {
        match self.remove_refs(&[name]) {
            Ok(()) => Ok(true),
            Err(StoreError::RefsNotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Removes the entries of every name in `names`, in one locked rewrite
    /// of index.json: all of them, or none when a name matches no entry
    /// ([`StoreError::RefsNotFound`] lists those). The blobs stay until
    /// [`Store::gc`].
    pub fn remove_refs(&self, names: &[&str]) -> Result<(), StoreError> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index_fresh()?;
        let manifests = manifests_mut(&mut index);
        let present: HashSet<&str> = manifests.iter().filter_map(ref_name).collect();
        let unknown: Vec<String> =
            names.iter().filter(|name| !present.contains(**name)).map(|name| (*name).to_owned()).collect();
        if !unknown.is_empty() {
            return Err(StoreError::RefsNotFound { names: unknown, root: self.root.clone() });
        }
        let removed: HashSet<&str> = names.iter().copied().collect();
        manifests.retain(|existing| ref_name(existing).is_none_or(|name| !removed.contains(name)));
        self.write_index(&index)
    }

    /// The descriptor stored under `name`, with its annotations.
    pub fn resolve_ref(&self, name: &str) -> Result<Option<Descriptor>, StoreError> {
        let snapshot = self.read_index()?;
        // The last one wins if another tool wrote duplicates: set_ref appends.
        let Some(entry) = snapshot.by_name.get(name).map(|position| &index_manifests(&snapshot.index)[*position])
        else {
            return Ok(None);
        };
        let descriptor = serde_json::from_value(entry.clone())
            .map_err(|error| self.unusable_index(format!("has an entry {name:?} hpn cannot read ({error})")))?;
        Ok(Some(descriptor))
    }

    /// Every named entry, in index.json order. Entries without a name or that
    /// hpn cannot parse (e.g. a sha512 digest from another tool) are skipped.
    pub fn refs(&self) -> Result<Vec<(String, Descriptor)>, StoreError> {
        let snapshot = self.read_index()?;
        Ok(index_manifests(&snapshot.index)
            .iter()
            .filter_map(|entry| {
                let name = ref_name(entry)?;
                match serde_json::from_value::<Descriptor>(entry.clone()) {
                    Ok(descriptor) => Some((name.to_owned(), descriptor)),
                    Err(error) => {
                        tracing::warn!(name, %error, "skipping an index.json entry hpn cannot read");
                        None
                    }
                }
            })
            .collect())
    }

    /// Every entry of index.json that hpn can parse, named or not: the roots gc keeps.
    pub(crate) fn all_entries(&self) -> Result<Vec<(Option<String>, Descriptor)>, StoreError> {
        let snapshot = self.read_index()?;
        index_manifests(&snapshot.index)
            .iter()
            .map(|entry| {
                let descriptor = serde_json::from_value::<Descriptor>(entry.clone())
                    .map_err(|error| self.unusable_index(format!("has an entry hpn cannot read ({error})")))?;
                Ok((ref_name(entry).map(str::to_owned), descriptor))
            })
            .collect()
    }

    /// hpn's store locks `index.json.lock`; a layout hpn does not own is
    /// locked by a `flock` on its directory, so no file of hpn's is left in
    /// it (and index.json itself cannot carry the lock: it is replaced by
    /// rename on every write).
    pub(crate) fn lock_index(&self) -> Result<IndexLock, StoreError> {
        let (file, path) = match self.ownership {
            Ownership::Store => (open_lock_file(&self.root_dir, INDEX_LOCK_FILE)?, self.root.join(INDEX_LOCK_FILE)),
            Ownership::Layout => {
                let directory =
                    File::open(&self.root).map_err(|error| StoreError::io("open directory", &self.root, error))?;
                (directory, self.root.clone())
            }
        };
        file.lock().map_err(|error| StoreError::io("lock", &path, error))?;
        Ok(IndexLock { _file: file })
    }

    /// Creates an empty index.json if there is none and no blobs either.
    /// Under the lock: checking and creating without it could overwrite a
    /// concurrent process's refs. Blobs without an index are refs lost (a
    /// deletion, a partial restore): an empty index would tell gc to delete
    /// them all, so the index stays missing and every reader fails instead.
    pub(crate) fn ensure_index(&self) -> Result<(), StoreError> {
        let exists = || {
            self.root_dir
                .exists(INDEX_FILE)
                .map_err(|error| StoreError::io("look for", self.root.join(INDEX_FILE), error))
        };
        if exists()? {
            return self.read_index().map(drop);
        }
        let _lock = self.lock_index()?;
        if exists()? {
            return Ok(());
        }
        if self.holds_blobs()? {
            // Left missing: read_index's error says what is wrong when a command needs the refs.
            return Ok(());
        }
        self.write_index(&json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []}))
    }

    /// Whether `blobs/sha256/` holds anything but temp files.
    fn holds_blobs(&self) -> Result<bool, StoreError> {
        let names = self.blobs_dir.names().map_err(|error| StoreError::io("list", self.blobs_dir.path(), error))?;
        Ok(names.iter().any(|name| !name.to_string_lossy().starts_with(TEMP_PREFIX)))
    }

    /// index.json, re-read only when its stat changed since the last read.
    pub(crate) fn read_index(&self) -> Result<Arc<IndexSnapshot>, StoreError> {
        let mut cached = self.index_cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (stat, index) = self.parse_index(cached.as_ref().map(|snapshot| snapshot.stat))?;
        let Some(index) = index else {
            return Ok(Arc::clone(cached.as_ref().expect("parse_index skips only a cached stat")));
        };
        let by_name = index_manifests(&index)
            .iter()
            .enumerate()
            .filter_map(|(position, entry)| Some((ref_name(entry)?.to_owned(), position)))
            .collect();
        let snapshot = Arc::new(IndexSnapshot { stat, index, by_name });
        *cached = Some(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// index.json as it is now, for a rewrite under the lock: a stat can
    /// repeat (timestamps are coarse, inode numbers are reused), and a stale
    /// read there would lose another process's names.
    fn read_index_fresh(&self) -> Result<Value, StoreError> {
        let (_, index) = self.parse_index(None)?;
        Ok(index.expect("parsed when no stat is known"))
    }

    /// Opens and parses index.json, unless its stat is `known` (then `None`).
    fn parse_index(&self, known: Option<StatKey>) -> Result<(StatKey, Option<Value>), StoreError> {
        let path = self.root.join(INDEX_FILE);
        let failed = |error: io::Error| match error.kind() {
            io::ErrorKind::NotFound => self.unusable_index("is missing".to_owned()),
            _ => StoreError::io("read", &path, error),
        };
        let mut file = self.root_dir.open_regular(INDEX_FILE).map_err(failed)?;
        let stat = StatKey::of(&file.metadata().map_err(failed)?);
        if known == Some(stat) {
            return Ok((stat, None));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(failed)?;
        let index: Value =
            serde_json::from_slice(&bytes).map_err(|error| self.unusable_index(format!("is not JSON ({error})")))?;
        if !index.get("manifests").is_some_and(Value::is_array) {
            return Err(self.unusable_index("has no \"manifests\" array".to_owned()));
        }
        Ok((stat, Some(index)))
    }

    fn unusable_index(&self, reason: String) -> StoreError {
        StoreError::UnusableIndex { path: self.root.join(INDEX_FILE), reason }
    }

    fn write_index(&self, index: &Value) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(index).expect("a JSON value always serializes");
        // The new file's stat might repeat the cached one's (see read_index_fresh).
        *self.index_cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.write_file_atomically(INDEX_FILE, &bytes)
    }
}

/// The index.json entry naming `descriptor` `name`, under both the OCI and
/// the containerd annotation.
fn ref_entry(name: &str, descriptor: &Descriptor) -> Value {
    let mut entry = descriptor.clone();
    entry.annotations.insert(annotation::REF_NAME.to_owned(), name.to_owned());
    entry.annotations.insert(annotation::CONTAINERD_IMAGE_NAME.to_owned(), name.to_owned());
    serde_json::to_value(&entry).expect("a descriptor always serializes to JSON")
}

fn validate_ref_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(StoreError::InvalidRefName(name.to_owned()));
    }
    Ok(())
}

fn ref_name(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(annotation::REF_NAME)?.as_str()
}

fn index_manifests(index: &Value) -> &[Value] {
    index.get("manifests").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// read_index() has checked that "manifests" is an array.
fn manifests_mut(index: &mut Value) -> &mut Vec<Value> {
    index.get_mut("manifests").and_then(Value::as_array_mut).expect("read_index checked the manifests array")
}
