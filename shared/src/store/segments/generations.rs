//! Generations: `override` writes the new membership as a fresh generation and flips the head
//! to it; the purge function deletes a generation nothing points at any more.

use aws_sdk_dynamodb::types::WriteRequest;

use super::keys::{COUNTER_SK, SHARDS, head_sk, heads_pk, member_sk, new_generation, shard_of, shard_pk};
use super::{SegmentError, SegmentHead, SegmentView};
use crate::domain::user_data::UserId;
use crate::domain::{AccountId, SegmentGuid};
use crate::store::StoreError;
use crate::store::batch::{self, delete, put};
use crate::store::codec::{key, n, s};
use crate::store::dynamo::{DynamoStore, is_conditional_failure, sdk_error};

/// Concurrent BatchWriteItem calls of one request (25,000 ids = 1,000 calls).
const WRITE_CONCURRENCY: usize = 32;

/// The member and counter items of a fresh generation holding exactly `ids`.
pub(super) fn generation_items(
    account: &AccountId,
    segment: SegmentGuid,
    generation: &str,
    ids: &[UserId],
    now_ms: i64,
) -> Vec<WriteRequest> {
    let mut per_shard = [0i64; SHARDS as usize];
    let mut out = Vec::with_capacity(ids.len() + SHARDS as usize);
    for id in ids {
        let shard = shard_of(id.as_str());
        per_shard[shard as usize] += 1;
        out.push(put(key(shard_pk(account, segment, generation, shard), member_sk(id.as_str()))));
    }
    for (shard, count) in per_shard.iter().enumerate().filter(|(_, c)| **c > 0) {
        let mut item = key(shard_pk(account, segment, generation, shard as u32), COUNTER_SK.into());
        item.insert("n".into(), n(*count));
        item.insert("updatedAt".into(), n(now_ms));
        out.push(put(item));
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
    /// adds and removes that read the old generation are ordered before this call.
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
                .set_key(Some(key(heads_pk(&head.account), head_sk(head.system, head.segment))))
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
        Err(StoreError::Unavailable("segment head kept changing during override".into()).into())
    }

    /// Deletes every item of one generation of a segment (members and counters); returns how
    /// many. Run by the purge function after an override or delete made the generation
    /// unreachable, so nothing reads these items any more.
    pub async fn purge_generation(
        &self,
        account: &AccountId,
        segment: SegmentGuid,
        generation: &str,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        for shard in 0..SHARDS {
            let pk = shard_pk(account, segment, generation, shard);
            let mut start = None;
            loop {
                let page = self
                    .client()
                    .query()
                    .table_name(&self.tables().segments)
                    .key_condition_expression("pk = :p")
                    .expression_attribute_values(":p", s(&pk))
                    .projection_expression("pk, sk")
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| sdk_error("Query", e))?;
                let items = page.items.unwrap_or_default();
                total += items.len();
                let deletes = items.into_iter().map(delete).collect();
                batch::write_all(self.client(), &self.tables().segments, deletes, WRITE_CONCURRENCY).await?;
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_generation_counts_each_shard() {
        let account = AccountId::parse("acme").unwrap();
        let ids: Vec<UserId> = (0..300).map(|i| UserId::parse(&format!("u{i}")).unwrap()).collect();
        let items = generation_items(&account, SegmentGuid::generate(), "g1", &ids, 5);
        let counted: i64 = items
            .iter()
            .filter_map(|w| w.put_request.as_ref())
            .filter(|p| p.item["sk"].as_s().unwrap() == COUNTER_SK)
            .map(|p| p.item["n"].as_n().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(counted, 300);
        assert_eq!(
            items.len() - 300,
            items
                .iter()
                .filter(|w| { w.put_request.as_ref().unwrap().item["sk"].as_s().unwrap() == COUNTER_SK })
                .count()
        );
    }
}
