//! Answering a registry's challenge: credentials looked up once per
//! registry and repository, Basic headers, and Bearer tokens fetched from the
//! challenge's realm with a cache per (registry, realm, service, scopes).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};

use super::challenge::{self, Challenge};
use super::retry::{self, Retrier};
use super::stall::{self, host_of};
use super::token::TokenAnswer;
use crate::credentials::{Credential, Credentials};
use crate::endpoint::Endpoint;
use crate::error::{ErrorBody, RegistryError, Target, status_error};
use crate::mutex::lock;
use crate::options::ClientOptions;

/// Error and token bodies are read up to this much.
pub(crate) const MAX_SMALL_BODY: usize = 1024 * 1024;

/// A token scope, as the distribution token protocol spells it:
/// `repository:NAME:ACTIONS`. Reading asks for [`Scope::pull`]; the write side
/// asks for [`Scope::push`] on the destination and `pull` on a mount source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    /// `repository:NAME:pull`.
    pub fn pull(repository: &str) -> Self {
        Self(format!("repository:{repository}:pull"))
    }

    /// `pull,push`: a push needs to read what is already there (HEAD, mounts).
    pub fn push(repository: &str) -> Self {
        Self(format!("repository:{repository}:pull,push"))
    }

    /// `repository:NAME:delete`: deleting a manifest asks for this action
    /// alone, as distribution's token access records name it.
    pub fn delete(repository: &str) -> Self {
        Self(format!("repository:{repository}:delete"))
    }

    /// `registry:catalog:*`: listing the registry's repositories.
    pub fn catalog() -> Self {
        Self("registry:catalog:*".to_owned())
    }

    /// The scope as the token protocol spells it.
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
struct TokenKey {
    registry: String,
    realm: String,
    service: String,
    /// Sorted and space-joined, so the same set always hits the same entry.
    scopes: String,
}

impl TokenKey {
    fn new(registry: &str, realm: &str, service: &str, scopes: &[String]) -> Self {
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

struct Token {
    value: String,
    received: Instant,
    /// The answer's lifetime less a margin that keeps a token from expiring
    /// between our check and the registry's. Compared with the time since
    /// `received` rather than added to it: no clock arithmetic can overflow.
    usable_for: Duration,
}

impl Token {
    fn new(answer: TokenAnswer, received: Instant) -> Self {
        let lifetime = answer.lifetime();
        let margin = (lifetime / 4).min(Duration::from_secs(10));
        Self { usable_for: lifetime.saturating_sub(margin), value: answer.into_token(), received }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.received) < self.usable_for
    }
}

/// One slot per key, each behind an async lock, so concurrent requests that
/// need the same token wait for one fetch instead of each fetching.
#[derive(Default)]
struct TokenCache {
    slots: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

impl TokenCache {
    fn slot(&self, key: &TokenKey) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        lock(&self.slots).entry(key.clone()).or_default().clone()
    }

    /// Forgets a token the registry refused. Only if it is still the one that
    /// was used: a concurrent request may already have put a fresh one there.
    async fn invalidate(&self, key: &TokenKey, used: &str) {
        let slot = self.slot(key);
        let mut token = slot.lock().await;
        if token.as_ref().is_some_and(|token| token.value == used) {
            *token = None;
        }
    }
}

/// A token that was sent, to forget it if the registry refuses it.
pub(crate) struct UsedToken {
    key: TokenKey,
    value: String,
}

/// What a token request needs to know about the registry it is for.
pub(crate) struct Realm<'a> {
    pub(crate) registry: &'a str,
    pub(crate) endpoint: Endpoint,
    pub(crate) http: &'a reqwest::Client,
    pub(crate) options: &'a ClientOptions,
}

/// Credentials and tokens, shared by every request of a client.
pub(crate) struct Auth {
    tokens: TokenCache,
    credentials: Credentials,
    /// Per (registry, repository): a helper runs a process, so each is
    /// asked once for the client's lifetime.
    found: Mutex<HashMap<(String, String), Option<Credential>>>,
}

impl Auth {
    pub(crate) fn new(credentials: Credentials) -> Self {
        Self { tokens: TokenCache::default(), credentials, found: Mutex::default() }
    }

    /// Credentials for a registry and repository, looked up once.
    pub(crate) async fn credential(
        &self,
        registry: &str,
        repository: Option<&str>,
    ) -> Result<Option<Credential>, RegistryError> {
        if self.credentials.is_empty() {
            return Ok(None);
        }
        let key = (registry.to_owned(), repository.unwrap_or_default().to_owned());
        if let Some(found) = lock(&self.found).get(&key) {
            return Ok(found.clone());
        }
        let credentials = self.credentials.clone();
        let (registry, repository) = (key.0.clone(), repository.map(str::to_owned));
        let found = tokio::task::spawn_blocking(move || match repository {
            Some(repository) => credentials.lookup_for_repository(&registry, &repository),
            None => credentials.lookup(&registry),
        })
        .await
        .map_err(|error| RegistryError::setup("look up credentials", error))??;
        lock(&self.found).insert(key, found.clone());
        Ok(found)
    }

