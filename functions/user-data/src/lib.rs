//! The user-data function: `POST /public/v1/user/data` (WalkMe End User Update API),
//! `GET /public/v1/user/{userId}` (attributes and segment memberships),
//! `DELETE /public/v1/user/{userId}` (both, everywhere), `POST /public/v1/user/erase` (up to
//! 1,000 users), `DELETE /public/v1/user/suppression/{userId}` and
//! `POST /v1/customer/{workspace_id}` (MoEngage Track User API, in [`moengage`]). An erase
//! suppresses the users for the account's window (`store::suppression`).

mod moengage;
mod token_cache;

use std::collections::HashMap;

use serde_json::{Map, json};

use auth::{Principal, SecretHash};
use domain::user_data::{self, Envelope, Mode, UserId};
use domain::{Problem, Scope, Timestamp};
use edge::api;
use edge::front::{Access, Call, Dialect, Env, Route, Service};
use edge::http::request::json_body;
use edge::http::{ApiError, Reply, RequestInfo};
use protect::usage::UsageReport;
use store::dynamo::DynamoStore;
use store::end_users::UserWrite;
use store::integrations::DefinitionsCache;
use store::suppression::ErasureRecord;
use token_cache::TokenCache;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Update,
    Read,
    Erase,
    EraseBatch,
    Lift,
    Track,
}

/// Most ids per `POST /public/v1/user/erase`.
pub const MAX_ERASE_IDS: usize = 1_000;
/// 1,000 ids of up to 100 characters, each `\u`-escaped at worst, fit.
const MAX_ERASE_BODY_BYTES: usize = 1024 * 1024;

pub struct App {
    store: DynamoStore,
    moengage: moengage::State,
    /// Integrations by token, re-read at most once a second per instance.
    tokens: TokenCache,
    /// The account's integrations for the read, re-read at most once a second per instance.
    definitions: DefinitionsCache,
}

impl App {
    pub fn new(env: &Env) -> Self {
        Self {
            store: env.store.clone(),
            moengage: moengage::State::default(),
            tokens: TokenCache::default(),
            definitions: DefinitionsCache::default(),
        }
    }
}

impl Service for App {
    type Op = Op;
    const ROUTES: &'static [Route<Op>] = &[
        Route::bearer("POST", "/public/v1/user/data", Op::Update, Scope::EndUserUpdateWrite),
        Route::bearer("GET", "/public/v1/user/{userId}", Op::Read, Scope::EndUsersRead),
        Route::bearer("DELETE", "/public/v1/user/{userId}", Op::Erase, Scope::EndUsersDelete),
        Route::bearer("POST", "/public/v1/user/erase", Op::EraseBatch, Scope::EndUsersDelete),
        Route::bearer("DELETE", "/public/v1/user/suppression/{userId}", Op::Lift, Scope::EndUsersDelete),
        Route {
            access: Access::WorkspaceBasic(Scope::EndUserUpdateWrite),
            dialect: Dialect::MoEngage,
            ..Route::bearer("POST", "/v1/customer/{workspace_id}", Op::Track, Scope::EndUserUpdateWrite)
        },
    ];

    async fn handle(&self, op: Op, call: Call<'_>) -> Result<Reply, ApiError> {
        let p = call.principal()?;
        match op {
            Op::Update => update(self, call.info, p, call.req).await,
            Op::Read => read(self, p, call.param("userId")).await,
            Op::Erase => {
                let uid = user_id(call.param("userId"))?;
                erase(self, call.info, p, &[uid]).await?;
                Ok(Reply::no_content().usage(UsageReport { users_updated: 1, segment_ids: 0 }))
            }
            Op::EraseBatch => erase_batch(self, call.info, p, call.req).await,
            Op::Lift => lift(self, call.info, p, call.param("userId")).await,
            Op::Track => moengage::track(self, call.info, call.req, &p.account).await,
        }
    }
}

