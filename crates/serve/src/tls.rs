//! The TLS side: rustls on ring (the provider hpn's client already uses),
//! HTTP/1.1 only, as registry clients speak it.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ServeError, TlsFiles};

/// An acceptor for the certificate chain and key in `files`.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    let unusable = |reason: String| ServeError::Tls { files: files.clone(), reason };
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServeError::Read { what, path: path.to_owned(), source })
    };
    let cert_pem = read("TLS certificate", &files.cert)?;
    let key_pem = read("TLS key", &files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| unusable(format!("the certificate file is not PEM ({error})")))?;
    if chain.is_empty() {
        return Err(unusable("the certificate file holds no certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|error| unusable(format!("the key file holds no usable private key ({error})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| unusable(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| unusable(error.to_string()))?;
    // Registry clients speak HTTP/1.1; advertising h2 would make some try it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
