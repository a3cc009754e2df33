//! Rule segments (SPEC, "Rule segments"): create, list, get, replace and delete a system's
//! rule segments, the dry run of an unsaved rule, and the segments a user is in now. The
//! engine is `domain::rules`; storage `store::rule_segments`. What an evaluation reads, and
//! why the compiled set is cached per instance, is in docs/DECISIONS.md ("Rule segments:
//! routes").

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lambda_http::{Request, RequestExt};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use auth::Principal;
use domain::clock::rfc3339_millis_of_epoch_ms;
use domain::integration::AttrType;
use domain::rule_segment::{DryRunBody, RuleSegmentBody, Subject, batch_user_ids, typed_attributes};
use domain::rules::{self, Catalog, ConditionExplain, MAX_RULE_SEGMENTS, RuleSet, SegmentOutcome, UserFacts};
use domain::user_data::UserId;
use domain::{AccountId, Problem, SegmentGuid, SystemGuid, Timestamp};
use edge::http::request::{header, json_body, page_params};
use edge::http::{ApiError, ErrorCode, Reply, RequestInfo};
use store::DynamoStore;
use store::integrations::{DefinitionsCache, IntegrationRecord};
use store::rule_segments::{RuleSegmentError, RuleSegmentRecord};
use store::segments::SegmentHead;

/// How old a system's compiled rule set an evaluation may use (the SPEC's "re-read at most
/// once a second").
pub const RULES_STALENESS: Duration = Duration::from_millis(1000);
/// A rule segment body: 50 conditions of ≤ 1,000 values of ≤ 1 KB fit.
pub const MAX_RULE_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_LIST_PAGE: usize = 100;
pub const MAX_LIST_PAGE: usize = 100;
/// Systems an instance keeps compiled before it forgets them all (a bound on memory).
const SYSTEMS_MAX: usize = 256;
/// Users of a batch evaluation read at once.
const BATCH_CONCURRENCY: usize = 16;

/// What one system's evaluations need, read together and compiled once.
pub struct Loaded {
    pub exists: bool,
    pub records: Vec<RuleSegmentRecord>,
    pub catalog: Catalog,
    pub set: RuleSet,
    pub definitions: Arc<Vec<IntegrationRecord>>,
    /// The static segments the catalog knows.
    statics: Vec<SegmentGuid>,
    /// The rule set stamp read before `records` (`DynamoStore::rule_set_stamp`).
    stamp: i64,
}

/// A system's set and when its read was sent.
type LoadedAt = (Arc<Loaded>, Instant);

/// Per warm instance: the account's integrations and each system's compiled rule set.
#[derive(Default)]
pub struct RuleState {
    pub definitions: DefinitionsCache,
    systems: Mutex<HashMap<(AccountId, SystemGuid), LoadedAt>>,
}

impl RuleState {
    /// The system's rule set as of at most [`RULES_STALENESS`] ago (counted from when its read
    /// was sent). Past that, the set's stamp is read (one unit) and the rule segments only
    /// when it moved: a set of 200 large rules costs 83 read units to read again, and every
    /// instance checks once a second (docs/DECISIONS.md "Rule segments: routes").
    pub async fn cached(
        &self,
        store: &DynamoStore,
        account: &AccountId,
        system: SystemGuid,
    ) -> Result<Arc<Loaded>, ApiError> {
        let key = (account.clone(), system);
        let prior = self.systems.lock().expect("not poisoned").get(&key).cloned();
        if let Some((loaded, at)) = &prior
            && at.elapsed() < RULES_STALENESS
        {
            return Ok(loaded.clone());
        }
        let asked = Instant::now();
        let loaded = match prior {
            Some((old, _)) => self.refresh(store, account, system, old).await?,
            None => Arc::new(self.load(store, account, system, false).await?),
        };
        let mut systems = self.systems.lock().expect("not poisoned");
        if systems.len() >= SYSTEMS_MAX {
            systems.clear();
        }
        systems.insert(key, (loaded.clone(), asked));
        Ok(loaded)
    }

