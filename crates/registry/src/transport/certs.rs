//! Per-registry TLS files as docker and podman read them: in the first
//! configured directory that has a `HOST[:PORT]/` directory for the
//! registry, `*.crt` files are extra CAs (trusted beside the system's roots)
//! and `client.cert` with `client.key` (any `NAME.cert` with its `NAME.key`)
//! a client certificate for registries that require one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::RegistryError;

/// What a registry's certs.d directory holds.
pub(crate) struct HostTls {
    pub(crate) roots: Vec<reqwest::Certificate>,
    pub(crate) identity: Option<reqwest::Identity>,
}

/// Reads the TLS files for `registry` (as the user names it, `host[:port]`)
/// from the first of `dirs` that has a directory for it; `None` when none
/// has. Blocking file I/O: call it on the blocking pool.
pub(crate) fn find(dirs: &[PathBuf], registry: &str) -> Result<Option<HostTls>, RegistryError> {
    let Some(dir) = dirs.iter().map(|base| base.join(registry)).find(|dir| dir.is_dir()) else {
        return Ok(None);
    };
    read(&dir).map(Some).map_err(|error| {
        RegistryError::setup("use the registry's TLS files", io::Error::other(format!("{}: {error}", dir.display())))
    })
}

fn read(dir: &Path) -> Result<HostTls, String> {
    let mut names: Vec<PathBuf> =
        fs::read_dir(dir).map_err(|error| error.to_string())?.filter_map(|entry| Some(entry.ok()?.path())).collect();
    names.sort();
    let extension = |path: &Path, wanted: &str| path.extension().is_some_and(|found| found == wanted);
    let read = |path: &Path| fs::read(path).map_err(|error| format!("{}: {error}", path.display()));
    let mut roots = Vec::new();
    for path in names.iter().filter(|path| extension(path, "crt")) {
        let certificates = reqwest::Certificate::from_pem_bundle(&read(path)?)
            .map_err(|error| format!("{} is not a PEM certificate: {error}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        roots.extend(certificates);
    }
    let mut identity = None;
    for cert in names.iter().filter(|path| extension(path, "cert")) {
        let key = cert.with_extension("key");
        if !key.is_file() {
            return Err(format!("{} has no key beside it ({})", cert.display(), key.display()));
        }
        if identity.is_some() {
            return Err("more than one client certificate (*.cert)".to_owned());
        }
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(&key)?);
        identity = Some(reqwest::Identity::from_pem(&pem).map_err(|error| {
            format!("{} and {} are not a PEM certificate and key: {error}", cert.display(), key.display())
        })?);
    }
    Ok(HostTls { roots, identity })
}
