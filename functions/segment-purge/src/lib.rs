//! The purge function: reads the segments table's stream (filtered in `template.yaml` to
//! segment heads) and deletes the items of each generation that stopped being current, after
//! an `override` (the head's generation changed) or a `DELETE` (the head is gone). The API
//! calls never wait for this: readers stopped seeing those items when the head changed.
//!
//! Each generation is purged on its own: a failed one is reported as a batch item failure, so
//! Lambda retries only from it, and sends it to the dead-letter queue once its retries run
//! out; purging is idempotent.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_dynamo::{AttributeValue, Item};

use domain::{AccountId, SegmentGuid};
use store::StoreError;
use store::dynamo::DynamoStore;

/// One generation to purge.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub account: AccountId,
    pub segment: SegmentGuid,
    pub generation: String,
}

fn string<'a>(image: &'a Item, name: &str) -> Option<&'a str> {
    match image.get(name)? {
        AttributeValue::S(s) => Some(s),
        _ => None,
    }
}

/// The generation a stream record made unreachable, if any. Records of other items
/// (members, counters, list entries) and head changes that kept the generation give `None`.
fn target(r: &EventRecord) -> Option<Target> {
    let old = &r.change.old_image;
    let pk = string(old, "pk")?;
    if string(old, "sk")? != "H" {
        return None;
    }
    let generation = string(old, "generation")?;
    let still_current = match r.event_name.as_str() {
        "REMOVE" => false,
        "MODIFY" => string(&r.change.new_image, "generation") == Some(generation),
        _ => return None,
    };
    if still_current {
        return None;
    }
    // A head's partition key is `<accountId>#SEG#<segmentGuid>`; account ids hold no `#`.
    let (account, rest) = pk.split_once('#')?;
    let segment = rest.strip_prefix("SEG#")?;
    Some(Target {
        account: AccountId::parse(account).ok()?,
        segment: SegmentGuid::parse(segment).ok()?,
        generation: generation.to_string(),
    })
}

/// The generations a stream batch made unreachable.
pub fn targets(event: &Event) -> Vec<Target> {
    event.records.iter().filter_map(target).collect()
}

/// Purges every generation of the batch at once (one segment's purge never waits for
/// another's) and answers with the records whose purge failed
/// (by sequence number, the `ReportBatchItemFailures` response): Lambda retries from the first of them, so the ones
/// that succeeded before it are not purged again, and after `MaximumRetryAttempts` the record
/// goes to the dead-letter queue (template.yaml). A purge is idempotent and resumes with what
/// is left.
pub async fn handle(store: &DynamoStore, event: &Event) -> Result<DynamoDbEventResponse, StoreError> {
    let mut tasks = tokio::task::JoinSet::new();
    for r in &event.records {
        let Some(t) = target(r) else { continue };
        let sequence = r.change.sequence_number.clone();
        let store = store.clone();
        tasks.spawn(async move {
            let started = std::time::Instant::now();
            let res = store.purge_generation(&t.account, t.segment, &t.generation).await;
            match &res {
                Ok(deleted) => tracing::info!(account = %t.account, segment = %t.segment,
                    generation = %t.generation, deleted, ms = started.elapsed().as_millis() as u64,
                    "segment generation purged"),
                Err(e) => tracing::error!(account = %t.account, segment = %t.segment,
                    generation = %t.generation, error = %e, "segment generation purge failed"),
            }
            (sequence, res.is_ok())
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((_, true)) => {}
            Ok((sequence, false)) => failed.push(sequence),
            Err(e) => return Err(StoreError::unavailable("purge task", e)),
        }
    }
    let mut response = DynamoDbEventResponse::default();
    for item_identifier in failed {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = item_identifier;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}
