//! Rows out of an import file's bytes, knowing the file offset after each, so that a
//! checkpoint can name where a resumed leg starts.

use shared::domain::import::{CsvSplitter, Format, MAX_ROW_BYTES, Split};
use shared::imports::Body;
use shared::store::StoreError;

/// One row's place in the file: its number as a spreadsheet shows it (CSV: the header is
/// row 1; NDJSON: the line number).
pub type RowNumber = i64;

/// What [`RowReader::next`] read.
pub enum Row {
    /// The CSV header's fields.
    Header(Vec<String>, usize),
    /// A data row: CSV fields, or the NDJSON line as the one field; and its bytes.
    Data(Vec<String>, usize),
    /// A blank line (a blank CSV record or NDJSON line), no row: its bytes still count
    /// toward a page, so a file of nothing but line ends is checkpointed and timed like any.
    Blank(usize),
}

pub struct RowReader {
    format: Format,
    csv: CsvSplitter,
    /// Bytes read from the file and not yet consumed start at `pos`; consumed bytes are
    /// dropped once per chunk, not once per row (which made a chunk of short rows quadratic).
    buf: Vec<u8>,
    pos: usize,
    /// Bytes of the file consumed so far (absolute).
    pub offset: u64,
    /// The number of the last row read: CSV records counting the header as row 1 (blank lines
    /// are no records), or NDJSON line numbers.
    pub row: RowNumber,
    /// The next CSV row is the header (a fresh import; a resumed one is past it).
    header_next: bool,
    /// The leading UTF-8 byte-order mark is not checked yet.
    at_start: bool,
    body_done: bool,
    pub eof: bool,
}

impl RowReader {
    /// A reader of the file from byte `offset` on (0: the start), where row `row` ended.
    pub fn new(format: Format, offset: u64, row: RowNumber) -> Self {
        let from_start = offset == 0;
        Self {
            format,
            row,
            csv: CsvSplitter::default(),
            buf: Vec::new(),
            pos: 0,
            offset,
            header_next: from_start && format == Format::Csv,
            at_start: from_start,
            body_done: false,
            eof: false,
        }
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    async fn fill(&mut self, body: &mut Body) -> Result<(), StoreError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        match body.next().await? {
            Some(chunk) => self.buf.extend_from_slice(&chunk),
            None => self.body_done = true,
        }
        if self.at_start && (self.buf.len() >= 3 || self.body_done) {
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.consume(3);
            }
            self.at_start = false;
        }
        Ok(())
    }

    /// Whether the file is over: reads on until a byte or the end of the body, so a page that
    /// ends on the file's last byte ends the import in the same leg.
    pub async fn at_end(&mut self, body: &mut Body) -> Result<bool, StoreError> {
        while !self.eof && self.rest().is_empty() && !self.body_done {
            self.fill(body).await?;
        }
        Ok(self.eof || (self.body_done && self.rest().is_empty() && !self.header_next))
    }

    /// The next row; `Ok(None)` at the end of the file; `Err(reason)` for a file that is not
    /// its format.
    pub async fn next(&mut self, body: &mut Body) -> Result<Result<Option<Row>, String>, StoreError> {
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
        let done = self.body_done;
        let split = self.csv.next(&self.buf[self.pos..], done).map_err(|e| e.to_string())?;
        match split {
            Split::Record(fields, n) => {
                self.consume(n);
                self.row += 1;
                let header = std::mem::take(&mut self.header_next);
                // csv-core skips blank lines itself; a record of one empty field (`""`) is
                // numbered but holds nothing.
                if fields.len() == 1 && fields[0].is_empty() {
                    self.header_next = header;
                    return Ok(Some(Row::Blank(n)));
                }
                Ok(Some(if header { Row::Header(fields, n) } else { Row::Data(fields, n) }))
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
        let rest = self.rest();
        let (line, n) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], i + 1),
            None if self.body_done && !rest.is_empty() => (rest, rest.len()),
            None if rest.len() > MAX_ROW_BYTES => {
                return Err(format!("a line is longer than {MAX_ROW_BYTES} bytes"));
            }
            None => return Ok(None),
        };
        if line.len() > MAX_ROW_BYTES {
            return Err(format!("a line is longer than {MAX_ROW_BYTES} bytes"));
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|_| "a line is not UTF-8 text".to_string())?;
        let row = if text.trim().is_empty() { Row::Blank(n) } else { Row::Data(vec![text.to_string()], n) };
        self.consume(n);
        self.row += 1;
        Ok(Some(row))
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }
}
