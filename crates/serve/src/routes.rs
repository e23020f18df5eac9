//! The distribution API, read-only: what each request gets.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use hpn_oci::{Digest, DigestError, Reference, media_type};

use crate::auth::Htpasswd;
use crate::catalog::{Catalog, Repository, referrers_index};
use crate::content::Content;
use crate::http::{Body, Handler, RequestHead, Response};
use crate::{AccessRecord, AccessSink};

const API_VERSION: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");

/// The registry: content, what is served of it, who may read it.
pub(crate) struct Registry {
    pub content: Arc<Content>,
    pub catalog: RwLock<Arc<Catalog>>,
    pub auth: Option<Htpasswd>,
    pub access_log: Option<AccessSink>,
}

/// What a request path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Referrers(&'a str, &'a str),
    /// Upload endpoints and anything else under /v2/ that exists only for writers.
    Write,
    NotFound,
}

fn route<'a>(path: &'a str) -> Route<'a> {
    let Some(rest) = path.strip_prefix("/v2") else { return Route::NotFound };
    match rest {
        "" | "/" => return Route::Base,
        "/_catalog" => return Route::Catalog,
        _ => {}
    }
    let Some(rest) = rest.strip_prefix('/') else { return Route::NotFound };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags(name);
    }
    if rest.contains("/blobs/uploads") {
        return Route::Write;
    }
    for (marker, make) in [
        ("/manifests/", Route::Manifest as fn(&'a str, &'a str) -> Route<'a>),
        ("/blobs/", Route::Blob),
        ("/referrers/", Route::Referrers),
    ] {
        if let Some(at) = rest.rfind(marker) {
            let (name, reference) = (&rest[..at], &rest[at + marker.len()..]);
            if !reference.contains('/') {
                return make(name, reference);
            }
        }
    }
    Route::NotFound
}

/// The OCI error body with one error.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message, "detail": {}}]});
    Response::new(status)
        .header(API_VERSION.0, API_VERSION.1)
        .header("Content-Type", "application/json")
        .bytes(serde_json::to_vec(&body).expect("JSON values serialize"))
}

fn json(value: &serde_json::Value) -> Response {
    Response::new(200)
        .header(API_VERSION.0, API_VERSION.1)
        .header("Content-Type", "application/json")
        .bytes(serde_json::to_vec(value).expect("JSON values serialize"))
}

impl Handler for Registry {
    async fn handle(&self, head: &RequestHead, _peer: SocketAddr) -> (Response, Option<String>) {
        let user = match &self.auth {
            None => None,
            Some(auth) => match auth.check(head.authorization.as_deref()).await {
                Some(user) => Some(user),
                None => {
                    let response = error(401, "UNAUTHORIZED", "authentication required")
                        .header("WWW-Authenticate", format!("Basic realm=\"{}\"", auth.realm()));
                    return (response, None);
                }
            },
        };
        (self.answer(head).await, user)
    }

    fn log(&self, head: &RequestHead, peer: SocketAddr, user: Option<&str>, status: u16, bytes: u64, started: Instant) {
        if let Some(sink) = &self.access_log {
            sink(&AccessRecord {
                peer,
                user,
                method: &head.method,
                target: &head.target,
                status,
                bytes,
                elapsed: started.elapsed(),
            });
        }
    }
}

impl Registry {
    async fn answer(&self, head: &RequestHead) -> Response {
        let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
        let route = route(path);
        let read = matches!(head.method.as_str(), "GET" | "HEAD");
        if !read || route == Route::Write {
            if route == Route::NotFound {
                return error(404, "NOT_FOUND", "no such endpoint");
            }
            return error(405, "UNSUPPORTED", "this registry is read-only (hpn serve)").header("Allow", "GET, HEAD");
        }
        let catalog = Arc::clone(&self.catalog.read().unwrap_or_else(|poisoned| poisoned.into_inner()));
        match route {
            Route::Base => json(&serde_json::json!({})),
            Route::Catalog => match page(catalog.repositories.keys(), query) {
                Ok((names, next)) => with_next(json(&serde_json::json!({"repositories": names})), "/v2/_catalog", next),
                Err(response) => response,
            },
            Route::Tags(name) => match repository(&catalog, name) {
                Ok(repository) => match page(repository.tags.keys(), query) {
                    Ok((tags, next)) => with_next(
                        json(&serde_json::json!({"name": name, "tags": tags})),
                        &format!("/v2/{name}/tags/list"),
                        next,
                    ),
                    Err(response) => response,
                },
                Err(response) => response,
            },
            Route::Manifest(name, reference) => match repository(&catalog, name) {
                Ok(repository) => manifest(repository, reference, head.if_none_match.as_deref()),
                Err(response) => response,
            },
            Route::Blob(name, digest) => match (repository(&catalog, name), parse_digest(digest)) {
                (Err(response), _) | (_, Err(response)) => response,
                (Ok(repository), Ok(digest)) => {
                    if !repository.blobs.contains(&digest) && !repository.manifests.contains_key(&digest) {
                        return error(404, "BLOB_UNKNOWN", "blob unknown to repository");
                    }
                    self.blob(digest, head.range.as_deref()).await
                }
            },
            Route::Referrers(name, digest) => match (repository(&catalog, name), parse_digest(digest)) {
                (Err(response), _) | (_, Err(response)) => response,
                (Ok(repository), Ok(digest)) => referrers(repository, &digest, query),
            },
            Route::Write | Route::NotFound => error(404, "NOT_FOUND", "no such endpoint"),
        }
    }

