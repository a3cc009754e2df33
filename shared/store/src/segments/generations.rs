//! Generations: `override` writes the new membership as a fresh generation and flips the head
//! to it; the purge function deletes a generation nothing points at any more.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::WriteRequest;

use super::keys::{
    COUNTER_PARTITIONS, HEAD_SK, counter_key, counter_pk, head_pk, member_of, member_sk, new_generation,
    reverse_sk, shard_of, shard_pk, user_pk,
};
use super::{SegmentError, SegmentHead, SegmentView};
use crate::StoreError;
use crate::batch::{self, delete, put};
use crate::codec::{key, n, s};
use crate::concurrent::for_each_bounded;
use crate::dynamo::{DynamoStore, is_conditional_failure, sdk_error};
use domain::user_data::UserId;
use domain::{AccountId, SegmentGuid};

use super::keys::SHARDS;

/// Concurrent BatchWriteItem calls of one request (25,000 ids = 2,000 calls).
const WRITE_CONCURRENCY: usize = 32;
/// Partitions the purge works on at once, each at its own per-partition rate (1,000 deletes
/// per second): 1,000,000 members are 100 partitions of 10,000, so 4 waves of ~10 s.
pub const PURGE_PARTITIONS_IN_FLIGHT: usize = 32;
/// BatchWriteItem calls in flight per purged partition (a member and its reverse entry per
/// member: 2 items, 1 of them on the partition).
const PURGE_WRITES_PER_PARTITION: usize = 4;
/// Items per purge `Query` page: small pages answer fast, and each page's deletes start at once.
const PURGE_PAGE: i32 = 1_000;

/// The member, reverse-entry and counter items of a fresh generation holding exactly `ids`.
pub(super) fn generation_items(
    account: &AccountId,
    segment: SegmentGuid,
    generation: &str,
    ids: &[UserId],
    now_ms: i64,
) -> Vec<WriteRequest> {
    let mut out = Vec::with_capacity(2 * ids.len() + 1);
    for id in ids {
        let id = id.as_str();
        out.push(put(key(shard_pk(account, segment, generation, shard_of(id)), member_sk(id))));
        out.push(put(key(user_pk(account, id), reverse_sk(segment, generation))));
    }
    if !ids.is_empty() {
        let mut counter = counter_key(account, segment, generation, 0);
        counter.insert("n".into(), n(ids.len() as i64));
        counter.insert("t".into(), n(now_ms));
        out.push(put(counter));
    }
    out
}

impl DynamoStore {
    pub(super) async fn write_generation(
        &self,
        head: &SegmentHead,
        generation: &str,
        ids: &[UserId],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let items = generation_items(&head.account, head.segment, generation, ids, now_ms);
        batch::write_all(self.client(), &self.tables().segments, items, WRITE_CONCURRENCY).await
    }

    /// Writes the new membership as a fresh generation, then points the head at it. Concurrent
    /// adds and removes that read the old generation notice the flip and apply themselves again
    /// to the new one (they are ordered after this call).
    pub(super) async fn override_members(
        &self,
        mut head: SegmentHead,
        ids: &[UserId],
        now_ms: i64,
    ) -> Result<SegmentView, SegmentError> {
        let generation = new_generation();
        self.write_generation(&head, &generation, ids, now_ms).await?;
        let flipped = self.flip(&mut head, &generation, now_ms).await;
        if let Err(e) = flipped {
            // The flip may have committed and lost its answer: purge the new generation only if
            // the head certainly does not point at it.
            match self.segment_head(&head.account, head.system, head.segment).await {
                Ok(Some(current)) if current.generation == generation => head = current,
                Ok(_) => {
                    let _ = self.purge_generation(&head.account, head.segment, &generation).await;
                    return Err(e);
                }
                Err(_) => return Err(e),
            }
        }
        Ok(SegmentView { head, user_count: ids.len() as i64, updated_at: now_ms })
    }

