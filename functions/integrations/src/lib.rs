//! The integrations function: create, list, get, patch, delete and test integrations.
//!
//! `POST /public/v1/integrations`, `GET /public/v1/integrations`,
//! `GET|PATCH|DELETE /public/v1/integrations/{integrationId}`,
//! `POST /public/v1/integrations/{integrationId}/test`.

use std::collections::BTreeMap;

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use shared::auth::{Authenticator, IssuerPolicy, Principal};
use shared::config::AuthConfig;
use shared::domain::integration::Definition;
use shared::domain::user_data::{self, Envelope, Mode};
use shared::domain::{Scope, SecretHash};
use shared::http::request::{header, json_body};
use shared::http::{ApiError, RequestInfo, json_response};
use shared::protect::Guard;
use shared::store::dynamo::DynamoStore;
use shared::store::integrations::{IntegrationRecord, IntegrationWriteError};

/// Definitions are small; anything larger is not one.
const MAX_DEFINITION_BYTES: usize = 256 * 1024;
/// Optimistic-concurrency retries of a patch or delete that raced another edit.
const EDIT_ATTEMPTS: usize = 3;

pub struct App {
    store: DynamoStore,
    auth: Authenticator,
    guard: Guard,
    issuer: IssuerPolicy,
}

impl App {
    pub fn new(store: DynamoStore, auth: &AuthConfig) -> Self {
        Self {
            auth: Authenticator::new(store.clone(), auth),
            guard: Guard::new(store.clone()),
            issuer: IssuerPolicy::from_config(auth.issuer.as_deref()),
            store,
        }
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
        ["public", "v1", "integrations"] => Some("GET, POST"),
        ["public", "v1", "integrations", _] => Some("GET, PATCH, DELETE"),
        ["public", "v1", "integrations", _, "test"] => Some("POST"),
        _ => None,
    }
}

async fn route(app: &App, info: &RequestInfo, req: &Request) -> Result<Response<Body>, ApiError> {
    let authorize = |scope| async move {
        app.auth.authenticate(header(req, "authorization"), info.domain.as_deref(), scope).await
    };
    match (info.method.as_str(), info.route().as_slice()) {
        ("POST", ["public", "v1", "integrations"]) => {
            create(app, info, &authorize(Scope::IntegrationsWrite).await?, req).await
        }
        ("GET", ["public", "v1", "integrations"]) => {
            list(app, info, &authorize(Scope::IntegrationsRead).await?).await
        }
        ("GET", ["public", "v1", "integrations", id]) => {
            let p = authorize(Scope::IntegrationsRead).await?;
            let rec = find(app, &p, id).await?;
            Ok(json_response(200, &view(app, info, &rec, None)))
        }
        ("PATCH", ["public", "v1", "integrations", id]) => {
            patch(app, info, &authorize(Scope::IntegrationsWrite).await?, id, req).await
        }
        ("DELETE", ["public", "v1", "integrations", id]) => {
            delete(app, &authorize(Scope::IntegrationsWrite).await?, id).await
        }
        ("POST", ["public", "v1", "integrations", id, "test"]) => {
            let p = authorize(Scope::IntegrationsRead).await?;
            test(app, &p, id, req).await
        }
        (m, path) => Err(ApiError::not_served(m, &info.segments, allow(path))),
    }
}

fn validation_failed(details: Vec<shared::http::ErrorDetail>) -> ApiError {
    ApiError::Invalid {
        code: "validation_failed",
        message: "the integration definition is invalid".into(),
        details,
    }
}

fn write_error(e: IntegrationWriteError) -> ApiError {
    match e {
        IntegrationWriteError::AttributeLimit => ApiError::Conflict {
            code: "attribute_limit_exceeded",
            message: "this change would take the account past its attribute limit (attributes of all integrations count)".into(),
        },
        IntegrationWriteError::Conflict => ApiError::Conflict {
            code: "concurrent_modification",
            message: "the integration was changed by another request; retry".into(),
        },
        IntegrationWriteError::Store(e) => e.into(),
    }
}

fn view(app: &App, info: &RequestInfo, rec: &IntegrationRecord, token: Option<&str>) -> Value {
    let issuer = app.issuer.resolve(info.domain.as_deref()).unwrap_or_default();
    let mut v = json!({
        "integrationId": rec.integration_id,
        "name": rec.definition.name,
        "userIdentifierProperty": rec.definition.user_identifier.as_str(),
        "properties": rec.definition.property_dtos(),
        "endpoint": format!("{issuer}/public/v1/user/data"),
        "createdAt": rfc3339(rec.created_at),
        "updatedAt": rfc3339(rec.updated_at),
    });
    if let Some(t) = token {
        v["token"] = json!(t);
    }
    v
}

fn rfc3339(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

async fn find(app: &App, p: &Principal, id: &str) -> Result<IntegrationRecord, ApiError> {
    // Ids are UUIDs; anything else cannot exist, and costs no read.
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(ApiError::NotFound("integration not found".into()));
    }
    app.store
        .get_integration(&p.account, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("integration not found".into()))
}

