//! Keys and item codec of the segments table: where each item lives, and heads to and from
//! items.

use super::SegmentHead;
use crate::StoreError;
use crate::codec::{Item, get_n, get_s, key, n, s};
use domain::{AccountId, SegmentGuid, SystemGuid};

/// Member partitions per segment generation. 100 partitions take 100,000 write units per
/// second: 50,000 transactional member writes.
pub const SHARDS: u32 = 100;
/// Partitions holding a generation's count. Each transaction of an add/remove adds its delta
/// to one counter item; 8 partitions take 8,000 write units per second (4,000 transactions),
/// and a count is 8 strongly consistent `Query`s of ≤ 4 KB: 8 RCU.
pub const COUNTER_PARTITIONS: u32 = 8;
/// Counter items per counter partition (32 × ~90 bytes < 4 KB, one read unit per Query).
pub const COUNTER_SLOTS: u32 = 32;
/// All counter items of a generation: concurrent transactions pick different ones.
pub const COUNTERS: u32 = COUNTER_PARTITIONS * COUNTER_SLOTS;
pub(super) const HEAD_SK: &str = "H";
/// The head's attributes naming the count items it is counted in.
const SYSTEM_SHARD: &str = "cs";
const ACCOUNT_SHARD: &str = "ca";
pub(super) const COUNT_SK: &str = "N";
pub(super) const MEMBER_PREFIX: &str = "U#";
pub(super) const LISTED_PREFIX: &str = "S#";
pub(super) const REVERSE_PREFIX: &str = "M#";

/// A segment's own partition: its head.
pub(super) fn head_pk(account: &AccountId, segment: SegmentGuid) -> String {
    format!("{account}#SEG#{segment}")
}

/// A system's partition: its segment list entries, external-id guards and segment count.
pub(super) fn system_pk(account: &AccountId, system: SystemGuid) -> String {
    format!("{account}#SYS#{system}")
}

/// The account's segment count.
pub(super) fn account_count_pk(account: &AccountId) -> String {
    format!("{account}#SEGS")
}

/// A list entry's sort key: creation time first, so the list pages in creation order.
pub(super) fn listed_sk(created_at: i64, segment: SegmentGuid) -> String {
    format!("{LISTED_PREFIX}{created_at:013}#{segment}")
}

/// External ids longer than this (in UTF-8 bytes) are keyed by their SHA-256: 256 characters
/// of four bytes each would pass DynamoDB's 1,024-byte sort key. Shorter ones keep their
/// readable form; the two prefixes never collide.
const RAW_EXTERNAL_ID_MAX_BYTES: usize = 512;

