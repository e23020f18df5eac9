use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A content digest. Only `sha256` is accepted: it is what every registry,
/// Docker and podman produce, and refusing others up front beats failing
/// half-way through a transfer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// Why a string is not a digest hpn accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestError {
    /// Not `sha256:` followed by 64 lowercase hex digits.
    #[error("digest {0:?} is not of the form sha256:<64 lowercase hex digits>")]
    Malformed(String),
    /// A well-formed digest of another algorithm (`sha512:…`): callers that
    /// only use a digest as a hint can skip it rather than fail.
    #[error("digest algorithm {0:?} is not supported (only sha256 is)")]
    UnsupportedAlgorithm(String),
}

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut hasher = Sha256Hasher::new();
        hasher.update(data);
        hasher.finish()
    }

    /// Builds a digest from 64 lowercase hex digits (no `sha256:` prefix).
    pub fn from_sha256_hex(hex: &str) -> Result<Self, DigestError> {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self { hex: hex.to_owned() })
        } else {
            Err(DigestError::Malformed(format!("sha256:{hex}")))
        }
    }

    /// The 64 hex digits, as used for file names under `blobs/sha256/`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm name, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// A short form for humans: the first 12 hex digits.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Self::from_sha256_hex(hex).map_err(|_| DigestError::Malformed(s.to_owned())),
            Some((algorithm, _))
                if !algorithm.is_empty()
                    && algorithm
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b)) =>
            {
                Err(DigestError::UnsupportedAlgorithm(algorithm.to_owned()))
            }
            _ => Err(DigestError::Malformed(s.to_owned())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 that also counts bytes, so a streamed blob can be
/// checked against both halves of its descriptor.
#[derive(Clone, Default)]
pub struct Sha256Hasher {
    inner: Sha256,
    bytes: u64,
}

impl fmt::Debug for Sha256Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha256Hasher").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl Sha256Hasher {
    /// A hasher that has seen no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the blob.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.bytes += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        Digest { hex: hex::encode(self.inner.finalize()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_value() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let text = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let digest: Digest = text.parse().unwrap();
        assert_eq!(digest.to_string(), text);
        assert_eq!(digest.short(), "e3b0c44298fc");
        assert!(matches!("sha512:abcd".parse::<Digest>(), Err(DigestError::UnsupportedAlgorithm(a)) if a == "sha512"));
        assert!("sha256:ABCDEF".parse::<Digest>().is_err());
        assert!("sha256:".parse::<Digest>().is_err());
        assert!("e3b0c442".parse::<Digest>().is_err());
        let upper = text.to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<Digest>().is_err());
    }

    #[test]
    fn hasher_counts_bytes_and_matches_one_shot() {
        let mut hasher = Sha256Hasher::new();
        hasher.update(b"hello ");
        hasher.update(b"world");
        assert_eq!(hasher.bytes(), 11);
        assert_eq!(hasher.finish(), Digest::of(b"hello world"));
    }
}
