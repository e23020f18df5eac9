//! Registry credentials from the files Docker, podman and skopeo write, and
//! from Docker credential helpers.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::Deserialize;

use crate::endpoint;

/// What Docker calls Docker Hub's server address in credential stores.
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";
/// Docker writes this user name when the secret is an OAuth2 refresh token.
const IDENTITY_TOKEN_USERNAME: &str = "<token>";
/// What helpers print (exit status 1) when they hold nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or an access token used as the password).
    Basic {
        /// The account.
        username: String,
        /// Its password or access token.
        password: String,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`), exchanged for a
    /// registry token at the token endpoint.
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).field("password", &"<redacted>").finish()
            }
            Self::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Credentials that could not be read. Messages name the file or helper,
/// never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// An auth file exists but cannot be read.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The reason never quotes the file's content, which holds secrets.
    #[error("malformed credentials file {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `docker-credential-*` helper failed.
    #[error("credential helper {helper} failed for {registry}: {message}")]
    Helper {
        /// The helper's name (`docker-credential-NAME`).
        helper: String,
        /// The registry it was asked about.
        registry: String,
        /// What it said.
        message: String,
    },
}

/// Credentials per registry, from auth files, credential helpers and
/// explicit entries. Cheap to clone; helper answers are cached and shared
/// between clones so a helper runs once per registry.
#[derive(Clone, Default)]
pub struct Credentials {
    /// From [`Credentials::insert`], which beats every file.
    explicit: HashMap<String, Credential>,
    /// In order of precedence.
    files: Vec<AuthFile>,
    /// Replaces `PATH` when looking for and running helpers (tests).
    helper_path: Option<OsString>,
    helper_cache: Arc<Mutex<HelperAnswers>>,
}

/// Helper answers by (helper, registry), `None` for "not found".
type HelperAnswers = HashMap<(String, String), Option<Credential>>;

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut explicit: Vec<&str> = self.explicit.keys().map(String::as_str).collect();
        explicit.sort_unstable();
        f.debug_struct("Credentials")
            .field("explicit_registries", &explicit)
            .field("files", &self.files.iter().map(|file| &file.path).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct AuthFile {
    path: PathBuf,
    /// Per registry host: entries that hold credentials (Docker leaves empty
    /// `{}` markers in `auths` when a credential store holds the secret).
    hosts: HashMap<String, Credential>,
    /// Per `host/namespace` (containers-auth.json allows repository-scoped keys).
    namespaces: HashMap<String, Credential>,
    helpers: HashMap<String, String>,
    store: Option<String>,
}

#[derive(Deserialize)]
struct FileContent {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl Credentials {
    /// Loads, in this order of precedence: `$REGISTRY_AUTH_FILE`,
    /// `${XDG_RUNTIME_DIR}/containers/auth.json`,
    /// `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json` (where podman and
    /// skopeo write when there is no runtime dir), and
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. Missing files
    /// are skipped; a malformed one is an error naming it.
    pub fn load_default() -> Result<Self, CredentialError> {
        Self::from_files(&default_paths(|name| std::env::var_os(name)))
    }

    /// Loads the given files, the first taking precedence. Missing files are skipped.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, CredentialError> {
        let mut credentials = Self::default();
        for path in paths {
            if let Some(file) = AuthFile::load(path)? {
                credentials.files.push(file);
            }
        }
        Ok(credentials)
    }

    /// Adds credentials for a registry (from CLI flags or the environment);
    /// they take precedence over every file.
    pub fn insert(&mut self, registry: &str, username: &str, password: &str) {
        self.explicit.insert(
            normalize_registry(registry),
            Credential::Basic { username: username.to_owned(), password: password.to_owned() },
        );
    }

    /// The credentials for a registry host, or `None` for anonymous access.
    ///
    /// Per file, in the files' order: `credHelpers[host]`, then an `auths`
    /// entry that holds credentials (keys such as `https://index.docker.io/v1/`,
    /// `docker.io`, `https://host/v2/` and `host` all match), then `credsStore`.
    /// A host's own helper comes first because Docker consults it before
    /// anything else; an `auths` entry beats the global store because Docker
    /// only leaves empty markers there when a store is in use.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        self.lookup_inner(registry, None)
    }

    /// Like [`Credentials::lookup`], but repository-scoped `auths` keys of
    /// containers-auth.json (`host/namespace`) are honoured first, the most
    /// specific one winning.
    pub fn lookup_for_repository(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        self.lookup_inner(registry, Some(repository))
    }

    /// Whether any source could hold credentials; when not, lookups are free.
    pub fn is_empty(&self) -> bool {
        self.explicit.is_empty() && self.files.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn with_helper_path(mut self, path: OsString) -> Self {
        self.helper_path = Some(path);
        self
    }

    fn lookup_inner(&self, registry: &str, repository: Option<&str>) -> Result<Option<Credential>, CredentialError> {
        let host = normalize_registry(registry);
        if let Some(credential) = self.explicit.get(&host) {
            return Ok(Some(credential.clone()));
        }
        for file in &self.files {
            if let Some(repository) = repository {
                let mut scope = format!("{host}/{repository}");
                loop {
                    if let Some(credential) = file.namespaces.get(&scope) {
                        return Ok(Some(credential.clone()));
                    }
                    match scope.rfind('/') {
                        Some(slash) if slash > host.len() => scope.truncate(slash),
                        _ => break,
                    }
                }
            }
            if let Some(helper) = file.helpers.get(&host)
                && let Some(credential) = self.run_helper_cached(helper, &host)?
            {
                return Ok(Some(credential));
            }
            if let Some(credential) = file.hosts.get(&host) {
                return Ok(Some(credential.clone()));
            }
            if let Some(store) = &file.store
                && let Some(credential) = self.run_helper_cached(store, &host)?
            {
                return Ok(Some(credential));
            }
        }
        Ok(None)
    }

    fn run_helper_cached(&self, helper: &str, host: &str) -> Result<Option<Credential>, CredentialError> {
        let key = (helper.to_owned(), host.to_owned());
        if let Some(answer) = self.helper_cache.lock().unwrap_or_else(|poison| poison.into_inner()).get(&key) {
            return Ok(answer.clone());
        }
        let answer = self.run_helper(helper, host)?;
        self.helper_cache.lock().unwrap_or_else(|poison| poison.into_inner()).insert(key, answer.clone());
        Ok(answer)
    }

    /// Runs `docker-credential-<helper> get` with the server URL on stdin, as
    /// the Docker CLI does.
    fn run_helper(&self, helper: &str, host: &str) -> Result<Option<Credential>, CredentialError> {
        let program = format!("docker-credential-{helper}");
        let server_url = if host == hpn_oci::DOCKER_HUB_REGISTRY { DOCKER_HUB_SERVER_URL } else { host };
        let failed =
            |message: String| CredentialError::Helper { helper: program.clone(), registry: host.to_owned(), message };
        let mut command = Command::new(&program);
        command.arg("get").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(path) = &self.helper_path {
            // std resolves the program through the PATH given to the command.
            command.env("PATH", path);
        }
        let mut child = command.spawn().map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => failed(format!("{program} is not installed or not in PATH")),
            _ => failed(format!("cannot run it: {error}")),
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper may exit before reading its input; its exit status tells.
            match stdin.write_all(server_url.as_bytes()) {
                Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
                    return Err(failed(format!("cannot write to it: {error}")));
                }
                _ => {}
            }
        }
        let output = child.wait_with_output().map_err(|error| failed(format!("cannot wait for it: {error}")))?;
        if !output.status.success() {
            // Helpers report errors on stdout (the protocol) or stderr; neither
            // carries the secret on failure.
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let text = if stdout.trim().is_empty() { stderr.trim() } else { stdout.trim() };
            if text.to_ascii_lowercase().contains(HELPER_NOT_FOUND) {
                return Ok(None);
            }
            let text: String = text.chars().take(300).collect();
            return Err(failed(format!("{} ({})", text, output.status)));
        }
        let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|error| {
            // The output holds the secret: describe where it broke, never what it said.
            failed(format!("its output is not the expected JSON (line {}, column {})", error.line(), error.column()))
        })?;
        if answer.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if answer.username == IDENTITY_TOKEN_USERNAME {
            Credential::IdentityToken(answer.secret)
        } else {
            Credential::Basic { username: answer.username, password: answer.secret }
        }))
    }
}