async fn update(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    req: &lambda_http::Request,
) -> Result<Reply, ApiError> {
    let envelope: Envelope = json_body(req, user_data::MAX_BODY_BYTES)?;
    let mut request =
        envelope.into_request(true).map_err(|d| ApiError::validation("the request body is invalid", d))?;
    let integration = app
        .tokens
        .get(&app.store, &SecretHash::of_str(&request.token).to_hex())
        .await?
        .filter(|i| i.account == p.account)
        .ok_or_else(|| ApiError::NotFound("no integration has this token".into()))?;
    let def = &integration.definition;
    let validated = user_data::validate(def, &mut request.data)
        .map_err(|d| ApiError::validation("some users are invalid; nothing was written", d))?;

    let replace = validated.mode == Mode::Replace;
    let writes: Vec<UserWrite> = validated.users.iter().map(|u| UserWrite::of(u, def, replace)).collect();
    let now = Timestamp::now().rfc3339();
    let id = &integration.integration_id;
    let mut refused: Vec<UserId> = Vec::new();
    let mut suppressed: Vec<UserId> = Vec::new();
    let (skipped, stale): (Vec<UserId>, Vec<(UserId, Vec<String>)>) = match validated.mode {
        Mode::Merge => {
            let w = app
                .store
                .update_user(&p.account, id, &writes[0], request.update_existing_only, &now, None)
                .await?;
            let user = || writes[0].user_id.clone();
            if w.overflow {
                return Err(overflow(&[user()]));
            }
            if w.suppressed {
                suppressed.push(user());
            }
            let stale = if w.stale.is_empty() { Vec::new() } else { vec![(user(), w.stale)] };
            (if w.written || w.suppressed { Vec::new() } else { vec![user()] }, stale)
        }
        Mode::Replace => {
            let r =
                app.store.replace_users(&p.account, id, &writes, request.update_existing_only, &now).await?;
            // Nothing written: a 400. Some users written: the others' increments are applied
            // and must not be retried, so the answer is a 200 that names who was refused.
            if !r.overflow.is_empty() && r.overflow.len() == writes.len() {
                return Err(overflow(&r.overflow));
            }
            refused = r.overflow;
            suppressed = r.suppressed;
            (r.skipped, r.stale)
        }
    };
    let accepted = writes.len() - skipped.len() - refused.len() - suppressed.len();
    tracing::info!(
        request_id = %info.request_id, account = %p.account, integration_id = %id,
        mode = validated.mode.as_str(), accepted, skipped = skipped.len(), stale = stale.len(),
        suppressed = suppressed.len(), "user data written"
    );
    let body = api::UserDataResponse {
        accepted,
        mode: validated.mode.as_str(),
        ignored_fields: &validated.ignored_fields,
        skipped: skipped.iter().map(UserId::as_str).collect(),
        suppressed: suppressed.iter().map(UserId::as_str).collect(),
        stale: stale
            .iter()
            .map(|(u, names)| api::StaleUser { user_id: u.as_str(), properties: names.clone() })
            .collect(),
        refused: refused
            .iter()
            .map(|u| api::RefusedUser { user_id: u.as_str(), reason: OVERFLOW_REASON })
            .collect(),
    };
    Ok(Reply::json(200, &body).usage(UsageReport { users_updated: accepted as i64, segment_ids: 0 }))
}

const OVERFLOW_REASON: &str = "an increment's result would pass 38 significant digits or the Number range";

/// Increments whose result DynamoDB refused, when no user of the call was written.
fn overflow(users: &[UserId]) -> ApiError {
    let details = users
        .iter()
        .map(|u| Problem::at("/$increment", format!("user '{}': {OVERFLOW_REASON}", u.as_str())))
        .collect();
    ApiError::validation("an increment's result cannot be stored; those users were not written", details)
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw)
        .map_err(|reason| ApiError::validation("the user id is invalid", vec![Problem::at("userId", reason)]))
}

