//! The one retry loop every request kind goes through, what is worth
//! retrying, and how long a registry asks us to wait.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use tracing::debug;

use super::stall;
use crate::error::TransportError;
use crate::options::{ClientOptions, RetryPolicy};

/// Counts consecutive failures against a [`RetryPolicy`] and waits between
/// attempts: the one place where retries are decided, for every request
/// kind (a call, the probe, a token, a manifest body, a blob body resumed
/// chunk after chunk, an upload started over in a new session).
pub(crate) struct Retrier {
    policy: RetryPolicy,
    failures: u32,
}

impl Retrier {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        Self { policy: policy.clone(), failures: 0 }
    }

    /// At most `attempts` in all, whatever the policy says.
    pub(crate) fn capped(policy: &RetryPolicy, attempts: u32) -> Self {
        let mut policy = policy.clone();
        policy.max_attempts = attempts.min(policy.attempts());
        Self::new(&policy)
    }

    /// The number of the attempt about to be made in the current run of
    /// failures, from 1, for messages ("after 3 attempts").
    pub(crate) fn attempt(&self) -> u32 {
        self.failures + 1
    }

    /// Progress was made: the next failure is the first of a new run, so a
    /// long download over a flaky link is not capped by the policy.
    pub(crate) fn progressed(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure another attempt may fix. When the policy allows one,
    /// drops `error` (it may hold a request slot), waits (the registry's
    /// `Retry-After` when it sent one, else the policy's backoff) and
    /// returns `Ok`; otherwise gives `error` back as the final outcome.
    pub(crate) async fn failed<E>(&mut self, error: E, after: Option<Duration>) -> Result<(), E> {
        self.failures += 1;
        if self.failures >= self.policy.attempts() {
            return Err(error);
        }
        drop(error);
        let delay = after.unwrap_or_else(|| self.policy.backoff(self.failures));
        debug!(failures = self.failures, delay_ms = delay.as_millis() as u64, "retrying");
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// Sends requests built by `make` until one gets a response whose status is
/// not worth retrying, within `retrier`'s policy. For requests without
/// auth or redirects: the probe and the token endpoint. Returns the response
/// (the last one when every attempt got a retryable status) and the
/// attempts made, or the last transport failure and the attempts.
pub(crate) async fn send_retrying(
    retrier: &mut Retrier,
    options: &ClientOptions,
    make: impl Fn() -> RequestBuilder,
) -> Result<(Response, u32), (TransportError, u32)> {
    loop {
        let attempt = retrier.attempt();
        match stall::send(make(), options, None).await {
            Ok(response) if is_retryable_status(response.status()) => {
                let after = retry_after(response.headers(), SystemTime::now());
                if let Err(response) = retrier.failed(response, after).await {
                    return Ok((response, attempt));
                }
            }
            Ok(response) => return Ok((response, attempt)),
            Err(error) if error.is_retryable() => {
                retrier.failed(error, None).await.map_err(|error| (error, attempt))?
            }
            Err(error) => return Err((error, attempt)),
        }
    }
}

/// A `Retry-After` beyond this is not waited out: the user is better served by
/// an error than by a silent hour-long pause.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// 429 and server errors, except those that say the request itself is wrong.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

/// `Retry-After` as delta-seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(now).unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_seconds_and_dates_are_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&headers("3"), now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers("3600"), now), Some(MAX_RETRY_AFTER));
        let in_ten = httpdate::fmt_http_date(now + Duration::from_secs(10));
        assert_eq!(retry_after(&headers(&in_ten), now), Some(Duration::from_secs(10)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(10));
        assert_eq!(retry_after(&headers(&past), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn only_rate_limits_and_server_errors_are_retried() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 400, 401, 403, 404, 405, 416, 501, 505] {
            assert!(!is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
