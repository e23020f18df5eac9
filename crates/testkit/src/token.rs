//! Token auth for the registry (distribution's `auth: token`): a signing key and the
//! self-signed certificate the registry trusts, and the ES256 JWTs a token server hands out.

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use crate::process::run;

/// Signs registry tokens with a P-256 key; a registry started with
/// [`RegistryBuilder::token_auth`](crate::RegistryBuilder::token_auth) trusts its certificate.
///
/// The test serves the tokens itself (from a token endpoint at the realm it gave the
/// registry), so it decides who gets which access and when a token has expired.
#[derive(Debug)]
pub struct TokenSigner {
    key: EcdsaKeyPair,
    cert_pem: String,
    cert_der_base64: String,
    /// Numbers the tokens' `jti`, so no two tokens of a signer are the same.
    issued: AtomicU64,
}

impl TokenSigner {
    /// The issuer every token names and the registry expects.
    pub const ISSUER: &str = "hpn-test-issuer";
    /// The service every token is for: the registry announces it in its challenges and a
    /// token endpoint should refuse requests for any other.
    pub const SERVICE: &str = "hpn-test-registry";

    /// A fresh key and certificate, made by the openssl command line tool (a dependency of
    /// ca-certificates, so present wherever TLS works).
    pub fn generate() -> Result<TokenSigner> {
        let dir = tempfile::Builder::new().prefix("hpn-token-").tempdir().context("creating the key's temp dir")?;
        let (key_path, cert_path) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "3", "-subj", "/CN=hpn-test-token-issuer", "-keyout"])
            .arg(&key_path)
            .arg("-out")
            .arg(&cert_path))?;
        let key_pem = fs::read_to_string(&key_path)?;
        let cert_pem = fs::read_to_string(&cert_path)?;
        // OpenSSL 3 writes the key as PKCS#8, the one form ring reads.
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pem_body(&key_pem, "PRIVATE KEY")?,
            &SystemRandom::new(),
        )
        .map_err(|e| anyhow!("openssl's key: {e}"))?;
        let cert_der_base64 = base64::engine::general_purpose::STANDARD.encode(pem_body(&cert_pem, "CERTIFICATE")?);
        Ok(TokenSigner { key, cert_pem, cert_der_base64, issued: AtomicU64::new(0) })
    }

    /// The certificate, PEM-encoded: the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A token granting `actions` on `repository` (no access at all when `repository` is
    /// None), valid from one minute ago for `lifetime_secs`; a negative lifetime gives a token
    /// that has long expired.
    pub fn token(&self, repository: Option<&str>, actions: &[&str], lifetime_secs: i64) -> String {
        let access: Vec<(String, Vec<String>)> = repository
            .map(|name| (name.to_owned(), actions.iter().map(|action| (*action).to_owned()).collect()))
            .into_iter()
            .collect();
        self.token_for(&access, lifetime_secs)
    }

    /// A token with one access entry per (repository, actions), valid as for [`Self::token`].
    pub fn token_for(&self, access: &[(String, Vec<String>)], lifetime_secs: i64) -> String {
        let typed: Vec<(String, String, Vec<String>)> =
            access.iter().map(|(name, actions)| ("repository".to_owned(), name.clone(), actions.clone())).collect();
        self.token_for_resources(&typed, lifetime_secs)
    }

    /// A token with one access entry per (type, name, actions): `repository` entries, or
    /// `registry`/`catalog` for the catalog. Valid as for [`Self::token`].
    pub fn token_for_resources(&self, access: &[(String, String, Vec<String>)], lifetime_secs: i64) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // The registry finds the signing key through the certificate chain in `x5c`.
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [self.cert_der_base64]});
        let access: Vec<serde_json::Value> = access
            .iter()
            .map(|(kind, name, actions)| serde_json::json!({"type": kind, "name": name, "actions": actions}))
            .collect();
        // distribution allows 60 s of clock skew on exp and nbf, so an expired token must lie
        // well beyond that.
        let expiry = if lifetime_secs < 0 { now - 600 } else { now + lifetime_secs };
        let claims = serde_json::json!({
            "iss": Self::ISSUER, "sub": "hpn-test-user", "aud": Self::SERVICE,
            "exp": expiry, "nbf": now - 60, "iat": now - 60,
            "jti": self.issued.fetch_add(1, Ordering::Relaxed).to_string(), "access": access,
        });
        let input = format!("{}.{}", url.encode(header.to_string()), url.encode(claims.to_string()));
        // Signing with a well-formed key only fails if the system has no randomness at all.
        let signature = self.key.sign(&SystemRandom::new(), input.as_bytes()).expect("ES256 signing");
        format!("{input}.{}", url.encode(signature.as_ref()))
    }
}

/// The DER bytes of the `label` block of a PEM file.
fn pem_body(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).ok_or_else(|| anyhow!("no {label} in PEM"))? + begin.len();
    let stop = pem[start..].find(&end).ok_or_else(|| anyhow!("unterminated {label} in PEM"))? + start;
    let text: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_signed_jwts_for_the_service() {
        let signer = TokenSigner::generate().unwrap();
        assert!(signer.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let token = signer.token(Some("team/app"), &["pull"], 300);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["aud"], TokenSigner::SERVICE);
        assert_eq!(claims["access"][0]["name"], "team/app");
    }
}
