//! The purge function: reads the segments table's stream (filtered in `template.yaml` to
//! segment heads) and deletes the items of each generation that stopped being current, after
//! an `override` (the head's generation changed) or a `DELETE` (the head is gone). The API
//! calls never wait for this: readers stopped seeing those items when the head changed.
//!
//! A failure returns an error, so Lambda retries the batch; purging is idempotent.

use serde_json::Value;

use shared::domain::{AccountId, SegmentGuid};
use shared::store::StoreError;
use shared::store::dynamo::DynamoStore;

/// One generation to purge.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub account: AccountId,
    pub segment: SegmentGuid,
    pub generation: String,
}

fn string<'a>(image: &'a Value, name: &str) -> Option<&'a str> {
    image.get(name)?.get("S")?.as_str()
}

/// The generations a stream batch made unreachable. Records of other items (members,
/// counters, guards) and head changes that kept the generation are ignored.
pub fn targets(event: &Value) -> Vec<Target> {
    let records = event.get("Records").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    records
        .iter()
        .filter_map(|r| {
            let ddb = r.get("dynamodb")?;
            let old = ddb.get("OldImage")?;
            let pk = string(old, "pk")?;
            if !string(old, "sk")?.starts_with("S#") {
                return None;
            }
            let generation = string(old, "generation")?;
            let still_current = match r.get("eventName")?.as_str()? {
                "REMOVE" => false,
                "MODIFY" => ddb.get("NewImage").and_then(|n| string(n, "generation")) == Some(generation),
                _ => return None,
            };
            if still_current {
                return None;
            }
            Some(Target {
                account: AccountId::parse(pk.strip_suffix("#SEGMENTS")?).ok()?,
                segment: SegmentGuid::parse(string(old, "segmentGuid")?).ok()?,
                generation: generation.to_string(),
            })
        })
        .collect()
}

pub async fn handle(store: &DynamoStore, event: &Value) -> Result<(), StoreError> {
    for t in targets(event) {
        let deleted = store.purge_generation(&t.account, t.segment, &t.generation).await?;
        tracing::info!(account = %t.account, segment = %t.segment, generation = %t.generation, deleted,
            "segment generation purged");
    }
    Ok(())
}
