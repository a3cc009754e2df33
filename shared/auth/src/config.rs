//! Token settings, read from the environment once per cold start.

/// Token settings shared by the issuer (token function) and every verifier.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `iss` of every token. `None` derives `https://<domain>` from API Gateway's request
    /// context, for stacks deployed without a custom domain (the template cannot pass the
    /// API's own URL to its functions without a circular dependency).
    pub issuer: Option<String>,
    /// `aud` of every token.
    pub audience: String,
    /// Lifetime of an access token in seconds (the seeds show 86400).
    pub token_ttl_secs: i64,
}

pub const DEFAULT_AUDIENCE: &str = "end-user-data-api";
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 86_400;

impl AuthConfig {
    /// How long a token of this configuration can still verify after it was issued: its
    /// lifetime and the clocks' leeway. A revocation must be kept at least this long.
    pub fn longest_token_secs(&self) -> i64 {
        self.token_ttl_secs + crate::jwt::LEEWAY_SECS as i64
    }

    pub fn from_env() -> Self {
        let issuer = std::env::var("TOKEN_ISSUER")
            .ok()
            .map(|s| s.trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty());
        let audience = std::env::var("TOKEN_AUDIENCE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_string());
        let token_ttl_secs = std::env::var("TOKEN_TTL_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_TOKEN_TTL_SECS);
        Self { issuer, audience, token_ttl_secs }
    }
}
