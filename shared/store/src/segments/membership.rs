//! Membership: which users are members and how many (the counters), and add / remove as
//! conditional transactions that keep the counts exact under concurrent calls and never
//! contend for a shared item.
//!
//! A change of one member is two actions: the member item (conditional: absent to add,
//! present to remove) and the user's reverse entry (what the end-user read queries). A
//! transaction carries up to 49 changes and, per generation it touches, one `ADD n :delta` on
//! a counter item. The counter items of a generation are [`COUNTERS`] small items in
//! [`COUNTER_PARTITIONS`] partitions; the transactions of one call take consecutive counters
//! from a random start, so the ones in flight together never share an item, and another
//! call's transactions meet one only by chance (a conflict is retried on another counter).

use std::collections::{BTreeSet, HashSet};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::keys::{
    COUNTER_PARTITIONS, COUNTERS, counter_key, counter_pk, member_of, member_sk, random_u32, reverse_sk,
    shard_of, shard_pk, user_pk,
};
use super::suppressed::{gate_check, not_suppressed_check};
use super::{READ_CONCURRENCY, SegmentHead, SegmentView};
use crate::codec::{get_n, key, n, opt_n, s};
use crate::concurrent::for_each_bounded;
use crate::dynamo::{DynamoStore, sdk_error};
use crate::transact::{TRANSACT_ATTEMPTS, cancellation_reasons};
use crate::{StoreError, batch};
use domain::{AccountId, SegmentGuid};

/// DynamoDB's limit of actions per TransactWriteItems.
const MAX_TRANSACT: usize = 100;
/// Passes over the changes that other transactions held: each pass comes after the whole
/// previous one, so by then the other call has usually moved on.
const ROUNDS: u32 = 30;

/// One generation of one segment: where its members, counters and reverse entries live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Gen {
    pub(super) account: AccountId,
    pub(super) segment: SegmentGuid,
    pub(super) generation: String,
}

impl Gen {
    pub(super) fn of(head: &SegmentHead) -> Self {
        Self { account: head.account.clone(), segment: head.segment, generation: head.generation.clone() }
    }
}

/// One membership change of `user_id` in generation `gens[slot]`.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub(super) slot: usize,
    pub(super) user_id: String,
}

impl DynamoStore {
    /// The member count of a generation and its last change (epoch ms): the sum of its
    /// counter items, one strongly consistent `Query` per counter partition (≤ 4 KB each).
    pub(super) async fn count(&self, g: &Gen) -> Result<(i64, i64), StoreError> {
        let parts = for_each_bounded(0..COUNTER_PARTITIONS, COUNTER_PARTITIONS as usize, "count", |p| {
            let (client, table) = (self.client().clone(), self.tables().segments.clone());
            let pk = counter_pk(&g.account, g.segment, &g.generation, p);
            async move {
                let out = client
                    .query()
                    .table_name(table)
                    .key_condition_expression("pk = :p")
                    .expression_attribute_values(":p", s(pk))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| sdk_error("Query", e))?;
                let (mut total, mut at) = (0, 0);
                for item in out.items.unwrap_or_default() {
                    total += get_n(&item, "n")?;
                    at = at.max(opt_n(&item, "t")?.unwrap_or(0));
                }
                Ok((total, at))
            }
        })
        .await?;
        Ok(parts.into_iter().fold((0, 0), |(n, t), (pn, pt)| (n + pn, t.max(pt))))
    }

    /// The head with its count.
    pub async fn view(&self, head: SegmentHead) -> Result<SegmentView, StoreError> {
        let (user_count, at) = self.count(&Gen::of(&head)).await?;
        let updated_at = head.updated_at.max(at);
        Ok(SegmentView { head, user_count, updated_at })
    }

    /// Which of `ids` are members now (strongly consistent; ⌈n/100⌉ BatchGetItem).
    pub(super) async fn present<'a>(
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
            .map(member_of)
            .collect()
    }

    /// Applies membership changes (puts when `adding`, deletes otherwise) with their reverse
    /// entries and count deltas, in transactions of up to 100 actions; each member is
    /// conditioned on its current state, so that a change a concurrent call made first is not
    /// counted twice, and each add on its user not being suppressed. Returns how many changes
    /// this call applied, and the users of the adds refused as suppressed.
    pub(super) async fn apply_changes(
        &self,
        gens: &[Gen],
        mut changes: Vec<Change>,
        adding: bool,
        now_ms: i64,
    ) -> Result<(usize, Vec<String>), StoreError> {
        // A random order: concurrent calls over the same ids then rarely hold the same member
        // at the same moment.
        shuffle(&mut changes);
        let (mut applied, mut suppressed) = (0, Vec::new());
        let start = random_u32();
        // Adds check the account's gate, once per transaction, until it says some user of the
        // account is suppressed; from then on this call checks each user (docs/DECISIONS.md,
        // "Erasure that sticks").
        let mut check = if adding { Check::Gate } else { Check::None };
        let mut regated = Vec::new();
        for round in 0..ROUNDS {
            changes.append(&mut regated);
            if changes.is_empty() {
                return Ok((applied, suppressed));
            }
            if round > 0 {
                tokio::time::sleep(batch::backoff(round + 2)).await;
            }
            let groups = pack(std::mem::take(&mut changes), check);
            let done = for_each_bounded(
                groups.into_iter().enumerate(),
                READ_CONCURRENCY,
                "transaction",
                |(i, group)| {
                    let (client, table) = (self.client().clone(), self.tables().segments.clone());
                    let gens = gens.to_vec();
                    let counter = start.wrapping_add(i as u32);
                    async move { transact_group(&client, &table, &gens, group, check, counter, now_ms).await }
                },
            )
            .await?;
            for out in done {
                applied += out.applied;
                changes.extend(out.held);
                suppressed.extend(out.suppressed.into_iter().map(|c| c.user_id));
                if !out.gated.is_empty() {
                    check = Check::EachUser;
                    regated.extend(out.gated);
                }
            }
        }
        changes.append(&mut regated);
        if changes.is_empty() {
            Ok((applied, suppressed))
        } else {
            tracing::warn!(held = changes.len(), rounds = ROUNDS, "members still held by other transactions");
            Err(StoreError::Busy {
                op: "TransactWriteItems",
                reason: "members still held by other transactions after every round",
            })
        }
    }
}

