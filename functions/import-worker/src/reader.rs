//! The import file read from S3 into the row splitter, chunk by chunk.

use crate::LegError;
use domain::import::Format;
pub use domain::import_rows::{Row, RowNumber};
use domain::import_rows::{RowSplitter, Wait};
use files::Body;

pub struct RowReader {
    rows: RowSplitter,
}

impl RowReader {
    /// A reader of the file from byte `offset` on (0: the start), where row `row` ended.
    pub fn new(format: Format, offset: u64, row: RowNumber) -> Self {
        Self { rows: RowSplitter::new(format, offset, row) }
    }

    /// Bytes of the file consumed so far (absolute).
    pub fn offset(&self) -> u64 {
        self.rows.offset()
    }

    /// The number of the last row read.
    pub fn row(&self) -> RowNumber {
        self.rows.row()
    }

    async fn fill(&mut self, body: &mut Body) -> Result<(), LegError> {
        match body.next().await? {
            Some(chunk) => self.rows.feed(&chunk),
            None => self.rows.end_input(),
        }
        Ok(())
    }

    /// Whether the file is over: reads on until a byte or the end of the body, so a page that
    /// ends on the file's last byte ends the import in the same leg.
    pub async fn at_end(&mut self, body: &mut Body) -> Result<bool, LegError> {
        while self.rows.wants_input() {
            self.fill(body).await?;
        }
        Ok(self.rows.at_end())
    }

    /// The next row; `Ok(None)` at the end of the file; `Err(reason)` for a file that is not
    /// its format.
    pub async fn next(&mut self, body: &mut Body) -> Result<Result<Option<Row>, String>, LegError> {
        loop {
            match self.rows.next_row() {
                Ok(Ok(row)) => return Ok(Ok(Some(row))),
                Ok(Err(Wait::End)) => return Ok(Ok(None)),
                Ok(Err(Wait::Input)) => self.fill(body).await?,
                Err(reason) => return Ok(Err(reason)),
            }
        }
    }
}