    /// Where the credentials for a registry and repository come from, to
    /// name when the registry refuses them; `None` when there are none.
    pub(crate) async fn credential_source(&self, registry: &str, repository: Option<&str>) -> Option<String> {
        if self.credentials.is_empty() {
            return None;
        }
        let credentials = self.credentials.clone();
        let (registry, repository) = (registry.to_owned(), repository.map(str::to_owned));
        tokio::task::spawn_blocking(move || credentials.source_of(&registry, repository.as_deref()))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    }

    /// The `Authorization` header that answers `challenge` for a request
    /// about `repository`, and the token it carries.
    pub(crate) async fn authorization(
        &self,
        realm: &Realm<'_>,
        challenge: Option<Challenge>,
        repository: Option<&str>,
        scopes: &[String],
        subject: &str,
    ) -> Result<(Option<HeaderValue>, Option<UsedToken>), RegistryError> {
        let Some(challenge) = challenge else {
            return Ok((None, None));
        };
        if challenge.is_basic() {
            return Ok(match self.credential(realm.registry, repository).await? {
                Some(Credential::Basic { username, password }) => (Some(basic_header(&username, &password)), None),
                _ => (None, None),
            });
        }
        if !challenge.is_bearer() {
            return Ok((None, None));
        }
        let key = TokenKey::new(
            realm.registry,
            challenge.param("realm").unwrap_or_default(),
            challenge.param("service").unwrap_or_default(),
            scopes,
        );
        let slot = self.tokens.slot(&key);
        let mut cached = slot.lock().await;
        let now = Instant::now();
        let token = match cached.as_ref() {
            Some(token) if token.is_fresh(now) => token,
            _ => {
                let credential = self.credential(realm.registry, repository).await?;
                match fetch_token(realm, &challenge, scopes, credential.as_ref(), subject).await {
                    Ok(token) => cached.insert(token),
                    Err(error) if credential.is_some() && error.is_auth() => {
                        let source = self.credential_source(realm.registry, repository).await;
                        return Err(error.with_credential_source(source));
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        let mut header = HeaderValue::from_str(&format!("Bearer {}", token.value)).map_err(|_| {
            RegistryError::protocol(
                realm.registry,
                subject,
                "the token service sent a token that is not a valid header",
            )
        })?;
        header.set_sensitive(true);
        Ok((Some(header), Some(UsedToken { key, value: token.value.clone() })))
    }

    /// Forgets a token the registry refused.
    pub(crate) async fn refused(&self, used: UsedToken) {
        self.tokens.invalidate(&used.key, &used.value).await;
    }
}

/// Gets a token from the challenge's realm: `GET realm?service=..&scope=..`
/// with Basic credentials when known, or the OAuth2 refresh-token `POST`
/// for identity tokens.
async fn fetch_token(
    realm: &Realm<'_>,
    challenge: &Challenge,
    scopes: &[String],
    credential: Option<&Credential>,
    subject: &str,
) -> Result<Token, RegistryError> {
    let registry = realm.registry;
    let url = challenge
        .param("realm")
        .filter(|url| !url.is_empty())
        .ok_or_else(|| RegistryError::protocol(registry, subject, "Bearer challenge without a realm"))?;
    let mut url = Url::parse(url)
        .map_err(|error| RegistryError::protocol(registry, subject, format!("invalid token realm: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RegistryError::protocol(registry, subject, "token realm is not an http(s) URL"));
    }
    if url.scheme() == "http" && realm.endpoint == Endpoint::Https && credential.is_some() {
        // The registry is spoken to over verified HTTPS; its credentials
        // must not then cross the network in the clear.
        return Err(RegistryError::protocol(
            registry,
            subject,
            format!("token realm {} is plain HTTP; refusing to send credentials to it", host_of(&url)),
        ));
    }
    let service = challenge.param("service").unwrap_or_default();
    let token_subject = format!("{subject} (token service {})", host_of(&url));
    let client = realm.http;
    let mut retrier = Retrier::new(&realm.options.retry);
    let options = realm.options;
    let sent = match credential {
        Some(Credential::IdentityToken(refresh)) => {
            let mut form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", refresh.clone()),
                ("client_id", "hpn".to_owned()),
                ("scope", scopes.join(" ")),
            ];
            if !service.is_empty() {
                form.push(("service", service.to_owned()));
            }
            retry::send_retrying(&mut retrier, options, || client.post(url.clone()).form(&form)).await
        }
        other => {
            {
                let mut query = url.query_pairs_mut();
                if !service.is_empty() {
                    query.append_pair("service", service);
                }
                for scope in scopes {
                    query.append_pair("scope", scope);
                }
                if let Some(Credential::Basic { username, .. }) = other {
                    // Docker sends the account so token servers can log it.
                    query.append_pair("account", username);
                }
            }
            let basic = match other {
                Some(Credential::Basic { username, password }) => Some(basic_header(username, password)),
                _ => None,
            };
            retry::send_retrying(&mut retrier, options, || {
                let request = client.get(url.clone());
                match &basic {
                    Some(basic) => request.header(AUTHORIZATION, basic.clone()),
                    None => request,
                }
            })
            .await
        }
    };
    let (mut response, tries) = sent.map_err(|(error, attempts)| {
        RegistryError::network(registry, &token_subject, attempts, error, url.scheme() == "http")
    })?;
    let status = response.status();
    let body = match stall::read_body(&mut response, MAX_SMALL_BODY, options).await {
        Ok((body, _)) => body,
        // A token service that trickles its answer is as unusable as one
        // that does not answer; an error answer cut short still has a status.
        Err(error) if status.is_success() => {
            return Err(RegistryError::network(registry, &token_subject, tries, error, url.scheme() == "http"));
        }
        Err(_) => Vec::new(),
    };
    if !status.is_success() {
        let errors = ErrorBody::parse(&body);
        let error = status_error(registry, &token_subject, Target::Other, "GET", status, errors, tries);
        return Err(error.with_credentials_known(credential.is_some(), None));
    }
    let answer = TokenAnswer::parse(&body).map_err(|problem| {
        RegistryError::protocol(registry, &token_subject, format!("the token service's answer {problem}"))
    })?;
    Ok(Token::new(answer, Instant::now()))
}

/// The challenges in a response's `WWW-Authenticate` headers.
pub(crate) fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(challenge::parse_www_authenticate)
        .collect()
}

/// Puts the scopes a Bearer challenge names in front of `scopes`: some token
/// servers only honour the first scope parameter.
pub(crate) fn add_challenged_scopes(challenge: &Challenge, scopes: &mut Vec<String>) {
    if let Some(wanted) = challenge.param("scope") {
        for scope in wanted.split(' ').filter(|scope| !scope.is_empty()).rev() {
            if !scopes.iter().any(|have| have == scope) {
                scopes.insert(0, scope.to_owned());
            }
        }
    }
}

fn basic_header(username: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut header = HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    header.set_sensitive(true);
    header
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

    fn token(body: &str, received: Instant) -> Token {
        Token::new(TokenAnswer::parse(body.as_bytes()).unwrap(), received)
    }

    #[test]
    fn token_lifetime_is_at_least_60_s_with_a_margin() {
        let now = Instant::now();
        for body in [r#"{"token":"t"}"#, r#"{"token":"t","expires_in":8}"#, r#"{"token":"t","expires_in":-1}"#] {
            let short = token(body, now);
            assert!(short.is_fresh(now + Duration::from_secs(49)), "{body}");
            assert!(!short.is_fresh(now + Duration::from_secs(51)), "{body}");
        }
        let long = token(r#"{"token":"t","expires_in":3600}"#, now);
        assert!(long.is_fresh(now + Duration::from_secs(3589)));
        assert!(!long.is_fresh(now + Duration::from_secs(3591)));
    }

    #[test]
    fn an_endless_lifetime_neither_panics_nor_outlives_a_day() {
        let now = Instant::now();
        let endless = token(r#"{"token":"t","expires_in":18446744073709551615}"#, now);
        assert!(endless.is_fresh(now + Duration::from_secs(23 * 60 * 60)));
        assert!(!endless.is_fresh(now + Duration::from_secs(24 * 60 * 60)));
        // A clock read before the token arrived (another thread's) is no panic either.
        assert!(endless.is_fresh(now.checked_sub(Duration::from_secs(1)).unwrap_or(now)));
    }

    #[tokio::test]
    async fn invalidation_spares_a_token_that_was_already_replaced() {
        let cache = TokenCache::default();
        let key = TokenKey::new("r", "realm", "svc", &[]);
        *cache.slot(&key).lock().await = Some(token(r#"{"token":"new"}"#, Instant::now()));
        cache.invalidate(&key, "old").await;
        assert!(cache.slot(&key).lock().await.is_some());
        cache.invalidate(&key, "new").await;
        assert!(cache.slot(&key).lock().await.is_none());
    }
}
