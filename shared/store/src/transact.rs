//! `TransactWriteItems`: the one reader of a cancelled transaction's reasons, and the one
//! retry of a transaction cancelled for transient reasons only.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;

/// Attempts of a membership transaction (`segments/membership.rs`) that keeps being refused.
pub(crate) const TRANSACT_ATTEMPTS: u32 = 10;

pub(crate) type TransactError = SdkError<TransactWriteItemsError, HttpResponse>;

/// The per-action codes of a cancelled transaction, in the order of its actions (`"None"` for
/// the actions that were fine); `None` when the failure is not a cancellation.
pub(crate) fn cancellation_reasons<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<&str>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(c) => {
            Some(c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect())
        }
        _ => None,
    }
}

/// Whether action `i` of a cancelled transaction failed its condition.
pub(crate) fn condition_failed(reasons: &[&str], i: usize) -> bool {
    reasons.get(i).is_some_and(|c| *c == "ConditionalCheckFailed")
}

/// Whether the transaction was cancelled because one of its conditions failed.
pub(crate) fn is_cancelled_by_condition<R>(e: &SdkError<TransactWriteItemsError, R>) -> bool {
    cancellation_reasons(e).is_some_and(|r| r.contains(&"ConditionalCheckFailed"))
}

/// Whether every reason of a cancellation is transient (a concurrent transaction on one of its
/// items, or throttling): nothing was applied, and the same transaction may commit later.
pub(crate) fn is_transient(reasons: &[&str]) -> bool {
    reasons.iter().all(|c| matches!(*c, "None" | "TransactionConflict" | "ThrottlingError"))
}

/// How long [`transact_with_retry`] keeps retrying a transaction cancelled for transient
/// reasons: under contention on one item (an account's segment count under concurrent creates)
/// every contender commits within it, and it leaves a call well inside API Gateway's 30 s.
pub(crate) const TRANSACT_BUDGET: Duration = Duration::from_secs(10);
/// The longest wait between two attempts: long enough that contenders spread out, short enough
/// that a freed item is taken again soon (a commit holds it about 20 ms).
const TRANSACT_MAX_DELAY: Duration = Duration::from_millis(400);

/// Sends the transaction, and sends it again with jittered backoff while it is cancelled for
/// transient reasons only (nothing was applied, so a resend is safe), for up to
/// [`TRANSACT_BUDGET`]; any other failure, or the last, is the caller's to read (with
/// [`cancellation_reasons`]).
pub(crate) async fn transact_with_retry(
    client: &Client,
    items: Vec<TransactWriteItem>,
) -> Result<(), TransactError> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        let e = match client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let transient = cancellation_reasons(&e).is_some_and(|r| is_transient(&r));
        let delay = crate::batch::backoff_capped(attempt, TRANSACT_MAX_DELAY);
        if !transient || started.elapsed() + delay >= TRANSACT_BUDGET {
            return Err(e);
        }
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}
