//! Integrations in the config table.
//!
//! - `ACCOUNT#<accountId>` / `INTEGRATION#<integrationId>`: the definition, the registry of
//!   every attribute name it ever used with its type, the token's hash, a version;
//! - `ITOKEN#<sha256(token)>` / `ITOKEN`: a copy of the current definition keyed by the token
//!   (without the registry of names, so its size is bounded by the definition's limits), so
//!   that `POST /public/v1/user/data` finds the integration with one GetItem, which a warm
//!   instance repeats at most once per [`DEFINITION_STALENESS`] ([`TokenCache`]);
//! - the account item's `attributeHeadroom`: the attribute cap minus the attributes in use,
//!   decremented in the same transaction as every change, under the condition that it stays
//!   non-negative. Concurrent edits therefore cannot overshoot the cap.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use super::StoreError;
use super::accounts::account_pk;
use super::codec::{Item, get_n, get_s, n, s};
use super::dynamo::{DynamoStore, sdk_error};
use super::transact::{cancellation_reasons, condition_failed, transact_with_retry};
use domain::AccountId;
use domain::integration::{AttrType, Definition, MAX_INTEGRATIONS_PER_ACCOUNT, Property, PropertyPath};

/// Attempts of a transaction cancelled for transient reasons only, before a 503.

#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRecord {
    pub integration_id: String,
    pub account: AccountId,
    pub definition: Definition,
    /// Every attribute name this integration ever defined, with its (immutable) type.
    pub attribute_types: BTreeMap<String, AttrType>,
    /// Hex SHA-256 of the integration token; the token itself is never stored.
    pub token_hash: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum IntegrationWriteError {
    #[error("the account's attribute limit would be exceeded")]
    AttributeLimit,
    #[error("the account has as many integrations as it may")]
    IntegrationLimit,
    #[error("the integration changed concurrently")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn integration_sk(id: &str) -> String {
    format!("INTEGRATION#{id}")
}

fn token_pk(hash: &str) -> String {
    format!("ITOKEN#{hash}")
}

/// A property as stored in an integration item's `properties` JSON. The store's own type, not
/// the API's body, so that changing the API's JSON cannot change stored items: these field
/// names and the type names (`AttrType::as_str`) are what existing items hold.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct StoredProperty {
    path: String,
    name: String,
    #[serde(rename = "type")]
    attr_type: String,
}

impl StoredProperty {
    fn of(p: &Property) -> Self {
        Self {
            path: p.path.as_str().to_string(),
            name: p.name.clone(),
            attr_type: p.attr_type.as_str().into(),
        }
    }

    fn into_property(self) -> Result<Property, String> {
        Ok(Property {
            path: PropertyPath::parse(&self.path)?,
            name: self.name,
            attr_type: stored_type(&self.attr_type)?,
        })
    }
}

fn stored_type(name: &str) -> Result<AttrType, String> {
    AttrType::parse(name).ok_or_else(|| format!("unknown attribute type '{name}'"))
}

fn properties_json(properties: &[Property]) -> String {
    let stored: Vec<StoredProperty> = properties.iter().map(StoredProperty::of).collect();
    serde_json::to_string(&stored).expect("serializable")
}

fn properties_from_json(raw: &str) -> Result<Vec<Property>, String> {
    let stored: Vec<StoredProperty> = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    stored.into_iter().map(StoredProperty::into_property).collect()
}

/// `attributeTypes`: a JSON object of attribute name to type name (items before issue 14).
#[cfg(test)]
fn types_json(types: &BTreeMap<String, AttrType>) -> String {
    let stored: BTreeMap<&str, &str> = types.iter().map(|(name, t)| (name.as_str(), t.as_str())).collect();
    serde_json::to_string(&stored).expect("serializable")
}

fn types_from_json(raw: &str) -> Result<BTreeMap<String, AttrType>, String> {
    let stored: BTreeMap<String, String> = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    stored.into_iter().map(|(name, t)| Ok((name, stored_type(&t)?))).collect()
}

fn definition_attrs(rec: &IntegrationRecord) -> Vec<(&'static str, AttributeValue)> {
    let props = properties_json(&rec.definition.properties);
    vec![
        ("integrationId", s(&rec.integration_id)),
        ("accountId", s(rec.account.as_str())),
        ("name", s(&rec.definition.name)),
        ("userIdentifierProperty", s(rec.definition.user_identifier.as_str())),
        ("properties", s(props)),
        ("tokenHash", s(&rec.token_hash)),
        ("version", n(rec.version)),
        ("createdAt", n(rec.created_at)),
        ("updatedAt", n(rec.updated_at)),
    ]
}

