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
//! - records live 24 hours (DynamoDB TTL, and checked on read since TTL deletes lazily).

pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_LEN: usize = 255;
pub const TTL_SECS: i64 = 24 * 3600;
/// Longer than any function's timeout (29 s), so a live call never loses its claim.
pub const LEASE_SECS: i64 = 60;

/// A response as kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Running { fingerprint: String },
    Done { fingerprint: String, response: StoredResponse },
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
