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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    Delete, DeleteRequest, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use base64::Engine;
use tokio::task::JoinSet;

use super::dynamo::{DynamoStore, Item, account_pk, get_n, get_s, is_conditional_failure, n, s, sdk_error};
use super::{StoreError, batch};
use crate::domain::segment::Action;
use crate::domain::user_data::UserId;
use crate::domain::{AccountId, SegmentGuid, SystemGuid};

/// Partitions per segment generation. 100 partitions take ~100,000 write units per second
/// (50,000 transactional member writes), and one BatchGetItem reads all 100 counters.
pub const SHARDS: u32 = 100;
/// Concurrent BatchWriteItem calls of one request (25,000 ids = 1,000 calls).
const WRITE_CONCURRENCY: usize = 32;
/// Concurrent BatchGetItem / TransactWriteItems calls of one request.
const READ_CONCURRENCY: usize = 16;
/// DynamoDB's limit of actions per TransactWriteItems.
const MAX_TRANSACT: usize = 100;
const TRANSACT_ATTEMPTS: u32 = 10;
const COUNTER_SK: &str = "C";
const MEMBER_PREFIX: &str = "U#";

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

/// Where a members listing continues: opaque to clients (base64url JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberCursor {
    #[serde(rename = "g")]
    generation: String,
    #[serde(rename = "s")]
    shard: u32,
    /// The last user id returned from `shard`, if the listing stopped inside it.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

impl MemberCursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor serializes");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }
    /// `None` for anything this code did not issue.
    pub fn decode(raw: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).ok()?;
        let c: Self = serde_json::from_slice(&bytes).ok()?;
        (c.shard < SHARDS).then_some(c)
    }
}

#[derive(Debug)]
pub struct MemberPage {
    pub user_ids: Vec<String>,
    pub next: Option<MemberCursor>,
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

fn heads_pk(account: &AccountId) -> String {
    format!("{account}#SEGMENTS")
}

fn head_sk(system: SystemGuid, segment: SegmentGuid) -> String {
    format!("S#{system}#{segment}")
}

fn guard_sk(system: SystemGuid, external_id: &str) -> String {
    format!("X#{system}#{external_id}")
}

fn shard_pk(account: &AccountId, segment: SegmentGuid, generation: &str, shard: u32) -> String {
    format!("{account}#SEG#{segment}#{generation}#{shard:02}")
}

fn member_sk(user_id: &str) -> String {
    format!("{MEMBER_PREFIX}{user_id}")
}

/// The shard of a user id: FNV-1a, because the layout must never change between releases
/// (std's hasher makes no such promise) and it costs nothing next to a network call.
pub fn shard_of(user_id: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(SHARDS)) as u32
}

fn new_generation() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn head_item(h: &SegmentHead) -> Item {
    let mut item = key(heads_pk(&h.account), head_sk(h.system, h.segment));
    item.insert("systemGuid".into(), s(h.system.to_string()));
    item.insert("segmentGuid".into(), s(h.segment.to_string()));
    item.insert("name".into(), s(&h.name));
    item.insert("generation".into(), s(&h.generation));
    item.insert("createdAt".into(), n(h.created_at));
    item.insert("updatedAt".into(), n(h.updated_at));
    if let Some(x) = &h.external_id {
        item.insert("externalId".into(), s(x));
    }
    item
}

fn parse_head(account: &AccountId, item: &Item) -> Result<SegmentHead, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("segment head: {what}"));
    Ok(SegmentHead {
        account: account.clone(),
        system: SystemGuid::parse(get_s(item, "systemGuid")?).map_err(|_| corrupt("systemGuid"))?,
        segment: SegmentGuid::parse(get_s(item, "segmentGuid")?).map_err(|_| corrupt("segmentGuid"))?,
        external_id: item.get("externalId").and_then(|v| v.as_s().ok()).cloned(),
        name: get_s(item, "name")?.to_string(),
        generation: get_s(item, "generation")?.to_string(),
        created_at: get_n(item, "createdAt")?,
        updated_at: get_n(item, "updatedAt")?,
    })
}

fn put(item: Item) -> WriteRequest {
    WriteRequest::builder()
        .put_request(PutRequest::builder().set_item(Some(item)).build().expect("item is set"))
        .build()
}

fn delete(key: Item) -> WriteRequest {
    WriteRequest::builder()
        .delete_request(DeleteRequest::builder().set_key(Some(key)).build().expect("key is set"))
        .build()
}

