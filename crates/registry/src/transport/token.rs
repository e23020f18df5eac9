//! A token service's answer (the distribution token protocol, and its OAuth2
//! form): the token and how long it may be used. Everything in it comes from
//! a server hpn does not control, so nothing here can panic or overflow.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// The shortest lifetime a token is given: the spec's default when
/// `expires_in` is absent, and its floor ("a token should never be returned
/// with less than 60 seconds to live"), which docker applies to smaller values.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);

/// The longest lifetime a token is given, however long the answer claims:
/// far past any run, and small enough that no clock arithmetic can overflow.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A parsed token answer. Its `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenAnswer {
    token: String,
    lifetime: Duration,
}

/// Why a token answer is unusable. The message never quotes the body: it
/// may hold a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadTokenAnswer {
    /// The body does not parse as JSON.
    #[error("is not JSON ({0})")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("is not a JSON object")]
    NotAnObject,
    /// Neither `token` nor `access_token` is a non-empty string.
    #[error("has no token (neither \"token\" nor \"access_token\" is a non-empty string)")]
    NoToken,
}

impl TokenAnswer {
    /// Reads a token endpoint's body. `token` is the spec's name for the
    /// token, `access_token` the OAuth2 one; registries send either or both,
    /// and `token` wins. `expires_in` is clamped to
    /// [`MIN_LIFETIME`]`..=`[`MAX_LIFETIME`]: zero, negative, fractional and
    /// absurdly large values are all answers real servers have sent, and a
    /// token with a wrong lifetime is still a token.
    pub fn parse(body: &[u8]) -> Result<Self, BadTokenAnswer> {
        let answer: Value = serde_json::from_slice(body).map_err(|error| BadTokenAnswer::NotJson(error.to_string()))?;
        let fields = answer.as_object().ok_or(BadTokenAnswer::NotAnObject)?;
        let token = ["token", "access_token"]
            .iter()
            .find_map(|name| fields.get(*name).and_then(Value::as_str).filter(|token| !token.is_empty()))
            .ok_or(BadTokenAnswer::NoToken)?;
        Ok(Self { token: token.to_owned(), lifetime: lifetime(fields.get("expires_in")) })
    }

    /// The token, for `Authorization: Bearer`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// How long the token may be used from when it was received.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The token, giving up the answer.
    pub fn into_token(self) -> String {
        self.token
    }
}

impl fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAnswer").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

fn lifetime(expires_in: Option<&Value>) -> Duration {
    let seconds = match expires_in {
        None | Some(Value::Null) => return MIN_LIFETIME,
        // Every JSON number serde_json accepts is a finite f64 here.
        Some(Value::Number(number)) => number.as_f64().unwrap_or(0.0),
        Some(other) => {
            tracing::warn!(expires_in = %other, "the token service's expires_in is not a number; using 60 s");
            return MIN_LIFETIME;
        }
    };
    // Clamped before the conversion, which panics on out-of-range values.
    Duration::from_secs_f64(seconds.clamp(MIN_LIFETIME.as_secs_f64(), MAX_LIFETIME.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime_of(expires_in: &str) -> Duration {
        let body = format!(r#"{{"token":"t","expires_in":{expires_in}}}"#);
        TokenAnswer::parse(body.as_bytes()).unwrap().lifetime()
    }

    #[test]
    fn lifetimes_are_clamped_whatever_the_server_claims() {
        assert_eq!(lifetime_of("300"), Duration::from_secs(300));
        assert_eq!(lifetime_of("300.5"), Duration::from_secs_f64(300.5));
        assert_eq!(lifetime_of("18446744073709551615"), MAX_LIFETIME);
        assert_eq!(lifetime_of("1e300"), MAX_LIFETIME);
        assert_eq!(lifetime_of("86401"), MAX_LIFETIME);
        for short in ["-1", "-9223372036854775808", "0", "8", "59.9", "-1e300", "null", "\"300\"", "true", "[]"] {
            assert_eq!(lifetime_of(short), MIN_LIFETIME, "expires_in {short}");
        }
        assert_eq!(TokenAnswer::parse(br#"{"token":"t"}"#).unwrap().lifetime(), MIN_LIFETIME);
    }

    #[test]
    fn token_or_access_token_is_read() {
        let token = |body: &str| TokenAnswer::parse(body.as_bytes()).map(TokenAnswer::into_token);
        assert_eq!(token(r#"{"token":"a","access_token":"b"}"#).as_deref(), Ok("a"));
        assert_eq!(token(r#"{"token":"","access_token":"b","expires_in":300}"#).as_deref(), Ok("b"));
        assert_eq!(token(r#"{"token":7,"access_token":"b"}"#).as_deref(), Ok("b"));
    }

    #[test]
    fn unusable_answers_say_what_is_wrong_without_quoting_the_body() {
        assert_eq!(TokenAnswer::parse(br#"{"expires_in":300}"#), Err(BadTokenAnswer::NoToken));
        assert_eq!(TokenAnswer::parse(br#"{"token":12345}"#), Err(BadTokenAnswer::NoToken));
        assert_eq!(TokenAnswer::parse(br#"["secret"]"#), Err(BadTokenAnswer::NotAnObject));
        let error = TokenAnswer::parse(br#"{"token":"secret""#).unwrap_err();
        assert!(matches!(error, BadTokenAnswer::NotJson(_)), "{error:?}");
        assert!(!error.to_string().contains("secret"), "{error}");
        let answer = TokenAnswer::parse(br#"{"token":"secret"}"#).unwrap();
        assert!(!format!("{answer:?}").contains("secret"));
    }
}
