//! `POST /v1/customer/{workspace_id}`: MoEngage's Track User API (seed 004).
//!
//! - Auth: MoEngage's Basic credentials, checked by the front before this runs
//!   (`auth::workspace`); errors are rendered in MoEngage's shape by the front too
//!   (the route's dialect).
//! - The body is judged whole (shape, names, values, recorded types) before any write.
//! - New attribute names grow the account's implicit "MoEngage" integration through the
//!   attribute-cap transaction; then one UpdateItem merges the values into the user's item,
//!   with the client address.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use lambda_http::Request;

use domain::integration::AttrType;
use domain::moengage::{self as rules, INTEGRATION_ID, MAX_ATTRIBUTES, TrackUser};
use domain::{AccountId, Timestamp};
use edge::api::MoEngageSuccess;
use edge::http::request::{header, json_body};
use edge::http::{ApiError, ErrorCode, Reply, RequestInfo};
use protect::usage::UsageReport;
use store::StoreError;
use store::end_users::{MergeOutcome, UserWrite};
use store::integrations::{IntegrationRecord, IntegrationWriteError};

use crate::App;

/// Rounds of "read the integration, add the new attributes" lost to concurrent additions
/// before giving up with a 503.
const WRITE_ATTEMPTS: usize = 5;
/// Accounts whose attribute types an instance remembers before it forgets them all (a bound
/// on memory, not an eviction policy).
const CACHE_MAX: usize = 1024;

/// What a warm instance remembers between calls.
#[derive(Default)]
pub struct State {
    /// Per account, the attribute types of the MoEngage integration. Types never change and
    /// attributes are never removed from it, so a name found here needs no read; an unknown
    /// name always reads the integration afresh.
    types: Mutex<HashMap<AccountId, Arc<BTreeMap<String, AttrType>>>>,
}

impl State {
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

/// `POST /v1/customer/{workspace_id}` for the account the front authenticated.
pub async fn track(
    app: &App,
    info: &RequestInfo,
    req: &Request,
    account: &AccountId,
) -> Result<Reply, ApiError> {
    let (outcome, customer) = run(app, info, req, account).await?;
    let mut body = MoEngageSuccess::accepted();
    if outcome == MergeOutcome::Suppressed {
        body.suppressed.push(customer);
    }
    let written = outcome == MergeOutcome::Written;
    Ok(Reply::json(200, &body).usage(UsageReport { users_updated: i64::from(written), segment_ids: 0 }))
}

fn bad_request(details: Vec<domain::Problem>) -> ApiError {
    ApiError::validation("the body is invalid", details)
}

fn attribute_limit(message: String) -> ApiError {
    ApiError::Conflict { code: ErrorCode::AttributeLimitExceeded, message }
}

/// Judges and writes the update; answers what the write did, and to whom.
async fn run(
    app: &App,
    info: &RequestInfo,
    req: &Request,
    account: &AccountId,
) -> Result<(MergeOutcome, String), ApiError> {
    let account = account.clone();
    let body: serde_json::Value = json_body(req, rules::MAX_BODY_BYTES)?;
    let request = TrackUser::parse(body).map_err(bad_request)?;
    let client_ip = rules::client_address(header(req, "x-forwarded-for"), info.source_ip.as_deref());
    let now = Timestamp::now().rfc3339();
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
                log(info, &account, &request, 0, MergeOutcome::Skipped);
                return Ok((MergeOutcome::Skipped, request.customer_id.as_str().to_string()));
            }
            let next = grown(&account, record.as_ref(), &resolved.new_attributes)?;
            match app.store.put_tokenless_integration(record.as_ref(), &next).await {
                Ok(()) => state.remember_types(&account, next.attribute_types.clone()),
                // Another call added attributes meanwhile: read again, judge again.
                Err(IntegrationWriteError::Conflict) => continue,
                // The implicit integration is not counted against the integration cap.
                Err(IntegrationWriteError::AttributeLimit | IntegrationWriteError::IntegrationLimit) => {
                    return Err(attribute_limit(format!(
                        "new attributes {} would take the account past its attribute limit (attributes of all integrations count); nothing was written",
                        quoted(&resolved.new_attributes)
                    )));
                }
                Err(IntegrationWriteError::Store(e)) => return Err(e.into()),
            }
        }

        let write = UserWrite::plain(
            &request.customer_id,
            resolved.values.iter().map(|(name, v)| (name.as_str(), v)).collect(),
        );
        let written = app
            .store
            .update_user(
                &account,
                INTEGRATION_ID,
                &write,
                request.update_existing_only,
                &now,
                client_ip.as_deref(),
            )
            .await?
            .outcome();
        log(info, &account, &request, resolved.new_attributes.len(), written);
        return Ok((written, request.customer_id.as_str().to_string()));
    }
    Err(StoreError::Busy {
        op: "moengage update",
        reason: "concurrent additions of attributes won every round",
    }
    .into())
}

fn log(
    info: &RequestInfo,
    account: &AccountId,
    request: &TrackUser,
    new_attributes: usize,
    outcome: MergeOutcome,
) {
    tracing::info!(
        request_id = %info.request_id, %account, attributes = request.attributes.len(), new_attributes,
        update_existing_only = request.update_existing_only, ?outcome, "moengage user tracked"
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
) -> Result<IntegrationRecord, ApiError> {
    let grown = rules::grown(current.map(|r| (&r.definition, &r.attribute_types)), new).map_err(|_| {
        attribute_limit(format!(
            "new attributes {} would take the MoEngage integration past {MAX_ATTRIBUTES} attributes; nothing was written",
            quoted(new)
        ))
    })?;
    let now = Timestamp::now().epoch_secs();
    Ok(IntegrationRecord::tokenless(
        account,
        INTEGRATION_ID,
        current,
        grown.definition,
        grown.attribute_types,
        now,
    ))
}
