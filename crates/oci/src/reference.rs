use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry name Docker gives to images without a registry component.
pub const DOCKER_HUB_REGISTRY: &str = "docker.io";
const LEGACY_DOCKER_HUB_REGISTRY: &str = "index.docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_REPOSITORY_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A fully normalized image reference, following Docker's grammar
/// (`distribution/reference`): `nginx` means `docker.io/library/nginx:latest`.
///
/// A reference always names a registry and a repository, and at least one of
/// a tag or a digest. When both are present the digest decides what is fetched
/// and the tag is kept as the name to record.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference, in Docker's grammar.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Nothing to parse.
    #[error("empty image reference")]
    Empty,
    /// Docker refuses uppercase repository names rather than lowercasing them.
    #[error("repository name must be lowercase")]
    Uppercase,
    /// The registry part is not a host name or address with an optional port.
    #[error("invalid registry host {0:?}")]
    InvalidRegistry(String),
    /// A path component of the repository breaks the grammar.
    #[error("invalid repository path component {0:?}: use lowercase letters, digits and single . _ - separators")]
    InvalidPathComponent(String),
    /// Registries refuse repository names over 255 characters.
    #[error("repository name is longer than {MAX_REPOSITORY_LEN} characters")]
    RepositoryTooLong,
    /// The tag breaks the grammar or is over 128 characters.
    #[error("invalid tag {0:?}: up to {MAX_TAG_LEN} letters, digits, _ . - and not starting with . or -")]
    InvalidTag(String),
    /// The part after `@` is not a digest hpn accepts.
    #[error("invalid digest: {0}")]
    InvalidDigest(#[from] crate::digest::DigestError),
}

impl Reference {
    /// Builds a reference from parts that are already normalized, checking them.
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Self, ReferenceError> {
        validate_registry(registry)?;
        validate_repository(repository)?;
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Self { registry: registry.to_owned(), repository: repository.to_owned(), tag, digest })
    }

    /// The registry as users name it (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one: also kept beside a digest, as the
    /// name to record.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest the reference is pinned to, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => unreachable!("a reference always has a tag or a digest"),
        }
    }

    /// The same repository pinned to `digest`, without the tag.
    pub fn with_digest_only(&self, digest: Digest) -> Self {
        Self { registry: self.registry.clone(), repository: self.repository.clone(), tag: None, digest: Some(digest) }
    }

    /// Registry and repository without tag or digest: `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Docker's short form of the name: `nginx`, `user/app`, `quay.io/org/app`.
    /// Only a one-component `library/` repository loses the prefix: `library/a/b`
    /// stays as it is, since `a/b` would name another repository.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(official) if !official.contains('/') => official.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// `familiar_name:tag`, the form `docker images` and `RepoTags` use.
    /// `None` for a reference by digest only: such an image has no tag to show.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|tag| format!("{}:{tag}", self.familiar_name()))
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.parse::<Digest>()?)),
            None => (input, None),
        };
        // A tag follows the last ':' unless that colon belongs to a port in the
        // registry component (then a '/' comes after it).
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if !rest[colon + 1..].contains('/') => (&rest[..colon], Some(&rest[colon + 1..])),
            _ => (rest, None),
        };
        let (registry, repository) = split_registry(name);
        if repository.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase);
        }
        let repository = if registry == DOCKER_HUB_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        Self::new(&registry, &repository, tag, digest)
    }
}

/// Docker's rule: the first path component is a registry host when it
/// contains a '.' or ':', or is `localhost`, or has uppercase letters.
fn split_registry(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            let registry = if first == LEGACY_DOCKER_HUB_REGISTRY { DOCKER_HUB_REGISTRY } else { first };
            (registry.to_owned(), rest)
        }
        _ => (DOCKER_HUB_REGISTRY.to_owned(), name),
    }
}

fn validate_registry(registry: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::InvalidRegistry(registry.to_owned());
    let (host, port) = if let Some(bracketed) = registry.strip_prefix('[') {
        let (ipv6, after) = bracketed.split_once(']').ok_or_else(invalid)?;
        if ipv6.is_empty() || !ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(invalid());
        }
        match after {
            "" => (None, None),
            port => (None, Some(port.strip_prefix(':').ok_or_else(invalid)?)),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let labels_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !labels_ok {
            return Err(invalid());
        }
    }
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid());
    }
    Ok(())
}

