//! Rate-limit windows and idempotency records, in the config table (which has TTL on
//! `expiresAt`). Keys: `RATE#<acc>#<shard>` / `B<block start>` (a counter per second of a
//! block of [`BLOCK_SECS`] seconds) and `IDEM#<acc>#<sha256(key)>` /
//! `IDEM`; a window is written once per lease of an instance, not per call (see
//! the `protect` crate's `rate`), and idempotency records are one per client-chosen key. Usage sums live
//! under `USAGE#<acc>#<day>` / `<clientId>`.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::StoreError;
use super::accounts::{account_pk, limits_pk};
use super::codec::{Item, get_n, get_s, n, s};
use super::concurrent::for_each_bounded;
use super::dynamo::{DynamoStore, sdk_error};
use domain::AccountId;

/// Seconds whose rate-limit windows share one item (and so one lease write).
pub const BLOCK_SECS: i64 = 4;
/// How long an idempotency record is kept.
pub const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;
/// How long a claim of an `Idempotency-Key` holds while its call runs: longer than any
/// function's timeout (29 s), so a live call never loses its claim.
pub const IDEMPOTENCY_LEASE_SECS: i64 = 60;

/// A response as kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// An idempotency record: a claimed key whose call still runs, or the response it completed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Running { fingerprint: String },
    Done { fingerprint: String, response: StoredResponse },
}

/// Usage sums over calls, per (account, client, day).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub calls: i64,
    pub users_updated: i64,
    pub segment_ids: i64,
}

/// A kept body longer than this is stored in parts beside its record: an item holds at most
/// 400 KB, and a Lambda answer up to 6 MB (docs/DECISIONS.md "Large answers are replayed
/// whole").
const BODY_PART_BYTES: usize = 350 * 1024;

/// Window items outlive their second by a minute, then TTL removes them.
const WINDOW_TTL_SECS: i64 = 60;

fn idem_pk(account: &AccountId, key_hash: &str) -> String {
    format!("IDEM#{account}#{key_hash}")
}

/// Where a record's body is when it is stored in parts: `BODY#<bodyId>#<part>` items of the
/// record's partition. The id is the body's digest, so a completion by a call whose lease had
/// lapsed (two bodies under one key) never mixes its parts with another's.
fn body_parts_prefix(body_id: &str) -> String {
    format!("BODY#{body_id}#")
}

