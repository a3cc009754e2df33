//! The error envelope of every endpoint but the token endpoint:
//! `{"error": {"code", "message", "details", "requestId"}}`.
//!
//! Causes are logged here, once, with the request id; they are never echoed to the caller.

use lambda_http::{Body, Response};
use serde::Serialize;

use crate::auth::{BearerError, TokenError};
use crate::store::StoreError;

/// One problem found in a request: where (`index` of a list item and/or `path` into it) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub reason: String,
}

impl ErrorDetail {
    pub fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { index: None, path: Some(path.into()), reason: reason.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is well-formed HTTP but its content breaks a rule.
    #[error("{message}")]
    Invalid { code: &'static str, message: String, details: Vec<ErrorDetail> },
    #[error(transparent)]
    Auth(#[from] BearerError),
    /// 404 for anything unknown or belonging to another account: the two are never told apart.
    #[error("{0}")]
    NotFound(String),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("method {method} is not allowed here")]
    MethodNotAllowed { method: String, allow: &'static str },
    /// 409: the request is valid but the current state refuses it.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported content type: {0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    RateLimited { retry_after: i64 },
    /// Well-formed, but refused in the state the request finds (an idempotency key reused).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into(), details: Vec::new() }
    }

    /// A request its function does not serve: `405` with the path's `allow` (the methods it
    /// serves) when the function knows the path, else `404 route_not_found`.
    pub fn not_served(method: &str, segments: &[String], allow: Option<&'static str>) -> Self {
        match allow {
            Some(allow) => Self::MethodNotAllowed { method: method.into(), allow },
            None => Self::RouteNotFound { method: method.into(), path: segments.join("/") },
        }
    }

    fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            Self::Invalid { code, .. } => (400, code),
            Self::Auth(BearerError::Missing) => (401, "unauthorized"),
            Self::Auth(BearerError::Invalid(_)) => (401, "invalid_token"),
            Self::Auth(BearerError::InsufficientScope(_)) => (403, "insufficient_scope"),
            Self::Auth(BearerError::Unavailable(_)) => (503, "service_unavailable"),
            Self::NotFound(_) => (404, "not_found"),
            Self::RouteNotFound { .. } => (404, "route_not_found"),
            Self::MethodNotAllowed { .. } => (405, "method_not_allowed"),
            Self::Conflict { code, .. } => (409, code),
            Self::PayloadTooLarge { .. } => (413, "payload_too_large"),
            Self::UnsupportedMediaType(_) => (415, "unsupported_media_type"),
            Self::RateLimited { .. } => (429, "rate_limited"),
            Self::Unprocessable { code, .. } => (422, code),
            Self::Store(StoreError::Unavailable(_)) => (503, "service_unavailable"),
            Self::Store(StoreError::NotFound(_)) => (404, "not_found"),
            Self::Store(StoreError::AlreadyExists(_)) => (409, "conflict"),
            Self::Store(StoreError::Corrupt(_)) => (500, "internal_error"),
        }
    }

    /// What the caller reads; for server-side failures, never the cause.
    fn public_message(&self) -> String {
        match self {
            Self::Store(StoreError::Unavailable(_)) | Self::Auth(BearerError::Unavailable(_)) => {
                "the service is temporarily unavailable; retry the same request: a retry completes exactly what this one may have started".into()
            }
            Self::Store(StoreError::Corrupt(_)) => "internal error".into(),
            Self::Store(StoreError::NotFound(_)) => "not found".into(),
            Self::Store(StoreError::AlreadyExists(_)) => "already exists".into(),
            other => other.to_string(),
        }
    }

    /// RFC 6750 §3 challenge for authentication failures.
    fn www_authenticate(&self) -> Option<String> {
        match self {
            Self::Auth(BearerError::Missing) => Some("Bearer".into()),
            Self::Auth(BearerError::Invalid(e)) => {
                Some(format!("Bearer error=\"invalid_token\", error_description=\"{}\"", challenge_text(e)))
            }
            Self::Auth(BearerError::InsufficientScope(scope)) => Some(format!(
                "Bearer error=\"insufficient_scope\", error_description=\"the token lacks a required scope\", scope=\"{scope}\""
            )),
            _ => None,
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let (status, code) = self.status_and_code();
        if status >= 500 {
            tracing::error!(request_id, code, error = ?self, "request failed");
        } else {
            tracing::info!(request_id, status, code, "request refused");
        }
        let details = match &self {
            Self::Invalid { details, .. } => details.clone(),
            _ => Vec::new(),
        };
        let body = serde_json::json!({
            "error": {
                "code": code,
                "message": self.public_message(),
                "details": details,
                "requestId": request_id,
            }
        });
        let mut resp = super::json_response(status, &body);
        let headers = resp.headers_mut();
        if let Some(challenge) = self.www_authenticate() {
            headers.insert("www-authenticate", challenge.parse().expect("challenge is ASCII"));
        }
        if let Self::MethodNotAllowed { allow, .. } = &self {
            headers.insert("allow", allow.parse().expect("method list is ASCII"));
        }
        if let Self::RateLimited { retry_after } = self {
            headers.insert("retry-after", retry_after.max(1).into());
        }
        resp.extensions_mut().insert(ErrorCode(code));
        resp
    }
}

/// The stable code of an error response, for the per-account error metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

fn challenge_text(e: &TokenError) -> String {
    e.to_string().replace('"', "'")
}
