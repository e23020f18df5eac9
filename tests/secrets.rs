//! Passwords and tokens never appear in what hpn prints: logs at trace level from every crate
//! (`RUST_LOG=trace`, `-vvv`), error messages, `--json` summaries, for runs that succeed and
//! runs that fail on the very credentials.

mod common;

use base64::Engine as _;
use common::fixture_server::{Auth, FixtureServer};
use common::{Run, Workspace, auth_file};
use hpn_testkit::Registry;
use hpn_testkit::fixtures::{self, Scale};

const USER: &str = "leakcheck";
const PASSWORD: &str = "Pw-ZEBRA-7hQ2-never-print";
const WRONG_PASSWORD: &str = "Pw-OKAPI-9kd1-also-never";
const TOKEN: &str = "tok-NARWHAL-3f9a0c-bearer";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Every form a credential could leak in.
fn secrets() -> Vec<String> {
    let mut secrets = vec![PASSWORD.to_owned(), WRONG_PASSWORD.to_owned(), TOKEN.to_owned()];
    for password in [PASSWORD, WRONG_PASSWORD] {
        let basic = b64(&format!("{USER}:{password}"));
        // Also the unpadded and URL-safe forms, and the base64 of the password alone.
        secrets.push(basic.trim_end_matches('=').to_owned());
        secrets.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{USER}:{password}")));
        secrets.push(b64(password).trim_end_matches('=').to_owned());
    }
    secrets
}

/// Nothing secret in the run's output, and no Authorization header value of any kind.
#[track_caller]
fn assert_no_secrets(what: &str, run: &Run) {
    let output = format!("{}\n{}", run.stdout, run.stderr);
    for secret in secrets() {
        assert!(!output.contains(&secret), "{what}: {secret:?} appears in the output:\n{output}");
    }
    for scheme in ["Basic ", "Bearer "] {
        for (at, _) in output.match_indices(scheme) {
            let value: String = output[at + scheme.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "+/=-_.".contains(*c))
                .collect();
            // `Bearer realm=...` in a challenge is no credential; a header value is a long
            // run of token characters.
            assert!(
                value.len() < 12,
                "{what}: an Authorization value {scheme}{value} appears in the output:\n{output}"
            );
        }
    }
}

/// Trace logs of every crate, and hpn's own -vvv.
const TRACE: &[(&str, &str)] = &[("RUST_LOG", "trace")];

fn with_auth<'a>(auth: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("REGISTRY_AUTH_FILE", auth)];
    env.extend_from_slice(TRACE);
    env.extend_from_slice(extra);
    env
}

#[test]
fn basic_credentials_stay_out_of_logs_errors_and_json() {
    let registry = Registry::start_with_htpasswd(USER, PASSWORD).expect("registry with htpasswd");
    let set = fixtures::build(Scale::Small).unwrap();
    let pushed = fixtures::push_images_to(&set, &registry, &["app-a", "multi"]).unwrap();
    let app = pushed.image("app-a").reference.clone();
    let multi = pushed.image("multi").reference.clone();
    let work = Workspace::new();
    let good = auth_file(&work, registry.addr(), USER, PASSWORD);
    let good = good.to_str().unwrap().to_owned();
    let env = with_auth(&good, &[]);

    let pull = work.hpn_with_env(["-vvv", "pull", app.as_str(), multi.as_str()], &env);
    pull.assert_ok();
    // The test means something only if the logs are really there.
    assert!(pull.stderr.contains("TRACE") && pull.stderr.contains("registry request"), "{}", pull.stderr);
    assert_no_secrets("pull -vvv", &pull);

    let save = work.hpn_with_env(["-vvv", "--json", "save", app.as_str(), "-o", "app.tar"], &env);
    save.assert_ok();
    assert_eq!(save.json()["ok"], 1);
    assert_no_secrets("save --json", &save);

    let push = work.hpn_with_env(
        ["-vvv", "push", app.as_str(), multi.as_str(), "-r", registry.addr(), "-p", "copies", "--push-mode", "2"],
        &env,
    );
    push.assert_ok();
    assert_no_secrets("push from the store", &push);
    let push_archive = work.hpn_with_env(["-vvv", "--json", "push", "-i", "app.tar", "-r", registry.addr()], &env);
    push_archive.assert_ok();
    assert_no_secrets("push -i", &push_archive);

    // The wrong password: pull, save and push all fail on it.
    let other = Workspace::new();
    let wrong = auth_file(&other, registry.addr(), USER, WRONG_PASSWORD);
    let wrong = wrong.to_str().unwrap().to_owned();
    let env = with_auth(&wrong, &[]);
    for args in [
        vec!["-vvv", "pull", app.as_str()],
        vec!["-vvv", "--json", "save", app.as_str(), "-o", "x.tar"],
        vec!["-vvv", "--json", "push", "-i", work.path().join("app.tar").to_str().unwrap(), "-r", registry.addr()],
    ] {
        let run = other.hpn_with_env(&args, &env);
        assert_eq!(run.code, 4, "{args:?} with a wrong password:\n{}", run.stderr);
        assert!(run.stderr.contains(registry.addr()), "{args:?}: the registry is not named:\n{}", run.stderr);
        assert_no_secrets(&format!("{args:?} with a wrong password"), &run);
    }
}

