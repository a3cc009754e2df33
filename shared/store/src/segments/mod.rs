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

mod cursor;
mod generations;
mod keys;
mod membership;
mod paging;
mod statics;
mod suppressed;
mod users;

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use crate::StoreError;
use crate::codec::{Item, get_n, get_s, key, n, s};
use crate::concurrent::for_each_bounded;
use crate::dynamo::{DynamoStore, sdk_error};
use crate::transact::{
    cancellation_reasons, condition_failed, is_cancelled_by_condition, is_transient, transact_with_retry,
};
pub use cursor::decode_list_cursor;
use cursor::encode_list_cursor;
use domain::segment::Action;
use domain::user_data::UserId;
use domain::{AccountId, SegmentGuid, SystemGuid};
pub use generations::PURGE_PARTITIONS_IN_FLIGHT;
use keys::{
    COUNT_SK, HEAD_SK, LISTED_PREFIX, account_count_pk, guard_sk, head_item, head_pk, listed_sk,
    new_generation, parse_head, system_pk,
};
pub use keys::{COUNTER_PARTITIONS, COUNTERS, SHARDS, shard_of};
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

/// Items each segment count (a system's, an account's) is split over, each capped at its share
/// of the cap: concurrent creates of one account update different items instead of all
/// conflicting on one (docs/DECISIONS.md, "Concurrent segment creates").
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

/// The count items that may still take a segment under `cap`.
fn open_shards(cap: i64) -> Vec<u32> {
    (0..COUNT_SHARDS).filter(|k| shard_cap(cap, *k) > 0).collect()
}

/// Count item `k`'s sort key; `None` is the single count item of heads written before the
/// counts were split (they carry no shard attributes).
fn count_sk(shard: Option<u32>) -> String {
    shard.map_or_else(|| COUNT_SK.to_string(), |k| format!("{COUNT_SK}#{k:02}"))
}

fn count_update(
    table: &str,
    pk: String,
    shard: Option<u32>,
    delta: i64,
    cap: Option<i64>,
) -> TransactWriteItem {
    let mut u = Update::builder()
        .table_name(table)
        .set_key(Some(key(pk, count_sk(shard))))
        .update_expression("ADD #n :d")
        .expression_attribute_names("#n", "n")
        .expression_attribute_values(":d", n(delta));
    if let Some(cap) = cap {
        u = u
            .condition_expression("attribute_not_exists(#n) OR #n < :cap")
            .expression_attribute_values(":cap", n(cap));
    }
    TransactWriteItem::builder().update(u.build().expect("complete")).build()
}

/// A random element of a non-empty list.
fn pick(open: &[u32]) -> u32 {
    open[keys::random_u32() as usize % open.len()]
}

impl DynamoStore {
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
        let (mut system_open, mut account_open) =
            (open_shards(caps.per_system), open_shards(caps.per_account));
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let e = loop {
            if system_open.is_empty() || account_open.is_empty() {
                self.abandon(&head).await;
                return Err(if system_open.is_empty() {
                    SegmentError::SystemFull(caps.per_system)
                } else {
                    SegmentError::AccountFull(caps.per_account)
                });
            }
            let (system_shard, account_shard) = (pick(&system_open), pick(&account_open));
            head.count_shards = Some((system_shard, account_shard));
            let mut items = vec![
                put(head_item(&head), Some("attribute_not_exists(pk)")),
                put(listed.clone(), None),
                count_update(
                    table,
                    sys_pk.clone(),
                    Some(system_shard),
                    1,
                    Some(shard_cap(caps.per_system, system_shard)),
                ),
                count_update(
                    table,
                    account_count_pk(&head.account),
                    Some(account_shard),
                    1,
                    Some(shard_cap(caps.per_account, account_shard)),
                ),
            ];
            if let Some(x) = &head.external_id {
                let mut guard = key(sys_pk.clone(), guard_sk(x));
                guard.insert("segmentGuid".into(), s(head.segment.to_string()));
                items.push(put(guard, Some("attribute_not_exists(pk)")));
            }
            let e = match self.client().transact_write_items().set_transact_items(Some(items)).send().await {
                Ok(_) => return Ok(SegmentView { head, user_count, updated_at: now_ms }),
                Err(e) => e,
            };
            let Some(codes) = cancellation_reasons(&e) else { break e };
            let failed = |i: usize| condition_failed(&codes, i);
            if failed(0) || failed(4) {
                // The head exists (an attempt committed and lost its answer: the guid is this
                // call's), or the external id is taken: judged below.
                break e;
            }
            // A full count item: try the others, at once.
            if failed(2) || failed(3) {
                // One read of the count items tells which others are full too, so that a
                // create at the cap is refused after a few attempts, not one per item.
                if failed(2) {
                    let full = self.full_shards(sys_pk.clone(), caps.per_system).await?;
                    system_open.retain(|k| *k != system_shard && !full.contains(k));
                }
                if failed(3) {
                    let full = self.full_shards(account_count_pk(&head.account), caps.per_account).await?;
                    account_open.retain(|k| *k != account_shard && !full.contains(k));
                }
                continue;
            }
            let delay = crate::batch::backoff_capped(attempt, CREATE_MAX_DELAY);
            if !is_transient(&codes) || started.elapsed() + delay >= CREATE_BUDGET {
                break e;
            }
            // Another transaction holds one of the items: next time, other count items.
            tokio::time::sleep(delay).await;
            attempt += 1;
        };
        // An attempt may have committed and lost its answer (a retry of it then fails its
        // conditions): the head's guid is fresh, so a head under it is this call's, and the
        // segment is created.
        match self.get(head_pk(&head.account, head.segment), HEAD_SK.into()).await {
            Ok(Some(_)) => return Ok(SegmentView { head, user_count, updated_at: now_ms }),
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

    /// The count items under `pk` that hold their share of `cap` (one strongly consistent
    /// `Query` of 16 small items: one read unit).
    async fn full_shards(&self, pk: String, cap: i64) -> Result<Vec<u32>, StoreError> {
        let out = self
            .prefix_query(&pk, &format!("{COUNT_SK}#"))
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
                (get_n(item, "n").ok()? >= shard_cap(cap, k)).then_some(k)
            })
            .collect())
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
                return Ok((self.override_members(head, user_ids, now_ms).await?, Vec::new()));
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
