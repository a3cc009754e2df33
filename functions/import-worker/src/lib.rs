//! The import worker: reads an uploaded import file into the end-users table.
//!
//! S3 sends an event for every upload under `uploads/` to an SQS queue, which invokes this
//! function (template.yaml: `ImportQueue`). Events arrive at least once, and two may arrive
//! at once, so an import is worked on only under its lease (a conditional write on its record,
//! held by the queue message being served) and progresses by checkpoints: every page of rows
//! is written, then the record's counts and byte offset are set (never added) while the lease
//! is still held. A leg that fails lets its lease go and reports its message failed, so the
//! message comes back and resumes from the last checkpoint; one that dies leaves the lease to
//! its own message's next delivery (which may take it at once) or to run out. Counts are exact
//! and a row is applied at most once more, with the same value. Before the invocation's time
//! runs out, a worker releases the lease and uploads a marker (`<upload key>.resume`), whose
//! event starts the next leg.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;

use domain::AccountId;
use files::{Files, FilesError};
use protect::rate::RateLimiter;
use store::StoreError;
use store::dynamo::DynamoStore;
use store::imports::{ImportStatus, Lease};

pub mod callback;
mod events;
mod leg;
mod page;
mod reader;
mod report;

pub use events::upload_keys;

/// Rows per page: what is written between two checkpoints (and the window in which a user
/// that appears twice is reported as superseded).
pub const PAGE_ROWS: usize = 5_000;
/// A page also ends once its rows (blank lines included) hold this many bytes, bounding
/// memory and the time between checkpoints whatever the rows.
const PAGE_BYTES: usize = 8 * 1024 * 1024;
/// How long a leg that finds its account's running slots taken waits before it queues itself
/// again.
const DEFER_WAIT: Duration = Duration::from_secs(2);
/// How long a lease lasts without a checkpoint: far longer than one page takes.
const LEASE_SECS: i64 = 120;
/// `BatchWriteItem` calls (25 users each) in flight for a `replace` page.
const PUT_CONCURRENCY: usize = 8;
/// `UpdateItem` calls in flight for a `merge` page.
const MERGE_CONCURRENCY: usize = 32;

/// What stops a leg: the store or the import bucket failed. Each keeps its cause; either way
/// the message comes back and the import resumes at its last checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum LegError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Files(#[from] FilesError),
}

pub struct Worker {
    pub store: DynamoStore,
    /// The accounts' rate limits: an import's rows pay in the API's units.
    pub limiter: Arc<RateLimiter>,
    pub files: Files,
    /// Stop starting pages once this instant has passed (then hand over to a new leg).
    pub stop_at: Instant,
    pub callback: callback::Sender,
    /// Rows per page ([`PAGE_ROWS`]; tests use fewer, to cross many pages with few rows).
    pub page_rows: usize,
}

/// Time kept back from the invocation's deadline (at most half of it): the last page, its
/// checkpoint and the hand-over to the next leg must fit in it.
const RESERVE: Duration = Duration::from_secs(90);

/// The most a leg works before it hands over, by default: the next leg's message joins the
/// queue behind every import that waits, so no import holds a worker for longer than this
/// while others wait (docs/DECISIONS.md, "Bulk file import").
pub const SLICE: Duration = Duration::from_secs(120);

/// What every invocation of a warm instance shares.
pub struct Deps {
    pub store: DynamoStore,
    pub limiter: Arc<RateLimiter>,
    pub files: Files,
    pub callback: callback::Sender,
    /// How long one leg works at most (`IMPORT_SLICE_SECONDS`, default [`SLICE`]).
    pub slice: Duration,
}

impl Deps {
    pub async fn from_env() -> Self {
        let boot::Boot { sdk, store } = boot::start().await;
        let slice =
            std::env::var("IMPORT_SLICE_SECONDS").ok().and_then(|v| v.parse().ok()).map(Duration::from_secs);
        Self {
            store,
            limiter: Arc::new(RateLimiter::default()),
            files: Files::from_env(&sdk),
            callback: callback::Sender::from_env(),
            slice: slice.unwrap_or(SLICE),
        }
    }
}

/// How long a leg may start pages: its slice, and no later than [`RESERVE`] before the
/// invocation's deadline (at most half of the time left).
pub fn working_time(left: Duration, slice: Duration) -> Duration {
    left.saturating_sub(RESERVE.min(left / 2)).min(slice)
}

/// One invocation: its event handled within the time its deadline leaves.
pub async fn serve(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let left = event.context.deadline().duration_since(SystemTime::now()).unwrap_or_default();
    let worker = Worker {
        store: deps.store.clone(),
        limiter: deps.limiter.clone(),
        files: deps.files.clone(),
        stop_at: Instant::now() + working_time(left, deps.slice),
        callback: deps.callback.clone(),
        page_rows: PAGE_ROWS,
    };
    Ok(handle(&worker, event.payload).await)
}

