//! Bulk file imports in the config table: `ACCOUNT#<accountId>` / `IMPORT#<integrationId>#<importId>`.
//!
//! Import ids are UUIDv7, so an integration's imports sort by creation time and its list is one
//! `Query`, newest first. The item is the import's status and its checkpoint: the worker that
//! holds the lease (`leaseOwner`, `leaseUntil`) advances it, conditionally on still holding it,
//! after every page of rows it wrote (the import-worker function); counts are set, never added,
//! so a page read twice after a crash or a redelivered event is counted once.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};

use super::StoreError;
use super::codec::{Item, get_n, get_s, n, opt_n, s};
use super::dynamo::{DynamoStore, is_conditional_failure, sdk_error};
use super::transact::{cancellation_reasons, condition_failed, transact_with_retry};
use domain::AccountId;
use domain::import::{Format, ImportMode};

/// How long an import's record is kept after it was created (DynamoDB TTL): its file and
/// report are deleted after [`crate::imports::FILE_RETENTION_DAYS`].
pub const RECORD_RETENTION_SECS: i64 = 30 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStatus {
    WaitingForUpload,
    Processing,
    Completed,
    Failed,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::WaitingForUpload => "waiting_for_upload",
            ImportStatus::Processing => "processing",
            ImportStatus::Completed => "completed",
            ImportStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "waiting_for_upload" => ImportStatus::WaitingForUpload,
            "processing" => ImportStatus::Processing,
            "completed" => ImportStatus::Completed,
            "failed" => ImportStatus::Failed,
            other => return Err(StoreError::Corrupt(format!("import status '{other}'"))),
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, ImportStatus::Completed | ImportStatus::Failed)
    }
}

/// How far an import has read its file: everything a new invocation needs to go on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the file fully processed (a row boundary).
    pub bytes_read: i64,
    /// The file row number of the last row read (header and blank rows counted): where a
    /// resumed import's row numbers go on from.
    pub last_row: i64,
    pub rows_read: i64,
    pub accepted: i64,
    pub rejected: i64,
    /// Rows whose user a later row of the same page of the file wrote again.
    pub superseded: i64,
    /// The CSV header, once read (a resumed import starts past it).
    pub header: Option<Vec<String>>,
    /// Columns (CSV) or paths (NDJSON) that name no property, each once.
    pub ignored: Vec<String>,
    /// The file's ETag when the import first read it: a file replaced during the import fails it.
    pub etag: Option<String>,
    /// Rejected rows written to the report so far (at most `MAX_REPORTED_ERRORS`).
    pub reported: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    pub account: AccountId,
    pub integration_id: String,
    pub import_id: String,
    pub format: Format,
    pub mode: ImportMode,
    pub status: ImportStatus,
    pub callback_url: Option<String>,
    pub created_at: i64,
    /// The upload URL's expiry.
    pub upload_expires_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub failure: Option<String>,
    pub progress: Progress,
    /// `pending`, `delivered` or `failed` once the import ended with a callback to call.
    pub callback_status: Option<String>,
    /// The API client that created it: the rows it writes are that client's usage (an import
    /// made before clients were recorded counts under `import`).
    pub client_id: Option<String>,
}

fn account_pk(account: &AccountId) -> String {
    format!("ACCOUNT#{account}")
}

/// Imports of one account that may run at once: the others wait in the queue, so one account
/// never holds every worker (docs/DECISIONS.md, "Bulk file import").
pub const RUNNING_PER_ACCOUNT: u32 = 2;

fn running_sk(slot: u32) -> String {
    format!("IMPORTSLOT#{slot}")
}

fn import_sk(integration_id: &str, import_id: &str) -> String {
    format!("IMPORT#{integration_id}#{import_id}")
}

fn list_of(v: &[String]) -> AttributeValue {
    AttributeValue::L(v.iter().map(|x| s(x.as_str())).collect())
}

fn strings(item: &Item, name: &str) -> Vec<String> {
    match item.get(name) {
        Some(AttributeValue::L(l)) => l.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    }
}