fn record_from_item(item: &Item) -> Result<IntegrationRecord, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("integration item: {e}"));
    let definition = Definition {
        name: get_s(item, "name")?.to_string(),
        user_identifier: PropertyPath::parse(get_s(item, "userIdentifierProperty")?).map_err(corrupt)?,
        properties: properties_from_json(get_s(item, "properties")?).map_err(corrupt)?,
    };
    // The definition's own types, and the registry of items written before issue 14.
    let mut attribute_types: BTreeMap<String, AttrType> = match item.get("attributeTypes") {
        Some(_) => types_from_json(get_s(item, "attributeTypes")?).map_err(corrupt)?,
        None => BTreeMap::new(),
    };
    attribute_types.extend(definition.properties.iter().map(|p| (p.name.clone(), p.attr_type)));
    Ok(IntegrationRecord {
        integration_id: get_s(item, "integrationId")?.to_string(),
        account: AccountId::parse(get_s(item, "accountId")?).map_err(|e| corrupt(e.to_string()))?,
        definition,
        attribute_types,
        token_hash: get_s(item, "tokenHash")?.to_string(),
        version: get_n(item, "version")?,
        created_at: get_n(item, "createdAt")?,
        updated_at: get_n(item, "updatedAt")?,
    })
}

impl DynamoStore {
    fn put_integration(&self, rec: &IntegrationRecord, condition: Option<(&str, i64)>) -> TransactWriteItem {
        let mut item: Item = definition_attrs(rec).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        item.insert("pk".into(), s(account_pk(&rec.account)));
        item.insert("sk".into(), s(integration_sk(&rec.integration_id)));
        let mut put = Put::builder().table_name(&self.tables().config).set_item(Some(item));
        put = match condition {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some((expr, version)) => {
                put.condition_expression(expr).expression_attribute_values(":v", n(version))
            }
        };
        TransactWriteItem::builder().put(put.build().expect("put is complete")).build()
    }

    fn put_token_item(&self, rec: &IntegrationRecord) -> TransactWriteItem {
        let mut item: Item = definition_attrs(rec).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        item.insert("pk".into(), s(token_pk(&rec.token_hash)));
        item.insert("sk".into(), s("ITOKEN"));
        let put =
            Put::builder().table_name(&self.tables().config).set_item(Some(item)).build().expect("complete");
        TransactWriteItem::builder().put(put).build()
    }

    /// Moves the account's attribute headroom by `-used` (used > 0 consumes headroom) and its
    /// count of integrations by `integrations` (+1 on a create, refused at
    /// [`MAX_INTEGRATIONS_PER_ACCOUNT`]; -1 on a delete).
    fn consume_headroom(&self, account: &AccountId, used: i64, integrations: i64) -> TransactWriteItem {
        let mut update = Update::builder()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(account)))
            .key("sk", s("ACCOUNT"))
            .expression_attribute_values(":d", n(-used));
        update = if integrations == 0 {
            update.update_expression("ADD attributeHeadroom :d")
        } else {
            update
                .update_expression("ADD attributeHeadroom :d, integrationCount :c")
                .expression_attribute_values(":c", n(integrations))
        };
        let mut conditions = vec!["attribute_exists(pk)"];
        if used > 0 {
            conditions.push("attributeHeadroom >= :need");
            update = update.expression_attribute_values(":need", n(used));
        }
        if integrations > 0 {
            // Accounts made before the count existed start counting at their next create.
            conditions.push("(attribute_not_exists(integrationCount) OR integrationCount < :most)");
            update = update.expression_attribute_values(":most", n(MAX_INTEGRATIONS_PER_ACCOUNT));
        }
        update = update.condition_expression(conditions.join(" AND "));
        TransactWriteItem::builder().update(update.build().expect("update is complete")).build()
    }

    /// How many integrations the account has made (and not deleted) since it was counted.
    async fn integration_count(&self, account: &AccountId) -> Result<i64, StoreError> {
        let item = self.account_item(account, Some("integrationCount")).await?;
        Ok(item.and_then(|i| get_n(&i, "integrationCount").ok()).unwrap_or(0))
    }

    /// Writes an integration that has no token (the implicit MoEngage integration, which is
    /// found by its id, never by a token): creates it when `old` is `None`, else replaces `old`
    /// if nobody changed it meanwhile. The account's attribute headroom moves by the change in
    /// property count in the same transaction, exactly as for token integrations.
    pub async fn put_tokenless_integration(
        &self,
        old: Option<&IntegrationRecord>,
        new: &IntegrationRecord,
    ) -> Result<(), IntegrationWriteError> {
        let before = old.map_or(0, |o| o.definition.properties.len() as i64);
        let used = new.definition.properties.len() as i64 - before;
        let condition = old.map(|o| ("version = :v", o.version));
        self.transact(vec![
            self.consume_headroom(&new.account, used, 0),
            self.put_integration(new, condition),
        ])
        .await
    }

    /// Runs the transaction. A cancellation for a transient reason only (a concurrent
    /// transaction on one of its items, or throttling: nothing was applied) is retried with
    /// backoff; DynamoDB answers it to the loser of every race on the account's headroom item.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), IntegrationWriteError> {
        let Err(e) = transact_with_retry(self.client(), items).await else { return Ok(()) };
        let reasons = cancellation_reasons(&e).unwrap_or_default();
        // Item 1 is the integration: it changed since it was read (or, on a create, exists),
        // so whatever the headroom said was judged on a stale record. This includes an SDK
        // retry of a transaction that committed and lost its answer: that attempt used the
        // headroom too.
        if condition_failed(&reasons, 1) {
            return Err(IntegrationWriteError::Conflict);
        }
        // Item 0 is always the account's headroom.
        if condition_failed(&reasons, 0) {
            return Err(IntegrationWriteError::AttributeLimit);
        }
        Err(sdk_error("TransactWriteItems", e).into())
    }
}

