//! The user-data function: `POST /public/v1/user/data` (WalkMe End User Update API),
//! `GET /public/v1/user/{userId}` (attributes and segment memberships),
//! `DELETE /public/v1/user/{userId}` (both, everywhere) and `POST /v1/customer/{workspace_id}`
//! (MoEngage Track User API, in [`moengage`]).

mod moengage;

use std::collections::HashMap;

use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};

use shared::auth::{Authenticator, Principal};
use shared::config::AuthConfig;
use shared::domain::user_data::{self, Envelope, Mode, UserId};
use shared::domain::{Scope, SecretHash};
use shared::http::request::{header, json_body};
use shared::http::{ApiError, ErrorDetail, RequestInfo, json_response};
use shared::protect::Guard;
use shared::protect::usage::UsageReport;
use shared::store::dynamo::DynamoStore;
use shared::store::end_users::UserWrite;

pub struct App {
    store: DynamoStore,
    auth: Authenticator,
    guard: Guard,
    moengage: moengage::State,
}

impl App {
    pub fn new(store: DynamoStore, auth: &AuthConfig) -> Self {
        Self {
            auth: Authenticator::new(store.clone(), auth),
            guard: Guard::new(store.clone()),
            moengage: moengage::State::default(),
            store,
        }
    }
}

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let info = RequestInfo::from_request(&req);
    let path = info.route();
    // `/public/v1/user/data` is also the path of the user "data", whose GET and DELETE it serves.
    let user = matches!(path.as_slice(), ["public", "v1", "user", _]).then_some("GET, DELETE");
    let served = info.is_allowed(allow(&path)) || info.is_allowed(user);
    app.guard.front(&app.auth, &info, &req, served, Box::pin(route(app, &info, &req))).await
}

/// The methods each path of this function serves (the `Allow` header of its `405`s).
fn allow(route: &[&str]) -> Option<&'static str> {
    match route {
        ["public", "v1", "user", "data"] | ["v1", "customer", _] => Some("POST"),
        ["public", "v1", "user", _] => Some("GET, DELETE"),
        _ => None,
    }
}

async fn route(app: &App, info: &RequestInfo, req: &Request) -> Result<Response<Body>, ApiError> {
    let authorize = |scope| async move {
        app.auth.authenticate(header(req, "authorization"), info.domain.as_deref(), scope).await
    };
    match (info.method.as_str(), info.route().as_slice()) {
        ("POST", ["public", "v1", "user", "data"]) => {
            update(app, info, &authorize(Scope::EndUserUpdateWrite).await?, req).await
        }
        ("GET", ["public", "v1", "user", user_id]) => {
            read(app, &authorize(Scope::EndUsersRead).await?, user_id).await
        }
        ("DELETE", ["public", "v1", "user", user_id]) => {
            erase(app, info, &authorize(Scope::EndUsersDelete).await?, user_id).await
        }
        ("POST", ["v1", "customer", workspace]) => Ok(moengage::track(app, info, req, workspace).await),
        (m, ["v1", "customer", _]) => Ok(moengage::method_not_allowed(info, m)),
        (m, path) => Err(ApiError::not_served(m, &info.segments, allow(path))),
    }
}

fn invalid(message: &str, details: Vec<ErrorDetail>) -> ApiError {
    ApiError::Invalid { code: "validation_failed", message: message.into(), details }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("now is formattable")
}