fn opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn record_from_item(item: &Item) -> Result<ImportRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("import {what}"));
    let progress = Progress {
        bytes_read: opt_n(item, "bytesRead")?.unwrap_or(0),
        last_row: opt_n(item, "lastRow")?.unwrap_or(0),
        rows_read: opt_n(item, "rowsRead")?.unwrap_or(0),
        accepted: opt_n(item, "accepted")?.unwrap_or(0),
        rejected: opt_n(item, "rejected")?.unwrap_or(0),
        superseded: opt_n(item, "superseded")?.unwrap_or(0),
        header: item.contains_key("header").then(|| strings(item, "header")),
        ignored: strings(item, "ignored"),
        etag: opt_s(item, "etag"),
        reported: opt_n(item, "reported")?.unwrap_or(0),
    };
    Ok(ImportRecord {
        account: AccountId::parse(get_s(item, "accountId")?).map_err(|_| corrupt("account"))?,
        integration_id: get_s(item, "integrationId")?.to_string(),
        import_id: get_s(item, "importId")?.to_string(),
        format: Format::parse(get_s(item, "format")?).ok_or_else(|| corrupt("format"))?,
        mode: ImportMode::parse(get_s(item, "mode")?).ok_or_else(|| corrupt("mode"))?,
        status: ImportStatus::parse(get_s(item, "status")?)?,
        callback_url: opt_s(item, "callbackUrl"),
        created_at: get_n(item, "createdAt")?,
        upload_expires_at: get_n(item, "uploadExpiresAt")?,
        started_at: opt_n(item, "startedAt")?,
        finished_at: opt_n(item, "finishedAt")?,
        failure: opt_s(item, "failure"),
        progress,
        callback_status: opt_s(item, "callbackStatus"),
        client_id: opt_s(item, "clientId"),
    })
}

/// The outcome of asking for an import's lease.
#[derive(Debug)]
pub enum Lease {
    /// Ours until the time asked for: the record as it was when we took it.
    Taken(Box<ImportRecord>),
    /// Another worker holds it, or the import has ended: nothing to do.
    Busy,
    /// No such import (never created, or its record expired).
    Missing,
}

/// One page's checkpoint, written only while the lease is held.
#[derive(Debug)]
pub struct Checkpoint<'a> {
    pub progress: &'a Progress,
    pub lease_until: i64,
    /// Users the page wrote, added to the account's usage in the same transaction.
    pub usage: Option<PageUsage<'a>>,
}

/// A page's users written, as usage of (account, client, day). The checkpoint that adds them
/// is conditioned on the byte offset the last checkpoint stored, so a checkpoint sent twice
/// (its answer lost) adds them once.
#[derive(Debug)]
pub struct PageUsage<'a> {
    pub client_id: &'a str,
    pub day: &'a str,
    pub users_updated: i64,
    /// `bytesRead` as the last checkpoint stored it.
    pub after_bytes: i64,
}

