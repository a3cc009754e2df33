//! An import file's bytes as rows, fed in chunks as they arrive: CSV records (by
//! [`CsvSplitter`]) or NDJSON lines, each with the bytes it took, so that the file offset
//! after every row is known (a checkpoint names where a resumed leg starts). No I/O: the
//! worker feeds what it reads, and the fuzz target feeds arbitrary bytes in arbitrary chunks.

use crate::import::{CsvSplitter, Format, MAX_ROW_BYTES, Split};

/// One row's place in the file: its number as a spreadsheet shows it (CSV: the header is
/// row 1; NDJSON: the line number).
pub type RowNumber = i64;

/// What [`RowSplitter::next_row`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Row {
    /// The CSV header's fields.
    Header(Vec<String>, usize),
    /// A data row: CSV fields, or the NDJSON line as the one field; and its bytes.
    Data(Vec<String>, usize),
    /// A blank line (a blank NDJSON line, a CSV record of one empty field), no row: its bytes
    /// still count toward a page, so a file of nothing but line ends is checkpointed and timed
    /// like any other.
    Blank(usize),
}

/// What [`RowSplitter::next_row`] needs, when it has no row.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// More bytes ([`RowSplitter::feed`]), or word that there are none ([`RowSplitter::end_input`]).
    Input,
    /// The file is over.
    End,
}

pub struct RowSplitter {
    format: Format,
    csv: CsvSplitter,
    /// Bytes fed and not yet consumed start at `pos`; consumed bytes are dropped once per
    /// chunk, not once per row (which made a chunk of short rows quadratic).
    buf: Vec<u8>,
    pos: usize,
    /// Bytes of a CSV record in progress that csv-core took in earlier calls.
    partial: usize,
    /// Bytes of the file consumed so far (absolute).
    offset: u64,
    /// The number of the last row read (CSV records, the header and `""` records counted:
    /// csv-core skips blank lines; NDJSON line numbers).
    row: RowNumber,
    /// The next CSV row is the header (a fresh import; a resumed one is past it).
    header_next: bool,
    /// The leading UTF-8 byte-order mark is not checked yet.
    at_start: bool,
    input_done: bool,
    ended: bool,
}

impl RowSplitter {
    /// A splitter of the file from byte `offset` on (0: the start), where row `row` ended.
    pub fn new(format: Format, offset: u64, row: RowNumber) -> Self {
        let from_start = offset == 0;
        Self {
            format,
            csv: CsvSplitter::default(),
            buf: Vec::new(),
            pos: 0,
            partial: 0,
            offset,
            row,
            header_next: from_start && format == Format::Csv,
            at_start: from_start,
            input_done: false,
            ended: false,
        }
    }

