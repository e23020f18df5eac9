//! `hpn login` / `hpn logout` and the credential flags, against a distribution registry with
//! htpasswd auth, a token-auth registry, and a credential helper script on PATH.

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;

use base64::Engine as _;
use common::fixture_server::{Auth, FixtureServer};
use common::{Run, Workspace, seeded_registry};
use hpn_testkit::fixtures::{self, Scale};
use hpn_testkit::{Registry, TokenService, TokenSigner, skopeo};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Login-pw";

/// hpn with `input` on stdin.
fn hpn_with_stdin(work: &Workspace, args: &[&str], input: &str, env: &[(&str, &str)]) -> Run {
    let mut child = work
        .command()
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hpn");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

struct Private {
    registry: Registry,
    reference: String,
    digest: String,
    _set: fixtures::FixtureSet,
}

fn private_registry() -> Private {
    let registry = Registry::start_with_htpasswd(USER, PASSWORD).unwrap();
    let set = fixtures::build(Scale::Small).unwrap();
    let pushed = fixtures::push_to(&set, &registry).unwrap();
    let app = pushed.image("app-a");
    Private { reference: app.reference.clone(), digest: app.digest.clone(), registry, _set: set }
}

#[test]
fn login_checks_the_password_keeps_the_file_and_logout_removes_it() {
    let private = private_registry();
    let addr = private.registry.addr();
    let work = Workspace::new();
    let config = work.path().join("home/.docker/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let original = format!(
        r#"{{"auths":{{"other.example":{{"auth":"{}"}}}},"HttpHeaders":{{"X-Meta":"kept"}},"detachKeys":"ctrl-e,e"}}"#,
        b64("o:o")
    );
    std::fs::write(&config, &original).unwrap();

    let anonymous = work.hpn(["digest", &private.reference]);
    assert_ne!(anonymous.code, 0);
    assert!(anonymous.stderr.contains("401"), "{}", anonymous.stderr);

    let wrong = hpn_with_stdin(&work, &["login", addr, "-u", USER, "--password-stdin"], "not-it\n", &[]);
    assert_ne!(wrong.code, 0, "a wrong password is refused");
    assert!(wrong.stderr.contains("nothing was saved") && wrong.stderr.contains(addr), "{}", wrong.stderr);
    assert!(!wrong.stderr.contains("not-it"), "the password is never printed");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original, "the file was not touched");

    hpn_with_stdin(&work, &["login", addr, "-u", USER, "--password-stdin"], &format!("{PASSWORD}\n"), &[]).assert_ok();
    let saved = json_file(&config);
    assert_eq!(saved["auths"][addr]["auth"], b64(&format!("{USER}:{PASSWORD}")).as_str());
    assert_eq!(saved["auths"]["other.example"]["auth"], b64("o:o").as_str());
    assert_eq!(saved["HttpHeaders"], serde_json::json!({"X-Meta": "kept"}));
    assert_eq!(saved["detachKeys"], "ctrl-e,e");
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);

    // hpn and skopeo both read what was saved.
    assert_eq!(work.hpn(["digest", &private.reference]).assert_ok().stdout.trim(), private.digest);
    let theirs = skopeo([
        "inspect",
        "--tls-verify=false",
        "--no-tags",
        "--authfile",
        config.to_str().unwrap(),
        &format!("docker://{}", private.reference),
    ])
    .unwrap();
    assert!(theirs.contains(&private.digest));

    work.hpn(["logout", addr]).assert_ok();
    let after = json_file(&config);
    assert!(after["auths"].get(addr).is_none() && after["auths"].get("other.example").is_some(), "{after}");
    assert_ne!(work.hpn(["digest", &private.reference]).code, 0, "logged out");
    let again = work.hpn(["logout", addr]);
    again.assert_ok();
    assert!(again.stderr.contains("not logged in"), "{}", again.stderr);
}

#[test]
fn creds_and_authfile_flags() {
    let private = private_registry();
    let addr = private.registry.addr();
    let work = Workspace::new();
    let repository = private.registry.reference("fixtures/app-a");
    let run = work.hpn(["--creds", &format!("{USER}:{PASSWORD}"), "tags", &repository]);
    run.assert_ok();
    assert!(run.stdout.lines().any(|tag| tag == "1"), "{}", run.stdout);
    let wrong = work.hpn(["--creds", &format!("{USER}:nope"), "tags", &repository]);
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("401") && !wrong.stderr.contains("nope"), "{}", wrong.stderr);
    // --creds without a password and no terminal to ask on: a usage error.
    work.hpn(["--creds", USER, "tags", &repository]).assert_code(2);

    // --authfile is where login writes and the one file commands read.
    let auth = work.path().join("auth.json");
    let login = ["--authfile", auth.to_str().unwrap(), "login", addr, "-u", USER, "--password-stdin"];
    hpn_with_stdin(&work, &login, &format!("{PASSWORD}\n"), &[]).assert_ok();
    assert!(json_file(&auth)["auths"][addr].is_object());
    assert!(!work.path().join("home/.docker/config.json").exists(), "nothing written to the default file");
    work.hpn(["--authfile", auth.to_str().unwrap(), "digest", &private.reference]).assert_ok();
    // REGISTRY_AUTH_FILE is podman's name for the same.
    let run = work.hpn_with_env(["digest", &private.reference], &[("REGISTRY_AUTH_FILE", auth.to_str().unwrap())]);
    run.assert_ok();
}

