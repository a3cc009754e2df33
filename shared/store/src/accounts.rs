//! Accounts and their systems, in the config table: `ACCOUNT#<id>`/`ACCOUNT` (limits and the
//! attribute headroom, see `integrations.rs`) and `ACCOUNT#<id>`/`SYSTEM#<guid>`. Written by
//! the operator (admin CLI).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};

use super::StoreError;
use super::codec::{Item, get_n, get_s, n, s};
use super::dynamo::{DynamoStore, sdk_error};
use super::transact::is_cancelled_by_condition;
use domain::{AccountId, SystemGuid};

pub(crate) fn account_pk(account: &AccountId) -> String {
    format!("ACCOUNT#{account}")
}

/// The partition of an account's limits: written by the operator only (docs/SECURITY.md).
pub(crate) fn limits_pk(account: &AccountId) -> String {
    format!("LIMITS#{account}")
}

fn system_sk(guid: SystemGuid) -> String {
    format!("SYSTEM#{guid}")
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
    /// Creates the account: its item (`ACCOUNT#<id>`/`ACCOUNT`, which the functions update:
    /// attribute headroom, integration count) and its limits item (`LIMITS#<id>`/`LIMITS`,
    /// which no function's role may write), in one transaction.
    pub async fn create_account(
        &self,
        account: &AccountId,
        attribute_limit: i64,
        rate_limit: i64,
        now: i64,
    ) -> Result<AccountRecord, StoreError> {
        let account_item = Put::builder()
            .table_name(&self.tables().config)
            .item("pk", s(account_pk(account)))
            .item("sk", s("ACCOUNT"))
            .item("accountId", s(account.as_str()))
            .item("attributeLimit", n(attribute_limit))
            .item("attributeHeadroom", n(attribute_limit))
            .item("createdAt", n(now))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("put is complete");
        let limits_item = Put::builder()
            .table_name(&self.tables().config)
            .item("pk", s(limits_pk(account)))
            .item("sk", s("LIMITS"))
            .item("rateLimit", n(rate_limit))
            .build()
            .expect("put is complete");
        let res = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(account_item).build())
            .transact_items(TransactWriteItem::builder().put(limits_item).build())
            .send()
            .await;
        match res {
            Ok(_) => Ok(AccountRecord {
                account_id: account.to_string(),
                attribute_limit,
                rate_limit,
                created_at: now,
            }),
            Err(e) if is_cancelled_by_condition(&e) => {
                Err(StoreError::AlreadyExists(format!("account {account}")))
            }
            Err(e) => Err(sdk_error("TransactWriteItems", e)),
        }
    }

    /// The account's item (only `projection` of it, if given), strongly consistent.
    pub(crate) async fn account_item(
        &self,
        account: &AccountId,
        projection: Option<&str>,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(account)))
            .key("sk", s("ACCOUNT"))
            .set_projection_expression(projection.map(str::to_string))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }

    pub async fn get_account(&self, account: &AccountId) -> Result<Option<AccountRecord>, StoreError> {
        let Some(item) = self.account_item(account, None).await? else { return Ok(None) };
        Ok(Some(AccountRecord {
            account_id: get_s(&item, "accountId")?.to_string(),
            attribute_limit: get_n(&item, "attributeLimit")?,
            rate_limit: self.rate_limit(account).await?.unwrap_or(0),
            created_at: get_n(&item, "createdAt")?,
        }))
    }

    fn account_exists(&self, account: &AccountId) -> TransactWriteItem {
        TransactWriteItem::builder()
            .condition_check(
                ConditionCheck::builder()
                    .table_name(&self.tables().config)
                    .key("pk", s(account_pk(account)))
                    .key("sk", s("ACCOUNT"))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .expect("condition check is complete"),
            )
            .build()
    }

    /// Writes `item` only if the account exists and the item does not.
    pub(super) async fn put_under_account(
        &self,
        account: &AccountId,
        item: Item,
        what: String,
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(&self.tables().config)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("put is complete");
        let res = self
            .client()
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
            ("sk".to_string(), s(system_sk(guid))),
            ("systemGuid".to_string(), s(guid.to_string())),
            ("createdAt".to_string(), n(now)),
        ]);
        self.put_under_account(account, item, format!("system {guid}")).await
    }

    /// Whether the account has this system (one strongly consistent GetItem).
    pub async fn system_exists(&self, account: &AccountId, system: SystemGuid) -> Result<bool, StoreError> {
        self.exists(&self.tables().config, account_pk(account), system_sk(system)).await
    }
}
