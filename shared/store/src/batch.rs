//! BatchWriteItem and BatchGetItem at DynamoDB's limits (25 writes, 100 keys per call), with
//! `UnprocessedItems` / `UnprocessedKeys` retried under capped exponential backoff with full
//! jitter, `concurrency` calls at a time ([`super::concurrent::for_each_bounded`]).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest};

use super::StoreError;
use super::codec::Item;
use super::concurrent::for_each_bounded;
use super::dynamo::sdk_error;

/// DynamoDB refuses more than 25 requests per BatchWriteItem (the local server accepts 26).
pub const MAX_BATCH: usize = 25;
/// DynamoDB's limit of keys per BatchGetItem.
pub const MAX_GET: usize = 100;
const MAX_ATTEMPTS: u32 = 10;
const BASE_DELAY: Duration = Duration::from_millis(25);
const MAX_DELAY: Duration = Duration::from_millis(1_000);

/// Full-jitter backoff: a random delay in [0, min(cap, base * 2^attempt)].
pub fn backoff(attempt: u32) -> Duration {
    backoff_capped(attempt, MAX_DELAY)
}

/// [`backoff`] under another cap.
pub fn backoff_capped(attempt: u32, cap: Duration) -> Duration {
    let ceiling = BASE_DELAY.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let mut r = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut r);
    ceiling.mul_f64(f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX))
}

/// Writes every request, `concurrency` calls at a time. Succeeds only when all are applied;
/// on failure, some may have been applied: callers only send requests that a retry of the
/// same API call writes again identically (puts of whole items, deletes).
pub async fn write_all(
    client: &Client,
    table: &str,
    requests: Vec<WriteRequest>,
    concurrency: usize,
) -> Result<(), StoreError> {
    let mut chunks: Vec<Vec<WriteRequest>> = Vec::with_capacity(requests.len().div_ceil(MAX_BATCH));
    let mut it = requests.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(MAX_BATCH).collect());
    }
    for_each_bounded(chunks, concurrency, "batch", |chunk| {
        let (client, table) = (client.clone(), table.to_string());
        async move { write_chunk(&client, &table, chunk).await }
    })
    .await?;
    Ok(())
}

async fn write_chunk(client: &Client, table: &str, chunk: Vec<WriteRequest>) -> Result<(), StoreError> {
    debug_assert!(chunk.len() <= MAX_BATCH);
    let mut items = HashMap::from([(table.to_string(), chunk)]);
    for attempt in 0..MAX_ATTEMPTS {
        let out = client
            .batch_write_item()
            .set_request_items(Some(items))
            .send()
            .await
            .map_err(|e| sdk_error("BatchWriteItem", e))?;
        match out.unprocessed_items {
            Some(rest) if rest.values().any(|v| !v.is_empty()) => {
                items = rest;
                tokio::time::sleep(backoff(attempt)).await;
            }
            _ => return Ok(()),
        }
    }
    Err(StoreError::Busy { op: "BatchWriteItem", reason: "items still unprocessed after every attempt" })
}

/// How a `BatchGetItem` reads: strongly consistent (1 read unit per 4 KB item) or eventually
/// consistent (½: an item written moments ago may be answered as it was before, or not found).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Strong,
    Eventual,
}

/// Reads every key (strongly consistent), `concurrency` calls of up to 100 keys at a time;
/// returns the items found, in no particular order, each with only the `projection`
/// attributes (names, not placeholders: `#`-free attribute names only).
pub async fn get_all(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    projection: &[&str],
    concurrency: usize,
) -> Result<Vec<Item>, StoreError> {
    get_all_with(client, table, keys, projection, concurrency, Consistency::Strong).await
}

/// [`get_all`] with the read's consistency chosen by the caller.
pub async fn get_all_with(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    projection: &[&str],
    concurrency: usize,
    consistency: Consistency,
) -> Result<Vec<Item>, StoreError> {
    let mut chunks = Vec::with_capacity(keys.len().div_ceil(MAX_GET));
    let mut it = keys.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(MAX_GET).collect::<Vec<_>>());
    }
    let found = for_each_bounded(chunks, concurrency, "batch", |chunk| {
        let (client, table) = (client.clone(), table.to_string());
        let projection: Vec<String> = projection.iter().map(|s| s.to_string()).collect();
        async move { get_chunk(&client, &table, chunk, &projection, consistency).await }
    })
    .await?;
    Ok(found.into_iter().flatten().collect())
}

async fn get_chunk(
    client: &Client,
    table: &str,
    chunk: Vec<Item>,
    projection: &[String],
    consistency: Consistency,
) -> Result<Vec<Item>, StoreError> {
    // Placeholders for every projected name: some (`n`, `name`) are reserved words.
    let mut request = KeysAndAttributes::builder()
        .set_keys(Some(chunk))
        .consistent_read(consistency == Consistency::Strong);
    let mut expr = Vec::with_capacity(projection.len());
    for (i, name) in projection.iter().enumerate() {
        expr.push(format!("#p{i}"));
        request = request.expression_attribute_names(format!("#p{i}"), name);
    }
    let mut request = Some(request.projection_expression(expr.join(", ")).build().expect("keys are set"));
    let mut found = Vec::new();
    let mut attempt = 0;
    while let Some(req) = request.take() {
        let out = client
            .batch_get_item()
            .request_items(table, req)
            .send()
            .await
            .map_err(|e| sdk_error("BatchGetItem", e))?;
        found.extend(out.responses.unwrap_or_default().into_values().flatten());
        request = out.unprocessed_keys.and_then(|mut m| m.remove(table)).filter(|k| !k.keys.is_empty());
        if request.is_some() {
            attempt += 1;
            if attempt >= MAX_ATTEMPTS {
                return Err(StoreError::Busy {
                    op: "BatchGetItem",
                    reason: "keys still unprocessed after every attempt",
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
    Ok(found)
}

/// A BatchWriteItem put of a whole item.
pub(crate) fn put(item: Item) -> WriteRequest {
    WriteRequest::builder()
        .put_request(PutRequest::builder().set_item(Some(item)).build().expect("item is set"))
        .build()
}

/// A BatchWriteItem delete of the item with this key.
pub(crate) fn delete(key: Item) -> WriteRequest {
    WriteRequest::builder()
        .delete_request(DeleteRequest::builder().set_key(Some(key)).build().expect("key is set"))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_grows() {
        for attempt in 0..40 {
            assert!(backoff(attempt) <= MAX_DELAY);
        }
        let samples: Vec<Duration> = (0..200).map(|_| backoff(0)).collect();
        assert!(samples.iter().all(|d| *d <= BASE_DELAY));
        assert!(samples.iter().any(|d| *d != samples[0]), "jittered");
    }
}
