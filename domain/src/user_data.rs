//! `POST /public/v1/user/data`: the envelope, and the all-or-nothing validation of its items
//! against an integration. Pure: no I/O, so the whole request is judged before anything is
//! written.

use std::collections::{BTreeSet, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::integration::{AttrType, Definition};
use crate::Problem;
pub use crate::operations::Ops;

pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
pub const MAX_USERS: usize = 100;
pub const MAX_USER_ID_CHARS: usize = 100;
/// Longest String value, in UTF-8 bytes: 100 attributes of it keep an item far below
/// DynamoDB's 400 KB, and a 100-user request of 20 such values still fits in 2 MB.
pub const MAX_STRING_BYTES: usize = 1024;

/// An end user's identifier: 1 to 100 characters; integers are kept in decimal form, so the
/// user `123` and the user `"123"` are the same user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

/// Why a user id is refused; the text is what the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    #[error("a user id must be 1 to {MAX_USER_ID_CHARS} characters long")]
    Length,
    #[error("null is not allowed")]
    Null,
    #[error("the user identifier must be a string or an integer")]
    NotStringOrInteger,
    /// The same, for an id of a list (a segment's `userIds`).
    #[error("a user id must be a string or an integer")]
    ListedNotStringOrInteger,
}

impl UserId {
    pub fn parse(s: &str) -> Result<Self, UserIdError> {
        let n = s.chars().count();
        if n == 0 || n > MAX_USER_ID_CHARS {
            return Err(UserIdError::Length);
        }
        Ok(Self(s.to_string()))
    }

    /// A string, or an integer in decimal form.
    pub fn from_json(v: &Value) -> Result<Self, UserIdError> {
        match v {
            Value::String(s) => Self::parse(s),
            Value::Number(n) if n.is_i64() || n.is_u64() => Self::parse(&n.to_string()),
            // An integer too long for 64 bits, protected by `exact::protect_numbers`.
            v if crate::exact::number_text(v).is_some_and(|t| !t.contains(['.', 'e', 'E'])) => {
                Self::parse(&crate::exact::number_text(v).unwrap_or_default())
            }
            Value::Null => Err(UserIdError::Null),
            _ => Err(UserIdError::NotStringOrInteger),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A typed attribute value, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    String(String),
    /// A finite decimal in DynamoDB's number range, as text.
    Number(String),
    /// `YYYY-MM-DD`, a real calendar date.
    Date(String),
    Boolean(bool),
}

/// As JSON, a Number with every digit it holds (not through an `f64`).
impl serde::Serialize for AttrValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttrValue::String(v) | AttrValue::Date(v) => s.serialize_str(v),
            AttrValue::Boolean(b) => s.serialize_bool(*b),
            AttrValue::Number(n) => match serde_json::value::RawValue::from_string(n.clone()) {
                Ok(raw) => raw.serialize(s),
                // Not JSON number text (never stored: `check_number` and DynamoDB hold it).
                Err(_) => s.serialize_str(n),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One user: the properties sent are set, the others kept.
    Merge,
    /// Several users: each user's attributes of this integration become exactly those sent.
    Replace,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Merge => "merge",
            Mode::Replace => "replace",
        }
    }
}

/// The request body as sent. `None` is a member that is absent; a `null` is `Some(Value::Null)`
/// (and judged like any other value of the wrong type).
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default, deserialize_with = "present")]
    pub token: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub data: Option<Value>,
    #[serde(rename = "updateExistingOnly", default, deserialize_with = "present")]
    pub update_existing_only: Option<Value>,
}

/// A member that is present, `null` included (serde reads a `null` `Option` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The envelope once its shape is right: the token, the items, the flag.
#[derive(Debug)]
pub struct Request {
    pub token: String,
    pub data: Vec<Value>,
    pub update_existing_only: bool,
}

