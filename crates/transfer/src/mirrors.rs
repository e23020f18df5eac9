//! Registry mirrors, for reads: where else an image can be pulled from
//! before its own registry (a Harbor or Nexus pull-through cache in front of
//! Docker Hub), as containers-registries.conf(5) and docker's
//! `registry-mirrors` describe them.
//!
//! A rule maps a prefix of image names (`docker.io`, `quay.io/team`) to
//! ordered locations that hold the same repositories under another prefix
//! (`harbor.local/dockerhub-proxy`). A read tries each location in order and
//! then the image's own registry; the image keeps its own (logical) name
//! wherever it is recorded. Pushes never go to a mirror.

use std::path::Path;

use hpn_oci::Reference;
use serde::Deserialize;

/// Which pulls a mirror serves (`pull-from-mirror`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullFromMirror {
    /// Every pull, by tag or by digest.
    #[default]
    All,
    /// Only pulls by digest: a mirror may lag behind what a tag names now,
    /// never behind what a digest names.
    DigestOnly,
}

/// A location a prefix is mirrored at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorLocation {
    /// `HOST[:PORT][/PATH]` standing for the prefix.
    pub location: String,
    /// Which pulls it serves.
    pub pull_from_mirror: PullFromMirror,
    /// Reached over plain HTTP or unverified TLS (registries.conf `insecure`).
    pub insecure: bool,
}

/// Registry mirrors for reads: prefix rules, most specific first.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    /// `(prefix, locations)`, kept sorted longest prefix first.
    rules: Vec<(String, Vec<MirrorLocation>)>,
}

/// A mirror rule that cannot be used, with why.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct MirrorError {
    /// Where the rule came from (a file, a flag).
    pub origin: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Mirrors {
    /// No mirrors: every image is read from its own registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `location` as the next mirror of `prefix`. Both are registry
    /// names, optionally followed by a repository path (`docker.io`,
    /// `harbor.local/dockerhub-proxy`); `origin` names where the rule came
    /// from, for errors.
    pub fn add(&mut self, prefix: &str, location: MirrorLocation, origin: &str) -> Result<(), MirrorError> {
        let invalid = |reason: String| MirrorError { origin: origin.to_owned(), reason };
        let prefix = normalize_prefix(prefix).map_err(|reason| invalid(format!("prefix {prefix:?}: {reason}")))?;
        let target = normalize_prefix(&location.location)
            .map_err(|reason| invalid(format!("location {:?}: {reason}", location.location)))?;
        let location = MirrorLocation { location: target, ..location };
        match self.rules.iter_mut().find(|(existing, _)| *existing == prefix) {
            Some((_, locations)) => locations.push(location),
            None => {
                self.rules.push((prefix, vec![location]));
                self.rules.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
            }
        }
        Ok(())
    }

    /// Adds the mirrors of a containers-registries.conf(5) v2 file:
    /// `[[registry]]` tables with `prefix` (or `location` alone) and their
    /// `[[registry.mirror]]` entries (`location`, `insecure`,
    /// `pull-from-mirror`). A registry's own `location`, when it differs from
    /// its prefix, is where that prefix is read from after its mirrors.
    pub fn add_registries_conf(&mut self, text: &str, path: &Path) -> Result<(), MirrorError> {
        let origin = path.display().to_string();
        let file: RegistriesConf =
            toml::from_str(text).map_err(|error| MirrorError { origin: origin.clone(), reason: error.to_string() })?;
        for registry in file.registry {
            let Some(prefix) = registry.prefix.clone().or_else(|| registry.location.clone()) else {
                return Err(MirrorError {
                    origin,
                    reason: "a [[registry]] has neither prefix nor location".to_owned(),
                });
            };
            for mirror in registry.mirror {
                let pull_from_mirror = mirror.pull_from_mirror.or(registry.pull_from_mirror).unwrap_or_default();
                let location =
                    MirrorLocation { location: mirror.location, pull_from_mirror, insecure: mirror.insecure };
                self.add(&prefix, location, &origin)?;
            }
            let same_place = |location: &String| normalize_prefix(location).ok() == normalize_prefix(&prefix).ok();
            if let Some(location) = registry.location.filter(|location| !same_place(location)) {
                // The prefix's own registry moved: the last place to read from.
                let moved =
                    MirrorLocation { location, pull_from_mirror: PullFromMirror::All, insecure: registry.insecure };
                self.add(&prefix, moved, &origin)?;
            }
        }
        Ok(())
    }

    /// The hosts of mirrors marked insecure, for the registry client.
    pub fn insecure_hosts(&self) -> Vec<String> {
        self.rules
            .iter()
            .flat_map(|(_, locations)| locations)
            .filter(|location| location.insecure)
            .map(|location| location.location.split('/').next().unwrap_or_default().to_owned())
            .collect()
    }

    /// Where to read `image` from, in order: each mirror of the most
    /// specific matching prefix that serves this pull, as a reference into
    /// that location. The image's own name, to try last, is not included.
    pub fn locations(&self, image: &Reference) -> Vec<Reference> {
        let name = format!("{}/{}", image.registry(), image.repository());
        let Some((prefix, locations)) = self.rules.iter().find(|(prefix, _)| matches_prefix(&name, prefix)) else {
            return Vec::new();
        };
        let rest = &name[prefix.len()..];
        locations
            .iter()
            .filter(|location| location.pull_from_mirror == PullFromMirror::All || image.digest().is_some())
            .filter_map(|location| {
                let mirrored = format!("{}{rest}", location.location);
                let (registry, repository) = mirrored.split_once('/')?;
                Reference::new(registry, repository, image.tag(), image.digest().cloned()).ok()
            })
            .filter(|mirrored| mirrored != image)
            .collect()
    }
}

