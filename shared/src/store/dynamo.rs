//! DynamoDB implementation of the store traits, plus the operator's writes (admin CLI).
//!
//! Item layout (see `docs/TABLES.md`):
//! - config table: `ACCOUNT#<id>`/`ACCOUNT`, `ACCOUNT#<id>`/`SYSTEM#<guid>`,
//!   `CLIENT#<id>`/`CLIENT`, `CLIENT#<id>`/`FAILURES`, `JWKS`/`KEY#<kid>`;
//! - keys table: `SIGNING`/`KEY#<kid>`.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem,
};
use jsonwebtoken::jwk::Jwk;

use super::schema::TableDef;
use super::{
    ClientLookup, ClientRecord, ClientStore, FailureWindow, PublicKeyStore, SigningKeyStore, StoreError,
    StoredSigningKey,
};
use crate::auth::{ClientSecret, SecretHash};
use crate::config::Tables;
use crate::domain::{AccountId, ClientId, ScopeSet, SystemGuid};

pub(crate) type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!("attribute '{name}' missing or not a string"))),
    }
}

pub(crate) fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => {
            v.parse().map_err(|_| StoreError::Corrupt(format!("attribute '{name}' is not an integer")))
        }
        _ => Err(StoreError::Corrupt(format!("attribute '{name}' missing or not a number"))),
    }
}

pub(crate) fn opt_n(item: &Item, name: &str) -> Result<Option<i64>, StoreError> {
    if item.contains_key(name) { get_n(item, name).map(Some) } else { Ok(None) }
}

/// Maps any SDK failure that callers do not handle themselves. The cause is logged where the
/// error is turned into a response, never sent to the caller.
pub(crate) fn sdk_error<E, R>(op: &'static str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("").to_string();
    let detail = match e.as_service_error() {
        Some(service) => format!("{op}: {code}: {}", service.message().unwrap_or("")),
        None => format!("{op}: {}", aws_smithy_runtime_api::client::result::SdkError::<E, R>::to_string(&e)),
    };
    match code.as_str() {
        "ResourceNotFoundException" => StoreError::Corrupt(detail),
        _ => StoreError::Unavailable(detail),
    }
}

pub(crate) fn is_conditional_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

pub(crate) fn is_cancelled_by_condition<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("TransactionCanceledException")
        && e.as_service_error()
            .and_then(|s| s.message())
            .is_some_and(|m| m.contains("ConditionalCheckFailed"))
}

const JWKS_PK: &str = "JWKS";
const SIGNING_PK: &str = "SIGNING";

pub(crate) fn account_pk(account: &AccountId) -> String {
    format!("ACCOUNT#{account}")
}

fn client_pk(id: &ClientId) -> String {
    format!("CLIENT#{id}")
}

fn clients_of(account: &AccountId) -> String {
    format!("ACCOUNT#{account}#CLIENTS")
}

/// An account as the operator created it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRecord {
    pub account_id: String,
    pub attribute_limit: i64,
    pub rate_limit: i64,
    pub created_at: i64,
}

impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates every table that does not exist yet and waits until each is active.
    pub async fn create_tables(&self) -> Result<Vec<String>, StoreError> {
        let mut created = Vec::new();
        for (def, name) in self.tables.named() {
            if self.create_table(def, name).await? {
                created.push(name.to_string());
            }
        }
        Ok(created)
    }

    async fn create_table(&self, def: &TableDef, name: &str) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(def.hash_key, def.range_key)));
        for a in def.key_attributes() {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("name and type are set"),
            );
        }
        for ix in def.indexes {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(ix.name)
                    .set_key_schema(Some(key_schema(ix.hash_key, ix.range_key)))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .expect("index is complete"),
            );
        }
        let created = match req.send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("ResourceInUseException") => false,
            Err(e) => return Err(sdk_error("CreateTable", e)),
        };
        self.wait_active(name).await?;
        if created && let Some(ttl) = def.ttl_attribute {
            self.client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(ttl)
                        .enabled(true)
                        .build()
                        .expect("ttl spec is complete"),
                )
                .send()
                .await
                .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
        }
        Ok(created)
    }

    async fn wait_active(&self, name: &str) -> Result<(), StoreError> {
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTable", e))?;
            let active = out.table().and_then(|t| t.table_status()).map(|s| s.as_str() == "ACTIVE");
            if active == Some(true) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!("table {name} did not become active")))
    }

    pub async fn create_account(
        &self,
        account: &AccountId,
        attribute_limit: i64,
        rate_limit: i64,
        now: i64,
    ) -> Result<AccountRecord, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.tables.config)
            .item("pk", s(account_pk(account)))
            .item("sk", s("ACCOUNT"))
            .item("accountId", s(account.as_str()))
            .item("attributeLimit", n(attribute_limit))
            .item("rateLimit", n(rate_limit))
            .item("attributeHeadroom", n(attribute_limit))
            .item("createdAt", n(now))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(AccountRecord {
                account_id: account.to_string(),
                attribute_limit,
                rate_limit,
                created_at: now,
            }),
            Err(e) if is_conditional_failure(&e) => {
                Err(StoreError::AlreadyExists(format!("account {account}")))
            }
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    pub async fn get_account(&self, account: &AccountId) -> Result<Option<AccountRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.config)
            .key("pk", s(account_pk(account)))
            .key("sk", s("ACCOUNT"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item
            .map(|item| {
                Ok(AccountRecord {
                    account_id: get_s(&item, "accountId")?.to_string(),
                    attribute_limit: get_n(&item, "attributeLimit")?,
                    rate_limit: get_n(&item, "rateLimit")?,
                    created_at: get_n(&item, "createdAt")?,
                })
            })
            .transpose()
    }

    fn account_exists(&self, account: &AccountId) -> TransactWriteItem {
        TransactWriteItem::builder()
            .condition_check(
                ConditionCheck::builder()
                    .table_name(&self.tables.config)
                    .key("pk", s(account_pk(account)))
                    .key("sk", s("ACCOUNT"))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .expect("condition check is complete"),
            )
            .build()
    }

    /// Writes `item` only if the account exists and the item does not.
    async fn put_under_account(
        &self,
        account: &AccountId,
        item: Item,
        what: String,
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(&self.tables.config)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("put is complete");
        let res = self
            .client
            .transact_write_items()
            .transact_items(self.account_exists(account))
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_cancelled_by_condition(&e) => {
                if self.get_account(account).await?.is_none() {
                    Err(StoreError::NotFound(format!("account {account}")))
                } else {
                    Err(StoreError::AlreadyExists(what))
                }
            }
            Err(e) => Err(sdk_error("TransactWriteItems", e)),
        }
    }

    pub async fn create_system(
        &self,
        account: &AccountId,
        guid: SystemGuid,
        now: i64,
    ) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("pk".to_string(), s(account_pk(account))),
            ("sk".to_string(), s(format!("SYSTEM#{guid}"))),
            ("systemGuid".to_string(), s(guid.to_string())),
            ("createdAt".to_string(), n(now)),
        ]);
        self.put_under_account(account, item, format!("system {guid}")).await
    }

    /// Creates a client; the secret is returned once and only its hash is stored.
    pub async fn create_client(
        &self,
        account: &AccountId,
        name: &str,
        scopes: ScopeSet,
        now: i64,
    ) -> Result<(ClientRecord, ClientSecret), StoreError> {
        let secret = ClientSecret::generate();
        let record = ClientRecord {
            client_id: ClientId::generate(),
            account: account.clone(),
            name: name.to_string(),
            secret_hash: secret.hash(),
            scopes,
            disabled: false,
            created_at: now,
        };
        let item = HashMap::from([
            ("pk".to_string(), s(client_pk(&record.client_id))),
            ("sk".to_string(), s("CLIENT")),
            ("gsi1pk".to_string(), s(clients_of(account))),
            ("gsi1sk".to_string(), s(record.client_id.as_str())),
            ("clientId".to_string(), s(record.client_id.as_str())),
            ("accountId".to_string(), s(account.as_str())),
            ("name".to_string(), s(name)),
            ("secretHash".to_string(), s(record.secret_hash.to_base64())),
            ("scopes".to_string(), s(scopes.to_string())),
            ("disabled".to_string(), AttributeValue::Bool(false)),
            ("createdAt".to_string(), n(now)),
        ]);
        self.put_under_account(account, item, format!("client {}", record.client_id)).await?;
        Ok((record, secret))
    }

    pub async fn list_clients(&self, account: &AccountId) -> Result<Vec<ClientRecord>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.config)
                .index_name(super::schema::CONFIG.indexes[0].name)
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(clients_of(account)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in page.items() {
                out.push(client_from_item(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// A new secret for an existing client; the old one stops working at once.
    pub async fn rotate_client_secret(&self, id: &ClientId) -> Result<ClientSecret, StoreError> {
        let secret = ClientSecret::generate();
        self.update_client(id, "SET secretHash = :v", s(secret.hash().to_base64())).await?;
        Ok(secret)
    }

    pub async fn disable_client(&self, id: &ClientId) -> Result<(), StoreError> {
        self.update_client(id, "SET disabled = :v", AttributeValue::Bool(true)).await
    }

    async fn update_client(
        &self,
        id: &ClientId,
        expr: &str,
        value: AttributeValue,
    ) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.config)
            .key("pk", s(client_pk(id)))
            .key("sk", s("CLIENT"))
            .update_expression(expr)
            .expression_attribute_values(":v", value)
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::NotFound(format!("client {id}"))),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    /// Generates a new signing key and makes it the current one. The public halves of the
    /// previous keys stay published for `retire_after_secs` (at least the token lifetime), so
    /// tokens they signed keep verifying; their private halves are deleted at once.
    pub async fn rotate_signing_key(
        &self,
        now: i64,
        retire_after_secs: i64,
    ) -> Result<crate::auth::GeneratedKey, StoreError> {
        let key = crate::auth::keys::generate().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let jwk_json =
            serde_json::to_string(&key.public_jwk).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let previous_public = self.query_all(&self.tables.config, JWKS_PK).await?;
        let previous_private = self.query_all(&self.tables.keys, SIGNING_PK).await?;
        // Public first: a verifier must be able to find the key before any token carries it.
        self.client
            .put_item()
            .table_name(&self.tables.config)
            .item("pk", s(JWKS_PK))
            .item("sk", s(format!("KEY#{}", key.kid)))
            .item("kid", s(&key.kid))
            .item("jwk", s(jwk_json))
            .item("createdAt", n(now))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        self.client
            .put_item()
            .table_name(&self.tables.keys)
            .item("pk", s(SIGNING_PK))
            .item("sk", s(format!("KEY#{}", key.kid)))
            .item("kid", s(&key.kid))
            .item("privateKeyPem", s(&key.private_pem))
            .item("createdAt", n(now))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        for item in previous_public {
            let retire_at = opt_n(&item, "retireAt")?;
            if retire_at.is_some_and(|t| t <= now) {
                self.delete(&self.tables.config, &item).await?;
            } else if retire_at.is_none() {
                self.client
                    .update_item()
                    .table_name(&self.tables.config)
                    .key("pk", item["pk"].clone())
                    .key("sk", item["sk"].clone())
                    .update_expression("SET retireAt = :r")
                    .expression_attribute_values(":r", n(now + retire_after_secs))
                    .send()
                    .await
                    .map_err(|e| sdk_error("UpdateItem", e))?;
            }
        }
        for item in previous_private {
            self.delete(&self.tables.keys, &item).await?;
        }
        Ok(key)
    }

    /// Every item of one partition, strongly consistent, all pages.
    pub(crate) async fn query_all(&self, table: &str, pk: &str) -> Result<Vec<Item>, StoreError> {
        self.query_prefix(table, pk, "").await
    }

    /// Every item of one partition whose sort key starts with `sk_prefix`, strongly
    /// consistent, all pages.
    pub(crate) async fn query_prefix(
        &self,
        table: &str,
        pk: &str,
        sk_prefix: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut query = self.client.query().table_name(table).expression_attribute_values(":p", s(pk));
            query = if sk_prefix.is_empty() {
                query.key_condition_expression("pk = :p")
            } else {
                query
                    .key_condition_expression("pk = :p AND begins_with(sk, :s)")
                    .expression_attribute_values(":s", s(sk_prefix))
            };
            let page = query
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn delete(&self, table: &str, item: &Item) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(table)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }
}

fn key_schema(hash: &str, range: Option<&str>) -> Vec<KeySchemaElement> {
    let mut v = vec![
        KeySchemaElement::builder().attribute_name(hash).key_type(KeyType::Hash).build().expect("complete"),
    ];
    if let Some(r) = range {
        v.push(
            KeySchemaElement::builder().attribute_name(r).key_type(KeyType::Range).build().expect("complete"),
        );
    }
    v
}

fn client_from_item(item: &Item) -> Result<ClientRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("client item: {what}"));
    Ok(ClientRecord {
        client_id: ClientId::parse(get_s(item, "clientId")?).map_err(|_| corrupt("clientId"))?,
        account: AccountId::parse(get_s(item, "accountId")?).map_err(|_| corrupt("accountId"))?,
        name: get_s(item, "name")?.to_string(),
        secret_hash: SecretHash::from_base64(get_s(item, "secretHash")?)
            .ok_or_else(|| corrupt("secretHash"))?,
        scopes: ScopeSet::parse(get_s(item, "scopes")?).map_err(|_| corrupt("scopes"))?,
        disabled: matches!(item.get("disabled"), Some(AttributeValue::Bool(true))),
        created_at: get_n(item, "createdAt")?,
    })
}

