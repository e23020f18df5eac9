//! How hpn tells the user which kind of local I/O failure happened. Shared
//! by the store and the archive crates, which each add their own advice.

use std::io;

/// The disk or a quota is full, or the file would exceed a size limit.
pub fn is_no_space(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge)
}

/// Permissions or a read-only filesystem forbid the write.
pub fn is_permission_denied(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_classified() {
        assert!(is_no_space(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(is_permission_denied(&io::Error::from(io::ErrorKind::ReadOnlyFilesystem)));
        assert!(!is_no_space(&io::Error::from(io::ErrorKind::NotFound)));
    }
}
