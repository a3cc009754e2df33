//! Pay-per-call protections that run around every authenticated call, before routing:
//! the account's rate limit ([`rate`]) and `Idempotency-Key` replay ([`idempotency`]).
//! Each function's `handle` passes its route through [`Guard::run`]; the costs per call are
//! in docs/TABLES.md.

pub mod idempotency;
pub mod rate;
pub mod usage;

use std::future::Future;

use lambda_http::{Body, Request, Response};
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::store::dynamo::DynamoStore;

use crate::domain::AccountId;
use crate::http::error::ErrorCode;
use crate::http::request::header;
use crate::http::{ApiError, ErrorDetail, RequestInfo};
use idempotency::{Record, StoredResponse};
use rate::RateLimiter;
use usage::{UsageRecorder, UsageReport};

pub struct Guard {
    store: DynamoStore,
    limiter: RateLimiter,
    usage: UsageRecorder,
}

/// Who is calling, as far as the protections care.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub account: &'a AccountId,
    pub client_id: &'a str,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn body_bytes(req: &Request) -> &[u8] {
    req.body().as_ref()
}

impl Guard {
    pub fn new(store: DynamoStore) -> Self {
        Self { store, limiter: RateLimiter::default(), usage: UsageRecorder::from_env() }
    }

    /// The front of every bearer-token function: the request's log span, the caller named by
    /// a valid token (whatever its scopes: the route checks those), then [`Guard::run`].
    /// `served`: whether the function serves the request's method on its path (see
    /// [`Guard::run`]). `route` should be boxed: it is large, and a debug build would overflow
    /// a thread stack.
    pub async fn front<F>(
        &self,
        auth: &Authenticator,
        info: &RequestInfo,
        req: &Request,
        served: bool,
        route: F,
    ) -> Response<Body>
    where
        F: Future<Output = Result<Response<Body>, ApiError>>,
    {
        async {
            let caller = auth.identify(header(req, "authorization"), info.domain.as_deref()).await;
            if let Some(p) = &caller {
                tracing::Span::current().record("account", p.account.as_str());
            }
            let caller = caller.as_ref().map(|p| Caller { account: &p.account, client_id: &p.client_id });
            self.run(caller, info, req, served, route).await
        }
        .instrument(info.span())
        .await
    }

    /// Runs `route` for `caller` (`None`: not identified, so the route's own authentication
    /// answers): rate limit first, then the idempotency key of a write; afterwards the call's
    /// usage is recorded. A request the function does not serve (`served` false: its `405` or
    /// `404`) never looks at an `Idempotency-Key`, so that it is answered as such.
    pub async fn run<F>(
        &self,
        caller: Option<Caller<'_>>,
        info: &RequestInfo,
        req: &Request,
        served: bool,
        route: F,
    ) -> Response<Body>
    where
        F: Future<Output = Result<Response<Body>, ApiError>>,
    {
        let fail = |e: ApiError| e.into_response(&info.request_id);
        let Some(caller) = caller else {
            return route.await.unwrap_or_else(fail);
        };
        let account = caller.account;
        if let Err(retry_after) = self.limiter.check(&self.store, account, now_ms()).await {
            tracing::info!(request_id = %info.request_id, %account, "rate limited");
            usage::emit_error_metric(account, "rate_limited", now_ms());
            return fail(ApiError::RateLimited { retry_after });
        }
        let resp = self.admitted(account, info, req, served, route).await;
        let report = resp.extensions().get::<UsageReport>().copied().unwrap_or_default();
        let error = resp.extensions().get::<ErrorCode>().map(|c| c.0);
        self.usage.record(&self.store, account, caller.client_id, now_ms(), &report, error).await;
        resp
    }

    /// A call within the limit: the idempotency key of a write, then the route.
    async fn admitted<F>(
        &self,
        account: &AccountId,
        info: &RequestInfo,
        req: &Request,
        served: bool,
        route: F,
    ) -> Response<Body>
    where
        F: Future<Output = Result<Response<Body>, ApiError>>,
    {
        let fail = |e: ApiError| e.into_response(&info.request_id);
        let write = served && matches!(info.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
        // The raw bytes: a value that is not visible ASCII is refused, not taken for no key.
        let Some(raw_key) = req.headers().get(idempotency::HEADER).filter(|_| write) else {
            return route.await.unwrap_or_else(fail);
        };
        let key = match idempotency::parse_key(raw_key.as_bytes()) {
            Ok(k) => idempotency::key_hash(k),
            Err(reason) => {
                return fail(ApiError::Invalid {
                    code: "invalid_idempotency_key",
                    message: "the Idempotency-Key header is invalid".into(),
                    details: vec![ErrorDetail::at("header:Idempotency-Key", reason)],
                });
            }
        };
        let fingerprint = idempotency::fingerprint(
            &info.method,
            req.uri().path(),
            req.uri().query().unwrap_or(""),
            body_bytes(req),
        );
        let now = now_ms() / 1000;
        match self.store.claim(account, &key, &fingerprint, now).await {
            Err(e) => return fail(e.into()),
            Ok(None) => {}
            Ok(Some(Record::Done { fingerprint: f, response })) if f == fingerprint => {
                tracing::info!(request_id = %info.request_id, %account, "idempotent replay");
                return replay(response);
            }
            Ok(Some(Record::Done { fingerprint: f, .. } | Record::Running { fingerprint: f })) => {
                return fail(if f == fingerprint {
                    ApiError::Conflict {
                        code: "idempotency_key_in_use",
                        message: "a request with this Idempotency-Key is still running; retry later".into(),
                    }
                } else {
                    ApiError::Unprocessable {
                        code: "idempotency_key_reused",
                        message:
                            "this Idempotency-Key was used with a different request in the last 24 hours"
                                .into(),
                    }
                });
            }
        }
        let resp = route.await.unwrap_or_else(fail);
        let (parts, body) = resp.into_parts();
        let status = parts.status.as_u16();
        let bytes: Vec<u8> = match &body {
            Body::Empty => Vec::new(),
            Body::Text(t) => t.as_bytes().to_vec(),
            Body::Binary(b) => b.clone(),
            _ => Vec::new(),
        };
        let outcome = if idempotency::keep(status) {
            let stored = StoredResponse {
                status,
                content_type: parts.headers.get("content-type").and_then(|v| v.to_str().ok()).map(Into::into),
                location: parts.headers.get("location").and_then(|v| v.to_str().ok()).map(Into::into),
                body: bytes,
            };
            self.store.complete(account, &key, &stored, now).await
        } else {
            self.store.release(account, &key).await
        };
        if let Err(e) = outcome {
            // The call itself is done; a stuck claim only makes a retry wait out the lease.
            tracing::warn!(request_id = %info.request_id, error = %e, "idempotency record not updated");
        }
        Response::from_parts(parts, body)
    }
}

fn replay(r: StoredResponse) -> Response<Body> {
    let mut b = Response::builder().status(r.status).header("idempotent-replayed", "true");
    if let Some(ct) = r.content_type {
        b = b.header("content-type", ct);
    }
    if let Some(loc) = r.location {
        b = b.header("location", loc);
    }
    let body = if r.body.is_empty() {
        Body::Empty
    } else {
        String::from_utf8(r.body).map(Body::Text).unwrap_or_else(|e| Body::Binary(e.into_bytes()))
    };
    b.body(body).expect("stored status and headers are valid")
}
