//! Segments in the segments table. The layout and its cost per call are explained in
//! docs/TABLES.md ("Segments"); in short:
//!
//! - **Head** `<acc>#SEGMENTS` / `S#<systemGuid>#<segmentGuid>`: name, external id, the current
//!   `generation`, times. All heads of an account share a partition so that the end-user read
//!   finds every segment of the account with one Query; heads change only on create,
//!   override and delete, never on add/remove.
//! - **External-id guard** `<acc>#SEGMENTS` / `X#<systemGuid>#<externalId>`: makes the external
//!   id unique per system (written in the same transaction as the head).
//! - **Members** `<acc>#SEG#<segmentGuid>#<generation>#<shard>` / `U#<userId>`: one item per
//!   membership, spread over [`SHARDS`] partitions by a stable hash of the user id, so that one
//!   segment takes 100 partitions' worth of writes.
//! - **Counter** per shard, same partition, sort key `C`: the shard's member count. An
//!   add/remove writes its members and the counter of their shard in one TransactWriteItems
//!   with a condition per member, which is what keeps `userCount` exact under concurrent calls.
//!
//! `override` writes a fresh generation with BatchWriteItem and then flips the head to it;
//! delete removes the head. Either way readers stop seeing the old generation at the flip, and
//! the purge function (fed by the table's stream) deletes its items afterwards, so neither
//! call's duration depends on the segment's size.
//!
//! This file holds the types and the calls the functions make; `keys.rs` the keys and item
//! codec, `membership.rs` who is a member and add / remove, `generations.rs` override and
//! purge, `paging.rs` the members listing and its cursor.

mod generations;
mod keys;
mod membership;
mod paging;

use std::collections::HashSet;

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use crate::domain::segment::Action;
use crate::domain::user_data::UserId;
use crate::domain::{AccountId, SegmentGuid, SystemGuid};
use crate::store::codec::{Item, get_s, key, s};
use crate::store::dynamo::{DynamoStore, is_cancelled_by_condition, sdk_error};
use crate::store::{StoreError, batch};
pub use keys::{SHARDS, shard_of};
use keys::{guard_sk, head_item, head_sk, heads_pk, member_sk, new_generation, parse_head, shard_pk};
use membership::{Change, view_of};
pub use paging::{MemberCursor, MemberPage};

/// Concurrent BatchGetItem / TransactWriteItems calls of one request.
const READ_CONCURRENCY: usize = 16;

/// A segment's head, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHead {
    pub account: AccountId,
    pub system: SystemGuid,
    pub segment: SegmentGuid,
    pub external_id: Option<String>,
    pub name: String,
    /// Which member items are current (see the module docs).
    pub generation: String,
    /// Epoch milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A head with its member count, as every segment response shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentView {
    pub head: SegmentHead,
    pub user_count: i64,
    /// The later of the head's time and the last add/remove (epoch milliseconds).
    pub updated_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("no such segment")]
    NotFound,
    #[error("the external id is taken in this system")]
    ExternalIdTaken,
    /// The cursor names a generation that an override or delete has replaced.
    #[error("the cursor is stale")]
    StaleCursor,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a create writes.
pub struct NewSegment<'a> {
    pub account: &'a AccountId,
    pub system: SystemGuid,
    pub external_id: Option<&'a str>,
    pub name: &'a str,
    pub user_ids: &'a [UserId],
}

