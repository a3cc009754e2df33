//! One leg of one import: from the last checkpoint, page by page, until the file ends, the
//! file fails, the lease is lost or the invocation's time runs short.

use std::time::Instant;

use crate::LegError;
use domain::Timestamp;
use domain::import::{CsvColumns, Format, ImportMode, MAX_FILE_BYTES, RowProblem, clip, ndjson_row};
use domain::integration::Definition;
use domain::user_data::UserUpdate;
use files::{self as files, Body};
use protect::rate::Refusal;
use protect::usage::{UsageReport, day_of};
use store::end_users::UserWrite;
use store::imports::{Checkpoint, ImportRecord, ImportStatus, PageUsage, Progress};

use crate::page::Page;
use crate::reader::{Row, RowNumber, RowReader};
use crate::report::Report;
use crate::{LEASE_SECS, MERGE_CONCURRENCY, Outcome, PAGE_BYTES, PUT_CONCURRENCY, Worker, callback};

pub enum Step {
    Done,
    Fail(String),
    OutOfTime,
    LostLease,
}

const STALE: &str = "left as it was: the user's value has a newer source time";
const OVERFLOW: &str =
    "not written: an increment's result would pass 38 significant digits or the Number range";
pub struct Leg<'a> {
    worker: &'a Worker,
    /// Who holds the lease: the queue message this leg serves.
    owner: &'a str,
    pub rec: ImportRecord,
    progress: Progress,
    definition: Option<Definition>,
    /// The CSV header matched to the definition.
    columns: Option<CsvColumns>,
    report: Report,
    /// The first row of the page being read: its part of the report is named after it.
    page_first_row: RowNumber,
    /// The byte offset and accepted rows of the last checkpoint stored: what a page's usage is
    /// counted from.
    stored: (i64, i64),
}

impl<'a> Leg<'a> {
    pub fn new(worker: &'a Worker, owner: &'a str, rec: ImportRecord) -> Self {
        let progress = rec.progress.clone();
        let report = Report::new(progress.reported);
        let stored = (progress.bytes_read, progress.accepted);
        Self {
            worker,
            owner,
            rec,
            progress,
            definition: None,
            columns: None,
            report,
            page_first_row: 0,
            stored,
        }
    }

    fn upload_key(&self) -> String {
        files::upload_key(&self.rec.account, &self.rec.integration_id, &self.rec.import_id)
    }

    fn report_key(&self) -> String {
        files::report_key(&self.rec.account, &self.rec.integration_id, &self.rec.import_id)
    }

    fn parts_prefix(&self) -> String {
        files::report_parts_prefix(&self.rec.account, &self.rec.integration_id, &self.rec.import_id)
    }