impl ClientStore for DynamoStore {
    async fn client_with_failures(&self, id: &ClientId) -> Result<ClientLookup, StoreError> {
        // Both items share the partition, so one strongly consistent Query reads them.
        let out = self
            .client
            .query()
            .table_name(&self.tables.config)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s(client_pk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let mut lookup = ClientLookup::default();
        for item in out.items() {
            match get_s(item, "sk")? {
                "CLIENT" => lookup.client = Some(client_from_item(item)?),
                "FAILURES" => {
                    lookup.failures = Some(FailureWindow {
                        count: get_n(item, "failures")?.clamp(0, u32::MAX as i64) as u32,
                        window_start: get_n(item, "windowStart")?,
                    })
                }
                _ => {}
            }
        }
        Ok(lookup)
    }

    async fn record_failure(&self, id: &ClientId, now: i64, window_secs: i64) -> Result<(), StoreError> {
        // Count within the open window; when it has closed, start a new one.
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.config)
            .key("pk", s(client_pk(id)))
            .key("sk", s("FAILURES"))
            .update_expression("ADD failures :one")
            .condition_expression("windowStart > :cutoff")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cutoff", n(now - window_secs))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => {
                self.client
                    .put_item()
                    .table_name(&self.tables.config)
                    .item("pk", s(client_pk(id)))
                    .item("sk", s("FAILURES"))
                    .item("failures", n(1))
                    .item("windowStart", n(now))
                    .item("expiresAt", n(now + window_secs + 60))
                    .send()
                    .await
                    .map_err(|e| sdk_error("PutItem", e))?;
                Ok(())
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }
}

