//! How a secret is stored: its SHA-256 (client secrets, integration tokens). A secret carries
//! 256 random bits, so a single SHA-256 is as strong as a slow password hash would be.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// SHA-256 of a secret, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    fn of(bytes: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// The hash of an arbitrary string (integration tokens use it for their lookup key).
    pub fn of_str(s: &str) -> Self {
        Self::of(s.as_bytes())
    }

    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_base64(s: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// Constant-time comparison of a presented secret against this hash.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let candidate = Self::of(presented);
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &candidate.0).is_ok()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(***)")
    }
}
