//! End-user data in the end-users table.
//!
//! Partition `<accountId>#<userId>`; item `A#<integrationId>` holds that integration's
//! attributes as top-level attributes named `a:<attribute name>` (the prefix keeps customer
//! names apart from ours), plus `integrationId`, `updatedAt` and, in the MoEngage item,
//! `clientIp` (the address of the last update). A user's whole object is one
//! Query; a merge is one UpdateItem; a replace is one PutItem per user, batched by 25.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use super::codec::{Item, get_s, key, s};
use super::dynamo::{DynamoStore, is_conditional_failure, sdk_error};
use super::{StoreError, batch};
use domain::AccountId;
use domain::user_data::{AttrValue, UserId};

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
    ) -> Result<bool, StoreError> {
        self.merge_user_from(account, integration_id, user, only_existing, now, None).await
    }

    /// Makes each user's attributes of this integration exactly those given. Returns the users
    /// skipped because `only_existing` was set and they had no attributes of this integration.
    pub async fn replace_users(
        &self,
        account: &AccountId,
        integration_id: &str,
        users: &[UserWrite<'_>],
        only_existing: bool,
        now: &str,
    ) -> Result<Vec<UserId>, StoreError> {
        let mut skipped = Vec::new();
        let existing = if only_existing {
            Some(self.existing_users(account, integration_id, users).await?)
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
        self.put_users(account, integration_id, &kept, now, WRITE_CONCURRENCY).await?;
        Ok(skipped)
    }

    /// Replaces each user's item of this integration (a `PutItem` each, 25 per
    /// `BatchWriteItem`, `concurrency` batches at a time). Callers never pass one user twice.
    pub async fn put_users(
        &self,
        account: &AccountId,
        integration_id: &str,
        users: &[&UserWrite<'_>],
        now: &str,
        concurrency: usize,
    ) -> Result<(), StoreError> {
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
            requests.push(batch::put(item));
        }
        batch::write_all(self.client(), &self.tables().end_users, requests, concurrency).await
    }

    /// The user's attributes, per integration.
    pub async fn read_user(
        &self,
        account: &AccountId,
        user_id: &str,
    ) -> Result<Vec<StoredAttributes>, StoreError> {
        let mut out = Vec::new();
        for item in self.user_items(account, user_id).await? {
            if !get_s(&item, "sk")?.starts_with("A#") {
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

    /// Erases every item of the user. Returns how many were deleted (0 for an unknown user).
    pub async fn delete_user(&self, account: &AccountId, user_id: &str) -> Result<usize, StoreError> {
        let items = self.user_items(account, user_id).await?;
        let count = items.len();
        let requests = items
            .into_iter()
            .map(|item| {
                batch::delete(HashMap::from([
                    ("pk".to_string(), item["pk"].clone()),
                    ("sk".to_string(), item["sk"].clone()),
                ]))
            })
            .collect();
        batch::write_all(self.client(), &self.tables().end_users, requests, WRITE_CONCURRENCY).await?;
        Ok(count)
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
    ) -> Result<bool, StoreError> {
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
        if only_existing {
            req = req.condition_expression("attribute_exists(pk)");
        }
        if let Some(ip) = client_ip {
            expr.push_str(", clientIp = :ip");
            req = req.expression_attribute_values(":ip", s(ip));
        }
        match req.update_expression(expr).send().await {
            Ok(_) => Ok(true),
            Err(e) if only_existing && is_conditional_failure(&e) => Ok(false),
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
    ) -> Result<HashMap<String, ()>, StoreError> {
        let keys: Vec<Item> = users
            .iter()
            .map(|u| key(user_pk(account, u.user_id.as_str()), attrs_sk(integration_id)))
            .collect();
        let found =
            batch::get_all(self.client(), &self.tables().end_users, keys, &["pk"], WRITE_CONCURRENCY).await?;
        found.iter().map(|item| Ok((get_s(item, "pk")?.to_string(), ()))).collect()
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