fn body_id(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_record(item: &Item, now: i64) -> Result<Option<Record>, StoreError> {
    if get_n(item, "expiresAt")? <= now {
        return Ok(None);
    }
    let fingerprint = get_s(item, "fingerprint")?.to_string();
    if get_s(item, "state")? == "running" {
        if get_n(item, "leaseUntil")? <= now {
            return Ok(None);
        }
        return Ok(Some(Record::Running { fingerprint }));
    }
    let opt_s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let body = match item.get("body") {
        Some(AttributeValue::B(b)) => b.clone().into_inner(),
        _ => Vec::new(),
    };
    Ok(Some(Record::Done {
        fingerprint,
        response: StoredResponse {
            status: u16::try_from(get_n(item, "status")?)
                .map_err(|_| StoreError::Corrupt("idempotency status".into()))?,
            content_type: opt_s("contentType"),
            location: opt_s("location"),
            body,
        },
    }))
}

impl DynamoStore {
    /// The account's requests-per-second limit (`None`: unknown account).
    pub async fn rate_limit(&self, account: &AccountId) -> Result<Option<i64>, StoreError> {
        // The limits item; an account made before it existed keeps its limit on its own item.
        for (pk, sk) in [(limits_pk(account), "LIMITS"), (account_pk(account), "ACCOUNT")] {
            let out = self
                .client()
                .get_item()
                .table_name(&self.tables().config)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .projection_expression("rateLimit")
                .send()
                .await
                .map_err(|e| sdk_error("GetItem", e))?;
            if let Some(limit) = out.item.as_ref().and_then(|item| get_n(item, "rateLimit").ok()) {
                return Ok(Some(limit));
            }
        }
        Ok(None)
    }

    /// Charges `per_second` units into every shard's window of each of `seconds`: one
    /// unconditional `UpdateItem` (`ADD`) per shard and block, so the windows of those seconds
    /// are full for every instance's leases (the debt of a big call, paid in the seconds it
    /// buys; docs/DECISIONS.md "A big call's debt is charged ahead").
    pub async fn charge_windows(
        &self,
        account: &AccountId,
        shards: i64,
        seconds: &[(i64, i64)],
    ) -> Result<(), StoreError> {
        let mut blocks: Vec<(i64, Vec<(i64, i64)>)> = Vec::new();
        for &(sec, units) in seconds {
            let block = sec - sec.rem_euclid(BLOCK_SECS);
            match blocks.last_mut() {
                Some((b, secs)) if *b == block => secs.push((sec, units)),
                _ => blocks.push((block, vec![(sec, units)])),
            }
        }
        for shard in 0..shards {
            for (block, secs) in &blocks {
                let mut update = self
                    .client()
                    .update_item()
                    .table_name(&self.tables().config)
                    .key("pk", s(format!("RATE#{account}#{shard}")))
                    .key("sk", s(block_sk(*block)))
                    .expression_attribute_values(":exp", n(block + BLOCK_SECS + WINDOW_TTL_SECS));
                let mut adds = Vec::new();
                for (i, &(sec, units)) in secs.iter().enumerate() {
                    adds.push(format!("#n{i} :w{i}"));
                    update = update
                        .expression_attribute_names(format!("#n{i}"), counter_name(sec - block))
                        .expression_attribute_values(format!(":w{i}"), n(units));
                }
                update
                    .update_expression(format!("ADD {} SET expiresAt = :exp", adds.join(", ")))
                    .send()
                    .await
                    .map_err(|e| sdk_error("UpdateItem", e))?;
            }
        }
        Ok(())
    }

    /// Leases units from one block of [`BLOCK_SECS`] one-second windows of `shard` (one item,
    /// a counter `n<offset>` per second) with one conditional `UpdateItem`: `wants` holds
    /// (second, units) for seconds of the block starting at `block`, the first being the
    /// current one. Each is granted only if it leaves its second at most `cap`. When a second
    /// has less room than asked, the write is sent once more with what each has left, if the
    /// current second still has `need`. Returns what was granted per second (empty: the
    /// current second is full for this call). At most two conditional `UpdateItem`s.
    pub async fn lease(
        &self,
        account: &AccountId,
        shard: i64,
        block: i64,
        cap: i64,
        wants: &[(i64, i64)],
        need: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut wants: Vec<(i64, i64)> = wants.iter().map(|&(sec, want)| (sec, want.min(cap))).collect();
        for _ in 0..2 {
            let mut update = self
                .client()
                .update_item()
                .table_name(&self.tables().config)
                .key("pk", s(format!("RATE#{account}#{shard}")))
                .key("sk", s(block_sk(block)))
                .expression_attribute_values(":exp", n(block + BLOCK_SECS + WINDOW_TTL_SECS))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            let (mut adds, mut conditions) = (Vec::new(), Vec::new());
            for (i, &(sec, want)) in wants.iter().enumerate() {
                let name = counter_name(sec - block);
                adds.push(format!("#n{i} :w{i}"));
                conditions.push(format!("(attribute_not_exists(#n{i}) OR #n{i} <= :r{i})"));
                update = update
                    .expression_attribute_names(format!("#n{i}"), name)
                    .expression_attribute_values(format!(":w{i}"), n(want))
                    .expression_attribute_values(format!(":r{i}"), n(cap - want));
            }
            let res = update
                .update_expression(format!("ADD {} SET expiresAt = :exp", adds.join(", ")))
                .condition_expression(conditions.join(" AND "))
                .send()
                .await;
            let e = match res {
                Ok(_) => return Ok(wants),
                Err(e) => e,
            };
            let Some(UpdateItemError::ConditionalCheckFailedException(c)) = e.as_service_error() else {
                return Err(sdk_error("UpdateItem", e));
            };
            let used = |sec: i64| {
                let name = counter_name(sec - block);
                match c.item().filter(|i| i.contains_key(&name)) {
                    Some(i) => get_n(i, &name),
                    None => Ok(0),
                }
            };
            let mut left = Vec::with_capacity(wants.len());
            for (i, &(sec, want)) in wants.iter().enumerate() {
                let room = cap - used(sec)?;
                if i == 0 && room < need {
                    return Ok(Vec::new());
                }
                if room > 0 {
                    left.push((sec, want.min(room)));
                }
            }
            wants = left;
        }
        Ok(Vec::new())
    }
}

/// The sort key of a block of windows (`B` keeps it apart from the one-second items of
/// earlier releases, `<epoch second>`, which TTL removes within a minute).
fn block_sk(block: i64) -> String {
    format!("B{block}")
}

/// The counter of the second `offset` seconds into its block.
fn counter_name(offset: i64) -> String {
    format!("n{offset}")
}

impl DynamoStore {
    /// Claims the key for a new call; `Ok(None)` when claimed, else the live record holding it.
    pub async fn claim(
        &self,
        account: &AccountId,
        key_hash: &str,
        fingerprint: &str,
        now: i64,
    ) -> Result<Option<Record>, StoreError> {
        let res = self
            .client()
            .put_item()
            .table_name(&self.tables().config)
            .item("pk", s(idem_pk(account, key_hash)))
            .item("sk", s("IDEM"))
            .item("state", s("running"))
            .item("fingerprint", s(fingerprint))
            .item("leaseUntil", n(now + IDEMPOTENCY_LEASE_SECS))
            .item("expiresAt", n(now + IDEMPOTENCY_TTL_SECS))
            // Free, expired, or a dead call's lease: take it.
            .condition_expression(
                "attribute_not_exists(pk) OR expiresAt <= :now OR (#st = :running AND leaseUntil <= :now)",
            )
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":running", s("running"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => match c.item() {
                    Some(item) => match parse_record(item, now)? {
                        // The condition and our reading of the item disagree only at the
                        // very instant of expiry: report it as still running.
                        None => Ok(Some(Record::Running { fingerprint: get_s(item, "fingerprint")?.into() })),
                        Some(Record::Done { fingerprint, mut response }) if item.contains_key("bodyId") => {
                            response.body = self.body_parts(account, key_hash, item).await?;
                            Ok(Some(Record::Done { fingerprint, response }))
                        }
                        some => Ok(some),
                    },
                    None => Err(StoreError::Corrupt("idempotency record held but unreadable".into())),
                },
                _ => Err(sdk_error("PutItem", e)),
            },
        }
    }

    pub async fn complete(
        &self,
        account: &AccountId,
        key_hash: &str,
        response: &StoredResponse,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut req = self
            .client()
            .update_item()
            .table_name(&self.tables().config)
            .key("pk", s(idem_pk(account, key_hash)))
            .key("sk", s("IDEM"))
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":code", n(i64::from(response.status)))
            .expression_attribute_values(":exp", n(now + IDEMPOTENCY_TTL_SECS));
        let mut set = vec!["#st = :done", "#status = :code", "expiresAt = :exp"];
        if response.body.len() > BODY_PART_BYTES {
            // The parts first: a record marked done always finds all of them.
            let id = body_id(&response.body);
            self.put_body_parts(account, key_hash, &id, &response.body, now).await?;
            set.extend(["bodyId = :bid", "bodyParts = :parts"]);
            req = req.expression_attribute_values(":bid", s(id)).expression_attribute_values(
                ":parts",
                n(response.body.len().div_ceil(BODY_PART_BYTES) as i64),
            );
        } else if !response.body.is_empty() {
            set.push("body = :body");
            req = req.expression_attribute_values(
                ":body",
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(response.body.clone())),
            );
        }
        if let Some(ct) = &response.content_type {
            set.push("contentType = :ct");
            req = req.expression_attribute_values(":ct", s(ct));
        }
        if let Some(loc) = &response.location {
            set.push("#loc = :loc");
            req = req
                .expression_attribute_names("#loc", "location")
                .expression_attribute_values(":loc", s(loc));
        }
        req.update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;
        Ok(())
    }

    async fn put_body_parts(
        &self,
        account: &AccountId,
        key_hash: &str,
        id: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        let (pk, prefix) = (idem_pk(account, key_hash), body_parts_prefix(id));
        let parts: Vec<(usize, Vec<u8>)> =
            body.chunks(BODY_PART_BYTES).map(<[u8]>::to_vec).enumerate().collect();
        // One PutItem per part (at most 18 for a 6 MB Lambda answer), a few at once: the
        // functions' roles may put `IDEM#` items but not batch-write them.
        for_each_bounded(parts, 4, "idempotent answer part", |(i, part)| {
            let put = self
                .client()
                .put_item()
                .table_name(&self.tables().config)
                .item("pk", s(pk.clone()))
                .item("sk", s(format!("{prefix}{i:04}")))
                .item("body", AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(part)))
                .item("expiresAt", n(now + IDEMPOTENCY_TTL_SECS));
            async move { put.send().await.map(|_| ()).map_err(|e| sdk_error("PutItem", e)) }
        })
        .await?;
        Ok(())
    }

    /// A body stored in parts, put back together; every part must be there.
    async fn body_parts(
        &self,
        account: &AccountId,
        key_hash: &str,
        record: &Item,
    ) -> Result<Vec<u8>, StoreError> {
        let (id, count) = (get_s(record, "bodyId")?, get_n(record, "bodyParts")?);
        let items = self
            .query_prefix(&self.tables().config, &idem_pk(account, key_hash), &body_parts_prefix(id))
            .await?;
        if items.len() as i64 != count {
            return Err(StoreError::Corrupt(format!(
                "idempotent answer has {} of its {count} parts",
                items.len()
            )));
        }
        // The sort keys' zero-padded part numbers keep the Query's order the body's order.
        let mut body = Vec::new();
        for item in &items {
            match item.get("body") {
                Some(AttributeValue::B(b)) => body.extend_from_slice(b.as_ref()),
                _ => return Err(StoreError::Corrupt("idempotent answer part without a body".into())),
            }
        }
        Ok(body)
    }

    pub async fn release(&self, account: &AccountId, key_hash: &str) -> Result<(), StoreError> {
        self.client()
            .delete_item()
            .table_name(&self.tables().config)
            .key("pk", s(idem_pk(account, key_hash)))
            .key("sk", s("IDEM"))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }
}

