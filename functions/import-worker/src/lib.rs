//! The import worker: reads an uploaded import file into the end-users table.
//!
//! S3 sends an event for every upload under `uploads/` to an SQS queue, which invokes this
//! function (template.yaml: `ImportQueue`). Events arrive at least once, and two may arrive
//! at once, so an import is worked on only under its lease (a conditional write on its record)
//! and progresses by checkpoints: every page of rows is written, then the record's counts and
//! byte offset are set (never added) while the lease is still held. A worker that dies leaves
//! the lease to run out and its message to come back; the next one resumes from the last
//! checkpoint, so counts are exact and a row is applied at most once more, with the same value.
//! Before the invocation's time runs out, a worker releases the lease and uploads a marker
//! (`<upload key>.resume`), whose event starts the next leg.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};

use domain::Timestamp;
use domain::import::{
    CsvColumns, CsvSplitter, Format, ImportMode, MAX_FILE_BYTES, MAX_REPORTED_ERRORS, MAX_ROW_BYTES,
    RowProblem, Split, ndjson_row,
};
use domain::integration::Definition;
use domain::user_data::{AttrValue, UserId, UserUpdate};
use files::{self as files, Files};
use store::StoreError;
use store::dynamo::DynamoStore;
use store::end_users::UserWrite;
use store::imports::{Checkpoint, ImportRecord, ImportStatus, Lease, Progress};

pub mod callback;

/// Rows per page: what is written between two checkpoints (and the window in which a user
/// that appears twice is reported as superseded).
pub const PAGE_ROWS: usize = 5_000;
/// A page also ends once its rows hold this many bytes, bounding memory whatever the rows.
const PAGE_BYTES: usize = 8 * 1024 * 1024;
/// How long a lease lasts without a checkpoint: far longer than one page takes.
const LEASE_SECS: i64 = 120;
/// `BatchWriteItem` calls (25 users each) in flight for a `replace` page.
const PUT_CONCURRENCY: usize = 8;
/// `UpdateItem` calls in flight for a `merge` page.
const MERGE_CONCURRENCY: usize = 32;

pub struct Worker {
    pub store: DynamoStore,
    pub files: Files,
    /// Who holds a lease: this invocation.
    pub owner: String,
    /// Stop starting pages once this instant has passed (then hand over to a new leg).
    pub stop_at: Instant,
    pub callback: callback::Sender,
    /// Rows per page ([`PAGE_ROWS`]; tests use fewer, to cross many pages with few rows).
    pub page_rows: usize,
}

/// How a leg of an import ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do: another worker holds it, it has ended, or it does not exist.
    Skipped,
    /// Ended (`completed` or `failed`).
    Finished(ImportStatus),
    /// Out of time: checkpointed, released, and the next leg requested.
    Continued,
    /// Another worker took the lease over (this one was too slow): it stopped writing.
    LostLease,
}

