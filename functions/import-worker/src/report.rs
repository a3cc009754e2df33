//! The error report: `row,column,reason` lines, one per problem, bounded in lines and bytes,
//! and safe to open in a spreadsheet.

use domain::import::MAX_REPORTED_ERRORS;

use crate::reader::RowNumber;

/// Longest column name and reason a line quotes (bytes, cut on a character boundary): a
/// reason that quoted a whole 1 MiB cell made a report of 18 MB out of twenty rows.
const MAX_CELL_BYTES: usize = 200;

const HEADER: &[u8] = b"row,column,reason\n";

/// The lines of the page being read, and the count of every line so far. Each page's lines are
/// stored as a part of their own before the page's checkpoint, and the parts become one report
/// when the import ends: S3 traffic grows with the report, not with the report times the pages
/// (rewriting the whole report after each page did), and a resumed leg reads nothing back.
pub struct Report {
    /// This page's lines.
    pub page: Vec<u8>,
    /// Lines written so far, this page's included (the import's `reported` count).
    pub lines: i64,
}

impl Report {
    pub fn new(lines: i64) -> Self {
        Self { page: Vec::new(), lines }
    }

    pub fn line(&mut self, row: RowNumber, column: &str, reason: &str) {
        if self.lines as usize >= MAX_REPORTED_ERRORS {
            return;
        }
        let line = format!("{row},{},{}\n", csv_cell(column), csv_cell(reason));
        self.page.extend_from_slice(line.as_bytes());
        self.lines += 1;
    }

    /// The part key of a page whose first row is `first_row`: zero-padded, so S3's order is
    /// the file's.
    pub fn part_key(prefix: &str, first_row: RowNumber) -> String {
        format!("{prefix}{first_row:012}")
    }

    /// The whole report out of its parts, in order.
    pub fn assemble(parts: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
        let mut report = HEADER.to_vec();
        for part in parts {
            report.extend_from_slice(part.strip_prefix(HEADER).unwrap_or(&part));
        }
        report
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
    fn the_report_stops_at_its_line_bound_and_is_assembled_in_row_order() {
        let mut r = Report::new(MAX_REPORTED_ERRORS as i64 - 1);
        r.line(2, "a", "b");
        r.line(3, "a", "b");
        assert_eq!(r.lines, MAX_REPORTED_ERRORS as i64);
        assert_eq!(r.page, b"2,a,b\n");
        assert!(Report::part_key("p/", 9) < Report::part_key("p/", 10));
        let whole = Report::assemble([b"row,column,reason\n2,a,b\n".to_vec(), b"12,c,d\n".to_vec()]);
        assert_eq!(String::from_utf8(whole).unwrap(), "row,column,reason\n2,a,b\n12,c,d\n");
    }
}
