//! RFC 6749 §5.2 error responses of the token endpoint.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorKind {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    /// Not an RFC 6749 code: the store is unavailable (503); nothing was issued.
    TemporarilyUnavailable,
}

impl OAuthErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::InvalidClient => 401,
            Self::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub kind: OAuthErrorKind,
    pub description: String,
}

impl OAuthError {
    pub fn new(kind: OAuthErrorKind, description: impl Into<String>) -> Self {
        Self { kind, description: description.into() }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorKind::InvalidRequest, description)
    }

    /// One body for unknown client, disabled client and wrong secret, so that the response
    /// says nothing about which client ids exist.
    pub fn invalid_client() -> Self {
        Self::new(OAuthErrorKind::InvalidClient, "client authentication failed")
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.kind.code(), "error_description": self.description })
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.description)
    }
}