impl PublicKeyStore for DynamoStore {
    async fn public_keys(&self, now: i64) -> Result<Vec<Jwk>, StoreError> {
        let items = self.query_all(&self.tables.config, JWKS_PK).await?;
        let mut keys = Vec::with_capacity(items.len());
        for item in items {
            if opt_n(&item, "retireAt")?.is_some_and(|t| t <= now) {
                continue;
            }
            let jwk: Jwk = serde_json::from_str(get_s(&item, "jwk")?)
                .map_err(|e| StoreError::Corrupt(format!("jwk: {e}")))?;
            keys.push(jwk);
        }
        Ok(keys)
    }
}

impl SigningKeyStore for DynamoStore {
    async fn current_signing_key(&self) -> Result<Option<StoredSigningKey>, StoreError> {
        let items = self.query_all(&self.tables.keys, SIGNING_PK).await?;
        let mut best: Option<StoredSigningKey> = None;
        for item in items {
            let key = StoredSigningKey {
                kid: get_s(&item, "kid")?.to_string(),
                private_pem: get_s(&item, "privateKeyPem")?.to_string(),
                created_at: get_n(&item, "createdAt")?,
            };
            if best.as_ref().is_none_or(|b| key.created_at >= b.created_at) {
                best = Some(key);
            }
        }
        Ok(best)
    }
}