/// An SQS event of S3 notifications: each record's imports worked on in turn. Returns the
/// partial batch response: records that failed come back after the queue's visibility timeout
/// (and, past its receive count, go to the dead-letter queue).
pub async fn handle(worker: &Worker, event: &Value) -> Value {
    let mut failures = Vec::new();
    for record in event["Records"].as_array().into_iter().flatten() {
        let id = record["messageId"].as_str().unwrap_or_default();
        let body: Value =
            record["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
        for key in upload_keys(&body) {
            if let Err(e) = run_key(worker, &key).await {
                tracing::error!(message_id = id, key, error = %e, "import leg failed; the message will come back");
                failures.push(json!({"itemIdentifier": id}));
                break;
            }
        }
    }
    json!({"batchItemFailures": failures})
}

/// The object keys of an S3 event's `ObjectCreated` records (S3 sends keys URL-encoded, with
/// `+` for a space). A test event (sent when the notification is set up) has none.
pub fn upload_keys(s3_event: &Value) -> Vec<String> {
    s3_event["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["eventName"].as_str().is_some_and(|n| n.starts_with("ObjectCreated")))
        .filter_map(|r| r["s3"]["object"]["key"].as_str())
        .map(|k| percent_encoding::percent_decode_str(&k.replace('+', " ")).decode_utf8_lossy().into_owned())
        .collect()
}

pub async fn run_key(worker: &Worker, key: &str) -> Result<Outcome, StoreError> {
    let upload = key.strip_suffix(files::RESUME_SUFFIX).unwrap_or(key);
    let Some((account, integration_id, import_id)) = files::parse_upload_key(upload) else {
        tracing::warn!(key, "not an import upload; ignored");
        return Ok(Outcome::Skipped);
    };
    let outcome = run(worker, &account, &integration_id, &import_id).await?;
    tracing::info!(account = %account, integration_id, import_id, outcome = ?outcome, "import leg ended");
    Ok(outcome)
}

/// One leg of one import: as much of it as this invocation's time allows.
pub async fn run(
    worker: &Worker,
    account: &domain::AccountId,
    integration_id: &str,
    import_id: &str,
) -> Result<Outcome, StoreError> {
    let now = Timestamp::now().epoch_secs();
    let lease = worker
        .store
        .lease_import(account, integration_id, import_id, &worker.owner, now, now + LEASE_SECS)
        .await?;
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
    let mut leg = Leg::new(worker, rec);
    match leg.work().await {
        Ok(Step::Done) => leg.finish(ImportStatus::Completed, None).await,
        Ok(Step::Fail(reason)) => leg.finish(ImportStatus::Failed, Some(reason)).await,
        Ok(Step::OutOfTime) => leg.hand_over().await,
        Ok(Step::LostLease) => Ok(Outcome::LostLease),
        Err(e) => Err(e),
    }
}

enum Step {
    Done,
    Fail(String),
    OutOfTime,
    LostLease,
}

/// One row's place in the file: its number as a spreadsheet shows it (CSV: the header is
/// row 1; NDJSON: the line number).
type RowNumber = i64;

struct Leg<'a> {
    worker: &'a Worker,
    rec: ImportRecord,
    progress: Progress,
    definition: Option<Definition>,
    /// The CSV header matched to the definition.
    columns: Option<CsvColumns>,
    /// The error report so far: `row,column,reason` lines (at most [`MAX_REPORTED_ERRORS`]).
    report: Vec<u8>,
    report_dirty: bool,
}

/// The rows of one page that pass, by user: the later row of a user wins.
struct Page {
    users: HashMap<UserId, (RowNumber, UserUpdate)>,
    order: Vec<UserId>,
}

impl<'a> Leg<'a> {
    fn new(worker: &'a Worker, rec: ImportRecord) -> Self {
        let progress = rec.progress.clone();
        Self {
            worker,
            rec,
            progress,
            definition: None,
            columns: None,
            report: Vec::new(),
            report_dirty: false,
        }
    }

    fn upload_key(&self) -> String {
        files::upload_key(&self.rec.account, &self.rec.integration_id, &self.rec.import_id)
    }

    fn report_key(&self) -> String {
        files::report_key(&self.rec.account, &self.rec.integration_id, &self.rec.import_id)
    }

    async fn work(&mut self) -> Result<Step, StoreError> {
        let store = &self.worker.store;
        let Some(integration) = store.get_integration(&self.rec.account, &self.rec.integration_id).await?
        else {
            return Ok(Step::Fail("the integration was deleted".into()));
        };
        if let Some(names) = &self.progress.header {
            match CsvColumns::from_header(&integration.definition, names) {
                Ok(cols) => self.columns = Some(cols),
                Err(reason) => return Ok(Step::Fail(reason)),
            }
        }
        self.definition = Some(integration.definition);
        let etag = match &self.progress.etag {
            Some(etag) => etag.clone(),
            None => match self.worker.files.head(&self.upload_key()).await? {
                None => return Ok(Step::Fail("no file was uploaded".into())),
                Some(f) if f.size == 0 => return Ok(Step::Fail("the file is empty".into())),
                Some(f) if f.size > MAX_FILE_BYTES => {
                    return Ok(Step::Fail(format!("the file is larger than {MAX_FILE_BYTES} bytes")));
                }
                Some(f) => {
                    self.progress.etag = Some(f.etag.clone());
                    f.etag
                }
            },
        };
        if self.progress.reported > 0 {
            self.report = self.worker.files.read_all(&self.report_key()).await?.unwrap_or_default();
        }
        let offset = u64::try_from(self.progress.bytes_read).unwrap_or(0);
        let mut body = match self.worker.files.read_from(&self.upload_key(), offset, &etag).await {
            Ok(body) => body,
            Err(_) if self.worker.files.head(&self.upload_key()).await?.is_some_and(|f| f.etag != etag) => {
                return Ok(Step::Fail("the file was replaced while it was being imported".into()));
            }
            Err(e) => return Err(e),
        };
        let mut reader = RowReader::new(self.rec.format, offset, self.progress.last_row);
        loop {
            let page = match self.read_page(&mut reader, &mut body).await? {
                Ok(page) => page,
                Err(reason) => return Ok(Step::Fail(reason)),
            };
            self.write_page(page).await?;
            if !self.checkpoint(now_secs() + LEASE_SECS).await? {
                return Ok(Step::LostLease);
            }
            if reader.eof {
                return Ok(Step::Done);
            }
            if Instant::now() >= self.worker.stop_at {
                return Ok(Step::OutOfTime);
            }
        }
    }

    /// Reads up to a page of rows, judging each. `Err(reason)` fails the import (a file that
    /// cannot be read as its format).
    async fn read_page(
        &mut self,
        reader: &mut RowReader,
        body: &mut files::Body,
    ) -> Result<Result<Page, String>, StoreError> {
        let mut page = Page { users: HashMap::new(), order: Vec::new() };
        let (mut rows, mut page_bytes) = (0, 0);
        while rows < self.worker.page_rows && page_bytes < PAGE_BYTES {
            let row = match reader.next(body).await? {
                Ok(Some(row)) => row,
                Ok(None) => {
                    self.progress.bytes_read = reader.offset as i64;
                    break;
                }
                Err(reason) => return Ok(Err(reason)),
            };
            self.progress.bytes_read = reader.offset as i64;
            self.progress.last_row = reader.row;
            page_bytes += row.bytes;
            if row.header {
                let def = self.definition.as_ref().expect("read before the definition");
                match CsvColumns::from_header(def, &row.fields) {
                    Ok(cols) => {
                        self.progress.header = Some(cols.names().to_vec());
                        self.add_ignored(cols.ignored.clone());
                        self.columns = Some(cols);
                    }
                    Err(reason) => return Ok(Err(reason)),
                }
                continue;
            }
            self.progress.rows_read += 1;
            rows += 1;
            let number = reader.row;
            match self.judge(&row) {
                Ok(update) => {
                    let user = update.user_id.clone();
                    if let Some((earlier, previous)) = page.users.remove(&user) {
                        self.progress.superseded += 1;
                        self.progress.accepted -= 1;
                        self.report_line(
                            earlier,
                            "",
                            &format!("superseded by row {number}: the later row wins"),
                        );
                        let merged = match self.rec.mode {
                            ImportMode::Merge => merge_updates(previous, update),
                            ImportMode::Replace => update,
                        };
                        page.users.insert(user, (number, merged));
                    } else {
                        page.order.push(user.clone());
                        page.users.insert(user, (number, update));
                    }
                    self.progress.accepted += 1;
                }
                Err(problems) => {
                    self.progress.rejected += 1;
                    for p in problems {
                        self.report_line(number, &p.column, &p.reason);
                    }
                }
            }
        }
        Ok(Ok(page))
    }

    fn judge(&mut self, row: &Row) -> Result<UserUpdate, Vec<RowProblem>> {
        let def = self.definition.as_ref().expect("read before the definition");
        match self.rec.format {
            Format::Csv => match &self.columns {
                Some(cols) => cols.row(def, &row.fields),
                None => Err(vec![RowProblem { column: String::new(), reason: "no header was read".into() }]),
            },
            Format::Ndjson => {
                let (update, ignored) = ndjson_row(def, row.fields[0].as_bytes())?;
                self.add_ignored(ignored);
                Ok(update)
            }
        }
    }

    fn add_ignored(&mut self, names: Vec<String>) {
        for name in names {
            // Bounded: an NDJSON file could name new paths on every line.
            if self.progress.ignored.len() < 100 && !self.progress.ignored.contains(&name) {
                self.progress.ignored.push(name);
            }
        }
    }

    fn report_line(&mut self, row: RowNumber, column: &str, reason: &str) {
        if self.progress.reported as usize >= MAX_REPORTED_ERRORS {
            return;
        }
        if self.report.is_empty() {
            self.report.extend_from_slice(b"row,column,reason\n");
        }
        self.report
            .extend_from_slice(format!("{row},{},{}\n", csv_cell(column), csv_cell(reason)).as_bytes());
        self.progress.reported += 1;
        self.report_dirty = true;
    }

    async fn write_page(&mut self, page: Page) -> Result<(), StoreError> {
        let def = self.definition.as_ref().expect("read before the definition");
        let now = Timestamp::now().rfc3339();
        let (store, rec) = (&self.worker.store, &self.rec);
        let writes: Vec<UserWrite<'_>> = page
            .order
            .iter()
            .map(|id| {
                let (_, u) = &page.users[id];
                UserWrite { user_id: &u.user_id, values: u.named_values(def).collect() }
            })
            .collect();
        match rec.mode {
            ImportMode::Replace => {
                let refs: Vec<&UserWrite<'_>> = writes.iter().collect();
                store.put_users(&rec.account, &rec.integration_id, &refs, &now, PUT_CONCURRENCY).await?;
            }
            ImportMode::Merge => {
                let jobs: Vec<(UserId, Vec<(String, AttrValue)>)> = writes
                    .iter()
                    .map(|w| {
                        (
                            w.user_id.clone(),
                            w.values.iter().map(|(n, v)| (n.to_string(), (*v).clone())).collect(),
                        )
                    })
                    .collect();
                store::concurrent::for_each_bounded(jobs, MERGE_CONCURRENCY, "merge", |(user_id, values)| {
                    let (store, account, id, now) =
                        (store.clone(), rec.account.clone(), rec.integration_id.clone(), now.clone());
                    async move {
                        let w = UserWrite {
                            user_id: &user_id,
                            values: values.iter().map(|(n, v)| (n.as_str(), v)).collect(),
                        };
                        store.merge_user(&account, &id, &w, false, &now).await.map(|_| ())
                    }
                })
                .await?;
            }
        }
        if self.report_dirty {
            self.worker.files.write(&self.report_key(), self.report.clone(), "text/csv").await?;
            self.report_dirty = false;
        }
        Ok(())
    }

    async fn checkpoint(&mut self, lease_until: i64) -> Result<bool, StoreError> {
        let cp = Checkpoint { progress: &self.progress, lease_until };
        self.worker.store.checkpoint_import(&self.rec, &self.worker.owner, cp).await
    }

    async fn finish(&mut self, status: ImportStatus, failure: Option<String>) -> Result<Outcome, StoreError> {
        if self.report_dirty {
            self.worker.files.write(&self.report_key(), self.report.clone(), "text/csv").await?;
            self.report_dirty = false;
        }
        if !self.checkpoint(now_secs() + LEASE_SECS).await? {
            return Ok(Outcome::LostLease);
        }
        let now = now_secs();
        let ended = self
            .worker
            .store
            .finish_import(&self.rec, &self.worker.owner, status, failure.as_deref(), now)
            .await?;
        if !ended {
            return Ok(Outcome::LostLease);
        }
        self.rec.status = status;
        self.rec.progress = self.progress.clone();
        self.rec.failure = failure;
        self.rec.finished_at = Some(now);
        if self.rec.callback_url.is_some() {
            self.rec.callback_status = Some("pending".into());
            callback::deliver(self.worker, &self.rec).await?;
        }
        Ok(Outcome::Finished(status))
    }

    /// Releases the lease (it ran out a second ago) and asks for the next leg.
    async fn hand_over(&mut self) -> Result<Outcome, StoreError> {
        if !self.checkpoint(now_secs() - 1).await? {
            return Ok(Outcome::LostLease);
        }
        let marker = format!("{}{}", self.upload_key(), files::RESUME_SUFFIX);
        self.worker.files.write(&marker, Vec::new(), "application/octet-stream").await?;
        Ok(Outcome::Continued)
    }
}

fn now_secs() -> i64 {
    Timestamp::now().epoch_secs()
}

/// `later`'s values over `earlier`'s: what applying both merges, in order, would leave.
fn merge_updates(earlier: UserUpdate, later: UserUpdate) -> UserUpdate {
    let mut values = earlier.values;
    for (i, v) in later.values {
        match values.iter_mut().find(|(j, _)| *j == i) {
            Some(slot) => slot.1 = v,
            None => values.push((i, v)),
        }
    }
    UserUpdate { user_id: later.user_id, values }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// One row as read: CSV fields, or an NDJSON line as the one field.
struct Row {
    fields: Vec<String>,
    header: bool,
    bytes: usize,
}

/// Rows out of the file's bytes, knowing the offset after each (a resumed leg starts there).
struct RowReader {
    format: Format,
    csv: CsvSplitter,
    buf: Vec<u8>,
    /// Bytes of the file consumed so far (absolute).
    offset: u64,
    /// The number of the last row read: CSV records counting the header as row 1 (blank lines
    /// are no records), or NDJSON line numbers.
    row: RowNumber,
    /// The next CSV row is the header (a fresh import; a resumed one is past it).
    header_next: bool,
    /// The leading UTF-8 byte-order mark is not checked yet.
    at_start: bool,
    body_done: bool,
    eof: bool,
}

impl RowReader {
    /// A reader of the file from byte `offset` on (0: the start), where row `row` ended.
    fn new(format: Format, offset: u64, row: RowNumber) -> Self {
        let from_start = offset == 0;
        Self {
            format,
            row,
            csv: CsvSplitter::default(),
            buf: Vec::new(),
            offset,
            header_next: from_start && format == Format::Csv,
            at_start: from_start,
            body_done: false,
            eof: false,
        }
    }

    async fn fill(&mut self, body: &mut files::Body) -> Result<(), StoreError> {
        match body.next().await? {
            Some(chunk) => self.buf.extend_from_slice(&chunk),
            None => self.body_done = true,
        }
        if self.at_start && (self.buf.len() >= 3 || self.body_done) {
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
                self.offset += 3;
            }
            self.at_start = false;
        }
        Ok(())
    }

    /// The next row; `Ok(None)` at the end of the file; `Err(reason)` for a file that is not
    /// its format.
    async fn next(&mut self, body: &mut files::Body) -> Result<Result<Option<Row>, String>, StoreError> {
        loop {
            if self.eof {
                return Ok(Ok(None));
            }
            if self.at_start && !self.body_done {
                self.fill(body).await?;
                continue;
            }
            let step = match self.format {
                Format::Csv => self.next_csv(),
                Format::Ndjson => self.next_line(),
            };
            match step {
                Ok(Some(row)) => return Ok(Ok(Some(row))),
                Ok(None) if self.body_done => {
                    self.eof = true;
                    return Ok(Ok(None));
                }
                Ok(None) => self.fill(body).await?,
                Err(reason) => return Ok(Err(reason)),
            }
        }
    }

    fn next_csv(&mut self) -> Result<Option<Row>, String> {
        match self.csv.next(&self.buf, self.body_done).map_err(|e| e.to_string())? {
            Split::Record(fields, n) => {
                self.consume(n);
                self.row += 1;
                let header = std::mem::take(&mut self.header_next);
                // A blank line is no row.
                if fields.len() == 1 && fields[0].is_empty() {
                    return self.next_csv();
                }
                Ok(Some(Row { fields, header, bytes: n }))
            }
            Split::NeedMore(n) => {
                self.consume(n);
                Ok(None)
            }
            Split::End(n) => {
                self.consume(n);
                if self.header_next {
                    return Err("the file is empty: a CSV file starts with a header row".into());
                }
                self.eof = true;
                Ok(None)
            }
        }
    }

    fn next_line(&mut self) -> Result<Option<Row>, String> {
        let (line, n) = match self.buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&self.buf[..i], i + 1),
            None if self.body_done && !self.buf.is_empty() => (&self.buf[..], self.buf.len()),
            None if self.buf.len() > MAX_ROW_BYTES => {
                return Err(format!("a line is longer than {MAX_ROW_BYTES} bytes"));
            }
            None => return Ok(None),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|_| "a line is not UTF-8 text".to_string())?.to_string();
        self.consume(n);
        self.row += 1;
        if text.trim().is_empty() {
            return self.next_line();
        }
        Ok(Some(Row { fields: vec![text], header: false, bytes: n }))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_keys_are_decoded_as_s3_encodes_them_and_other_events_have_none() {
        let event = json!({"Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "uploads/acme/i/x+y%2Bz%C3%A9"}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "uploads/acme/i/gone"}}},
        ]});
        assert_eq!(upload_keys(&event), vec!["uploads/acme/i/x y+zé".to_string()]);
        assert!(upload_keys(&json!({"Service": "Amazon S3", "Event": "s3:TestEvent"})).is_empty());
    }

    #[test]
    fn a_later_rows_values_win_over_an_earlier_rows_in_merge() {
        let id = UserId::parse("u").unwrap();
        let v = |s: &str| AttrValue::String(s.into());
        let earlier = UserUpdate { user_id: id.clone(), values: vec![(0, v("a")), (1, v("b"))] };
        let later = UserUpdate { user_id: id, values: vec![(1, v("B")), (2, v("C"))] };
        assert_eq!(merge_updates(earlier, later).values, vec![(0, v("a")), (1, v("B")), (2, v("C"))]);
    }
}
