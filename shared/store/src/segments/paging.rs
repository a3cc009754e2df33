//! Listing a segment's members: pages across its shards, and the opaque cursor that says where
//! the next page starts.

use base64::Engine;
use domain::user_data::UserId;

use super::keys::{MEMBER_PREFIX, SHARDS, member_of, member_sk, shard_pk};
use super::{SegmentError, SegmentHead};
use crate::StoreError;
use crate::codec::{key, s};
use crate::dynamo::{DynamoStore, sdk_error};

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
        // The user id becomes a start key: one longer than any user id could pass DynamoDB's
        // key size (a ValidationException, not a client's error).
        let real_user = c.after.as_deref().is_none_or(|u| UserId::parse(u).is_ok());
        (c.shard < SHARDS && real_user).then_some(c)
    }
}

#[derive(Debug)]
pub struct MemberPage {
    pub user_ids: Vec<String>,
    pub next: Option<MemberCursor>,
}

impl DynamoStore {
    /// Up to `limit` members of the head's current generation, from `cursor` on, shard by shard
    /// in user-id order. An empty shard costs one read unit (its `Query` finds nothing).
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
        let mut after = cursor.and_then(|c| c.after);
        let mut user_ids = Vec::with_capacity(limit.min(10_000));
        for shard in first..SHARDS {
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
                        (shard + 1 < SHARDS).then(|| MemberCursor {
                            generation: head.generation.clone(),
                            shard: shard + 1,
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
        let ids =
            page.items.unwrap_or_default().iter().map(member_of).collect::<Result<Vec<_>, StoreError>>()?;
        Ok((ids, page.last_evaluated_key.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_refuses_foreign_input() {
        let c = MemberCursor { generation: "abc".into(), shard: 7, after: Some("u#1".into()) };
        assert_eq!(MemberCursor::decode(&c.encode()), Some(c));
        assert_eq!(MemberCursor::decode("not base64!"), None);
        assert_eq!(MemberCursor::decode(""), None);
        let far = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"g":"abc","s":100}"#);
        assert_eq!(MemberCursor::decode(&far), None, "shard past the last");
        let long = MemberCursor { generation: "abc".into(), shard: 0, after: Some("u".repeat(101)) };
        assert_eq!(MemberCursor::decode(&long.encode()), None, "a user id longer than any");
    }
}
