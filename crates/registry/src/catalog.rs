//! Listing what a registry holds: the tags of a repository
//! (`/v2/NAME/tags/list`) and the registry's repositories (`/v2/_catalog`),
//! both paginated by the `Link: <…>; rel="next"` header the distribution
//! spec defines.

use std::collections::HashSet;

use reqwest::Method;
use reqwest::header::{HeaderMap, LINK};
use serde::Deserialize;

use crate::error::{RegistryError, Target};
use crate::transport::{Call, Scope, Slot, Transport, stall};

/// One page of a list is read into memory up to this size.
const MAX_PAGE_BYTES: usize = hpn_oci::limits::MANIFEST as usize;
/// A registry whose `Link` headers never end is cut off here rather than
/// followed forever; at distribution's default page size that is millions of
/// entries.
const MAX_PAGES: usize = 10_000;

#[derive(Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

/// Every tag of `repository`, in the registry's order, asking for
/// `page_size` tags per request when given (the registry may send fewer).
pub(crate) async fn tags(
    transport: &Transport,
    registry: &str,
    repository: &str,
    page_size: Option<usize>,
) -> Result<Vec<String>, RegistryError> {
    let call = Call::new(
        transport.host(registry)?,
        repository,
        Method::GET,
        with_page_size(format!("/v2/{repository}/tags/list"), page_size),
        vec![Scope::pull(repository)],
        format!("tags of {registry}/{repository}"),
        Target::Other,
    );
    collect(transport, call, |body| serde_json::from_slice::<TagsPage>(body).map(|page| page.tags.unwrap_or_default()))
        .await
}

/// Every repository the registry lists in its catalog (most public
/// registries refuse it; a private distribution registry answers).
pub(crate) async fn repositories(
    transport: &Transport,
    registry: &str,
    page_size: Option<usize>,
) -> Result<Vec<String>, RegistryError> {
    let call = Call {
        host: transport.host(registry)?,
        repository: None,
        method: Method::GET,
        path: with_page_size("/v2/_catalog".to_owned(), page_size),
        headers: HeaderMap::new(),
        scopes: vec![Scope::catalog()],
        subject: format!("catalog of registry {registry}"),
        target: Target::Other,
        slot: Slot::General,
    };
    collect(transport, call, |body| {
        serde_json::from_slice::<CatalogPage>(body).map(|page| page.repositories.unwrap_or_default())
    })
    .await
}

fn with_page_size(path: String, page_size: Option<usize>) -> String {
    match page_size {
        Some(size) => format!("{path}?n={size}"),
        None => path,
    }
}

/// Fetches `call`'s page and every page its `Link` headers lead to.
async fn collect(
    transport: &Transport,
    mut call: Call,
    parse: impl Fn(&[u8]) -> serde_json::Result<Vec<String>>,
) -> Result<Vec<String>, RegistryError> {
    let registry = call.host.name().to_owned();
    let mut entries = Vec::new();
    let mut visited = HashSet::new();
    for _ in 0..MAX_PAGES {
        let mut reply = transport.execute(&call).await?;
        if !reply.response.status().is_success() {
            return Err(transport.failure(&call, reply).await);
        }
        let next = next_page(reply.response.headers());
        let (body, truncated) = stall::read_body(&mut reply.response, MAX_PAGE_BYTES, transport.options())
            .await
            .map_err(|error| transport.network(&call, error, reply.attempts))?;
        drop(reply);
        if truncated {
            return Err(RegistryError::protocol(
                &registry,
                &call.subject,
                format!("a page of the list is more than the {MAX_PAGE_BYTES} bytes hpn accepts"),
            ));
        }
        let page = parse(&body).map_err(|error| {
            RegistryError::protocol(&registry, &call.subject, format!("the list is not the expected JSON: {error}"))
        })?;
        entries.extend(page);
        match next {
            // A registry pointing back at a page already read would loop forever.
            Some(next) if visited.insert(next.clone()) => call.path = next,
            Some(_) => {
                return Err(RegistryError::protocol(&registry, &call.subject, "the Link header points back at a page"));
            }
            None => return Ok(entries),
        }
    }
    Err(RegistryError::protocol(&registry, &call.subject, format!("the list goes on for more than {MAX_PAGES} pages")))
}

/// The target of the `Link` header whose `rel` is `next`:
/// `</v2/a/tags/list?last=x&n=2>; rel="next"`. Registries send a path on
/// their own origin (some an absolute URL, which the transport accepts).
fn next_page(headers: &HeaderMap) -> Option<String> {
    headers.get_all(LINK).iter().filter_map(|value| value.to_str().ok()).flat_map(|value| value.split(',')).find_map(
        |link| {
            let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
            let is_next = params.split(';').any(|param| {
                param.trim().split_once('=').is_some_and(|(key, value)| {
                    key.trim().eq_ignore_ascii_case("rel") && value.trim().trim_matches('"') == "next"
                })
            });
            (is_next && !target.is_empty()).then(|| target.to_owned())
        },
    )
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn link(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(LINK, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn next_page_reads_the_link_header_as_the_spec_writes_it() {
        assert_eq!(
            next_page(&link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#)).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_page(&link(r#"<https://r.example/v2/_catalog?last=x>; rel=prev, </v2/_catalog?last=y>; rel=next"#))
                .as_deref(),
            Some("/v2/_catalog?last=y")
        );
        assert_eq!(next_page(&link(r#"</v2/a/tags/list?last=b>; rel="prev""#)), None);
        assert_eq!(next_page(&HeaderMap::new()), None);
        assert_eq!(next_page(&link("garbage")), None);
    }
}
