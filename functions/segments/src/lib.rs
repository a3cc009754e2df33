//! The segments function (WalkMe Segments API): every route under
//! `/public/v1/user/system/{systemGuid}/segment`, and the rule segments (in [`rules`]) under
//! `.../rule-segment`, `.../user/{userId}/segments` and `.../segments/evaluate`. Storage and
//! its cost per call are in `store::segments` and `store::rule_segments`; request rules in
//! `domain::segment` and `domain::rule_segment`.

pub mod rules;

use lambda_http::Request;
use serde_json::Value;

use auth::Principal;
use domain::clock::rfc3339_millis_of_epoch_ms;
use domain::segment::{CreateSegment, UpdateSegment};
use domain::{Scope, SegmentGuid, SystemGuid, Timestamp};
use edge::api;
use edge::front::{Call, Env, Route, Service};
use edge::http::request::{json_body, page_params};
use edge::http::{ApiError, ErrorCode, Reply, RequestInfo};
use protect::usage::UsageReport;
use store::dynamo::DynamoStore;
use store::segments::{
    MemberCursor, NewSegment, SegmentCaps, SegmentError, SegmentHead, SegmentView, decode_list_cursor,
};

/// 25,000 ids of up to 100 characters, each possibly `\u`-escaped, fit; API Gateway itself
/// stops at 10 MB.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
pub const DEFAULT_PAGE: usize = 1_000;
pub const MAX_PAGE: usize = 10_000;
/// Segments per page of the list: each costs ≤ 10 read units (its head and its count).
pub const DEFAULT_LIST_PAGE: usize = 100;
pub const MAX_LIST_PAGE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    List,
    Get,
    Update,
    Delete,
    Members,
    RuleCreate,
    RuleList,
    RuleGet,
    RuleReplace,
    RuleDelete,
    RuleDryRun,
    UserSegments,
    BatchEvaluate,
}

pub struct App {
    store: DynamoStore,
    caps: SegmentCaps,
    rules: rules::RuleState,
}

impl App {
    /// Caps from `SEGMENTS_PER_SYSTEM` / `SEGMENTS_PER_ACCOUNT` (defaults: [`SegmentCaps`]).
    pub fn new(env: &Env) -> Self {
        let default = SegmentCaps::default();
        let read = |name: &str, d: i64| {
            std::env::var(name).ok().and_then(|v| v.parse::<i64>().ok()).filter(|n| *n > 0).unwrap_or(d)
        };
        let caps = SegmentCaps {
            per_system: read("SEGMENTS_PER_SYSTEM", default.per_system),
            per_account: read("SEGMENTS_PER_ACCOUNT", default.per_account),
        };
        Self::with_caps(env, caps)
    }

    pub fn with_caps(env: &Env, caps: SegmentCaps) -> Self {
        Self { store: env.store.clone(), caps, rules: rules::RuleState::default() }
    }
}

const SEGMENTS: &str = "/public/v1/user/system/{systemGuid}/segment";
const SEGMENT: &str = "/public/v1/user/system/{systemGuid}/segment/{segmentGuid}";
const MEMBERS: &str = "/public/v1/user/system/{systemGuid}/segment/{segmentGuid}/members";
const RULE_SEGMENTS: &str = "/public/v1/user/system/{systemGuid}/rule-segment";
const RULE_SEGMENT: &str = "/public/v1/user/system/{systemGuid}/rule-segment/{segmentGuid}";
const RULE_DRY_RUN: &str = "/public/v1/user/system/{systemGuid}/rule-segment/evaluate";
const USER_SEGMENTS: &str = "/public/v1/user/system/{systemGuid}/user/{userId}/segments";
const BATCH_EVALUATE: &str = "/public/v1/user/system/{systemGuid}/segments/evaluate";