/// `docker.io/library` style, without a scheme or a trailing slash; Docker
/// Hub's aliases are one prefix.
fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let prefix = prefix.trim().trim_end_matches('/');
    if prefix.is_empty() {
        return Err("it is empty".to_owned());
    }
    if prefix.contains("://") {
        return Err("write it without a scheme (host[:port][/path])".to_owned());
    }
    if prefix.contains(['@', ' ']) || prefix.starts_with('*') {
        return Err("only host[:port][/path] prefixes are supported".to_owned());
    }
    let (host, path) = prefix.split_once('/').map_or((prefix, None), |(host, path)| (host, Some(path)));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        host => host,
    };
    Ok(match path {
        Some(path) => format!("{host}/{path}"),
        None => host.to_owned(),
    })
}

/// Whether `name` (`host/repository`) is `prefix` or lies under it.
fn matches_prefix(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[derive(Debug, Deserialize)]
struct RegistriesConf {
    #[serde(default)]
    registry: Vec<RegistryTable>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegistryTable {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<PullFromMirror>,
    #[serde(default)]
    mirror: Vec<MirrorTable>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MirrorTable {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<PullFromMirror>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Reference {
        text.parse().unwrap()
    }

    fn names(references: Vec<Reference>) -> Vec<String> {
        references.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_most_specific_prefix_maps_the_rest_of_the_name() {
        let mut mirrors = Mirrors::new();
        let all = |location: &str| MirrorLocation {
            location: location.into(),
            pull_from_mirror: PullFromMirror::All,
            insecure: false,
        };
        mirrors.add("docker.io", all("harbor.local/dockerhub-proxy"), "test").unwrap();
        mirrors.add("docker.io", all("nexus.local:8082"), "test").unwrap();
        mirrors.add("docker.io/team", all("team.local/cache"), "test").unwrap();
        assert_eq!(
            names(mirrors.locations(&reference("nginx:1.25"))),
            ["harbor.local/dockerhub-proxy/library/nginx:1.25", "nexus.local:8082/library/nginx:1.25"]
        );
        assert_eq!(names(mirrors.locations(&reference("team/app:1"))), ["team.local/cache/app:1"]);
        // A prefix matches whole path components only.
        assert!(mirrors.locations(&reference("quay.io/x/y:1")).is_empty());
        let mut narrow = Mirrors::new();
        narrow.add("docker.io/lib", all("m.local"), "test").unwrap();
        assert!(narrow.locations(&reference("nginx")).is_empty());
    }

    #[test]
    fn digest_only_mirrors_serve_pulls_by_digest() {
        let mut mirrors = Mirrors::new();
        let location = MirrorLocation {
            location: "m.local/hub".into(),
            pull_from_mirror: PullFromMirror::DigestOnly,
            insecure: true,
        };
        mirrors.add("docker.io", location, "test").unwrap();
        assert!(mirrors.locations(&reference("nginx:1")).is_empty());
        let digest = format!("nginx@sha256:{}", "a".repeat(64));
        assert_eq!(mirrors.locations(&reference(&digest)).len(), 1);
        assert_eq!(mirrors.insecure_hosts(), ["m.local"]);
    }

    #[test]
    fn registries_conf_v2_tables_are_read() {
        let text = r#"
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"

[[registry.mirror]]
location = "harbor.local/dockerhub-proxy"
insecure = true

[[registry.mirror]]
location = "digest.local/hub"
pull-from-mirror = "digest-only"

[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "q.local"
"#;
        let mut mirrors = Mirrors::new();
        mirrors.add_registries_conf(text, Path::new("registries.conf")).unwrap();
        assert_eq!(names(mirrors.locations(&reference("nginx:1"))), ["harbor.local/dockerhub-proxy/library/nginx:1"]);
        assert_eq!(names(mirrors.locations(&reference("quay.io/a/b:2"))), ["q.local/a/b:2"]);
        assert_eq!(mirrors.insecure_hosts(), ["harbor.local"]);
        let error = mirrors.add_registries_conf("[[registry]]\ninsecure = true\n", Path::new("bad.conf")).unwrap_err();
        assert!(error.to_string().starts_with("bad.conf: "), "{error}");
    }
}