/// What an add checks against suppression: nothing (a remove), the account's gate (one
/// ConditionCheck per transaction: 2 WCU per ≤ 49 members), or each user's marker (2 WCU per
/// member, only while some user of the account is suppressed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Gate,
    EachUser,
}

/// What one action of a transaction stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The member item or reverse entry of change `u`.
    Change(usize),
    /// Change `u`'s user's suppression marker.
    Marker(usize),
    Gate,
    Counter,
}

/// What one group's transaction did.
struct GroupOutcome {
    applied: usize,
    /// Held by other transactions: for the next pass.
    held: Vec<Change>,
    /// Adds refused: their users are suppressed.
    suppressed: Vec<Change>,
    /// Not applied because the account's gate is up: to send again, checking each user.
    gated: Vec<Change>,
}

/// Changes packed into transactions: grouped by generation, two actions per change (three
/// when each user is checked), one counter per generation and the gate, at most 100 actions.
fn pack(mut changes: Vec<Change>, check: Check) -> Vec<Vec<Change>> {
    let per_change = if check == Check::EachUser { 3 } else { 2 };
    let fixed = usize::from(check == Check::Gate);
    changes.sort_by_key(|c| c.slot);
    let mut groups: Vec<Vec<Change>> = Vec::new();
    let mut current: Vec<Change> = Vec::new();
    let mut used = fixed;
    for c in changes {
        let cost =
            |current: &Vec<Change>| per_change + usize::from(current.last().is_none_or(|l| l.slot != c.slot));
        if used + cost(&current) > MAX_TRANSACT {
            groups.push(std::mem::take(&mut current));
            used = fixed;
        }
        used += cost(&current);
        current.push(c);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = (random_u32() as usize) % (i + 1);
        v.swap(i, j);
    }
}

