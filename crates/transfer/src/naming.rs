//! The Go hpn's conventions, kept so its users' scripts keep working: where
//! `save` puts per-image archives (`--save-mode`), where `load` looks for
//! them (`--load-mode`), and how `push` renames images (`--push-mode`).

use std::io;
use std::path::{Path, PathBuf};

use hpn_archive::ArchiveCompression;
use hpn_oci::{Reference, ReferenceError};

/// The project an image already belongs to: the first component of its
/// repository path (`team` in `harbor.local/team/app`), `library` when the
/// path has no project (`nginx`, `host:5000/app`).
pub fn own_project(reference: &Reference) -> &str {
    match reference.repository().split_once('/') {
        Some((project, _)) => project,
        None => "library",
    }
}

/// `--save-mode`: where the archive of each image goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveMode {
    /// 1: in the base directory.
    #[default]
    Flat,
    /// 2: in `images/`.
    Images,
    /// 3: in `images/<project>/`, the project being the image's own.
    ByProject,
}

impl SaveMode {
    /// The mode of the Go hpn's number for it (1–3).
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            1 => Some(Self::Flat),
            2 => Some(Self::Images),
            3 => Some(Self::ByProject),
            _ => None,
        }
    }

    /// `nginx:1.25` → `nginx_1.25.tar` under the mode's directory: the
    /// reference as the user wrote it (`written`), with `/` and `:` made `_`.
    pub fn archive_path(
        self,
        base: &Path,
        written: &str,
        reference: &Reference,
        compression: ArchiveCompression,
    ) -> PathBuf {
        let extension = match compression {
            ArchiveCompression::None => "",
            ArchiveCompression::Gzip => ".gz",
            ArchiveCompression::Zstd => ".zst",
        };
        let file_name = format!("{}.tar{extension}", written.replace(['/', ':'], "_"));
        match self {
            Self::Flat => base.join(file_name),
            Self::Images => base.join("images").join(file_name),
            Self::ByProject => base.join("images").join(own_project(reference)).join(file_name),
        }
    }
}

/// `--load-mode`: where `load` without `-i` finds archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    /// 1: in the base directory.
    #[default]
    Flat,
    /// 2: in `images/`.
    Images,
    /// 3: in `images/` and every directory below it.
    Recursive,
}

impl LoadMode {
    /// The mode of the Go hpn's number for it (1–3).
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            1 => Some(Self::Flat),
            2 => Some(Self::Images),
            3 => Some(Self::Recursive),
            _ => None,
        }
    }

    /// The directory this mode looks in under `base`.
    pub fn directory(self, base: &Path) -> PathBuf {
        match self {
            Self::Flat => base.to_owned(),
            Self::Images | Self::Recursive => base.join("images"),
        }
    }

    /// Every archive (`*.tar`, `.tar.gz`, `.tgz`, `.tar.zst`) the mode finds
    /// under `base`, sorted.
    pub fn find_archives(self, base: &Path) -> io::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        collect_archives(&self.directory(base), self == Self::Recursive, &mut found)?;
        found.sort();
        Ok(found)
    }
}

fn collect_archives(dir: &Path, recursive: bool, found: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if kind.is_dir() && recursive {
            collect_archives(&path, true, found)?;
        } else if kind.is_file() && [".tar", ".tar.gz", ".tgz", ".tar.zst"].iter().any(|suffix| name.ends_with(suffix))
        {
            found.push(path);
        }
    }
    Ok(())
}

/// `--push-mode`: how pushed images are named in the target registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushMode {
    /// 1: `registry/image:tag`.
    #[default]
    Flat,
    /// 2: `registry/project/image:tag`.
    WithProject,
}

impl PushMode {
    /// The mode of the Go hpn's number for it (1–2).
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            1 => Some(Self::Flat),
            2 => Some(Self::WithProject),
            _ => None,
        }
    }
}

/// Where images are pushed and how they are renamed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    registry: String,
    prefix: Option<String>,
    mode: PushMode,
    project: Option<String>,
}

