//! Which repositories of which registries hold a blob: the places a
//! cross-repository mount can borrow it from instead of uploading it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hpn_oci::{Digest, Reference};
use serde::{Deserialize, Serialize};

use crate::mutex::lock;

/// Repositories remembered per blob; a mount tries the most recent first.
const PLACES_PER_BLOB: usize = 4;
/// Blobs remembered in the file; the least recently seen go first.
const BLOBS_KEPT: usize = 20_000;
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Place {
    registry: String,
    repository: String,
    /// Unix seconds when hpn last saw the blob there.
    seen: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LocationsFile {
    version: u32,
    blobs: HashMap<Digest, Vec<Place>>,
}

/// Where blobs were seen, in this run and, when backed by a file, in earlier
/// ones: a script that pushes one image per `hpn push` or `hpn copy` still
/// mounts the base layer the previous image uploaded (skopeo keeps a
/// blob-info cache for the same reason). Only a hint: a mount that fails
/// falls back to an upload, so a stale or lost entry costs time, not
/// correctness. A file-backed one saves itself when dropped.
#[derive(Debug)]
pub struct BlobLocations {
    file: Option<PathBuf>,
    blobs: Mutex<HashMap<Digest, Vec<Place>>>,
}

impl BlobLocations {
    /// Locations for this run only.
    pub fn in_memory() -> Self {
        Self { file: None, blobs: Mutex::new(HashMap::new()) }
    }

    /// Locations read from `file`, written back by [`BlobLocations::save`].
    /// A missing, unreadable or foreign file starts empty (logged): it is a cache.
    pub fn load(file: &Path) -> Self {
        let blobs = match read_file(file) {
            Ok(blobs) => blobs,
            Err(reason) => {
                tracing::debug!(file = %file.display(), "not using remembered blob locations: {reason}");
                HashMap::new()
            }
        };
        Self { file: Some(file.to_owned()), blobs: Mutex::new(blobs) }
    }

    /// Notes that `place`'s repository holds the blob.
    pub fn remember(&self, place: &Reference, digest: &Digest) {
        let mut blobs = lock(&self.blobs);
        let places = blobs.entry(digest.clone()).or_default();
        places.retain(|known| known.registry != place.registry() || known.repository != place.repository());
        places.insert(
            0,
            Place { registry: place.registry().to_owned(), repository: place.repository().to_owned(), seen: now() },
        );
        places.truncate(PLACES_PER_BLOB);
    }

    /// Repositories of `registry` known to hold the blob, most recent first.
    pub fn repositories(&self, registry: &str, digest: &Digest) -> Vec<String> {
        let blobs = lock(&self.blobs);
        let places = blobs.get(digest).into_iter().flatten();
        places.filter(|place| place.registry == registry).map(|place| place.repository.clone()).collect()
    }

    /// Writes what this run learned back to the file, merged with what other
    /// processes wrote there meanwhile (the newer sighting wins), through a
    /// temp file and a rename. Two runs finishing at the same moment may lose
    /// one's additions: a cache can afford that, a lock per run would not pay.
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        let mut merged = read_file(file).unwrap_or_default();
        {
            let blobs = lock(&self.blobs);
            for (digest, places) in blobs.iter() {
                let known = merged.entry(digest.clone()).or_default();
                for place in places {
                    match known.iter_mut().find(|k| k.registry == place.registry && k.repository == place.repository) {
                        Some(existing) => existing.seen = existing.seen.max(place.seen),
                        None => known.push(place.clone()),
                    }
                }
                known.sort_by_key(|place| std::cmp::Reverse(place.seen));
                known.truncate(PLACES_PER_BLOB);
            }
        }
        if merged.len() > BLOBS_KEPT {
            let mut by_age: Vec<(u64, Digest)> = merged
                .iter()
                .map(|(digest, places)| (places.iter().map(|place| place.seen).max().unwrap_or(0), digest.clone()))
                .collect();
            by_age.sort_unstable_by_key(|(seen, _)| std::cmp::Reverse(*seen));
            for (_, digest) in by_age.drain(BLOBS_KEPT..) {
                merged.remove(&digest);
            }
        }
        if let Err(error) = write_file(file, &LocationsFile { version: FORMAT_VERSION, blobs: merged }) {
            tracing::debug!(file = %file.display(), %error, "cannot remember blob locations for later runs");
        }
    }
}

impl Drop for BlobLocations {
    fn drop(&mut self) {
        self.save();
    }
}

fn read_file(file: &Path) -> Result<HashMap<Digest, Vec<Place>>, String> {
    let metadata = std::fs::metadata(file).map_err(|error| error.to_string())?;
    if metadata.len() > hpn_oci::limits::STATE_FILE {
        return Err(format!("{} bytes is more than hpn writes", metadata.len()));
    }
    let bytes = std::fs::read(file).map_err(|error| error.to_string())?;
    let parsed: LocationsFile = serde_json::from_slice(&bytes).map_err(|error| error.to_string())?;
    if parsed.version != FORMAT_VERSION {
        return Err(format!("format version {} is not {FORMAT_VERSION}", parsed.version));
    }
    Ok(parsed.blobs)
}

fn write_file(file: &Path, content: &LocationsFile) -> std::io::Result<()> {
    let dir = file.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(&serde_json::to_vec(content).map_err(std::io::Error::other)?)?;
    temp.persist(file).map_err(|error| error.error)?;
    Ok(())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Reference {
        text.parse().unwrap()
    }

    #[test]
    fn places_are_per_registry_most_recent_first_and_bounded() {
        let locations = BlobLocations::in_memory();
        let digest = Digest::of(b"layer");
        for repository in ["a", "b", "c", "d", "e", "b"] {
            locations.remember(&reference(&format!("registry.local:5000/team/{repository}:1")), &digest);
        }
        locations.remember(&reference("other.local/team/x:1"), &digest);
        let repositories = locations.repositories("registry.local:5000", &digest);
        assert_eq!(repositories, ["team/b", "team/e", "team/d"]);
        assert_eq!(locations.repositories("other.local", &digest), ["team/x"]);
        assert!(locations.repositories("registry.local:5000", &Digest::of(b"other")).is_empty());
    }

    #[test]
    fn saved_locations_merge_with_the_file_and_survive_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache/blob-locations.json");
        let digest = Digest::of(b"layer");

        let first = BlobLocations::load(&file);
        first.remember(&reference("registry.local/one/app:1"), &digest);
        // Another process saves in between; neither loses the other's place.
        let second = BlobLocations::load(&file);
        second.remember(&reference("registry.local/two/app:1"), &digest);
        drop(second);
        drop(first);
        let mut known = BlobLocations::load(&file).repositories("registry.local", &digest);
        known.sort();
        assert_eq!(known, ["one/app", "two/app"]);

        std::fs::write(&file, b"{ not json").unwrap();
        assert!(BlobLocations::load(&file).repositories("registry.local", &digest).is_empty());
    }
}