    /// Bytes of the file consumed so far: where a reader resuming after the last row starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The number of the last row read.
    pub fn row(&self) -> RowNumber {
        self.row
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// No more bytes will come.
    pub fn end_input(&mut self) {
        self.input_done = true;
    }

    /// Whether the file is over with nothing left to read (at the end of input, past the last
    /// row; a CSV whose header was never read is not over: reading on fails it).
    pub fn at_end(&self) -> bool {
        self.ended || (self.input_done && self.rest().is_empty() && !self.header_next)
    }

    /// Whether everything fed is consumed and more input could come: then only more bytes (or
    /// [`RowSplitter::end_input`]) can tell whether the file is over.
    pub fn wants_input(&self) -> bool {
        !self.input_done && !self.ended && self.rest().is_empty()
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The next row, or what it waits for; `Err(reason)` for a file that is not its format.
    pub fn next_row(&mut self) -> Result<Result<Row, Wait>, String> {
        if self.ended {
            return Ok(Err(Wait::End));
        }
        if self.at_start {
            if self.buf.len() < 3 && !self.input_done {
                return Ok(Err(Wait::Input));
            }
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.consume(3);
            }
            self.at_start = false;
        }
        let row = match self.format {
            Format::Csv => self.next_csv()?,
            Format::Ndjson => self.next_line()?,
        };
        match row {
            Some(row) => Ok(Ok(row)),
            None if self.input_done => {
                self.ended = true;
                Ok(Err(Wait::End))
            }
            None => Ok(Err(Wait::Input)),
        }
    }

    fn next_csv(&mut self) -> Result<Option<Row>, String> {
        let split = self.csv.next(&self.buf[self.pos..], self.input_done).map_err(|e| e.to_string())?;
        match split {
            Split::Record(fields, n) => {
                self.consume(n);
                let n = n + std::mem::take(&mut self.partial);
                self.row += 1;
                let header = std::mem::take(&mut self.header_next);
                if fields.len() == 1 && fields[0].is_empty() {
                    self.header_next = header;
                    return Ok(Some(Row::Blank(n)));
                }
                Ok(Some(if header { Row::Header(fields, n) } else { Row::Data(fields, n) }))
            }
            Split::NeedMore(n) => {
                self.consume(n);
                self.partial += n;
                Ok(None)
            }
            Split::End(n) => {
                self.consume(n);
                if self.header_next {
                    return Err("the file is empty: a CSV file starts with a header row".into());
                }
                self.ended = true;
                Ok(None)
            }
        }
    }

    fn next_line(&mut self) -> Result<Option<Row>, String> {
        let rest = self.rest();
        let (line, n) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], i + 1),
            None if self.input_done && !rest.is_empty() => (rest, rest.len()),
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

/// Every row of `data` fed in chunks of `chunk` bytes, with the offset after each, and how the
/// file ended: what the worker would read, for tests and the fuzz target.
pub fn split_all(format: Format, data: &[u8], chunk: usize) -> (Vec<(Row, u64)>, Result<(), String>) {
    let mut s = RowSplitter::new(format, 0, 0);
    let mut rows = Vec::new();
    let mut chunks = data.chunks(chunk.max(1));
    loop {
        match s.next_row() {
            Ok(Ok(row)) => rows.push((row, s.offset())),
            Ok(Err(Wait::End)) => return (rows, Ok(())),
            Ok(Err(Wait::Input)) => match chunks.next() {
                Some(c) => s.feed(c),
                None => s.end_input(),
            },
            Err(reason) => return (rows, Err(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_rows(rows: &[(Row, u64)]) -> Vec<Vec<String>> {
        rows.iter()
            .filter_map(|(r, _)| match r {
                Row::Data(f, _) | Row::Header(f, _) => Some(f.clone()),
                Row::Blank(_) => None,
            })
            .collect()
    }

    fn whole_in(format: Format, text: &str) -> (Vec<(Row, u64)>, Result<(), String>) {
        split_all(format, text.as_bytes(), usize::MAX)
    }

    fn row_bytes(r: &Row) -> usize {
        match r {
            Row::Header(_, n) | Row::Data(_, n) | Row::Blank(n) => *n,
        }
    }

    #[test]
    fn rows_and_offsets_do_not_depend_on_how_the_bytes_arrive() {
        let csv = "\u{feff}Email,Type\r\na@x.com,\"multi\nline\"\r\n\r\n\"\"\nb@x.com,z";
        let ndjson = "{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}";
        for (format, text) in [(Format::Csv, csv), (Format::Ndjson, ndjson)] {
            let (whole, end) = split_all(format, text.as_bytes(), usize::MAX);
            assert_eq!(end, Ok(()));
            assert_eq!(whole.last().unwrap().1, text.len() as u64, "every byte consumed");
            for chunk in 1..8 {
                assert_eq!(split_all(format, text.as_bytes(), chunk), whole_in(format, text), "{chunk}");
            }
            let bytes: usize = whole.iter().map(|(r, _)| row_bytes(r)).sum();
            assert_eq!(
                bytes + 3 * usize::from(format == Format::Csv),
                text.len(),
                "bytes: the rows' and a BOM"
            );
        }
        let (rows, _) = split_all(Format::Csv, csv.as_bytes(), 3);
        assert_eq!(
            data_rows(&rows),
            vec![vec!["Email", "Type"], vec!["a@x.com", "multi\nline"], vec!["b@x.com", "z"]]
        );
        assert!(matches!(rows[0].0, Row::Header(..)));
        let (rows, _) = split_all(Format::Ndjson, ndjson.as_bytes(), 2);
        assert_eq!(rows.iter().filter(|(r, _)| matches!(r, Row::Blank(_))).count(), 2);
    }

    #[test]
    fn a_file_of_line_ends_is_blank_rows_and_a_csv_without_header_fails() {
        let (rows, end) = split_all(Format::Ndjson, &[b'\n'; 1000], 7);
        assert_eq!((rows.len(), end), (1000, Ok(())));
        let (rows, end) = split_all(Format::Csv, b"\n\n\n", 1);
        assert!(rows.is_empty());
        assert!(end.unwrap_err().contains("empty"));
        let (rows, end) = split_all(Format::Csv, b"Email\n\n\n", 1);
        assert_eq!((rows.len(), end), (1, Ok(())));
    }

    #[test]
    fn a_long_line_fails_once_it_passes_the_row_limit() {
        let long = vec![b'x'; MAX_ROW_BYTES + 1];
        let (_, end) = split_all(Format::Ndjson, &long, 4096);
        assert!(end.unwrap_err().contains("longer than"));
        let mut ok = vec![b'x'; MAX_ROW_BYTES];
        ok.push(b'\n');
        assert_eq!(split_all(Format::Ndjson, &ok, 4096).1, Ok(()));
    }
}