impl AuthFile {
    fn load(path: &Path) -> Result<Option<Self>, CredentialError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CredentialError::Read { path: path.to_owned(), source }),
        };
        let malformed = |reason: String| CredentialError::Malformed { path: path.to_owned(), reason };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            // podman leaves an empty file behind after the last logout.
            return Ok(Some(Self::empty(path)));
        }
        let content: FileContent = serde_json::from_slice(&bytes).map_err(|error| {
            // serde's messages may quote values, and values are secrets here.
            malformed(format!(
                "not valid JSON of the expected shape (line {}, column {}, {})",
                error.line(),
                error.column(),
                match error.classify() {
                    serde_json::error::Category::Io => "read error",
                    serde_json::error::Category::Syntax => "syntax error",
                    serde_json::error::Category::Data => "a field has the wrong type",
                    serde_json::error::Category::Eof => "unexpected end of file",
                }
            ))
        })?;
        let mut file = Self::empty(path);
        for (key, entry) in content.auths {
            let Some(credential) =
                entry.credential().map_err(|reason| malformed(format!("auths[{key:?}]: {reason}")))?
            else {
                continue;
            };
            match normalize_key(&key) {
                Key::Host(host) => {
                    file.hosts.entry(host).or_insert(credential);
                }
                Key::Namespace(scope) => {
                    file.namespaces.entry(scope).or_insert(credential);
                }
            }
        }
        for (key, helper) in content.cred_helpers {
            if let Key::Host(host) = normalize_key(&key)
                && !helper.is_empty()
            {
                file.helpers.entry(host).or_insert(helper);
            }
        }
        file.store = content.creds_store.filter(|store| !store.is_empty());
        Ok(Some(file))
    }

    fn empty(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            hosts: HashMap::new(),
            namespaces: HashMap::new(),
            helpers: HashMap::new(),
            store: None,
        }
    }
}