impl PushTarget {
    /// A target from what the user gave as the registry: `HOST[:PORT]`,
    /// optionally followed by a path that is kept in front of every name
    /// (`harbor.local/mirror`). `project` is mode 2's project; without it
    /// each image keeps its own.
    pub fn new(registry: &str, mode: PushMode, project: Option<String>) -> Self {
        let (registry, prefix) = match registry.trim_end_matches('/').split_once('/') {
            Some((host, prefix)) => (host.to_owned(), Some(prefix.to_owned())),
            None => (registry.trim_end_matches('/').to_owned(), None),
        };
        Self { registry, prefix, mode, project }
    }

    /// The name `source` gets in the target registry: its last path
    /// component, behind the prefix and (mode 2) the project; tag and digest
    /// kept.
    pub fn name_for(&self, source: &Reference) -> Result<Reference, ReferenceError> {
        let image = source.repository().rsplit('/').next().unwrap_or(source.repository());
        let mut path: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        if self.mode == PushMode::WithProject {
            path.push(self.project.as_deref().unwrap_or_else(|| own_project(source)));
        }
        path.push(image);
        Reference::new(&self.registry, &path.join("/"), source.tag(), source.digest().cloned())
    }

    /// The registry host pushed to.
    pub fn registry(&self) -> &str {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(target: &PushTarget, source: &str) -> String {
        target.name_for(&source.parse().unwrap()).unwrap().to_string()
    }

    #[test]
    fn push_modes_name_images_like_the_go_hpn() {
        let simple = PushTarget::new("harbor.local", PushMode::Flat, None);
        assert_eq!(name(&simple, "nginx:1.25"), "harbor.local/nginx:1.25");
        assert_eq!(name(&simple, "quay.io/prometheus/alertmanager:v0.30.1"), "harbor.local/alertmanager:v0.30.1");

        let own = PushTarget::new("harbor.local", PushMode::WithProject, None);
        assert_eq!(name(&own, "nginx:1.25"), "harbor.local/library/nginx:1.25");
        assert_eq!(name(&own, "quay.io/prometheus/alertmanager:v1"), "harbor.local/prometheus/alertmanager:v1");

        let project = PushTarget::new("harbor.local:8443", PushMode::WithProject, Some("prod".into()));
        assert_eq!(name(&project, "quay.io/prometheus/alertmanager:v1"), "harbor.local:8443/prod/alertmanager:v1");

        let prefixed = PushTarget::new("harbor.local/mirror/", PushMode::Flat, None);
        assert_eq!(name(&prefixed, "nginx"), "harbor.local/mirror/nginx:latest");

        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(name(&simple, &format!("team/app@{digest}")), format!("harbor.local/app@{digest}"));
        assert!(PushTarget::new("bad host", PushMode::Flat, None).name_for(&"nginx".parse().unwrap()).is_err());
    }

    #[test]
    fn per_image_names_follow_the_go_hpn() {
        let base = Path::new("/w");
        let none = ArchiveCompression::None;
        let path = |mode: SaveMode, text: &str, compression| {
            mode.archive_path(base, text, &text.parse().unwrap(), compression)
        };
        assert_eq!(path(SaveMode::Flat, "nginx:latest", none), Path::new("/w/nginx_latest.tar"));
        assert_eq!(
            path(SaveMode::Images, "quay.io/prometheus/alertmanager:v0.30.1", none),
            Path::new("/w/images/quay.io_prometheus_alertmanager_v0.30.1.tar")
        );
        assert_eq!(
            path(SaveMode::ByProject, "harbor.local/team/app:1", ArchiveCompression::Gzip),
            Path::new("/w/images/team/harbor.local_team_app_1.tar.gz")
        );
        assert_eq!(path(SaveMode::ByProject, "nginx", none), Path::new("/w/images/library/nginx.tar"));
    }

    #[test]
    fn load_modes_find_archives_like_the_go_hpn() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for path in ["a.tar", "notes.txt", "images/b.tar.gz", "images/team/c.tar", "images/team/deep/d.tar.zst"] {
            let path = base.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        let names = |mode: LoadMode| -> Vec<String> {
            mode.find_archives(base)
                .unwrap()
                .iter()
                .map(|path| path.strip_prefix(base).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(names(LoadMode::Flat), ["a.tar"]);
        assert_eq!(names(LoadMode::Images), ["images/b.tar.gz"]);
        assert_eq!(names(LoadMode::Recursive), ["images/b.tar.gz", "images/team/c.tar", "images/team/deep/d.tar.zst"]);
    }
}
