//! The segments table's side of a suppression (`crate::suppression`): the marker each member
//! add checks in its transaction, and the account's index of suppressed users.

use std::collections::{BTreeSet, HashSet};

use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem};

use super::keys::{shard_of, user_pk};
use crate::StoreError;
use crate::codec::{Item, get_n, get_s, key, n};
use crate::concurrent::for_each_bounded;
use crate::dynamo::DynamoStore;
use crate::suppression::SUPPRESSED_UNTIL;
use domain::AccountId;
use domain::user_data::UserId;

/// The marker's sort key, beside the user's reverse entries (`M#…`).
const MARKER_SK: &str = "SUPPRESSED";
/// Partitions of an account's index: a 1,000-user erase writes 125 items in each.
const INDEX_SHARDS: u32 = 8;
/// Copies of the account's gate, laid out as a segment's counters are (8 partitions of 32
/// items): a call's transactions take consecutive copies from a random start, so those in
/// flight together never share one (a transaction's ConditionCheck holds its item as a write
/// does), and one moved off a conflict lands on a busy copy rarely.
pub(crate) const GATES: u32 = 256;
const GATE_PARTITIONS: u32 = 8;
/// A raised gate stays up a day past the window it was raised for, so that the erases of that
/// day find it up and write nothing to it.
const GATE_SLACK_SECS: i64 = 86_400;

fn gate_pk(account: &AccountId, partition: u32) -> String {
    format!("{account}#SUPPGATE#{partition}")
}

/// The account's gate `k`: until when some user of the account may be suppressed.
fn gate_key(account: &AccountId, k: u32) -> Item {
    let k = k % GATES;
    key(gate_pk(account, k % GATE_PARTITIONS), format!("{:02}", k / GATE_PARTITIONS))
}

impl DynamoStore {
    /// Raises every gate of the account that is below `until` (8 strongly consistent Queries;
    /// a write per copy only when the gates are down or their day has passed).
    pub(crate) async fn raise_gates(&self, account: &AccountId, until: i64) -> Result<(), StoreError> {
        let parts = for_each_bounded(0..GATE_PARTITIONS, GATE_PARTITIONS as usize, "gates", |p| {
            let (store, pk) = (self.clone(), gate_pk(account, p));
            async move {
                let items = store.query_all(&store.tables().segments, &pk).await?;
                let up: Vec<String> = items
                    .iter()
                    .filter(|i| get_n(i, SUPPRESSED_UNTIL).is_ok_and(|u| u >= until))
                    .map(|i| Ok(get_s(i, "sk")?.to_string()))
                    .collect::<Result<_, StoreError>>()?;
                Ok((p, up))
            }
        })
        .await?;
        let up: HashSet<(u32, String)> =
            parts.into_iter().flat_map(|(p, sks)| sks.into_iter().map(move |sk| (p, sk))).collect();
        let down: Vec<u32> = (0..GATES)
            .filter(|k| !up.contains(&(k % GATE_PARTITIONS, format!("{:02}", k / GATE_PARTITIONS))))
            .collect();
        let raised = until.saturating_add(GATE_SLACK_SECS);
        for_each_bounded(down, 16, "gate", |k| {
            let req = self
                .client()
                .update_item()
                .table_name(&self.tables().segments)
                .set_key(Some(gate_key(account, k)))
                .update_expression("SET #u = :u")
                .condition_expression("attribute_not_exists(#u) OR #u < :u")
                .expression_attribute_names("#u", SUPPRESSED_UNTIL)
                .expression_attribute_values(":u", n(raised));
            async move {
                match req.send().await {
                    Ok(_) => Ok(()),
                    Err(e) if crate::dynamo::is_conditional_failure(&e) => Ok(()),
                    Err(e) => Err(crate::dynamo::sdk_error("UpdateItem", e)),
                }
            }
        })
        .await?;
        Ok(())
    }
}