/// How a leg of an import ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do: another message's leg holds it, it has ended, or it does not exist.
    Skipped,
    /// Ended (`completed` or `failed`).
    Finished(ImportStatus),
    /// Out of time: checkpointed, released, and the next leg requested.
    Continued,
    /// Another worker took the lease over (this one was too slow): it stopped writing.
    LostLease,
    /// The account runs as many imports as it may: this one's next leg was queued.
    Deferred,
}

/// An SQS batch of S3 notifications: each message's imports worked on in turn. Returns the
/// partial batch response: messages that failed come back after the queue's visibility
/// timeout (and, past its receive count, go to the dead-letter queue).
pub async fn handle(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in &event.records {
        let id = message.message_id.as_deref().unwrap_or_default();
        for key in upload_keys(message) {
            if let Err(e) = run_key(worker, id, &key).await {
                tracing::error!(message_id = id, key, error = %e, "import leg failed; the message will come back");
                response.add_failure(id);
                break;
            }
        }
    }
    response
}

/// The leg an upload's (or a resume marker's) key asks for, under the lease of `owner`: the
/// queue message that carries the key.
pub async fn run_key(worker: &Worker, owner: &str, key: &str) -> Result<Outcome, LegError> {
    let upload = key.strip_suffix(files::RESUME_SUFFIX).unwrap_or(key);
    let Some((account, integration_id, import_id)) = files::parse_upload_key(upload) else {
        tracing::warn!(key, "not an import upload; ignored");
        return Ok(Outcome::Skipped);
    };
    let outcome = run(worker, owner, &account, &integration_id, &import_id).await?;
    tracing::info!(account = %account, integration_id, import_id, outcome = ?outcome, "import leg ended");
    Ok(outcome)
}

/// One leg of one import: as much of it as this invocation's time allows.
pub async fn run(
    worker: &Worker,
    owner: &str,
    account: &AccountId,
    integration_id: &str,
    import_id: &str,
) -> Result<Outcome, LegError> {
    let now = leg::now_secs();
    // The slot outlives the leg's working time by a lease: a leg that dies frees it then.
    let slot_until =
        now + worker.stop_at.saturating_duration_since(Instant::now()).as_secs() as i64 + LEASE_SECS;
    let Some(slot) = worker.store.take_running_slot(account, owner, now, slot_until).await? else {
        return defer(worker, account, integration_id, import_id).await;
    };
    let outcome = run_in_slot(worker, owner, account, integration_id, import_id).await;
    if let Err(e) = worker.store.release_running_slot(account, slot, owner, leg::now_secs()).await {
        tracing::warn!(import_id, error = %e, "a running slot could not be released; it frees itself");
    }
    outcome
}

/// Every running slot of the account is taken: the import waits its turn behind the queue.
/// After a short wait, so that an account's waiting imports go round the queue a few times a
/// minute each, not in a busy loop.
async fn defer(
    worker: &Worker,
    account: &AccountId,
    integration_id: &str,
    import_id: &str,
) -> Result<Outcome, LegError> {
    let wait = DEFER_WAIT.min(worker.stop_at.saturating_duration_since(Instant::now()));
    tokio::time::sleep(wait).await;
    let marker = format!("{}{}", files::upload_key(account, integration_id, import_id), files::RESUME_SUFFIX);
    worker.files.write(&marker, Vec::new(), "application/octet-stream").await?;
    Ok(Outcome::Deferred)
}

async fn run_in_slot(
    worker: &Worker,
    owner: &str,
    account: &AccountId,
    integration_id: &str,
    import_id: &str,
) -> Result<Outcome, LegError> {
    let now = leg::now_secs();
    let lease =
        worker.store.lease_import(account, integration_id, import_id, owner, now, now + LEASE_SECS).await?;
    let rec = match lease {
        Lease::Taken(rec) => *rec,
        Lease::Busy | Lease::Missing => {
            // An ended import whose callback is still due (its sender died): send it now.
            if let Some(rec) = worker.store.get_import(account, integration_id, import_id).await?
                && rec.status.is_final()
                && rec.callback_status.as_deref() == Some("pending")
            {
                callback::deliver(worker, &rec).await?;
            }
            return Ok(Outcome::Skipped);
        }
    };
    let mut leg = leg::Leg::new(worker, owner, rec);
    let outcome = match leg.work().await {
        Ok(step) => leg.end(step).await,
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        // Let the lease go now, so the message that comes back resumes at the last checkpoint
        // rather than finding the import busy. Its next delivery may take it over anyway.
        if let Err(e) = worker.store.release_import(&leg.rec, owner, leg::now_secs()).await {
            tracing::warn!(import_id, error = %e, "the lease of a failed leg could not be released");
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leg_works_its_slice_at_most_and_stops_before_its_deadline() {
        let s = Duration::from_secs;
        assert_eq!(working_time(s(900), SLICE), SLICE);
        assert_eq!(working_time(s(900), s(3600)), s(810), "90 s kept back");
        assert_eq!(working_time(s(100), s(3600)), s(50), "at most half kept back");
        assert_eq!(working_time(s(0), SLICE), s(0));
    }
}
