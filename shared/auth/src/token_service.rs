//! The client-credentials grant: authenticate the client, pick the scopes, sign the token.
//!
//! A wrong secret is simply refused: there is no lockout, because secrets are 256 random bits
//! (guessing is pointless) and a lockout keyed by the public client id would let anyone refuse
//! the right secret. What a failed attempt costs us is bounded instead: a malformed client id
//! costs no read, an unknown one at most one read per minute per instance, a known one with a
//! wrong secret at most one read per second per instance, and no failure writes anything.
//! A success always reads the client fresh, so a disabled client or a rotated secret stops
//! minting tokens at once.

use std::time::Duration;

use super::SecretHash;
use super::jwt::{self, AccessClaims};
use super::keys::SigningKey;
use super::oauth::{OAuthError, OAuthErrorKind};
use super::recent::Recent;
use super::token_request::TokenRequest;
use domain::{ClientId, ScopeSet};
use store::DynamoStore;
use store::StoreError;
use store::clients::ClientRecord;

/// A failed attempt is judged against a read of the client this recent.
const FAILURE_REUSE: Duration = Duration::from_secs(1);
/// An unknown client id is judged against a read this recent. Ids are 128 random bits, so no
/// client created later was probed before it existed.
const UNKNOWN_REUSE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl_secs: i64,
}

#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: ScopeSet,
}

/// The clients this instance read lately (`None`: no such client).
pub type ClientReads = Recent<ClientId, Option<ClientRecord>>;

/// Compared against when the client does not exist, so that an unknown id costs the same
/// hashing work as a known one.
fn decoy_hash() -> SecretHash {
    SecretHash::of_str("decoy: no client has this secret")
}

/// Whether a recent read already proves the attempt fails, so that it costs no read.
fn known_failure(reads: &ClientReads, id: &ClientId, request: &TokenRequest) -> bool {
    if let Some(None) = reads.get(id, UNKNOWN_REUSE) {
        let _ = request.client_secret.matches(&decoy_hash());
        return true;
    }
    matches!(reads.get(id, FAILURE_REUSE), Some(Some(c)) if !request.client_secret.matches(&c.secret_hash))
}

pub async fn issue_token(
    store: &DynamoStore,
    reads: &ClientReads,
    key: &SigningKey,
    settings: &TokenSettings,
    request: &TokenRequest,
    now: i64,
) -> Result<IssuedToken, OAuthError> {
    let client_id = ClientId::parse(&request.client_id).map_err(|_| OAuthError::invalid_client())?;
    if known_failure(reads, &client_id, request) {
        return Err(OAuthError::invalid_client());
    }
    let found = store.client_record(&client_id).await.map_err(unavailable)?;
    reads.put(client_id, found.clone());
    let authenticated = match &found {
        Some(c) => request.client_secret.matches(&c.secret_hash) && !c.disabled,
        None => {
            let _ = request.client_secret.matches(&decoy_hash());
            false
        }
    };
    let client = match (authenticated, found) {
        (true, Some(c)) => c,
        _ => return Err(OAuthError::invalid_client()),
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
        secret_version: Some(client.secret_version),
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