    pub async fn work(&mut self) -> Result<Step, LegError> {
        let store = &self.worker.store;
        let Some(integration) = store.get_integration(&self.rec.account, &self.rec.integration_id).await?
        else {
            return Ok(Step::Fail("the integration was deleted".into()));
        };
        if let Some(names) = &self.progress.header {
            match CsvColumns::from_stored(&integration.definition, names) {
                Ok(cols) => self.columns = Some(cols),
                Err(reason) => return Ok(Step::Fail(reason.to_string())),
            }
        }
        self.definition = Some(integration.definition);
        // Every leg looks at the file: its size says whether the last leg stopped at its very
        // end (then there is nothing to read, and a range read would be refused), its ETag
        // whether it is still the file the import started on.
        let Some(file) = self.worker.files.head(&self.upload_key()).await? else {
            return Ok(Step::Fail("no file was uploaded".into()));
        };
        let etag = match &self.progress.etag {
            Some(etag) if *etag != file.etag => {
                return Ok(Step::Fail("the file was replaced while it was being imported".into()));
            }
            Some(etag) => etag.clone(),
            None if file.size == 0 => return Ok(Step::Fail("the file is empty".into())),
            None if file.size > MAX_FILE_BYTES => {
                return Ok(Step::Fail(format!("the file is larger than {MAX_FILE_BYTES} bytes")));
            }
            None => {
                self.progress.etag = Some(file.etag.clone());
                file.etag
            }
        };
        let offset = u64::try_from(self.progress.bytes_read).unwrap_or(0);
        if offset >= file.size {
            return Ok(Step::Done);
        }
        if self.progress.reported > 0 {
            self.adopt_whole_report().await?;
        }
        let mut body = match self.worker.files.read_from(&self.upload_key(), offset, &etag).await {
            Ok(body) => body,
            Err(_) if self.worker.files.head(&self.upload_key()).await?.is_some_and(|f| f.etag != etag) => {
                return Ok(Step::Fail("the file was replaced while it was being imported".into()));
            }
            Err(e) => return Err(e.into()),
        };
        let mut reader = RowReader::new(self.rec.format, offset, self.progress.last_row);
        loop {
            let (page, failure) = self.read_page(&mut reader, &mut body).await?;
            // The rows read before a failure are written, so the counts are what was stored.
            self.write_page(page).await?;
            if !self.checkpoint(now_secs() + LEASE_SECS).await? {
                return Ok(Step::LostLease);
            }
            if let Some(reason) = failure {
                return Ok(Step::Fail(reason));
            }
            if reader.at_end(&mut body).await? {
                return Ok(Step::Done);
            }
            if Instant::now() >= self.worker.stop_at {
                return Ok(Step::OutOfTime);
            }
        }
    }

    /// Reads up to a page of rows, judging each. A reason comes with the page when the file
    /// stops being its format there: the import fails after the page's rows are written.
    async fn read_page(
        &mut self,
        reader: &mut RowReader,
        body: &mut Body,
    ) -> Result<(Page, Option<String>), LegError> {
        let mut page = Page::default();
        let (mut rows, mut page_bytes) = (0, 0);
        self.page_first_row = reader.row() + 1;
        while rows < self.worker.page_rows && page_bytes < PAGE_BYTES {
            let row = match reader.next(body).await? {
                Ok(Some(row)) => row,
                Ok(None) => {
                    self.progress.bytes_read = reader.offset() as i64;
                    break;
                }
                Err(reason) => return Ok((page, Some(reason))),
            };
            self.progress.bytes_read = reader.offset() as i64;
            self.progress.last_row = reader.row();
            let fields = match row {
                Row::Blank(n) => {
                    page_bytes += n;
                    continue;
                }
                Row::Header(fields, n) => {
                    page_bytes += n;
                    let def = self.definition.as_ref().expect("read before the definition");
                    match CsvColumns::from_header(def, &fields) {
                        Ok(cols) => {
                            self.progress.header = Some(cols.stored().to_vec());
                            self.add_ignored(cols.ignored.clone());
                            self.columns = Some(cols);
                        }
                        Err(reason) => return Ok((page, Some(reason.to_string()))),
                    }
                    continue;
                }
                Row::Data(fields, n) => {
                    page_bytes += n;
                    fields
                }
            };
            self.progress.rows_read += 1;
            rows += 1;
            let number = reader.row();
            match self.judge(&fields) {
                Ok(update) => {
                    if let Some(earlier) = page.add(number, update, self.rec.mode) {
                        self.progress.superseded += 1;
                        self.progress.accepted -= 1;
                        self.report.line(
                            earlier,
                            "",
                            &format!("superseded by row {number}: the later row wins"),
                        );
                    }
                    self.progress.accepted += 1;
                }
                Err(problems) => {
                    self.progress.rejected += 1;
                    for p in problems {
                        self.report.line(number, &p.column, &p.reason);
                    }
                }
            }
        }
        Ok((page, None))
    }

    fn judge(&mut self, fields: &[String]) -> Result<UserUpdate, Vec<RowProblem>> {
        let def = self.definition.as_ref().expect("read before the definition");
        match self.rec.format {
            Format::Csv => match &self.columns {
                Some(cols) => cols.row(def, fields),
                None => Err(vec![RowProblem { column: String::new(), reason: "no header was read".into() }]),
            },
            Format::Ndjson => {
                let (update, ignored) = ndjson_row(def, fields[0].as_bytes())?;
                self.add_ignored(ignored);
                Ok(update)
            }
        }
    }