fn validate_repository(repository: &str) -> Result<(), ReferenceError> {
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err(ReferenceError::RepositoryTooLong);
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase);
    }
    repository.split('/').try_for_each(validate_path_component)
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn validate_path_component(component: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::InvalidPathComponent(component.to_owned());
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return Err(invalid());
    }
    let mut index = 0;
    while index < bytes.len() {
        if is_alnum(bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && !is_alnum(bytes[index]) {
            index += 1;
        }
        let separator = &component[start..index];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(invalid());
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let bytes = tag.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if valid { Ok(()) } else { Err(ReferenceError::InvalidTag(tag.to_owned())) }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(text: &str) -> Reference {
        text.parse().unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        assert_eq!(parse("nginx").to_string(), "docker.io/library/nginx:latest");
        assert_eq!(parse("nginx:1.25").to_string(), "docker.io/library/nginx:1.25");
        assert_eq!(parse("user/app").to_string(), "docker.io/user/app:latest");
        assert_eq!(parse("index.docker.io/library/nginx").to_string(), "docker.io/library/nginx:latest");
        assert_eq!(parse("docker.io/nginx").to_string(), "docker.io/library/nginx:latest");
    }

    #[test]
    fn registries_with_ports_and_digests() {
        let reference = parse(&format!("localhost:5000/a/b@{DIGEST}"));
        assert_eq!(reference.registry(), "localhost:5000");
        assert_eq!(reference.repository(), "a/b");
        assert_eq!(reference.tag(), None);
        assert_eq!(reference.digest().unwrap().to_string(), DIGEST);
        assert_eq!(reference.manifest_reference(), DIGEST);
        assert_eq!(reference.familiar_tagged(), None);

        let both = parse(&format!("127.0.0.1:5000/x:v1@{DIGEST}"));
        assert_eq!(both.tag(), Some("v1"));
        assert_eq!(both.manifest_reference(), DIGEST);
        assert_eq!(both.to_string(), format!("127.0.0.1:5000/x:v1@{DIGEST}"));

        assert_eq!(parse("localhost/app").registry(), "localhost");
        assert_eq!(parse("[::1]:5000/app:2").registry(), "[::1]:5000");
        assert_eq!(parse("harbor.example.com/team/app:1.2").manifest_reference(), "1.2");
    }

    #[test]
    fn familiar_forms_match_docker() {
        assert_eq!(parse("nginx").familiar_tagged().unwrap(), "nginx:latest");
        assert_eq!(parse("user/app:2").familiar_tagged().unwrap(), "user/app:2");
        assert_eq!(
            parse("harbor.example.com/team/app:1.2").familiar_tagged().unwrap(),
            "harbor.example.com/team/app:1.2"
        );
    }

    #[test]
    fn invalid_references_are_rejected_with_a_reason() {
        assert_eq!("".parse::<Reference>(), Err(ReferenceError::Empty));
        assert_eq!("Nginx".parse::<Reference>(), Err(ReferenceError::Uppercase));
        assert!(matches!("nginx:".parse::<Reference>(), Err(ReferenceError::InvalidTag(_))));
        assert!(matches!("nginx:-bad".parse::<Reference>(), Err(ReferenceError::InvalidTag(_))));
        assert!(matches!("a//b".parse::<Reference>(), Err(ReferenceError::InvalidPathComponent(_))));
        assert!(matches!("a/b_".parse::<Reference>(), Err(ReferenceError::InvalidPathComponent(_))));
        assert!(matches!("a..b".parse::<Reference>(), Err(ReferenceError::InvalidPathComponent(_))));
        assert!(matches!("nginx@sha256:abc".parse::<Reference>(), Err(ReferenceError::InvalidDigest(_))));
        assert!(matches!("host:port/app".parse::<Reference>(), Err(ReferenceError::InvalidRegistry(_))));
        assert!(matches!("my host/app".parse::<Reference>(), Err(ReferenceError::InvalidPathComponent(_))));
        let long = format!("a/{}", "b".repeat(300));
        assert_eq!(long.parse::<Reference>(), Err(ReferenceError::RepositoryTooLong));
    }

    #[test]
    fn separators_follow_the_grammar() {
        parse("a__b/c-d/e---f/g.h_i");
        assert!("a___b".parse::<Reference>().is_err());
    }
}
