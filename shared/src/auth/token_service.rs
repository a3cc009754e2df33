//! The client-credentials grant: authenticate the client, slow down guessing, pick the scopes,
//! sign the token.

use super::SecretHash;
use super::jwt::{self, AccessClaims};
use super::keys::SigningKey;
use super::oauth::{OAuthError, OAuthErrorKind};
use super::token_request::TokenRequest;
use crate::domain::{ClientId, ScopeSet};
use crate::store::StoreError;
use crate::store::dynamo::DynamoStore;

/// How many failed authentications one client id may have in one window before it is slowed
/// down, and the window's length. Ten guesses per five minutes against a 256-bit secret.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    pub max_failures: u32,
    pub window_secs: i64,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self { max_failures: 10, window_secs: 300 }
    }
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl_secs: i64,
    pub failures: FailurePolicy,
}

#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: ScopeSet,
}

/// Compared against when the client does not exist, so that an unknown id costs the same
/// hashing work as a known one.
fn decoy_hash() -> SecretHash {
    SecretHash::of_str("decoy: no client has this secret")
}

pub async fn issue_token(
    store: &DynamoStore,
    key: &SigningKey,
    settings: &TokenSettings,
    request: &TokenRequest,
    now: i64,
) -> Result<IssuedToken, OAuthError> {
    let client_id = ClientId::parse(&request.client_id).map_err(|_| OAuthError::invalid_client())?;
    let found = store.client_with_failures(&client_id).await.map_err(unavailable)?;

    let policy = settings.failures;
    if let Some(window) = found.failures
        && window.window_start + policy.window_secs > now
        && window.count >= policy.max_failures
    {
        return Err(OAuthError::slow_down(window.window_start + policy.window_secs - now));
    }

    let authenticated = match &found.client {
        Some(c) => c.secret_hash.verify(&request.client_secret) && !c.disabled,
        None => {
            let _ = decoy_hash().verify(&request.client_secret);
            false
        }
    };
    let client = match (authenticated, found.client) {
        (true, Some(c)) => c,
        _ => {
            if let Err(e) = store.record_failure(&client_id, now, policy.window_secs).await {
                tracing::warn!(error = %e, "could not record a failed client authentication");
            }
            return Err(OAuthError::invalid_client());
        }
    };

    let scope = match request.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => client.scopes,
        Some(list) => {
            let asked = ScopeSet::parse(list)
                .map_err(|e| OAuthError::new(OAuthErrorKind::InvalidScope, e.to_string()))?;
            if !asked.is_subset_of(client.scopes) {
                return Err(OAuthError::new(
                    OAuthErrorKind::InvalidScope,
                    "the requested scope exceeds the scopes granted to this client",
                ));
            }
            asked
        }
    };
    if scope.is_empty() {
        return Err(OAuthError::new(OAuthErrorKind::InvalidScope, "this client holds no scopes"));
    }

    let claims = AccessClaims {
        iss: settings.issuer.clone(),
        sub: client.client_id.to_string(),
        aud: settings.audience.clone(),
        exp: now + settings.ttl_secs,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: client.client_id.to_string(),
        scope: scope.to_string(),
        account: client.account.to_string(),
    };
    let access_token = jwt::issue(key, &claims).map_err(|e| {
        tracing::error!(error = %e, "token signing failed");
        OAuthError::new(OAuthErrorKind::TemporarilyUnavailable, "the token could not be issued")
    })?;
    Ok(IssuedToken { access_token, expires_in: settings.ttl_secs, scope })
}

fn unavailable(e: StoreError) -> OAuthError {
    tracing::error!(error = %e, "client lookup failed");
    OAuthError::new(
        OAuthErrorKind::TemporarilyUnavailable,
        "the service is temporarily unavailable; retry later",
    )
}
