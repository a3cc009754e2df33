//! Every error a request can meet, and the one place ([`render`]) where an error becomes a
//! response, in the dialect of the route that met it (see [`Dialect`]):
//! - REST: `{"error": {"code", "message", "details", "requestId"}}`;
//! - OAuth (token endpoint): RFC 6749 §5.2 for OAuth errors, REST for the rest;
//! - MoEngage: `{"status": "fail", "error": {"message", "type", "request_id"}}`.
//!
//! Causes are logged here, once, with the request id; they are never echoed to the caller.

use lambda_http::{Body, Response};
use serde::Serialize;

use super::Dialect;
use auth::{BearerError, OAuthError, OAuthErrorKind, TokenError, WorkspaceError};
use domain::Problem;
use store::StoreError;

/// Every stable code of the REST error envelope (`error.code`), documented in
/// docs/openapi.yaml's `Error` schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ValidationFailed,
    InvalidJson,
    InvalidBody,
    InvalidIdempotencyKey,
    Unauthorized,
    InvalidToken,
    InsufficientScope,
    NotFound,
    RouteNotFound,
    MethodNotAllowed,
    Conflict,
    ExternalIdTaken,
    CursorStale,
    AttributeLimitExceeded,
    IntegrationLimitExceeded,
    SegmentLimitExceeded,
    ConcurrentModification,
    PreconditionFailed,
    IdempotencyKeyInUse,
    PayloadTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    RateLimited,
    /// The token endpoint's RFC 6749 errors, counted under one code in the metrics.
    OAuth,
    InternalError,
    ServiceUnavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 26] = [
        Self::ValidationFailed,
        Self::InvalidJson,
        Self::InvalidBody,
        Self::InvalidIdempotencyKey,
        Self::Unauthorized,
        Self::InvalidToken,
        Self::InsufficientScope,
        Self::NotFound,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::ExternalIdTaken,
        Self::CursorStale,
        Self::AttributeLimitExceeded,
        Self::IntegrationLimitExceeded,
        Self::SegmentLimitExceeded,
        Self::ConcurrentModification,
        Self::PreconditionFailed,
        Self::IdempotencyKeyInUse,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::IdempotencyKeyReused,
        Self::RateLimited,
        Self::OAuth,
        Self::InternalError,
        Self::ServiceUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "validation_failed",
            Self::InvalidJson => "invalid_json",
            Self::InvalidBody => "invalid_body",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::NotFound => "not_found",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::ExternalIdTaken => "external_id_taken",
            Self::CursorStale => "cursor_stale",
            Self::AttributeLimitExceeded => "attribute_limit_exceeded",
            Self::IntegrationLimitExceeded => "integration_limit_exceeded",
            Self::SegmentLimitExceeded => "segment_limit_exceeded",
            Self::ConcurrentModification => "concurrent_modification",
            Self::PreconditionFailed => "precondition_failed",
            Self::IdempotencyKeyInUse => "idempotency_key_in_use",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::RateLimited => "rate_limited",
            Self::OAuth => "oauth_error",
            Self::InternalError => "internal_error",
            Self::ServiceUnavailable => "service_unavailable",
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is well-formed HTTP but its content breaks a rule.
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String, details: Vec<Problem> },
    #[error(transparent)]
    Auth(#[from] BearerError),
    /// 401 for HTTP Basic credentials that are absent or wrong, whatever the cause.
    #[error("{message}")]
    BadCredentials { realm: &'static str, message: &'static str },
    /// 404 for anything unknown or belonging to another account: the two are never told apart.
    #[error("{0}")]
    NotFound(String),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("method {method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: String, allow: String },
    /// 409: the request is valid but the current state refuses it.
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// 412: an `If-Match` names a version that is no longer the stored one.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported content type: {0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    RateLimited { retry_after: i64 },
    /// 422: well-formed, but refused in the state the request finds (an idempotency key reused).
    #[error("{message}")]
    Unprocessable { code: ErrorCode, message: String },
    /// The token endpoint's RFC 6749 errors.
    #[error("{0}")]
    OAuth(OAuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A service other than the store failed (the import bucket): `503`, as the store's.
    #[error(transparent)]
    Unavailable(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// What a caller reads when the store could not answer.
const UNAVAILABLE: &str = "the service is temporarily unavailable; retry the same request: a retry completes exactly what this one may have started";

impl From<WorkspaceError> for ApiError {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Unauthorized => {
                Self::BadCredentials { realm: auth::workspace::REALM, message: auth::workspace::UNAUTHORIZED }
            }
            WorkspaceError::Store(e) => Self::Store(e),
        }
    }
}

impl ApiError {
    /// `503` for a failure of a service other than the store, its cause kept for the log.
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Unavailable(cause.into())
    }

    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into(), details: Vec::new() }
    }

    /// `400 validation_failed` listing every problem found.
    pub fn validation(message: impl Into<String>, details: Vec<Problem>) -> Self {
        Self::Invalid { code: ErrorCode::ValidationFailed, message: message.into(), details }
    }

    pub fn status(&self) -> u16 {
        self.status_and_code().0
    }

    pub fn code(&self) -> ErrorCode {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (u16, ErrorCode) {
        use ErrorCode as C;
        match self {
            Self::Invalid { code, .. } => (400, *code),
            Self::Auth(BearerError::Missing) | Self::BadCredentials { .. } => (401, C::Unauthorized),
            Self::Auth(BearerError::Invalid(_)) => (401, C::InvalidToken),
            Self::Auth(BearerError::InsufficientScope(_)) => (403, C::InsufficientScope),
            Self::Auth(BearerError::Unavailable(_)) => (503, C::ServiceUnavailable),
            Self::NotFound(_) => (404, C::NotFound),
            Self::RouteNotFound { .. } => (404, C::RouteNotFound),
            Self::MethodNotAllowed { .. } => (405, C::MethodNotAllowed),
            Self::Conflict { code, .. } => (409, *code),
            Self::PreconditionFailed(_) => (412, C::PreconditionFailed),
            Self::PayloadTooLarge { .. } => (413, C::PayloadTooLarge),
            Self::UnsupportedMediaType(_) => (415, C::UnsupportedMediaType),
            Self::RateLimited { .. } => (429, C::RateLimited),
            Self::Unprocessable { code, .. } => (422, *code),
            Self::OAuth(e) => (e.kind.status(), C::OAuth),
            Self::Store(e) if e.is_transient() => (503, C::ServiceUnavailable),
            Self::Unavailable(_) => (503, C::ServiceUnavailable),
            Self::Store(StoreError::NotFound(_)) => (404, C::NotFound),
            Self::Store(StoreError::AlreadyExists(_)) => (409, C::Conflict),
            Self::Store(_) => (500, C::InternalError),
        }
    }

    /// What the caller reads; for server-side failures, never the cause.
    fn public_message(&self) -> String {
        match self {
            Self::Store(e) if e.is_transient() => UNAVAILABLE.into(),
            Self::Auth(BearerError::Unavailable(_)) | Self::Unavailable(_) => UNAVAILABLE.into(),
            Self::Store(StoreError::NotFound(_)) => "not found".into(),
            Self::Store(StoreError::AlreadyExists(_)) => "already exists".into(),
            Self::Store(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// The `WWW-Authenticate` challenge of authentication failures (RFC 6750 §3, RFC 7617).
    fn www_authenticate(&self) -> Option<String> {
        match self {
            Self::Auth(BearerError::Missing) => Some("Bearer".into()),
            Self::Auth(BearerError::Invalid(e)) => {
                Some(format!("Bearer error=\"invalid_token\", error_description=\"{}\"", challenge_text(e)))
            }
            Self::Auth(BearerError::InsufficientScope(scope)) => Some(format!(
                "Bearer error=\"insufficient_scope\", error_description=\"the token lacks a required scope\", scope=\"{scope}\""
            )),
            Self::BadCredentials { realm, .. } => Some(format!("Basic realm=\"{realm}\"")),
            Self::OAuth(e) if e.kind == OAuthErrorKind::InvalidClient => Some("Basic realm=\"token\"".into()),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<i64> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// The one place an error becomes a response, in `dialect`.
pub fn render(err: ApiError, dialect: Dialect, request_id: &str) -> Response<Body> {
    let (status, code) = err.status_and_code();
    if status >= 500 {
        tracing::error!(request_id, code = code.as_str(), error = ?err, "request failed");
    } else {
        tracing::info!(request_id, status, code = code.as_str(), "request refused");
    }
    let body = match (&err, dialect) {
        (ApiError::OAuth(e), _) => e.body(),
        (_, Dialect::MoEngage) => serde_json::json!({
            "status": "fail",
            "error": {"message": moengage_message(&err), "type": moengage_type(status), "request_id": request_id},
        }),
        (_, Dialect::Rest | Dialect::OAuth) => {
            let details = match &err {
                ApiError::Invalid { details, .. } => details.as_slice(),
                _ => &[],
            };
            serde_json::json!({
                "error": {
                    "code": code,
                    "message": err.public_message(),
                    "details": details,
                    "requestId": request_id,
                }
            })
        }
    };
    let mut resp = super::json_response(status, &body);
    let headers = resp.headers_mut();
    if let Some(challenge) = err.www_authenticate() {
        headers.insert("www-authenticate", challenge.parse().expect("challenge is ASCII"));
    }
    if let ApiError::MethodNotAllowed { allow, .. } = &err {
        headers.insert("allow", allow.parse().expect("method list is ASCII"));
    }
    if let Some(retry_after) = err.retry_after() {
        headers.insert("retry-after", retry_after.max(1).into());
    }
    if dialect == Dialect::OAuth {
        // RFC 6749 §5.1: token responses must not be cached, errors included.
        headers.insert("cache-control", "no-store".parse().expect("ascii"));
        headers.insert("pragma", "no-cache".parse().expect("ascii"));
    }
    resp
}

/// MoEngage's `error.message`: every problem of a refused body, then what it means.
fn moengage_message(err: &ApiError) -> String {
    match err {
        ApiError::Invalid { details, .. } if !details.is_empty() => {
            let problems: Vec<String> = details
                .iter()
                .map(|d| match d.path.as_deref() {
                    Some(p) if !p.is_empty() => format!("{p}: {}", d.reason),
                    _ => d.reason.clone(),
                })
                .collect();
            format!("{}; nothing was written", problems.join("; "))
        }
        other => other.public_message(),
    }
}

/// MoEngage's `error.type`: the status's reason phrase, as its API names them.
fn moengage_type(status: u16) -> &'static str {
    match status {
        401 => "Authentication required",
        s => lambda_http::http::StatusCode::from_u16(s)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error"),
    }
}

fn challenge_text(e: &TokenError) -> String {
    e.to_string().replace('"', "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case_and_serialize_as_named() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(c.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::Value::String(c.as_str().into()));
        }
    }

    /// The codes a REST envelope can carry are exactly those `docs/openapi.yaml` lists.
    #[test]
    fn the_openapi_document_lists_every_code() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml")).unwrap();
        let start = doc.find("Stable snake_case code:").unwrap();
        let end = start + doc[start..].find("examples:").unwrap();
        let listed: std::collections::BTreeSet<&str> =
            doc[start..end].split('`').skip(1).step_by(2).collect();
        let ours: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().filter(|c| **c != ErrorCode::OAuth).map(|c| c.as_str()).collect();
        assert_eq!(listed, ours);
    }

    #[test]
    fn moengage_dialect_keeps_its_shape_for_every_error() {
        let errors = [
            ApiError::validation("bad", vec![Problem::at("customer_id", "missing")]),
            ApiError::RateLimited { retry_after: 2 },
            ApiError::Unprocessable { code: ErrorCode::IdempotencyKeyReused, message: "reused".into() },
            ApiError::MethodNotAllowed { method: "GET".into(), allow: "POST".into() },
            ApiError::BadCredentials { realm: "moengage", message: "authentication failed" },
        ];
        for e in errors {
            let status = e.status();
            let resp = render(e, Dialect::MoEngage, "req-1");
            assert_eq!(resp.status().as_u16(), status);
            let body: serde_json::Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
            assert_eq!(body["status"], "fail", "{body}");
            assert_eq!(body["error"]["request_id"], "req-1");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(body["error"]["type"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(body.get("code").is_none());
        }
    }
}
