//! Client secrets: generated with high entropy, shown once, stored only as a hash.
//!
//! A secret carries 256 random bits, so a single SHA-256 is as strong as any slow password
//! hash would be (there is nothing to guess), and it keeps the token call cheap.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

pub use store::SecretHash;

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
        SecretHash::of_str(&self.0)
    }

    /// Whether this is the secret `stored` is the hash of (constant time).
    pub fn matches(&self, stored: &SecretHash) -> bool {
        stored.verify(self.0.as_bytes())
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
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
        assert!(s.matches(&h));
        assert!(!ClientSecret::generate().matches(&h));
        let stored = SecretHash::from_base64(&h.to_base64()).unwrap();
        assert!(s.matches(&stored));
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
