//! Bulk file import (the seeds' "CSV Upload"): what an import asks for, and how one row of a
//! file becomes a user update. Rows are judged by [`user_data::validate`], the code that judges
//! `POST /public/v1/user/data`, so a file and an API call accept exactly the same users.

use serde_json::{Map, Value};

use crate::Problem;
use crate::integration::{AttrType, Definition};
use crate::user_data::{self, UserUpdate};

/// Longest row (CSV record or NDJSON line) in bytes: a row holds one user, whose whole update
/// is far smaller; a longer one is an unclosed quote or not this kind of file.
pub const MAX_ROW_BYTES: usize = 1024 * 1024;
/// Longest name (column, payload path) an import's record or report quotes, in bytes.
pub const MAX_QUOTED_NAME_BYTES: usize = 200;

/// `name` cut to [`MAX_QUOTED_NAME_BYTES`] on a character boundary: names a file chose are
/// stored and quoted only this long.
pub fn clip(name: &str) -> &str {
    let mut cut = name.len().min(MAX_QUOTED_NAME_BYTES);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    &name[..cut]
}

/// Most fields in one CSV row: a spreadsheet's widest sheet (16,384 columns). The field list
/// costs memory per comma whatever the fields hold, so it has its own bound beside
/// [`MAX_ROW_BYTES`].
pub const MAX_ROW_FIELDS: usize = 16_384;
/// Largest file: S3's limit for one `PUT`.
pub const MAX_FILE_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Rejected rows the error report lists; past it the report says how many more there were.
pub const MAX_REPORTED_ERRORS: usize = 10_000;
/// Longest callback URL.
pub const MAX_CALLBACK_URL_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Format::Csv),
            "ndjson" => Some(Format::Ndjson),
            _ => None,
        }
    }
}

/// What a row's absent properties mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// A row's properties of the integration become exactly those it has (as for several
    /// users in one API call).
    Replace,
    /// A row sets the properties it has and keeps the others (as for one user in one call).
    Merge,
}

impl ImportMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::Replace => "replace",
            ImportMode::Merge => "merge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "replace" => Some(ImportMode::Replace),
            "merge" => Some(ImportMode::Merge),
            _ => None,
        }
    }
}

/// The body of `POST .../imports`, once judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSpec {
    pub format: Format,
    pub mode: ImportMode,
    pub callback_url: Option<String>,
}

impl ImportSpec {
    /// `format` is required; `mode` defaults to `replace`; `callbackUrl` must be an `https://`
    /// URL (or `http://` when `allow_http`, for a local stack). Where it may point is checked
    /// again when it is called, against the addresses its name resolves to then.
    pub fn from_json(body: &Value, allow_http: bool) -> Result<Self, Vec<Problem>> {
        let mut errors = Vec::new();
        let Some(obj) = body.as_object() else {
            return Err(vec![Problem {
                index: None,
                path: None,
                reason: "the body must be a JSON object".into(),
            }]);
        };
        for key in obj.keys() {
            if !["format", "mode", "callbackUrl"].contains(&key.as_str()) {
                errors.push(Problem::at(key.as_str(), "unknown member"));
            }
        }
        let format = match obj.get("format") {
            Some(Value::String(s)) => Format::parse(s),
            _ => None,
        };
        if format.is_none() {
            errors.push(Problem::at("format", "required: \"csv\" or \"ndjson\""));
        }
        let mode = match obj.get("mode") {
            None => Some(ImportMode::Replace),
            Some(Value::String(s)) => ImportMode::parse(s),
            Some(_) => None,
        };
        if mode.is_none() {
            errors.push(Problem::at("mode", "must be \"replace\" (the default) or \"merge\""));
        }
        let callback_url = match obj.get("callbackUrl") {
            None => None,
            Some(Value::String(u)) => match check_callback_url(u, allow_http) {
                Ok(()) => Some(u.clone()),
                Err(reason) => {
                    errors.push(Problem::at("callbackUrl", reason));
                    None
                }
            },
            Some(_) => {
                errors.push(Problem::at("callbackUrl", "must be a string: an https:// URL"));
                None
            }
        };
        match (format, mode) {
            (Some(format), Some(mode)) if errors.is_empty() => Ok(Self { format, mode, callback_url }),
            _ => Err(errors),
        }
    }
}

