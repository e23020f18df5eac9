use std::process::ExitCode;

use hpn_registry::RegistryError;
use hpn_transfer::{ErrorKind, TransferError};

/// hpn's exit codes, kept from the Go hpn so existing scripts keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    Ok = 0,
    General = 1,
    BadArguments = 2,
    Config = 3,
    Runtime = 4,
    Network = 5,
    Filesystem = 6,
    /// Stopped by SIGINT (Ctrl-C), as shells report it: 128 + 2.
    Interrupted = 130,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}

impl From<ErrorKind> for ExitStatus {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Network => Self::Network,
            ErrorKind::Filesystem => Self::Filesystem,
            ErrorKind::Runtime => Self::Runtime,
            ErrorKind::Bug => Self::General,
            ErrorKind::Usage => Self::BadArguments,
            // A kind added later: the general failure until the CLI knows better.
            _ => Self::General,
        }
    }
}

impl ExitStatus {
    /// One status for a run where several things failed: their common
    /// status when they agree, else the general failure.
    pub fn combine(statuses: impl IntoIterator<Item = ExitStatus>) -> Self {
        let mut combined = Self::Ok;
        for status in statuses {
            combined = match combined {
                Self::Ok => status,
                same if same == status => same,
                _ => Self::General,
            };
        }
        combined
    }

    pub fn of(error: &TransferError) -> Self {
        error.kind().into()
    }
}

/// An image's failure as the user reads it: the library's message, then what
/// to do about it on hpn's command line where that is known. The libraries
/// say what happened; flags and commands are this crate's to name.
pub fn describe(error: &TransferError) -> String {
    match advice(error) {
        Some(advice) => format!("{error}; {advice}"),
        None => error.to_string(),
    }
}

/// The registry error behind a transfer error, however it travelled.
fn registry_error(error: &TransferError) -> Option<&RegistryError> {
    match error {
        TransferError::Registry(registry) => Some(registry),
        TransferError::Shared(inner) => registry_error(inner),
        TransferError::Discovery { source, .. } => registry_error(source),
        // A blob stream's error arrives as an io::Error holding it.
        TransferError::Io { source, .. } => RegistryError::from_stream_error(source),
        _ => None,
    }
}

/// Command-line advice for the failures where it helps.
fn advice(error: &TransferError) -> Option<String> {
    let fixed = |advice: &str| Some(advice.to_owned());
    match error {
        TransferError::Shared(inner) => advice(inner),
        TransferError::Discovery { source, .. } => Some(match advice(source) {
            Some(first) => format!("{first}; or copy the image without its attachments with --no-referrers"),
            None => "to copy the image without its attachments, use --no-referrers".to_owned(),
        }),
        TransferError::NoMatchingPlatform { .. } => {
            fixed("choose one with --platform or copy all with --all-platforms")
        }
        TransferError::NotInStore { .. } => fixed("run `hpn pull` for it first"),
        TransferError::NotLocal { .. } => fixed("pull it where its registry is reachable, or drop --pull never"),
        TransferError::BlobMissing { .. } => fixed("run `hpn pull` again or `hpn store verify`"),
        TransferError::BaseBlobMissing { base_file, .. } => Some(format!(
            "bring its base to the destination first (`hpn load -i {base_file}` into the store, or `hpn push -i` of \
             it to the registry), or ship a bundle saved without --since"
        )),
        TransferError::PlatformNotHeld { image, missing, .. } => {
            let platform = missing.split(", ").next().unwrap_or(missing);
            Some(format!(
                "get it into the store with `hpn pull --platform {platform} {image}` (or every platform with \
                 `hpn pull --all-platforms {image}`), or choose a platform it holds with --platform"
            ))
        }
        _ => registry_error(error).and_then(registry_advice).map(str::to_owned),
    }
}

/// Command-line advice for the registry failures where it helps.
fn registry_advice(error: &RegistryError) -> Option<&'static str> {
    match error {
        RegistryError::Network { plain_http: false, source, .. } if source.is_certificate() => {
            Some("if the registry is one you trust, name it with --insecure-registry")
        }
        RegistryError::Network { source, .. } if source.is_tls_refused() => {
            Some("hpn reads certs.d directories from HPN_CERTS_DIRS (by default docker's and podman's)")
        }
        RegistryError::Network { source, .. } if source.is_proxy() => {
            Some("the proxy comes from HTTPS_PROXY, HTTP_PROXY or ALL_PROXY; NO_PROXY lists hosts reached directly")
        }
        // A name that does not resolve will not resolve over plain HTTP either.
        RegistryError::Network { plain_http: false, source, .. } if !source.is_timeout() && !source.is_dns() => {
            Some("for a registry that speaks plain HTTP, use --insecure-registry")
        }
        RegistryError::Unauthorized { .. } => Some(
            "log in with hpn login (or docker login / podman login, whose credentials hpn reads), pass --creds, or check the credentials",
        ),
        _ => None,
    }
}

/// A failure that ends the whole command, with the status to exit with.
#[derive(Debug)]
pub struct Failure {
    pub status: ExitStatus,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(status: ExitStatus, error: impl Into<anyhow::Error>) -> Self {
        Self { status, error: error.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_failures_get_command_line_advice() {
        let unauthorized = TransferError::from(RegistryError::Unauthorized {
            registry: "r.example".into(),
            subject: "image r.example/a:1".into(),
            status: 401,
            errors: Box::default(),
            hint: "the credentials are missing or were refused",
            credentials: None,
        });
        let text = describe(&unauthorized);
        assert!(text.starts_with(&unauthorized.to_string()) && text.ends_with("or check the credentials"), "{text}");
        let shared = TransferError::Shared(std::sync::Arc::new(unauthorized));
        assert!(describe(&shared).contains("docker login"));
        let discovery = TransferError::Discovery {
            image: "r.example/a:1".into(),
            source: Box::new(TransferError::Referrers { context: "x".into(), reason: "y".into() }),
        };
        assert!(describe(&discovery).ends_with("use --no-referrers"), "{}", describe(&discovery));
        let other = TransferError::Unsupported("nothing to advise".into());
        assert_eq!(describe(&other), "nothing to advise");
    }

    #[test]
    fn combine_keeps_a_shared_status_and_falls_back_to_general() {
        assert_eq!(ExitStatus::combine([]), ExitStatus::Ok);
        assert_eq!(ExitStatus::combine([ExitStatus::Network, ExitStatus::Network]), ExitStatus::Network);
        assert_eq!(ExitStatus::combine([ExitStatus::Network, ExitStatus::Runtime]), ExitStatus::General);
    }
}
