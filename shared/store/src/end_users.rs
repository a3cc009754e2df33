//! End-user data in the end-users table.
//!
//! Partition `<accountId>#<userId>`; item `A#<integrationId>` holds that integration's
//! attributes as top-level attributes named `a:<attribute name>` (the prefix keeps customer
//! names apart from ours), plus `integrationId`, `updatedAt` and, in the MoEngage item,
//! `clientIp` (the address of the last update). A user's whole object is one
//! Query; a merge is one UpdateItem; a replace is one conditional PutItem per user, but one
//! UpdateItem for a user with operations or a source time. With a source time, each value's
//! stamp is `t:<attribute name>` beside it (domain::source_time). Every write carries
//! [`not_suppressed_condition`]: an erased user's items are tombstones (`suppression.rs`), and
//! a write that meets one fails its condition and writes nothing.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::codec::{Item, get_s, key, s};
use super::concurrent::for_each_bounded;
use super::dynamo::{DynamoStore, is_conditional_failure, sdk_error};
use super::suppression::{Condition, is_suppressed, is_tombstone, not_suppressed_condition};
use super::{StoreError, batch};
use domain::integration::Definition;
use domain::source_time;
use domain::user_data::{AttrValue, UserId, UserUpdate};
use domain::{AccountId, Timestamp};

const ATTR_PREFIX: &str = "a:";
/// The source-time stamp of attribute `a:<name>` is `t:<name>` (domain::source_time).
const STAMP_PREFIX: &str = "t:";
/// Each retry follows a newer write that got in between: a bound, not an expected count.
const MAX_ORDERING_ATTEMPTS: usize = 8;
/// Up to 4 batches of 25 for a 100-user request: all at once.
const WRITE_CONCURRENCY: usize = 4;
/// UpdateItems of one `replace` in flight at once (up to 100 users, one request each).
const ORDERED_CONCURRENCY: usize = 16;

/// One integration's attributes of a user, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttributes {
    pub integration_id: String,
    pub updated_at: String,
    pub values: BTreeMap<String, AttrValue>,
    /// The client address recorded with the last update (MoEngage's `X-Forwarded-For`).
    pub client_ip: Option<String>,
}

/// One user's write: attribute names with their values, and its operations.
pub struct UserWrite<'a> {
    pub user_id: &'a UserId,
    pub values: Vec<(&'a str, &'a AttrValue)>,
    pub set_once: Vec<(&'a str, &'a AttrValue)>,
    /// Exact decimal deltas, as text.
    pub increment: Vec<(&'a str, &'a str)>,
    /// Attributes to remove (`$unset`, and in `replace` the properties left out).
    pub unset: Vec<&'a str>,
    /// With a source time (epoch ms), each value and removal is ordered by it.
    pub source_ms: Option<i64>,
}

impl<'a> UserWrite<'a> {
    /// Values only, as every write was before operations and source times.
    pub fn plain(user_id: &'a UserId, values: Vec<(&'a str, &'a AttrValue)>) -> Self {
        Self {
            user_id,
            values,
            set_once: Vec::new(),
            increment: Vec::new(),
            unset: Vec::new(),
            source_ms: None,
        }
    }

    /// A validated update under the names of `def`'s properties. With `replace`, the
    /// properties it does not name are removed: by the whole-item put of a plain update, by
    /// removals in the UpdateItem of any other.
    pub fn of(u: &'a UserUpdate, def: &'a Definition, replace: bool) -> Self {
        let name = |i: &usize| def.properties[*i].name.as_str();
        let mut unset: Vec<&str> = u.ops.unset.iter().map(name).collect();
        if replace && !u.is_plain() {
            let named: Vec<usize> = u.values.iter().map(|(i, _)| *i).chain(u.ops.properties()).collect();
            unset.extend((0..def.properties.len()).filter(|i| !named.contains(i)).map(|i| name(&i)));
        }
        Self {
            user_id: &u.user_id,
            values: u.named_values(def).collect(),
            set_once: u.ops.set_once.iter().map(|(i, v)| (name(i), v)).collect(),
            increment: u.ops.increment.iter().map(|(i, d)| (name(i), d.as_str())).collect(),
            unset,
            source_ms: u.source_ms,
        }
    }