impl DynamoStore {
    pub async fn create_import(&self, rec: &ImportRecord) -> Result<(), StoreError> {
        let mut item: Item = HashMap::from([
            ("pk".to_string(), s(account_pk(&rec.account))),
            ("sk".to_string(), s(import_sk(&rec.integration_id, &rec.import_id))),
            ("accountId".to_string(), s(rec.account.as_str())),
            ("integrationId".to_string(), s(rec.integration_id.as_str())),
            ("importId".to_string(), s(rec.import_id.as_str())),
            ("format".to_string(), s(rec.format.as_str())),
            ("mode".to_string(), s(rec.mode.as_str())),
            ("status".to_string(), s(rec.status.as_str())),
            ("createdAt".to_string(), n(rec.created_at)),
            ("uploadExpiresAt".to_string(), n(rec.upload_expires_at)),
            ("expiresAt".to_string(), n(rec.created_at + RECORD_RETENTION_SECS)),
        ]);
        if let Some(client) = &rec.client_id {
            item.insert("clientId".into(), s(client.as_str()));
        }
        if let Some(url) = &rec.callback_url {
            item.insert("callbackUrl".into(), s(url.as_str()));
        }
        self.client()
            .put_item()
            .table_name(&self.tables().config)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    pub async fn get_import(
        &self,
        account: &AccountId,
        integration_id: &str,
        import_id: &str,
    ) -> Result<Option<ImportRecord>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(account)))
            .key("sk", s(import_sk(integration_id, import_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.as_ref().map(record_from_item).transpose()
    }

    /// An integration's imports, newest first: up to `limit`, after the import id `after`.
    /// Returns the page and whether more follow.
    pub async fn list_imports(
        &self,
        account: &AccountId,
        integration_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<ImportRecord>, bool), StoreError> {
        let prefix = format!("IMPORT#{integration_id}#");
        let mut q = self
            .client()
            .query()
            .table_name(&self.tables().config)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", s(account_pk(account)))
            .expression_attribute_values(":p", s(prefix.as_str()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        if let Some(after) = after {
            q = q
                .exclusive_start_key("pk", s(account_pk(account)))
                .exclusive_start_key("sk", s(import_sk(integration_id, after)));
        }
        let out = q.send().await.map_err(|e| sdk_error("Query", e))?;
        let mut records: Vec<ImportRecord> =
            out.items.unwrap_or_default().iter().map(record_from_item).collect::<Result<_, _>>()?;
        let more = records.len() > limit;
        records.truncate(limit);
        Ok((records, more))
    }

    /// Takes the import's lease until `until` (epoch seconds) if nobody holds it, a holder's
    /// lease ran out (that worker died), or `owner` holds it already: owners are queue
    /// messages, and SQS delivers a message again only once its last delivery is over (the
    /// queue's visibility timeout is longer than the worker's), so that holder is gone. The
    /// import must not have ended.
    pub async fn lease_import(
        &self,
        account: &AccountId,
        integration_id: &str,
        import_id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<Lease, StoreError> {
        let out = self
            .client()
            .update_item()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(account)))
            .key("sk", s(import_sk(integration_id, import_id)))
            .update_expression(
                "SET leaseOwner = :o, leaseUntil = :u, #st = :p, startedAt = if_not_exists(startedAt, :now)",
            )
            .condition_expression(
                "attribute_exists(pk) AND #st IN (:w, :p) AND \
                 (attribute_not_exists(leaseUntil) OR leaseUntil < :now OR leaseOwner = :o)",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":u", n(until))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":w", s(ImportStatus::WaitingForUpload.as_str()))
            .expression_attribute_values(":p", s(ImportStatus::Processing.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => match out.attributes {
                Some(item) => Ok(Lease::Taken(Box::new(record_from_item(&item)?))),
                None => Err(StoreError::Corrupt("UpdateItem returned no attributes".into())),
            },
            Err(e) if is_conditional_failure(&e) => {
                match self.get_import(account, integration_id, import_id).await? {
                    None => Ok(Lease::Missing),
                    Some(_) => Ok(Lease::Busy),
                }
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    /// Records a page's progress and extends the lease; `Ok(false)` when the lease was lost
    /// (another worker took it over: this one must stop without writing more).
    pub async fn checkpoint_import(
        &self,
        rec: &ImportRecord,
        owner: &str,
        cp: Checkpoint<'_>,
    ) -> Result<bool, StoreError> {
        let p = cp.progress;
        let mut expr = String::from(
            "SET bytesRead = :b, lastRow = :lr, rowsRead = :r, accepted = :a, rejected = :j, superseded = :d, \
             ignored = :ig, reported = :rep, leaseUntil = :u",
        );
        let mut req = self
            .held(rec, owner)
            .expression_attribute_values(":b", n(p.bytes_read))
            .expression_attribute_values(":lr", n(p.last_row))
            .expression_attribute_values(":r", n(p.rows_read))
            .expression_attribute_values(":a", n(p.accepted))
            .expression_attribute_values(":j", n(p.rejected))
            .expression_attribute_values(":d", n(p.superseded))
            .expression_attribute_values(":ig", list_of(&p.ignored))
            .expression_attribute_values(":rep", n(p.reported))
            .expression_attribute_values(":u", n(cp.lease_until));
        if let Some(h) = &p.header {
            expr.push_str(", header = :h");
            req = req.expression_attribute_values(":h", list_of(h));
        }
        if let Some(etag) = &p.etag {
            expr.push_str(", etag = :e");
            req = req.expression_attribute_values(":e", s(etag.as_str()));
        }
        let Some(usage) = cp.usage.filter(|u| u.users_updated > 0) else {
            return while_held(req.update_expression(expr).send().await);
        };
        // The page's usage with its checkpoint, in one transaction: both or neither.
        let update = req.as_input().clone();
        let record = Update::builder()
            .table_name(&self.tables().config)
            .set_key(update.get_key().clone())
            .update_expression(expr)
            .condition_expression(if usage.after_bytes == 0 {
                "leaseOwner = :o AND (attribute_not_exists(bytesRead) OR bytesRead = :prev)"
            } else {
                "leaseOwner = :o AND bytesRead = :prev"
            })
            .set_expression_attribute_values(update.get_expression_attribute_values().clone().map(|mut v| {
                v.insert(":prev".into(), n(usage.after_bytes));
                v
            }))
            .build()
            .expect("complete");
        let add = Update::builder()
            .table_name(&self.tables().config)
            .key("pk", s(crate::protections::usage_pk(&rec.account, usage.day)))
            .key("sk", s(usage.client_id))
            .update_expression("ADD usersUpdated :u")
            .expression_attribute_values(":u", n(usage.users_updated))
            .build()
            .expect("complete");
        let items = vec![
            TransactWriteItem::builder().update(record).build(),
            TransactWriteItem::builder().update(add).build(),
        ];
        match transact_with_retry(self.client(), items).await {
            Ok(()) => Ok(true),
            Err(e) if cancellation_reasons(&e).is_some_and(|r| condition_failed(&r, 0)) => {
                // Lost the lease, or a send whose answer was lost committed already: the
                // stored offset says which.
                let item = self
                    .client()
                    .get_item()
                    .table_name(&self.tables().config)
                    .set_key(update.get_key().clone())
                    .consistent_read(true)
                    .projection_expression("leaseOwner, bytesRead")
                    .send()
                    .await
                    .map_err(|e| sdk_error("GetItem", e))?
                    .item
                    .unwrap_or_default();
                Ok(opt_s(&item, "leaseOwner").as_deref() == Some(owner)
                    && opt_n(&item, "bytesRead")? == Some(p.bytes_read))
            }
            Err(e) => Err(sdk_error("TransactWriteItems", e)),
        }
    }

    /// Ends the import (`completed`, or `failed` with `failure`), releasing the lease.
    pub async fn finish_import(
        &self,
        rec: &ImportRecord,
        owner: &str,
        status: ImportStatus,
        failure: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut expr = String::from("SET #st = :s, finishedAt = :now REMOVE leaseOwner, leaseUntil");
        let mut req = self
            .held(rec, owner)
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":s", s(status.as_str()))
            .expression_attribute_values(":now", n(now));
        if let Some(f) = failure {
            expr = expr.replacen(" REMOVE", ", failure = :f REMOVE", 1);
            req = req.expression_attribute_values(":f", s(f));
        }
        if rec.callback_url.is_some() {
            expr = expr.replacen(" REMOVE", ", callbackStatus = :cb REMOVE", 1);
            req = req.expression_attribute_values(":cb", s("pending"));
        }
        while_held(req.update_expression(expr).send().await)
    }

    /// Lets the lease go at once, recording no progress: a leg that failed midway leaves the
    /// import to the next delivery, which resumes at the last checkpoint.
    pub async fn release_import(
        &self,
        rec: &ImportRecord,
        owner: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let req = self
            .held(rec, owner)
            .update_expression("SET leaseUntil = :u")
            .expression_attribute_values(":u", n(now - 1));
        while_held(req.send().await)
    }

    /// Takes one of the account's [`RUNNING_PER_ACCOUNT`] running slots for `owner` until
    /// `until`: a slot nobody holds, whose holder's time ran out, or that `owner` (a queue
    /// message delivered again) holds already. `None` when every slot is busy.
    pub async fn take_running_slot(
        &self,
        account: &AccountId,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<u32>, StoreError> {
        for slot in 0..RUNNING_PER_ACCOUNT {
            let out = self
                .client()
                .update_item()
                .table_name(&self.tables().config)
                .key("pk", s(account_pk(account)))
                .key("sk", s(running_sk(slot)))
                .update_expression("SET slotOwner = :o, slotUntil = :u")
                .condition_expression("attribute_not_exists(pk) OR slotUntil < :now OR slotOwner = :o")
                .expression_attribute_values(":o", s(owner))
                .expression_attribute_values(":u", n(until))
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            if while_held(out)? {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    /// Frees a running slot `owner` holds (a no-op when it holds it no more).
    pub async fn release_running_slot(
        &self,
        account: &AccountId,
        slot: u32,
        owner: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let out = self
            .client()
            .update_item()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(account)))
            .key("sk", s(running_sk(slot)))
            .update_expression("SET slotUntil = :u")
            .condition_expression("slotOwner = :o")
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":u", n(now - 1))
            .send()
            .await;
        while_held(out).map(|_| ())
    }

    /// An update of the import's record, applied only while `owner` holds its lease.
    fn held(
        &self,
        rec: &ImportRecord,
        owner: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client()
            .update_item()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(&rec.account)))
            .key("sk", s(import_sk(&rec.integration_id, &rec.import_id)))
            .condition_expression("leaseOwner = :o")
            .expression_attribute_values(":o", s(owner))
    }

    /// Records how the callback went (`delivered` or `failed`), once the import has ended.
    pub async fn set_callback_status(&self, rec: &ImportRecord, status: &str) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(&self.tables().config)
            .key("pk", s(account_pk(&rec.account)))
            .key("sk", s(import_sk(&rec.integration_id, &rec.import_id)))
            .update_expression("SET callbackStatus = :c")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":c", s(status))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;
        Ok(())
    }
}

/// Whether an update of [`DynamoStore::held`] was applied (`false`: the lease was lost).
fn while_held<
    T,
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
>(
    out: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<bool, StoreError> {
    match out {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(sdk_error("UpdateItem", e)),
    }
}