/// The shape of a callback URL: scheme, a host, no credentials, bounded length.
/// Why a callback URL is refused; the text is what the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    #[error("at most {MAX_CALLBACK_URL_BYTES} bytes")]
    TooLong,
    #[error("must be an https:// URL")]
    Scheme,
    #[error("must name a host")]
    NoHost,
    #[error("must not hold credentials")]
    Credentials,
    #[error("must not hold spaces or control characters")]
    Spaces,
}

pub fn check_callback_url(url: &str, allow_http: bool) -> Result<(), CallbackUrlError> {
    if url.len() > MAX_CALLBACK_URL_BYTES {
        return Err(CallbackUrlError::TooLong);
    }
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://").filter(|_| allow_http) {
        rest
    } else {
        return Err(CallbackUrlError::Scheme);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err(CallbackUrlError::NoHost);
    }
    if authority.contains('@') {
        return Err(CallbackUrlError::Credentials);
    }
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(CallbackUrlError::Spaces);
    }
    Ok(())
}

/// Why one row was rejected: the column (CSV header name, or the NDJSON path) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub column: String,
    pub reason: String,
}

impl RowProblem {
    fn whole_row(reason: impl Into<String>) -> Self {
        Self { column: String::new(), reason: reason.into() }
    }
}

fn row_problems(problems: Vec<Problem>) -> Vec<RowProblem> {
    problems
        .into_iter()
        .map(|p| RowProblem { column: p.path.unwrap_or_default(), reason: p.reason })
        .collect()
}

/// A CSV file's header, matched to the integration: which column is the user identifier,
/// which are properties (by path), and which are neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvColumns {
    names: Vec<String>,
    identifier: usize,
    /// (column, property index)
    properties: Vec<(usize, usize)>,
    /// The column of the integration's `timestampProperty`, if any.
    timestamp: Option<usize>,
    /// Columns that name no property: reported once, never read.
    pub ignored: Vec<String>,
}

/// Why a CSV header fails the whole import; the text is the import's `failure`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A column name (cut to [`MAX_QUOTED_NAME_BYTES`]) that the header repeats.
    #[error("the header names column '{0}' twice")]
    Twice(String),
    /// The integration's user identifier, which no column names.
    #[error("no column of the header is the integration's user identifier '{0}'")]
    NoIdentifier(String),
}

impl CsvColumns {
    /// Fails (the whole import) when no column names the identifier or a name is repeated.
    pub fn from_header(def: &Definition, header: &[String]) -> Result<Self, HeaderError> {
        Self::matched(def, header, true)
    }

    /// The columns again from [`CsvColumns::stored`] (a resumed import reads on from the middle
    /// of the file, past its header): the same matching, the ignored columns already reported.
    pub fn from_stored(def: &Definition, stored: &[String]) -> Result<Self, HeaderError> {
        Self::matched(def, stored, false)
    }

    fn matched(def: &Definition, header: &[String], fresh: bool) -> Result<Self, HeaderError> {
        let mut identifier = None;
        let mut timestamp = None;
        let mut properties = Vec::new();
        let mut ignored = Vec::new();
        let mut names = Vec::with_capacity(header.len());
        let mut seen = std::collections::HashSet::with_capacity(header.len());
        for (col, raw) in header.iter().enumerate() {
            let name = raw.trim();
            if fresh && !seen.insert(name) {
                return Err(HeaderError::Twice(clip(name).to_string()));
            }
            if name == def.user_identifier.as_str() {
                identifier = Some(col);
            } else if def.timestamp.as_ref().is_some_and(|t| t.as_str() == name) {
                timestamp = Some(col);
            } else if let Some(pi) = def.properties.iter().position(|p| p.path.as_str() == name) {
                properties.push((col, pi));
            } else {
                // Never read, so never stored: a header of 16,384 long names would not fit
                // the import's record (DynamoDB items hold 400 KB).
                if fresh {
                    ignored.push(clip(name).to_string());
                }
                names.push(String::new());
                continue;
            }
            names.push(name.to_string());
        }
        let Some(identifier) = identifier else {
            return Err(HeaderError::NoIdentifier(def.user_identifier.as_str().to_string()));
        };
        Ok(Self { names, identifier, properties, timestamp, ignored })
    }

