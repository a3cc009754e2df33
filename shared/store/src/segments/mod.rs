//! Segments in the segments table. The layout and its cost per call are explained in
//! docs/TABLES.md ("Segments"); in short:
//!
//! - **Head** `<acc>#SEG#<segmentGuid>` / `H`: system, name, external id, the current
//!   `generation`, times. Each segment's head has its own partition, so no item is shared by
//!   the calls of an account; heads change only on create, override and delete.
//! - **System partition** `<acc>#SYS#<systemGuid>`: one list entry per segment
//!   (`S#<createdAt>#<segmentGuid>`, what the paginated list walks), the external-id guards
//!   (`X#<externalId>`) and the system's segment count (`N`, capped). The account's count
//!   (`<acc>#SEGS` / `N`, capped) is written in the same transactions.
//! - **Members** `<acc>#SEG#<segmentGuid>#<generation>#<shard>` / `U#<userId>`: one item per
//!   membership, spread over [`SHARDS`] partitions by a stable hash of the user id.
//! - **Reverse entries** `<acc>#USER#<userId>` / `M#<segmentGuid>#<generation>`: the user's
//!   memberships, written with the member item, so that the end-user read costs what the user's
//!   own memberships cost, whatever the account's segment count.
//! - **Counters** `<acc>#SEG#<segmentGuid>#<generation>#C<p>` / `<slot>`: the count is the sum
//!   of [`COUNTERS`] small items in 8 partitions; each add/remove transaction adds its delta to
//!   a counter item no other transaction in flight uses (`membership.rs`).
//!
//! `override` writes a fresh generation with BatchWriteItem and then flips the head to it;
//! delete removes the head. Either way readers stop seeing the old generation at the flip, and
//! the purge function (fed by the table's stream) deletes its items afterwards, so neither
//! call's duration depends on the segment's size.
//!
//! This file holds the types and a segment's create, read, list, change and delete;
//! `keys.rs` the keys and item codec, `cursor.rs` the list's cursor, `users.rs` an end user's
//! segments (read and erase), `membership.rs` who is a member and add / remove,
//! `generations.rs` override and purge, `paging.rs` the members listing and its cursor.

pub(crate) mod counts;
mod cursor;
mod generations;
mod keys;
mod membership;
mod paging;
mod statics;
mod suppressed;
mod users;

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use crate::StoreError;
use crate::codec::{Item, get_s, key, s};
use crate::concurrent::for_each_bounded;
use crate::dynamo::{DynamoStore, sdk_error};
use crate::transact::{
    cancellation_reasons, condition_failed, is_cancelled_by_condition, transact_with_retry,
};
pub use counts::COUNT_SHARDS;
use counts::{Capped, NotCounted, count_update};
pub use cursor::decode_list_cursor;
use cursor::encode_list_cursor;
use domain::segment::Action;
use domain::user_data::UserId;
use domain::{AccountId, SegmentGuid, SystemGuid};
pub use generations::PURGE_PARTITIONS_IN_FLIGHT;
pub use keys::{COUNTER_PARTITIONS, COUNTERS, SHARDS, shard_of};
use keys::{
    HEAD_SK, LISTED_PREFIX, account_count_pk, guard_sk, head_item, head_pk, listed_sk, new_generation,
    parse_head, system_pk,
};
use membership::{Change, Gen};
pub use paging::{MemberCursor, MemberPage};
pub(crate) use suppressed::{suppressed_users, suppression_items};

/// Concurrent BatchGetItem / TransactWriteItems calls of one request.
const READ_CONCURRENCY: usize = 16;
/// Segments whose head and count a list page reads at once.
const LIST_CONCURRENCY: usize = 16;
/// How many times an add/remove follows an override that flipped the head under it.
const FOLLOW_FLIPS: usize = 5;

/// How many segments a system and an account may hold (the SPEC: what an account may create
/// is capped). Enforced in the create transaction, so concurrent creates cannot pass them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentCaps {
    pub per_system: i64,
    pub per_account: i64,
}

impl Default for SegmentCaps {
    fn default() -> Self {
        Self { per_system: 1_000, per_account: 10_000 }
    }
}

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
    /// The system's and the account's count items it is counted in (`None`: the single count
    /// items of heads written before the counts were split).
    pub count_shards: Option<(u32, u32)>,
}

/// A head with its member count, as every segment response shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentView {
    pub head: SegmentHead,
    pub user_count: i64,
    /// The later of the head's time and the last add/remove (epoch milliseconds).
    pub updated_at: i64,
}