fn retired_sk(integration_id: &str, name: &str) -> String {
    format!("ATYPE#{integration_id}#{name}")
}

impl DynamoStore {
    /// The recorded types of those of `names` the integration once imported and no longer does
    /// (one strongly consistent `BatchGetItem` per 100 names).
    pub async fn retired_types(
        &self,
        rec: &IntegrationRecord,
        names: &[&str],
    ) -> Result<BTreeMap<String, AttrType>, StoreError> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let pk = account_pk(&rec.account);
        let keys: Vec<Item> = names
            .iter()
            .map(|name| {
                Item::from([("pk".into(), s(&pk)), ("sk".into(), s(retired_sk(&rec.integration_id, name)))])
            })
            .collect();
        let found =
            super::batch::get_all(self.client(), &self.tables().config, keys, &["attrName", "attrType"], 4)
                .await?;
        let corrupt = |e: String| StoreError::Corrupt(format!("retired attribute item: {e}"));
        found
            .iter()
            .map(|item| {
                Ok((
                    get_s(item, "attrName")?.to_string(),
                    stored_type(get_s(item, "attrType")?).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    /// Records the types of names leaving the definition. Written before the change's
    /// transaction: if that fails, the names are still in the definition with these very
    /// types, so the records are true either way (puts of whole items: a retry rewrites them).
    pub async fn retire_names(
        &self,
        rec: &IntegrationRecord,
        retired: &BTreeMap<String, AttrType>,
    ) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        let pk = account_pk(&rec.account);
        let requests: Vec<WriteRequest> = retired
            .iter()
            .map(|(name, t)| {
                let item = Item::from([
                    ("pk".into(), s(&pk)),
                    ("sk".into(), s(retired_sk(&rec.integration_id, name))),
                    ("attrName".into(), s(name)),
                    ("attrType".into(), s(t.as_str())),
                ]);
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().expect("item is set"))
                    .build()
            })
            .collect();
        super::batch::write_all(self.client(), &self.tables().config, requests, 4).await
    }

    /// Creates it, consuming attribute headroom of the account atomically.
    pub async fn create_integration(&self, rec: &IntegrationRecord) -> Result<(), IntegrationWriteError> {
        let used = rec.definition.properties.len() as i64;
        let res = self
            .transact(vec![
                self.consume_headroom(&rec.account, used, 1),
                self.put_integration(rec, None),
                self.put_token_item(rec),
            ])
            .await;
        match res {
            // The account's item refused: its attribute headroom, or its count of integrations.
            Err(IntegrationWriteError::AttributeLimit)
                if self.integration_count(&rec.account).await? >= MAX_INTEGRATIONS_PER_ACCOUNT =>
            {
                Err(IntegrationWriteError::IntegrationLimit)
            }
            // The id is fresh, so "it exists" (or an unknown outcome) means an attempt of this
            // call may have committed and lost its answer: if the integration is there with this
            // token, it was created, once.
            Err(IntegrationWriteError::Conflict | IntegrationWriteError::Store(_)) => {
                match self.get_integration(&rec.account, &rec.integration_id).await {
                    Ok(Some(found)) if found.token_hash == rec.token_hash => Ok(()),
                    _ => res,
                }
            }
            other => other,
        }
    }

    /// Replaces `old` by `new` (same id and token), if nobody changed it meanwhile.
    pub async fn update_integration(
        &self,
        old: &IntegrationRecord,
        new: &IntegrationRecord,
    ) -> Result<(), IntegrationWriteError> {
        let used = new.definition.properties.len() as i64 - old.definition.properties.len() as i64;
        self.transact(vec![
            self.consume_headroom(&old.account, used, 0),
            self.put_integration(new, Some(("version = :v", old.version))),
            self.put_token_item(new),
        ])
        .await
    }

    pub async fn delete_integration(&self, rec: &IntegrationRecord) -> Result<(), IntegrationWriteError> {
        let freed = rec.definition.properties.len() as i64;
        let delete_def = Delete::builder()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(&rec.account)))
            .key("sk", s(integration_sk(&rec.integration_id)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(rec.version))
            .build()
            .expect("complete");
        let delete_token = Delete::builder()
            .table_name(&self.tables().config)
            .key("pk", s(token_pk(&rec.token_hash)))
            .key("sk", s("ITOKEN"))
            .build()
            .expect("complete");
        self.transact(vec![
            self.consume_headroom(&rec.account, -freed, -1),
            TransactWriteItem::builder().delete(delete_def).build(),
            TransactWriteItem::builder().delete(delete_token).build(),
        ])
        .await
    }

    pub async fn get_integration(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<IntegrationRecord>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(account)))
            .key("sk", s(integration_sk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.as_ref().map(record_from_item).transpose()
    }

    /// The integration a token belongs to (one strongly consistent GetItem).
    pub async fn integration_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<IntegrationRecord>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().config)
            .key("pk", s(token_pk(token_hash)))
            .key("sk", s("ITOKEN"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.as_ref().map(record_from_item).transpose()
    }

    pub async fn list_integrations(&self, account: &AccountId) -> Result<Vec<IntegrationRecord>, StoreError> {
        let items = self.query_prefix(&self.tables().config, &account_pk(account), "INTEGRATION#").await?;
        items.iter().map(record_from_item).collect()
    }
}

/// How old a definition a warm instance may judge a user-data call with. Every write of an
/// integration (`PATCH`, `DELETE`) waits this long after it committed before it answers, so a
/// call sent after that answer is judged by the new definition (docs/DECISIONS.md).
pub const DEFINITION_STALENESS: Duration = Duration::from_millis(1000);
/// Tokens an instance remembers before it forgets them all (a bound on memory).
const TOKEN_CACHE_MAX: usize = 4096;

/// Per warm instance: integrations by token hash, each re-read once it is
/// [`DEFINITION_STALENESS`] old. An entry's age counts from the moment its read was sent, so it
/// reflects every write committed before that moment. Unknown tokens are not remembered.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Arc<IntegrationRecord>, Instant)>>,
}