    /// The header as an import's checkpoint stores it: the identifier's and the properties'
    /// names in their columns, and an empty name for each other column (bounded by the
    /// integration's paths, whatever the file's header holds).
    pub fn stored(&self) -> &[String] {
        &self.names
    }

    /// One record as a user update. An empty cell is no value: in `replace` mode that property
    /// is removed from the user, in `merge` mode it is kept; it is never a `null`.
    pub fn row(&self, def: &Definition, fields: &[String]) -> Result<UserUpdate, Vec<RowProblem>> {
        if fields.len() != self.names.len() {
            return Err(vec![RowProblem::whole_row(format!(
                "expected {} fields as in the header, got {}",
                self.names.len(),
                fields.len()
            ))]);
        }
        let mut obj = Map::new();
        let mut errors = Vec::new();
        let id = fields[self.identifier].trim();
        if !id.is_empty() {
            insert_path(&mut obj, def.user_identifier.as_str(), Value::String(id.to_string()));
        }
        if let (Some(col), Some(path)) = (self.timestamp, &def.timestamp)
            && !fields[col].trim().is_empty()
        {
            insert_path(&mut obj, path.as_str(), Value::String(fields[col].trim().to_string()));
        }
        for &(col, pi) in &self.properties {
            let cell = &fields[col];
            if cell.is_empty() {
                continue;
            }
            let prop = &def.properties[pi];
            let value = match prop.attr_type {
                AttrType::Boolean => match cell.trim().to_ascii_lowercase().as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => {
                        errors.push(RowProblem {
                            column: self.names[col].clone(),
                            reason: format!("'{cell}' is not a Boolean (true or false)"),
                        });
                        continue;
                    }
                },
                AttrType::Number | AttrType::Date => Value::String(cell.trim().to_string()),
                AttrType::String => Value::String(cell.clone()),
            };
            insert_path(&mut obj, prop.path.as_str(), value);
        }
        let judged = judge(def, Value::Object(obj));
        match judged {
            Ok(update) if errors.is_empty() => Ok(update.0),
            Ok(_) => Err(errors),
            Err(mut more) => {
                errors.append(&mut more);
                Err(errors)
            }
        }
    }
}

/// One NDJSON line (a JSON object, as one item of `data` in the API) as a user update, with
/// the paths it holds that are no property.
pub fn ndjson_row(def: &Definition, line: &[u8]) -> Result<(UserUpdate, Vec<String>), Vec<RowProblem>> {
    let protected = crate::exact::protect_numbers(line);
    let value: Value = serde_json::from_slice(&protected)
        .map_err(|e| vec![RowProblem::whole_row(format!("not a JSON object: {e}"))])?;
    if !value.is_object() {
        return Err(vec![RowProblem::whole_row("each line must be a JSON object")]);
    }
    judge(def, value)
}

fn judge(def: &Definition, value: Value) -> Result<(UserUpdate, Vec<String>), Vec<RowProblem>> {
    let mut items = [value];
    let validated = user_data::validate(def, &mut items).map_err(row_problems)?;
    let update = validated.users.into_iter().next().ok_or_else(|| vec![RowProblem::whole_row("no user")])?;
    Ok((update, validated.ignored_fields))
}

