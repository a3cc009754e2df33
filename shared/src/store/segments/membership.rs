//! Membership: which users are members and how many (the shard counters), and add / remove as
//! conditional transactions that keep the counters exact under concurrent calls.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::keys::{COUNTER_SK, SHARDS, member_of, member_sk, shard_of, shard_pk};
use super::{READ_CONCURRENCY, SegmentHead, SegmentView};
use crate::store::codec::{get_n, get_s, key, n};
use crate::store::concurrent::for_each_bounded;
use crate::store::dynamo::{DynamoStore, sdk_error};
use crate::store::{StoreError, batch};

/// DynamoDB's limit of actions per TransactWriteItems.
const MAX_TRANSACT: usize = 100;
const TRANSACT_ATTEMPTS: u32 = 10;

/// A head with the sums of its current generation's counters.
pub(super) fn view_of(head: SegmentHead, counters: &HashMap<String, (i64, i64)>) -> SegmentView {
    let mine = (0..SHARDS)
        .filter_map(|shard| counters.get(&shard_pk(&head.account, head.segment, &head.generation, shard)));
    let (mut user_count, mut updated_at) = (0, head.updated_at);
    for (n, at) in mine {
        user_count += n;
        updated_at = updated_at.max(*at);
    }
    SegmentView { head, user_count, updated_at }
}

/// One membership change: the member item and the counter of its shard.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub(super) pk: String,
    pub(super) user_id: String,
}

impl DynamoStore {
    /// Each non-empty shard's (count, last change in epoch ms): one BatchGetItem of 100 keys.
    pub(super) async fn counters(&self, head: &SegmentHead) -> Result<BTreeMap<u32, (i64, i64)>, StoreError> {
        let items = self.counter_items(std::slice::from_ref(head)).await?;
        Ok((0..SHARDS)
            .filter_map(|shard| {
                let pk = shard_pk(&head.account, head.segment, &head.generation, shard);
                items.get(&pk).map(|c| (shard, *c))
            })
            .collect())
    }

    /// The counter items of every shard of each head's current generation, by partition key:
    /// (count, last change in epoch ms).
    pub(super) async fn counter_items(
        &self,
        heads: &[SegmentHead],
    ) -> Result<HashMap<String, (i64, i64)>, StoreError> {
        let keys = heads
            .iter()
            .flat_map(|h| {
                (0..SHARDS).map(|shard| {
                    key(shard_pk(&h.account, h.segment, &h.generation, shard), COUNTER_SK.into())
                })
            })
            .collect();
        batch::get_all(
            self.client(),
            &self.tables().segments,
            keys,
            &["pk", "n", "updatedAt"],
            READ_CONCURRENCY,
        )
        .await?
        .iter()
        .map(|item| Ok((get_s(item, "pk")?.to_string(), (get_n(item, "n")?, get_n(item, "updatedAt")?))))
        .collect()
    }

    /// Which of `ids` are members now (strongly consistent; ⌈n/100⌉ BatchGetItem).
    pub(super) async fn present<'a>(
        &self,
        head: &SegmentHead,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<HashSet<String>, StoreError> {
        let keys = ids
            .map(|id| {
                key(shard_pk(&head.account, head.segment, &head.generation, shard_of(id)), member_sk(id))
            })
            .collect();
        batch::get_all(self.client(), &self.tables().segments, keys, &["sk"], READ_CONCURRENCY)
            .await?
            .iter()
            .map(member_of)
            .collect()
    }