    /// `old` checked against the store: the same set when nothing it was built from moved,
    /// recompiled from its records when only the system, its static segments or the
    /// definitions did, read again when the rule set's stamp moved.
    async fn refresh(
        &self,
        store: &DynamoStore,
        account: &AccountId,
        system: SystemGuid,
        old: Arc<Loaded>,
    ) -> Result<Arc<Loaded>, ApiError> {
        let (stamp, exists, statics, definitions) = tokio::join!(
            store.rule_set_stamp(account, system),
            store.system_exists(account, system),
            store.static_segment_guids(account, system),
            self.definitions.get(store, account)
        );
        let (stamp, exists, statics, definitions) = (stamp?, exists?, statics?, definitions?);
        if stamp != old.stamp {
            return Ok(Arc::new(self.load(store, account, system, false).await?));
        }
        let same_definitions = Arc::ptr_eq(&definitions, &old.definitions) || definitions == old.definitions;
        if exists == old.exists && statics == old.statics && same_definitions {
            return Ok(old);
        }
        Ok(Arc::new(assemble(exists, statics, old.records.clone(), definitions, stamp)))
    }

    /// Reads the system afresh (`fresh`: the definitions too, as a save judges by them).
    pub async fn load(
        &self,
        store: &DynamoStore,
        account: &AccountId,
        system: SystemGuid,
        fresh: bool,
    ) -> Result<Loaded, ApiError> {
        let definitions = async {
            if fresh {
                Ok(Arc::new(store.list_integrations(account).await?))
            } else {
                self.definitions.get(store, account).await
            }
        };
        // The stamp strictly before the set: a write between them is seen as a change later,
        // never missed.
        let stamped = async {
            let stamp = store.rule_set_stamp(account, system).await?;
            Ok::<_, store::StoreError>((stamp, store.rule_segments(account, system).await?))
        };
        let (exists, statics, stamped, definitions) = tokio::join!(
            store.system_exists(account, system),
            store.static_segment_guids(account, system),
            stamped,
            definitions
        );
        let (exists, statics, (stamp, records), definitions) = (exists?, statics?, stamped?, definitions?);
        Ok(assemble(exists, statics, records, definitions, stamp))
    }
}

/// Compiles what a system's evaluations need from what was read.
fn assemble(
    exists: bool,
    statics: Vec<SegmentGuid>,
    records: Vec<RuleSegmentRecord>,
    definitions: Arc<Vec<IntegrationRecord>>,
    stamp: i64,
) -> Loaded {
    let mut catalog = Catalog::new();
    for i in definitions.iter() {
        catalog.add_integration(i.integration_id.clone(), &i.definition);
    }
    for g in &statics {
        catalog.add_static_segment(*g);
    }
    for r in &records {
        match stored_rule(r) {
            Some((rule, tz)) => {
                catalog.add_rule_segment(r.segment, rule, tz);
            }
            None => tracing::error!(segment = %r.segment, "a stored rule no longer parses; skipped"),
        }
    }
    let set = RuleSet::compile(&catalog);
    Loaded { exists, records, catalog, set, definitions, statics, stamp }
}

/// A stored rule parsed back (never judged again: what was deleted since compiles stale).
fn stored_rule(r: &RuleSegmentRecord) -> Option<(rules::Rule, jiff::tz::TimeZone)> {
    let value: Value = serde_json::from_slice(&domain::exact::protect_numbers(r.rule.as_bytes())).ok()?;
    let rule = rules::parse(&value, rules::RULE_POINTER).ok()?;
    let tz = rules::parse_timezone(Some(&r.timezone)).ok()?;
    Some((rule, tz))
}

fn not_found_system() -> ApiError {
    ApiError::NotFound("no system with this guid".into())
}

fn not_found_segment() -> ApiError {
    ApiError::NotFound("no rule segment with this guid in this system".into())
}

fn invalid_rule(problems: Vec<Problem>) -> ApiError {
    ApiError::validation(
        "the rule segment is invalid; each detail names the JSON pointer of what is wrong",
        problems,
    )
}

fn rule_error(e: RuleSegmentError) -> ApiError {
    match e {
        RuleSegmentError::NotFound => not_found_segment(),
        RuleSegmentError::SystemFull(cap) => ApiError::Conflict {
            code: ErrorCode::SegmentLimitExceeded,
            message: format!(
                "this system already holds {cap} rule segments, the most it may; delete one first"
            ),
        },
        RuleSegmentError::VersionMismatch(v) => ApiError::PreconditionFailed(format!(
            "the rule segment is no longer at version {v}; read it again and retry with its current version"
        )),
        RuleSegmentError::Store(e) => e.into(),
    }
}

