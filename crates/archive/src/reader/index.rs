//! The table of contents of an archive: entry name → where its bytes are.
//!
//! Built once at open (from tar headers, or from a walk of an OCI layout
//! directory); afterwards every read goes straight to an offset or a file.
//! Links are kept as links to other *names in this table*: resolving one
//! never touches the filesystem, so a link can only ever lead to bytes that
//! are part of the archive itself.

use std::collections::HashMap;
use std::path::PathBuf;

/// More entries than any image archive has (a `docker save` of 100 images of
/// 100 layers is ~30 000); bounds the memory a hostile archive can make the
/// index take.
pub(crate) const MAX_ENTRIES: usize = 250_000;
/// Link chains longer than this are refused (and cycles with them).
const MAX_LINK_HOPS: usize = 8;

/// Where a regular entry's bytes live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Location {
    /// At this offset of the (possibly decompressed) tar file.
    Tar { offset: u64 },
    /// A file of an OCI layout directory; device and inode are recorded at
    /// open so a file swapped (e.g. for a symlink) afterwards is noticed.
    File { path: PathBuf, dev: u64, ino: u64 },
}

/// A regular file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileEntry {
    /// The name the bytes were stored under, for messages.
    pub name: String,
    pub location: Location,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    File(FileEntry),
    /// A symlink or hard link to another name of the archive; `Err` holds why
    /// its target cannot be used (absolute, leaves the archive).
    Link {
        target: Result<String, String>,
        symbolic: bool,
    },
    Directory,
    /// Devices, FIFOs, sparse files: never image content.
    Unsupported(&'static str),
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    nodes: HashMap<String, Node>,
}

/// The outcome of looking a name up.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    Found(&'a FileEntry),
    Missing,
    /// The name exists but cannot be read as a file; the reason says why.
    Unusable(String),
}

impl Index {
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn insert(&mut self, name: String, node: Node) {
        self.nodes.insert(name, node);
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Resolves `name` (already normalized) through links to a regular file.
    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        let mut current = name;
        for _ in 0..=MAX_LINK_HOPS {
            match self.nodes.get(current) {
                None if current == name => return Lookup::Missing,
                None => {
                    return Lookup::Unusable(format!(
                        "it is a link to {current:?}, which the archive does not contain"
                    ));
                }
                Some(Node::File(entry)) => return Lookup::Found(entry),
                Some(Node::Directory) => return Lookup::Unusable(format!("{current:?} is a directory")),
                Some(Node::Unsupported(kind)) => return Lookup::Unusable(format!("{current:?} is a {kind}")),
                Some(Node::Link { target: Err(reason), symbolic }) => {
                    let kind = if *symbolic { "symlink" } else { "hard link" };
                    return Lookup::Unusable(format!("{current:?} is a {kind} that {reason}"));
                }
                Some(Node::Link { target: Ok(target), .. }) => current = target,
            }
        }
        Lookup::Unusable(format!("it leads through more than {MAX_LINK_HOPS} links (a loop?)"))
    }
}

/// Why an entry name is refused.
pub(crate) type NameError = &'static str;

/// Normalizes an entry name as stored in the archive: `./a//b/` → `a/b`.
/// `Ok(None)` for a name that is not UTF-8 (no JSON file can name it, so it
/// cannot be part of an image); errors for names that would escape an
/// extraction directory, which no image archive contains.
pub(crate) fn normalize_name(raw: &[u8]) -> Result<Option<String>, NameError> {
    if raw.contains(&0) {
        return Err("its name contains a NUL byte");
    }
    let Ok(text) = std::str::from_utf8(raw) else { return Ok(None) };
    if text.starts_with('/') {
        return Err("its name is an absolute path");
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("its name contains `..`"),
            part => parts.push(part),
        }
    }
    Ok(Some(parts.join("/")))
}

/// Normalizes a path that JSON metadata (manifest.json) gives for an entry;
/// the same rules as entry names.
pub(crate) fn normalize_reference(text: &str) -> Result<String, NameError> {
    match normalize_name(text.as_bytes())? {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err("it is not a file name"),
    }
}

