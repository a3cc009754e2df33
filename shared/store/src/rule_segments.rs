//! Rule segments in the segments table (docs/TABLES.md, "Rule segments"): one partition per
//! system, `<acc>#RSYS#<systemGuid>`, holding one item per rule segment (`R#<segmentGuid>`:
//! name, description, the rule as JSON text, timezone, version, times) and the system's count
//! split over 16 items (`N#00`..`N#15`, `segments::counts`, as the static segments' counts).
//! A system's whole rule set is one `Query` of that partition; a create or delete is one
//! transaction with one of the count's items, so concurrent creates neither pass the cap nor
//! all conflict on one item.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use crate::StoreError;
use crate::codec::{Item, get_n, get_s, key, n, s};
use crate::dynamo::{DynamoStore, sdk_error};
use crate::segments::counts::{Capped, NotCounted, count_update};
use crate::transact::{cancellation_reasons, condition_failed, transact_with_retry};
use domain::{AccountId, SegmentGuid, SystemGuid};

const ITEM_PREFIX: &str = "R#";
/// The attribute naming the count item the rule segment is counted in.
const COUNT_SHARD: &str = "cs";

fn partition(account: &AccountId, system: SystemGuid) -> String {
    format!("{account}#RSYS#{system}")
}

fn item_sk(segment: SegmentGuid) -> String {
    format!("{ITEM_PREFIX}{segment}")
}

