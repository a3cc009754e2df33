//! Keys and item codec of the segments table: where each item lives, and heads to and from
//! items.

use super::SegmentHead;
use crate::domain::{AccountId, SegmentGuid, SystemGuid};
use crate::store::StoreError;
use crate::store::codec::{Item, get_n, get_s, key, n, s};

/// Partitions per segment generation. 100 partitions take ~100,000 write units per second
/// (50,000 transactional member writes), and one BatchGetItem reads all 100 counters.
pub const SHARDS: u32 = 100;
pub(super) const COUNTER_SK: &str = "C";
pub(super) const MEMBER_PREFIX: &str = "U#";

pub(super) fn heads_pk(account: &AccountId) -> String {
    format!("{account}#SEGMENTS")
}

pub(super) fn head_sk(system: SystemGuid, segment: SegmentGuid) -> String {
    format!("S#{system}#{segment}")
}

/// External ids longer than this (in UTF-8 bytes) are keyed by their SHA-256: 256 characters
/// of four bytes each would pass DynamoDB's 1,024-byte sort key. Shorter ones keep the
/// readable form existing guards were written in; the two prefixes never collide.
const RAW_EXTERNAL_ID_MAX_BYTES: usize = 512;

pub(super) fn guard_sk(system: SystemGuid, external_id: &str) -> String {
    if external_id.len() <= RAW_EXTERNAL_ID_MAX_BYTES {
        return format!("X#{system}#{external_id}");
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, external_id.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("XH#{system}#{hex}")
}

pub(super) fn shard_pk(account: &AccountId, segment: SegmentGuid, generation: &str, shard: u32) -> String {
    format!("{account}#SEG#{segment}#{generation}#{shard:02}")
}

pub(super) fn member_sk(user_id: &str) -> String {
    format!("{MEMBER_PREFIX}{user_id}")
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

pub(super) fn head_item(h: &SegmentHead) -> Item {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_external_id_makes_a_sort_key_dynamodb_takes() {
        let system = SystemGuid::generate();
        let longest = "\u{1F600}".repeat(crate::domain::segment::MAX_EXTERNAL_ID_CHARS);
        assert_eq!(longest.len(), 1024);
        assert!(guard_sk(system, &longest).len() <= 1024);
        assert!(guard_sk(system, &"a".repeat(RAW_EXTERNAL_ID_MAX_BYTES)).len() <= 1024);
        assert_ne!(guard_sk(system, &longest), guard_sk(system, &"\u{1F601}".repeat(256)));
        assert_eq!(guard_sk(system, "crm-1"), format!("X#{system}#crm-1"), "the stored form is kept");
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
}
