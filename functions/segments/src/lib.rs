//! The segments function (WalkMe Segments API): every route under
//! `/public/v1/user/system/{systemGuid}/segment`. Storage and its cost per call are in
//! `shared::store::segments`; request rules in `shared::domain::segment`.

use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

use shared::auth::{Authenticator, Principal};
use shared::config::AuthConfig;
use shared::domain::segment::{CreateSegment, UpdateSegment};
use shared::domain::{Scope, SegmentGuid, SystemGuid};
use shared::http::request::{header, json_body};
use shared::http::{ApiError, ErrorDetail, RequestInfo, json_response};
use shared::protect::Guard;
use shared::protect::usage::UsageReport;
use shared::store::dynamo::DynamoStore;
use shared::store::segments::{MemberCursor, NewSegment, SegmentError, SegmentHead, SegmentView};

/// 25,000 ids of up to 100 characters, each possibly `\u`-escaped, fit; API Gateway itself
/// stops at 10 MB.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
pub const DEFAULT_PAGE: usize = 1_000;
pub const MAX_PAGE: usize = 10_000;

pub struct App {
    store: DynamoStore,
    auth: Authenticator,
    guard: Guard,
}

impl App {
    pub fn new(store: DynamoStore, auth: &AuthConfig) -> Self {
        Self { auth: Authenticator::new(store.clone(), auth), guard: Guard::new(store.clone()), store }
    }
}

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let info = RequestInfo::from_request(&req);
    let served = info.is_allowed(allow(&info.route()));
    app.guard.front(&app.auth, &info, &req, served, Box::pin(route(app, &info, &req))).await
}

/// The methods each path of this function serves (the `Allow` header of its `405`s).
fn allow(route: &[&str]) -> Option<&'static str> {
    match route {
        ["public", "v1", "user", "system", _, "segment"] => Some("GET, POST"),
        ["public", "v1", "user", "system", _, "segment", _] => Some("GET, PUT, DELETE"),
        ["public", "v1", "user", "system", _, "segment", _, "members"] => Some("GET"),
        _ => None,
    }
}