impl Service for App {
    type Op = Op;
    const ROUTES: &'static [Route<Op>] = &[
        Route::bearer("POST", SEGMENTS, Op::Create, Scope::SegmentsWrite),
        Route::bearer("GET", SEGMENTS, Op::List, Scope::SegmentsRead),
        Route::bearer("GET", SEGMENT, Op::Get, Scope::SegmentsRead),
        Route::bearer("PUT", SEGMENT, Op::Update, Scope::SegmentsWrite),
        Route::bearer("DELETE", SEGMENT, Op::Delete, Scope::SegmentsWrite),
        Route::bearer("GET", MEMBERS, Op::Members, Scope::SegmentsRead),
        Route::bearer("POST", RULE_SEGMENTS, Op::RuleCreate, Scope::SegmentsWrite),
        Route::bearer("GET", RULE_SEGMENTS, Op::RuleList, Scope::SegmentsRead),
        Route::bearer("GET", RULE_SEGMENT, Op::RuleGet, Scope::SegmentsRead),
        Route::bearer("PUT", RULE_SEGMENT, Op::RuleReplace, Scope::SegmentsWrite),
        Route::bearer("DELETE", RULE_SEGMENT, Op::RuleDelete, Scope::SegmentsWrite),
        // Evaluations write nothing: no Idempotency-Key record for them.
        Route { write: false, ..Route::bearer("POST", RULE_DRY_RUN, Op::RuleDryRun, Scope::SegmentsRead) },
        Route::bearer("GET", USER_SEGMENTS, Op::UserSegments, Scope::EndUsersRead),
        Route {
            write: false,
            ..Route::bearer("POST", BATCH_EVALUATE, Op::BatchEvaluate, Scope::EndUsersRead)
        },
    ];

    async fn handle(&self, op: Op, call: Call<'_>) -> Result<Reply, ApiError> {
        // `.../rule-segment/evaluate` is the dry run's path, which serves POST only: no rule
        // segment is named `evaluate` (none has a guid that is not a UUID).
        if matches!(op, Op::RuleGet | Op::RuleReplace | Op::RuleDelete)
            && call.param("segmentGuid") == "evaluate"
        {
            return Err(ApiError::MethodNotAllowed {
                method: call.info.method.clone(),
                allow: "POST".into(),
            });
        }
        let p = call.principal()?;
        let (info, req, sys, seg) =
            (call.info, call.req, call.param("systemGuid"), call.param("segmentGuid"));
        // Each route's future on the heap: awaited inline, every arm's state would share this
        // function's frame (over 600 KB in a debug build, which overflowed a test thread's 2 MiB).
        match op {
            Op::Create => Box::pin(create(self, info, p, sys, req)).await,
            Op::List => Box::pin(list(self, p, sys, req)).await,
            Op::Get => {
                let head = find(self, p, sys, seg).await?;
                Ok(Reply::json(200, &body(&self.store.view(head).await?)))
            }
            Op::Update => Box::pin(update(self, info, p, sys, seg, req)).await,
            Op::Delete => {
                let head = find(self, p, sys, seg).await?;
                self.store.delete_segment(&head).await.map_err(segment_error)?;
                tracing::info!(request_id = %info.request_id, account = %p.account, segment = %head.segment,
                    "segment deleted");
                Ok(Reply::no_content())
            }
            Op::Members => Box::pin(members(self, p, sys, seg, req)).await,
            Op::RuleCreate => Box::pin(rules::create(&self.rules, &self.store, info, p, sys, req)).await,
            Op::RuleList => Box::pin(rules::list(&self.rules, &self.store, p, sys, req)).await,
            Op::RuleGet => Box::pin(rules::get(&self.rules, &self.store, p, sys, seg, req)).await,
            Op::RuleReplace => {
                Box::pin(rules::replace(&self.store, info, p, sys, seg, req, &self.rules)).await
            }
            Op::RuleDelete => Box::pin(rules::delete(&self.store, info, p, sys, seg, req)).await,
            Op::RuleDryRun => Box::pin(rules::dry_run(&self.rules, &self.store, p, sys, req)).await,
            Op::UserSegments => {
                Box::pin(rules::user_segments(&self.rules, &self.store, p, sys, call.param("userId"), req))
                    .await
            }
            Op::BatchEvaluate => Box::pin(rules::batch(&self.rules, &self.store, p, sys, req)).await,
        }
    }
}