    async fn blob(&self, digest: Digest, range: Option<&str>) -> Response {
        let content = Arc::clone(&self.content);
        let opened = {
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || content.open_blob(&digest)).await
        };
        let file = match opened {
            Ok(Ok(Some(file))) => Arc::new(file),
            Ok(Ok(None)) => return error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
            Ok(Err(failure)) => {
                tracing::error!(%digest, error = %failure, "cannot open a blob");
                return error(500, "UNKNOWN", "the blob cannot be read");
            }
            Err(panic) => {
                tracing::error!(%digest, error = %panic, "opening a blob panicked");
                return error(500, "UNKNOWN", "the blob cannot be read");
            }
        };
        let size = file.size;
        let response = Response::new(200)
            .header(API_VERSION.0, API_VERSION.1)
            .header("Content-Type", "application/octet-stream")
            .header("Docker-Content-Digest", digest.to_string())
            .header("ETag", format!("\"{digest}\""))
            .header("Accept-Ranges", "bytes");
        match range.map(|range| parse_range(range, size)) {
            None | Some(RangeAsk::Ignore) => Response { body: Body::Blob { file, start: 0, len: size }, ..response },
            Some(RangeAsk::Satisfiable(start, end)) => Response {
                status: 206,
                body: Body::Blob { file, start, len: end - start + 1 },
                ..response.header("Content-Range", format!("bytes {start}-{end}/{size}"))
            },
            Some(RangeAsk::Unsatisfiable) => error(416, "BLOB_UNKNOWN", "requested range not satisfiable")
                .header("Content-Range", format!("bytes */{size}")),
        }
    }
}

fn repository<'a>(catalog: &'a Catalog, name: &str) -> Result<&'a Repository, Response> {
    // The grammar first: a name that is not one is refused, never looked up further.
    // With a tag appended, a name with its own tag, digest or bad component does not parse.
    if format!("{name}:latest").parse::<Reference>().is_err() {
        return Err(error(400, "NAME_INVALID", "invalid repository name"));
    }
    catalog.repositories.get(name).ok_or_else(|| error(404, "NAME_UNKNOWN", "repository name not known to registry"))
}

fn parse_digest(text: &str) -> Result<Digest, Response> {
    text.parse::<Digest>().map_err(|failure| match failure {
        DigestError::UnsupportedAlgorithm(_) => error(400, "UNSUPPORTED", "only sha256 digests are served"),
        _ => error(400, "DIGEST_INVALID", "invalid digest"),
    })
}

fn manifest(repository: &Repository, reference: &str, if_none_match: Option<&str>) -> Response {
    let digest = if reference.contains(':') {
        match parse_digest(reference) {
            Ok(digest) => Some(digest),
            Err(response) => return response,
        }
    } else {
        repository.tags.get(reference).cloned()
    };
    let Some(manifest) = digest.and_then(|digest| repository.manifests.get(&digest)) else {
        return error(404, "MANIFEST_UNKNOWN", "manifest unknown");
    };
    let etag = format!("\"{}\"", manifest.digest);
    let response = Response::new(200)
        .header(API_VERSION.0, API_VERSION.1)
        .header("Docker-Content-Digest", manifest.digest.to_string())
        .header("ETag", etag.clone());
    if if_none_match.is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag)) {
        return Response { status: 304, ..response };
    }
    response.header("Content-Type", manifest.media_type.clone()).bytes(manifest.bytes.clone())
}

fn referrers(repository: &Repository, digest: &Digest, query: &str) -> Response {
    // A media type has no spaces but often a `+` (application/spdx+json), which clients
    // (oci-client among them) send unescaped: it is kept, where form decoding would make it a space.
    let query = query.replace('+', "%2B");
    let artifact_type = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "artifactType")
        .map(|(_, value)| value.into_owned());
    let found = repository.referrers(digest, artifact_type.as_deref());
    let response = Response::new(200)
        .header(API_VERSION.0, API_VERSION.1)
        .header("Content-Type", media_type::OCI_INDEX)
        .bytes(referrers_index(&found));
    match artifact_type {
        Some(_) => response.header("OCI-Filters-Applied", "artifactType"),
        None => response,
    }
}

