//! `hpn login` / `hpn logout`, and the credentials every networked command
//! reads (`--creds`, `--authfile`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::anyhow;
use hpn_registry::{Credentials, LoginFile, SavedLogin};

use super::remote::registry_host;
use super::{client_options, registry_failure};
use crate::args::{CredsFlag, LoginArgs, LogoutArgs};
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};

/// Checks the credentials with the registry (Basic, or a token for them),
/// then saves them; a refusal saves nothing.
pub async fn login(args: LoginArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let registry = registry_host(&args.registry);
    let file = login_file(settings)?;
    let from_flag = settings.creds.as_ref();
    let username = match (args.username, from_flag) {
        (Some(username), _) => username,
        (None, Some(creds)) => creds.username.clone(),
        (None, None) => ask_line(&format!("Username for {registry}: "))?,
    };
    let password = if args.password_stdin {
        password_from_stdin()?
    } else {
        match from_flag.and_then(|creds| creds.password.clone()) {
            Some(password) => password,
            None => ask_password(&format!("Password for {username}@{registry}: "))?,
        }
    };
    if username.is_empty() || password.is_empty() {
        return Err(Failure::new(ExitStatus::BadArguments, anyhow!("a user name and a password are both needed")));
    }
    let mut credentials = Credentials::default();
    credentials.insert(&registry, &username, &password);
    let client = hpn_registry::RegistryClient::new(client_options(settings, credentials))
        .map_err(|error| Failure::new(ExitStatus::General, error))?;
    client.ping(&registry).await.map_err(|error| {
        let failure = registry_failure(error);
        Failure::new(failure.status, anyhow!("login to {registry} failed, nothing was saved: {:#}", failure.error))
    })?;
    let saved = tokio::task::spawn_blocking(move || file.save(&registry, &username, &password))
        .await
        .map_err(|join| Failure::new(ExitStatus::General, anyhow!("saving the login failed: {join}")))?
        .map_err(|error| Failure::new(ExitStatus::Config, error))?;
    if !settings.quiet {
        match saved {
            SavedLogin::File(path) => out!("Login Succeeded (saved in {})", path.display()),
            SavedLogin::Helper(helper) => out!("Login Succeeded (saved with {helper})"),
        }
    }
    Ok(ExitStatus::Ok)
}

/// Removes the registry's entries and what its credential helper holds.
/// Not being logged in is said, and is no failure (as docker logout).
pub async fn logout(args: LogoutArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let registry = registry_host(&args.registry);
    let file = login_file(settings)?;
    let path = file.path().display().to_string();
    let host = registry.clone();
    let removed = tokio::task::spawn_blocking(move || file.remove(&host))
        .await
        .map_err(|join| Failure::new(ExitStatus::General, anyhow!("removing the login failed: {join}")))?
        .map_err(|error| Failure::new(ExitStatus::Config, error))?;
    if removed {
        if !settings.quiet {
            out!("Removed login credentials for {registry} ({path})");
        }
    } else {
        eprintln!("hpn: not logged in to {registry} ({path})");
    }
    Ok(ExitStatus::Ok)
}

/// The credentials a command uses: `--creds` for every registry, over the
/// `--authfile` file alone or, without it, every file docker and podman write.
pub(super) fn credentials(settings: &Settings) -> Result<Credentials, Failure> {
    let mut credentials = match &settings.authfile {
        Some(path) => Credentials::from_files(std::slice::from_ref(path)),
        None => Credentials::load_default(),
    }
    .map_err(|error| Failure::new(ExitStatus::Config, error))?;
    if let Some(CredsFlag { username, password }) = &settings.creds {
        let password = match password {
            Some(password) => password.clone(),
            None => ask_password(&format!("Password for {username}: "))?,
        };
        credentials.insert_for_every_registry(username, &password);
    }
    Ok(credentials)
}

fn login_file(settings: &Settings) -> Result<LoginFile, Failure> {
    let path: Option<PathBuf> = settings.authfile.clone().or_else(hpn_registry::default_login_file);
    path.map(LoginFile::new).ok_or_else(|| {
        Failure::new(
            ExitStatus::Config,
            anyhow!(
                "no auth file to write: HOME, DOCKER_CONFIG and REGISTRY_AUTH_FILE are all unset; pass --authfile FILE"
            ),
        )
    })
}

/// The first line of stdin, without its line ending (docker's --password-stdin).
fn password_from_stdin() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|error| {
        Failure::new(ExitStatus::BadArguments, anyhow!("cannot read the password from stdin: {error}"))
    })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn ask_line(prompt: &str) -> Result<String, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal("a user name (-u USER)"));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| Failure::new(ExitStatus::General, anyhow!("cannot read the user name: {error}")))?;
    Ok(line.trim().to_owned())
}

/// Asks on the terminal without echo.
fn ask_password(prompt: &str) -> Result<String, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal("a password (--password-stdin, or --creds USER:PASSWORD)"));
    }
    rpassword::prompt_password(prompt)
        .map_err(|error| Failure::new(ExitStatus::General, anyhow!("cannot read the password: {error}")))
}

fn no_terminal(what: &str) -> Failure {
    Failure::new(
        ExitStatus::BadArguments,
        anyhow!("stdin is not a terminal to ask for {what} on; give it on the command line"),
    )
}