/// A rule segment as stored. `rule` is the JSON text of the rule as it was saved (numbers
/// with every digit the caller sent).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSegmentRecord {
    pub segment: SegmentGuid,
    pub system: SystemGuid,
    pub name: String,
    pub description: Option<String>,
    pub rule: String,
    pub timezone: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The count item it is counted in (set by the create; `None` before it, and for rule
    /// segments created before the count was split, counted in the single item `N`).
    pub count_shard: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleSegmentError {
    #[error("no such rule segment")]
    NotFound,
    #[error("the system holds {0} rule segments already")]
    SystemFull(usize),
    /// The stored version is not the one the write was judged against.
    #[error("the rule segment changed since version {0}")]
    VersionMismatch(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of a system's rule segments; `next` is the last segment of the page when more
/// may follow.
#[derive(Debug, Clone)]
pub struct RuleSegmentPage {
    pub segments: Vec<RuleSegmentRecord>,
    pub next: Option<SegmentGuid>,
}

fn to_item(account: &AccountId, r: &RuleSegmentRecord) -> Item {
    let mut item = key(partition(account, r.system), item_sk(r.segment));
    item.insert("segmentGuid".into(), s(r.segment.to_string()));
    item.insert("systemGuid".into(), s(r.system.to_string()));
    item.insert("name".into(), s(&r.name));
    if let Some(d) = &r.description {
        item.insert("description".into(), s(d));
    }
    item.insert("rule".into(), s(&r.rule));
    item.insert("timezone".into(), s(&r.timezone));
    item.insert("version".into(), n(r.version));
    item.insert("createdAt".into(), n(r.created_at));
    item.insert("updatedAt".into(), n(r.updated_at));
    if let Some(k) = r.count_shard {
        item.insert(COUNT_SHARD.into(), n(i64::from(k)));
    }
    item
}

fn from_item(item: &Item) -> Result<RuleSegmentRecord, StoreError> {
    let guid = |name: &str| -> Result<String, StoreError> { Ok(get_s(item, name)?.to_string()) };
    Ok(RuleSegmentRecord {
        segment: SegmentGuid::parse(&guid("segmentGuid")?)
            .map_err(|_| StoreError::Corrupt("rule segment guid".into()))?,
        system: SystemGuid::parse(&guid("systemGuid")?)
            .map_err(|_| StoreError::Corrupt("rule segment system guid".into()))?,
        name: guid("name")?,
        description: get_s(item, "description").ok().map(str::to_string),
        rule: guid("rule")?,
        timezone: guid("timezone")?,
        version: get_n(item, "version")?,
        created_at: get_n(item, "createdAt")?,
        updated_at: get_n(item, "updatedAt")?,
        count_shard: get_n(item, COUNT_SHARD).ok().and_then(|k| u32::try_from(k).ok()),
    })
}

impl DynamoStore {
    /// Creates the rule segment if the system holds fewer than `cap`; returns it as stored
    /// (with its count item). The count and the item are one transaction, so concurrent
    /// creates stop exactly at the cap.
    pub async fn create_rule_segment(
        &self,
        account: &AccountId,
        record: &RuleSegmentRecord,
        cap: usize,
    ) -> Result<RuleSegmentRecord, RuleSegmentError> {
        let table = &self.tables().segments;
        let count = [Capped { pk: partition(account, record.system), cap: cap as i64 }];
        let put = |shards: &[u32]| {
            let counted = RuleSegmentRecord { count_shard: Some(shards[0]), ..record.clone() };
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(to_item(account, &counted)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .expect("complete");
            vec![TransactWriteItem::builder().put(put).build()]
        };
        match self.transact_counted(&count, put).await {
            Ok(shards) => Ok(RuleSegmentRecord { count_shard: Some(shards[0]), ..record.clone() }),
            Err(NotCounted::Full(_)) => Err(RuleSegmentError::SystemFull(cap)),
            Err(NotCounted::Store(e)) => Err(e.into()),
            Err(NotCounted::Failed(e)) => {
                // The guid is fresh: an item under it is this call's, from an attempt that
                // committed and lost its answer.
                if cancellation_reasons(&e).is_some_and(|r| condition_failed(&r, 1))
                    && let Some(stored) = self.rule_segment(account, record.system, record.segment).await?
                {
                    return Ok(stored);
                }
                Err(sdk_error("TransactWriteItems", *e).into())
            }
        }
    }

    /// One rule segment of the system (strongly consistent), or `None`.
    pub async fn rule_segment(
        &self,
        account: &AccountId,
        system: SystemGuid,
        segment: SegmentGuid,
    ) -> Result<Option<RuleSegmentRecord>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().segments)
            .set_key(Some(key(partition(account, system), item_sk(segment))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.as_ref().map(from_item).transpose()
    }

    /// Every rule segment of the system: one `Query` (≤ 200 items of ≤ ~60 KB each).
    pub async fn rule_segments(
        &self,
        account: &AccountId,
        system: SystemGuid,
    ) -> Result<Vec<RuleSegmentRecord>, StoreError> {
        let items =
            self.query_prefix(&self.tables().segments, &partition(account, system), ITEM_PREFIX).await?;
        items.iter().map(from_item).collect()
    }

    /// The system's rule set stamp: it moves with every create, replace and delete (each
    /// adds 1 to the stamp of the count item it goes through), so a cached set is re-read
    /// only when it moved. One read unit, whatever the set's size. Read it *before* the set
    /// it stands for: a write between the two reads then shows as a change next time.
    pub async fn rule_set_stamp(&self, account: &AccountId, system: SystemGuid) -> Result<i64, StoreError> {
        self.count_stamp(&partition(account, system)).await
    }

    /// A page of the system's rule segments in guid order, after `after`.
    pub async fn rule_segment_page(
        &self,
        account: &AccountId,
        system: SystemGuid,
        after: Option<SegmentGuid>,
        limit: usize,
    ) -> Result<RuleSegmentPage, StoreError> {
        let pk = partition(account, system);
        let start = after.map(|g| key(pk.clone(), item_sk(g)));
        let out = self
            .client()
            .query()
            .table_name(&self.tables().segments)
            .key_condition_expression("pk = :p AND begins_with(sk, :s)")
            .expression_attribute_values(":p", s(&pk))
            .expression_attribute_values(":s", s(ITEM_PREFIX))
            .set_exclusive_start_key(start)
            .limit(limit as i32)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let segments = out.items().iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        let next = if out.last_evaluated_key.is_some() { segments.last().map(|r| r.segment) } else { None };
        Ok(RuleSegmentPage { segments, next })
    }

    /// Replaces the rule segment if its stored version is still `expected`; `record.version`
    /// is the new one. One transaction with the stamp of the count item it is counted in, so
    /// that cached sets see the change ([`Self::rule_set_stamp`]).
    pub async fn replace_rule_segment(
        &self,
        account: &AccountId,
        record: &RuleSegmentRecord,
        expected: i64,
    ) -> Result<(), RuleSegmentError> {
        let table = &self.tables().segments;
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(to_item(account, record)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let stamp = count_update(table, partition(account, record.system), record.count_shard, 0, None);
        let items = vec![TransactWriteItem::builder().put(put).build(), stamp];
        match transact_with_retry(self.client(), items).await {
            Ok(()) => Ok(()),
            Err(e) => match cancellation_reasons(&e) {
                Some(r) if condition_failed(&r, 0) => Err(RuleSegmentError::VersionMismatch(expected)),
                _ => Err(sdk_error("TransactWriteItems", e).into()),
            },
        }
    }

    /// Deletes the rule segment (only at `expected` when given) and counts it out of the
    /// system's count item it was counted in, in one transaction.
    pub async fn delete_rule_segment(
        &self,
        account: &AccountId,
        record: &RuleSegmentRecord,
        expected: Option<i64>,
    ) -> Result<(), RuleSegmentError> {
        let (system, segment) = (record.system, record.segment);
        let table = &self.tables().segments;
        let mut delete = Delete::builder()
            .table_name(table)
            .set_key(Some(key(partition(account, system), item_sk(segment))))
            .condition_expression(if expected.is_some() { "version = :v" } else { "attribute_exists(pk)" });
        if let Some(v) = expected {
            delete = delete.expression_attribute_values(":v", n(v));
        }
        let count = count_update(table, partition(account, system), record.count_shard, -1, None);
        let items = vec![
            TransactWriteItem::builder()
                .delete(delete.build().map_err(|e| StoreError::Corrupt(e.to_string()))?)
                .build(),
            count,
        ];
        match transact_with_retry(self.client(), items).await {
            Ok(()) => Ok(()),
            Err(e) => match cancellation_reasons(&e) {
                Some(r) if condition_failed(&r, 0) => match expected {
                    Some(v) => match self.rule_segment(account, system, segment).await? {
                        Some(_) => Err(RuleSegmentError::VersionMismatch(v)),
                        None => Err(RuleSegmentError::NotFound),
                    },
                    None => Err(RuleSegmentError::NotFound),
                },
                _ => Err(sdk_error("TransactWriteItems", e).into()),
            },
        }
    }
}