    async fn flip(&self, head: &mut SegmentHead, generation: &str, now_ms: i64) -> Result<(), SegmentError> {
        // A concurrent override may flip first; then this one (which started no later) is
        // ordered after it and flips from its generation instead.
        for _ in 0..5 {
            let res = self
                .client()
                .update_item()
                .table_name(&self.tables().segments)
                .set_key(Some(key(head_pk(&head.account, head.segment), HEAD_SK.into())))
                .update_expression("SET generation = :new, updatedAt = :now")
                .condition_expression("generation = :old")
                .expression_attribute_values(":new", s(generation))
                .expression_attribute_values(":old", s(&head.generation))
                .expression_attribute_values(":now", n(now_ms))
                .send()
                .await;
            match res {
                Ok(_) => {
                    head.generation = generation.to_string();
                    head.updated_at = now_ms;
                    return Ok(());
                }
                Err(e) if is_conditional_failure(&e) => {
                    let current = self
                        .segment_head(&head.account, head.system, head.segment)
                        .await?
                        .ok_or(SegmentError::NotFound)?;
                    *head = current;
                }
                Err(e) => return Err(sdk_error("UpdateItem", e).into()),
            }
        }
        Err(StoreError::Busy {
            op: "override members",
            reason: "the segment head kept changing during the override",
        }
        .into())
    }

    /// Deletes every item of one generation of a segment (members, their reverse entries and
    /// counters); returns how many members. Run by the purge function after an override or
    /// delete made the generation unreachable, so nothing reads these items any more. 32
    /// partitions are purged at once, each at its own per-partition rate; it is idempotent, so
    /// a purge cut short resumes, when run again, with what is left.
    pub async fn purge_generation(
        &self,
        account: &AccountId,
        segment: SegmentGuid,
        generation: &str,
    ) -> Result<usize, StoreError> {
        let partitions: Vec<(String, bool)> = (0..SHARDS)
            .map(|shard| (shard_pk(account, segment, generation, shard), true))
            .chain((0..COUNTER_PARTITIONS).map(|p| (counter_pk(account, segment, generation, p), false)))
            .collect();
        let counts = for_each_bounded(partitions, PURGE_PARTITIONS_IN_FLIGHT, "purge", |(pk, members)| {
            let (client, table) = (self.client().clone(), self.tables().segments.clone());
            let (account, generation) = (account.clone(), generation.to_string());
            async move {
                let reverse = members.then_some((&account, segment, generation.as_str()));
                purge_partition(&client, &table, &pk, reverse).await
            }
        })
        .await?;
        Ok(counts.into_iter().sum())
    }
}

/// Deletes every item of one partition; for a member partition (`reverse` given) also each
/// member's reverse entry. Returns how many member items it deleted.
async fn purge_partition(
    client: &Client,
    table: &str,
    pk: &str,
    reverse: Option<(&AccountId, SegmentGuid, &str)>,
) -> Result<usize, StoreError> {
    let mut total = 0;
    let mut start = None;
    loop {
        let page = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s(pk))
            .projection_expression("pk, sk")
            .limit(PURGE_PAGE)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let items = page.items.unwrap_or_default();
        let mut deletes = Vec::with_capacity(2 * items.len());
        for item in items {
            if let Some((account, segment, generation)) = reverse {
                let user = member_of(&item)?;
                deletes.push(delete(key(user_pk(account, &user), reverse_sk(segment, generation))));
                total += 1;
            }
            deletes.push(delete(item));
        }
        batch::write_all(client, table, deletes, PURGE_WRITES_PER_PARTITION).await?;
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_generation_counts_its_members_once() {
        let account = AccountId::parse("acme").unwrap();
        let ids: Vec<UserId> = (0..300).map(|i| UserId::parse(&format!("u{i}")).unwrap()).collect();
        let items = generation_items(&account, SegmentGuid::generate(), "g1", &ids, 5);
        assert_eq!(items.len(), 601, "a member and a reverse entry per id, one counter");
        let counted: i64 = items
            .iter()
            .filter_map(|w| w.put_request.as_ref())
            .filter_map(|p| p.item.get("n"))
            .map(|v| v.as_n().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(counted, 300);
        assert!(generation_items(&account, SegmentGuid::generate(), "g2", &[], 5).is_empty());
    }
}