pub(super) fn guard_sk(external_id: &str) -> String {
    if external_id.len() <= RAW_EXTERNAL_ID_MAX_BYTES {
        return format!("X#{external_id}");
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, external_id.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("XH#{hex}")
}

pub(super) fn shard_pk(account: &AccountId, segment: SegmentGuid, generation: &str, shard: u32) -> String {
    format!("{account}#SEG#{segment}#{generation}#{shard:02}")
}

/// Counter `index` (0..[`COUNTERS`]) of a generation: its partition and sort key.
pub(super) fn counter_key(account: &AccountId, segment: SegmentGuid, generation: &str, index: u32) -> Item {
    let index = index % COUNTERS;
    key(
        counter_pk(account, segment, generation, index % COUNTER_PARTITIONS),
        format!("{:02}", index / COUNTER_PARTITIONS),
    )
}

pub(super) fn counter_pk(
    account: &AccountId,
    segment: SegmentGuid,
    generation: &str,
    partition: u32,
) -> String {
    format!("{account}#SEG#{segment}#{generation}#C{partition}")
}

pub(super) fn member_sk(user_id: &str) -> String {
    format!("{MEMBER_PREFIX}{user_id}")
}

/// The user's partition of reverse entries (user → segments).
pub(super) fn user_pk(account: &AccountId, user_id: &str) -> String {
    format!("{account}#USER#{user_id}")
}

pub(super) fn reverse_sk(segment: SegmentGuid, generation: &str) -> String {
    format!("{REVERSE_PREFIX}{segment}#{generation}")
}

/// (segment, generation) of a reverse entry's sort key.
pub(super) fn parse_reverse_sk(sk: &str) -> Option<(SegmentGuid, String)> {
    let (seg, generation) = sk.strip_prefix(REVERSE_PREFIX)?.split_once('#')?;
    Some((SegmentGuid::parse(seg).ok()?, generation.to_string()))
}

/// The user id of a member item's sort key.
pub(super) fn member_of(item: &Item) -> Result<String, StoreError> {
    Ok(get_s(item, "sk")?[MEMBER_PREFIX.len()..].to_string())
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

pub(super) fn new_generation() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A random number, for spreading transactions over counter items.
pub(super) fn random_u32() -> u32 {
    let mut r = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut r);
    u32::from_le_bytes(r)
}

pub(super) fn head_item(h: &SegmentHead) -> Item {
    let mut item = key(head_pk(&h.account, h.segment), HEAD_SK.into());
    item.insert("systemGuid".into(), s(h.system.to_string()));
    item.insert("segmentGuid".into(), s(h.segment.to_string()));
    item.insert("name".into(), s(&h.name));
    item.insert("generation".into(), s(&h.generation));
    item.insert("createdAt".into(), n(h.created_at));
    item.insert("updatedAt".into(), n(h.updated_at));
    if let Some(x) = &h.external_id {
        item.insert("externalId".into(), s(x));
    }
    if let Some((system, account)) = h.count_shards {
        item.insert(SYSTEM_SHARD.into(), n(i64::from(system)));
        item.insert(ACCOUNT_SHARD.into(), n(i64::from(account)));
    }
    item
}

pub(super) fn parse_head(account: &AccountId, item: &Item) -> Result<SegmentHead, StoreError> {
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
        count_shards: get_n(item, SYSTEM_SHARD)
            .ok()
            .zip(get_n(item, ACCOUNT_SHARD).ok())
            .and_then(|(s, a)| Some((u32::try_from(s).ok()?, u32::try_from(a).ok()?))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_external_id_makes_a_sort_key_dynamodb_takes() {
        let longest = "\u{1F600}".repeat(domain::segment::MAX_EXTERNAL_ID_CHARS);
        assert_eq!(longest.len(), 1024);
        assert!(guard_sk(&longest).len() <= 1024);
        assert!(guard_sk(&"a".repeat(RAW_EXTERNAL_ID_MAX_BYTES)).len() <= 1024);
        assert_ne!(guard_sk(&longest), guard_sk(&"\u{1F601}".repeat(256)));
        assert_eq!(guard_sk("crm-1"), "X#crm-1", "a short id keeps its readable form");
    }

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
    fn counters_cover_every_partition_and_slot_once() {
        let account = AccountId::parse("acme").unwrap();
        let seg = SegmentGuid::generate();
        let keys: std::collections::HashSet<(String, String)> = (0..COUNTERS)
            .map(|i| {
                let k = counter_key(&account, seg, "g", i);
                (k["pk"].as_s().unwrap().clone(), k["sk"].as_s().unwrap().clone())
            })
            .collect();
        assert_eq!(keys.len(), COUNTERS as usize);
        let parts: std::collections::HashSet<&String> = keys.iter().map(|(p, _)| p).collect();
        assert_eq!(parts.len(), COUNTER_PARTITIONS as usize);
    }

    #[test]
    fn reverse_keys_round_trip() {
        let seg = SegmentGuid::generate();
        assert_eq!(parse_reverse_sk(&reverse_sk(seg, "abc")), Some((seg, "abc".into())));
        assert_eq!(parse_reverse_sk("X#y"), None);
    }
}
