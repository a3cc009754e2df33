//! Capped counts split over [`COUNT_SHARDS`] items (docs/DECISIONS.md, "Concurrent segment
//! creates"), shared by the static segments' system and account counts and the rule segments'
//! system count: a create adds 1 to a random open item of each count inside its own
//! transaction, so concurrent creates rarely share an item, and the sum never passes the cap.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::keys::{COUNT_SK, random_u32};
use crate::StoreError;
use crate::codec::{get_n, get_s, key, n, s};
use crate::dynamo::{DynamoStore, sdk_error};
use crate::transact::{TransactError, cancellation_reasons, condition_failed, is_transient};

/// Items each count is split over, each capped at its share of the cap: concurrent creates
/// update different items instead of all conflicting on one.
pub const COUNT_SHARDS: u32 = 16;
/// How long a create keeps retrying transactions cancelled by a concurrent one.
const CREATE_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest wait before a create's next attempt on other count items.
const CREATE_MAX_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Count item `k`'s share of `cap`: the shares add up to `cap` exactly.
fn shard_cap(cap: i64, k: u32) -> i64 {
    let shards = i64::from(COUNT_SHARDS);
    cap.max(0) / shards + i64::from(i64::from(k) < cap.max(0) % shards)
}

/// The count items that may still take one more under `cap`.
fn open_shards(cap: i64) -> Vec<u32> {
    (0..COUNT_SHARDS).filter(|k| shard_cap(cap, *k) > 0).collect()
}

/// Count item `k`'s sort key; `None` is the single count item of items written before the
/// counts were split (they name no count item).
fn count_sk(shard: Option<u32>) -> String {
    shard.map_or_else(|| COUNT_SK.to_string(), |k| format!("{COUNT_SK}#{k:02}"))
}

/// The attribute of a count item that every write through it adds 1 to: the partition's
/// change stamp is the sum over its count items (`DynamoStore::count_stamp`), so a reader
/// learns from one small read whether anything counted there changed.
const STAMP: &str = "v";

/// Adds `delta` to count item `shard` of the count in partition `pk` (0: only the stamp
/// moves), only while it is under its share of `cap` when one is given.
pub(crate) fn count_update(
    table: &str,
    pk: String,
    shard: Option<u32>,
    delta: i64,
    cap: Option<i64>,
) -> TransactWriteItem {
    let mut u = Update::builder()
        .table_name(table)
        .set_key(Some(key(pk, count_sk(shard))))
        .update_expression("ADD #n :d, #v :one")
        .expression_attribute_names("#n", "n")
        .expression_attribute_names("#v", STAMP)
        .expression_attribute_values(":d", n(delta))
        .expression_attribute_values(":one", n(1));
    if let Some(cap) = cap {
        u = u
            .condition_expression("attribute_not_exists(#n) OR #n < :cap")
            .expression_attribute_values(":cap", n(cap));
    }
    TransactWriteItem::builder().update(u.build().expect("complete")).build()
}

/// A count a create adds 1 to: the partition holding its items, and its cap.
pub(crate) struct Capped {
    pub pk: String,
    pub cap: i64,
}

/// Why a counted create did not commit.
#[derive(Debug)]
pub(crate) enum NotCounted {
    /// Every item of count `i` (of the caller's list) holds its share of the cap.
    Full(usize),
    /// The transaction failed otherwise: one of the caller's own conditions (its actions
    /// follow the count updates: action `counts.len() + j` is the caller's `j`), or transient
    /// conflicts past the budget, or an error of the service.
    Failed(Box<TransactError>),
    Store(StoreError),
}