/// The archive name a symlink at `link_name` pointing at `target` refers to.
/// Relative targets resolve against the link's directory, as a filesystem
/// would; a target that is absolute or climbs out of the archive is refused.
pub(crate) fn symlink_target(link_name: &str, target: &[u8]) -> Result<String, String> {
    let target = std::str::from_utf8(target).map_err(|_| "points to a name that is not UTF-8".to_owned())?;
    if target.contains('\0') {
        return Err("points to a name containing a NUL byte".to_owned());
    }
    if target.starts_with('/') {
        return Err(format!("points to the absolute path {target:?}"));
    }
    let mut parts: Vec<&str> = link_name.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("points outside the archive ({target:?})"));
                }
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(format!("points to the archive root ({target:?})"));
    }
    Ok(parts.join("/"))
}

/// A hard link's target is a name from the archive root.
pub(crate) fn hardlink_target(target: &[u8]) -> Result<String, String> {
    match normalize_name(target) {
        Ok(Some(name)) if !name.is_empty() => Ok(name),
        Ok(_) => Err("points to a name that is not UTF-8 or empty".to_owned()),
        Err(reason) => Err(format!("points to a name that is refused ({})", reason.trim_start_matches("its name "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_escapes_refused() {
        assert_eq!(normalize_name(b"./manifest.json").unwrap().unwrap(), "manifest.json");
        assert_eq!(normalize_name(b"blobs//sha256/").unwrap().unwrap(), "blobs/sha256");
        assert_eq!(normalize_name(b"./").unwrap().unwrap(), "");
        assert!(normalize_name(b"a/../../etc/passwd").is_err());
        assert!(normalize_name(b"/etc/passwd").is_err());
        assert!(normalize_name(b"a\0b").is_err());
        assert_eq!(normalize_name(b"caf\xe9").unwrap(), None);
        assert!(normalize_reference(".").is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_archive_only() {
        assert_eq!(symlink_target("aa/layer.tar", b"../bb/layer.tar").unwrap(), "bb/layer.tar");
        assert_eq!(symlink_target("aa/layer.tar", b"../cc.tar").unwrap(), "cc.tar");
        assert_eq!(symlink_target("aa/layer.tar", b"x.tar").unwrap(), "aa/x.tar");
        assert!(symlink_target("aa/layer.tar", b"../../etc/passwd").is_err());
        assert!(symlink_target("layer.tar", b"/etc/passwd").is_err());
        assert!(symlink_target("aa/layer.tar", b"..").is_err());
        assert_eq!(hardlink_target(b"./bb/layer.tar").unwrap(), "bb/layer.tar");
        assert!(hardlink_target(b"../x").is_err());
    }

    #[test]
    fn lookup_follows_links_and_stops_at_loops() {
        let mut index = Index::default();
        let file = FileEntry { name: "b".into(), location: Location::Tar { offset: 512 }, size: 3 };
        index.insert("b".into(), Node::File(file.clone()));
        index.insert("a".into(), Node::Link { target: Ok("b".into()), symbolic: true });
        index.insert("x".into(), Node::Link { target: Ok("y".into()), symbolic: true });
        index.insert("y".into(), Node::Link { target: Ok("x".into()), symbolic: false });
        index.insert("d".into(), Node::Directory);
        index.insert("dangling".into(), Node::Link { target: Ok("nowhere".into()), symbolic: true });
        assert!(matches!(index.lookup("a"), Lookup::Found(entry) if *entry == file));
        assert!(matches!(index.lookup("x"), Lookup::Unusable(reason) if reason.contains("loop")));
        assert!(matches!(index.lookup("d"), Lookup::Unusable(_)));
        assert!(matches!(index.lookup("dangling"), Lookup::Unusable(reason) if reason.contains("nowhere")));
        assert!(matches!(index.lookup("missing"), Lookup::Missing));
    }
}
