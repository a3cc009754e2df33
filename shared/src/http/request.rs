//! What handlers read off an API Gateway (HTTP API v2) request.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// The parts of a request every handler uses, read once.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub request_id: String,
    pub method: String,
    /// The path's segments, each percent-decoded once.
    pub segments: Vec<String>,
    /// The API Gateway domain the request arrived on, when known.
    pub domain: Option<String>,
    pub source_ip: Option<String>,
}

impl RequestInfo {
    pub fn from_request(req: &Request) -> Self {
        let ctx = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(c)) => Some(c),
            _ => None,
        };
        let request_id = ctx
            .and_then(|c| c.request_id.clone())
            .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let raw = req.raw_http_path();
        let path = if raw.is_empty() {
            req.uri().path()
        } else {
            raw
        };
        Self {
            request_id,
            method: req.method().as_str().to_string(),
            segments: split_path(path),
            domain: ctx
                .and_then(|c| c.domain_name.clone())
                .filter(|d| !d.is_empty()),
            source_ip: ctx.and_then(|c| c.http.source_ip.clone()),
        }
    }

    /// The segments as `&str`, for matching routes with slice patterns.
    pub fn route(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

/// Splits a path into its non-empty segments, percent-decoding each once (cargo-lambda and
/// API Gateway pass them encoded: `john%40x.io`).
pub fn split_path(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// A header's value, if present and valid UTF-8.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_decodes_each_segment_once() {
        assert_eq!(
            split_path("/public/v1/user/john%40x.io"),
            ["public", "v1", "user", "john@x.io"]
        );
        assert_eq!(split_path("/a/%2525/"), ["a", "%25"]);
        assert_eq!(split_path("/"), Vec::<String>::new());
    }
}
