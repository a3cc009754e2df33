//! Writes of integrations: each a transaction that moves the account's attribute headroom
//! (and count of integrations) with the integration's items, so concurrent edits cannot
//! overshoot the cap.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::codec::definition_attrs;
use super::{DEFINITIONS_STAMP, IntegrationRecord, IntegrationWriteError, integration_sk, token_pk};
use crate::StoreError;
use crate::accounts::account_pk;
use crate::codec::{Item, get_n, n, s};
use crate::dynamo::{DynamoStore, sdk_error};
use crate::transact::{cancellation_reasons, condition_failed, transact_with_retry};
use domain::AccountId;
use domain::integration::MAX_INTEGRATIONS_PER_ACCOUNT;

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
        // Every integration write passes here, so the same update moves the definitions'
        // stamp, which the instances' caches check instead of reading every definition again.
        update = update.expression_attribute_values(":one", n(1));
        update = if integrations == 0 {
            update.update_expression(format!("ADD attributeHeadroom :d, {DEFINITIONS_STAMP} :one"))
        } else {
            update
                .update_expression(format!(
                    "ADD attributeHeadroom :d, integrationCount :c, {DEFINITIONS_STAMP} :one"
                ))
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
}
