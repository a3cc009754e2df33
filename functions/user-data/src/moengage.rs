//! `POST /v1/customer/{workspace_id}`: MoEngage's Track User API (seed 004).
//!
//! - Auth: HTTP Basic `base64(workspace_id ":" api_key)`; the workspace id is the account id
//!   and must equal the path's; the API key is the secret of an enabled API client of that
//!   account holding `endUserUpdate:write`, found with one Query of the `byAccount` index and
//!   compared in constant time. Every failure is the same 401.
//! - The body is judged whole (shape, names, values, recorded types) before any write.
//! - New attribute names grow the account's implicit "MoEngage" integration through the
//!   attribute-cap transaction; then one UpdateItem merges the values into the user's item,
//!   with the client address.
//! - Every response of this route, success or failure, is made here, in MoEngage's shape:
//!   `{"status": "success", "message"}` / `{"status": "fail", "error": {"message", "type",
//!   "request_id"}}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use shared::domain::integration::AttrType;
use shared::domain::moengage::{self as rules, INTEGRATION_ID, MAX_ATTRIBUTES, TrackUser};
use shared::domain::{AccountId, ClientSecret, Scope, SecretHash};
use shared::http::request::header;
use shared::http::{ErrorDetail, RequestInfo, json_response};
use shared::protect::Caller;
use shared::protect::usage::UsageReport;
use shared::store::StoreError;
use shared::store::end_users::UserWrite;
use shared::store::integrations::{IntegrationRecord, IntegrationWriteError};

use crate::App;

pub const SUCCESS_MESSAGE: &str = "Your request has been accepted and will be processed soon.";
/// The `WWW-Authenticate` challenge of every 401 of this route.
pub const CHALLENGE: &str = "Basic realm=\"moengage\"";
/// A verified (workspace, API key) pair is trusted this long by a warm instance, so that a
/// busy account does not read the same index partition on every call. A disabled client or a
/// rotated secret therefore stops working here within this delay.
const VERIFIED_TTL: Duration = Duration::from_secs(10);
/// Entries per cache before it is emptied (a bound on memory, not an eviction policy).
const CACHE_MAX: usize = 1024;
/// Rounds of "read the integration, add the new attributes" lost to concurrent additions
/// before giving up with a 503.
const WRITE_ATTEMPTS: usize = 5;
/// The implicit integration has no token; no token hash (64 hex characters) equals this.
const NO_TOKEN: &str = "none";

/// What a warm instance remembers between calls.
#[derive(Default)]
pub struct State {
    /// SHA-256 of (account, API key) → until when it is trusted, and whose key it is.
    verified: Mutex<HashMap<String, (Instant, String)>>,
    /// Per account, the attribute types of the MoEngage integration. Types never change and
    /// attributes are never removed from it, so a name found here needs no read; an unknown
    /// name always reads the integration afresh.
    types: Mutex<HashMap<AccountId, Arc<BTreeMap<String, AttrType>>>>,
}

impl State {
    fn verified_client(&self, key: &str) -> Option<String> {
        let map = self.verified.lock().expect("not poisoned");
        map.get(key).filter(|(until, _)| *until > Instant::now()).map(|(_, client)| client.clone())
    }

    fn remember_verified(&self, key: String, client_id: String) {
        let mut map = self.verified.lock().expect("not poisoned");
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(key, (Instant::now() + VERIFIED_TTL, client_id));
    }

    fn known_types(&self, account: &AccountId) -> Option<Arc<BTreeMap<String, AttrType>>> {
        self.types.lock().expect("not poisoned").get(account).cloned()
    }

    fn remember_types(&self, account: &AccountId, types: BTreeMap<String, AttrType>) {
        let mut map = self.types.lock().expect("not poisoned");
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(account.clone(), Arc::new(types));
    }
}