/// One page of a system's segments.
#[derive(Debug)]
pub struct SegmentPage {
    pub segments: Vec<SegmentView>,
    /// Opaque: where the next page starts.
    pub next: Option<String>,
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
    #[error("the system holds the most segments it may ({0})")]
    SystemFull(i64),
    #[error("the account holds the most segments it may ({0})")]
    AccountFull(i64),
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
    /// Creates the segment with the ids that are not suppressed; returns it and the ids left
    /// out because their users are (sorted, once each).
    ///
    /// The members are a batch of a fresh generation, which takes no condition, so the ids are
    /// screened before the write and again once the head points at them: an erase raises the
    /// account's gate, writes its index, then removes the users' memberships, so a user it
    /// suppressed is either screened out before, found by the screen after (and removed here),
    /// or removed by the erase itself (docs/DECISIONS.md "Erasure that sticks").
    pub async fn create_segment_reporting(
        &self,
        new: &NewSegment<'_>,
        caps: SegmentCaps,
        now_ms: i64,
    ) -> Result<(SegmentView, Vec<String>), SegmentError> {
        let now_secs = now_ms.div_euclid(1000);
        let (up, mut suppressed) = self.screen(new.account, new.user_ids, now_secs).await?;
        let kept = unsuppressed(new.user_ids, &suppressed);
        let view = self.create_segment(&NewSegment { user_ids: &kept, ..*new }, caps, now_ms).await?;
        let view = self.screen_after(view, up, &kept, &mut suppressed, now_ms).await?;
        Ok((view, suppressed.into_iter().collect()))
    }

    /// The second screen of a create or override that wrote `kept`: the members suppressed
    /// since the first are removed (into `suppressed`).
    async fn screen_after(
        &self,
        view: SegmentView,
        was_up: bool,
        kept: &[UserId],
        suppressed: &mut std::collections::BTreeSet<String>,
        now_ms: i64,
    ) -> Result<SegmentView, SegmentError> {
        let (up, late) = self.screen(&view.head.account, kept, now_ms.div_euclid(1000)).await?;
        if !(was_up || up) || late.is_empty() {
            return Ok(view);
        }
        let late_ids: Vec<UserId> = kept.iter().filter(|id| late.contains(id.as_str())).cloned().collect();
        // Boxed: an override reaches here through `change_members_reporting` (a remove does not
        // come back, but the compiler cannot know).
        let (view, _) =
            Box::pin(self.change_members_reporting(view.head, Action::Remove, &late_ids, now_ms)).await?;
        suppressed.extend(late);
        Ok(view)
    }