    /// Whether it is a plain write (no operation, no source time): a `replace` puts it whole.
    fn is_plain(&self) -> bool {
        self.set_once.is_empty()
            && self.increment.is_empty()
            && self.unset.is_empty()
            && self.source_ms.is_none()
    }
}

/// What a `replace` did besides writing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Replaced {
    /// Users `only_existing` skipped.
    pub skipped: Vec<UserId>,
    /// Users with attributes left as they were (newer source times), and those attributes.
    pub stale: Vec<(UserId, Vec<String>)>,
    /// Users whose increments DynamoDB refused (nothing of theirs written).
    pub overflow: Vec<UserId>,
    /// Erased and suppressed: nothing of theirs written.
    pub suppressed: Vec<UserId>,
}

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    Written,
    /// `only_existing` was set and the user had no attributes of this integration.
    Skipped,
    /// The user is erased and suppressed: nothing was written.
    Suppressed,
}

/// The epoch seconds of a write's `now` (RFC 3339, as every write path passes it; the clock's,
/// should one ever not parse: never a time that would pass every tombstone).
fn now_secs(now: &str) -> i64 {
    Timestamp::parse_rfc3339(now).unwrap_or_else(Timestamp::now).epoch_secs()
}

/// The placeholders of `c` onto any builder with `expression_attribute_names/values`.
macro_rules! with_condition {
    ($req:expr, $c:expr) => {{
        let c: Condition = $c;
        let mut req = $req.condition_expression(c.expr);
        for (k, v) in c.names {
            req = req.expression_attribute_names(k, v);
        }
        for (k, v) in c.values {
            req = req.expression_attribute_values(k, v);
        }
        req
    }};
}

/// What a user's write did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Written {
    /// False when `only_existing` found no attributes of the integration (nothing written).
    pub written: bool,
    /// Attributes left as they were: they hold newer source times.
    pub stale: Vec<String>,
    /// DynamoDB refused an increment's result (past 38 significant digits or its range):
    /// nothing of this user's write was applied.
    pub overflow: bool,
    /// The user is erased and suppressed: nothing was written.
    pub suppressed: bool,
}

impl Written {
    /// The write as a plain merge reports it (one with no increments: never an overflow).
    pub fn outcome(&self) -> MergeOutcome {
        if self.suppressed {
            MergeOutcome::Suppressed
        } else if self.written {
            MergeOutcome::Written
        } else {
            MergeOutcome::Skipped
        }
    }
}

/// One user's UpdateItem, owned (it may be sent from a spawned task). Each stamped part
/// carries the stamp it writes (values, removals) or must not be older than (increments).
#[derive(Debug, Clone)]
struct Plan {
    pk: String,
    sk: String,
    integration_id: String,
    values: Vec<(String, AttributeValue, Option<String>)>,
    set_once: Vec<(String, AttributeValue)>,
    increment: Vec<(String, String, Option<String>)>,
    unset: Vec<(String, Option<String>)>,
}

