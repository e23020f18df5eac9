//! Token scopes and the per-(registry, scope) token cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A token scope, as the distribution token protocol spells it:
/// `repository:NAME:ACTIONS`. Reading asks for [`Scope::pull`]; the write side
/// asks for [`Scope::push`] on the destination and `pull` on a mount source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    pub fn pull(repository: &str) -> Self {
        Self(format!("repository:{repository}:pull"))
    }

    /// `pull,push`: a push needs to read what is already there (HEAD, mounts).
    pub fn push(repository: &str) -> Self {
        Self(format!("repository:{repository}:pull,push"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Tokens are specific to where they came from and what they allow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    registry: String,
    realm: String,
    service: String,
    /// Sorted and space-joined, so the same set always hits the same entry.
    scopes: String,
}

impl TokenKey {
    pub(crate) fn new(registry: &str, realm: &str, service: &str, scopes: &[String]) -> Self {
        let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        Self {
            registry: registry.to_owned(),
            realm: realm.to_owned(),
            service: service.to_owned(),
            scopes: sorted.join(" "),
        }
    }
}

pub(crate) struct Token {
    pub(crate) value: String,
    valid_until: Instant,
}

impl Token {
    /// Without `expires_in` the token spec says 60 s. A margin keeps a token
    /// from expiring between our check and the registry's.
    pub(crate) fn new(value: String, expires_in: Option<u64>, now: Instant) -> Self {
        let lifetime = Duration::from_secs(expires_in.filter(|seconds| *seconds > 0).unwrap_or(60));
        let margin = (lifetime / 4).min(Duration::from_secs(10));
        Self { value, valid_until: now + lifetime - margin }
    }

    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        now < self.valid_until
    }
}

/// One slot per key, each behind an async lock, so concurrent requests that
/// need the same token wait for one fetch instead of each fetching.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

impl TokenCache {
    pub(crate) fn slot(&self, key: &TokenKey) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|poison| poison.into_inner());
        slots.entry(key.clone()).or_default().clone()
    }

    /// Forgets a token the registry refused. Only if it is still the one that
    /// was used: a concurrent request may already have put a fresh one there.
    pub(crate) async fn invalidate(&self, key: &TokenKey, used: &str) {
        let slot = self.slot(key);
        let mut token = slot.lock().await;
        if token.as_ref().is_some_and(|token| token.value == used) {
            *token = None;
        }
    }
}

/// The token endpoint's answer. `token` is the spec's name, `access_token`
/// the OAuth2 one; registries send either or both.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    pub(crate) fn into_token(self, now: Instant) -> Option<Token> {
        let value = if self.token.is_empty() { self.access_token } else { self.token };
        (!value.is_empty()).then(|| Token::new(value, self.expires_in, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_render_as_the_token_protocol_wants() {
        assert_eq!(Scope::pull("library/nginx").to_string(), "repository:library/nginx:pull");
        assert_eq!(Scope::push("team/app").as_str(), "repository:team/app:pull,push");
    }

    #[test]
    fn token_keys_ignore_scope_order_and_duplicates() {
        let a = TokenKey::new("r", "https://auth/token", "svc", &["b".into(), "a".into(), "b".into()]);
        let b = TokenKey::new("r", "https://auth/token", "svc", &["a".into(), "b".into()]);
        assert_eq!(a, b);
        assert_ne!(a, TokenKey::new("r", "https://auth/token", "svc", &["a".into()]));
    }

    #[test]
    fn token_lifetime_defaults_to_60_s_with_a_margin() {
        let now = Instant::now();
        let default = Token::new("t".into(), None, now);
        assert!(default.is_fresh(now + Duration::from_secs(49)));
        assert!(!default.is_fresh(now + Duration::from_secs(51)));
        let long = Token::new("t".into(), Some(3600), now);
        assert!(long.is_fresh(now + Duration::from_secs(3589)));
        assert!(!long.is_fresh(now + Duration::from_secs(3591)));
        let short = Token::new("t".into(), Some(8), now);
        assert!(short.is_fresh(now + Duration::from_secs(5)));
        assert!(!short.is_fresh(now + Duration::from_secs(7)));
    }

    #[test]
    fn token_or_access_token_is_read() {
        let now = Instant::now();
        let parse = |json: &str| serde_json::from_str::<TokenResponse>(json).unwrap().into_token(now).map(|t| t.value);
        assert_eq!(parse(r#"{"token":"a","access_token":"b"}"#).as_deref(), Some("a"));
        assert_eq!(parse(r#"{"access_token":"b","expires_in":300}"#).as_deref(), Some("b"));
        assert_eq!(parse(r#"{"expires_in":300}"#), None);
    }

    #[tokio::test]
    async fn invalidation_spares_a_token_that_was_already_replaced() {
        let cache = TokenCache::default();
        let key = TokenKey::new("r", "realm", "svc", &[]);
        *cache.slot(&key).lock().await = Some(Token::new("new".into(), None, Instant::now()));
        cache.invalidate(&key, "old").await;
        assert!(cache.slot(&key).lock().await.is_some());
        cache.invalidate(&key, "new").await;
        assert!(cache.slot(&key).lock().await.is_none());
    }
}
