//! Client secrets: generated with high entropy, shown once, stored only as a hash.
//!
//! A secret carries 256 random bits, so a single SHA-256 is as strong as any slow password
//! hash would be (there is nothing to guess), and it keeps the token call cheap.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// `N` bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system CSPRNG is available");
    bytes
}

/// An integration token: 64 lowercase hex characters (256 random bits), the `token` of the
/// user-data payloads. Stored only as its SHA-256.
pub fn new_integration_token() -> String {
    random_bytes::<32>().iter().map(|b| format!("{b:02x}")).collect()
}

/// A client secret in clear. Its `Debug` never shows it, so it cannot leak into a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Upper bound on what we accept from a caller, to bound hashing work.
    pub const MAX_LEN: usize = 256;

    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
    }

    pub fn from_presented(s: &str) -> Option<Self> {
        (!s.is_empty() && s.len() <= Self::MAX_LEN).then(|| Self(s.to_string()))
    }

    /// The clear text, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(self.0.as_bytes())
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

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
    pub fn verify(&self, presented: &ClientSecret) -> bool {
        let candidate = presented.hash();
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &candidate.0).is_ok()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_distinct_and_url_safe() {
        let a = ClientSecret::generate();
        let b = ClientSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn integration_tokens_are_64_lowercase_hex() {
        let t = new_integration_token();
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(t, new_integration_token());
    }

    #[test]
    fn hash_verifies_only_the_same_secret() {
        let s = ClientSecret::generate();
        let h = s.hash();
        assert!(h.verify(&s));
        assert!(!h.verify(&ClientSecret::generate()));
        let stored = SecretHash::from_base64(&h.to_base64()).unwrap();
        assert!(stored.verify(&s));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = ClientSecret::generate();
        assert!(!format!("{s:?}").contains(s.expose()));
        assert!(!format!("{:?}", s.hash()).contains(&s.hash().to_base64()));
    }

    #[test]
    fn presented_secret_bounds() {
        assert!(ClientSecret::from_presented("").is_none());
        assert!(ClientSecret::from_presented(&"x".repeat(256)).is_some());
        assert!(ClientSecret::from_presented(&"x".repeat(257)).is_none());
    }
}
