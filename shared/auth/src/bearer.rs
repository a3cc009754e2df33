//! Bearer-token checks for every endpoint but the token endpoint (RFC 6750).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use tokio::sync::RwLock;

use super::jwt::{self, IssuerPolicy, TokenError};
use crate::AuthConfig;
use domain::{AccountId, Scope, ScopeSet};
use store::DynamoStore;
use store::StoreError;

/// Who is calling, once the token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account: AccountId,
    pub client_id: String,
    pub scopes: ScopeSet,
}

#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("no bearer token was sent")]
    Missing,
    #[error(transparent)]
    Invalid(#[from] TokenError),
    #[error("the token lacks the scope '{0}'")]
    InsufficientScope(Scope),
    #[error("the signing keys could not be loaded")]
    Unavailable(#[source] StoreError),
}

/// Keys and revocations are re-read this often even when every `kid` is known, so that a
/// revoked key or client stops verifying within a minute (this, plus the read's eventual
/// consistency), at one read per instance per interval rather than one per call.
const MAX_KEY_AGE: Duration = Duration::from_secs(30);
/// An unknown `kid` triggers at most one re-read per interval, so a flood of forged tokens
/// cannot turn into a flood of reads.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

struct KeyCache {
    set: JwkSet,
    /// Client id → which of its tokens are refused.
    revoked: HashMap<String, store::ClientRevocation>,
    loaded_at: Option<Instant>,
    /// When an unknown `kid` last caused a re-read.
    miss_refreshed_at: Option<Instant>,
}

/// Verifies bearer tokens against the published keys, cached across warm invocations.
pub struct Authenticator {
    store: DynamoStore,
    max_key_age: Duration,
    issuer: IssuerPolicy,
    audience: String,
    cache: RwLock<KeyCache>,
}

impl Authenticator {
    pub fn new(store: DynamoStore, config: &AuthConfig) -> Self {
        Self {
            store,
            max_key_age: MAX_KEY_AGE,
            issuer: IssuerPolicy::from_config(config.issuer.as_deref()),
            audience: config.audience.clone(),
            cache: RwLock::new(KeyCache {
                set: JwkSet { keys: Vec::new() },
                revoked: HashMap::new(),
                loaded_at: None,
                miss_refreshed_at: None,
            }),
        }
    }

    /// Re-reads keys and revocations this often instead (tests: zero, to see a revocation at once).
    pub fn with_max_key_age(mut self, max_key_age: Duration) -> Self {
        self.max_key_age = max_key_age;
        self
    }

    /// Checks the `Authorization` header and that the token grants `required`.
    /// `domain` is the API Gateway domain the request arrived on.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        domain: Option<&str>,
        required: Scope,
    ) -> Result<Principal, BearerError> {
        let principal = self.verify(authorization, domain).await?;
        if !principal.scopes.contains(required) {
            return Err(BearerError::InsufficientScope(required));
        }
        Ok(principal)
    }

    async fn verify(
        &self,
        authorization: Option<&str>,
        domain: Option<&str>,
    ) -> Result<Principal, BearerError> {
        let token = bearer_token(authorization)?;
        let issuer = self.issuer.resolve(domain).ok_or(TokenError::Issuer)?;
        // Cheap header checks first: a token that can never verify costs no key read.
        jwt::peek_kid(token)?;

        let expired = |c: &KeyCache| c.loaded_at.is_none_or(|t| t.elapsed() >= self.max_key_age);
        self.refresh_if(expired, false).await?;
        let mut result = self.verify_with_cache(token, &issuer).await;
        if matches!(result, Err(TokenError::UnknownKey)) {
            let refreshed = self
                .refresh_if(|c| c.miss_refreshed_at.is_none_or(|t| t.elapsed() > MIN_REFRESH_INTERVAL), true)
                .await?;
            if refreshed {
                result = self.verify_with_cache(token, &issuer).await;
            }
        }
        let (claims, scopes, account) = result?;
        Ok(Principal { account, client_id: claims.client_id, scopes })
    }

    async fn verify_with_cache(
        &self,
        token: &str,
        issuer: &str,
    ) -> Result<(jwt::AccessClaims, ScopeSet, AccountId), TokenError> {
        let cache = self.cache.read().await;
        let verified = jwt::verify(token, &cache.set, issuer, &self.audience)?;
        let claims = &verified.0;
        if cache.revoked.get(&claims.client_id).is_some_and(|r| r.refuses(claims.iat, claims.secret_version))
        {
            return Err(TokenError::Revoked);
        }
        Ok(verified)
    }

    async fn refresh_if(
        &self,
        stale: impl Fn(&KeyCache) -> bool,
        on_miss: bool,
    ) -> Result<bool, BearerError> {
        if !stale(&*self.cache.read().await) {
            return Ok(false);
        }
        let mut cache = self.cache.write().await;
        if !stale(&cache) {
            return Ok(false); // another task refreshed while we waited
        }
        let set = self
            .store
            .verification_set(domain::Timestamp::now().epoch_secs())
            .await
            .map_err(BearerError::Unavailable)?;
        let now = Instant::now();
        cache.set = JwkSet { keys: set.keys };
        cache.revoked = set.revoked_clients;
        cache.loaded_at = Some(now);
        if on_miss {
            cache.miss_refreshed_at = Some(now);
        }
        Ok(true)
    }
}

/// The cookie the web console keeps its session token in, and the header a console page sends
/// with every call. The cookie counts as a bearer token only on a request that has no
/// `Authorization` header and carries `X-Console-Request: 1`: a cross-site page cannot add a
/// custom header without a CORS preflight, which this API never grants (docs/DECISIONS.md,
/// "Console").
pub const CONSOLE_SESSION_COOKIE: &str = "console_session";
pub const CONSOLE_REQUEST_HEADER: &str = "x-console-request";

/// `Bearer <session token>` from the console's cookie, under the conditions above.
pub fn console_authorization(cookie: Option<&str>, console_request: Option<&str>) -> Option<String> {
    if console_request.map(str::trim) != Some("1") {
        return None;
    }
    let token = cookie?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, value)| *name == CONSOLE_SESSION_COOKIE && !value.is_empty())?
        .1;
    Some(format!("Bearer {token}"))
}

fn bearer_token(authorization: Option<&str>) -> Result<&str, BearerError> {
    let header = authorization.map(str::trim).ok_or(BearerError::Missing)?;
    let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Malformed.into());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::console_authorization;

    #[test]
    fn the_console_cookie_counts_only_with_the_console_header() {
        let cookie = Some("a=b; console_session=tok.en; c=d");
        assert_eq!(console_authorization(cookie, Some("1")).as_deref(), Some("Bearer tok.en"));
        assert_eq!(console_authorization(cookie, None), None);
        assert_eq!(console_authorization(cookie, Some("0")), None);
        assert_eq!(console_authorization(Some("console_session="), Some("1")), None);
        assert_eq!(console_authorization(Some("xconsole_session=t"), Some("1")), None);
        assert_eq!(console_authorization(None, Some("1")), None);
    }
}