impl DynamoStore {
    /// Of `ids`, those suppressed at `now_secs`, and whether the account's gate was up. A
    /// create or an override writes its members without a condition (a batch of a fresh
    /// generation), so it screens its ids before it writes and again after its head points at
    /// them ([`DynamoStore::create_segment_reporting`]). With the gate down (no erase in the
    /// account's window): one strongly consistent `GetItem`. Up: the account's index too
    /// (8 `Query`s), which an erase writes before it removes memberships.
    pub(super) async fn screen(
        &self,
        account: &AccountId,
        ids: &[UserId],
        now_secs: i64,
    ) -> Result<(bool, BTreeSet<String>), StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().segments)
            .set_key(Some(gate_key(account, super::keys::random_u32())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| crate::dynamo::sdk_error("GetItem", e))?;
        let up =
            out.item.as_ref().and_then(|i| get_n(i, SUPPRESSED_UNTIL).ok()).is_some_and(|u| u > now_secs);
        if !up {
            return Ok((false, BTreeSet::new()));
        }
        let suppressed: HashSet<String> =
            suppressed_users(self, account, now_secs).await?.into_iter().map(|(user, _)| user).collect();
        Ok((
            true,
            ids.iter()
                .filter(|id| suppressed.contains(id.as_str()))
                .map(|id| id.as_str().to_string())
                .collect(),
        ))
    }
}

/// A transaction's check that no user of the account is suppressed at `now_secs` (gate `k`).
pub(super) fn gate_check(table: &str, account: &AccountId, k: u32, now_secs: i64) -> TransactWriteItem {
    check(table, gate_key(account, k), now_secs)
}

fn index_pk(account: &AccountId, shard: u32) -> String {
    format!("{account}#SUPP#{shard}")
}

/// The marker and the index entry of a user suppressed until `until` (epoch seconds).
pub(crate) fn suppression_items(account: &AccountId, user: &str, until: i64) -> Vec<Item> {
    let mut marker = key(user_pk(account, user), MARKER_SK.into());
    marker.insert(SUPPRESSED_UNTIL.into(), n(until));
    let mut index = key(index_pk(account, shard_of(user) % INDEX_SHARDS), user.to_string());
    index.insert(SUPPRESSED_UNTIL.into(), n(until));
    vec![marker, index]
}

/// A transaction's check that `user` is not suppressed at `now_secs`.
pub(super) fn not_suppressed_check(
    table: &str,
    account: &AccountId,
    user: &str,
    now_secs: i64,
) -> TransactWriteItem {
    check(table, key(user_pk(account, user), MARKER_SK.into()), now_secs)
}

fn check(table: &str, item: Item, now_secs: i64) -> TransactWriteItem {
    let c = crate::suppression::not_suppressed_condition(now_secs);
    let mut check =
        ConditionCheck::builder().table_name(table).set_key(Some(item)).condition_expression(c.expr);
    for (k, v) in c.names {
        check = check.expression_attribute_names(k, v);
    }
    for (k, v) in c.values {
        check = check.expression_attribute_values(k, v);
    }
    TransactWriteItem::builder().condition_check(check.build().expect("complete")).build()
}

/// Every user of the account suppressed at `now_secs`, with the window's end.
pub(crate) async fn suppressed_users(
    store: &DynamoStore,
    account: &AccountId,
    now_secs: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let parts = for_each_bounded(0..INDEX_SHARDS, INDEX_SHARDS as usize, "suppression index", |shard| {
        let (store, pk) = (store.clone(), index_pk(account, shard));
        async move {
            let items = store.query_all(&store.tables().segments, &pk).await?;
            items
                .iter()
                .map(|i| Ok((get_s(i, "sk")?.to_string(), get_n(i, SUPPRESSED_UNTIL)?)))
                .collect::<Result<Vec<_>, StoreError>>()
        }
    })
    .await?;
    Ok(parts.into_iter().flatten().filter(|(_, until)| *until > now_secs).collect())
}
