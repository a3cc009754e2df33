//! The error report: `row,column,reason` lines, one per problem, bounded in lines and bytes,
//! and safe to open in a spreadsheet.

use shared::domain::import::MAX_REPORTED_ERRORS;

use crate::reader::RowNumber;

/// Longest column name and reason a line quotes (bytes, cut on a character boundary): a
/// reason that quoted a whole 1 MiB cell made a report of 18 MB out of twenty rows.
const MAX_CELL_BYTES: usize = 200;

pub struct Report {
    /// The report so far (read back when a leg resumes an import that has one).
    pub bytes: Vec<u8>,
    /// Lines written so far (the import's `reported` count).
    pub lines: i64,
    /// Lines were added since the report was last stored.
    pub dirty: bool,
}

impl Report {
    pub fn new(bytes: Vec<u8>, lines: i64) -> Self {
        Self { bytes, lines, dirty: false }
    }

    pub fn line(&mut self, row: RowNumber, column: &str, reason: &str) {
        if self.lines as usize >= MAX_REPORTED_ERRORS {
            return;
        }
        if self.bytes.is_empty() {
            self.bytes.extend_from_slice(b"row,column,reason\n");
        }
        let line = format!("{row},{},{}\n", csv_cell(column), csv_cell(reason));
        self.bytes.extend_from_slice(line.as_bytes());
        self.lines += 1;
        self.dirty = true;
    }
}

/// A CSV cell that a spreadsheet shows as text: cut to [`MAX_CELL_BYTES`]; one that would
/// start a formula (`=`, `+`, `-`, `@`, tab, carriage return) is prefixed with `'`, as OWASP's
/// CSV-injection advice says; quoted when it holds a separator, a quote or a line end.
fn csv_cell(s: &str) -> String {
    let mut cut = s.len().min(MAX_CELL_BYTES);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut cell = String::with_capacity(cut + 4);
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.push('\'');
    }
    cell.push_str(&s[..cut]);
    if cut < s.len() {
        cell.push('…');
    }
    if cell.contains([',', '"', '\n', '\r']) { format!("\"{}\"", cell.replace('"', "\"\"")) } else { cell }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_long_cells_cut() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("plain, text"), "\"plain, text\"");
        assert_eq!(csv_cell("é".repeat(150).as_str()).len(), 200 + "…".len());
    }

    #[test]
    fn the_report_stops_at_its_line_bound() {
        let mut r = Report::new(Vec::new(), MAX_REPORTED_ERRORS as i64 - 1);
        r.line(2, "a", "b");
        r.line(3, "a", "b");
        assert_eq!(r.lines, MAX_REPORTED_ERRORS as i64);
        assert_eq!(String::from_utf8(r.bytes).unwrap(), "row,column,reason\n2,a,b\n");
    }
}