impl DynamoStore {
    pub async fn create_segment(
        &self,
        new: &NewSegment<'_>,
        now_ms: i64,
    ) -> Result<SegmentView, SegmentError> {
        // A cheap early refusal, so that a taken external id does not first cost 1,000 writes;
        // the transaction below is what guarantees uniqueness.
        if let Some(x) = new.external_id
            && self.get(heads_pk(new.account), guard_sk(new.system, x)).await?.is_some()
        {
            return Err(SegmentError::ExternalIdTaken);
        }
        let head = SegmentHead {
            account: new.account.clone(),
            system: new.system,
            segment: SegmentGuid::generate(),
            external_id: new.external_id.map(str::to_string),
            name: new.name.to_string(),
            generation: new_generation(),
            created_at: now_ms,
            updated_at: now_ms,
        };
        self.write_generation(&head, &head.generation, new.user_ids, now_ms).await?;
        let mut items = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.tables().segments)
                        .set_item(Some(head_item(&head)))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .expect("complete"),
                )
                .build(),
        ];
        if let Some(x) = &head.external_id {
            let mut guard = key(heads_pk(&head.account), guard_sk(head.system, x));
            guard.insert("segmentGuid".into(), s(head.segment.to_string()));
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.tables().segments)
                            .set_item(Some(guard))
                            .condition_expression("attribute_not_exists(pk)")
                            .build()
                            .expect("complete"),
                    )
                    .build(),
            );
        }
        let res = self.client().transact_write_items().set_transact_items(Some(items)).send().await;
        let user_count = new.user_ids.len() as i64;
        if let Err(e) = res {
            // An attempt may have committed and lost its answer (a retry of it then fails its
            // conditions, or the retries ran out): the head's guid is fresh, so a head under it
            // is this call's, and the segment is created.
            match self.get(heads_pk(&head.account), head_sk(head.system, head.segment)).await {
                Ok(Some(_)) => return Ok(SegmentView { head, user_count, updated_at: now_ms }),
                // Nothing refers to the generation just written: remove it rather than leave it.
                Ok(None) => {
                    let _ = self.purge_generation(&head.account, head.segment, &head.generation).await;
                }
                // Unknown: the generation stays (unreferenced, it costs storage only).
                Err(_) => {}
            }
            return Err(if is_cancelled_by_condition(&e) {
                SegmentError::ExternalIdTaken
            } else {
                sdk_error("TransactWriteItems", e).into()
            });
        }
        Ok(SegmentView { head, user_count, updated_at: now_ms })
    }

    pub async fn segment_head(
        &self,
        account: &AccountId,
        system: SystemGuid,
        segment: SegmentGuid,
    ) -> Result<Option<SegmentHead>, StoreError> {
        self.get(heads_pk(account), head_sk(system, segment))
            .await?
            .map(|item| parse_head(account, &item))
            .transpose()
    }

    /// The head with its count.
    pub async fn view(&self, head: SegmentHead) -> Result<SegmentView, StoreError> {
        let counters = self.counter_items(std::slice::from_ref(&head)).await?;
        Ok(view_of(head, &counters))
    }

    pub async fn list_segments(
        &self,
        account: &AccountId,
        system: SystemGuid,
    ) -> Result<Vec<SegmentView>, StoreError> {
        let items =
            self.query_prefix(&self.tables().segments, &heads_pk(account), &format!("S#{system}#")).await?;
        let heads: Vec<SegmentHead> =
            items.iter().map(|item| parse_head(account, item)).collect::<Result<_, _>>()?;
        // Every segment's 100 counters in one batched read: one BatchGetItem per segment, 16 in
        // flight, however many segments there are.
        let counters = self.counter_items(&heads).await?;
        let mut out: Vec<SegmentView> = heads.into_iter().map(|h| view_of(h, &counters)).collect();
        out.sort_by(|a, b| {
            (a.head.created_at, a.head.segment.to_string())
                .cmp(&(b.head.created_at, b.head.segment.to_string()))
        });
        Ok(out)
    }

    /// Applies add / remove / override; returns the segment afterwards.
    pub async fn change_members(
        &self,
        head: SegmentHead,
        action: Action,
        user_ids: &[UserId],
        now_ms: i64,
    ) -> Result<SegmentView, SegmentError> {
        match action {
            Action::Override => return self.override_members(head, user_ids, now_ms).await,
            Action::Add | Action::Remove => {}
        }
        let adding = action == Action::Add;
        let present = self.present(&head, user_ids.iter().map(UserId::as_str)).await?;
        let changes: Vec<Change> = user_ids
            .iter()
            .filter(|id| present.contains(id.as_str()) != adding)
            .map(|id| Change {
                pk: shard_pk(&head.account, head.segment, &head.generation, shard_of(id.as_str())),
                user_id: id.as_str().to_string(),
            })
            .collect();
        self.apply_changes(changes, adding, now_ms).await?;
        Ok(self.view(head).await?)
    }

    /// Deletes the head (and its external-id guard); also `Ok` when the head is gone already.
    pub async fn delete_segment(&self, head: &SegmentHead) -> Result<(), SegmentError> {
        let mut items = vec![
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.tables().segments)
                        .set_key(Some(key(heads_pk(&head.account), head_sk(head.system, head.segment))))
                        .condition_expression("attribute_exists(pk)")
                        .build()
                        .expect("complete"),
                )
                .build(),
        ];
        if let Some(x) = &head.external_id {
            items.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.tables().segments)
                            .set_key(Some(key(heads_pk(&head.account), guard_sk(head.system, x))))
                            .build()
                            .expect("complete"),
                    )
                    .build(),
            );
        }
        match self.client().transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            // The head is gone: deleted by an attempt of this call whose answer was lost (the
            // SDK's retry then fails the condition), or by a concurrent delete. Either way the
            // segment is deleted, as asked.
            Err(e) if is_cancelled_by_condition(&e) => Ok(()),
            Err(e) => Err(sdk_error("TransactWriteItems", e).into()),
        }
    }

    /// Every segment of the account that has this user as a member.
    pub async fn user_segments(
        &self,
        account: &AccountId,
        user_id: &str,
    ) -> Result<Vec<SegmentHead>, StoreError> {
        let heads: Vec<SegmentHead> = self
            .query_prefix(&self.tables().segments, &heads_pk(account), "S#")
            .await?
            .iter()
            .map(|item| parse_head(account, item))
            .collect::<Result<_, _>>()?;
        let shard = shard_of(user_id);
        let keys = heads
            .iter()
            .map(|h| key(shard_pk(account, h.segment, &h.generation, shard), member_sk(user_id)))
            .collect();
        let found: HashSet<String> =
            batch::get_all(self.client(), &self.tables().segments, keys, &["pk"], READ_CONCURRENCY)
                .await?
                .iter()
                .map(|item| get_s(item, "pk").map(str::to_string))
                .collect::<Result<_, _>>()?;
        Ok(heads
            .into_iter()
            .filter(|h| found.contains(&shard_pk(account, h.segment, &h.generation, shard)))
            .collect())
    }

    /// Removes the user from every segment of the account; returns how many.
    pub async fn remove_user_everywhere(
        &self,
        account: &AccountId,
        user_id: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let shard = shard_of(user_id);
        let changes = self
            .user_segments(account, user_id)
            .await?
            .iter()
            .map(|h| Change {
                pk: shard_pk(account, h.segment, &h.generation, shard),
                user_id: user_id.to_string(),
            })
            .collect();
        self.apply_changes(changes, false, now_ms).await
    }

    async fn get(&self, pk: String, sk: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().segments)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }
}