#[test]
fn bearer_tokens_and_the_passwords_that_buy_them_stay_out_of_the_output() {
    let set = fixtures::build(Scale::Small).unwrap();
    let auth = Auth::Bearer { user: USER.to_owned(), password: PASSWORD.to_owned(), token: TOKEN.to_owned() };
    let registry = FixtureServer::start(&set, auth, None);
    let app = format!("{}/fixtures/app-a:1", registry.addr());
    let missing = format!("{}/fixtures/app-a:no-such-tag", registry.addr());

    let work = Workspace::new();
    let good = auth_file(&work, registry.addr(), USER, PASSWORD);
    let good = good.to_str().unwrap().to_owned();
    let run = work.hpn_with_env(["-vvv", "--json", "pull", app.as_str()], &with_auth(&good, &[]));
    run.assert_ok();
    assert_no_secrets("pull with a token", &run);
    // The token was used: the registry saw it on the manifest request.
    let seen = registry.seen();
    assert!(
        seen.iter().any(|r| r.path().contains("/manifests/") && r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "{seen:#?}"
    );
    // A failure after the token was obtained: a 404 with the token in hand.
    let run = work.hpn_with_env(["-vvv", "--json", "pull", missing.as_str()], &with_auth(&good, &[]));
    run.assert_code(4);
    assert_no_secrets("a failing pull with a token", &run);

    // The token endpoint refuses the wrong password.
    let other = Workspace::new();
    let wrong = auth_file(&other, registry.addr(), USER, WRONG_PASSWORD);
    let wrong = wrong.to_str().unwrap().to_owned();
    let run = other.hpn_with_env(["-vvv", "--json", "pull", app.as_str()], &with_auth(&wrong, &[]));
    run.assert_code(4);
    assert_no_secrets("pull with a wrong password for the token", &run);
}

#[test]
fn malformed_credential_files_are_reported_without_their_secrets() {
    let work = Workspace::new();
    let image = "127.0.0.1:1/team/app:1";
    let cases = [
        // Not base64 at all.
        format!(r#"{{"auths":{{"127.0.0.1:1":{{"auth":"!!{PASSWORD}!!"}}}}}}"#),
        // base64 of something without the `user:` part.
        format!(r#"{{"auths":{{"127.0.0.1:1":{{"auth":"{}"}}}}}}"#, b64(PASSWORD)),
        // A syntax error right after the secret.
        format!(r#"{{"auths":{{"127.0.0.1:1":{{"auth":"{}" "#, b64(&format!("{USER}:{PASSWORD}"))),
        // The secret where a string is not allowed.
        format!(r#"{{"auths":{{"127.0.0.1:1":{{"auth":["{}"]}}}}}}"#, b64(&format!("{USER}:{PASSWORD}"))),
    ];
    for (i, content) in cases.iter().enumerate() {
        let file = work.file(&format!("auth{i}.json"), content);
        let run = work
            .hpn_with_env(["-vvv", "--json", "pull", image, "--retries", "1"], &with_auth(file.to_str().unwrap(), &[]));
        // A credentials file hpn cannot use is a config error, naming the file but not the secret.
        assert_eq!(run.code, 3, "case {i}:\n{}", run.stderr);
        assert!(run.stderr.contains(&format!("auth{i}.json")), "case {i}: the file is not named:\n{}", run.stderr);
        assert_no_secrets(&format!("malformed credentials file {i}"), &run);
    }
}