async fn route(app: &App, info: &RequestInfo, req: &Request) -> Result<Response<Body>, ApiError> {
    let authorize = |scope| async move {
        app.auth.authenticate(header(req, "authorization"), info.domain.as_deref(), scope).await
    };
    let (read, write) = (Scope::SegmentsRead, Scope::SegmentsWrite);
    match (info.method.as_str(), info.route().as_slice()) {
        ("POST", ["public", "v1", "user", "system", sys, "segment"]) => {
            create(app, info, &authorize(write).await?, sys, req).await
        }
        ("GET", ["public", "v1", "user", "system", sys, "segment"]) => {
            list(app, &authorize(read).await?, sys).await
        }
        ("GET", ["public", "v1", "user", "system", sys, "segment", seg]) => {
            let head = find(app, &authorize(read).await?, sys, seg).await?;
            Ok(json_response(200, &body(&app.store.view(head).await?)))
        }
        ("PUT", ["public", "v1", "user", "system", sys, "segment", seg]) => {
            update(app, info, &authorize(write).await?, sys, seg, req).await
        }
        ("DELETE", ["public", "v1", "user", "system", sys, "segment", seg]) => {
            let p = authorize(write).await?;
            let head = find(app, &p, sys, seg).await?;
            app.store.delete_segment(&head).await.map_err(segment_error)?;
            tracing::info!(request_id = %info.request_id, account = %p.account, segment = %head.segment,
                "segment deleted");
            Ok(Response::builder().status(204).body(Body::Empty).expect("valid response"))
        }
        ("GET", ["public", "v1", "user", "system", sys, "segment", seg, "members"]) => {
            members(app, &authorize(read).await?, sys, seg, req).await
        }
        (m, path) => Err(ApiError::not_served(m, &info.segments, allow(path))),
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The segment body of every response.
fn body(v: &SegmentView) -> Value {
    json!({
        "segmentGuid": v.head.segment.to_string(),
        "systemGuid": v.head.system.to_string(),
        "id": v.head.external_id,
        "name": v.head.name,
        "userCount": v.user_count,
        "createdAt": rfc3339(v.head.created_at),
        "updatedAt": rfc3339(v.updated_at),
    })
}

fn not_found_system() -> ApiError {
    ApiError::NotFound("no system with this guid".into())
}

fn not_found_segment() -> ApiError {
    ApiError::NotFound("no segment with this guid in this system".into())
}

fn segment_error(e: SegmentError) -> ApiError {
    match e {
        SegmentError::NotFound => not_found_segment(),
        SegmentError::ExternalIdTaken => ApiError::Conflict {
            code: "external_id_taken",
            message: "a segment of this system already has this external id".into(),
        },
        SegmentError::StaleCursor => ApiError::Conflict {
            code: "cursor_stale",
            message: "the segment was overridden since this cursor was issued; list again without a cursor"
                .into(),
        },
        SegmentError::Store(e) => e.into(),
    }
}

fn invalid(message: &str, details: Vec<ErrorDetail>) -> ApiError {
    ApiError::Invalid { code: "validation_failed", message: message.into(), details }
}

/// A system of the caller's account, or 404 (for a malformed, unknown or foreign guid alike).
async fn system(app: &App, p: &Principal, raw: &str) -> Result<SystemGuid, ApiError> {
    let guid = SystemGuid::parse(raw).map_err(|_| not_found_system())?;
    if app.store.system_exists(&p.account, guid).await? { Ok(guid) } else { Err(not_found_system()) }
}

/// A segment of the caller's account: its head key includes the account, so a foreign
/// segment is simply absent.
async fn find(app: &App, p: &Principal, sys: &str, seg: &str) -> Result<SegmentHead, ApiError> {
    let system = SystemGuid::parse(sys).map_err(|_| not_found_segment())?;
    let segment = SegmentGuid::parse(seg).map_err(|_| not_found_segment())?;
    app.store.segment_head(&p.account, system, segment).await?.ok_or_else(not_found_segment)
}

async fn create(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    sys: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let raw: Value = json_body(req, MAX_BODY_BYTES)?;
    let request = CreateSegment::from_json(&raw).map_err(|d| invalid("the segment is invalid", d))?;
    let system = system(app, p, sys).await?;
    let new = NewSegment {
        account: &p.account,
        system,
        external_id: request.external_id.as_deref(),
        name: &request.name,
        user_ids: &request.user_ids,
    };
    let view = app.store.create_segment(&new, now_ms()).await.map_err(segment_error)?;
    tracing::info!(request_id = %info.request_id, account = %p.account, segment = %view.head.segment,
        users = view.user_count, "segment created");
    let mut resp = json_response(201, &body(&view));
    resp.extensions_mut()
        .insert(UsageReport { users_updated: 0, segment_ids: request.user_ids.len() as i64 });
    let location = format!("/public/v1/user/system/{system}/segment/{}", view.head.segment);
    resp.headers_mut().insert("location", location.parse().expect("a path is a valid header"));
    Ok(resp)
}

async fn list(app: &App, p: &Principal, sys: &str) -> Result<Response<Body>, ApiError> {
    let system = system(app, p, sys).await?;
    let segments = app.store.list_segments(&p.account, system).await?;
    Ok(json_response(200, &json!({ "segments": segments.iter().map(body).collect::<Vec<_>>() })))
}

async fn update(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    sys: &str,
    seg: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let raw: Value = json_body(req, MAX_BODY_BYTES)?;
    let request = UpdateSegment::from_json(&raw).map_err(|d| invalid("the update is invalid", d))?;
    let head = find(app, p, sys, seg).await?;
    let view = app
        .store
        .change_members(head, request.action, &request.user_ids, now_ms())
        .await
        .map_err(segment_error)?;
    tracing::info!(request_id = %info.request_id, account = %p.account, segment = %view.head.segment,
        action = ?request.action, ids = request.user_ids.len(), users = view.user_count, "segment updated");
    let mut resp = json_response(200, &body(&view));
    resp.extensions_mut()
        .insert(UsageReport { users_updated: 0, segment_ids: request.user_ids.len() as i64 });
    Ok(resp)
}

async fn members(
    app: &App,
    p: &Principal,
    sys: &str,
    seg: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let query = req.query_string_parameters_ref();
    let param = |name: &str| query.and_then(|q| q.first(name)).map(str::to_string);
    let mut details = Vec::new();
    let limit = match param("limit") {
        None => DEFAULT_PAGE,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                details.push(ErrorDetail::at("limit", format!("an integer from 1 to {MAX_PAGE}")));
                0
            }
        },
    };
    let cursor = match param("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => {
            let c = MemberCursor::decode(&raw);
            if c.is_none() {
                details.push(ErrorDetail::at("cursor", "not a cursor this API issued"));
            }
            c
        }
    };
    if !details.is_empty() {
        return Err(invalid("the query is invalid", details));
    }
    let head = find(app, p, sys, seg).await?;
    let page = app.store.members(&head, cursor, limit).await.map_err(segment_error)?;
    Ok(json_response(
        200,
        &json!({ "userIds": page.user_ids, "nextCursor": page.next.as_ref().map(MemberCursor::encode) }),
    ))
}