    fn add_ignored(&mut self, names: Vec<String>) {
        for name in names {
            // Bounded: an NDJSON file could name new paths on every line.
            let name = clip(&name);
            if self.progress.ignored.len() < 100 && !self.progress.ignored.iter().any(|n| n == name) {
                self.progress.ignored.push(name.to_string());
            }
        }
    }

    /// Pays for `users` written in the API's units (one per 100 users) against the account's
    /// rate limit, waiting while it is spent: an import runs at most at its account's rate, and
    /// what it writes counts against the same limit as the account's calls.
    async fn pay(&self, users: usize) -> Result<(), LegError> {
        let units = UsageReport { users_updated: users as i64, segment_ids: 0 }.units();
        loop {
            let now_ms = Timestamp::now().epoch_ms();
            match self.worker.limiter.admit(&self.worker.store, &self.rec.account, units, now_ms).await {
                Ok(()) => return Ok(()),
                Err(Refusal::Limited { retry_after }) => {
                    tokio::time::sleep(std::time::Duration::from_secs(retry_after.max(1) as u64)).await;
                }
                Err(Refusal::Unavailable(e)) => return Err(e.into()),
            }
        }
    }

    async fn write_page(&mut self, page: Page) -> Result<(), LegError> {
        let users = page.users().map(<[_]>::len).sum::<usize>();
        if users > 0 {
            self.pay(users).await?;
        }
        let def = self.definition.as_ref().expect("read before the definition");
        let now = Timestamp::now().rfc3339();
        let (store, rec) = (&self.worker.store, &self.rec);
        let replace = rec.mode == ImportMode::Replace;
        // A replace puts plain users whole, as before; every other user's rows are applied in
        // order, one UpdateItem each (conditional when ordered by source time).
        let (whole, ordered): (Vec<_>, Vec<_>) =
            page.users().partition(|rows| replace && Page::is_single_plain(rows));
        let puts: Vec<UserWrite<'_>> =
            whole.iter().map(|rows| UserWrite::of(&rows[0].1, def, true)).collect();
        let refs: Vec<&UserWrite<'_>> = puts.iter().collect();
        let refused =
            store.put_users(&rec.account, &rec.integration_id, &refs, &now, PUT_CONCURRENCY).await?;
        let mut suppressed: Vec<RowNumber> =
            whole.iter().filter(|rows| refused.contains(&rows[0].1.user_id)).map(|rows| rows[0].0).collect();
        let jobs: Vec<Vec<(RowNumber, UserUpdate)>> = ordered.into_iter().map(<[_]>::to_vec).collect();
        let done = store::concurrent::for_each_bounded(jobs, MERGE_CONCURRENCY, "merge", |rows| {
            let (store, account, id, now, def) =
                (store.clone(), rec.account.clone(), rec.integration_id.clone(), now.clone(), def.clone());
            async move {
                let (mut stale, mut suppressed) = (Vec::new(), Vec::new());
                for (row, u) in &rows {
                    let w = store
                        .update_user(&account, &id, &UserWrite::of(u, &def, replace), false, &now, None)
                        .await?;
                    if w.suppressed {
                        suppressed.push(*row);
                    }
                    if w.overflow {
                        stale.push((*row, "$increment".to_string(), OVERFLOW));
                    }
                    stale.extend(w.stale.into_iter().map(|name| (*row, name, STALE)));
                }
                Ok((stale, suppressed))
            }
        })
        .await?;
        let mut lines = Vec::new();
        for (stale, rows) in done {
            lines.extend(stale);
            suppressed.extend(rows);
        }
        for (row, name, reason) in lines {
            self.report.line(row, &name, reason);
        }
        self.report_suppressed(suppressed);
        self.store_report().await
    }