async fn create(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let body: Value = json_body(req, MAX_DEFINITION_BYTES)?;
    let definition = Definition::from_json(&body).map_err(validation_failed)?;
    let attribute_types = definition.merge_types(&BTreeMap::new()).map_err(validation_failed)?;
    let token = shared::domain::secret::new_integration_token();
    let now = shared::now_epoch();
    let rec = IntegrationRecord {
        integration_id: uuid::Uuid::new_v4().to_string(),
        account: p.account.clone(),
        definition,
        attribute_types,
        token_hash: SecretHash::of_str(&token).to_hex(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    app.store.create_integration(&rec).await.map_err(write_error)?;
    tracing::info!(request_id = %info.request_id, account = %p.account, integration_id = %rec.integration_id, "integration created");
    let mut resp = json_response(201, &view(app, info, &rec, Some(&token)));
    let location = format!("/public/v1/integrations/{}", rec.integration_id);
    resp.headers_mut().insert("location", location.parse().expect("ascii"));
    Ok(resp)
}

async fn list(app: &App, info: &RequestInfo, p: &Principal) -> Result<Response<Body>, ApiError> {
    let mut all = app.store.list_integrations(&p.account).await?;
    // The implicit MoEngage integration is not managed here (its id is no UUID: 404 by id).
    all.retain(|r| !shared::domain::moengage::is_implicit_integration(&r.integration_id));
    all.sort_by_key(|r| (r.created_at, r.integration_id.clone()));
    let items: Vec<Value> = all.iter().map(|r| view(app, info, r, None)).collect();
    Ok(json_response(200, &json!({ "integrations": items })))
}

async fn patch(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    id: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let body: Value = json_body(req, MAX_DEFINITION_BYTES)?;
    for _ in 0..EDIT_ATTEMPTS {
        let old = find(app, p, id).await?;
        let definition = old.definition.patched(&body).map_err(validation_failed)?;
        let attribute_types = definition.merge_types(&old.attribute_types).map_err(validation_failed)?;
        let new = IntegrationRecord {
            definition,
            attribute_types,
            version: old.version + 1,
            updated_at: shared::now_epoch(),
            ..old.clone()
        };
        match app.store.update_integration(&old, &new).await {
            Ok(()) => return Ok(json_response(200, &view(app, info, &new, None))),
            Err(IntegrationWriteError::Conflict) => continue,
            Err(e) => return Err(write_error(e)),
        }
    }
    Err(write_error(IntegrationWriteError::Conflict))
}

async fn delete(app: &App, p: &Principal, id: &str) -> Result<Response<Body>, ApiError> {
    let deleted = || Response::builder().status(204).body(Body::Empty).expect("valid response");
    let mut rec = find(app, p, id).await?;
    for _ in 0..EDIT_ATTEMPTS {
        match app.store.delete_integration(&rec).await {
            Ok(()) => return Ok(deleted()),
            Err(IntegrationWriteError::Conflict) => match find(app, p, id).await {
                Ok(again) => rec = again,
                // Gone since this call found it: deleted by an attempt of this call whose answer
                // was lost (the SDK's retry then fails the version condition), or by a concurrent
                // delete. Either way it is deleted, as asked.
                Err(ApiError::NotFound(_)) => return Ok(deleted()),
                Err(e) => return Err(e),
            },
            Err(e) => return Err(write_error(e)),
        }
    }
    Err(write_error(IntegrationWriteError::Conflict))
}

/// Judges a sample user-data body exactly as `POST /public/v1/user/data` would, and reports
/// what would be stored; writes nothing.
async fn test(app: &App, p: &Principal, id: &str, req: &Request) -> Result<Response<Body>, ApiError> {
    let envelope: Envelope = json_body(req, user_data::MAX_BODY_BYTES)?;
    let rec = find(app, p, id).await?;
    let mut request = match envelope.into_request(false) {
        Ok(r) => r,
        Err(errors) => return Ok(json_response(200, &test_report(None, &errors, &[]))),
    };
    let def = &rec.definition;
    let body = match user_data::validate(def, &mut request.data) {
        Err(errors) => test_report(None, &errors, &[]),
        Ok(v) => {
            let users: Vec<Value> = v
                .users
                .iter()
                .map(|u| {
                    let set: serde_json::Map<String, Value> = u
                        .values
                        .iter()
                        .map(|(i, val)| (def.properties[*i].name.clone(), val.to_json()))
                        .collect();
                    let unset: Vec<&str> = match v.mode {
                        Mode::Merge => Vec::new(),
                        Mode::Replace => def
                            .properties
                            .iter()
                            .map(|p| p.name.as_str())
                            .filter(|name| !set.contains_key(*name))
                            .collect(),
                    };
                    json!({ "userId": u.user_id.as_str(), "set": set, "unset": unset })
                })
                .collect();
            test_report(Some((v.mode, users)), &[], &v.ignored_fields)
        }
    };
    Ok(json_response(200, &body))
}

fn test_report(
    ok: Option<(Mode, Vec<Value>)>,
    errors: &[shared::http::ErrorDetail],
    ignored: &[String],
) -> Value {
    let (mode, users) = match ok {
        Some((m, u)) => (Value::String(m.as_str().into()), u),
        None => (Value::Null, Vec::new()),
    };
    json!({
        "valid": errors.is_empty(),
        "mode": mode,
        "users": users,
        "errors": errors,
        "ignoredFields": ignored,
    })
}
