//! Usage per account, client and UTC day: calls, users updated, segment ids processed (and
//! error answers by code, as metrics only): what a
//! pay-per-call bill needs, read with `admin usage`.
//!
//! Two records, both cheap:
//! - a CloudWatch Embedded Metric Format line per call (no request to anything: Lambda ships
//!   stdout to CloudWatch Logs, which extracts the metrics), the complete record on AWS;
//! - per-instance sums written to DynamoDB with one `UpdateItem` (`ADD`) per (account, client,
//!   day) at most every `USAGE_FLUSH_SECONDS` (default 5) per instance, for `admin usage`.
//!   Sums still pending when an instance is reclaimed (at most the last few seconds of that
//!   instance's calls) are only in the EMF record. `USAGE_FLUSH_SECONDS=0` writes every call.
//!
//! Routes report their units by inserting a [`UsageReport`] into the response's extensions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::AccountId;
use store::DynamoStore;

/// What one call did, in billable units (set by the route on its response).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageReport {
    pub users_updated: i64,
    pub segment_ids: i64,
}

/// Items of work one rate-limit unit covers: a call that writes up to 100 users (the most one
/// user-data call takes) or processes up to 100 segment ids costs one unit; a 25,000-id segment
/// call costs 250 (docs/SECURITY.md, "Limits that count work").
pub const ITEMS_PER_UNIT: i64 = 100;

impl UsageReport {
    /// The rate-limit units the call's work is worth: at least one.
    pub fn units(&self) -> i64 {
        let items = self.users_updated + self.segment_ids;
        ((items + ITEMS_PER_UNIT - 1) / ITEMS_PER_UNIT).max(1)
    }
}

pub use store::protections::Usage;

fn add(sums: &mut Usage, r: &UsageReport) {
    sums.calls += 1;
    sums.users_updated += r.users_updated;
    sums.segment_ids += r.segment_ids;
}

type Key = (AccountId, String, String);

pub struct UsageRecorder {
    flush_after: Duration,
    pending: Mutex<HashMap<Key, (Usage, Instant)>>,
}

impl UsageRecorder {
    pub fn new(flush_after: Duration) -> Self {
        Self { flush_after, pending: Mutex::new(HashMap::new()) }
    }

    pub fn from_env() -> Self {
        let secs = std::env::var("USAGE_FLUSH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
        Self::new(Duration::from_secs(secs))
    }

    /// Counts one call; writes the sums of (account, client, day) when they are old enough.
    pub async fn record(
        &self,
        store: &DynamoStore,
        account: &AccountId,
        client_id: &str,
        now_ms: i64,
        report: &UsageReport,
        error_code: Option<&str>,
    ) {
        let day = day_of(now_ms);
        emit_emf(account, client_id, now_ms, report);
        if let Some(code) = error_code {
            emit_error_metric(account, code, now_ms);
        }
        let key = (account.clone(), client_id.to_string(), day);
        let due = {
            let mut pending = self.pending.lock().expect("not poisoned");
            let entry = pending.entry(key.clone()).or_insert_with(|| (Usage::default(), Instant::now()));
            add(&mut entry.0, report);
            if entry.1.elapsed() >= self.flush_after { pending.remove(&key) } else { None }
        };
        if let Some((usage, _)) = due {
            self.write(store, key, usage).await;
        }
    }

    /// Writes every pending sum now (an instance about to end; tests).
    pub async fn flush_all(&self, store: &DynamoStore) {
        let all: Vec<(Key, Usage)> =
            self.pending.lock().expect("not poisoned").drain().map(|(k, (u, _))| (k, u)).collect();
        for (key, usage) in all {
            self.write(store, key, usage).await;
        }
    }

    async fn write(&self, store: &DynamoStore, key: Key, usage: Usage) {
        if let Err(e) = store.add_usage(&key.0, &key.1, &key.2, &usage).await {
            // Put the sums back: the next call of this instance writes them.
            tracing::warn!(error = %e, "usage not written; kept for the next call");
            let mut pending = self.pending.lock().expect("not poisoned");
            let entry = pending.entry(key).or_insert_with(|| (Usage::default(), Instant::now()));
            entry.0.calls += usage.calls;
            entry.0.users_updated += usage.users_updated;
            entry.0.segment_ids += usage.segment_ids;
        }
    }
}

/// `YYYY-MM-DD` (UTC).
pub fn day_of(now_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// One EMF line on stdout: CloudWatch turns it into the metrics `Calls`, `UsersUpdated` and
/// `SegmentIds` of namespace `EndUserDataApi`, by account (and by account and client).
fn emit_emf(account: &AccountId, client_id: &str, now_ms: i64, r: &UsageReport) {
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": "EndUserDataApi",
                "Dimensions": [["account"], ["account", "client"]],
                "Metrics": [
                    {"Name": "Calls", "Unit": "Count"},
                    {"Name": "UsersUpdated", "Unit": "Count"},
                    {"Name": "SegmentIds", "Unit": "Count"}
                ]
            }]
        },
        "account": account.as_str(),
        "client": client_id,
        "Calls": 1,
        "UsersUpdated": r.users_updated,
        "SegmentIds": r.segment_ids,
    });
    println!("{line}");
}

/// One EMF line for an error answer: metric `Errors` by account and code.
pub fn emit_error_metric(account: &AccountId, code: &str, now_ms: i64) {
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": "EndUserDataApi",
                "Dimensions": [["account", "code"]],
                "Metrics": [{"Name": "Errors", "Unit": "Count"}]
            }]
        },
        "account": account.as_str(),
        "code": code,
        "Errors": 1,
    });
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_covers_a_hundred_items_of_work_and_a_call_costs_at_least_one() {
        let r = |users_updated, segment_ids| UsageReport { users_updated, segment_ids }.units();
        assert_eq!(
            [r(0, 0), r(1, 0), r(100, 0), r(101, 0), r(0, 25_000), r(0, 25_001)],
            [1, 1, 1, 2, 250, 251]
        );
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_795_424_400_000), "2026-11-23");
        assert_eq!(day_of(1_795_478_399_999), "2026-11-23");
        assert_eq!(day_of(1_795_478_400_000), "2026-11-24");
    }
}
