//! Batch erase and suppression (docs/DECISIONS.md, "Erasure that sticks").
//!
//! An erased user is **suppressed** until `suppressedUntil` (epoch seconds). What says so:
//! - in the end-users table, a **tombstone** in place of each of the user's integration items
//!   (`<acc>#<user>` / `A#<integrationId>`, for every integration of the account and the
//!   MoEngage one, plus any new integration, seeded when it is created): only `pk`, `sk` and
//!   `suppressedUntil`. Every user write carries [`not_suppressed_condition`], so an ordinary
//!   write pays nothing more (a condition is free; no read) and a suppressed one fails its
//!   condition without writing anything;
//! - in the segments table, a **marker** in the user's reverse-entry partition
//!   (`<acc>#USER#<user>` / `SUPPRESSED`), which each member add checks in its own transaction,
//!   and an **index** entry (`<acc>#SUPP#<shard>` / `<user>`) from which a new integration's
//!   tombstones are seeded.
//!
//! Each erase call leaves an audit record in the config table (`ERASURES#<acc>` /
//! `<ms>#<requestId>`): when, which client, how many users, items and memberships, no ids.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::codec::{Item, get_n, get_s, key, n, s};
use crate::concurrent::for_each_bounded;
use crate::dynamo::{DynamoStore, sdk_error};
use crate::{StoreError, batch};
use domain::AccountId;
use domain::user_data::UserId;

/// The tombstone's attribute: until when (epoch seconds) writes for the user are refused.
pub const SUPPRESSED_UNTIL: &str = "suppressedUntil";
/// The MoEngage integration's item is tombstoned whether or not the account has used it yet:
/// it is created on first sight, without a create call that could seed it.
const MOENGAGE_ID: &str = domain::moengage::INTEGRATION_ID;
/// Users erased at once by one call.
const ERASE_CONCURRENCY: usize = 16;
/// The default window, when the operator set none on the account's limits item.
pub const DEFAULT_SUPPRESSION_DAYS: i64 = 30;
const SUPPRESSION_DAYS: &str = "suppressionDays";

/// A condition clause with its placeholders, to AND with others on one write.
#[derive(Debug, Clone)]
pub struct Condition {
    pub expr: String,
    pub names: Vec<(String, String)>,
    pub values: Vec<(String, AttributeValue)>,
}

impl Condition {
    /// This clause AND `clause` (which uses no placeholder of this one).
    pub fn and(mut self, clause: &str) -> Self {
        self.expr = format!("{} AND ({clause})", self.expr);
        self
    }
}

/// The write succeeds only if the item is not a live tombstone at `now_secs`: an absent item,
/// a user's item, or a tombstone whose window has ended.
pub fn not_suppressed_condition(now_secs: i64) -> Condition {
    Condition {
        expr: "(attribute_not_exists(#supUntil) OR #supUntil <= :supNow)".into(),
        names: vec![("#supUntil".into(), SUPPRESSED_UNTIL.into())],
        values: vec![(":supNow".into(), n(now_secs))],
    }
}

/// Whether a stored end-user item is a tombstone still in force at `now_secs`.
pub fn is_suppressed(item: &Item, now_secs: i64) -> bool {
    get_n(item, SUPPRESSED_UNTIL).is_ok_and(|until| until > now_secs)
}

/// Whether a stored end-user item is a tombstone (in force or not): it holds no attributes.
pub fn is_tombstone(item: &Item) -> bool {
    item.contains_key(SUPPRESSED_UNTIL) && !item.contains_key("integrationId")
}

/// What one erase call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EraseTally {
    pub users: usize,
    /// End-user items that held attributes, now gone.
    pub items: usize,
    pub memberships: usize,
}

/// One erase's audit record, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErasureRecord {
    pub at_ms: i64,
    pub client_id: String,
    pub request_id: String,
    pub users: i64,
    pub items: i64,
    pub memberships: i64,
    pub suppressed_until: i64,
}

pub(crate) fn end_user_pk(account: &AccountId, user: &str) -> String {
    format!("{account}#{user}")
}

