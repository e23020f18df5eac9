//! Signatures of the bill of contents: ECDSA P-256 over SHA-256, DER-encoded,
//! in [`BILL_SIGNATURE`] beside the bill, as `openssl dgst -sha256 -sign`
//! makes them and `openssl dgst -sha256 -verify PUB.pem -signature SIG BILL`
//! checks them. RFC 6979 nonces: the same bill and key give the same
//! signature, so a signed set stays byte-for-byte reproducible.

use std::fmt;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};

/// The signature of [`crate::BILL_OF_CONTENTS`], beside it in each archive or volume.
pub const BILL_SIGNATURE: &str = "hpn-contents.json.sig";

/// A private key that signs bills of contents.
#[derive(Clone)]
pub struct BillSigner(SigningKey);

/// A public key that checks signatures of bills of contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillVerifier(VerifyingKey);

impl fmt::Debug for BillSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BillSigner").field("public_key", self.0.verifying_key()).finish_non_exhaustive()
    }
}

impl PartialEq for BillSigner {
    fn eq(&self, other: &Self) -> bool {
        self.0.verifying_key() == other.0.verifying_key()
    }
}

impl Eq for BillSigner {}

impl BillSigner {
    /// Reads an unencrypted P-256 private key in PEM: PKCS#8 (`BEGIN
    /// PRIVATE KEY`, as `openssl genpkey` writes it) or SEC1 (`BEGIN EC
    /// PRIVATE KEY`, `openssl ecparam -genkey`). The error says why a key is
    /// refused: encrypted (cosign's own keys are), another curve, not PEM.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        if pem.contains("ENCRYPTED") {
            return Err("it is encrypted, which hpn does not read; give it an unencrypted PKCS#8 or SEC1 copy \
                        (openssl pkcs8 -topk8 -nocrypt, or cosign's key exported that way)"
                .to_owned());
        }
        if pem.contains("BEGIN EC PRIVATE KEY") {
            let key = p256::SecretKey::from_sec1_pem(pem)
                .map_err(|error| format!("it is not a P-256 key in SEC1 PEM: {error}"))?;
            return Ok(Self(SigningKey::from(key)));
        }
        SigningKey::from_pkcs8_pem(pem)
            .map(Self)
            .map_err(|error| format!("it is not a P-256 private key in PKCS#8 or SEC1 PEM: {error}"))
    }

    /// The DER signature of `bill`.
    pub fn sign(&self, bill: &[u8]) -> Vec<u8> {
        let signature: DerSignature = self.0.sign(bill);
        signature.as_bytes().to_vec()
    }

    /// The public half.
    pub fn verifier(&self) -> BillVerifier {
        BillVerifier(*self.0.verifying_key())
    }
}

impl BillVerifier {
    /// Reads a P-256 public key in PEM (`BEGIN PUBLIC KEY`, as `openssl
    /// pkey -pubout` and cosign write it).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        VerifyingKey::from_public_key_pem(pem)
            .map(Self)
            .map_err(|error| format!("it is not a P-256 public key in PEM: {error}"))
    }

    /// Whether `signature` (DER) signs `bill` with this key.
    pub fn verify(&self, bill: &[u8], signature: &[u8]) -> Result<(), String> {
        let signature = DerSignature::try_from(signature)
            .map_err(|_| "the signature is not a DER-encoded ECDSA signature".to_owned())?;
        self.0.verify(bill, &signature).map_err(|_| "the signature does not match the bill and this key".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_and_foreign_keys_are_refused_with_the_reason() {
        let encrypted =
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
        assert!(BillSigner::from_pem(encrypted).unwrap_err().contains("encrypted"));
        assert!(BillSigner::from_pem("not a key").unwrap_err().contains("PKCS#8"));
        assert!(BillVerifier::from_pem("not a key").is_err());
    }
}