impl DynamoStore {
    /// Commits `items(shards)` in one transaction with +1 on one open item of each of
    /// `counts` (the count updates first, then the caller's actions); returns the items
    /// chosen (one per count, in order), which the caller records so that a delete subtracts
    /// from the same ones. `items` is called again for each attempt, with that attempt's
    /// choice. A conflict is retried at once on other random items after a short jittered
    /// wait; a full item is dropped, and one strongly consistent `Query` of the count's items
    /// drops every other full one, so a create at the cap is refused after a few attempts.
    pub(crate) async fn transact_counted(
        &self,
        counts: &[Capped],
        items: impl Fn(&[u32]) -> Vec<TransactWriteItem>,
    ) -> Result<Vec<u32>, NotCounted> {
        let table = &self.tables().segments;
        let mut open: Vec<Vec<u32>> = counts.iter().map(|c| open_shards(c.cap)).collect();
        let started = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            if let Some(i) = open.iter().position(Vec::is_empty) {
                return Err(NotCounted::Full(i));
            }
            let chosen: Vec<u32> = open.iter().map(|o| o[random_u32() as usize % o.len()]).collect();
            let mut actions: Vec<TransactWriteItem> = counts
                .iter()
                .zip(&chosen)
                .map(|(c, k)| count_update(table, c.pk.clone(), Some(*k), 1, Some(shard_cap(c.cap, *k))))
                .collect();
            actions.extend(items(&chosen));
            let e = match self.client().transact_write_items().set_transact_items(Some(actions)).send().await
            {
                Ok(_) => return Ok(chosen),
                Err(e) => e,
            };
            let Some(codes) = cancellation_reasons(&e) else { return Err(NotCounted::Failed(Box::new(e))) };
            if (counts.len()..codes.len()).any(|i| condition_failed(&codes, i)) {
                return Err(NotCounted::Failed(Box::new(e)));
            }
            let full: Vec<usize> = (0..counts.len()).filter(|i| condition_failed(&codes, *i)).collect();
            if !full.is_empty() {
                for i in full {
                    let now_full = self.full_shards(&counts[i]).await.map_err(NotCounted::Store)?;
                    open[i].retain(|k| *k != chosen[i] && !now_full.contains(k));
                }
                continue;
            }
            let delay = crate::batch::backoff_capped(attempt, CREATE_MAX_DELAY);
            if !is_transient(&codes) || started.elapsed() + delay >= CREATE_BUDGET {
                return Err(NotCounted::Failed(Box::new(e)));
            }
            if codes.contains(&"TransactionConflict") {
                // The create holding the item may have taken its last place: near the cap,
                // contenders learn it now and are refused at once instead of retrying for
                // the whole budget.
                for (i, count) in counts.iter().enumerate() {
                    let now_full = self.full_shards(count).await.map_err(NotCounted::Store)?;
                    open[i].retain(|k| !now_full.contains(k));
                }
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The change stamp of partition `pk`'s count: the sum of its items' stamps, which only
    /// grows (one strongly consistent `Query` of at most 17 small items: one read unit).
    pub(crate) async fn count_stamp(&self, pk: &str) -> Result<i64, StoreError> {
        let out = self.prefix_query(pk, COUNT_SK).send().await.map_err(|e| sdk_error("Query", e))?;
        Ok(out.items().iter().filter_map(|item| get_n(item, STAMP).ok()).sum())
    }

    /// The items of the count that hold their share of its cap (one strongly consistent
    /// `Query` of 16 small items: one read unit).
    async fn full_shards(&self, count: &Capped) -> Result<Vec<u32>, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(&self.tables().segments)
            .key_condition_expression("pk = :p AND begins_with(sk, :s)")
            .expression_attribute_values(":p", s(&count.pk))
            .expression_attribute_values(":s", s(format!("{COUNT_SK}#")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                let k: u32 =
                    get_s(item, "sk").ok()?.strip_prefix(COUNT_SK)?.strip_prefix('#')?.parse().ok()?;
                (get_n(item, "n").ok()? >= shard_cap(count.cap, k)).then_some(k)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_add_up_to_the_cap() {
        for cap in [0, 1, 15, 16, 17, 100, 200, 1_000, 10_000] {
            let sum: i64 = (0..COUNT_SHARDS).map(|k| shard_cap(cap, k)).sum();
            assert_eq!(sum, cap);
            assert_eq!(open_shards(cap).len(), (cap as usize).min(COUNT_SHARDS as usize));
        }
    }
}