impl Envelope {
    /// Checks the envelope's shape; the items themselves are judged by [`validate`].
    pub fn into_request(self, token_required: bool) -> Result<Request, Vec<Problem>> {
        let mut errors = Vec::new();
        let token = match self.token {
            Some(Value::String(t)) if !t.is_empty() => t,
            None if !token_required => String::new(),
            _ => {
                errors.push(Problem::at("token", "required: the integration token (a string)"));
                String::new()
            }
        };
        let data = match self.data {
            Some(Value::Array(items)) if items.is_empty() => {
                errors.push(Problem::at("data", "must hold at least one user"));
                Vec::new()
            }
            Some(Value::Array(items)) if items.len() > MAX_USERS => {
                errors.push(Problem::at(
                    "data",
                    format!("at most {MAX_USERS} users per request, got {}", items.len()),
                ));
                Vec::new()
            }
            Some(Value::Array(items)) => items,
            _ => {
                errors.push(Problem::at("data", "required: a list of user objects"));
                Vec::new()
            }
        };
        let update_existing_only = match self.update_existing_only {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => {
                errors.push(Problem::at("updateExistingOnly", "must be true or false"));
                false
            }
        };
        if errors.is_empty() { Ok(Request { token, data, update_existing_only }) } else { Err(errors) }
    }
}

/// One user's validated update: values by property index of the integration.
#[derive(Debug, Clone, PartialEq)]
pub struct UserUpdate {
    pub user_id: UserId,
    pub values: Vec<(usize, AttrValue)>,
    pub ops: Ops,
    /// The entry's source time (epoch ms), when the integration names a `timestampProperty`.
    pub source_ms: Option<i64>,
}

impl UserUpdate {
    /// Values only: what every seed payload is.
    pub fn plain(user_id: UserId, values: Vec<(usize, AttrValue)>) -> Self {
        Self { user_id, values, ops: Ops::default(), source_ms: None }
    }

    /// Whether it is written as today's plain write (no operation, no source time).
    pub fn is_plain(&self) -> bool {
        self.ops.is_empty() && self.source_ms.is_none()
    }

    /// The values with the names of the properties they were imported as, in property order:
    /// what a write stores. `def` is the definition the update was validated against.
    pub fn named_values<'a>(&'a self, def: &'a Definition) -> impl Iterator<Item = (&'a str, &'a AttrValue)> {
        self.values.iter().map(|(i, v)| (def.properties[*i].name.as_str(), v))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub mode: Mode,
    pub users: Vec<UserUpdate>,
    /// Payload fields that are not imported, as paths, sorted and once each.
    pub ignored_fields: Vec<String>,
}