/// The segment body of every response.
fn body(v: &SegmentView) -> api::Segment<'_> {
    api::Segment {
        segment_guid: v.head.segment.to_string(),
        system_guid: v.head.system.to_string(),
        id: v.head.external_id.as_deref(),
        name: &v.head.name,
        user_count: v.user_count,
        created_at: rfc3339_millis_of_epoch_ms(v.head.created_at),
        updated_at: rfc3339_millis_of_epoch_ms(v.updated_at),
        suppressed: Vec::new(),
    }
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
            code: ErrorCode::ExternalIdTaken,
            message: "a segment of this system already has this external id".into(),
        },
        SegmentError::StaleCursor => ApiError::Conflict {
            code: ErrorCode::CursorStale,
            message: "the segment was overridden since this cursor was issued; list again without a cursor"
                .into(),
        },
        SegmentError::SystemFull(cap) => ApiError::Conflict {
            code: ErrorCode::SegmentLimitExceeded,
            message: format!("this system already holds {cap} segments, the most it may; delete one first"),
        },
        SegmentError::AccountFull(cap) => ApiError::Conflict {
            code: ErrorCode::SegmentLimitExceeded,
            message: format!("this account already holds {cap} segments, the most it may; delete one first"),
        },
        SegmentError::Store(e) => e.into(),
    }
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
) -> Result<Reply, ApiError> {
    let raw: Value = json_body(req, MAX_BODY_BYTES)?;
    let request =
        CreateSegment::from_json(&raw).map_err(|d| ApiError::validation("the segment is invalid", d))?;
    let system = system(app, p, sys).await?;
    let new = NewSegment {
        account: &p.account,
        system,
        external_id: request.external_id.as_deref(),
        name: &request.name,
        user_ids: &request.user_ids,
    };
    let (view, suppressed) = app
        .store
        .create_segment_reporting(&new, app.caps, Timestamp::now().epoch_ms())
        .await
        .map_err(segment_error)?;
    tracing::info!(request_id = %info.request_id, account = %p.account, segment = %view.head.segment,
        users = view.user_count, suppressed = suppressed.len(), "segment created");
    let location = format!("/public/v1/user/system/{system}/segment/{}", view.head.segment);
    Ok(Reply::json(201, &api::Segment { suppressed, ..body(&view) })
        .header("location", &location)
        .usage(UsageReport { users_updated: 0, segment_ids: request.user_ids.len() as i64 }))
}

async fn list(app: &App, p: &Principal, sys: &str, req: &Request) -> Result<Reply, ApiError> {
    let (limit, cursor) = page_params(req, DEFAULT_LIST_PAGE, MAX_LIST_PAGE, decode_list_cursor)?;
    let system = system(app, p, sys).await?;
    let page = app.store.list_segments(&p.account, system, cursor, limit).await?;
    Ok(Reply::json(
        200,
        &api::SegmentList { segments: page.segments.iter().map(body).collect(), next_cursor: page.next },
    ))
}

async fn update(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    sys: &str,
    seg: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let raw: Value = json_body(req, MAX_BODY_BYTES)?;
    let request =
        UpdateSegment::from_json(&raw).map_err(|d| ApiError::validation("the update is invalid", d))?;
    let head = find(app, p, sys, seg).await?;
    let (view, suppressed) = app
        .store
        .change_members_reporting(head, request.action, &request.user_ids, Timestamp::now().epoch_ms())
        .await
        .map_err(segment_error)?;
    tracing::info!(request_id = %info.request_id, account = %p.account, segment = %view.head.segment,
        action = ?request.action, ids = request.user_ids.len(), users = view.user_count,
        suppressed = suppressed.len(), "segment updated");
    Ok(Reply::json(200, &api::Segment { suppressed, ..body(&view) })
        .usage(UsageReport { users_updated: 0, segment_ids: request.user_ids.len() as i64 }))
}

async fn members(app: &App, p: &Principal, sys: &str, seg: &str, req: &Request) -> Result<Reply, ApiError> {
    let (limit, cursor) = page_params(req, DEFAULT_PAGE, MAX_PAGE, MemberCursor::decode)?;
    let head = find(app, p, sys, seg).await?;
    let page = app.store.members(&head, cursor, limit).await.map_err(segment_error)?;
    Ok(Reply::json(
        200,
        &api::SegmentMembers {
            user_ids: &page.user_ids,
            next_cursor: page.next.as_ref().map(MemberCursor::encode),
        },
    ))
}