/// Why a request was refused. The one place MoEngage-shaped errors are made (`respond`).
#[derive(Debug)]
enum Fail {
    /// 400: the body breaks a rule; every problem is in the message.
    BadRequest(String),
    /// 401, the same for every cause.
    Unauthorized,
    /// 405 (only when a function gets another method: API Gateway routes POST only).
    MethodNotAllowed(String),
    /// 409: valid, but the account's attribute limit refuses the new attributes.
    AttributeLimit(String),
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType(String),
    /// 503: concurrent additions of attributes won every round; nothing was written.
    Contention,
    /// 503 (unavailable) or 500 (corrupt item).
    Store(StoreError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Fail {
    fn status_and_type(&self) -> (u16, &'static str) {
        match self {
            Self::BadRequest(_) => (400, "Bad Request"),
            Self::Unauthorized => (401, "Authentication required"),
            Self::MethodNotAllowed(_) => (405, "Method Not Allowed"),
            Self::AttributeLimit(_) => (409, "Conflict"),
            Self::PayloadTooLarge => (413, "Payload Too Large"),
            Self::UnsupportedMediaType(_) => (415, "Unsupported Media Type"),
            Self::Contention | Self::Store(StoreError::Unavailable(_)) => (503, "Service Unavailable"),
            Self::Store(_) => (500, "Internal Server Error"),
        }
    }

    /// What the caller reads; for server-side failures, never the cause.
    fn message(&self) -> String {
        match self {
            Self::BadRequest(m) | Self::AttributeLimit(m) => m.clone(),
            Self::Unauthorized => {
                "authentication failed: send Basic base64(<workspace id>:<API key>) with the workspace id of the path".into()
            }
            Self::MethodNotAllowed(m) => format!("method {m} is not allowed here; use POST"),
            Self::PayloadTooLarge => {
                format!("the request body exceeds {} bytes", rules::MAX_BODY_BYTES)
            }
            Self::UnsupportedMediaType(m) => format!("unsupported content type '{m}': send application/json"),
            Self::Contention | Self::Store(StoreError::Unavailable(_)) => {
                "the service is temporarily unavailable; retry the same request: a retry completes exactly what this one may have started".into()
            }
            Self::Store(_) => "internal error".into(),
        }
    }

    fn respond(self, request_id: &str) -> Response<Body> {
        let (status, kind) = self.status_and_type();
        if status >= 500 {
            tracing::error!(request_id, status, error = ?self, "moengage request failed");
        } else {
            tracing::info!(request_id, status, kind, "moengage request refused");
        }
        let body = json!({
            "status": "fail",
            "error": {"message": self.message(), "type": kind, "request_id": request_id},
        });
        let mut resp = json_response(status, &body);
        let headers = resp.headers_mut();
        match self {
            Self::Unauthorized => {
                headers.insert("www-authenticate", CHALLENGE.parse().expect("ASCII"));
            }
            Self::MethodNotAllowed(_) => {
                headers.insert("allow", "POST".parse().expect("ASCII"));
            }
            _ => {}
        }
        resp
    }
}

fn bad_request(details: Vec<ErrorDetail>) -> Fail {
    let problems: Vec<String> = details
        .iter()
        .map(|d| match d.path.as_deref() {
            Some(p) if !p.is_empty() => format!("{p}: {}", d.reason),
            _ => d.reason.clone(),
        })
        .collect();
    Fail::BadRequest(format!("{}; nothing was written", problems.join("; ")))
}

/// `POST /v1/customer/{workspace_id}`. Authenticated here (Basic, not a bearer token), then
/// through the same protections as every route: rate limit, `Idempotency-Key`, usage.
pub async fn track(app: &App, info: &RequestInfo, req: &Request, workspace: &str) -> Response<Body> {
    let (account, client_id) = match authenticate(app, req, workspace).await {
        Ok(who) => who,
        Err(fail) => return fail.respond(&info.request_id),
    };
    tracing::Span::current().record("account", account.as_str());
    let caller = Caller { account: &account, client_id: &client_id };
    let call = async {
        Ok(match run(app, info, req, &account).await {
            Ok(written) => {
                let mut resp = json_response(200, &json!({"status": "success", "message": SUCCESS_MESSAGE}));
                resp.extensions_mut()
                    .insert(UsageReport { users_updated: i64::from(written), segment_ids: 0 });
                resp
            }
            Err(fail) => fail.respond(&info.request_id),
        })
    };
    in_moengage_shape(app.guard.run(Some(caller), info, req, true, Box::pin(call)).await)
}

/// The protections answer in this API's envelope (`{"error": {"code", ...}}`); MoEngage
/// clients expect theirs, so those answers (429, idempotency 400/409/422, 503) are re-shaped.
/// Headers (`Retry-After`) are kept.
fn in_moengage_shape(resp: Response<Body>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let ours: Option<Value> = match &body {
        Body::Text(t) => serde_json::from_str(t).ok(),
        Body::Binary(b) => serde_json::from_slice(b).ok(),
        _ => None,
    };
    let Some(error) = ours.as_ref().and_then(|v| v.get("error")).filter(|e| e.get("code").is_some()) else {
        return Response::from_parts(parts, body);
    };
    let kind = parts.status.canonical_reason().unwrap_or("Error");
    let shaped = json!({
        "status": "fail",
        "error": {"message": error["message"], "type": kind, "request_id": error["requestId"]},
    });
    parts.headers.remove("content-length");
    Response::from_parts(parts, Body::Text(shaped.to_string()))
}

/// Any other method on the path.
pub fn method_not_allowed(info: &RequestInfo, method: &str) -> Response<Body> {
    Fail::MethodNotAllowed(method.to_string()).respond(&info.request_id)
}

/// Judges and writes the update; `Ok(true)` when the user was written.
async fn run(app: &App, info: &RequestInfo, req: &Request, account: &AccountId) -> Result<bool, Fail> {
    let account = account.clone();
    let request = TrackUser::parse(read_body(req)?).map_err(bad_request)?;
    let client_ip = rules::client_address(header(req, "x-forwarded-for"), info.source_ip.as_deref());
    let now = crate::now_rfc3339();
    let state = &app.moengage;

    for _ in 0..WRITE_ATTEMPTS {
        let all_known =
            |k: &BTreeMap<String, AttrType>| request.attributes.iter().all(|(n, _)| k.contains_key(n));
        let (record, known) = match state.known_types(&account) {
            Some(known) if all_known(&known) => (None, known),
            _ if request.attributes.is_empty() => (None, Arc::default()),
            _ => {
                let record = app.store.get_integration(&account, INTEGRATION_ID).await?;
                let types = record.as_ref().map(|r| r.attribute_types.clone()).unwrap_or_default();
                if record.is_some() {
                    state.remember_types(&account, types.clone());
                }
                (record, Arc::new(types))
            }
        };
        let resolved = rules::resolve(&request.attributes, &known).map_err(bad_request)?;

        if !resolved.new_attributes.is_empty() {
            // Nothing to create for a user who is not there: check before growing the
            // integration (the write below checks again, atomically).
            if request.update_existing_only
                && !app
                    .store
                    .user_has_integration(&account, request.customer_id.as_str(), INTEGRATION_ID)
                    .await?
            {
                log(info, &account, &request, 0, false);
                return Ok(false);
            }
            let next = grown(&account, record.as_ref(), &resolved.new_attributes)?;
            match app.store.put_tokenless_integration(record.as_ref(), &next).await {
                Ok(()) => state.remember_types(&account, next.attribute_types.clone()),
                // Another call added attributes meanwhile: read again, judge again.
                Err(IntegrationWriteError::Conflict) => continue,
                Err(IntegrationWriteError::AttributeLimit) => {
                    return Err(Fail::AttributeLimit(format!(
                        "new attributes {} would take the account past its attribute limit (attributes of all integrations count); nothing was written",
                        quoted(&resolved.new_attributes)
                    )));
                }
                Err(IntegrationWriteError::Store(e)) => return Err(e.into()),
            }
        }

        let write = UserWrite {
            user_id: &request.customer_id,
            values: resolved.values.iter().map(|(name, v)| (name.as_str(), v)).collect(),
        };
        let written = app
            .store
            .merge_user_from(
                &account,
                INTEGRATION_ID,
                &write,
                request.update_existing_only,
                &now,
                client_ip.as_deref(),
            )
            .await?;
        log(info, &account, &request, resolved.new_attributes.len(), written);
        return Ok(written);
    }
    Err(Fail::Contention)
}

fn log(info: &RequestInfo, account: &AccountId, request: &TrackUser, new_attributes: usize, written: bool) {
    tracing::info!(
        request_id = %info.request_id, %account, attributes = request.attributes.len(), new_attributes,
        update_existing_only = request.update_existing_only, written, "moengage user tracked"
    );
}

fn quoted(attrs: &[(String, AttrType)]) -> String {
    attrs.iter().map(|(n, _)| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

/// The implicit integration with `new` attributes added (created when there is none yet).
fn grown(
    account: &AccountId,
    current: Option<&IntegrationRecord>,
    new: &[(String, AttrType)],
) -> Result<IntegrationRecord, Fail> {
    let definition = rules::extended(current.map(|r| &r.definition), new);
    if definition.properties.len() > MAX_ATTRIBUTES {
        return Err(Fail::AttributeLimit(format!(
            "new attributes {} would take the MoEngage integration past {MAX_ATTRIBUTES} attributes; nothing was written",
            quoted(new)
        )));
    }
    let mut attribute_types = current.map(|r| r.attribute_types.clone()).unwrap_or_default();
    attribute_types.extend(new.iter().cloned());
    let now = shared::now_epoch();
    Ok(IntegrationRecord {
        integration_id: INTEGRATION_ID.to_string(),
        account: account.clone(),
        definition,
        attribute_types,
        token_hash: NO_TOKEN.to_string(),
        version: current.map_or(1, |r| r.version + 1),
        created_at: current.map_or(now, |r| r.created_at),
        updated_at: now,
    })
}

/// The account whose workspace id and API key the `Authorization` header carries, if they
/// are right: an enabled client of that account, holding `endUserUpdate:write`, has this
/// secret. Every secret hash of the account is compared (constant time each), whatever matched.
async fn authenticate(app: &App, req: &Request, workspace: &str) -> Result<(AccountId, String), Fail> {
    let (claimed, key) = rules::parse_basic(header(req, "authorization")).ok_or(Fail::Unauthorized)?;
    if claimed != workspace {
        return Err(Fail::Unauthorized);
    }
    let account = AccountId::parse(&claimed).map_err(|_| Fail::Unauthorized)?;
    let secret = ClientSecret::from_presented(&key).ok_or(Fail::Unauthorized)?;
    let cache_key = SecretHash::of_str(&format!("{account}\n{}", secret.expose())).to_base64();
    if let Some(client_id) = app.moengage.verified_client(&cache_key) {
        return Ok((account, client_id));
    }
    // The byAccount index (one Query): eventually consistent, so a client created a moment ago
    // may take about a second to be found.
    let clients = app.store.list_clients(&account).await?;
    let mut found = None;
    for c in &clients {
        let matches = c.secret_hash.verify(&secret);
        if matches & !c.disabled & c.scopes.contains(Scope::EndUserUpdateWrite) & (c.account == account) {
            found = Some(c.client_id.to_string());
        }
    }
    let client_id = found.ok_or(Fail::Unauthorized)?;
    app.moengage.remember_verified(cache_key, client_id.clone());
    Ok((account, client_id))
}

/// The JSON body: 415 for a non-JSON content type (an absent one is read as JSON), 413 past
/// MoEngage's 128 KB, 400 when empty or not JSON.
fn read_body(req: &Request) -> Result<Value, Fail> {
    if let Some(ct) = header(req, "content-type") {
        let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if media != "application/json" && !media.ends_with("+json") {
            return Err(Fail::UnsupportedMediaType(media));
        }
    }
    let body = req.body().as_ref();
    if body.len() > rules::MAX_BODY_BYTES {
        return Err(Fail::PayloadTooLarge);
    }
    if body.is_empty() {
        return Err(Fail::BadRequest("the request body is empty; send a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| Fail::BadRequest(format!("the body is not valid JSON: {e}")))
}
