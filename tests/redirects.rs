//! Blob GETs redirected to another host, as ECR and GCS-backed registries do: hpn follows
//! the redirect but never sends the registry's Authorization header to the other host (object
//! storage refuses a request with two auth mechanisms, and the credentials are not its
//! business).

mod common;

use common::fixture_server::{Auth, BlobHost, FixtureServer};
use common::{Workspace, auth_file, committed_blobs};
use hpn_testkit::fixtures::{self, Scale};

#[test]
fn redirected_blobs_are_fetched_without_the_registrys_credentials() {
    let set = fixtures::build(Scale::Small).expect("build fixtures");
    let storage = BlobHost::start(&set);
    let (user, password) = ("ops", "redirect-pass-7781");
    let auth = Auth::Basic { user: user.to_owned(), password: password.to_owned() };
    let registry = FixtureServer::start(&set, auth, Some(storage.url()));
    let work = Workspace::new();
    let credentials = auth_file(&work, registry.addr(), user, password);
    let images = ["app-a", "multi"];
    let references: Vec<String> = images.iter().map(|name| format!("{}/fixtures/{name}:1", registry.addr())).collect();
    let mut args = vec!["pull".to_owned()];
    args.extend(references.iter().cloned());
    args.push("-vvv".to_owned());
    let env = [("REGISTRY_AUTH_FILE", credentials.to_str().unwrap()), ("RUST_LOG", "trace")];
    let run = work.hpn_with_env(&args, &env);
    run.assert_ok();
    // The signed URL is a credential too: it is followed, never logged.
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(output.contains("127.0.0.2"), "the redirect is not in the trace logs:\n{output}");
    assert!(!output.contains("presigned-") && !output.contains(password), "a credential was logged:\n{output}");

    // Every blob came from the storage host, none of them with an Authorization header.
    let wanted: Vec<String> = images
        .iter()
        .flat_map(|name| {
            let platform = set.image(name).amd64().clone();
            std::iter::once(platform.config.digest).chain(platform.layers.into_iter().map(|l| l.digest))
        })
        .collect();
    let fetched = storage.seen();
    let with_auth: Vec<_> = fetched.iter().filter(|r| r.authorization.is_some()).collect();
    assert!(with_auth.is_empty(), "the Authorization header went to the storage host: {with_auth:#?}");
    for digest in &wanted {
        assert!(
            fetched.iter().any(|r| r.path() == format!("/blobs/{digest}") && r.target.contains("X-Amz-Signature")),
            "{digest} was not fetched from the storage host with its signed URL: {fetched:#?}"
        );
    }
    // The registry itself did get the credentials (the redirects were answers to them).
    let registry_blob_gets: Vec<_> = registry.seen().into_iter().filter(|r| r.path().contains("/blobs/")).collect();
    assert!(!registry_blob_gets.is_empty());
    assert!(registry_blob_gets.iter().all(|r| r.authorization.is_some()), "{registry_blob_gets:#?}");

    let stored = committed_blobs(&work.store());
    for digest in &wanted {
        assert!(stored.contains(digest), "{digest} is not in the store");
    }
    work.assert_store_verifies();
}
