//! End-user data in the end-users table.
//!
//! Partition `<accountId>#<userId>`; item `A#<integrationId>` holds that integration's
//! attributes as top-level attributes named `a:<attribute name>` (the prefix keeps customer
//! names apart from ours), plus `integrationId`, `updatedAt` and, in the MoEngage item,
//! `clientIp` (the address of the last update). A user's whole object is one
//! Query; a merge is one UpdateItem; a replace is one PutItem per user. Both carry
//! [`not_suppressed_condition`]: an erased user's items are tombstones (`suppression.rs`), and a
//! write that meets one fails its condition and writes nothing.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::codec::{Item, get_s, key, s};
use super::concurrent::for_each_bounded;
use super::dynamo::{DynamoStore, is_conditional_failure, sdk_error};
use super::suppression::{Condition, is_suppressed, is_tombstone, not_suppressed_condition};
use super::{StoreError, batch};
use domain::user_data::{AttrValue, UserId};
use domain::{AccountId, Timestamp};

const ATTR_PREFIX: &str = "a:";
/// Up to 4 batches of 25 for a 100-user request: all at once.
const WRITE_CONCURRENCY: usize = 4;

/// One integration's attributes of a user, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttributes {
    pub integration_id: String,
    pub updated_at: String,
    pub values: BTreeMap<String, AttrValue>,
    /// The client address recorded with the last update (MoEngage's `X-Forwarded-For`).
    pub client_ip: Option<String>,
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

/// Users a replace did not write.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplaceOutcome {
    /// `only_existing` was set and they had no attributes of this integration.
    pub skipped: Vec<UserId>,
    /// Erased and suppressed.
    pub suppressed: Vec<UserId>,
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

/// One user's write: attribute names with their values.
pub struct UserWrite<'a> {
    pub user_id: &'a UserId,
    pub values: Vec<(&'a str, &'a AttrValue)>,
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
    /// Sets the given attributes of one user, keeping the others. With `only_existing`, writes
    /// nothing (and returns false) unless the user already has attributes of this integration.
    pub async fn merge_user(
        &self,
        account: &AccountId,
        integration_id: &str,
        user: &UserWrite<'_>,
        only_existing: bool,
        now: &str,
    ) -> Result<MergeOutcome, StoreError> {
        self.merge_user_from(account, integration_id, user, only_existing, now, None).await
    }

    /// Makes each user's attributes of this integration exactly those given. Returns the users
    /// skipped because `only_existing` was set and they had no attributes of this integration,
    /// and those suppressed.
    pub async fn replace_users(
        &self,
        account: &AccountId,
        integration_id: &str,
        users: &[UserWrite<'_>],
        only_existing: bool,
        now: &str,
    ) -> Result<ReplaceOutcome, StoreError> {
        let mut skipped = Vec::new();
        let existing = if only_existing {
            Some(self.existing_users(account, integration_id, users, now_secs(now)).await?)
        } else {
            None
        };
        let kept: Vec<&UserWrite<'_>> = users
            .iter()
            .filter(|u| {
                let known =
                    existing.as_ref().is_none_or(|e| e.contains_key(&user_pk(account, u.user_id.as_str())));
                if !known {
                    skipped.push(u.user_id.clone());
                }
                known
            })
            .collect();
        let suppressed = self.put_users(account, integration_id, &kept, now, WRITE_CONCURRENCY).await?;
        Ok(ReplaceOutcome { skipped, suppressed })
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
    /// [`DynamoStore::merge_user`], also recording the client address the update came from
    /// (`clientIp`, outside the attributes: reads show it apart from them).
    pub async fn merge_user_from(
        &self,
        account: &AccountId,
        integration_id: &str,
        user: &UserWrite<'_>,
        only_existing: bool,
        now: &str,
        client_ip: Option<&str>,
    ) -> Result<MergeOutcome, StoreError> {
        let now_secs = now_secs(now);
        let mut expr = String::from("SET integrationId = :i, updatedAt = :u");
        let mut req = self
            .client()
            .update_item()
            .table_name(&self.tables().end_users)
            .key("pk", s(user_pk(account, user.user_id.as_str())))
            .key("sk", s(attrs_sk(integration_id)))
            .expression_attribute_values(":i", s(integration_id))
            .expression_attribute_values(":u", s(now));
        for (i, (name, value)) in user.values.iter().enumerate() {
            expr.push_str(&format!(", #a{i} = :v{i}"));
            req = req
                .expression_attribute_names(format!("#a{i}"), format!("{ATTR_PREFIX}{name}"))
                .expression_attribute_values(format!(":v{i}"), to_av(value));
        }
        let mut condition = not_suppressed_condition(now_secs);
        if only_existing {
            // Not `pk`: an ended tombstone has one, and holds no attributes.
            condition = condition.and("attribute_exists(integrationId)");
        }
        req = with_condition!(req, condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(ip) = client_ip {
            expr.push_str(", clientIp = :ip");
            req = req.expression_attribute_values(":ip", s(ip));
        }
        match req.update_expression(expr).send().await {
            Ok(_) => Ok(MergeOutcome::Written),
            Err(e) if is_conditional_failure(&e) => {
                // The item as it was, returned with the failure at no extra unit.
                let old = e.as_service_error().and_then(|s| match s {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        c.item.clone()
                    }
                    _ => None,
                });
                // Without `only_existing`, suppression is the only condition that can fail.
                if !only_existing || old.as_ref().is_some_and(|i| is_suppressed(i, now_secs)) {
                    Ok(MergeOutcome::Suppressed)
                } else {
                    Ok(MergeOutcome::Skipped)
                }
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
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
        users: &[UserWrite<'_>],
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
