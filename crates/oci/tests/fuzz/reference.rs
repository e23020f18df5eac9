//! `hpn_oci::Reference` (and the `Digest` and `Platform` parsers it sits beside): any
//! input either fails to parse or parses to a reference whose display form parses back to
//! the same reference, and so does its familiar (Docker short) form where Docker's grammar
//! makes that form unambiguous.

use hpn_oci::{Digest, Platform, Reference};

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check_reference(text);
    if let Ok(digest) = text.parse::<Digest>() {
        let shown = digest.to_string();
        assert_eq!(shown.parse::<Digest>().as_ref(), Ok(&digest), "digest {text:?} shown as {shown:?}");
        assert_eq!(digest.short().len(), 12);
    }
    if let Ok(platform) = text.parse::<Platform>() {
        let shown = platform.to_string();
        let again = shown
            .parse::<Platform>()
            .unwrap_or_else(|error| panic!("platform {text:?} is shown as {shown:?}, which does not parse: {error}"));
        assert!(again == platform, "platform {text:?} is shown as {shown:?}, which parses to {again}");
        assert!(platform.matches(&again) && again.matches(&platform));
    }
}

fn check_reference(text: &str) {
    let Ok(reference) = text.parse::<Reference>() else { return };
    let shown = reference.to_string();
    let again = shown
        .parse::<Reference>()
        .unwrap_or_else(|error| panic!("{text:?} parses to {shown:?}, which does not parse: {error}"));
    assert_eq!(again, reference, "{text:?} parses to {shown:?}, which parses to something else");
    assert_eq!(again.to_string(), shown);

    // The rebuilt reference passes the same checks as the parsed one.
    let rebuilt =
        Reference::new(reference.registry(), reference.repository(), reference.tag(), reference.digest().cloned())
            .unwrap_or_else(|error| panic!("{text:?} parses to parts that Reference::new refuses: {error}"));
    assert_eq!(rebuilt, reference);
    assert!(reference.tag().is_some() || reference.digest().is_some());

    // What hpn asks the registry for is the digest when there is one, else the tag.
    let wanted = reference.manifest_reference();
    match reference.digest() {
        Some(digest) => assert_eq!(wanted, digest.to_string()),
        None => assert_eq!(Some(wanted.as_str()), reference.tag()),
    }
    assert_eq!(reference.name(), format!("{}/{}", reference.registry(), reference.repository()));
    let pinned = reference.with_digest_only(Digest::of(text.as_bytes()));
    assert_eq!(pinned.to_string().parse::<Reference>().as_ref(), Ok(&pinned));

    // The familiar form (`nginx:latest`, what docker's RepoTags hold) names the same image,
    // unless the repository's first component itself looks like a registry host
    // (`docker.io/localhost/x` shows as `localhost/x`): Docker's grammar has that ambiguity
    // too, and such names cannot be written any shorter.
    let first = reference.repository().split('/').next().unwrap_or_default();
    let ambiguous = reference.registry() == hpn_oci::DOCKER_HUB_REGISTRY
        && (first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()));
    if let Some(familiar) = reference.familiar_tagged()
        && !ambiguous
    {
        let parsed = familiar.parse::<Reference>().unwrap_or_else(|error| {
            panic!("{text:?} has the familiar form {familiar:?}, which does not parse: {error}")
        });
        assert_eq!(parsed.name(), reference.name(), "{text:?} has the familiar form {familiar:?}, another image");
        assert_eq!(parsed.tag(), reference.tag());
    }
}