/// The end-user object: every attribute grouped by integration (only integrations and
/// properties that still exist, as of at most a second ago: the definitions are cached per
/// instance), and every segment the user belongs to.
async fn read(app: &App, p: &Principal, raw_id: &str) -> Result<Reply, ApiError> {
    let uid = user_id(raw_id)?;
    let (stored, integrations, segments) = tokio::join!(
        app.store.read_user(&p.account, uid.as_str()),
        app.definitions.get(&app.store, &p.account),
        app.store.user_segments(&p.account, uid.as_str())
    );
    let (stored, mut integrations, segments) = (stored?, integrations?, segments?);
    // A name the cached definitions do not know was added since they were read (MoEngage's
    // integration grows on first sight, without waiting out the cache): read them afresh.
    let known = |s: &store::end_users::StoredAttributes| {
        integrations
            .iter()
            .find(|i| i.integration_id == s.integration_id)
            .is_some_and(|i| s.values.keys().all(|n| i.definition.properties.iter().any(|p| &p.name == n)))
    };
    if !stored.iter().all(known) {
        integrations = app.definitions.refresh(&app.store, &p.account).await?;
    }
    let by_id: HashMap<&str, _> = integrations.iter().map(|i| (i.integration_id.as_str(), i)).collect();
    let mut groups = Vec::new();
    for s in &stored {
        let Some(integration) = by_id.get(s.integration_id.as_str()) else {
            continue;
        };
        let mut attributes = std::collections::BTreeMap::new();
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
        groups.push(api::EndUserIntegration {
            integration_id: &integration.integration_id,
            name: &integration.definition.name,
            attributes,
            types,
            updated_at: &s.updated_at,
            client_ip: s.client_ip.as_deref(),
        });
    }
    if groups.is_empty() && segments.is_empty() {
        return Err(ApiError::NotFound("no data for this user".into()));
    }
    let segments = segments
        .iter()
        .map(|h| api::SegmentMembership {
            system_guid: h.system.to_string(),
            segment_guid: h.segment.to_string(),
            id: h.external_id.as_deref(),
            name: &h.name,
        })
        .collect();
    Ok(Reply::json(200, &api::EndUser { user_id: uid.as_str(), integrations: groups, segments }))
}

/// Erases `users` everywhere, suppresses them for the account's window, and leaves the
/// call's audit record (counts only). Synchronous: 1,000 users fit well inside API Gateway's
/// 30 s (docs/DECISIONS.md, "Erasure that sticks").
async fn erase(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    users: &[UserId],
) -> Result<api::EraseResponse, ApiError> {
    let now = Timestamp::now();
    let days = app.store.suppression_days(&p.account).await?;
    let until = now.epoch_secs().saturating_add(days.saturating_mul(86_400));
    let tally = app.store.erase_users(&p.account, users, until, now.epoch_ms()).await?;
    let record = ErasureRecord {
        at_ms: now.epoch_ms(),
        client_id: p.client_id.clone(),
        request_id: info.request_id.clone(),
        users: tally.users as i64,
        items: tally.items as i64,
        memberships: tally.memberships as i64,
        suppressed_until: until,
    };
    app.store.record_erasure(&p.account, &record).await?;
    tracing::info!(request_id = %info.request_id, account = %p.account, users = tally.users,
        items = tally.items, memberships = tally.memberships, "users erased");
    Ok(api::EraseResponse {
        erased: tally.users,
        items: tally.items,
        memberships: tally.memberships,
        suppressed_until: domain::clock::rfc3339_millis_of_epoch_ms(until.saturating_mul(1000)),
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EraseBody {
    user_ids: Vec<serde_json::Value>,
}

async fn erase_batch(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    req: &lambda_http::Request,
) -> Result<Reply, ApiError> {
    let body: EraseBody = json_body(req, MAX_ERASE_BODY_BYTES)?;
    if body.user_ids.is_empty() || body.user_ids.len() > MAX_ERASE_IDS {
        return Err(ApiError::validation(
            "the body is invalid",
            vec![Problem::at("userIds", format!("1 to {MAX_ERASE_IDS} user ids"))],
        ));
    }
    let mut users = Vec::with_capacity(body.user_ids.len());
    let mut problems = Vec::new();
    for (i, v) in body.user_ids.iter().enumerate() {
        match UserId::from_json(v) {
            Ok(u) => users.push(u),
            Err(reason) => problems.push(Problem::at(format!("userIds[{i}]"), reason)),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation("some user ids are invalid; nothing was erased", problems));
    }
    let out = erase(app, info, p, &users).await?;
    let usage = UsageReport { users_updated: out.erased as i64, segment_ids: 0 };
    Ok(Reply::json(200, &out).usage(usage))
}

/// Lifts the user's suppression: writes are taken again at once.
async fn lift(app: &App, info: &RequestInfo, p: &Principal, raw_id: &str) -> Result<Reply, ApiError> {
    let uid = user_id(raw_id)?;
    if !app.store.lift_suppression(&p.account, uid.as_str()).await? {
        return Err(ApiError::NotFound("this user is not suppressed".into()));
    }
    tracing::info!(request_id = %info.request_id, account = %p.account, "suppression lifted");
    Ok(Reply::no_content())
}