/// Sets `value` at a dotted path, making the objects on the way.
fn insert_path(obj: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            obj.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let inner = obj.entry(head.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !inner.is_object() {
                *inner = Value::Object(Map::new());
            }
            if let Value::Object(inner) = inner {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// Splits a CSV byte stream into records, incrementally, knowing where each record ends: an
/// import checkpoints at a record's end and resumes there with a fresh splitter.
pub struct CsvSplitter {
    reader: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    nout: usize,
    nend: usize,
}

/// What [`CsvSplitter::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// A whole record: its fields, and how many bytes of the input it took (in all).
    Record(Vec<String>, usize),
    /// The input ended inside a record: `consumed` bytes are held; call again with more.
    NeedMore(usize),
    /// The file is over (only with `eof`), after `consumed` more bytes (a last line end).
    End(usize),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("a row is longer than {MAX_ROW_BYTES} bytes (an unclosed quote?)")]
    TooLong,
    #[error("a row has more than {MAX_ROW_FIELDS} fields")]
    TooManyFields,
    #[error("a row is not UTF-8 text")]
    NotUtf8,
}

impl Default for CsvSplitter {
    fn default() -> Self {
        Self { reader: csv_core::Reader::new(), out: vec![0; 4096], ends: vec![0; 64], nout: 0, nend: 0 }
    }
}

impl CsvSplitter {
    /// The next record from `input` (the bytes after those already consumed). `eof`: no more
    /// input will come, so a last record without a line end is complete.
    pub fn next(&mut self, input: &[u8], eof: bool) -> Result<Split, SplitError> {
        // An empty input is how the reader learns that the data is over.
        if input.is_empty() && !eof {
            return Ok(Split::NeedMore(0));
        }
        let mut consumed = 0;
        loop {
            let (result, nin, nout, nend) = self.reader.read_record(
                &input[consumed..],
                &mut self.out[self.nout..],
                &mut self.ends[self.nend..],
            );
            consumed += nin;
            self.nout += nout;
            self.nend += nend;
            match result {
                // The rest of `input` was taken; with `eof`, the next round passes the empty
                // rest, which tells the reader that the data is over.
                csv_core::ReadRecordResult::InputEmpty if !eof => return Ok(Split::NeedMore(consumed)),
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_ROW_BYTES {
                        return Err(SplitError::TooLong);
                    }
                    let len = self.out.len() * 2;
                    self.out.resize(len, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() >= MAX_ROW_FIELDS {
                        return Err(SplitError::TooManyFields);
                    }
                    let len = (self.ends.len() * 2).min(MAX_ROW_FIELDS);
                    self.ends.resize(len, 0);
                }
                csv_core::ReadRecordResult::Record => return self.take(consumed),
                csv_core::ReadRecordResult::End => return Ok(Split::End(consumed)),
            }
        }
    }

    fn take(&mut self, consumed: usize) -> Result<Split, SplitError> {
        let mut fields = Vec::with_capacity(self.nend);
        let mut start = 0;
        for &end in &self.ends[..self.nend] {
            let field = std::str::from_utf8(&self.out[start..end]).map_err(|_| SplitError::NotUtf8)?;
            fields.push(field.to_string());
            start = end;
        }
        self.nout = 0;
        self.nend = 0;
        Ok(Split::Record(fields, consumed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> Definition {
        Definition::from_json(&serde_json::json!({
            "name": "crm", "userIdentifierProperty": "Email",
            "properties": [
                {"path": "Type", "name": "Customer_Type", "type": "String"},
                {"path": "plan.seats", "name": "Seats", "type": "Number"},
                {"path": "Since", "name": "Since", "type": "Date"},
                {"path": "Vip", "name": "Vip", "type": "Boolean"}
            ]
        }))
        .unwrap()
    }

    fn split_all(bytes: &[u8], chunk: usize) -> Vec<Vec<String>> {
        let mut s = CsvSplitter::default();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut avail = chunk.min(bytes.len());
        loop {
            let eof = avail == bytes.len();
            match s.next(&bytes[pos..avail], eof).unwrap() {
                Split::Record(f, n) => {
                    pos += n;
                    out.push(f);
                }
                Split::NeedMore(n) => {
                    pos += n;
                    avail = (avail + chunk).min(bytes.len());
                }
                Split::End(_) => return out,
            }
        }
    }

    #[test]
    fn splits_records_across_any_chunking() {
        let file = b"Email,Type\r\na@x.com,\"gold, \"\"vip\"\"\"\nb@x.com,\"two\nlines\"\nc@x.com,last";
        let expected = vec![
            vec!["Email", "Type"],
            vec!["a@x.com", "gold, \"vip\""],
            vec!["b@x.com", "two\nlines"],
            vec!["c@x.com", "last"],
        ];
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(split_all(file, chunk), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn a_row_past_the_limit_and_bytes_that_are_not_utf8_are_errors() {
        let mut s = CsvSplitter::default();
        let long = format!("\"{}", "x".repeat(MAX_ROW_BYTES + 10));
        assert_eq!(s.next(long.as_bytes(), true), Err(SplitError::TooLong));
        let mut s = CsvSplitter::default();
        assert_eq!(s.next(b"a,\xff\n", false), Err(SplitError::NotUtf8));
    }

    #[test]
    fn the_header_must_name_the_identifier_once() {
        let d = def();
        let h = |cols: &[&str]| cols.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let cols = CsvColumns::from_header(&d, &h(&["Type", "Email", "extra", "plan.seats"])).unwrap();
        assert_eq!(cols.ignored, vec!["extra"]);
        assert!(CsvColumns::from_header(&d, &h(&["Type"])).unwrap_err().to_string().contains("'Email'"));
        assert!(
            CsvColumns::from_header(&d, &h(&["Email", "Type", "Type"]))
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn cells_are_text_that_must_parse_as_their_type() {
        let d = def();
        let h: Vec<String> =
            ["Email", "Type", "plan.seats", "Since", "Vip"].iter().map(|s| s.to_string()).collect();
        let cols = CsvColumns::from_header(&d, &h).unwrap();
        let row = |cells: &[&str]| cols.row(&d, &cells.iter().map(|c| c.to_string()).collect::<Vec<_>>());

        let ok = row(&["a@x.com", "gold", "12.50", "2024-02-29", "TRUE"]).unwrap();
        assert_eq!(ok.user_id.as_str(), "a@x.com");
        assert_eq!(ok.values.len(), 4);
        // An empty cell is no value, never a null.
        let sparse = row(&["a@x.com", "", "3", "", ""]).unwrap();
        assert_eq!(sparse.values.len(), 1);

        let bad = row(&["a@x.com", "gold", "many", "2023-02-29", "yes"]).unwrap_err();
        let columns: Vec<&str> = bad.iter().map(|p| p.column.as_str()).collect();
        assert_eq!(columns, vec!["Vip", "plan.seats", "Since"], "{bad:?}");
        assert!(row(&["", "gold", "", "", ""]).unwrap_err()[0].reason.contains("identifier"));
        assert!(row(&["a@x.com", "", "", "", ""]).unwrap_err()[0].reason.contains("at least one"));
        assert!(row(&["a@x.com", "gold"]).unwrap_err()[0].reason.contains("expected 5 fields"));
    }

    #[test]
    fn an_ndjson_line_is_judged_like_an_api_item() {
        let d = def();
        let (u, ignored) =
            ndjson_row(&d, br#"{"Email": 42, "plan": {"seats": 123456789012345678901234567890}, "x": 1}"#)
                .unwrap();
        assert_eq!(u.user_id.as_str(), "42");
        assert_eq!(ignored, vec!["x"]);
        assert!(ndjson_row(&d, br#"{"Email": "a", "Vip": "true"}"#).unwrap_err()[0].column == "Vip");
        assert!(ndjson_row(&d, b"[1]").is_err());
        assert!(ndjson_row(&d, b"{").unwrap_err()[0].reason.starts_with("not a JSON object"));
    }

    #[test]
    fn the_spec_needs_a_format_and_a_safe_callback() {
        let ok = ImportSpec::from_json(&serde_json::json!({"format": "csv"}), false).unwrap();
        assert_eq!((ok.format, ok.mode, ok.callback_url), (Format::Csv, ImportMode::Replace, None));
        let paths = |v: Value, http: bool| -> Vec<String> {
            ImportSpec::from_json(&v, http).unwrap_err().into_iter().filter_map(|p| p.path).collect()
        };
        assert_eq!(paths(serde_json::json!({}), false), vec!["format"]);
        assert_eq!(
            paths(serde_json::json!({"format": "xml", "mode": "upsert"}), false),
            vec!["format", "mode"]
        );
        assert_eq!(
            paths(serde_json::json!({"format": "csv", "callbackUrl": "http://h/x"}), false),
            vec!["callbackUrl"]
        );
        assert!(
            ImportSpec::from_json(&serde_json::json!({"format": "csv", "callbackUrl": "http://h/x"}), true)
                .is_ok()
        );
        assert_eq!(
            paths(serde_json::json!({"format": "csv", "callbackUrl": "https://u:p@h/"}), false),
            vec!["callbackUrl"]
        );
        assert_eq!(paths(serde_json::json!({"format": "csv", "extra": 1}), false), vec!["extra"]);
    }

    #[test]
    fn a_row_of_commas_fails_at_the_field_bound_whatever_its_length() {
        let mut sp = CsvSplitter::default();
        let widest = ",".repeat(MAX_ROW_FIELDS - 1) + "\n";
        match sp.next(widest.as_bytes(), false).unwrap() {
            Split::Record(fields, n) => assert_eq!((fields.len(), n), (MAX_ROW_FIELDS, widest.len())),
            other => panic!("{other:?}"),
        }
        // One field more, and a row of commas as long as the whole row budget: both end at the
        // bound, holding at most MAX_ROW_FIELDS ends.
        let one_more = ",".repeat(MAX_ROW_FIELDS) + "\n";
        assert_eq!(CsvSplitter::default().next(one_more.as_bytes(), false), Err(SplitError::TooManyFields));
        let commas = vec![b','; MAX_ROW_BYTES];
        let mut sp = CsvSplitter::default();
        assert_eq!(sp.next(&commas, false), Err(SplitError::TooManyFields));
        assert!(sp.ends.len() <= MAX_ROW_FIELDS);
    }

    #[test]
    fn a_wide_header_is_checked_for_repeats_in_one_pass() {
        let d = def();
        let mut header: Vec<String> = (0..MAX_ROW_FIELDS).map(|i| format!("c{i}")).collect();
        header[0] = "Email".into();
        assert_eq!(CsvColumns::from_header(&d, &header).unwrap().ignored.len(), MAX_ROW_FIELDS - 1);
        header.push("c77".into());
        assert_eq!(
            CsvColumns::from_header(&d, &header).unwrap_err().to_string(),
            "the header names column 'c77' twice"
        );
    }

    #[test]
    fn the_stored_header_holds_only_what_is_read_and_quoted_names_are_clipped() {
        let d = def();
        let long = "é".repeat(150_000);
        let header: Vec<String> = ["Email", "Type", long.as_str(), "x"].map(String::from).to_vec();
        let cols = CsvColumns::from_header(&d, &header).unwrap();
        assert_eq!(cols.stored(), ["Email", "Type", "", ""]);
        assert_eq!(cols.ignored, vec![clip(&long).to_string(), "x".to_string()]);
        assert_eq!(cols.ignored[0].len(), MAX_QUOTED_NAME_BYTES);
        // Resumed from what was stored: the same columns, nothing reported again.
        let again = CsvColumns::from_stored(&d, cols.stored()).unwrap();
        assert_eq!((again.stored(), again.ignored.len()), (cols.stored(), 0));
        let twice = CsvColumns::from_header(&d, &[long.clone(), long.clone(), "Email".into()])
            .unwrap_err()
            .to_string();
        assert!(twice.len() < 300, "{}", twice.len());
    }
}
