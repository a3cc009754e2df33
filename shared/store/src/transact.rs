//! `TransactWriteItems`: the one reader of a cancelled transaction's reasons, and the one
//! retry of a transaction cancelled for transient reasons only.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;

/// Attempts of a transaction that keeps being cancelled for transient reasons.
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

/// Sends the transaction, and sends it again with backoff while it is cancelled for transient
/// reasons only, up to [`TRANSACT_ATTEMPTS`] times; any other failure, or the last, is the
/// caller's to read (with [`cancellation_reasons`]).
pub(crate) async fn transact_with_retry(
    client: &Client,
    items: Vec<TransactWriteItem>,
) -> Result<(), TransactError> {
    let mut attempt = 0;
    loop {
        let e = match client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let transient = cancellation_reasons(&e).is_some_and(|r| is_transient(&r));
        if !transient || attempt + 1 >= TRANSACT_ATTEMPTS {
            return Err(e);
        }
        tokio::time::sleep(crate::batch::backoff(attempt)).await;
        attempt += 1;
    }
}