/// The system guid of the path, or 404 (malformed, unknown and foreign alike).
fn system_guid(raw: &str) -> Result<SystemGuid, ApiError> {
    SystemGuid::parse(raw).map_err(|_| not_found_system())
}

/// The rule segment answer body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSegmentOut<'a> {
    segment_guid: String,
    system_guid: String,
    name: &'a str,
    description: Option<&'a str>,
    rule: &'a RawValue,
    timezone: &'a str,
    version: i64,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale_conditions: Option<Vec<String>>,
}

fn out(r: &RuleSegmentRecord, stale: Option<Vec<String>>) -> Result<Box<RawValue>, ApiError> {
    let rule = RawValue::from_string(r.rule.clone())
        .map_err(|e| ApiError::Store(store::StoreError::Corrupt(format!("stored rule: {e}"))))?;
    let body = RuleSegmentOut {
        segment_guid: r.segment.to_string(),
        system_guid: r.system.to_string(),
        name: &r.name,
        description: r.description.as_deref(),
        rule: &rule,
        timezone: &r.timezone,
        version: r.version,
        created_at: rfc3339_millis_of_epoch_ms(r.created_at),
        updated_at: rfc3339_millis_of_epoch_ms(r.updated_at),
        stale_conditions: stale,
    };
    let text = serde_json::to_string(&body).expect("serializes");
    Ok(RawValue::from_string(text).expect("valid JSON"))
}

fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// `If-Match: "<version>"` (quotes optional, `W/` refused as never issued); `*` means any.
fn if_match(req: &Request) -> Result<Option<i64>, ApiError> {
    let Some(raw) = header(req, "if-match") else { return Ok(None) };
    let raw = raw.trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_matches('"').parse::<i64>().map(Some).map_err(|_| {
        ApiError::validation(
            "the If-Match header is invalid",
            vec![Problem::at("If-Match", "the quoted version of the rule segment, as its ETag gives it")],
        )
    })
}

/// Judges a body's rule and timezone against the system as it is now.
fn judge(
    body: &RuleSegmentBody,
    loaded: &Loaded,
    own: Option<SegmentGuid>,
) -> Result<(String, String), ApiError> {
    let mut problems: Vec<Problem> = Vec::new();
    if let Err(p) = rules::parse_and_validate(&body.rule, &loaded.catalog, own) {
        problems.extend(p.into_iter().map(Problem::from));
    }
    if let Err(p) = rules::parse_timezone(body.timezone.as_deref()) {
        problems.push(p.into());
    }
    if !problems.is_empty() {
        return Err(invalid_rule(problems));
    }
    let tz = body.timezone.clone().unwrap_or_else(|| "UTC".into());
    Ok((domain::exact::to_json_text(&body.rule), tz))
}