/// One transaction of member puts/deletes, their reverse entries and the counters' deltas,
/// re-sent until it commits. Members someone else already changed drop out; members another
/// transaction holds at the moment (`TransactionConflict`) are taken out and returned, for the
/// next pass; a conflict on the counter moves the transaction to another counter item.
/// An add whose user is suppressed drops out too, returned apart; a group stopped by the
/// account's gate is returned whole, to be sent again checking each user.
async fn transact_group(
    client: &Client,
    table: &str,
    gens: &[Gen],
    mut group: Vec<Change>,
    check: Check,
    mut counter: u32,
    now_ms: i64,
) -> Result<GroupOutcome, StoreError> {
    let (mut held_out, mut suppressed_out) = (Vec::new(), Vec::new());
    let mut attempt = 0;
    let done_with = |applied, held, suppressed, gated| GroupOutcome { applied, held, suppressed, gated };
    while !group.is_empty() {
        let (items, index) = transaction(table, gens, &group, check, counter, now_ms);
        let e = match client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => return Ok(done_with(group.len(), held_out, suppressed_out, Vec::new())),
            Err(e) => e,
        };
        let Some(reasons) = cancellation_reasons(&e) else {
            return Err(sdk_error("TransactWriteItems", e));
        };
        let reasons: Vec<String> = reasons.into_iter().map(str::to_string).collect();
        let (mut done, mut held, mut suppressed) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        let mut other = false;
        let mut gate_up = false;
        for (i, code) in reasons.iter().enumerate() {
            match (code.as_str(), index.get(i).copied()) {
                ("None", _) => {}
                ("ConditionalCheckFailed", Some(Slot::Gate)) => gate_up = true,
                ("ConditionalCheckFailed", Some(Slot::Marker(u))) => {
                    suppressed.insert(u);
                }
                ("ConditionalCheckFailed", Some(Slot::Change(u))) => {
                    done.insert(u);
                }
                ("TransactionConflict", Some(Slot::Change(u) | Slot::Marker(u))) => {
                    held.insert(u);
                }
                _ => other = true,
            }
        }
        if gate_up {
            // Some user of the account is suppressed: this group is sent again, per user.
            return Ok(done_with(0, held_out, suppressed_out, group));
        }
        let progressed = !done.is_empty() || !held.is_empty() || !suppressed.is_empty();
        let mut rest = Vec::with_capacity(group.len());
        for (u, c) in group.drain(..).enumerate() {
            if suppressed.contains(&u) {
                suppressed_out.push(c);
            } else if held.contains(&u) {
                held_out.push(c);
            } else if !done.contains(&u) {
                rest.push(c);
            }
        }
        group = rest;
        if other {
            counter = counter.wrapping_add(1 + random_u32() % (COUNTERS - 1));
        }
        if !progressed {
            // Nothing identified (throttling, a conflict on the counter): back off first.
            attempt += 1;
            if attempt >= TRANSACT_ATTEMPTS {
                return Err(StoreError::Busy {
                    op: "TransactWriteItems",
                    reason: "refused at every attempt (throttled or conflicting)",
                });
            }
            tokio::time::sleep(batch::backoff(attempt)).await;
        }
    }
    Ok(done_with(0, held_out, suppressed_out, Vec::new()))
}

/// The actions of one transaction, and which change each action index stands for (the
/// member and its reverse entry both name their change, an add's suppression check too,
/// flagged `true`; counters `None`).
fn transaction(
    table: &str,
    gens: &[Gen],
    group: &[Change],
    check: Check,
    counter: u32,
    now_ms: i64,
) -> (Vec<TransactWriteItem>, Vec<Slot>) {
    let adding = check != Check::None;
    let now_secs = now_ms.div_euclid(1000);
    let mut items = Vec::with_capacity(MAX_TRANSACT);
    let mut index: Vec<Slot> = Vec::with_capacity(MAX_TRANSACT);
    let mut per_gen: Vec<(usize, i64)> = Vec::new();
    for (u, c) in group.iter().enumerate() {
        let g = &gens[c.slot];
        let member =
            key(shard_pk(&g.account, g.segment, &g.generation, shard_of(&c.user_id)), member_sk(&c.user_id));
        let reverse = key(user_pk(&g.account, &c.user_id), reverse_sk(g.segment, &g.generation));
        let (m, r) = if adding {
            (
                TransactWriteItem::builder().put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(member))
                        .condition_expression("attribute_not_exists(sk)")
                        .build()
                        .expect("complete"),
                ),
                TransactWriteItem::builder()
                    .put(Put::builder().table_name(table).set_item(Some(reverse)).build().expect("complete")),
            )
        } else {
            (
                TransactWriteItem::builder().delete(
                    Delete::builder()
                        .table_name(table)
                        .set_key(Some(member))
                        .condition_expression("attribute_exists(sk)")
                        .build()
                        .expect("complete"),
                ),
                TransactWriteItem::builder().delete(
                    Delete::builder().table_name(table).set_key(Some(reverse)).build().expect("complete"),
                ),
            )
        };
        items.push(m.build());
        index.push(Slot::Change(u));
        items.push(r.build());
        index.push(Slot::Change(u));
        if check == Check::EachUser {
            items.push(not_suppressed_check(table, &g.account, &c.user_id, now_secs));
            index.push(Slot::Marker(u));
        }
        match per_gen.last_mut() {
            Some((g, d)) if *g == c.slot => *d += 1,
            _ => per_gen.push((c.slot, 1)),
        }
    }
    for (g, count) in &per_gen {
        let g = &gens[*g];
        let delta = if adding { *count } else { -*count };
        items.push(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(table)
                        .set_key(Some(counter_key(&g.account, g.segment, &g.generation, counter)))
                        .update_expression("ADD #n :d SET #t = :now")
                        .expression_attribute_names("#n", "n")
                        .expression_attribute_names("#t", "t")
                        .expression_attribute_values(":d", n(delta))
                        .expression_attribute_values(":now", n(now_ms))
                        .build()
                        .expect("complete"),
                )
                .build(),
        );
        index.push(Slot::Counter);
    }
    if check == Check::Gate
        && let Some(first) = group.first()
    {
        items.push(gate_check(table, &gens[first.slot].account, counter, now_secs));
        index.push(Slot::Gate);
    }
    (items, index)
}