    /// Applies membership changes (puts when `adding`, deletes otherwise) and their counter
    /// deltas in transactions of up to 100 actions, each member conditioned on its current
    /// state so that a concurrent call that made the same change first is not counted twice.
    /// Returns how many changes were applied by this call.
    pub(super) async fn apply_changes(
        &self,
        changes: Vec<Change>,
        adding: bool,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut by_counter: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in changes {
            by_counter.entry(c.pk).or_default().push(c.user_id);
        }
        // Pack whole counter groups while they fit; a group larger than a transaction is split.
        let mut groups: Vec<Vec<(String, Vec<String>)>> = Vec::new();
        let mut current: Vec<(String, Vec<String>)> = Vec::new();
        let mut used = 0;
        for (pk, users) in by_counter {
            for part in users.chunks(MAX_TRANSACT - 1) {
                if used + part.len() + 1 > MAX_TRANSACT {
                    groups.push(std::mem::take(&mut current));
                    used = 0;
                }
                used += part.len() + 1;
                current.push((pk.clone(), part.to_vec()));
            }
        }
        if !current.is_empty() {
            groups.push(current);
        }
        let applied = for_each_bounded(groups, READ_CONCURRENCY, "transaction", |group| {
            let (client, table) = (self.client().clone(), self.tables().segments.clone());
            async move { transact_group(&client, &table, group, adding, now_ms).await }
        })
        .await?;
        Ok(applied.into_iter().sum())
    }
}

/// One TransactWriteItems of member puts/deletes plus their counters' deltas, retried until
/// every member either changed or turned out to be changed already by someone else.
async fn transact_group(
    client: &Client,
    table: &str,
    mut group: Vec<(String, Vec<String>)>,
    adding: bool,
    now_ms: i64,
) -> Result<usize, StoreError> {
    for attempt in 0..TRANSACT_ATTEMPTS {
        group.retain(|(_, users)| !users.is_empty());
        if group.is_empty() {
            return Ok(0);
        }
        let mut items = Vec::new();
        // Which user each action index stands for (`None` for counters).
        let mut index: Vec<Option<(usize, usize)>> = Vec::new();
        for (g, (pk, users)) in group.iter().enumerate() {
            for (u, user) in users.iter().enumerate() {
                let k = key(pk.clone(), member_sk(user));
                let item = if adding {
                    TransactWriteItem::builder().put(
                        Put::builder()
                            .table_name(table)
                            .set_item(Some(k))
                            .condition_expression("attribute_not_exists(sk)")
                            .build()
                            .expect("complete"),
                    )
                } else {
                    TransactWriteItem::builder().delete(
                        Delete::builder()
                            .table_name(table)
                            .set_key(Some(k))
                            .condition_expression("attribute_exists(sk)")
                            .build()
                            .expect("complete"),
                    )
                };
                items.push(item.build());
                index.push(Some((g, u)));
            }
            let delta = if adding { users.len() as i64 } else { -(users.len() as i64) };
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(table)
                            .set_key(Some(key(pk.clone(), COUNTER_SK.into())))
                            .update_expression("ADD #n :d SET updatedAt = :now")
                            .expression_attribute_names("#n", "n")
                            .expression_attribute_values(":d", n(delta))
                            .expression_attribute_values(":now", n(now_ms))
                            .build()
                            .expect("complete"),
                    )
                    .build(),
            );
            index.push(None);
        }
        let applied: usize = group.iter().map(|(_, u)| u.len()).sum();
        match client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => return Ok(applied),
            Err(e) => {
                let Some(reasons) = cancellation_reasons(&e) else {
                    return Err(sdk_error("TransactWriteItems", e));
                };
                // Members someone else already changed drop out; anything else (a conflict
                // with a concurrent transaction, throttling) is retried as it is.
                let mut done: BTreeSet<(usize, usize)> = BTreeSet::new();
                for (i, code) in reasons.iter().enumerate() {
                    if code == "ConditionalCheckFailed"
                        && let Some(Some(at)) = index.get(i)
                    {
                        done.insert(*at);
                    }
                }
                if done.is_empty() {
                    tokio::time::sleep(batch::backoff(attempt)).await;
                }
                for (g, u) in done.into_iter().rev() {
                    group[g].1.remove(u);
                }
            }
        }
    }
    Err(StoreError::Unavailable(format!(
        "TransactWriteItems: still conflicting after {TRANSACT_ATTEMPTS} attempts"
    )))
}

/// The per-action codes of a cancelled transaction (`"None"` for actions that were fine).
fn cancellation_reasons<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<String>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(c) => {
            Some(c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_string()).collect())
        }
        _ => None,
    }
}