pub async fn create(
    state: &RuleState,
    store: &DynamoStore,
    info: &RequestInfo,
    p: &Principal,
    sys: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let raw: Value = json_body(req, MAX_RULE_BODY_BYTES)?;
    let body = RuleSegmentBody::from_json(&raw).map_err(invalid_rule)?;
    let system = system_guid(sys)?;
    let loaded = state.load(store, &p.account, system, true).await?;
    if !loaded.exists {
        return Err(not_found_system());
    }
    let (rule, timezone) = judge(&body, &loaded, None)?;
    let now = Timestamp::now().epoch_ms();
    let record = RuleSegmentRecord {
        segment: SegmentGuid::generate(),
        system,
        name: body.name,
        description: body.description,
        rule,
        timezone,
        version: 1,
        created_at: now,
        updated_at: now,
        count_shard: None,
    };
    let record =
        store.create_rule_segment(&p.account, &record, MAX_RULE_SEGMENTS).await.map_err(rule_error)?;
    tracing::info!(request_id = %info.request_id, account = %p.account, segment = %record.segment,
        "rule segment created");
    let location = format!("/public/v1/user/system/{system}/rule-segment/{}", record.segment);
    Ok(Reply::json(201, &out(&record, None)?)
        .header("location", &location)
        .header("etag", &etag(record.version)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleSegmentList {
    segments: Vec<Box<RawValue>>,
    next_cursor: Option<String>,
}

/// A page of the system's rule segments, each with its `staleConditions` (judged against the
/// instance's cached definitions, as a GET judges one), so a list needs no GET per segment.
pub async fn list(
    state: &RuleState,
    store: &DynamoStore,
    p: &Principal,
    sys: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let (limit, cursor) = page_params(req, DEFAULT_LIST_PAGE, MAX_LIST_PAGE, |c| SegmentGuid::parse(c).ok())?;
    let system = system_guid(sys)?;
    let (exists, page) = tokio::join!(
        store.system_exists(&p.account, system),
        store.rule_segment_page(&p.account, system, cursor, limit)
    );
    if !exists? {
        return Err(not_found_system());
    }
    let page = page?;
    let loaded = state.cached(store, &p.account, system).await?;
    let segments = page
        .segments
        .iter()
        // A rule that no longer parses (our bug) loses its `staleConditions`, not the page.
        .map(|r| out(r, stored_rule(r).map(|(rule, _)| rules::stale_conditions(&rule, &loaded.catalog))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Reply::json(200, &RuleSegmentList { segments, next_cursor: page.next.map(|g| g.to_string()) }))
}

async fn find(
    store: &DynamoStore,
    p: &Principal,
    sys: &str,
    seg: &str,
) -> Result<RuleSegmentRecord, ApiError> {
    let system = SystemGuid::parse(sys).map_err(|_| not_found_segment())?;
    let segment = SegmentGuid::parse(seg).map_err(|_| not_found_segment())?;
    store.rule_segment(&p.account, system, segment).await?.ok_or_else(not_found_segment)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonLogicOut {
    segment_guid: String,
    version: i64,
    logic: Value,
    unsupported: Vec<rules::Unsupported>,
}

pub async fn get(
    state: &RuleState,
    store: &DynamoStore,
    p: &Principal,
    sys: &str,
    seg: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let format = req.query_string_parameters_ref().and_then(|q| q.first("format")).map(str::to_string);
    if format.as_deref().is_some_and(|f| f != "jsonlogic" && f != "rule") {
        return Err(ApiError::validation(
            "the query is invalid",
            vec![Problem::at("format", "`rule` (the default) or `jsonlogic`")],
        ));
    }
    let record = find(store, p, sys, seg).await?;
    let loaded = state.cached(store, &p.account, record.system).await?;
    let (rule, _) = stored_rule(&record).ok_or_else(|| {
        ApiError::Store(store::StoreError::Corrupt("a stored rule no longer parses".into()))
    })?;
    let reply = if format.as_deref() == Some("jsonlogic") {
        let export = rules::to_jsonlogic(&rule, &loaded.catalog);
        Reply::json(
            200,
            &JsonLogicOut {
                segment_guid: record.segment.to_string(),
                version: record.version,
                logic: export.logic,
                unsupported: export.unsupported,
            },
        )
    } else {
        let stale = rules::stale_conditions(&rule, &loaded.catalog);
        Reply::json(200, &out(&record, Some(stale))?)
    };
    Ok(reply.header("etag", &etag(record.version)))
}

/// How often a `PUT` without `If-Match` re-reads and retries when another write won.
const REPLACE_ATTEMPTS: usize = 3;

pub async fn replace(
    store: &DynamoStore,
    info: &RequestInfo,
    p: &Principal,
    sys: &str,
    seg: &str,
    req: &Request,
    state: &RuleState,
) -> Result<Reply, ApiError> {
    let raw: Value = json_body(req, MAX_RULE_BODY_BYTES)?;
    let body = RuleSegmentBody::from_json(&raw).map_err(invalid_rule)?;
    let expected = if_match(req)?;
    for _ in 0..REPLACE_ATTEMPTS {
        let current = find(store, p, sys, seg).await?;
        if let Some(v) = expected
            && v != current.version
        {
            return Err(rule_error(RuleSegmentError::VersionMismatch(v)));
        }
        let loaded = state.load(store, &p.account, current.system, true).await?;
        let (rule, timezone) = judge(&body, &loaded, Some(current.segment))?;
        let record = RuleSegmentRecord {
            name: body.name.clone(),
            description: body.description.clone(),
            rule,
            timezone,
            version: current.version + 1,
            updated_at: Timestamp::now().epoch_ms().max(current.updated_at),
            ..current.clone()
        };
        match store.replace_rule_segment(&p.account, &record, current.version).await {
            Ok(()) => {
                tracing::info!(request_id = %info.request_id, account = %p.account, segment = %record.segment,
                    version = record.version, "rule segment replaced");
                return Ok(Reply::json(200, &out(&record, None)?).header("etag", &etag(record.version)));
            }
            Err(RuleSegmentError::VersionMismatch(v)) if expected.is_some() => {
                return Err(rule_error(RuleSegmentError::VersionMismatch(v)));
            }
            Err(RuleSegmentError::VersionMismatch(_)) => continue,
            Err(e) => return Err(rule_error(e)),
        }
    }
    Err(ApiError::Conflict {
        code: ErrorCode::ConcurrentModification,
        message: "the rule segment kept changing under this update; retry it".into(),
    })
}

pub async fn delete(
    store: &DynamoStore,
    info: &RequestInfo,
    p: &Principal,
    sys: &str,
    seg: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let expected = if_match(req)?;
    let current = find(store, p, sys, seg).await?;
    store.delete_rule_segment(&p.account, &current, expected).await.map_err(rule_error)?;
    tracing::info!(request_id = %info.request_id, account = %p.account, segment = %current.segment,
        "rule segment deleted");
    Ok(Reply::no_content())
}

fn types_of(definitions: &[IntegrationRecord]) -> HashMap<String, HashMap<String, AttrType>> {
    definitions
        .iter()
        .map(|i| (i.integration_id.clone(), i.definition.types().into_iter().collect()))
        .collect()
}

/// What one evaluation knows of a stored user: its attributes (one `Query` of its items) and
/// its static memberships in this system (what the end-user read reads).
struct Facts {
    attributes: rules::Attributes,
    statics: HashSet<SegmentGuid>,
    heads: Vec<SegmentHead>,
    known: bool,
}

async fn facts(
    store: &DynamoStore,
    account: &AccountId,
    system: SystemGuid,
    user: &UserId,
) -> Result<Facts, store::StoreError> {
    let (stored, heads) =
        tokio::join!(store.read_user(account, user.as_str()), store.user_segments(account, user.as_str()));
    let (stored, heads) = (stored?, heads?);
    let known = !stored.is_empty() || !heads.is_empty();
    let attributes = stored
        .into_iter()
        .map(|s| (s.integration_id, s.values.into_iter().collect::<HashMap<_, _>>()))
        .collect();
    let heads: Vec<SegmentHead> = heads.into_iter().filter(|h| h.system == system).collect();
    let statics = heads.iter().map(|h| h.segment).collect();
    Ok(Facts { attributes, statics, heads, known })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DryRunOut {
    matched: bool,
    explain: Vec<ConditionExplain>,
}

pub async fn dry_run(
    state: &RuleState,
    store: &DynamoStore,
    p: &Principal,
    sys: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let raw: Value = json_body(req, MAX_RULE_BODY_BYTES)?;
    let body = DryRunBody::from_json(&raw).map_err(invalid_rule)?;
    let system = system_guid(sys)?;
    let loaded = state.cached(store, &p.account, system).await?;
    if !loaded.exists {
        return Err(not_found_system());
    }
    let mut problems: Vec<Problem> = Vec::new();
    let rule = rules::parse_and_validate(&body.rule, &loaded.catalog, None)
        .map_err(|p| problems.extend(p.into_iter().map(Problem::from)))
        .ok();
    let tz = rules::parse_timezone(body.timezone.as_deref()).map_err(|p| problems.push(p.into())).ok();
    let attributes = match &body.subject {
        Subject::Attributes(raw) => match typed_attributes(raw, &types_of(&loaded.definitions)) {
            Ok(a) => Some((a, HashSet::new())),
            Err(p) => {
                problems.extend(p);
                None
            }
        },
        Subject::User(_) => None,
    };
    let (Some(rule), Some(tz)) = (rule, tz) else { return Err(invalid_rule(problems)) };
    if !problems.is_empty() {
        return Err(invalid_rule(problems));
    }
    let (attributes, statics) = match (attributes, &body.subject) {
        (Some(a), _) => a,
        (None, Subject::User(u)) => {
            let f = facts(store, &p.account, system, u).await?;
            if !f.known {
                return Err(ApiError::NotFound("no data for this user".into()));
            }
            (f.attributes, f.statics)
        }
        (None, Subject::Attributes(_)) => unreachable!("typed above or refused"),
    };
    let compiled = loaded.set.compile_rule(&loaded.catalog, &rule, tz);
    let outcome = loaded.set.evaluate_rule(
        &compiled,
        UserFacts { attributes: &attributes, static_segments: &statics },
        Timestamp::now(),
    );
    Ok(Reply::json(200, &DryRunOut { matched: outcome.matched, explain: outcome.explain }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Membership<'a> {
    segment_guid: String,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserSegmentsOut<'a> {
    user_id: &'a str,
    evaluated_at: String,
    segments: Vec<Membership<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<Vec<SegmentOutcome>>,
}

/// The segments, static then rule, the user is in at `now`.
fn memberships<'a>(
    loaded: &'a Loaded,
    f: &'a Facts,
    now: Timestamp,
    explain: bool,
) -> (Vec<Membership<'a>>, Option<Vec<SegmentOutcome>>) {
    let user = UserFacts { attributes: &f.attributes, static_segments: &f.statics };
    let names: HashMap<SegmentGuid, &str> =
        loaded.records.iter().map(|r| (r.segment, r.name.as_str())).collect();
    let mut out: Vec<Membership> = f
        .heads
        .iter()
        .map(|h| Membership { segment_guid: h.segment.to_string(), name: &h.name, kind: "static" })
        .collect();
    let rule = |g: SegmentGuid| Membership {
        segment_guid: g.to_string(),
        name: names.get(&g).copied().unwrap_or(""),
        kind: "rule",
    };
    if explain {
        let outcomes = loaded.set.evaluate_explained(user, now);
        out.extend(
            loaded.set.segment_guids().zip(&outcomes).filter(|(_, o)| o.matched).map(|(g, _)| rule(g)),
        );
        (out, Some(outcomes))
    } else {
        out.extend(loaded.set.evaluate(user, now).into_iter().map(rule));
        (out, None)
    }
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw)
        .map_err(|reason| ApiError::validation("the user id is invalid", vec![Problem::at("userId", reason)]))
}

pub async fn user_segments(
    state: &RuleState,
    store: &DynamoStore,
    p: &Principal,
    sys: &str,
    raw_user: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let explain = match req.query_string_parameters_ref().and_then(|q| q.first("explain")) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::validation(
                "the query is invalid",
                vec![Problem::at("explain", "`true` or `false`")],
            ));
        }
    };
    let user = user_id(raw_user)?;
    let system = system_guid(sys)?;
    let (loaded, f) =
        tokio::join!(state.cached(store, &p.account, system), facts(store, &p.account, system, &user));
    let (loaded, f) = (loaded?, f?);
    if !loaded.exists {
        return Err(not_found_system());
    }
    if !f.known {
        return Err(ApiError::NotFound("no data for this user".into()));
    }
    let now = Timestamp::now();
    let (segments, explain) = memberships(&loaded, &f, now, explain);
    Ok(Reply::json(
        200,
        &UserSegmentsOut {
            user_id: user.as_str(),
            evaluated_at: rfc3339_millis_of_epoch_ms(now.epoch_ms()),
            segments,
            explain,
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchResult<'a> {
    user_id: &'a str,
    segments: Vec<Membership<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchOut<'a> {
    evaluated_at: String,
    results: Vec<BatchResult<'a>>,
}

pub async fn batch(
    state: &RuleState,
    store: &DynamoStore,
    p: &Principal,
    sys: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let raw: Value = json_body(req, MAX_RULE_BODY_BYTES)?;
    let users = batch_user_ids(&raw).map_err(|d| ApiError::validation("the batch is invalid", d))?;
    let system = system_guid(sys)?;
    let loaded = state.cached(store, &p.account, system).await?;
    if !loaded.exists {
        return Err(not_found_system());
    }
    let read = store::concurrent::for_each_bounded(
        users.iter().cloned().enumerate(),
        BATCH_CONCURRENCY,
        "user facts",
        |(i, u)| {
            let (store, account) = (store.clone(), p.account.clone());
            async move { Ok((i, facts(&store, &account, system, &u).await?)) }
        },
    )
    .await?;
    let mut facts_of: Vec<Option<Facts>> = (0..users.len()).map(|_| None).collect();
    for (i, f) in read {
        facts_of[i] = Some(f);
    }
    let now = Timestamp::now();
    let results = users
        .iter()
        .zip(&facts_of)
        .map(|(u, f)| BatchResult {
            user_id: u.as_str(),
            segments: f.as_ref().map(|f| memberships(&loaded, f, now, false).0).unwrap_or_default(),
        })
        .collect();
    Ok(Reply::json(200, &BatchOut { evaluated_at: rfc3339_millis_of_epoch_ms(now.epoch_ms()), results }))
}
