//! `Idempotency-Key` on write routes, in the spirit of Lambda Powertools' idempotency
//! utility: one record per (account, key) in the config table, claimed with a conditional
//! put before the call runs and completed with the response after it.
//!
//! - same key, same request, first call done → its stored response, byte for byte, nothing
//!   applied again (`Idempotent-Replayed: true`);
//! - same key, another request (method, path or body differ) → 422;
//! - same key while the first call still runs → 409; the claim is a lease of
//!   [`LEASE_SECS`], so a function that dies mid-call frees the key;
//! - a 5xx, 401 or 403 answer is not kept (the key is released), so a retry runs again;
//! - records live 24 hours (DynamoDB TTL, and checked on read since TTL deletes lazily);
//! - a kept body is sealed ([`Seal`]) under a key derived from the caller's `Idempotency-Key`,
//!   which is never stored (the record's key is its SHA-256), so the table, its backups and
//!   every role that can read them hold ciphertext only: an integration's token in a `201`
//!   is no longer at rest in the clear.

pub use store::protections::{
    IDEMPOTENCY_LEASE_SECS as LEASE_SECS, IDEMPOTENCY_TTL_SECS as TTL_SECS, Record, StoredResponse,
};

pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_LEN: usize = 255;

/// A key as sent (the header's bytes): 1 to 255 printable ASCII characters (spaces included).
pub fn parse_key(raw: &[u8]) -> Result<&str, String> {
    if raw.is_empty() || raw.len() > MAX_KEY_LEN || !raw.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(format!("1 to {MAX_KEY_LEN} printable ASCII characters"));
    }
    Ok(std::str::from_utf8(raw).expect("printable ASCII is UTF-8"))
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Keys are hashed so that any client string makes a short, safe sort key.
pub fn key_hash(key: &str) -> String {
    sha256_hex(&[key.as_bytes()])
}

/// What makes two requests "the same": method, path, query and body bytes.
pub fn fingerprint(method: &str, path: &str, query: &str, body: &[u8]) -> String {
    sha256_hex(&[method.as_bytes(), path.as_bytes(), query.as_bytes(), body])
}

/// Whether a response is kept for replay.
pub fn keep(status: u16) -> bool {
    status < 500 && status != 401 && status != 403
}

/// AES-256-GCM under a key derived (HKDF-SHA256) from the raw `Idempotency-Key` and the
/// account. Only a caller presenting the key again can open what was kept for it.
pub struct Seal(aws_lc_rs::aead::LessSafeKey);

/// Marks a sealed body; a body kept before sealing existed has none (records live 24 h).
const SEALED: &[u8] = b"\0sealed-v1\0";
const NONCE_LEN: usize = 12;

impl Seal {
    pub fn derive(account: &str, raw_key: &str) -> Self {
        use aws_lc_rs::{aead, hkdf};
        let prk =
            hkdf::Salt::new(hkdf::HKDF_SHA256, b"idempotency-replay-seal-v1").extract(raw_key.as_bytes());
        let info = [account.as_bytes()];
        let okm = prk.expand(&info, &aead::AES_256_GCM).expect("32 bytes is a valid HKDF length");
        Self(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
    }

    /// `SEALED`, a random nonce, the ciphertext and its tag; `aad` binds it to its record.
    pub fn seal(&self, aad: &str, plain: &[u8]) -> Vec<u8> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system RNG works");
        let mut sealed = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM seals any length a response has");
        [SEALED, &nonce[..], &sealed].concat()
    }

    /// The plain body; a body kept before sealing existed is returned as it is. `None` if it
    /// does not open (not this key's, or altered).
    pub fn open(&self, aad: &str, stored: &[u8]) -> Option<Vec<u8>> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let Some(rest) = stored.strip_prefix(SEALED) else { return Some(stored.to_vec()) };
        if rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self.0.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf).ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_opens_only_with_the_same_key_account_and_record() {
        let body = br#"{"token":"0123abcd"}"#;
        let sealed = Seal::derive("acme", "key-1").seal("rec", body);
        assert!(!sealed.windows(8).any(|w| w == b"0123abcd"), "no plaintext at rest");
        assert_eq!(Seal::derive("acme", "key-1").open("rec", &sealed).as_deref(), Some(&body[..]));
        assert_eq!(Seal::derive("acme", "key-2").open("rec", &sealed), None, "another key");
        assert_eq!(Seal::derive("globex", "key-1").open("rec", &sealed), None, "another account");
        assert_eq!(Seal::derive("acme", "key-1").open("other", &sealed), None, "another record");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(Seal::derive("acme", "key-1").open("rec", &altered), None, "altered");
        assert_ne!(Seal::derive("acme", "key-1").seal("rec", body), sealed, "fresh nonce each time");
        // Kept before sealing existed: as it is.
        assert_eq!(Seal::derive("acme", "k").open("rec", b"{}").as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn keys_and_fingerprints() {
        assert!(parse_key(b"").is_err());
        assert!(parse_key("k".repeat(255).as_bytes()).is_ok());
        assert!(parse_key("k".repeat(256).as_bytes()).is_err());
        assert!(parse_key(b"tab\there").is_err());
        assert!(parse_key("é".as_bytes()).is_err());
        assert!(parse_key(b"\xd7\xf8").is_err());
        assert_eq!(key_hash("a").len(), 64);
        assert_ne!(fingerprint("POST", "/a", "", b"{}"), fingerprint("PUT", "/a", "", b"{}"));
        assert_ne!(fingerprint("POST", "/a", "", b"{}"), fingerprint("POST", "/a", "", b"{} "));
        // Length-prefixed: moving bytes between parts changes the fingerprint.
        assert_ne!(fingerprint("POST", "/ab", "", b""), fingerprint("POST", "/a", "b", b""));
        assert!(keep(200) && keep(201) && keep(400) && keep(404) && keep(409) && keep(422));
        assert!(!keep(401) && !keep(403) && !keep(500) && !keep(503));
    }
}