impl Plan {
    fn of(account: &AccountId, integration_id: &str, user: &UserWrite<'_>) -> Self {
        let ms = user.source_ms;
        Self {
            pk: user_pk(account, user.user_id.as_str()),
            sk: attrs_sk(integration_id),
            integration_id: integration_id.to_string(),
            values: user
                .values
                .iter()
                .map(|(n, v)| (n.to_string(), to_av(v), ms.map(|ms| source_time::value_stamp(ms, v))))
                .collect(),
            set_once: user.set_once.iter().map(|(n, v)| (n.to_string(), to_av(v))).collect(),
            increment: user
                .increment
                .iter()
                .map(|(n, d)| (n.to_string(), d.to_string(), ms.map(source_time::increment_bound)))
                .collect(),
            unset: user.unset.iter().map(|n| (n.to_string(), ms.map(source_time::removal_stamp))).collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.set_once.is_empty()
            && self.increment.is_empty()
            && self.unset.is_empty()
    }

    /// Drops the parts whose attribute holds a newer stamp in `item`; returns their names.
    fn drop_stale(&mut self, item: &Item) -> Vec<String> {
        let newer =
            |name: &str, stamp: &Option<String>| match (stamp, item.get(&format!("{STAMP_PREFIX}{name}"))) {
                (Some(sent), Some(AttributeValue::S(stored))) => stored > sent,
                _ => false,
            };
        let mut dropped = Vec::new();
        self.values.retain(|(n, _, st)| {
            !newer(n, st) || {
                dropped.push(n.clone());
                false
            }
        });
        self.increment.retain(|(n, _, st)| {
            !newer(n, st) || {
                dropped.push(n.clone());
                false
            }
        });
        self.unset.retain(|(n, st)| {
            !newer(n, st) || {
                dropped.push(n.clone());
                false
            }
        });
        dropped
    }

    fn request(
        &self,
        store: &DynamoStore,
        only_existing: bool,
        now: &str,
        client_ip: Option<&str>,
    ) -> UpdateItemFluentBuilder {
        let mut set = vec!["integrationId = :i".to_string(), "updatedAt = :u".to_string()];
        let (mut remove, mut add, mut stamped) = (Vec::new(), Vec::new(), Vec::new());
        let mut req = store
            .client()
            .update_item()
            .table_name(&store.tables().end_users)
            .key("pk", s(&self.pk))
            .key("sk", s(&self.sk))
            .expression_attribute_values(":i", s(&self.integration_id))
            .expression_attribute_values(":u", s(now));
        let name = |req: UpdateItemFluentBuilder, placeholder: String, attr: String| {
            req.expression_attribute_names(placeholder, attr)
        };
        for (i, (n, v, stamp)) in self.values.iter().enumerate() {
            set.push(format!("#a{i} = :v{i}"));
            req = name(req, format!("#a{i}"), format!("{ATTR_PREFIX}{n}"))
                .expression_attribute_values(format!(":v{i}"), v.clone());
            if let Some(st) = stamp {
                set.push(format!("#ta{i} = :ta{i}"));
                stamped.push(format!("ta{i}"));
                req = name(req, format!("#ta{i}"), format!("{STAMP_PREFIX}{n}"))
                    .expression_attribute_values(format!(":ta{i}"), s(st));
            }
        }
        for (i, (n, v)) in self.set_once.iter().enumerate() {
            set.push(format!("#o{i} = if_not_exists(#o{i}, :o{i})"));
            req = name(req, format!("#o{i}"), format!("{ATTR_PREFIX}{n}"))
                .expression_attribute_values(format!(":o{i}"), v.clone());
        }
        for (i, (n, d, bound)) in self.increment.iter().enumerate() {
            add.push(format!("#n{i} :n{i}"));
            req = name(req, format!("#n{i}"), format!("{ATTR_PREFIX}{n}"))
                .expression_attribute_values(format!(":n{i}"), AttributeValue::N(d.clone()));
            if let Some(b) = bound {
                stamped.push(format!("tn{i}"));
                req = name(req, format!("#tn{i}"), format!("{STAMP_PREFIX}{n}"))
                    .expression_attribute_values(format!(":tn{i}"), s(b));
            }
        }
        for (i, (n, stamp)) in self.unset.iter().enumerate() {
            remove.push(format!("#r{i}"));
            req = name(req, format!("#r{i}"), format!("{ATTR_PREFIX}{n}"));
            if let Some(st) = stamp {
                set.push(format!("#tr{i} = :tr{i}"));
                stamped.push(format!("tr{i}"));
                req = name(req, format!("#tr{i}"), format!("{STAMP_PREFIX}{n}"))
                    .expression_attribute_values(format!(":tr{i}"), s(st));
            }
        }
        if let Some(ip) = client_ip {
            set.push("clientIp = :ip".into());
            req = req.expression_attribute_values(":ip", s(ip));
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        if !add.is_empty() {
            expr.push_str(&format!(" ADD {}", add.join(", ")));
        }
        // Not `attribute_exists(pk)`: an ended tombstone has one, and holds no attributes.
        let existing = only_existing.then(|| "attribute_exists(integrationId)".to_string());
        let mut condition = not_suppressed_condition(now_secs(now));
        if let Some(more) = and(existing.into_iter().chain(ordering_condition(&stamped))) {
            condition = condition.and(&more);
        }
        with_condition!(req, condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .update_expression(expr)
    }
}

/// The condition that no stamped attribute holds a newer stamp than the write's: one clause
/// per attribute (`p` names placeholder pair `#p`/`:p`), so that it composes with any other
/// clause by AND. A missing stamp compares false, so `NOT` lets a first write through.
fn ordering_condition(stamped: &[String]) -> Option<String> {
    and(stamped.iter().map(|p| format!("NOT #{p} > :{p}")))
}

fn and(clauses: impl IntoIterator<Item = String>) -> Option<String> {
    let all: Vec<String> = clauses.into_iter().collect();
    (!all.is_empty()).then(|| all.join(" AND "))
}

fn user_pk(account: &AccountId, user: &str) -> String {
    format!("{account}#{user}")
}

fn attrs_sk(integration_id: &str) -> String {
    format!("A#{integration_id}")
}

fn to_av(v: &AttrValue) -> AttributeValue {
    match v {
        AttrValue::String(x) | AttrValue::Date(x) => AttributeValue::S(x.clone()),
        AttrValue::Number(x) => AttributeValue::N(x.clone()),
        AttrValue::Boolean(b) => AttributeValue::Bool(*b),
    }
}

/// A stored value as it is shown (a Date is stored, and shown, as its text).
fn from_av(v: &AttributeValue) -> Option<AttrValue> {
    match v {
        AttributeValue::S(x) => Some(AttrValue::String(x.clone())),
        AttributeValue::N(x) => Some(AttrValue::Number(x.clone())),
        AttributeValue::Bool(b) => Some(AttrValue::Boolean(*b)),
        _ => None,
    }
}

impl DynamoStore {
    /// Makes each user's attributes of this integration exactly those given. Returns the users
    /// skipped because `only_existing` was set and they had no attributes of this integration,
    /// and those with stale attributes. A plain user is put whole (a conditional PutItem);
    /// one with operations or a source time is one UpdateItem, which can be conditional.
    pub async fn replace_users(
        &self,
        account: &AccountId,
        integration_id: &str,
        users: &[UserWrite<'_>],
        only_existing: bool,
        now: &str,
    ) -> Result<Replaced, StoreError> {
        let (plain, ordered): (Vec<&UserWrite<'_>>, Vec<&UserWrite<'_>>) =
            users.iter().partition(|u| u.is_plain());
        let mut out = Replaced::default();
        let existing = if only_existing && !plain.is_empty() {
            Some(self.existing_users(account, integration_id, &plain, now_secs(now)).await?)
        } else {
            None
        };
        let kept: Vec<&UserWrite<'_>> = plain
            .into_iter()
            .filter(|u| {
                let known =
                    existing.as_ref().is_none_or(|e| e.contains_key(&user_pk(account, u.user_id.as_str())));
                if !known {
                    out.skipped.push(u.user_id.clone());
                }
                known
            })
            .collect();
        out.suppressed = self.put_users(account, integration_id, &kept, now, WRITE_CONCURRENCY).await?;
        let jobs: Vec<(UserId, Plan)> =
            ordered.iter().map(|u| (u.user_id.clone(), Plan::of(account, integration_id, u))).collect();
        let done = for_each_bounded(jobs, ORDERED_CONCURRENCY, "UpdateItem", |(id, plan)| {
            let (store, now) = (self.clone(), now.to_string());
            async move { Ok((id, store.apply(plan, only_existing, &now, None).await?)) }
        })
        .await?;
        for (id, w) in done {
            if w.suppressed {
                out.suppressed.push(id);
            } else if w.overflow {
                out.overflow.push(id);
            } else if !w.written {
                out.skipped.push(id);
            } else if !w.stale.is_empty() {
                out.stale.push((id, w.stale));
            }
        }
        Ok(out)
    }

    /// Replaces each user's item of this integration: a conditional `PutItem` each (a
    /// `BatchWriteItem` cannot carry the suppression condition; the units are the same),
    /// `concurrency` × 25 at a time. Callers never pass one user twice. Returns the users
    /// refused as suppressed.
    pub async fn put_users(
        &self,
        account: &AccountId,
        integration_id: &str,
        users: &[&UserWrite<'_>],
        now: &str,
        concurrency: usize,
    ) -> Result<Vec<UserId>, StoreError> {
        let now_secs = now_secs(now);
        let mut requests = Vec::with_capacity(users.len());
        for user in users {
            let mut item: Item = HashMap::with_capacity(user.values.len() + 4);
            item.insert("pk".into(), s(user_pk(account, user.user_id.as_str())));
            item.insert("sk".into(), s(attrs_sk(integration_id)));
            item.insert("integrationId".into(), s(integration_id));
            item.insert("updatedAt".into(), s(now));
            for (name, value) in &user.values {
                item.insert(format!("{ATTR_PREFIX}{name}"), to_av(value));
            }
            requests.push((user.user_id.clone(), item));
        }
        let refused = for_each_bounded(requests, concurrency * batch::MAX_BATCH, "put", |(user, item)| {
            let req = with_condition!(
                self.client().put_item().table_name(&self.tables().end_users).set_item(Some(item)),
                not_suppressed_condition(now_secs)
            );
            async move {
                match req.send().await {
                    Ok(_) => Ok(None),
                    Err(e) if is_conditional_failure(&e) => Ok(Some(user)),
                    Err(e) => Err(sdk_error("PutItem", e)),
                }
            }
        })
        .await?;
        Ok(refused.into_iter().flatten().collect())
    }

    /// The user's attributes, per integration.
    pub async fn read_user(
        &self,
        account: &AccountId,
        user_id: &str,
    ) -> Result<Vec<StoredAttributes>, StoreError> {
        let mut out = Vec::new();
        for item in self.user_items(account, user_id).await? {
            if !get_s(&item, "sk")?.starts_with("A#") || is_tombstone(&item) {
                continue;
            }
            let values = item
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(ATTR_PREFIX)?.to_string(), from_av(v)?)))
                .collect();
            out.push(StoredAttributes {
                integration_id: get_s(&item, "integrationId")?.to_string(),
                updated_at: get_s(&item, "updatedAt")?.to_string(),
                values,
                client_ip: get_s(&item, "clientIp").ok().map(str::to_string),
            });
        }
        Ok(out)
    }
}

impl DynamoStore {
    /// One user's values and operations as one UpdateItem, ordered by the write's source time
    /// when it has one (docs/DECISIONS.md, "Source-time ordering"), keeping the attributes it
    /// does not name. With `only_existing`, writes nothing unless the user already has
    /// attributes of this integration. `client_ip` is recorded beside the attributes (MoEngage's
    /// `ip`: reads show it apart from them).
    pub async fn update_user(
        &self,
        account: &AccountId,
        integration_id: &str,
        user: &UserWrite<'_>,
        only_existing: bool,
        now: &str,
        client_ip: Option<&str>,
    ) -> Result<Written, StoreError> {
        self.apply(Plan::of(account, integration_id, user), only_existing, now, client_ip).await
    }

    /// In order, the write is one UpdateItem whose condition holds. Out of order, the failed
    /// condition returns the stored item (no read is billed), and the write is sent again
    /// without the attributes it found newer; again only if another write got in between.
    async fn apply(
        &self,
        mut plan: Plan,
        only_existing: bool,
        now: &str,
        client_ip: Option<&str>,
    ) -> Result<Written, StoreError> {
        let mut stale = Vec::new();
        for _ in 0..MAX_ORDERING_ATTEMPTS {
            if plan.is_empty() {
                return Ok(Written { written: true, stale, ..Written::default() });
            }
            let req = plan.request(self, only_existing, now, client_ip);
            let err = match req.send().await {
                Ok(_) => return Ok(Written { written: true, stale, ..Written::default() }),
                Err(e) if is_conditional_failure(&e) => e,
                Err(e)
                    if !plan.increment.is_empty()
                        && e.as_service_error().and_then(|x| x.code()) == Some("ValidationException") =>
                {
                    return Ok(Written { written: false, stale, overflow: true, suppressed: false });
                }
                Err(e) => return Err(sdk_error("UpdateItem", e)),
            };
            let old = err.into_service_error();
            let old = match &old {
                UpdateItemError::ConditionalCheckFailedException(c) => c.item(),
                _ => None,
            };
            let now_secs = now_secs(now);
            match old {
                Some(item) if is_suppressed(item, now_secs) => {
                    return Ok(Written { written: false, stale, overflow: false, suppressed: true });
                }
                None if only_existing => return Ok(Written { written: false, stale, ..Written::default() }),
                Some(item) if only_existing && !item.contains_key("integrationId") => {
                    return Ok(Written { written: false, stale, ..Written::default() });
                }
                None => {}
                Some(item) => stale.extend(plan.drop_stale(item)),
            }
        }
        Err(StoreError::unavailable("UpdateItem", "the user's attributes kept changing under newer writes"))
    }

    /// Whether the user has an item of this integration (one strongly consistent GetItem).
    pub async fn user_has_integration(
        &self,
        account: &AccountId,
        user_id: &str,
        integration_id: &str,
    ) -> Result<bool, StoreError> {
        self.exists(&self.tables().end_users, user_pk(account, user_id), attrs_sk(integration_id)).await
    }

    /// The partition keys (of `users`) that hold an item of this integration.
    async fn existing_users(
        &self,
        account: &AccountId,
        integration_id: &str,
        users: &[&UserWrite<'_>],
        now_secs: i64,
    ) -> Result<HashMap<String, ()>, StoreError> {
        let keys: Vec<Item> = users
            .iter()
            .map(|u| key(user_pk(account, u.user_id.as_str()), attrs_sk(integration_id)))
            .collect();
        let projection = ["pk", "integrationId", super::suppression::SUPPRESSED_UNTIL];
        let found =
            batch::get_all(self.client(), &self.tables().end_users, keys, &projection, WRITE_CONCURRENCY)
                .await?;
        // A tombstone is no user: a live one is refused by the write itself, as suppressed.
        found
            .iter()
            .filter(|item| item.contains_key("integrationId") || is_suppressed(item, now_secs))
            .map(|item| Ok((get_s(item, "pk")?.to_string(), ())))
            .collect()
    }

    /// Every item of a user's partition (strongly consistent: a read returns what the last
    /// acknowledged write wrote).
    pub(crate) async fn user_items(
        &self,
        account: &AccountId,
        user_id: &str,
    ) -> Result<Vec<Item>, StoreError> {
        self.query_all(&self.tables().end_users, &user_pk(account, user_id)).await
    }
}
