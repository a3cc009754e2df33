//! Request parsing helpers and the one place where errors become HTTP responses.

pub mod error;
pub mod request;

pub use error::{ApiError, ErrorDetail};
pub use request::RequestInfo;

use lambda_http::{Body, Response};

/// A JSON response with the given status.
pub fn json_response<T: serde::Serialize>(status: u16, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("response types serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .expect("status and headers are valid")
}
