//! The integrations function: create, list, get, patch, delete and test integrations.
//!
//! `POST /public/v1/integrations`, `GET /public/v1/integrations`,
//! `GET|PATCH|DELETE /public/v1/integrations/{integrationId}`,
//! `POST /public/v1/integrations/{integrationId}/test`.

use std::collections::BTreeMap;

use lambda_http::Request;
use serde_json::Value;

use auth::{IssuerPolicy, Principal, SecretHash};
use domain::clock::rfc3339_of_epoch_secs;
use domain::integration::{self, AttrType, Definition};
use domain::user_data::{self, Envelope, Mode};
use domain::{IntegrationId, Problem, Scope, Timestamp};
use edge::api;
use edge::front::{Call, Env, Route, Service};
use edge::http::request::json_body;
use edge::http::{ApiError, ErrorCode, Reply, RequestInfo};
use edge::lookup::account_integration;
use store::dynamo::DynamoStore;
use store::integrations::{IntegrationRecord, IntegrationWriteError};

/// Definitions are small; anything larger is not one.
const MAX_DEFINITION_BYTES: usize = 256 * 1024;
/// Optimistic-concurrency retries of a patch or delete that raced another edit.
const EDIT_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    List,
    Get,
    Patch,
    Delete,
    Test,
}

pub struct App {
    store: DynamoStore,
    issuer: IssuerPolicy,
}

impl App {
    pub fn new(env: &Env) -> Self {
        Self { store: env.store.clone(), issuer: IssuerPolicy::from_config(env.auth.issuer.as_deref()) }
    }
}

const INTEGRATIONS: &str = "/public/v1/integrations";
const INTEGRATION: &str = "/public/v1/integrations/{integrationId}";

impl Service for App {
    type Op = Op;
    const ROUTES: &'static [Route<Op>] = &[
        Route::bearer("POST", INTEGRATIONS, Op::Create, Scope::IntegrationsWrite),
        Route::bearer("GET", INTEGRATIONS, Op::List, Scope::IntegrationsRead),
        Route::bearer("GET", INTEGRATION, Op::Get, Scope::IntegrationsRead),
        Route::bearer("PATCH", INTEGRATION, Op::Patch, Scope::IntegrationsWrite),
        Route::bearer("DELETE", INTEGRATION, Op::Delete, Scope::IntegrationsWrite),
        // A dry run, so not a write: no Idempotency-Key record keeps its answer, which holds
        // users' values that must not outlive an erase.
        Route {
            write: false,
            ..Route::bearer(
                "POST",
                "/public/v1/integrations/{integrationId}/test",
                Op::Test,
                Scope::IntegrationsRead,
            )
        },
    ];

    async fn handle(&self, op: Op, call: Call<'_>) -> Result<Reply, ApiError> {
        let p = call.principal()?;
        let (info, req, id) = (call.info, call.req, call.param("integrationId"));
        match op {
            Op::Create => create(self, info, p, req).await,
            Op::List => list(self, info, p).await,
            Op::Get => Ok(Reply::json(200, &view(self, info, &find(self, p, id).await?, None))),
            Op::Patch => patch(self, info, p, id, req).await,
            Op::Delete => delete(self, p, id).await,
            Op::Test => test(self, p, id, req).await,
        }
    }
}

fn validation_failed(details: Vec<Problem>) -> ApiError {
    ApiError::validation("the integration definition is invalid", details)
}

fn write_error(e: IntegrationWriteError) -> ApiError {
    match e {
        IntegrationWriteError::AttributeLimit => ApiError::Conflict {
            code: ErrorCode::AttributeLimitExceeded,
            message: "this change would take the account past its attribute limit (attributes of all integrations count)".into(),
        },
        IntegrationWriteError::IntegrationLimit => ApiError::Conflict {
            code: ErrorCode::IntegrationLimitExceeded,
            message: format!(
                "the account has {} integrations, the most it may have; delete one first",
                integration::MAX_INTEGRATIONS_PER_ACCOUNT
            ),
        },
        IntegrationWriteError::Conflict => ApiError::Conflict {
            code: ErrorCode::ConcurrentModification,
            message: "the integration was changed by another request; retry".into(),
        },
        IntegrationWriteError::Store(e) => e.into(),
    }
}

