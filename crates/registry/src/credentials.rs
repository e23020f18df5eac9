//! Registry credentials from the files Docker, podman and skopeo write, and
//! from Docker credential helpers.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
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
    /// An auth file could not be written; the old one is untouched.
    #[error("cannot write credentials file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
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
    /// From [`Credentials::insert_for_every_registry`]: after the explicit
    /// entries, before every file.
    every_registry: Option<Credential>,
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

    /// Credentials for whichever registry a command talks to (skopeo's
    /// `--creds`); they beat every file, entries of [`Credentials::insert`]
    /// beat them.
    pub fn insert_for_every_registry(&mut self, username: &str, password: &str) {
        self.every_registry = Some(Credential::Basic { username: username.to_owned(), password: password.to_owned() });
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
        self.explicit.is_empty() && self.every_registry.is_none() && self.files.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn with_helper_path(mut self, path: OsString) -> Self {
        self.helper_path = Some(path);
        self
    }

    /// Where [`Credentials::lookup_for_repository`] finds the credentials for
    /// `registry` (`--creds`, an auth file's entry, a credential helper), to
    /// name in an error when the registry refuses them; `None` without any.
    pub fn source_of(&self, registry: &str, repository: Option<&str>) -> Result<Option<String>, CredentialError> {
        Ok(self.find(registry, repository)?.map(|(_, source)| source))
    }

    fn lookup_inner(&self, registry: &str, repository: Option<&str>) -> Result<Option<Credential>, CredentialError> {
        Ok(self.find(registry, repository)?.map(|(credential, _)| credential))
    }

    /// The credentials for `registry` and where they come from.
    fn find(&self, registry: &str, repository: Option<&str>) -> Result<Option<(Credential, String)>, CredentialError> {
        let host = normalize_registry(registry);
        if let Some(credential) = self.explicit.get(&host) {
            return Ok(Some((credential.clone(), format!("the credentials given for {host}"))));
        }
        if let Some(credential) = &self.every_registry {
            return Ok(Some((credential.clone(), "the credentials given with --creds".to_owned())));
        }
        for file in &self.files {
            let path = file.path.display();
            if let Some(repository) = repository {
                let mut scope = format!("{host}/{repository}");
                loop {
                    if let Some(credential) = file.namespaces.get(&scope) {
                        return Ok(Some((credential.clone(), format!("the entry for {scope} in {path}"))));
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
                let source = format!("credential helper docker-credential-{helper} (credHelpers in {path})");
                return Ok(Some((credential, source)));
            }
            if let Some(credential) = file.hosts.get(&host) {
                return Ok(Some((credential.clone(), format!("the entry for {host} in {path}"))));
            }
            if let Some(store) = &file.store
                && let Some(credential) = self.run_helper_cached(store, &host)?
            {
                let source = format!("credential helper docker-credential-{store} (credsStore in {path})");
                return Ok(Some((credential, source)));
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
        let reply = call_helper(helper, "get", server_url(host).as_bytes(), host, self.helper_path.as_deref())?;
        let HelperReply::Answer(stdout) = reply else { return Ok(None) };
        let answer: HelperAnswer = serde_json::from_slice(&stdout).map_err(|error| {
            // The output holds the secret: describe where it broke, never what it said.
            helper_error(
                helper,
                host,
                format!("its output is not the expected JSON (line {}, column {})", error.line(), error.column()),
            )
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

/// What a credential helper answered.
enum HelperReply {
    /// It succeeded; this is its stdout.
    Answer(Vec<u8>),
    /// It holds nothing for the server.
    NotFound,
}

/// The name a credential store knows a registry by: Docker Hub's legacy URL,
/// else the host as the user names it.
fn server_url(host: &str) -> &str {
    if host == hpn_oci::DOCKER_HUB_REGISTRY { DOCKER_HUB_SERVER_URL } else { host }
}

fn helper_error(helper: &str, registry: &str, message: String) -> CredentialError {
    CredentialError::Helper { helper: format!("docker-credential-{helper}"), registry: registry.to_owned(), message }
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin (the
/// docker-credential-helpers protocol: `get`, `store`, `erase`).
/// `helper_path` replaces `PATH` when looking for and running it (tests).
fn call_helper(
    helper: &str,
    action: &str,
    input: &[u8],
    registry: &str,
    helper_path: Option<&std::ffi::OsStr>,
) -> Result<HelperReply, CredentialError> {
    let program = format!("docker-credential-{helper}");
    let failed = |message: String| helper_error(helper, registry, message);
    let mut command = Command::new(&program);
    command.arg(action).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(path) = helper_path {
        // std resolves the program through the PATH given to the command.
        command.env("PATH", path);
    }
    let mut child = command.spawn().map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => failed(format!("{program} is not installed or not in PATH")),
        _ => failed(format!("cannot run it: {error}")),
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit before reading its input; its exit status tells.
        match stdin.write_all(input) {
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
            return Ok(HelperReply::NotFound);
        }
        let text: String = text.chars().take(300).collect();
        return Err(failed(format!("{action}: {} ({})", text, output.status)));
    }
    Ok(HelperReply::Answer(output.stdout))
}

/// Where `login` writes: `$REGISTRY_AUTH_FILE` (podman's and skopeo's
/// override), else `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`, which docker, podman and skopeo all read.
/// `None` without any of those variables.
pub fn default_login_file() -> Option<PathBuf> {
    login_file_path(|name| std::env::var_os(name))
}

fn login_file_path(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    set("REGISTRY_AUTH_FILE")
        .or_else(|| set("DOCKER_CONFIG").map(|dir| dir.join("config.json")))
        .or_else(|| set("HOME").map(|home| home.join(".docker/config.json")))
}

/// Where [`LoginFile::save`] put the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedLogin {
    /// In the file's `auths`, as docker writes it (base64 of `user:password`).
    File(PathBuf),
    /// In a credential store, through `docker-credential-NAME` (the file's
    /// `credHelpers` entry for the registry, or its `credsStore`).
    Helper(String),
}

/// An auth file in docker's `config.json` format, to save and remove logins
/// as `docker login` and `docker logout` do: through the credential helper
/// the file configures for the registry when there is one, else in `auths`.
/// Everything else in the file is kept; it is rewritten whole under a temp
/// name (mode 0600) and renamed over the old one.
#[derive(Debug, Clone)]
pub struct LoginFile {
    path: PathBuf,
    /// Replaces `PATH` when looking for and running helpers (tests).
    helper_path: Option<OsString>,
}

impl LoginFile {
    /// The file at `path`, which need not exist yet.
    pub fn new(path: PathBuf) -> Self {
        Self { path, helper_path: None }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    fn with_helper_path(mut self, path: OsString) -> Self {
        self.helper_path = Some(path);
        self
    }

    /// Saves `username` and `password` for `registry`. Through a helper, the
    /// file itself only loses any plain-text entry the registry had.
    pub fn save(&self, registry: &str, username: &str, password: &str) -> Result<SavedLogin, CredentialError> {
        let host = normalize_registry(registry);
        let mut document = self.read()?;
        let removed = remove_entries(&mut document, &host);
        if let Some(helper) = helper_for(&document, &host) {
            let secret = serde_json::json!({"ServerURL": server_url(&host), "Username": username, "Secret": password});
            call_helper(&helper, "store", secret.to_string().as_bytes(), &host, self.helper_path.as_deref())?;
            if removed {
                self.write(&document)?;
            }
            return Ok(SavedLogin::Helper(format!("docker-credential-{helper}")));
        }
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        auths_mut(&mut document, &self.path)?.insert(server_url(&host).to_owned(), serde_json::json!({ "auth": auth }));
        self.write(&document)?;
        Ok(SavedLogin::File(self.path.clone()))
    }

    /// Removes what is saved for `registry`: its `auths` entries (under any
    /// key form) and what its helper holds. Whether there was anything.
    pub fn remove(&self, registry: &str) -> Result<bool, CredentialError> {
        let host = normalize_registry(registry);
        let mut document = self.read()?;
        let removed = remove_entries(&mut document, &host);
        let mut erased = false;
        if let Some(helper) = helper_for(&document, &host) {
            let reply =
                call_helper(&helper, "erase", server_url(&host).as_bytes(), &host, self.helper_path.as_deref())?;
            erased = matches!(reply, HelperReply::Answer(_));
        }
        if removed {
            self.write(&document)?;
        }
        Ok(removed || erased)
    }

    /// The file as JSON; an object with nothing in it when it is missing or
    /// empty (podman leaves an empty file after the last logout).
    fn read(&self) -> Result<serde_json::Value, CredentialError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(CredentialError::Read { path: self.path.clone(), source }),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Object(serde_json::Map::new()));
        }
        let malformed = |reason: String| CredentialError::Malformed { path: self.path.clone(), reason };
        let document: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
            // Never quote the content: it holds secrets.
            malformed(format!("not valid JSON (line {}, column {})", error.line(), error.column()))
        })?;
        if !document.is_object() {
            return Err(malformed("not a JSON object".to_owned()));
        }
        Ok(document)
    }

    fn write(&self, document: &serde_json::Value) -> Result<(), CredentialError> {
        let failed = |source: io::Error| CredentialError::Write { path: self.path.clone(), source };
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        if !directory.exists() {
            // Docker creates ~/.docker as 0700: the file in it holds secrets.
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&directory).map_err(failed)?;
        }
        let mut bytes = serde_json::to_vec_pretty(document).map_err(|error| failed(io::Error::other(error)))?;
        bytes.push(b'\n');
        // A temp file in the same directory is created with mode 0600.
        let mut temp = tempfile::Builder::new().prefix(".hpn-auth-").tempfile_in(&directory).map_err(failed)?;
        temp.write_all(&bytes).map_err(failed)?;
        temp.as_file().sync_all().map_err(failed)?;
        temp.persist(&self.path).map_err(|error| failed(error.error))?;
        Ok(())
    }
}

/// The helper that holds `host`'s secret: its `credHelpers` entry, else `credsStore`.
fn helper_for(document: &serde_json::Value, host: &str) -> Option<String> {
    let named = |value: &serde_json::Value| value.as_str().filter(|name| !name.is_empty()).map(str::to_owned);
    document
        .get("credHelpers")
        .and_then(serde_json::Value::as_object)
        .and_then(|helpers| {
            helpers.iter().find(|(key, _)| matches!(normalize_key(key), Key::Host(h) if h == host)).map(|(_, v)| v)
        })
        .and_then(named)
        .or_else(|| document.get("credsStore").and_then(named))
}

/// Drops every `auths` key that names `host` (`host`, `https://host/v2/`, …).
/// Whether one was there.
fn remove_entries(document: &mut serde_json::Value, host: &str) -> bool {
    let Some(auths) = document.get_mut("auths").and_then(serde_json::Value::as_object_mut) else { return false };
    let before = auths.len();
    auths.retain(|key, _| !matches!(normalize_key(key), Key::Host(h) if h == host));
    auths.len() != before
}

fn auths_mut<'a>(
    document: &'a mut serde_json::Value,
    path: &Path,
) -> Result<&'a mut serde_json::Map<String, serde_json::Value>, CredentialError> {
    let object = document.as_object_mut().expect("read() returns objects only");
    object
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
        .as_object_mut()
        .ok_or_else(|| CredentialError::Malformed { path: path.to_owned(), reason: "`auths` is not an object".into() })
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
        // A store for logins: keeps what `store` is given, says what `erase` was asked.
        let keyring = dir.path().join("keyring");
        script(
            "keyring",
            &format!(
                r#"case "$1" in
  store) cat > {keyring} ;;
  erase) read -r server; [ -s {keyring} ] || {{ echo "credentials not found"; exit 1; }}; echo "$server" > {keyring}.erased; rm {keyring} ;;
  *) exit 2 ;;
esac"#,
                keyring = keyring.display()
            ),
        );

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
        let credentials = Credentials::from_files(&[path]).unwrap().with_helper_path(search.clone());

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

        // Logins through a store: the secret goes to the helper, the file
        // loses the plain entry it had and keeps everything else.
        let login_path = write(
            dir.path(),
            "login.json",
            &format!(
                r#"{{"auths":{{"https://kept.example/v2/":{{"auth":"{}"}}}},"credsStore":"keyring","x":[1]}}"#,
                b64("old:pw")
            ),
        );
        let login = LoginFile::new(login_path.clone()).with_helper_path(search.clone());
        assert_eq!(
            login.save("kept.example", "alice", "s3cret").unwrap(),
            SavedLogin::Helper("docker-credential-keyring".into())
        );
        let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&keyring).unwrap()).unwrap();
        assert_eq!(stored, serde_json::json!({"ServerURL":"kept.example","Username":"alice","Secret":"s3cret"}));
        let after: serde_json::Value = serde_json::from_slice(&std::fs::read(&login_path).unwrap()).unwrap();
        assert_eq!(after, serde_json::json!({"auths":{},"credsStore":"keyring","x":[1]}));
        assert!(login.remove("kept.example").unwrap());
        assert_eq!(std::fs::read_to_string(keyring.with_extension("erased")).unwrap().trim(), "kept.example");
        assert!(!login.remove("kept.example").unwrap(), "nothing left to remove");
    }

    #[test]
    fn logins_in_the_file_keep_the_rest_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "config.json",
            &format!(
                r#"{{"auths":{{"http://r.example:5000/v2/":{{"auth":"{}"}},"other.example":{{"auth":"{}"}}}},
                    "HttpHeaders":{{"X-Meta":"1"}},"credHelpers":{{"elsewhere.example":"none"}}}}"#,
                b64("old:old"),
                b64("o:o")
            ),
        );
        let login = LoginFile::new(path.clone());
        assert_eq!(login.save("r.example:5000", "bob", "pa:ss").unwrap(), SavedLogin::File(path.clone()));
        let content: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(content["HttpHeaders"], serde_json::json!({"X-Meta":"1"}));
        assert_eq!(content["credHelpers"], serde_json::json!({"elsewhere.example":"none"}));
        // The old key form of the same registry is replaced, not kept beside the new one.
        assert_eq!(content["auths"].as_object().unwrap().len(), 2, "{content}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let credentials = Credentials::from_files(std::slice::from_ref(&path)).unwrap();
        assert_eq!(credentials.lookup("r.example:5000").unwrap(), basic("bob", "pa:ss"));

        assert!(login.remove("r.example:5000").unwrap());
        assert!(!login.remove("r.example:5000").unwrap());
        let credentials = Credentials::from_files(std::slice::from_ref(&path)).unwrap();
        assert_eq!(credentials.lookup("r.example:5000").unwrap(), None);
        assert_eq!(credentials.lookup("other.example").unwrap(), basic("o", "o"));

        // A first login creates the directory and the file; Docker Hub gets its legacy key.
        let fresh = LoginFile::new(dir.path().join("new/.docker/config.json"));
        fresh.save("docker.io", "hub", "pw").unwrap();
        let content: serde_json::Value = serde_json::from_slice(&std::fs::read(fresh.path()).unwrap()).unwrap();
        assert!(content["auths"]["https://index.docker.io/v1/"]["auth"].is_string(), "{content}");

        let broken = LoginFile::new(write(dir.path(), "broken.json", "[1,2"));
        assert!(matches!(broken.save("a.example", "u", "p"), Err(CredentialError::Malformed { .. })));
    }

    #[test]
    fn login_file_follows_docker_and_podman_variables() {
        let env: HashMap<&str, &str> = [("HOME", "/h"), ("DOCKER_CONFIG", "/d")].into();
        assert_eq!(login_file_path(|name| env.get(name).map(OsString::from)), Some(PathBuf::from("/d/config.json")));
        let env: HashMap<&str, &str> = [("HOME", "/h"), ("REGISTRY_AUTH_FILE", "/a.json")].into();
        assert_eq!(login_file_path(|name| env.get(name).map(OsString::from)), Some(PathBuf::from("/a.json")));
        let env: HashMap<&str, &str> = [("HOME", "/h")].into();
        assert_eq!(
            login_file_path(|name| env.get(name).map(OsString::from)),
            Some(PathBuf::from("/h/.docker/config.json"))
        );
    }

    #[test]
    fn credentials_for_every_registry_yield_to_explicit_entries() {
        let mut credentials = Credentials::default();
        credentials.insert_for_every_registry("any", "1");
        assert!(!credentials.is_empty());
        assert_eq!(credentials.lookup("a.example").unwrap(), basic("any", "1"));
        credentials.insert("b.example", "b", "2");
        assert_eq!(credentials.lookup("b.example").unwrap(), basic("b", "2"));
    }
}
