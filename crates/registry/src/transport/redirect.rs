//! Following redirects by hand, so that the `Authorization` header never
//! leaves the registry's own origin: object storage behind a redirect (S3,
//! GCS) authenticates through the URL and rejects a second mechanism.

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use super::stall::{self, Progress};
use crate::error::{TransportError, TransportProblem};
use crate::options::ClientOptions;

const MAX_REDIRECTS: usize = 10;

/// One request to send, and what travels with it.
pub(crate) struct Request<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: &'a HeaderMap,
    /// Sent only to `origin`.
    pub(crate) authorization: Option<HeaderValue>,
    pub(crate) body: Option<reqwest::Body>,
    pub(crate) progress: Option<&'a Progress>,
}

/// Sends `request` and follows the redirects of a GET or HEAD (up to ten).
pub(crate) async fn send(
    client: &reqwest::Client,
    origin: &Url,
    request: Request<'_>,
    options: &ClientOptions,
) -> Result<Response, TransportError> {
    let Request { mut method, mut url, headers, authorization, mut body, progress } = request;
    for _ in 0..=MAX_REDIRECTS {
        let mut builder = client.request(method.clone(), url.clone()).headers(headers.clone());
        if let Some(authorization) = &authorization
            && same_origin(&url, origin)
        {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        // Only the first hop has a body: redirects are followed for GET and
        // HEAD only.
        if let Some(body) = body.take() {
            builder = builder.body(body);
        }
        let response = stall::send(builder, options, progress).await?;
        let status = response.status();
        let follow = status.is_redirection()
            && status != StatusCode::NOT_MODIFIED
            && (method == Method::GET || method == Method::HEAD);
        let Some(location) = response.headers().get(LOCATION).filter(|_| follow) else {
            return Ok(response);
        };
        let Some(next) = location.to_str().ok().and_then(|location| url.join(location).ok()) else {
            return Ok(response);
        };
        if !matches!(next.scheme(), "http" | "https") {
            return Ok(response);
        }
        url = next;
        if status == StatusCode::SEE_OTHER {
            method = Method::GET;
        }
    }
    Err(TransportProblem::TooManyRedirects(MAX_REDIRECTS).into())
}

/// Same scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let base = Url::parse("http://127.0.0.1:5000/").unwrap();
        assert!(same_origin(&Url::parse("http://127.0.0.1:5000/v2/x").unwrap(), &base));
        assert!(!same_origin(&Url::parse("http://127.0.0.1:5001/v2/x").unwrap(), &base));
        assert!(!same_origin(&Url::parse("https://127.0.0.1:5000/v2/x").unwrap(), &base));
        assert!(!same_origin(&Url::parse("http://127.0.0.2:5000/v2/x").unwrap(), &base));
        let https = Url::parse("https://r.example/").unwrap();
        assert!(same_origin(&Url::parse("https://r.example:443/x").unwrap(), &https));
    }
}