/// One page of a sorted list: its items, and `n` with the `last` of the
/// next page when more remain.
type Page<'a> = (Vec<&'a String>, Option<(usize, String)>);

/// The `n`/`last` window of a sorted list.
fn page<'a>(sorted: impl Iterator<Item = &'a String>, query: &str) -> Result<Page<'a>, Response> {
    let mut n = None;
    let mut last = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "n" => match value.parse::<usize>() {
                Ok(value) => n = Some(value),
                Err(_) => return Err(error(400, "PAGINATION_NUMBER_INVALID", "n must be a non-negative integer")),
            },
            "last" => last = Some(value.into_owned()),
            _ => {}
        }
    }
    let mut after: Vec<&String> = sorted.filter(|item| last.as_ref().is_none_or(|last| *item > last)).collect();
    let Some(n) = n else { return Ok((after, None)) };
    let more = after.len() > n;
    after.truncate(n);
    let next = match after.last() {
        Some(last) if more => Some((n, (*last).clone())),
        _ => None,
    };
    Ok((after, next))
}

fn with_next(response: Response, path: &str, next: Option<(usize, String)>) -> Response {
    match next {
        None => response,
        Some((n, last)) => {
            let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
            response.header("Link", format!("<{path}?n={n}&last={last}>; rel=\"next\""))
        }
    }
}

/// What a `Range` header asks for, as RFC 9110 reads it: one range is
/// served, anything else (several ranges, another unit, garbage) is ignored
/// and the whole blob sent.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    Ignore,
    /// First and last byte, inclusive.
    Satisfiable(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: &str, size: u64) -> RangeAsk {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return RangeAsk::Ignore };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeAsk::Ignore };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) => match suffix {
            0 => RangeAsk::Unsatisfiable,
            _ if size == 0 => RangeAsk::Unsatisfiable,
            suffix => RangeAsk::Satisfiable(size.saturating_sub(suffix), size - 1),
        },
        (false, Some(first), _) if first >= size => RangeAsk::Unsatisfiable,
        (false, Some(first), None) if last.trim().is_empty() => RangeAsk::Satisfiable(first, size - 1),
        (false, Some(first), Some(last)) if last >= first => RangeAsk::Satisfiable(first, last.min(size - 1)),
        _ => RangeAsk::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_by_their_last_marker() {
        assert_eq!(route("/v2/"), Route::Base);
        assert_eq!(route("/v2"), Route::Base);
        assert_eq!(route("/v2/_catalog"), Route::Catalog);
        assert_eq!(route("/v2/a/b/tags/list"), Route::Tags("a/b"));
        assert_eq!(route("/v2/a/manifests/b/manifests/1"), Route::Manifest("a/manifests/b", "1"));
        assert_eq!(route("/v2/lib/x/blobs/sha256:ab"), Route::Blob("lib/x", "sha256:ab"));
        assert_eq!(route("/v2/lib/x/blobs/uploads/"), Route::Write);
        assert_eq!(route("/v2/x/referrers/sha256:ab"), Route::Referrers("x", "sha256:ab"));
        assert_eq!(route("/v2/x/blobs/sha256:ab/../../etc"), Route::NotFound);
        assert_eq!(route("/etc/passwd"), Route::NotFound);
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Satisfiable(0, 9));
        assert_eq!(parse_range("bytes=90-200", 100), RangeAsk::Satisfiable(90, 99));
        assert_eq!(parse_range("bytes=10-", 100), RangeAsk::Satisfiable(10, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Satisfiable(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), RangeAsk::Satisfiable(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=0-", 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn pages_end_with_a_next_link_only_while_more_remain() {
        let items: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let (first, next) = page(items.iter(), "n=2").unwrap();
        assert_eq!(first, ["a", "b"]);
        assert_eq!(next, Some((2, "b".to_owned())));
        let (rest, next) = page(items.iter(), "n=2&last=b").unwrap();
        assert_eq!((rest, next), (vec![&items[2]], None));
        assert_eq!(page(items.iter(), "n=3").unwrap().1, None);
        assert!(page(items.iter(), "n=0").unwrap().0.is_empty());
        assert!(page(items.iter(), "n=x").is_err());
        let (all, next) = page(items.iter(), "last=a").unwrap();
        assert_eq!((all.len(), next), (2, None));
    }
}