/// Judges every item; on any problem, every problem is returned and nothing may be written.
/// Imported values are moved out of `data` (left as `null`) rather than copied: a 2 MB
/// request is mostly values.
pub fn validate(def: &Definition, data: &mut [Value]) -> Result<Validated, Vec<Problem>> {
    let mut errors = Vec::new();
    let mut users = Vec::with_capacity(data.len());
    let mut seen: HashSet<UserId> = HashSet::with_capacity(data.len());
    let mut ignored = BTreeSet::new();
    let consumed: Vec<&str> = std::iter::once(def.user_identifier.as_str())
        .chain(def.properties.iter().map(|p| p.path.as_str()))
        .chain(def.timestamp.as_ref().map(|t| t.as_str()))
        .collect();

    for (index, item) in data.iter_mut().enumerate() {
        let err = |path: &str, reason: &dyn std::fmt::Display| Problem {
            index: Some(index),
            ..Problem::at(path, reason)
        };
        let Some(obj) = item.as_object_mut() else {
            errors.push(Problem {
                index: Some(index),
                path: None,
                reason: "each user must be a JSON object".into(),
            });
            continue;
        };
        let id_path = def.user_identifier.as_str();
        let user_id = match def.user_identifier.resolve(obj) {
            None => {
                errors.push(err(id_path, &"the user identifier is missing"));
                None
            }
            Some(v) => UserId::from_json(v).map_err(|e| errors.push(err(id_path, &e))).ok(),
        };
        let mut op_problems = Vec::new();
        let ops = crate::operations::take(def, obj, &mut op_problems);
        errors.extend(op_problems.into_iter().map(|(at, reason)| err(&at, &reason)));
        let source_ms = def.timestamp.as_ref().and_then(|t| {
            let found = t.resolve(obj).ok_or(crate::source_time::SourceTimeError::Missing);
            found.and_then(crate::source_time::parse).map_err(|e| errors.push(err(t.as_str(), &e))).ok()
        });
        collect_ignored(obj, "", &consumed, &mut ignored);
        let mut values = Vec::with_capacity(def.properties.len());
        for (pi, prop) in def.properties.iter().enumerate() {
            if let Some(v) = prop.path.resolve_mut(obj) {
                match typed(prop.attr_type, std::mem::take(v)) {
                    Ok(value) => values.push((pi, value)),
                    Err(reason) => errors.push(err(prop.path.as_str(), &reason)),
                }
            }
        }
        let mut named: Vec<usize> = values.iter().map(|(i, _)| *i).chain(ops.properties()).collect();
        named.sort_unstable();
        if let Some(w) = named.windows(2).find(|w| w[0] == w[1]) {
            errors.push(err(
                def.properties[w[0]].path.as_str(),
                &"a property may be named once per user: as a value or in one operation",
            ));
        }
        let item_had_errors = errors.last().is_some_and(|e| e.index == Some(index));
        if values.is_empty() && ops.is_empty() && !item_had_errors {
            errors.push(Problem {
                index: Some(index),
                path: None,
                reason: "at least one imported property with a value is required besides the identifier"
                    .into(),
            });
        }
        if let Some(user_id) = user_id {
            if !seen.insert(user_id.clone()) {
                errors.push(err(
                    id_path,
                    &format!("user '{}' appears more than once in this request", user_id.as_str()),
                ));
            }
            users.push(UserUpdate { user_id, values, ops, source_ms });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mode = if users.len() == 1 { Mode::Merge } else { Mode::Replace };
    Ok(Validated { mode, users, ignored_fields: ignored.into_iter().collect() })
}

fn collect_ignored(obj: &Map<String, Value>, prefix: &str, consumed: &[&str], out: &mut BTreeSet<String>) {
    for (key, value) in obj {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if consumed.iter().any(|c| *c == path) {
            continue;
        }
        let leads_to_consumed = consumed
            .iter()
            .any(|c| c.len() > path.len() && c.starts_with(&path) && c.as_bytes()[path.len()] == b'.');
        match value {
            Value::Object(inner) if leads_to_consumed => collect_ignored(inner, &path, consumed, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

/// Why a value cannot be stored as its property's type; the text is what the caller reads.
/// Offending text is quoted cut to 40 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("null is not allowed")]
    Null,
    #[error("a String value may hold at most {MAX_STRING_BYTES} bytes")]
    TooLong,
    #[error("'{0}' is not a finite decimal number")]
    NotANumber(String),
    #[error("'{0}' has more than 38 significant digits")]
    TooPrecise(String),
    #[error("'{0}' is outside the storable range (1e-130 to 1e126)")]
    OutOfRange(String),
    #[error("'{0}' is not a real date in the form YYYY-MM-DD")]
    NotADate(String),
    #[error("expected a {expected}, got {got}")]
    WrongType { expected: &'static str, got: &'static str },
}

/// Checks a value against its type.
pub fn typed(t: AttrType, v: Value) -> Result<AttrValue, ValueError> {
    if v.is_null() {
        return Err(ValueError::Null);
    }
    match (t, v) {
        (AttrType::String, Value::String(s)) => {
            if s.len() > MAX_STRING_BYTES {
                Err(ValueError::TooLong)
            } else {
                Ok(AttrValue::String(s))
            }
        }
        (AttrType::Number, Value::String(s)) => check_number(&s).map(AttrValue::Number),
        (AttrType::Number, v) if crate::exact::is_number(&v) => {
            check_number(&crate::exact::number_text(&v).unwrap_or_default()).map(AttrValue::Number)
        }
        (AttrType::Date, Value::String(s)) => check_date(&s).map(|()| AttrValue::Date(s)),
        (AttrType::Boolean, Value::Bool(b)) => Ok(AttrValue::Boolean(b)),
        (t, other) => Err(ValueError::WrongType { expected: expected(t), got: kind(&other) }),
    }
}

fn expected(t: AttrType) -> &'static str {
    match t {
        AttrType::String => "String (a JSON string)",
        AttrType::Number => "Number (a JSON number or a string holding a decimal number)",
        AttrType::Date => "Date (a string YYYY-MM-DD)",
        AttrType::Boolean => "Boolean (true or false)",
    }
}

fn kind(v: &Value) -> &'static str {
    if crate::exact::is_number(v) {
        return "a number";
    }
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A finite decimal that DynamoDB can store exactly: at most 38 significant digits, magnitude
/// between 1e-130 and 1e126. The magnitude is read off the text, not through an f64, which
/// would turn `1e-400` and `0e99999999999999999999` into a harmless-looking 0 that DynamoDB
/// then refuses; a zero's exponent must lie in the same range.
pub fn check_number(s: &str) -> Result<String, ValueError> {
    let bad = || ValueError::NotANumber(truncate(s));
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == int_start {
        return Err(bad());
    }
    let mut digits: String = s[int_start..i].to_string();
    let mut frac_len = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == frac_start {
            return Err(bad());
        }
        frac_len = i - frac_start;
        digits.push_str(&s[frac_start..i]);
    }
    let mut exponent: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let negative = b.get(i) == Some(&b'-');
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return Err(bad());
        }
        // Past i64 it is out of range whatever the digits: saturate.
        let magnitude = s[exp_start..i].parse::<i64>().unwrap_or(i64::MAX);
        exponent = if negative { -magnitude } else { magnitude };
    }
    if i != b.len() {
        return Err(bad());
    }
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    if significant > 38 {
        return Err(ValueError::TooPrecise(truncate(s)));
    }
    // The power of ten of the leading significant digit (of a zero: its exponent).
    let power = match digits.find(|c| c != '0') {
        Some(lead) => exponent.saturating_add((digits.len() - lead - 1) as i64 - frac_len as i64),
        None => exponent,
    };
    if !(-130..=125).contains(&power) {
        return Err(ValueError::OutOfRange(truncate(s)));
    }
    Ok(s.to_string())
}

fn check_date(s: &str) -> Result<(), ValueError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if s.len() == 10 && time::Date::parse(s, &fmt).is_ok() {
        Ok(())
    } else {
        Err(ValueError::NotADate(truncate(s)))
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed_def() -> Definition {
        Definition::from_json(
            &json!({"name": "Update Customer Attributes", "userIdentifierProperty": "Email",
            "properties": [{"path": "Type", "name": "Customer_Type", "type": "String"},
                           {"path": "Status", "name": "Customer_Status", "type": "String"}]}),
        )
        .unwrap()
    }

    fn typed_def() -> Definition {
        Definition::from_json(&json!({"name": "t", "userIdentifierProperty": "properties.ID",
            "properties": [{"path": "n", "type": "Number"}, {"path": "d", "type": "Date"},
                           {"path": "b", "type": "Boolean"}, {"path": "nested.field", "name": "F", "type": "Number"}]}))
        .unwrap()
    }

    fn items(v: Value) -> Vec<Value> {
        v.as_array().unwrap().clone()
    }

    fn check(def: &Definition, v: Value) -> Result<Validated, Vec<Problem>> {
        validate(def, &items(v))
    }

    /// The tests judge copies, so that they can reuse their inputs.
    fn validate(def: &Definition, data: &[Value]) -> Result<Validated, Vec<Problem>> {
        super::validate(def, &mut data.to_vec())
    }

    #[test]
    fn seed_single_user_is_a_merge() {
        let v = validate(
            &seed_def(),
            &items(json!([{"Email": "[email protected]", "Status": "New", "Type": "Internal"}])),
        )
        .unwrap();
        assert_eq!(v.mode, Mode::Merge);
        assert_eq!(v.users[0].user_id.as_str(), "[email protected]");
        assert_eq!(
            v.users[0].values,
            vec![(0, AttrValue::String("Internal".into())), (1, AttrValue::String("New".into()))]
        );
        assert!(v.ignored_fields.is_empty());
    }

    #[test]
    fn several_users_replace_and_ignored_fields_are_reported() {
        let v = validate(
            &seed_def(),
            &items(json!([
                {"Email": "a@x.io", "Status": "New", "extra": 1},
                {"Email": "b@x.io", "Type": "External", "meta": {"k": 1}}
            ])),
        )
        .unwrap();
        assert_eq!(v.mode, Mode::Replace);
        assert_eq!(v.ignored_fields, ["extra", "meta"]);
    }

    #[test]
    fn seed_nested_and_literal_dotted_paths() {
        let v = check(&typed_def(), json!([{"properties.ID": "[email protected]", "field1": "value", "field2": 123, "nested": {"field": 456, "other": 1}}])).unwrap();
        assert_eq!(v.users[0].values, vec![(3, AttrValue::Number("456".into()))]);
        assert_eq!(v.ignored_fields, ["field1", "field2", "nested.other"]);
    }

    #[test]
    fn types_are_checked() {
        for (t, ok) in [
            (AttrType::Number, json!(12)),
            (AttrType::Number, json!(-1.5)),
            (AttrType::Number, json!("12.50")),
            (AttrType::Number, json!("1e5")),
            (AttrType::Number, json!("1e-130")),
            (AttrType::Number, json!("-0.00001e-125")),
            (AttrType::Number, json!("9.9999999999999999999999999999999999999e125")),
            (AttrType::Number, json!("12000e121")),
            (AttrType::Number, json!("0e125")),
            (AttrType::Number, json!(1e125)),
            (AttrType::Date, json!("2024-02-29")),
            (AttrType::Boolean, json!(false)),
            (AttrType::String, json!("")),
            (AttrType::String, json!("x".repeat(1024))),
        ] {
            assert!(typed(t, ok.clone()).is_ok(), "{t} {ok}");
        }
        for (t, bad) in [
            (AttrType::Number, json!("12a")),
            (AttrType::Number, json!("NaN")),
            (AttrType::Number, json!("")),
            (AttrType::Number, json!(" 1")),
            (AttrType::Number, json!("1.")),
            (AttrType::Number, json!(true)),
            (AttrType::Number, json!("1e200")),
            (AttrType::Number, json!("1e-400")),
            (AttrType::Number, json!("0.1e-130")),
            (AttrType::Number, json!("10e125")),
            (AttrType::Number, json!("0e126")),
            (AttrType::Number, json!("0e12600000000000000000000000000000")),
            (AttrType::Number, json!("1e-99999999999999999999999")),
            (AttrType::Number, json!("1".repeat(39))),
            (AttrType::Date, json!("2024-02-30")),
            (AttrType::Date, json!("2023-02-29")),
            (AttrType::Date, json!("24-01-01")),
            (AttrType::Date, json!("2024-1-01")),
            (AttrType::Date, json!(20240101)),
            (AttrType::Boolean, json!("true")),
            (AttrType::String, json!(5)),
            (AttrType::String, json!({"a": 1})),
            (AttrType::String, json!(["a"])),
            (AttrType::String, json!("x".repeat(1025))),
            (AttrType::String, Value::Null),
        ] {
            assert!(typed(t, bad.clone()).is_err(), "{t} {bad} should be refused");
        }
    }

    #[test]
    fn every_error_is_listed_with_index_and_path() {
        let errs = validate(
            &typed_def(),
            &items(json!([
                {"properties.ID": "ok", "n": 1},
                {"properties.ID": null, "n": "x"},
                {"n": 1},
                {"properties.ID": "only-id"},
                {"properties.ID": "z", "nested": {"field": null}},
                "not an object",
                {"properties.ID": "ok", "d": "2024-02-30"},
            ])),
        )
        .unwrap_err();
        let got: Vec<(Option<usize>, Option<&str>)> =
            errs.iter().map(|e| (e.index, e.path.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                (Some(1), Some("properties.ID")),
                (Some(1), Some("n")),
                (Some(2), Some("properties.ID")),
                (Some(3), None),
                (Some(4), Some("nested.field")),
                (Some(5), None),
                (Some(6), Some("d")),
                (Some(6), Some("properties.ID")),
            ]
        );
        assert!(errs[7].reason.contains("more than once"));
    }

    #[test]
    fn operations_and_source_times_are_judged_with_the_entry() {
        let mut timed = seed_def();
        timed.timestamp = Some(crate::integration::PropertyPath::parse("meta.at").unwrap());
        let v = check(
            &timed,
            json!([{"Email": "a", "meta": {"at": 1_733_480_000, "x": 1}, "$unset": ["Status"]}]),
        )
        .unwrap();
        let u = &v.users[0];
        assert_eq!(
            (u.source_ms, u.ops.unset.clone(), u.values.is_empty()),
            (Some(1_733_480_000_000), vec![1], true)
        );
        assert_eq!(v.ignored_fields, ["meta.x"], "the source time is read, not ignored");
        assert!(!u.is_plain());
        let errs = check(&timed, json!([{"Email": "a", "Type": "x"}])).unwrap_err();
        assert_eq!((errs[0].index, errs[0].path.as_deref()), (Some(0), Some("meta.at")));
        // A property named twice (a value and an operation) is refused; a plain entry stays plain.
        let errs =
            check(&seed_def(), json!([{"Email": "a", "Type": "x", "$setOnce": {"Type": "y"}}])).unwrap_err();
        assert_eq!(errs[0].path.as_deref(), Some("Type"));
        assert!(check(&seed_def(), json!([{"Email": "a", "Type": "x"}])).unwrap().users[0].is_plain());
        // Operations alone are enough; an empty operation is not.
        assert!(check(&seed_def(), json!([{"Email": "a", "$unset": ["Type"]}])).is_ok());
        assert!(check(&seed_def(), json!([{"Email": "a", "$unset": []}])).is_err());
    }

    #[test]
    fn user_id_edges() {
        let def = seed_def();
        let one = |id: Value| check(&def, json!([{"Email": id, "Type": "x"}]));
        assert!(one(json!("a".repeat(100))).is_ok());
        assert!(one(json!("a".repeat(101))).is_err());
        assert!(one(json!("é".repeat(100))).is_ok(), "characters, not bytes");
        assert!(one(json!("")).is_err());
        assert_eq!(one(json!(123)).unwrap().users[0].user_id.as_str(), "123");
        assert!(one(json!(1.5)).is_err());
        assert!(one(json!(true)).is_err());
        assert!(one(json!({"a": 1})).is_err());
        // 123 and "123" are one user: twice in one request is refused.
        assert!(
            validate(&def, &[json!({"Email": 123, "Type": "x"}), json!({"Email": "123", "Type": "y"})])
                .is_err()
        );
    }

    #[test]
    fn envelope_edges() {
        let parse = |v: Value| serde_json::from_value::<Envelope>(v).unwrap().into_request(true);
        let hundred: Vec<Value> = (0..100).map(|i| json!({"Email": i})).collect();
        assert_eq!(parse(json!({"token": "t", "data": hundred})).unwrap().data.len(), 100);
        let more: Vec<Value> = (0..101).map(|i| json!({"Email": i})).collect();
        assert!(parse(json!({"token": "t", "data": more})).is_err());
        assert!(parse(json!({"token": "t", "data": []})).is_err());
        assert!(parse(json!({"token": "t", "data": null})).is_err());
        assert!(parse(json!({"token": "t", "data": {}})).is_err());
        assert!(parse(json!({"data": [{}]})).is_err());
        assert!(parse(json!({"token": 5, "data": [{}]})).is_err());
        assert!(parse(json!({"token": "t", "data": [{}], "updateExistingOnly": "yes"})).is_err());
        assert!(parse(json!({"token": "t", "data": [{}], "updateExistingOnly": null})).is_err());
        assert!(parse(json!({"token": null, "data": [{}]})).is_err());
        assert!(
            parse(json!({"token": "t", "data": [{}], "updateExistingOnly": true}))
                .unwrap()
                .update_existing_only
        );
    }
}