/// The member and counter items of a fresh generation holding exactly `ids`.
fn generation_items(
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

/// A head with the sums of its current generation's counters.
fn view_of(head: SegmentHead, counters: &HashMap<String, (i64, i64)>) -> SegmentView {
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
struct Change {
    pk: String,
    user_id: String,
}

impl DynamoStore {
    pub async fn system_exists(&self, account: &AccountId, system: SystemGuid) -> Result<bool, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(account)))
            .key("sk", s(format!("SYSTEM#{system}")))
            .projection_expression("pk")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item.is_some())
    }

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
            return Err(if super::dynamo::is_cancelled_by_condition(&e) {
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
            Err(e) if super::dynamo::is_cancelled_by_condition(&e) => Ok(()),
            Err(e) => Err(sdk_error("TransactWriteItems", e).into()),
        }
    }

    pub async fn members(
        &self,
        head: &SegmentHead,
        cursor: Option<MemberCursor>,
        limit: usize,
    ) -> Result<MemberPage, SegmentError> {
        if cursor.as_ref().is_some_and(|c| c.generation != head.generation) {
            return Err(SegmentError::StaleCursor);
        }
        let first = cursor.as_ref().map_or(0, |c| c.shard);
        // Only shards with members are read: a small segment costs a few Queries, not 100.
        let shards: Vec<u32> = self
            .counters(head)
            .await?
            .into_iter()
            .filter(|(shard, (count, _))| *count > 0 && *shard >= first)
            .map(|(shard, _)| shard)
            .collect();
        let mut after = cursor.and_then(|c| c.after);
        let mut user_ids = Vec::with_capacity(limit.min(10_000));
        for (i, &shard) in shards.iter().enumerate() {
            if shard != first {
                after = None;
            }
            let pk = shard_pk(&head.account, head.segment, &head.generation, shard);
            loop {
                let want = limit - user_ids.len();
                let (ids, more) = self.member_query(&pk, after.take(), want).await?;
                user_ids.extend(ids);
                if user_ids.len() >= limit {
                    let next = if more {
                        Some(MemberCursor {
                            generation: head.generation.clone(),
                            shard,
                            after: user_ids.last().cloned(),
                        })
                    } else {
                        shards.get(i + 1).map(|&s| MemberCursor {
                            generation: head.generation.clone(),
                            shard: s,
                            after: None,
                        })
                    };
                    return Ok(MemberPage { user_ids, next });
                }
                if !more {
                    break;
                }
                after = user_ids.last().cloned();
            }
        }
        Ok(MemberPage { user_ids, next: None })
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
}

impl DynamoStore {
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

    /// Each non-empty shard's (count, last change in epoch ms): one BatchGetItem of 100 keys.
    async fn counters(&self, head: &SegmentHead) -> Result<BTreeMap<u32, (i64, i64)>, StoreError> {
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
    async fn counter_items(&self, heads: &[SegmentHead]) -> Result<HashMap<String, (i64, i64)>, StoreError> {
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
    async fn present<'a>(
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
            .map(|item| Ok(get_s(item, "sk")?[MEMBER_PREFIX.len()..].to_string()))
            .collect()
    }

    /// One page of a shard's members, in user-id order; `more` when the shard may hold more.
    async fn member_query(
        &self,
        pk: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let start = after.map(|u| key(pk.to_string(), member_sk(&u)));
        let page = self
            .client()
            .query()
            .table_name(&self.tables().segments)
            .key_condition_expression("pk = :p AND begins_with(sk, :u)")
            .expression_attribute_values(":p", s(pk))
            .expression_attribute_values(":u", s(MEMBER_PREFIX))
            .projection_expression("sk")
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let ids = page
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| Ok(get_s(item, "sk")?[MEMBER_PREFIX.len()..].to_string()))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((ids, page.last_evaluated_key.is_some()))
    }

    async fn write_generation(
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
    async fn override_members(
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

    /// Applies membership changes (puts when `adding`, deletes otherwise) and their counter
    /// deltas in transactions of up to 100 actions, each member conditioned on its current
    /// state so that a concurrent call that made the same change first is not counted twice.
    /// Returns how many changes were applied by this call.
    async fn apply_changes(
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
        let mut running = JoinSet::new();
        let mut pending = groups.into_iter();
        let (mut applied, mut first_error) = (0, None);
        loop {
            while running.len() < READ_CONCURRENCY && first_error.is_none() {
                let Some(group) = pending.next() else { break };
                let (client, table) = (self.client().clone(), self.tables().segments.clone());
                running.spawn(async move { transact_group(&client, &table, group, adding, now_ms).await });
            }
            match running.join_next().await {
                None => break,
                Some(Ok(Ok(n))) => applied += n,
                Some(Ok(Err(e))) => {
                    first_error.get_or_insert(e);
                }
                Some(Err(join)) => {
                    first_error
                        .get_or_insert(StoreError::Unavailable(format!("transaction task failed: {join}")));
                }
            }
        }
        first_error.map_or(Ok(applied), Err)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // The layout depends on these values never changing.
        assert_eq!(shard_of(""), (0xcbf2_9ce4_8422_2325u64 % 100) as u32);
        assert_eq!(shard_of("jane.doe@walkme.com"), shard_of("jane.doe@walkme.com"));
        let mut hits = [0u32; SHARDS as usize];
        for i in 0..25_000 {
            hits[shard_of(&format!("user{i}@company.com")) as usize] += 1;
        }
        let (min, max) = (hits.iter().min().unwrap(), hits.iter().max().unwrap());
        assert!(*min > 150 && *max < 350, "25,000 ids spread over 100 shards: min {min}, max {max}");
    }

    #[test]
    fn cursor_round_trips_and_refuses_foreign_input() {
        let c = MemberCursor { generation: "abc".into(), shard: 7, after: Some("u#1".into()) };
        assert_eq!(MemberCursor::decode(&c.encode()), Some(c));
        assert_eq!(MemberCursor::decode("not base64!"), None);
        assert_eq!(MemberCursor::decode(""), None);
        let far = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"g":"abc","s":100}"#);
        assert_eq!(MemberCursor::decode(&far), None, "shard past the last");
    }

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
