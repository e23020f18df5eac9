use std::process::ExitCode;

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
    fn combine_keeps_a_shared_status_and_falls_back_to_general() {
        assert_eq!(ExitStatus::combine([]), ExitStatus::Ok);
        assert_eq!(ExitStatus::combine([ExitStatus::Network, ExitStatus::Network]), ExitStatus::Network);
        assert_eq!(ExitStatus::combine([ExitStatus::Network, ExitStatus::Runtime]), ExitStatus::General);
    }
}
