//! HTTP Basic auth against an htpasswd file of bcrypt entries, the format
//! the distribution registry reads (`htpasswd -B`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use hpn_oci::Digest;

use crate::ServeError;

/// Verified `Authorization` values kept at most; a full cache is emptied.
const VERIFIED_CACHE: usize = 1024;

/// The users of an htpasswd file.
#[derive(Debug)]
pub(crate) struct Htpasswd {
    /// user → bcrypt hash
    users: HashMap<String, String>,
    /// Digests of `Authorization` values already verified, with their user:
    /// bcrypt is made to be slow, and clients send the header on every request.
    verified: Mutex<HashMap<Digest, String>>,
}

impl Htpasswd {
    /// Reads `path`: `user:hash` lines, `#` comments and blank lines. Only
    /// bcrypt hashes (`$2a$`, `$2b$`, `$2y$`) are accepted, as distribution does.
    pub fn load(path: &Path) -> Result<Self, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Read {
            what: "htpasswd file",
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, ServeError> {
        let invalid = |line: usize, reason: &str| ServeError::Htpasswd {
            path: PathBuf::from(path),
            line,
            reason: reason.to_owned(),
        };
        let mut users = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(invalid(number + 1, "not of the form user:hash"));
            };
            if !["$2a$", "$2b$", "$2y$"].iter().any(|prefix| hash.starts_with(prefix)) {
                return Err(invalid(number + 1, "not a bcrypt hash (make entries with htpasswd -B)"));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        if users.is_empty() {
            return Err(invalid(0, "no users"));
        }
        Ok(Self { users, verified: Mutex::new(HashMap::new()) })
    }

    /// The realm named in `WWW-Authenticate`.
    pub fn realm(&self) -> &'static str {
        "hpn serve"
    }

    /// The user an `Authorization` header proves, if it proves one.
    pub async fn check(&self, authorization: Option<&str>) -> Option<String> {
        let header = authorization?;
        let key = Digest::of(header.as_bytes());
        if let Some(user) = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key) {
            return Some(user.clone());
        }
        let (scheme, encoded) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let hash = self.users.get(user)?.clone();
        let password = password.to_owned();
        // bcrypt takes milliseconds of CPU by design: off the async workers.
        let valid = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if !valid {
            return None;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(key, user.to_owned());
        Some(user.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    #[tokio::test]
    async fn bcrypt_entries_verify_and_others_are_refused() {
        let hash = bcrypt::hash_with_salt("secret", 4, [7; 16]).unwrap().format_for_version(bcrypt::Version::TwoY);
        let file = Htpasswd::parse(&format!("# users\n\nalice:{hash}\n"), Path::new("h")).unwrap();
        assert_eq!(file.check(Some(&basic("alice", "secret"))).await.as_deref(), Some("alice"));
        assert_eq!(file.check(Some(&basic("alice", "secret"))).await.as_deref(), Some("alice"), "from the cache");
        assert_eq!(file.check(Some(&basic("alice", "wrong"))).await, None);
        assert_eq!(file.check(Some(&basic("bob", "secret"))).await, None);
        assert_eq!(file.check(Some("Bearer x")).await, None);
        assert_eq!(file.check(None).await, None);
        assert!(matches!(Htpasswd::parse("bob:{SHA}abc\n", Path::new("h")), Err(ServeError::Htpasswd { line: 1, .. })));
    }
}
