//! Integrations in the config table.
//!
//! - `ACCOUNT#<accountId>` / `INTEGRATION#<integrationId>`: the definition, the registry of
//!   every attribute name it ever used with its type, the token's hash, a version;
//! - `ITOKEN#<sha256(token)>` / `ITOKEN`: a copy of the current definition keyed by the token
//!   (without the registry of names, so its size is bounded by the definition's limits), so
//!   that `POST /public/v1/user/data` finds the integration with one GetItem, which a warm
//!   instance repeats at most once per [`DEFINITION_STALENESS`] (the user-data function's cache);
//! - the account item's `attributeHeadroom`: the attribute cap minus the attributes in use,
//!   decremented in the same transaction as every change, under the condition that it stays
//!   non-negative. Concurrent edits therefore cannot overshoot the cap.

//!
//! One file per job: `codec.rs` (items to records and back), `write.rs` (the transactions and
//! their retry), `retired.rs` (the types of names an integration no longer imports); the reads
//! are here.

mod cache;
mod codec;
mod retired;
mod write;

pub use cache::DefinitionsCache;

use std::collections::BTreeMap;
use std::time::Duration;

use super::StoreError;
use super::accounts::account_pk;
use super::codec::s;
use super::dynamo::{DynamoStore, sdk_error};
use codec::record_from_item;
use domain::AccountId;
use domain::integration::{AttrType, Definition};

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

/// A tokenless integration's `tokenHash`: no token hash (64 hex characters) equals it.
const NO_TOKEN: &str = "none";

impl IntegrationRecord {
    /// An integration found by its id, never by a token (the implicit MoEngage integration):
    /// `definition` and `attribute_types` as of `now`, succeeding `current` (`None`: its first
    /// version). Written with [`DynamoStore::put_tokenless_integration`].
    pub fn tokenless(
        account: &AccountId,
        integration_id: &str,
        current: Option<&IntegrationRecord>,
        definition: Definition,
        attribute_types: BTreeMap<String, AttrType>,
        now: i64,
    ) -> Self {
        Self {
            integration_id: integration_id.to_string(),
            account: account.clone(),
            definition,
            attribute_types,
            token_hash: NO_TOKEN.to_string(),
            version: current.map_or(1, |r| r.version + 1),
            created_at: current.map_or(now, |r| r.created_at),
            updated_at: now,
        }
    }
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

impl DynamoStore {
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

    /// The account's definitions stamp: every integration write adds 1 to it in its own
    /// transaction (on the account item, with the attribute headroom). One strongly consistent
    /// `GetItem` of the account item (1 RCU), whatever the number of definitions; read it
    /// *before* the definitions it stands for.
    pub async fn definitions_stamp(&self, account: &AccountId) -> Result<i64, StoreError> {
        let item = self.account_item(account, Some(DEFINITIONS_STAMP)).await?;
        Ok(item.and_then(|i| crate::codec::get_n(&i, DEFINITIONS_STAMP).ok()).unwrap_or(0))
    }

    pub async fn list_integrations(&self, account: &AccountId) -> Result<Vec<IntegrationRecord>, StoreError> {
        let items = self.query_prefix(&self.tables().config, &account_pk(account), "INTEGRATION#").await?;
        items.iter().map(record_from_item).collect()
    }
}

/// The account item's attribute that every integration write adds 1 to.
const DEFINITIONS_STAMP: &str = "definitionsStamp";

/// How old a definition a warm instance may judge a user-data call with. Every write of an
/// integration (`PATCH`, `DELETE`) waits this long after it committed before it answers, so a
/// call sent after that answer is judged by the new definition (docs/DECISIONS.md).
pub const DEFINITION_STALENESS: Duration = Duration::from_millis(1000);
