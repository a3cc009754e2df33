//! The HTTP edge: what handlers read off a request ([`request`]), what they answer
//! ([`Reply`]), and the one place errors become responses ([`error::render`]).

pub mod error;
pub mod request;

pub use error::{ApiError, ErrorCode};
pub use request::RequestInfo;

use lambda_http::{Body, Response};
use protect::usage::UsageReport;

/// How a route's errors look on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error": {"code", "message", "details", "requestId"}}`.
    Rest,
    /// RFC 6749 §5.2 `{"error", "error_description"}` for OAuth errors; anything else as
    /// [`Dialect::Rest`].
    OAuth,
    /// MoEngage's `{"status": "fail", "error": {"message", "type", "request_id"}}`.
    MoEngage,
}

/// A JSON response with the given status.
pub fn json_response<T: serde::Serialize>(status: u16, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("response types serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .expect("status and headers are valid")
}

/// A handler's successful answer, and the work it did for the usage record.
#[derive(Debug)]
pub struct Reply {
    pub response: Response<Body>,
    pub usage: UsageReport,
}

impl Reply {
    /// `status` with `body` as JSON; bodies are the typed structs of each function's `api`
    /// module, named after their schema in docs/openapi.yaml.
    pub fn json<T: serde::Serialize>(status: u16, body: &T) -> Self {
        Self { response: json_response(status, body), usage: UsageReport::default() }
    }

    pub fn no_content() -> Self {
        let response = Response::builder().status(204).body(Body::Empty).expect("valid response");
        Self { response, usage: UsageReport::default() }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.response.headers_mut().insert(name, value.parse().expect("header values we set are ASCII"));
        self
    }

    pub fn usage(mut self, usage: UsageReport) -> Self {
        self.usage = usage;
        self
    }
}