    /// Rows of erased users (in their suppression window): written nothing, reported.
    fn report_suppressed(&mut self, mut rows: Vec<RowNumber>) {
        rows.sort_unstable();
        for row in rows {
            self.progress.accepted -= 1;
            self.progress.rejected += 1;
            self.report.line(row, "", SUPPRESSED_REASON);
        }
    }

    /// Stores this page's report lines as their own part (before the page's checkpoint).
    async fn store_report(&mut self) -> Result<(), LegError> {
        if !self.report.page.is_empty() {
            let key = Report::part_key(&self.parts_prefix(), self.page_first_row);
            self.worker.files.write(&key, std::mem::take(&mut self.report.page), "text/csv").await?;
        }
        Ok(())
    }

    /// The report of an ended import: its parts, in row order, as one object.
    async fn assemble_report(&mut self) -> Result<(), LegError> {
        self.store_report().await?;
        if self.report.lines == 0 {
            return Ok(());
        }
        let mut parts = Vec::new();
        for key in self.worker.files.list(&self.parts_prefix()).await? {
            parts.extend(self.worker.files.read_all(&key).await?);
        }
        Ok(self.worker.files.write(&self.report_key(), Report::assemble(parts), "text/csv").await?)
    }

    /// An import started by a worker that rewrote the whole report after each page: that
    /// report becomes the first part.
    async fn adopt_whole_report(&mut self) -> Result<(), LegError> {
        if !self.worker.files.list(&self.parts_prefix()).await?.is_empty() {
            return Ok(());
        }
        if let Some(whole) = self.worker.files.read_all(&self.report_key()).await? {
            self.worker.files.write(&Report::part_key(&self.parts_prefix(), 0), whole, "text/csv").await?;
        }
        Ok(())
    }

    async fn checkpoint(&mut self, lease_until: i64) -> Result<bool, LegError> {
        self.progress.reported = self.report.lines;
        let day = day_of(Timestamp::now().epoch_ms());
        let usage = PageUsage {
            client_id: self.rec.client_id.as_deref().unwrap_or("import"),
            day: &day,
            users_updated: self.progress.accepted - self.stored.1,
            after_bytes: self.stored.0,
        };
        let cp = Checkpoint { progress: &self.progress, lease_until, usage: Some(usage) };
        let held = self.worker.store.checkpoint_import(&self.rec, self.owner, cp).await?;
        if held {
            self.stored = (self.progress.bytes_read, self.progress.accepted);
        }
        Ok(held)
    }

    /// Ends the leg as `step` says.
    pub async fn end(&mut self, step: Step) -> Result<Outcome, LegError> {
        match step {
            Step::Done => self.finish(ImportStatus::Completed, None).await,
            Step::Fail(reason) => self.finish(ImportStatus::Failed, Some(reason)).await,
            Step::OutOfTime => self.hand_over().await,
            Step::LostLease => Ok(Outcome::LostLease),
        }
    }

    async fn finish(&mut self, status: ImportStatus, failure: Option<String>) -> Result<Outcome, LegError> {
        self.assemble_report().await?;
        if !self.checkpoint(now_secs() + LEASE_SECS).await? {
            return Ok(Outcome::LostLease);
        }
        let now = now_secs();
        let ended =
            self.worker.store.finish_import(&self.rec, self.owner, status, failure.as_deref(), now).await?;
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
    async fn hand_over(&mut self) -> Result<Outcome, LegError> {
        if !self.checkpoint(now_secs() - 1).await? {
            return Ok(Outcome::LostLease);
        }
        let marker = format!("{}{}", self.upload_key(), files::RESUME_SUFFIX);
        self.worker.files.write(&marker, Vec::new(), "application/octet-stream").await?;
        Ok(Outcome::Continued)
    }
}

/// The report's reason for a row of a suppressed user.
pub const SUPPRESSED_REASON: &str = "suppressed: the user was erased; nothing was written";

pub fn now_secs() -> i64 {
    Timestamp::now().epoch_secs()
}
