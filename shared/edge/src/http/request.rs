//! What handlers read off an API Gateway (HTTP API v2) request.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use super::{ApiError, ErrorCode};
use domain::Problem;

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
    /// API Gateway's route (`POST /public/v1/user/data`), for logs; locally, where the route
    /// is `$default`, the method and path.
    pub route_key: String,
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
        let path = if raw.is_empty() { req.uri().path() } else { raw };
        let route_key = ctx
            .and_then(|c| c.route_key.clone())
            .filter(|k| !k.is_empty() && k != "$default")
            .unwrap_or_else(|| format!("{} {path}", req.method()));
        Self {
            request_id,
            method: req.method().as_str().to_string(),
            route_key,
            segments: split_path(path),
            domain: ctx.and_then(|c| c.domain_name.clone()).filter(|d| !d.is_empty()),
            source_ip: ctx.and_then(|c| c.http.source_ip.clone()),
        }
    }

    /// The span every log line of the request carries: request id, route, and the account
    /// once known (`tracing::Span::current().record("account", ...)`). Never a secret.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "request",
            request_id = %self.request_id,
            route = %self.route_key,
            account = tracing::field::Empty
        )
    }
}

/// Splits a path into its non-empty segments, percent-decoding each once (cargo-lambda and
/// API Gateway pass them encoded: `john%40x.io`).
pub fn split_path(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// The JSON body of a request: 415 unless the content type is JSON (or absent), 413 past
/// `max_bytes`, 400 `invalid_json` with the parser's line and column, 400 `invalid_body`
/// unless it is a JSON object.
pub fn json_body<T: serde::de::DeserializeOwned>(req: &Request, max_bytes: usize) -> Result<T, ApiError> {
    if let Some(ct) = header(req, "content-type") {
        let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if media != "application/json" && !media.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType(format!("'{media}': send application/json")));
        }
    }
    let body = req.body().as_ref();
    if body.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge { limit: max_bytes });
    }
    // Every request body of this API is an object; serde would also read a struct from a
    // JSON array (by position), so `[null, null]` must be refused here.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return Err(ApiError::invalid(
            ErrorCode::InvalidBody,
            "the body must be a JSON object; nothing was written",
        ));
    }
    // Every digit of a long number survives the parse (domain::exact).
    serde_json::from_slice(&domain::exact::protect_numbers(body)).map_err(|e| {
        if body.is_empty() {
            ApiError::invalid(ErrorCode::InvalidJson, "the request body is empty; send a JSON object")
        } else if e.classify() == serde_json::error::Category::Data {
            ApiError::invalid(
                ErrorCode::InvalidBody,
                format!("the body does not have the expected shape: {e}"),
            )
        } else {
            ApiError::invalid(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}"))
        }
    })
}

/// A header's value, if present and valid UTF-8.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `limit` (1 to `max`, default `default`) and `cursor` (decoded by `decode`) of a query.
pub fn page_params<C>(
    req: &Request,
    default: usize,
    max: usize,
    decode: impl Fn(&str) -> Option<C>,
) -> Result<(usize, Option<C>), ApiError> {
    let query = req.query_string_parameters_ref();
    let param = |name: &str| query.and_then(|q| q.first(name)).map(str::to_string);
    let mut details = Vec::new();
    let limit = match param("limit") {
        None => default,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                details.push(Problem::at("limit", format!("an integer from 1 to {max}")));
                0
            }
        },
    };
    let cursor = match param("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => {
            let c = decode(&raw);
            if c.is_none() {
                details.push(Problem::at("cursor", "not a cursor this API issued"));
            }
            c
        }
    };
    if !details.is_empty() {
        return Err(ApiError::validation("the query is invalid", details));
    }
    Ok((limit, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_decodes_each_segment_once() {
        assert_eq!(split_path("/public/v1/user/john%40x.io"), ["public", "v1", "user", "john@x.io"]);
        assert_eq!(split_path("/a/%2525/"), ["a", "%25"]);
        assert_eq!(split_path("/"), Vec::<String>::new());
    }
}
