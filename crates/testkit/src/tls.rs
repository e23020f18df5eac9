//! A certificate authority of the test's own, made with the openssl command line tool, and
//! the certificates it issues: a registry's server certificate (for
//! [`RegistryBuilder::tls`](crate::RegistryBuilder::tls)) and a client's (for a registry that
//! requires one, [`RegistryBuilder::client_ca`](crate::RegistryBuilder::client_ca)).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::process::run;

/// A self-signed CA in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct TestCa {
    dir: TempDir,
}

/// A certificate and its private key, PEM files in the CA's directory.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key, unencrypted PKCS#8.
    pub key: PathBuf,
}

impl TestCa {
    /// A fresh P-256 CA, valid for three days.
    pub fn generate() -> Result<TestCa> {
        let dir = tempfile::Builder::new().prefix("hpn-ca-").tempdir().context("creating the CA's temp dir")?;
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "3", "-subj", "/CN=hpn test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
            .arg("-keyout")
            .arg(dir.path().join("ca.key"))
            .arg("-out")
            .arg(dir.path().join("ca.crt")))?;
        Ok(TestCa { dir })
    }

    /// The CA's certificate: what a client trusts (`SSL_CERT_FILE`, a certs.d `ca.crt`) and a
    /// registry checks client certificates against.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A server certificate for the IP address `ip` (`127.0.0.1`), named `name` in the CA's
    /// directory.
    pub fn issue_server(&self, name: &str, ip: &str) -> Result<Issued> {
        self.issue(name, &format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"))
    }

    /// A client certificate, named `name` in the CA's directory.
    pub fn issue_client(&self, name: &str) -> Result<Issued> {
        self.issue(name, "extendedKeyUsage=clientAuth\n")
    }

    fn issue(&self, name: &str, extensions: &str) -> Result<Issued> {
        let dir = self.dir.path();
        let (key, csr, cert, ext) = (
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.csr")),
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.ext")),
        );
        fs::write(&ext, format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"))?;
        run(Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-subj", &format!("/CN={name}"), "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr))?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "3", "-set_serial", &serial(name)])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(self.cert_path())
            .arg("-CAkey")
            .arg(dir.join("ca.key"))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert))?;
        Ok(Issued { cert, key })
    }
}

/// A serial number per name, so two certificates of one CA never share one.
fn serial(name: &str) -> String {
    let sum = name.bytes().fold(1u64, |sum, byte| sum.wrapping_mul(31).wrapping_add(u64::from(byte)));
    (sum % 1_000_000_007).to_string()
}

impl Issued {
    /// Copies the certificate and key into `dir` under the names docker's and podman's
    /// `certs.d/HOST[:PORT]/` use: `client.cert` and `client.key`.
    pub fn install_as_client(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir)?;
        fs::copy(&self.cert, dir.join("client.cert"))?;
        fs::copy(&self.key, dir.join("client.key"))?;
        Ok(())
    }
}