fn tombstone(account: &AccountId, user: &str, integration_id: &str, until: i64) -> Item {
    let mut item = key(end_user_pk(account, user), format!("A#{integration_id}"));
    item.insert(SUPPRESSED_UNTIL.into(), n(until));
    item
}

/// The key attributes of an item.
fn key_of(item: &Item) -> Item {
    item.iter().filter(|(k, _)| *k == "pk" || *k == "sk").map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn erasures_pk(account: &AccountId) -> String {
    format!("ERASURES#{account}")
}

impl DynamoStore {
    /// The account's suppression window in days (its limits item's `suppressionDays`, set by
    /// the operator; [`DEFAULT_SUPPRESSION_DAYS`] otherwise).
    pub async fn suppression_days(&self, account: &AccountId) -> Result<i64, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().config)
            .key("pk", s(crate::accounts::limits_pk(account)))
            .key("sk", s("LIMITS"))
            .projection_expression(SUPPRESSION_DAYS)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item.and_then(|i| get_n(&i, SUPPRESSION_DAYS).ok()).unwrap_or(DEFAULT_SUPPRESSION_DAYS))
    }

    /// Sets the account's suppression window (operator only: the limits item).
    pub async fn set_suppression_days(&self, account: &AccountId, days: i64) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(&self.tables().config)
            .key("pk", s(crate::accounts::limits_pk(account)))
            .key("sk", s("LIMITS"))
            .update_expression("SET #d = :d")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#d", SUPPRESSION_DAYS)
            .expression_attribute_values(":d", n(days))
            .send()
            .await
            .map_err(|e| {
                if crate::dynamo::is_conditional_failure(&e) {
                    StoreError::NotFound(format!("account {account}"))
                } else {
                    sdk_error("UpdateItem", e)
                }
            })?;
        Ok(())
    }

    /// Erases each user everywhere and suppresses it until `until_secs`: the marker and index
    /// first (so that member adds racing the erase fail from then on), then the tombstones
    /// over every integration item (a Put replaces the item whole: its attributes go with it),
    /// then the deletion of any other item of the user (an integration deleted since), then
    /// the users' memberships, all in shared transactions. A failure part-way leaves what a
    /// retry of the call completes.
    pub async fn erase_users(
        &self,
        account: &AccountId,
        users: &[UserId],
        until_secs: i64,
        now_ms: i64,
    ) -> Result<EraseTally, StoreError> {
        let mut integrations: Vec<String> =
            self.list_integrations(account).await?.into_iter().map(|r| r.integration_id).collect();
        if !integrations.iter().any(|i| i == MOENGAGE_ID) {
            integrations.push(MOENGAGE_ID.to_string());
        }
        // First: from here on, member adds of this account check each user (see
        // `segments/membership.rs`).
        self.raise_gates(account, until_secs).await?;
        let unique: Vec<String> = users
            .iter()
            .map(UserId::as_str)
            .collect::<HashSet<_>>()
            .into_iter()
            .map(str::to_string)
            .collect();
        let done = for_each_bounded(unique.clone(), ERASE_CONCURRENCY, "erase", |user| {
            let (store, account, integrations) = (self.clone(), account.clone(), integrations.clone());
            async move { store.erase_one(&account, &user, &integrations, until_secs).await }
        })
        .await?;
        // After every marker: an add racing the erase has committed (and is found) or fails.
        let memberships = self.remove_users_everywhere(account, &unique, now_ms).await?;
        Ok(EraseTally { users: unique.len(), items: done.iter().sum(), memberships })
    }

    async fn erase_one(
        &self,
        account: &AccountId,
        user: &str,
        integrations: &[String],
        until: i64,
    ) -> Result<usize, StoreError> {
        let marks = crate::segments::suppression_items(account, user, until);
        batch::write_all(
            self.client(),
            &self.tables().segments,
            marks.into_iter().map(batch::put).collect(),
            1,
        )
        .await?;
        let table = &self.tables().end_users;
        let items = self.query_all(table, &end_user_pk(account, user)).await?;
        let held = items.iter().filter(|i| !is_tombstone(i)).count();
        let covered: HashSet<String> = integrations.iter().map(|i| format!("A#{i}")).collect();
        let mut requests: Vec<_> =
            integrations.iter().map(|i| batch::put(tombstone(account, user, i, until))).collect();
        for item in &items {
            if !covered.contains(get_s(item, "sk")?) {
                requests.push(batch::delete(key_of(item)));
            }
        }
        batch::write_all(self.client(), table, requests, 2).await?;
        Ok(held)
    }

    /// Lifts the user's suppression: its tombstones (only those still tombstones), marker and
    /// index entry. Returns whether the user was suppressed (at any time, window ended or not).
    pub async fn lift_suppression(&self, account: &AccountId, user: &str) -> Result<bool, StoreError> {
        let marks: Vec<Item> =
            crate::segments::suppression_items(account, user, 0).iter().map(key_of).collect();
        let found = self
            .exists(&self.tables().segments, get_s(&marks[0], "pk")?.into(), get_s(&marks[0], "sk")?.into())
            .await?;
        let items = self.query_all(&self.tables().end_users, &end_user_pk(account, user)).await?;
        let tombstones: Vec<&Item> = items.iter().filter(|i| is_tombstone(i)).collect();
        for t in &tombstones {
            // A write may have replaced an ended tombstone meanwhile: keep what it wrote.
            let res = self
                .client()
                .delete_item()
                .table_name(&self.tables().end_users)
                .key("pk", t["pk"].clone())
                .key("sk", t["sk"].clone())
                .condition_expression("attribute_not_exists(integrationId)")
                .send()
                .await;
            if let Err(e) = res
                && !crate::dynamo::is_conditional_failure(&e)
            {
                return Err(sdk_error("DeleteItem", e));
            }
        }
        let deletes = marks.into_iter().map(batch::delete).collect();
        batch::write_all(self.client(), &self.tables().segments, deletes, 1).await?;
        Ok(found || !tombstones.is_empty())
    }

    /// Writes a tombstone in `integration_id` for every user suppressed at `now_secs`: what a
    /// new integration needs so that its first write of an erased user fails like any other.
    /// Called before the integration exists and again after (an erase that listed the
    /// account's integrations just before this one was created is then covered too).
    pub async fn seed_tombstones(
        &self,
        account: &AccountId,
        integration_id: &str,
        now_secs: i64,
    ) -> Result<usize, StoreError> {
        let live = crate::segments::suppressed_users(self, account, now_secs).await?;
        let n = live.len();
        let requests = live
            .into_iter()
            .map(|(user, until)| batch::put(tombstone(account, &user, integration_id, until)))
            .collect();
        batch::write_all(self.client(), &self.tables().end_users, requests, 4).await?;
        Ok(n)
    }

    /// Records one erase call (no user id, no attribute).
    pub async fn record_erasure(&self, account: &AccountId, rec: &ErasureRecord) -> Result<(), StoreError> {
        let item: Item = HashMap::from([
            ("pk".to_string(), s(erasures_pk(account))),
            ("sk".to_string(), s(format!("{:013}#{}", rec.at_ms, rec.request_id))),
            ("atMs".to_string(), n(rec.at_ms)),
            ("clientId".to_string(), s(&rec.client_id)),
            ("requestId".to_string(), s(&rec.request_id)),
            ("users".to_string(), n(rec.users)),
            ("items".to_string(), n(rec.items)),
            ("memberships".to_string(), n(rec.memberships)),
            ("suppressedUntil".to_string(), n(rec.suppressed_until)),
        ]);
        self.client()
            .put_item()
            .table_name(&self.tables().config)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    /// The account's erase records, oldest first.
    pub async fn erasures(&self, account: &AccountId) -> Result<Vec<ErasureRecord>, StoreError> {
        self.query_all(&self.tables().config, &erasures_pk(account))
            .await?
            .iter()
            .map(|i| {
                Ok(ErasureRecord {
                    at_ms: get_n(i, "atMs")?,
                    client_id: get_s(i, "clientId")?.into(),
                    request_id: get_s(i, "requestId")?.into(),
                    users: get_n(i, "users")?,
                    items: get_n(i, "items")?,
                    memberships: get_n(i, "memberships")?,
                    suppressed_until: get_n(i, "suppressedUntil")?,
                })
            })
            .collect()
    }
}
