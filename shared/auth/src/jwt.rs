//! RFC 9068 access tokens: issue and strict verification.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::SigningKey;
use domain::{AccountId, ScopeSet};

/// RFC 9068 §2.1: the media type of a JWT access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    /// The tenant the client belongs to.
    pub account: String,
    /// A private claim (RFC 9068 §2.2.3 allows them): the client's secret version when the
    /// token was minted, so that a secret rotation revokes exactly the older tokens. Absent in
    /// tokens minted before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token must be signed with RS256")]
    Algorithm,
    #[error("the token is not a JWT access token (typ must be at+jwt)")]
    Type,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    Issuer,
    #[error("the token's audience is not accepted")]
    Audience,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token's claims are invalid")]
    Claims,
    #[error("the token was revoked")]
    Revoked,
    #[error("could not sign the token")]
    Sign,
}

pub fn issue(key: &SigningKey, claims: &AccessClaims) -> Result<String, TokenError> {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some(ACCESS_TOKEN_TYP.to_string());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|_| TokenError::Sign)
}

/// Which issuer a verifier accepts.
#[derive(Debug, Clone)]
pub enum IssuerPolicy {
    /// Exactly this one (`TOKEN_ISSUER`).
    Fixed(String),
    /// `https://<domain>` of the API Gateway domain the request came in on.
    FromRequestDomain,
}

impl IssuerPolicy {
    pub fn from_config(issuer: Option<&str>) -> Self {
        match issuer {
            Some(i) => IssuerPolicy::Fixed(i.to_string()),
            None => IssuerPolicy::FromRequestDomain,
        }
    }

    /// The issuer for a request that arrived on `domain` (None if it cannot be known).
    pub fn resolve(&self, domain: Option<&str>) -> Option<String> {
        match self {
            IssuerPolicy::Fixed(i) => Some(i.clone()),
            IssuerPolicy::FromRequestDomain => domain.map(|d| format!("https://{d}")),
        }
    }
}

/// The `kid` of a token, read before verification to pick the key; nothing else is trusted.
pub fn peek_kid(token: &str) -> Result<String, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::RS256 {
        return Err(TokenError::Algorithm);
    }
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(TokenError::Type);
    }
    header.kid.ok_or(TokenError::UnknownKey)
}

/// Verifies signature (RS256 only), `typ`, `iss`, `aud`, `exp`, `nbf`; returns the claims and
/// the parsed scopes.
pub fn verify(
    token: &str,
    keys: &JwkSet,
    issuer: &str,
    audience: &str,
) -> Result<(AccessClaims, ScopeSet, AccountId), TokenError> {
    let kid = peek_kid(token)?;
    let jwk = keys.find(&kid).ok_or(TokenError::UnknownKey)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::UnknownKey)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => TokenError::Expired,
            K::ImmatureSignature => TokenError::NotYetValid,
            K::InvalidIssuer => TokenError::Issuer,
            K::InvalidAudience => TokenError::Audience,
            K::InvalidSignature => TokenError::Signature,
            K::InvalidAlgorithm => TokenError::Algorithm,
            K::MissingRequiredClaim(_) | K::Json(_) => TokenError::Claims,
            _ => TokenError::Malformed,
        }
    })?;
    let claims = data.claims;
    if claims.iat > domain::Timestamp::now().epoch_secs() + LEEWAY_SECS as i64 {
        return Err(TokenError::NotYetValid);
    }
    if claims.sub != claims.client_id {
        return Err(TokenError::Claims);
    }
    let scopes = ScopeSet::parse(&claims.scope).map_err(|_| TokenError::Claims)?;
    let account = AccountId::parse(&claims.account).map_err(|_| TokenError::Claims)?;
    Ok((claims, scopes, account))
}