    /// Creates the segment with every id given, unscreened (the operator's and the tests'
    /// path; the API's is [`Self::create_segment_reporting`]).
    pub async fn create_segment(
        &self,
        new: &NewSegment<'_>,
        caps: SegmentCaps,
        now_ms: i64,
    ) -> Result<SegmentView, SegmentError> {
        let sys_pk = system_pk(new.account, new.system);
        // A cheap early refusal, so that a taken external id does not first cost 2,000 writes;
        // the transaction below is what guarantees uniqueness.
        if let Some(x) = new.external_id
            && self.get(sys_pk.clone(), guard_sk(x)).await?.is_some()
        {
            return Err(SegmentError::ExternalIdTaken);
        }
        let mut head = SegmentHead {
            account: new.account.clone(),
            system: new.system,
            segment: SegmentGuid::generate(),
            external_id: new.external_id.map(str::to_string),
            name: new.name.to_string(),
            generation: new_generation(),
            created_at: now_ms,
            updated_at: now_ms,
            count_shards: None,
        };
        self.write_generation(&head, &head.generation, new.user_ids, now_ms).await?;
        let table = &self.tables().segments;
        let put = |item: Item, condition: Option<&str>| {
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(item))
                        .set_condition_expression(condition.map(str::to_string))
                        .build()
                        .expect("complete"),
                )
                .build()
        };
        let mut listed = key(sys_pk.clone(), listed_sk(head.created_at, head.segment));
        listed.insert("segmentGuid".into(), s(head.segment.to_string()));
        let user_count = new.user_ids.len() as i64;
        let counts = [
            Capped { pk: sys_pk.clone(), cap: caps.per_system },
            Capped { pk: account_count_pk(&head.account), cap: caps.per_account },
        ];
        let head_items = |shards: &[u32]| {
            let head = SegmentHead { count_shards: Some((shards[0], shards[1])), ..head.clone() };
            let mut items =
                vec![put(head_item(&head), Some("attribute_not_exists(pk)")), put(listed.clone(), None)];
            if let Some(x) = &head.external_id {
                let mut guard = key(sys_pk.clone(), guard_sk(x));
                guard.insert("segmentGuid".into(), s(head.segment.to_string()));
                items.push(put(guard, Some("attribute_not_exists(pk)")));
            }
            items
        };
        // The actions: the two counts, then the head (2), its list entry and the guard (4).
        let e = match self.transact_counted(&counts, head_items).await {
            Ok(shards) => {
                head.count_shards = Some((shards[0], shards[1]));
                return Ok(SegmentView { head, user_count, updated_at: now_ms });
            }
            Err(NotCounted::Full(i)) => {
                self.abandon(&head).await;
                return Err(if i == 0 {
                    SegmentError::SystemFull(caps.per_system)
                } else {
                    SegmentError::AccountFull(caps.per_account)
                });
            }
            Err(NotCounted::Store(e)) => {
                self.abandon(&head).await;
                return Err(e.into());
            }
            Err(NotCounted::Failed(e)) => *e,
        };
        // An attempt may have committed and lost its answer (a retry of it then fails its
        // conditions): the head's guid is fresh, so a head under it is this call's, and the
        // segment is created.
        match self.get(head_pk(&head.account, head.segment), HEAD_SK.into()).await {
            Ok(Some(item)) => {
                let head = parse_head(&head.account, &item)?;
                return Ok(SegmentView { head, user_count, updated_at: now_ms });
            }
            Ok(None) => self.abandon(&head).await,
            // Unknown: the generation stays (unreferenced, it costs storage only).
            Err(_) => {}
        }
        let codes = cancellation_reasons(&e).unwrap_or_default();
        Err(if condition_failed(&codes, 4) {
            SegmentError::ExternalIdTaken
        } else {
            sdk_error("TransactWriteItems", e).into()
        })
    }

    /// A strongly consistent `Query` of the items of partition `pk` whose sort key starts
    /// with `prefix`.
    fn prefix_query(
        &self,
        pk: &str,
        prefix: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client()
            .query()
            .table_name(&self.tables().segments)
            .key_condition_expression("pk = :p AND begins_with(sk, :s)")
            .expression_attribute_values(":p", s(pk))
            .expression_attribute_values(":s", s(prefix))
            .consistent_read(true)
    }

    /// Removes the generation of a create that wrote no head: nothing refers to it.
    async fn abandon(&self, head: &SegmentHead) {
        let _ = self.purge_generation(&head.account, head.segment, &head.generation).await;
    }

    /// The head of a segment of this account and system; `None` if it does not exist (or
    /// belongs to another system).
    pub async fn segment_head(
        &self,
        account: &AccountId,
        system: SystemGuid,
        segment: SegmentGuid,
    ) -> Result<Option<SegmentHead>, StoreError> {
        let Some(item) = self.get(head_pk(account, segment), HEAD_SK.into()).await? else {
            return Ok(None);
        };
        let head = parse_head(account, &item)?;
        Ok((head.system == system).then_some(head))
    }

    /// Up to `limit` segments of the system in creation order, from `cursor` on: one `Query`
    /// of the system's list entries, then each listed segment's head and count.
    pub async fn list_segments(
        &self,
        account: &AccountId,
        system: SystemGuid,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<SegmentPage, StoreError> {
        let pk = system_pk(account, system);
        let out = self
            .prefix_query(&pk, LISTED_PREFIX)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(cursor.map(|sk| key(pk.clone(), sk)))
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let items = out.items.unwrap_or_default();
        let next = out
            .last_evaluated_key
            .as_ref()
            .and_then(|k| k.get("sk"))
            .and_then(|v| v.as_s().ok())
            .map(|sk| encode_list_cursor(sk));
        let guids: Vec<(usize, SegmentGuid)> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                SegmentGuid::parse(get_s(item, "segmentGuid")?)
                    .map(|g| (i, g))
                    .map_err(|_| StoreError::Corrupt("segment list entry".into()))
            })
            .collect::<Result<_, _>>()?;
        let found = for_each_bounded(guids, LIST_CONCURRENCY, "list", |(i, segment)| {
            let (store, account) = (self.clone(), account.clone());
            async move {
                match store.segment_head(&account, system, segment).await? {
                    Some(head) => Ok(Some((i, store.view(head).await?))),
                    // Deleted between the two reads.
                    None => Ok(None),
                }
            }
        })
        .await?;
        let mut segments: Vec<(usize, SegmentView)> = found.into_iter().flatten().collect();
        segments.sort_by_key(|(i, _)| *i);
        Ok(SegmentPage { segments: segments.into_iter().map(|(_, v)| v).collect(), next })
    }

    /// Applies add / remove / override; returns the segment afterwards.
    pub async fn change_members(
        &self,
        head: SegmentHead,
        action: Action,
        user_ids: &[UserId],
        now_ms: i64,
    ) -> Result<SegmentView, SegmentError> {
        Ok(self.change_members_reporting(head, action, user_ids, now_ms).await?.0)
    }

    /// [`DynamoStore::change_members`], also answering the ids an add refused because their
    /// users are suppressed (sorted, once each).
    pub async fn change_members_reporting(
        &self,
        mut head: SegmentHead,
        action: Action,
        user_ids: &[UserId],
        now_ms: i64,
    ) -> Result<(SegmentView, Vec<String>), SegmentError> {
        let mut suppressed = std::collections::BTreeSet::new();
        let adding = match action {
            Action::Override => {
                // Screened as a create is (`create_segment_reporting`).
                let (up, found) = self.screen(&head.account, user_ids, now_ms.div_euclid(1000)).await?;
                suppressed = found;
                let kept = unsuppressed(user_ids, &suppressed);
                let view = self.override_members(head, &kept, now_ms).await?;
                let view = self.screen_after(view, up, &kept, &mut suppressed, now_ms).await?;
                return Ok((view, suppressed.into_iter().collect()));
            }
            Action::Add => true,
            Action::Remove => false,
        };
        for _ in 0..FOLLOW_FLIPS {
            let present = self.present(&head, user_ids.iter().map(UserId::as_str)).await?;
            let changes: Vec<Change> = user_ids
                .iter()
                .filter(|id| present.contains(id.as_str()) != adding)
                .map(|id| Change { slot: 0, user_id: id.as_str().to_string() })
                .collect();
            suppressed.extend(self.apply_changes(&[Gen::of(&head)], changes, adding, now_ms).await?.1);
            // An override that flipped the head meanwhile replaced the generation just written:
            // this call is then ordered after it and applies itself to the new generation, so
            // that what it answers is what stays.
            let current = self
                .segment_head(&head.account, head.system, head.segment)
                .await?
                .ok_or(SegmentError::NotFound)?;
            if current.generation == head.generation {
                return Ok((self.view(current).await?, suppressed.into_iter().collect()));
            }
            head = current;
        }
        Err(StoreError::Busy {
            op: "change members",
            reason: "the segment kept being overridden during the call",
        }
        .into())
    }

    /// Deletes the head, its list entry and external-id guard, and counts the segment out;
    /// also `Ok` when the head is gone already.
    pub async fn delete_segment(&self, head: &SegmentHead) -> Result<(), SegmentError> {
        let table = &self.tables().segments;
        let del = |pk: String, sk: String, condition: Option<&str>| {
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(table)
                        .set_key(Some(key(pk, sk)))
                        .set_condition_expression(condition.map(str::to_string))
                        .build()
                        .expect("complete"),
                )
                .build()
        };
        let sys_pk = system_pk(&head.account, head.system);
        let mut items = vec![
            del(head_pk(&head.account, head.segment), HEAD_SK.into(), Some("attribute_exists(pk)")),
            del(sys_pk.clone(), listed_sk(head.created_at, head.segment), None),
            count_update(table, sys_pk.clone(), head.count_shards.map(|c| c.0), -1, None),
            count_update(table, account_count_pk(&head.account), head.count_shards.map(|c| c.1), -1, None),
        ];
        if let Some(x) = &head.external_id {
            items.push(del(sys_pk, guard_sk(x), None));
        }
        match transact_with_retry(self.client(), items).await {
            Ok(()) => Ok(()),
            // The head is gone: deleted by an attempt of this call whose answer was lost (the
            // SDK's retry then fails the condition), or by a concurrent delete. Either way the
            // segment is deleted, as asked.
            Err(e) if is_cancelled_by_condition(&e) => Ok(()),
            Err(e) => Err(sdk_error("TransactWriteItems", e).into()),
        }
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

/// `ids` without the `suppressed` ones, in their order.
fn unsuppressed(ids: &[UserId], suppressed: &std::collections::BTreeSet<String>) -> Vec<UserId> {
    ids.iter().filter(|id| !suppressed.contains(id.as_str())).cloned().collect()
}
