//! API clients in the config table: `CLIENT#<id>`/`CLIENT` (listed per account through the
//! `byAccount` index, `ACCOUNT#<id>#CLIENTS`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::StoreError;
use super::codec::{Item, get_n, get_s, n, opt_n, s};
use super::dynamo::{DynamoStore, sdk_error};
use super::signing_keys::Revoke;
use super::transact::{cancellation_reasons, condition_failed, transact_with_retry};
use crate::SecretHash;
use domain::{AccountId, ClientId, ScopeSet};

/// Reads of the client's version by one rotation that concurrent rotations keep outdating.
const ROTATE_ATTEMPTS: u32 = 5;

fn client_pk(id: &ClientId) -> String {
    format!("CLIENT#{id}")
}

fn clients_of(account: &AccountId) -> String {
    format!("ACCOUNT#{account}#CLIENTS")
}

#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client_id: ClientId,
    pub account: AccountId,
    pub name: String,
    pub secret_hash: SecretHash,
    pub scopes: ScopeSet,
    pub disabled: bool,
    pub created_at: i64,
    /// Bumped by every secret rotation and carried by every token minted with the secret, so a
    /// rotation refuses exactly the tokens of the secrets before it (docs/DECISIONS.md,
    /// "Revocation by secret version, not by clock").
    pub secret_version: i64,
}

impl DynamoStore {
    /// Stores a new client of the account under a fresh client id. Only the hash of its secret
    /// is given and stored: the caller generates the secret and shows it once.
    pub async fn create_client(
        &self,
        account: &AccountId,
        name: &str,
        scopes: ScopeSet,
        secret_hash: SecretHash,
        now: i64,
    ) -> Result<ClientRecord, StoreError> {
        let record = ClientRecord {
            client_id: ClientId::generate(),
            account: account.clone(),
            name: name.to_string(),
            secret_hash,
            scopes,
            disabled: false,
            created_at: now,
            secret_version: 0,
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
            ("secretVersion".to_string(), n(0)),
        ]);
        self.put_under_account(account, item, format!("client {}", record.client_id)).await?;
        Ok(record)
    }

    pub async fn list_clients(&self, account: &AccountId) -> Result<Vec<ClientRecord>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().config)
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

    /// Replaces an existing client's secret by the one `secret_hash` is the hash of (generated
    /// and shown by the caller) and bumps the secret version: the old secret stops working at
    /// once, and every token it minted carries a lower version, which the revocation entry
    /// written in the same transaction refuses (within a verifier's refresh). Returns the new
    /// version. A rotation that fails leaves the old secret and its tokens as they were.
    pub async fn rotate_client_secret(
        &self,
        id: &ClientId,
        secret_hash: &SecretHash,
        now: i64,
        longest_token_secs: i64,
    ) -> Result<i64, StoreError> {
        for attempt in 0..ROTATE_ATTEMPTS {
            let Some(current) = self.client_record(id).await? else {
                return Err(StoreError::NotFound(format!("client {id}")));
            };
            // The SDK resent a transaction whose first send committed (its answer lost), and
            // the resend found its own version taken (DynamoDB answers a resend within its
            // ClientRequestToken's 10 minutes as done; other servers do not): the client holds
            // this rotation's secret, which was generated for it alone.
            if attempt > 0 && current.secret_hash == *secret_hash {
                return Ok(current.secret_version);
            }
            let version = current.secret_version + 1;
            // Only from the version read: a concurrent rotation makes this one read again, so
            // versions, and the revocation entry with them, only rise.
            let client = Update::builder()
                .update_expression("SET secretHash = :h, secretVersion = :v")
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(secretVersion) OR secretVersion = :read)",
                )
                .expression_attribute_values(":h", s(secret_hash.to_base64()))
                .expression_attribute_values(":v", n(version))
                .expression_attribute_values(":read", n(current.secret_version));
            let revocation =
                self.client_revocation(id.as_str(), Revoke::SecretsBelow(version), now, longest_token_secs);
            if self.update_client_and_revoke(id, client, revocation).await? {
                return Ok(version);
            }
        }
        Err(StoreError::Busy {
            op: "TransactWriteItems",
            reason: "concurrent rotations of the client kept winning",
        })
    }

    /// The client gets no more tokens, and every token it holds stops verifying, whenever it
    /// was minted: the flag and the revocation entry are written in one transaction.
    pub async fn disable_client(
        &self,
        id: &ClientId,
        now: i64,
        longest_token_secs: i64,
    ) -> Result<(), StoreError> {
        let client = Update::builder()
            .update_expression("SET disabled = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true));
        let revocation = self.client_revocation(id.as_str(), Revoke::All, now, longest_token_secs);
        if self.update_client_and_revoke(id, client, revocation).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("client {id}")))
        }
    }

    /// Applies `update` (its expressions and condition) to the client's item and writes
    /// `revocation` in the same transaction. `false` when the update's condition failed:
    /// nothing was written.
    async fn update_client_and_revoke(
        &self,
        id: &ClientId,
        update: UpdateBuilder,
        revocation: TransactWriteItem,
    ) -> Result<bool, StoreError> {
        let client = update
            .table_name(&self.tables().config)
            .key("pk", s(client_pk(id)))
            .key("sk", s("CLIENT"))
            .build()
            .expect("update is complete");
        let actions = vec![TransactWriteItem::builder().update(client).build(), revocation];
        match transact_with_retry(self.client(), actions).await {
            Ok(()) => Ok(true),
            Err(e) if cancellation_reasons(&e).is_some_and(|r| condition_failed(&r, 0)) => Ok(false),
            Err(e) => Err(sdk_error("TransactWriteItems", e)),
        }
    }

    /// One client, read strongly consistent: the token endpoint judges a secret by it.
    pub async fn client_record(&self, id: &ClientId) -> Result<Option<ClientRecord>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().config)
            .key("pk", s(client_pk(id)))
            .key("sk", s("CLIENT"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.as_ref().map(client_from_item).transpose()
    }
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
        secret_version: opt_n(item, "secretVersion")?.unwrap_or(0),
    })
}