#[test]
fn login_through_a_credential_store_helper() {
    let private = private_registry();
    let addr = private.registry.addr();
    let work = Workspace::new();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let keyring = work.path().join("keyring.json");
    let erased = work.path().join("erased");
    let helper = bin.join("docker-credential-test");
    // Keeps the one secret it is given; `get` answers with the same JSON `store` received.
    std::fs::write(
        &helper,
        format!(
            r#"#!/bin/sh
case "$1" in
  store) cat > {keyring} ;;
  get) read -r server; if [ -s {keyring} ]; then cat {keyring}; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) read -r server; echo "$server" > {erased}; rm -f {keyring} ;;
  *) exit 2 ;;
esac
"#,
            keyring = keyring.display(),
            erased = erased.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = work.path().join("home/.docker/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, r#"{"credsStore":"test","auths":{}}"#).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let env = [("PATH", path.as_str())];

    let wrong = hpn_with_stdin(&work, &["login", addr, "-u", USER, "--password-stdin"], "wrong\n", &env);
    assert_ne!(wrong.code, 0);
    assert!(!keyring.exists(), "a refused login reaches no helper");

    let run = hpn_with_stdin(&work, &["login", addr, "-u", USER, "--password-stdin"], &format!("{PASSWORD}\n"), &env);
    run.assert_ok();
    assert!(run.stdout.contains("docker-credential-test"), "{}", run.stdout);
    assert_eq!(json_file(&keyring), serde_json::json!({"ServerURL": addr, "Username": USER, "Secret": PASSWORD}));
    let file = std::fs::read_to_string(&config).unwrap();
    assert!(!file.contains(PASSWORD) && !file.contains(&b64(&format!("{USER}:{PASSWORD}"))), "{file}");

    assert_eq!(work.hpn_with_env(["digest", &private.reference], &env).assert_ok().stdout.trim(), private.digest);

    work.hpn_with_env(["logout", addr], &env).assert_ok();
    assert_eq!(std::fs::read_to_string(&erased).unwrap().trim(), addr);
    assert!(!keyring.exists());
}

#[test]
fn login_with_the_token_flow() {
    let set = fixtures::build(Scale::Small).unwrap();
    let auth = Auth::Bearer { user: USER.to_owned(), password: PASSWORD.to_owned(), token: "tok-login".to_owned() };
    let registry = FixtureServer::start(&set, auth, None);
    let work = Workspace::new();
    let login = ["login", registry.addr(), "-u", USER, "--password-stdin"];
    let wrong = hpn_with_stdin(&work, &login, "wrong\n", &[]);
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("nothing was saved"), "{}", wrong.stderr);
    assert!(!work.path().join("home/.docker/config.json").exists());
    hpn_with_stdin(&work, &login, &format!("{PASSWORD}\n"), &[]).assert_ok();
    // The token endpoint saw the credentials, and the registry the token it handed out.
    let seen = registry.seen();
    assert!(seen.iter().any(|request| request.path() == "/token"));
    assert!(
        seen.iter()
            .any(|request| request.path() == "/v2/" && request.authorization.as_deref() == Some("Bearer tok-login"))
    );
    let saved = json_file(&work.path().join("home/.docker/config.json"));
    assert_eq!(saved["auths"][registry.addr()]["auth"], b64(&format!("{USER}:{PASSWORD}")).as_str());
}

/// The distribution registry with token auth: login checks the password at the token endpoint,
/// and tags, catalog, tag and delete each get a token for their own scope.
#[test]
fn token_auth_registry_login_then_tags_catalog_tag_and_delete() {
    let seeded = seeded_registry();
    let signer = std::sync::Arc::new(TokenSigner::generate().unwrap());
    let tokens = TokenService::start(signer.clone(), USER, PASSWORD).unwrap();
    let registry = Registry::builder().token_auth(&tokens.realm(), &signer).start().unwrap();
    let work = Workspace::new();
    let app = seeded.fixtures.image("app-a");
    let target = registry.reference("team/app:1");
    assert_ne!(work.hpn(["copy", &app.reference, &target]).code, 0, "anonymous pushes are refused");
    work.hpn(["--creds", &format!("{USER}:{PASSWORD}"), "copy", &app.reference, &target]).assert_ok();

    let config = work.path().join("home/.docker/config.json");
    let login = ["login", registry.addr(), "-u", USER, "--password-stdin"];
    let wrong = hpn_with_stdin(&work, &login, "wrong\n", &[]);
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("nothing was saved"), "{}", wrong.stderr);
    assert!(!config.exists());
    hpn_with_stdin(&work, &login, &format!("{PASSWORD}\n"), &[]).assert_ok();

    let tags = work.hpn(["tags", &registry.reference("team/app")]);
    assert_eq!(tags.assert_ok().stdout.lines().collect::<Vec<_>>(), ["1"]);
    work.hpn(["tag", &target, "2"]).assert_ok();
    let catalog = work.hpn(["catalog", registry.addr()]);
    assert_eq!(catalog.assert_ok().stdout.lines().collect::<Vec<_>>(), ["team/app"]);
    work.hpn(["delete", "--yes", &registry.reference("team/app:2")]).assert_ok();
    assert_ne!(work.hpn(["digest", &target]).code, 0, "the manifest both tags named is gone");
    let scopes = tokens.requested_scopes();
    assert!(scopes.iter().any(|scope| scope == "registry:catalog:*"), "{scopes:?}");
    assert!(scopes.iter().any(|scope| scope == "repository:team/app:delete"), "{scopes:?}");
}
