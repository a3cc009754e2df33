//! The protections ([`protect`]) as the front runs them for every authenticated call, after
//! the route's scope was checked and before its handler: the account's rate limit
//! ([`Guard::admit`]), then a write's `Idempotency-Key` ([`Guard::claim`] and
//! [`Guard::settle`]); afterwards the call's usage ([`Guard::record`]). Here requests and
//! responses meet the protections' HTTP-free rules; the costs per call are in docs/TABLES.md.

use lambda_http::{Body, Request, Response};

use crate::http::{ApiError, ErrorCode, RequestInfo};
use domain::{AccountId, Problem, Timestamp};
use protect::idempotency::{self, Record, Seal, StoredResponse};
use protect::rate::{RateLimiter, Refusal};
use protect::usage::{self, UsageRecorder, UsageReport};
use store::{DynamoStore, StoreError};

pub struct Guard {
    store: DynamoStore,
    limiter: RateLimiter,
    usage: UsageRecorder,
}

/// What [`Guard::claim`] found for a write's `Idempotency-Key`.
pub enum Claim {
    /// No key: the call runs unprotected.
    None,
    /// The key (its hash) is this call's now; [`Guard::settle`] keeps or releases it, and
    /// seals what it keeps with `seal`.
    Fresh { key: String, seal: Seal },
    /// The same request already completed: its response, to send instead of running again.
    Replay(Response<Body>),
}

impl Guard {
    pub fn new(store: DynamoStore) -> Self {
        Self { store, limiter: RateLimiter::default(), usage: UsageRecorder::from_env() }
    }

    /// Counts the call's `units` (its route's `cost`) against the account's rate limit:
    /// `429` over it, `503` when the limiter's storage failed and no lease is left (never
    /// admitted unchecked).
    pub async fn admit(&self, account: &AccountId, units: u32, info: &RequestInfo) -> Result<(), ApiError> {
        let now_ms = Timestamp::now().epoch_ms();
        self.limiter.admit(&self.store, account, i64::from(units), now_ms).await.map_err(|refusal| {
            let err = match refusal {
                Refusal::Limited { retry_after } => {
                    tracing::info!(request_id = %info.request_id, %account, "rate limited");
                    ApiError::RateLimited { retry_after }
                }
                Refusal::Unavailable(e) => ApiError::Store(e),
            };
            usage::emit_error_metric(account, err.code().as_str(), now_ms);
            err
        })
    }

    /// Claims the request's `Idempotency-Key`, if it has one (only write routes call this).
    pub async fn claim(
        &self,
        account: &AccountId,
        info: &RequestInfo,
        req: &Request,
    ) -> Result<Claim, ApiError> {
        // The raw bytes: a value that is not visible ASCII is refused, not taken for no key.
        let Some(raw_key) = req.headers().get(idempotency::HEADER) else {
            return Ok(Claim::None);
        };
        let raw_key = idempotency::parse_key(raw_key.as_bytes()).map_err(|reason| ApiError::Invalid {
            code: ErrorCode::InvalidIdempotencyKey,
            message: "the Idempotency-Key header is invalid".into(),
            details: vec![Problem::at("header:Idempotency-Key", reason)],
        })?;
        let (key, seal) = (idempotency::key_hash(raw_key), Seal::derive(account.as_str(), raw_key));
        let fingerprint = fingerprint(info, req);
        match self.store.claim(account, &key, &fingerprint, Timestamp::now().epoch_secs()).await? {
            None => Ok(Claim::Fresh { key, seal }),
            Some(Record::Done { fingerprint: f, mut response }) if f == fingerprint => {
                tracing::info!(request_id = %info.request_id, %account, "idempotent replay");
                // The record was found by this key's hash, so only damage stops it opening.
                response.body = seal.open(&key, &response.body).ok_or_else(|| {
                    ApiError::Store(StoreError::Corrupt("idempotency record does not open".into()))
                })?;
                Ok(Claim::Replay(replay(response)))
            }
            Some(Record::Done { fingerprint: f, .. } | Record::Running { fingerprint: f })
                if f == fingerprint =>
            {
                Err(ApiError::Conflict {
                    code: ErrorCode::IdempotencyKeyInUse,
                    message: "a request with this Idempotency-Key is still running; retry later".into(),
                })
            }
            Some(_) => Err(ApiError::Unprocessable {
                code: ErrorCode::IdempotencyKeyReused,
                message: "this Idempotency-Key was used with a different request in the last 24 hours".into(),
            }),
        }
    }

    /// After the call: keeps its response under the claimed key for replay, or releases the
    /// key when the answer must not be replayed (see [`idempotency::keep`]).
    pub async fn settle(
        &self,
        account: &AccountId,
        info: &RequestInfo,
        (key, seal): (&str, &Seal),
        resp: &Response<Body>,
    ) {
        let status = resp.status().as_u16();
        let outcome = if idempotency::keep(status) {
            let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(Into::into);
            let stored = StoredResponse {
                status,
                content_type: header("content-type"),
                location: header("location"),
                body: seal.seal(key, resp.body().as_ref()),
            };
            self.store.complete(account, key, &stored, Timestamp::now().epoch_secs()).await
        } else {
            self.store.release(account, key).await
        };
        if let Err(e) = outcome {
            // The call itself is done; a stuck claim only makes a retry wait out the lease.
            tracing::warn!(request_id = %info.request_id, error = %e, "idempotency record not updated");
        }
    }

    /// Usage sums written every `every` per (account, client, day) instead of the
    /// environment's `USAGE_FLUSH_SECONDS`.
    pub fn flush_usage_every(&mut self, every: std::time::Duration) {
        self.usage = UsageRecorder::new(every);
    }

    /// Writes every pending usage sum now.
    pub async fn flush_usage(&self) {
        self.usage.flush_all(&self.store).await;
    }

    /// Charges the work a call did past the `units` it was admitted for ([`UsageReport::units`]):
    /// the account's windows of the next seconds pay it, on every instance.
    pub async fn charge_work(&self, account: &AccountId, admitted_units: u32, report: &UsageReport) {
        let owed = report.units() - i64::from(admitted_units);
        self.limiter.owe(&self.store, account, owed, Timestamp::now().epoch_ms()).await;
    }

    /// The call's usage, and its error code if it failed.
    pub async fn record(
        &self,
        account: &AccountId,
        client_id: &str,
        report: &UsageReport,
        error: Option<ErrorCode>,
    ) {
        let now_ms = Timestamp::now().epoch_ms();
        self.usage
            .record(&self.store, account, client_id, now_ms, report, error.map(ErrorCode::as_str))
            .await;
    }
}

fn fingerprint(info: &RequestInfo, req: &Request) -> String {
    idempotency::fingerprint(
        &info.method,
        req.uri().path(),
        req.uri().query().unwrap_or(""),
        req.body().as_ref(),
    )
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