impl TokenCache {
    /// The integration `token_hash` belongs to, as of at most [`DEFINITION_STALENESS`] ago.
    pub async fn get(
        &self,
        store: &DynamoStore,
        token_hash: &str,
    ) -> Result<Option<Arc<IntegrationRecord>>, StoreError> {
        if let Some((rec, at)) = self.entries.lock().expect("not poisoned").get(token_hash)
            && at.elapsed() < DEFINITION_STALENESS
        {
            return Ok(Some(rec.clone()));
        }
        let asked = Instant::now();
        let found = store.integration_by_token(token_hash).await?.map(Arc::new);
        let mut entries = self.entries.lock().expect("not poisoned");
        match &found {
            Some(rec) => {
                if entries.len() >= TOKEN_CACHE_MAX {
                    entries.clear();
                }
                entries.insert(token_hash.to_string(), (rec.clone(), asked));
            }
            None => {
                entries.remove(token_hash);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_json_of_properties_and_types_is_pinned() {
        // Items written since the first release hold exactly this JSON; it must keep decoding.
        let properties = vec![
            Property {
                path: PropertyPath::parse("Type").unwrap(),
                name: "Customer_Type".into(),
                attr_type: AttrType::String,
            },
            Property {
                path: PropertyPath::parse("a.b").unwrap(),
                name: "Score".into(),
                attr_type: AttrType::Number,
            },
        ];
        let stored = r#"[{"path":"Type","name":"Customer_Type","type":"String"},{"path":"a.b","name":"Score","type":"Number"}]"#;
        assert_eq!(properties_json(&properties), stored);
        assert_eq!(properties_from_json(stored).unwrap(), properties);

        let types =
            BTreeMap::from([("Score".to_string(), AttrType::Number), ("Day".to_string(), AttrType::Date)]);
        let stored = r#"{"Day":"Date","Score":"Number"}"#;
        assert_eq!(types_json(&types), stored);
        assert_eq!(types_from_json(stored).unwrap(), types);
        assert!(properties_from_json(r#"[{"path":"x","name":"x","type":"string"}]"#).is_err());
    }
}