impl AuthEntry {
    /// `Ok(None)` for entries without credentials (markers).
    fn credential(self) -> Result<Option<Credential>, String> {
        if let Some(token) = self.identitytoken.filter(|token| !token.is_empty()) {
            return Ok(Some(Credential::IdentityToken(token)));
        }
        if let Some(auth) = self.auth.filter(|auth| !auth.trim().is_empty()) {
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let decoded = engine.decode(auth.trim()).map_err(|_| "`auth` is not valid base64".to_owned())?;
            let decoded = String::from_utf8(decoded).map_err(|_| "`auth` does not decode to UTF-8".to_owned())?;
            let (username, password) =
                decoded.split_once(':').ok_or_else(|| "`auth` does not decode to user:password".to_owned())?;
            if username.is_empty() && password.is_empty() {
                return Ok(None);
            }
            return Ok(Some(Credential::Basic { username: username.to_owned(), password: password.to_owned() }));
        }
        match (self.username, self.password) {
            (Some(username), Some(password)) if !username.is_empty() || !password.is_empty() => {
                Ok(Some(Credential::Basic { username, password }))
            }
            _ => Ok(None),
        }
    }
}

enum Key {
    Host(String),
    Namespace(String),
}

/// Docker's keys are URLs (`https://index.docker.io/v1/`, `https://host/v2/`)
/// or bare hosts; containers-auth.json adds `host/namespace` keys. A URL or a
/// `/v1/`/`/v2/` path means the whole host.
fn normalize_key(key: &str) -> Key {
    let key = key.trim();
    let (had_scheme, rest) = match key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")) {
        Some(rest) => (true, rest),
        None => (false, key),
    };
    let rest = rest.trim_end_matches('/');
    match rest.split_once('/') {
        None => Key::Host(normalize_registry(rest)),
        Some((host, path)) if had_scheme || matches!(path, "v1" | "v2") => Key::Host(normalize_registry(host)),
        Some((host, path)) => Key::Namespace(format!("{}/{path}", normalize_registry(host))),
    }
}

fn normalize_registry(registry: &str) -> String {
    let registry = registry.trim().to_ascii_lowercase();
    if endpoint::is_docker_hub(&registry) { hpn_oci::DOCKER_HUB_REGISTRY.to_owned() } else { registry }
}

