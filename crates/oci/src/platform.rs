use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An image platform as in an index entry: `linux/arm64/v8`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, as Go names it (`linux`, `windows`).
    pub os: String,
    /// CPU architecture, as Go names it (`amd64`, `arm64`).
    pub architecture: String,
    /// CPU variant (`v7`, `v8`), where the architecture has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A `--platform` value that is not `os/arch` or `os/arch/variant`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {0:?}: expected os/arch or os/arch/variant, like linux/amd64 or linux/arm64/v8")]
pub struct PlatformError(String);

impl Platform {
    /// A platform from its parts, taken as given (no normalization).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self { os: os.to_owned(), architecture: architecture.to_owned(), variant: variant.map(str::to_owned) }
    }

    /// The platform this binary was built for, in Go's naming as registries use it.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        let variant = match architecture {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            _ => None,
        };
        Self::new(std::env::consts::OS, architecture, variant)
    }

    /// Whether an index entry for `candidate` satisfies a request for `self`.
    /// A missing variant on either side matches, and `arm64` treats `v8` as
    /// its default, as containerd's matcher does.
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        let normalize = |variant: &Option<String>| match (self.architecture.as_str(), variant.as_deref()) {
            ("arm64", Some("v8")) => None,
            (_, variant) => variant.map(str::to_owned),
        };
        match (normalize(&self.variant), normalize(&candidate.variant)) {
            (Some(wanted), Some(offered)) => wanted == offered,
            _ => true,
        }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid_part =
            |part: &&str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid_part) {
            return Err(PlatformError(text.to_owned()));
        }
        Ok(Self::new(
            &parts[0].to_lowercase(),
            &parts[1].to_lowercase(),
            parts.get(2).map(|v| v.to_lowercase()).as_deref(),
        ))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let platform: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(platform.variant.as_deref(), Some("v8"));
        assert_eq!(platform.to_string(), "linux/arm64/v8");
        assert_eq!("linux/amd64".parse::<Platform>().unwrap().to_string(), "linux/amd64");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn matching_treats_missing_variants_and_arm64_v8_as_compatible() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        assert!(arm64.matches(&"linux/arm64/v8".parse().unwrap()));
        assert!("linux/arm64/v8".parse::<Platform>().unwrap().matches(&arm64));
        let armv7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(!armv7.matches(&"linux/arm/v6".parse().unwrap()));
        assert!(!"linux/amd64".parse::<Platform>().unwrap().matches(&arm64));
    }

    #[test]
    fn host_platform_is_linux_amd64_here() {
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(Platform::host().to_string(), "linux/amd64");
        }
    }
}