/// `USAGE#<acc>#<day>` / `<clientId>`: one partition per account and day, one item per
/// client; written by each instance at most every few seconds (see `protect::usage`).
pub(crate) fn usage_pk(account: &AccountId, day: &str) -> String {
    format!("USAGE#{account}#{day}")
}

impl DynamoStore {
    pub async fn add_usage(
        &self,
        account: &AccountId,
        client_id: &str,
        day: &str,
        usage: &Usage,
    ) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(&self.tables().config)
            .key("pk", s(usage_pk(account, day)))
            .key("sk", s(client_id))
            .update_expression("ADD calls :c, usersUpdated :u, segmentIds :s")
            .expression_attribute_values(":c", n(usage.calls))
            .expression_attribute_values(":u", n(usage.users_updated))
            .expression_attribute_values(":s", n(usage.segment_ids))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;
        Ok(())
    }
}

impl DynamoStore {
    /// Usage of an account on each of `days` (`YYYY-MM-DD`): (day, client, sums), one strongly
    /// consistent Query per day.
    pub async fn usage(
        &self,
        account: &AccountId,
        days: &[String],
    ) -> Result<Vec<(String, String, Usage)>, StoreError> {
        let mut out = Vec::new();
        for day in days {
            for item in self.query_all(&self.tables().config, &usage_pk(account, day)).await? {
                let usage = Usage {
                    calls: get_n(&item, "calls")?,
                    users_updated: get_n(&item, "usersUpdated")?,
                    segment_ids: get_n(&item, "segmentIds")?,
                };
                out.push((day.clone(), get_s(&item, "sk")?.to_string(), usage));
            }
        }
        Ok(out)
    }
}