fn default_paths(var: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let set = |name: &str| var(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    let home = set("HOME");
    let mut paths = Vec::new();
    if let Some(file) = set("REGISTRY_AUTH_FILE") {
        paths.push(file);
    }
    if let Some(runtime) = set("XDG_RUNTIME_DIR") {
        paths.push(runtime.join("containers/auth.json"));
    }
    if let Some(config) = set("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|home| home.join(".config"))) {
        paths.push(config.join("containers/auth.json"));
    }
    if let Some(docker) = set("DOCKER_CONFIG").or_else(|| home.as_ref().map(|home| home.join(".docker"))) {
        paths.push(docker.join("config.json"));
    }
    paths
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn basic(username: &str, password: &str) -> Option<Credential> {
        Some(Credential::Basic { username: username.to_owned(), password: password.to_owned() })
    }

    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn auths_entries_match_docker_key_forms() {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "https://harbor.example.com/v2/":{{"auth":"{}"}},
                "quay.io":{{"username":"qu","password":"qp"}},
                "http://localhost:5000":{{"auth":"{}"}},
                "ghcr.io":{{"identitytoken":"refresh-me"}},
                "marker.example":{{}},
                "quay.io/team/app":{{"auth":"{}"}}
            }},"HttpHeaders":{{"X-Ignored":"1"}}}}"#,
            b64("hub:hubpass"),
            b64("harbor:pa:ss"),
            b64("local:lp"),
            b64("scoped:sp"),
        );
        let path = write(dir.path(), "config.json", &config);
        let credentials = Credentials::from_files(&[path]).unwrap();
        assert_eq!(credentials.lookup("docker.io").unwrap(), basic("hub", "hubpass"));
        assert_eq!(credentials.lookup("index.docker.io").unwrap(), basic("hub", "hubpass"));
        // The password may itself contain colons: only the first one splits.
        assert_eq!(credentials.lookup("harbor.example.com").unwrap(), basic("harbor", "pa:ss"));
        assert_eq!(credentials.lookup("quay.io").unwrap(), basic("qu", "qp"));
        assert_eq!(credentials.lookup("localhost:5000").unwrap(), basic("local", "lp"));
        assert_eq!(credentials.lookup("ghcr.io").unwrap(), Some(Credential::IdentityToken("refresh-me".into())));
        assert_eq!(credentials.lookup("marker.example").unwrap(), None);
        assert_eq!(credentials.lookup("unknown.example").unwrap(), None);
        assert_eq!(credentials.lookup_for_repository("quay.io", "team/app/sub").unwrap(), basic("scoped", "sp"));
        assert_eq!(credentials.lookup_for_repository("quay.io", "team/other").unwrap(), basic("qu", "qp"));
    }

    #[test]
    fn earlier_files_and_explicit_entries_take_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let first =
            write(dir.path(), "auth.json", &format!(r#"{{"auths":{{"a.example":{{"auth":"{}"}}}}}}"#, b64("one:1")));
        let second = write(
            dir.path(),
            "config.json",
            &format!(
                r#"{{"auths":{{"a.example":{{"auth":"{}"}},"b.example":{{"auth":"{}"}}}}}}"#,
                b64("two:2"),
                b64("b:2")
            ),
        );
        let missing = dir.path().join("missing.json");
        let mut credentials = Credentials::from_files(&[missing, first, second]).unwrap();
        assert_eq!(credentials.lookup("a.example").unwrap(), basic("one", "1"));
        assert_eq!(credentials.lookup("b.example").unwrap(), basic("b", "2"));
        credentials.insert("A.example", "flag", "secret");
        assert_eq!(credentials.lookup("a.example").unwrap(), basic("flag", "secret"));
        assert!(!credentials.is_empty());
        assert!(Credentials::default().is_empty());
    }

    #[test]
    fn malformed_files_name_the_path_and_hide_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let broken = write(dir.path(), "broken.json", r#"{"auths":{"x":{"auth":"c2VjcmV0"}"#);
        let error = Credentials::from_files(std::slice::from_ref(&broken)).unwrap_err();
        assert!(error.to_string().contains(&broken.display().to_string()), "{error}");

        let wrong_type = write(dir.path(), "type.json", r#"{"auths":{"x":{"auth":["hunter2"]}}}"#);
        let error = Credentials::from_files(&[wrong_type]).unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("wrong type"), "{error}");

        let bad_base64 = write(dir.path(), "b64.json", r#"{"auths":{"x.example":{"auth":"!!not base64!!"}}}"#);
        let error = Credentials::from_files(&[bad_base64]).unwrap_err().to_string();
        assert!(error.contains("x.example") && error.contains("base64"), "{error}");
        assert!(!error.contains("!!not"), "{error}");

        let empty = write(dir.path(), "empty.json", "\n");
        assert_eq!(Credentials::from_files(&[empty]).unwrap().lookup("x").unwrap(), None);
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let mut credentials = Credentials::default();
        credentials.insert("r.example", "alice", "hunter2");
        let credential = credentials.lookup("r.example").unwrap().unwrap();
        let shown = format!("{credentials:?} {credential:?} {:?}", Credential::IdentityToken("tok-secret".into()));
        assert!(shown.contains("alice") && shown.contains("r.example"), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("tok-secret"), "{shown}");
    }

    #[test]
    fn default_paths_follow_the_documented_precedence() {
        let env: HashMap<&str, &str> = [
            ("REGISTRY_AUTH_FILE", "/custom/auth.json"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("HOME", "/home/u"),
            ("DOCKER_CONFIG", "/etc/docker-cfg"),
        ]
        .into();
        let paths = default_paths(|name| env.get(name).map(OsString::from));
        let expected: Vec<PathBuf> = [
            "/custom/auth.json",
            "/run/user/1000/containers/auth.json",
            "/home/u/.config/containers/auth.json",
            "/etc/docker-cfg/config.json",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(paths, expected);

        let only_home: HashMap<&str, &str> = [("HOME", "/h"), ("XDG_CONFIG_HOME", "")].into();
        let paths = default_paths(|name| only_home.get(name).map(OsString::from));
        assert_eq!(paths, [PathBuf::from("/h/.config/containers/auth.json"), PathBuf::from("/h/.docker/config.json")]);
    }

    /// All helper cases run in one test: writing an executable while another
    /// test thread forks can make exec fail with ETXTBSY.
    #[test]
    fn credential_helpers_are_run_with_the_server_url() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = dir.path().join("helper.log");
        let script = |name: &str, body: &str| {
            let path = bin.join(format!("docker-credential-{name}"));
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // Records its argument and stdin, answers per server URL.
        script(
            "test",
            &format!(
                r#"read -r server
echo "$1 $server" >> {log}
case "$server" in
  https://index.docker.io/v1/) echo '{{"ServerURL":"x","Username":"hubuser","Secret":"hubsecret"}}' ;;
  tok.example) echo '{{"ServerURL":"x","Username":"<token>","Secret":"refresh"}}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#,
                log = log.display()
            ),
        );
        script("store", r#"read -r server; echo "{\"Username\":\"store-$server\",\"Secret\":\"s\"}""#);
        script("broken", "echo 'keychain is locked' >&2; exit 3");
        script("garbage", "echo 'Secret: plaintext-secret'");

        let config = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{}},"plain.example":{{"auth":"{}"}}}},
                "credHelpers":{{"docker.io":"test","tok.example":"test","none.example":"test",
                               "bad.example":"broken","garbage.example":"garbage","gone.example":"missing"}},
                "credsStore":"store"}}"#,
            b64("p:q")
        );
        let path = write(dir.path(), "config.json", &config);
        let mut search = OsString::from(&bin);
        search.push(":/usr/bin:/bin");
        let credentials = Credentials::from_files(&[path]).unwrap().with_helper_path(search);

        assert_eq!(credentials.lookup("docker.io").unwrap(), basic("hubuser", "hubsecret"));
        assert_eq!(credentials.lookup("tok.example").unwrap(), Some(Credential::IdentityToken("refresh".into())));
        // The helper knows nothing: fall through to auths, then the store.
        assert_eq!(credentials.lookup("none.example").unwrap(), basic("store-none.example", "s"));
        assert_eq!(credentials.lookup("plain.example").unwrap(), basic("p", "q"));
        assert_eq!(credentials.lookup("other.example:5000").unwrap(), basic("store-other.example:5000", "s"));

        let error = credentials.lookup("bad.example").unwrap_err().to_string();
        assert!(error.contains("docker-credential-broken") && error.contains("keychain is locked"), "{error}");
        let error = credentials.lookup("garbage.example").unwrap_err().to_string();
        assert!(error.contains("docker-credential-garbage") && !error.contains("plaintext-secret"), "{error}");
        let error = credentials.lookup("gone.example").unwrap_err().to_string();
        assert!(error.contains("docker-credential-missing") && error.contains("not installed"), "{error}");

        // Answers are cached: a second lookup does not run the helper again.
        assert_eq!(credentials.clone().lookup("docker.io").unwrap(), basic("hubuser", "hubsecret"));
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls.lines().filter(|line| *line == "get https://index.docker.io/v1/").count(), 1, "{calls}");
        assert!(calls.contains("get tok.example") && calls.contains("get none.example"), "{calls}");
    }
}