fn view<'a>(
    app: &App,
    info: &RequestInfo,
    rec: &'a IntegrationRecord,
    token: Option<&'a str>,
) -> api::Integration<'a> {
    let issuer = app.issuer.resolve(info.domain.as_deref()).unwrap_or_default();
    api::Integration {
        integration_id: &rec.integration_id,
        name: &rec.definition.name,
        user_identifier_property: rec.definition.user_identifier.as_str(),
        timestamp_property: rec.definition.timestamp.as_ref().map(|t| t.as_str()),
        properties: rec.definition.properties.iter().map(api::Property::from).collect(),
        endpoint: format!("{issuer}/public/v1/user/data"),
        created_at: rfc3339_of_epoch_secs(rec.created_at),
        updated_at: rfc3339_of_epoch_secs(rec.updated_at),
        token,
    }
}

async fn find(app: &App, p: &Principal, id: &str) -> Result<IntegrationRecord, ApiError> {
    account_integration(&app.store, &p.account, id).await
}

async fn create(app: &App, info: &RequestInfo, p: &Principal, req: &Request) -> Result<Reply, ApiError> {
    let body: Value = json_body(req, MAX_DEFINITION_BYTES)?;
    let definition = Definition::from_json(&body).map_err(validation_failed)?;
    let attribute_types = definition.merge_types(&BTreeMap::new()).map_err(validation_failed)?;
    let token = auth::secret::new_integration_token();
    let now = Timestamp::now().epoch_secs();
    let rec = IntegrationRecord {
        integration_id: IntegrationId::generate().to_string(),
        account: p.account.clone(),
        definition,
        attribute_types,
        token_hash: SecretHash::of_str(&token).to_hex(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    app.store.create_integration(&rec).await.map_err(write_error)?;
    // Erased users stay suppressed in the new integration too. No write can use it before its
    // token is answered, after this; an erase that listed the integrations before the create
    // wrote its index entries before it, so this strong read sees them.
    app.store.seed_tombstones(&p.account, &rec.integration_id, now).await?;
    tracing::info!(request_id = %info.request_id, account = %p.account, integration_id = %rec.integration_id, "integration created");
    let location = format!("/public/v1/integrations/{}", rec.integration_id);
    Ok(Reply::json(201, &view(app, info, &rec, Some(&token))).header("location", &location))
}

async fn list(app: &App, info: &RequestInfo, p: &Principal) -> Result<Reply, ApiError> {
    let mut all = app.store.list_integrations(&p.account).await?;
    // The implicit MoEngage integration is not managed here (its id is no UUID: 404 by id).
    all.retain(|r| !domain::moengage::is_implicit_integration(&r.integration_id));
    all.sort_by_key(|r| (r.created_at, r.integration_id.clone()));
    Ok(Reply::json(
        200,
        &api::IntegrationList { integrations: all.iter().map(|r| view(app, info, r, None)).collect() },
    ))
}

async fn patch(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    id: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let body: Value = json_body(req, MAX_DEFINITION_BYTES)?;
    for _ in 0..EDIT_ATTEMPTS {
        let old = find(app, p, id).await?;
        let definition = old.definition.patched(&body).map_err(validation_failed)?;
        // Names new to the definition may be retired ones: their recorded types judge them.
        let fresh: Vec<&str> = definition
            .properties
            .iter()
            .map(|p| p.name.as_str())
            .filter(|n| !old.attribute_types.contains_key(*n))
            .collect();
        let mut known = old.attribute_types.clone();
        known.extend(app.store.retired_types(&old, &fresh).await?);
        definition.merge_types(&known).map_err(validation_failed)?;
        // Names leaving the definition (and, for an older item, the whole registry
        // it holds) are recorded apart, so the integration's own item holds only its definition.
        let retired: BTreeMap<String, AttrType> = old
            .attribute_types
            .iter()
            .filter(|(n, _)| !definition.properties.iter().any(|p| &p.name == *n))
            .map(|(n, t)| (n.clone(), *t))
            .collect();
        app.store.retire_names(&old, &retired).await?;
        let attribute_types = definition.properties.iter().map(|p| (p.name.clone(), p.attr_type)).collect();
        let new = IntegrationRecord {
            definition,
            attribute_types,
            version: old.version + 1,
            updated_at: Timestamp::now().epoch_secs(),
            ..old.clone()
        };
        match app.store.update_integration(&old, &new).await {
            Ok(()) => {
                settle_caches().await;
                return Ok(Reply::json(200, &view(app, info, &new, None)));
            }
            Err(IntegrationWriteError::Conflict) => continue,
            Err(e) => return Err(write_error(e)),
        }
    }
    Err(write_error(IntegrationWriteError::Conflict))
}

/// Waits until no warm user-data instance still judges calls by the definition this call
/// replaced: an answer to `PATCH` or `DELETE` means "in effect for every call sent from now"
/// (the user-data function's `TokenCache`).
async fn settle_caches() {
    tokio::time::sleep(store::integrations::DEFINITION_STALENESS).await;
}

async fn delete(app: &App, p: &Principal, id: &str) -> Result<Reply, ApiError> {
    let deleted = || async {
        settle_caches().await;
        Ok(Reply::no_content())
    };
    let mut rec = find(app, p, id).await?;
    for _ in 0..EDIT_ATTEMPTS {
        match app.store.delete_integration(&rec).await {
            Ok(()) => return deleted().await,
            Err(IntegrationWriteError::Conflict) => match find(app, p, id).await {
                Ok(again) => rec = again,
                // Gone since this call found it: deleted by an attempt of this call whose answer
                // was lost (the SDK's retry then fails the version condition), or by a concurrent
                // delete. Either way it is deleted, as asked.
                Err(ApiError::NotFound(_)) => return deleted().await,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(write_error(e)),
        }
    }
    Err(write_error(IntegrationWriteError::Conflict))
}

/// Judges a sample user-data body exactly as `POST /public/v1/user/data` would, and reports
/// what would be stored; writes nothing.
async fn test(app: &App, p: &Principal, id: &str, req: &Request) -> Result<Reply, ApiError> {
    let envelope: Envelope = json_body(req, user_data::MAX_BODY_BYTES)?;
    let rec = find(app, p, id).await?;
    let refused = |errors: &[Problem]| {
        Reply::json(
            200,
            &api::TestReport { valid: false, mode: None, users: Vec::new(), errors, ignored_fields: &[] },
        )
    };
    let mut request = match envelope.into_request(false) {
        Ok(r) => r,
        Err(errors) => return Ok(refused(&errors)),
    };
    let def = &rec.definition;
    let v = match user_data::validate(def, &mut request.data) {
        Err(errors) => return Ok(refused(&errors)),
        Ok(v) => v,
    };
    let users = v
        .users
        .iter()
        .map(|u| {
            let set: std::collections::BTreeMap<String, user_data::AttrValue> =
                u.named_values(def).map(|(name, val)| (name.to_string(), val.clone())).collect();
            let unset = match v.mode {
                Mode::Merge => Vec::new(),
                Mode::Replace => def
                    .properties
                    .iter()
                    .map(|p| p.name.as_str())
                    .filter(|name| !set.contains_key(*name))
                    .collect(),
            };
            api::TestUser { user_id: u.user_id.as_str(), set, unset }
        })
        .collect();
    let report = api::TestReport {
        valid: true,
        mode: Some(v.mode.as_str()),
        users,
        errors: &[],
        ignored_fields: &v.ignored_fields,
    };
    Ok(Reply::json(200, &report))
}