async fn update(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let envelope: Envelope = json_body(req, user_data::MAX_BODY_BYTES)?;
    let mut request = envelope.into_request(true).map_err(|d| invalid("the request body is invalid", d))?;
    let integration = app
        .store
        .integration_by_token(&SecretHash::of_str(&request.token).to_hex())
        .await?
        .filter(|i| i.account == p.account)
        .ok_or_else(|| ApiError::NotFound("no integration has this token".into()))?;
    let def = &integration.definition;
    let validated = user_data::validate(def, &mut request.data)
        .map_err(|d| invalid("some users are invalid; nothing was written", d))?;

    let writes: Vec<UserWrite> = validated
        .users
        .iter()
        .map(|u| UserWrite {
            user_id: &u.user_id,
            values: u.values.iter().map(|(i, v)| (def.properties[*i].name.as_str(), v)).collect(),
        })
        .collect();
    let now = now_rfc3339();
    let id = &integration.integration_id;
    let skipped: Vec<UserId> = match validated.mode {
        Mode::Merge => {
            let written =
                app.store.merge_user(&p.account, id, &writes[0], request.update_existing_only, &now).await?;
            if written { Vec::new() } else { vec![writes[0].user_id.clone()] }
        }
        Mode::Replace => {
            app.store.replace_users(&p.account, id, &writes, request.update_existing_only, &now).await?
        }
    };
    let accepted = writes.len() - skipped.len();
    tracing::info!(
        request_id = %info.request_id, account = %p.account, integration_id = %id,
        mode = validated.mode.as_str(), accepted, skipped = skipped.len(), "user data written"
    );
    let mut resp = json_response(
        200,
        &json!({
            "accepted": accepted,
            "mode": validated.mode.as_str(),
            "ignoredFields": validated.ignored_fields,
            "skipped": skipped.iter().map(UserId::as_str).collect::<Vec<_>>(),
        }),
    );
    resp.extensions_mut().insert(UsageReport { users_updated: accepted as i64, segment_ids: 0 });
    Ok(resp)
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw)
        .map_err(|reason| invalid("the user id is invalid", vec![ErrorDetail::at("userId", reason)]))
}

/// The end-user object: every attribute grouped by integration (only integrations and
/// properties that still exist), and every segment the user belongs to.
async fn read(app: &App, p: &Principal, raw_id: &str) -> Result<Response<Body>, ApiError> {
    let uid = user_id(raw_id)?;
    let (stored, integrations, segments) = tokio::join!(
        app.store.read_user(&p.account, uid.as_str()),
        app.store.list_integrations(&p.account),
        app.store.user_segments(&p.account, uid.as_str())
    );
    let (stored, integrations, segments) = (stored?, integrations?, segments?);
    let by_id: HashMap<&str, _> = integrations.iter().map(|i| (i.integration_id.as_str(), i)).collect();
    let mut groups = Vec::new();
    for s in &stored {
        let Some(integration) = by_id.get(s.integration_id.as_str()) else {
            continue;
        };
        let mut attributes = Map::new();
        let mut types = Map::new();
        for prop in &integration.definition.properties {
            if let Some(v) = s.values.get(&prop.name) {
                attributes.insert(prop.name.clone(), v.clone());
                types.insert(prop.name.clone(), json!(prop.attr_type.as_str()));
            }
        }
        if attributes.is_empty() {
            continue;
        }
        let mut group = json!({
            "integrationId": integration.integration_id,
            "name": integration.definition.name,
            "attributes": attributes,
            "types": types,
            "updatedAt": s.updated_at,
        });
        if let Some(ip) = &s.client_ip {
            group["clientIp"] = json!(ip);
        }
        groups.push(group);
    }
    if groups.is_empty() && segments.is_empty() {
        return Err(ApiError::NotFound("no data for this user".into()));
    }
    let segments: Vec<Value> = segments
        .iter()
        .map(|h| {
            json!({
                "systemGuid": h.system.to_string(),
                "segmentGuid": h.segment.to_string(),
                "id": h.external_id,
                "name": h.name,
            })
        })
        .collect();
    Ok(json_response(200, &json!({ "userId": uid.as_str(), "integrations": groups, "segments": segments })))
}

async fn erase(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    let uid = user_id(raw_id)?;
    // Memberships first: if the call fails between the two, a retry still finds the user.
    let memberships = app.store.remove_user_everywhere(&p.account, uid.as_str(), now_ms()).await?;
    let deleted = app.store.delete_user(&p.account, uid.as_str()).await?;
    tracing::info!(request_id = %info.request_id, account = %p.account, items = deleted, memberships,
        "user erased");
    let mut resp = Response::builder().status(204).body(Body::Empty).expect("valid response");
    resp.extensions_mut().insert(UsageReport { users_updated: 1, segment_ids: 0 });
    Ok(resp)
}
