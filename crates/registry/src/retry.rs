//! What is worth retrying, and how long a registry asks us to wait.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

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

/// Why a request got no usable response.
#[derive(Debug)]
pub(crate) enum TransportError {
    Http(reqwest::Error),
    /// No response headers within the stall timeout.
    NoResponse(Duration),
    /// A body delivered no byte within the stall timeout.
    Stalled(Duration),
    /// The registry took no byte of an upload body (or, after the last one,
    /// gave no answer) within the stall timeout.
    UploadStalled(Duration),
    /// The body ended before the size it announced.
    EndedEarly {
        received: u64,
        expected: u64,
    },
    TooManyRedirects(usize),
}

impl TransportError {
    /// Whether another attempt may succeed. Certificate problems will not go
    /// away by retrying, and a request that could not even be built neither.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Http(error) => !error.is_builder() && !is_certificate_error(error),
            Self::NoResponse(_) | Self::Stalled(_) | Self::UploadStalled(_) | Self::EndedEarly { .. } => true,
            Self::TooManyRedirects(_) => false,
        }
    }

    pub(crate) fn is_certificate_error(&self) -> bool {
        matches!(self, Self::Http(error) if is_certificate_error(error))
    }

    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            Self::Http(error) => error.is_timeout(),
            Self::NoResponse(_) | Self::Stalled(_) | Self::UploadStalled(_) => true,
            Self::EndedEarly { .. } | Self::TooManyRedirects(_) => false,
        }
    }

    /// The cause as one line. reqwest's own message names the URL, which
    /// after a redirect may carry a pre-signed signature, so it is replaced by
    /// the error's kind; the causes below it carry no URL.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Http(error) => {
                let kind = if error.is_connect() {
                    "cannot connect"
                } else if error.is_timeout() {
                    "timed out"
                } else if error.is_body() || error.is_decode() {
                    "the response body broke"
                } else {
                    "the request failed"
                };
                match error.source() {
                    Some(source) => format!("{kind}: {}", error_chain(source)),
                    None => kind.to_owned(),
                }
            }
            Self::NoResponse(after) => format!("no response within {} s", after.as_secs_f64()),
            Self::Stalled(after) => format!("no data received for {} s", after.as_secs_f64()),
            Self::UploadStalled(after) => format!("the registry took no data for {} s", after.as_secs_f64()),
            Self::EndedEarly { received, expected } => {
                format!("the connection ended after {received} of {expected} bytes")
            }
            Self::TooManyRedirects(limit) => format!("more than {limit} redirects"),
        }
    }
}

/// `outer: inner: innermost`, skipping layers that repeat what was said.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// rustls reports untrusted or invalid certificates as "invalid peer
/// certificate: ..."; reqwest does not expose the type without a direct
/// rustls dependency, so the chain's text is the stable signal.
fn is_certificate_error(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.to_string().contains("certificate") {
            return true;
        }
        source = cause.source();
    }
    false
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
