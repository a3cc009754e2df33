//! MoEngage Track User API, `POST /v1/customer/{workspace_id}` (seed 004): the Basic
//! credentials, the body, attribute names and values, and the types, which are inferred on
//! an attribute's first sight and never change after. Pure: the whole request is judged before
//! anything is written.
//!
//! The attributes live in one implicit integration per account, [`INTEGRATION_ID`], named
//! [`INTEGRATION_NAME`], whose properties grow as new attribute names arrive (through the
//! same attribute-cap transaction as every integration). Integration ids generated elsewhere
//! are hyphenated UUIDs, so they can never be this one.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::integration::{
    AttrType, Definition, MAX_ATTRIBUTE_NAME_LEN, MAX_PROPERTIES, Property, PropertyPath,
};
use super::user_data::{self, AttrValue, MAX_STRING_BYTES, UserId};
use crate::Problem;

/// The id of the implicit integration, in every account: `ACCOUNT#<id>` / `INTEGRATION#moengage`
/// in the config table, `A#moengage` in a user's partition.
pub const INTEGRATION_ID: &str = "moengage";
/// Its name, as `GET /public/v1/user/{userId}` shows it.
pub const INTEGRATION_NAME: &str = "MoEngage";
/// Its user identifier property (the body field).
pub const USER_IDENTIFIER: &str = "customer_id";
/// MoEngage documents 128 KB as its request body limit.
pub const MAX_BODY_BYTES: usize = 128 * 1024;
/// Attributes per request, and per account in the implicit integration: an integration holds
/// at most this many properties, which keeps a user's item far below DynamoDB's 400 KB.
pub const MAX_ATTRIBUTES: usize = MAX_PROPERTIES;
/// MoEngage's system prefix: refused in attribute names.
pub const RESERVED_PREFIX: &str = "moe_";
/// Names MoEngage blocks.
pub const RESERVED_NAMES: [&str; 3] = ["id", "_id", ""];
/// The only request type of this endpoint (case-sensitive).
pub const REQUEST_TYPE: &str = "customer";

/// Whether an integration id is the implicit MoEngage one (the integrations management API
/// neither lists nor manages it).
pub fn is_implicit_integration(id: &str) -> bool {
    id == INTEGRATION_ID
}

/// The client address to record with an update: the first address of `X-Forwarded-For` (the
/// original client, as MoEngage documents the header), else the address the request came from.
/// An entry that is not an IP address (`unknown`, garbage) falls back too; a port is dropped.
pub fn client_address(forwarded_for: Option<&str>, source_ip: Option<&str>) -> Option<String> {
    fn ip(s: &str) -> Option<String> {
        let s = s.trim();
        let addr = s
            .parse::<std::net::IpAddr>()
            .or_else(|_| s.parse::<std::net::SocketAddr>().map(|a| a.ip()))
            .ok()?;
        Some(addr.to_string())
    }
    forwarded_for.and_then(|v| v.split(',').next()).and_then(ip).or_else(|| source_ip.and_then(ip))
}

/// A value as sent, checked on its own, before it meets the attribute's recorded type.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A string; `date_time` is its UTC RFC 3339 form when it is an ISO-8601 date-time.
    Text {
        raw: String,
        date_time: Option<String>,
    },
    Number(String),
    Boolean(bool),
}

/// Why a value cannot be an attribute's; the text is what the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncomingError {
    #[error("null is not allowed")]
    Null,
    #[error("a string value may hold at most {MAX_STRING_BYTES} bytes")]
    TooLong,
    #[error("lists are not supported: send a string, number, boolean or date-time")]
    List,
    #[error("objects are not supported: send a string, number, boolean or date-time")]
    Object,
    #[error(transparent)]
    Number(#[from] user_data::ValueError),
    /// The attribute's recorded type is another.
    #[error("{expected} value required, got {got}")]
    Mismatch { expected: &'static str, got: &'static str },
}

/// Why an attribute name is refused; the text is what the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("'{0}' is a reserved attribute name (\"id\", \"_id\" and \"\" are blocked)")]
    Reserved(String),
    #[error("'{0}': the prefix '{RESERVED_PREFIX}' is reserved for system attributes")]
    ReservedPrefix(String),
    #[error("an attribute name must be 1 to {MAX_ATTRIBUTE_NAME_LEN} characters, not blank")]
    Length,
}

impl Incoming {
    /// A JSON number, or one `exact::protect_numbers` kept whole.
    fn number(v: Value) -> Result<Self, IncomingError> {
        match user_data::typed(AttrType::Number, v)? {
            AttrValue::Number(n) => Ok(Self::Number(n)),
            _ => unreachable!("typed(Number) yields a Number"),
        }
    }

    fn from_json(v: Value) -> Result<Self, IncomingError> {
        match v {
            Value::Null => Err(IncomingError::Null),
            Value::Bool(b) => Ok(Self::Boolean(b)),
            v @ Value::Number(_) => Self::number(v),
            v if crate::exact::is_number(&v) => Self::number(v),
            Value::String(s) => {
                if s.len() > MAX_STRING_BYTES {
                    return Err(IncomingError::TooLong);
                }
                let date_time = date_time(&s);
                Ok(Self::Text { raw: s, date_time })
            }
            Value::Array(_) => Err(IncomingError::List),
            Value::Object(_) => Err(IncomingError::Object),
        }
    }

    /// The type an attribute gets when this is its first value.
    pub fn inferred(&self) -> AttrType {
        match self {
            Self::Text { date_time: Some(_), .. } => AttrType::Date,
            Self::Text { .. } => AttrType::String,
            Self::Number(_) => AttrType::Number,
            Self::Boolean(_) => AttrType::Boolean,
        }
    }

    /// The value as an attribute of type `t`, or why it cannot be one. A date-time string is
    /// also a valid String.
    pub fn typed(&self, t: AttrType) -> Result<AttrValue, IncomingError> {
        match (t, self) {
            (AttrType::String, Self::Text { raw, .. }) => Ok(AttrValue::String(raw.clone())),
            (AttrType::Date, Self::Text { date_time: Some(d), .. }) => Ok(AttrValue::Date(d.clone())),
            (AttrType::Number, Self::Number(n)) => Ok(AttrValue::Number(n.clone())),
            (AttrType::Boolean, Self::Boolean(b)) => Ok(AttrValue::Boolean(*b)),
            (t, got) => Err(IncomingError::Mismatch { expected: expected(t), got: got.describe() }),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::Text { date_time: Some(_), .. } => "a date-time",
            Self::Text { .. } => "a string",
            Self::Number(_) => "a number",
            Self::Boolean(_) => "a boolean",
        }
    }
}

fn expected(t: AttrType) -> &'static str {
    match t {
        AttrType::String => "a String (a JSON string)",
        AttrType::Number => "a Number (a JSON number)",
        AttrType::Date => "a Date (an ISO-8601 date-time string such as 2020-05-31T03:47:35Z)",
        AttrType::Boolean => "a Boolean (true or false)",
    }
}

/// An RFC 3339 date-time (ISO 8601 with a time zone: `2020-05-31T03:47:35Z`,
/// `2020-05-31T05:47:35.250+02:00`) in its UTC form, `2020-05-31T03:47:35Z`.
pub fn date_time(s: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    // Cheap shape test first: most strings are not dates.
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let t = time::OffsetDateTime::parse(s, &Rfc3339).ok()?;
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

/// Why an attribute name is refused, if it is.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if RESERVED_NAMES.contains(&name) {
        return Err(NameError::Reserved(name.to_string()));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(NameError::ReservedPrefix(name.to_string()));
    }
    if name.trim().is_empty() || name.chars().count() > MAX_ATTRIBUTE_NAME_LEN {
        return Err(NameError::Length);
    }
    Ok(())
}

/// A Track User request once its shape is right.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackUser {
    pub customer_id: UserId,
    /// By name (sorted), each value checked on its own.
    pub attributes: Vec<(String, Incoming)>,
    pub update_existing_only: bool,
}

impl TrackUser {
    /// Judges the body; every problem is returned, with its path (`attributes.<name>` for an
    /// attribute). `platforms` and unknown fields are accepted and ignored.
    pub fn parse(body: Value) -> Result<Self, Vec<Problem>> {
        let Value::Object(mut obj) = body else {
            return Err(vec![Problem::at("", "the body must be a JSON object")]);
        };
        let mut errors = Vec::new();
        match obj.get("type") {
            Some(Value::String(t)) if t == REQUEST_TYPE => {}
            Some(Value::String(t)) => errors.push(Problem::at(
                "type",
                format!(
                    "'{t}' is not supported: this endpoint takes \"type\": \"customer\" (case-sensitive)"
                ),
            )),
            _ => errors.push(Problem::at("type", "required: \"customer\"")),
        }
        let customer_id = match obj.get(USER_IDENTIFIER) {
            None => {
                errors.push(Problem::at(USER_IDENTIFIER, "required: the user's id (a string or an integer)"));
                None
            }
            Some(v) => UserId::from_json(v).map_err(|e| errors.push(Problem::at(USER_IDENTIFIER, e))).ok(),
        };
        let update_existing_only = match obj.get("update_existing_only") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => {
                errors.push(Problem::at("update_existing_only", "must be true or false"));
                false
            }
        };
        let attributes = match obj.remove("attributes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => parse_attributes(map, &mut errors),
            Some(_) => {
                errors.push(Problem::at("attributes", "must be an object of attribute names to values"));
                Vec::new()
            }
        };
        match customer_id {
            Some(customer_id) if errors.is_empty() => {
                Ok(Self { customer_id, attributes, update_existing_only })
            }
            _ => Err(errors),
        }
    }
}

fn parse_attributes(map: Map<String, Value>, errors: &mut Vec<Problem>) -> Vec<(String, Incoming)> {
    if map.len() > MAX_ATTRIBUTES {
        errors.push(Problem::at(
            "attributes",
            format!("at most {MAX_ATTRIBUTES} attributes per request, got {}", map.len()),
        ));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let path = format!("attributes.{name}");
        if let Err(e) = check_name(&name) {
            errors.push(Problem::at(path, e));
            continue;
        }
        match Incoming::from_json(value) {
            Ok(v) => out.push((name, v)),
            Err(e) => errors.push(Problem::at(path, format!("attribute '{name}': {e}"))),
        }
    }
    out
}

/// The request's values typed against the recorded types, and the attributes seen for the
/// first time (with their inferred types).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub values: Vec<(String, AttrValue)>,
    pub new_attributes: Vec<(String, AttrType)>,
}

/// Types every value: a known attribute keeps its recorded type (a value of another type is
/// refused, naming it); a new one takes the type of its value.
pub fn resolve(
    attributes: &[(String, Incoming)],
    known: &BTreeMap<String, AttrType>,
) -> Result<Resolved, Vec<Problem>> {
    let mut errors = Vec::new();
    let mut values = Vec::with_capacity(attributes.len());
    let mut new_attributes = Vec::new();
    for (name, incoming) in attributes {
        match known.get(name) {
            Some(t) => match incoming.typed(*t) {
                Ok(v) => values.push((name.clone(), v)),
                Err(e) => errors.push(Problem::at(
                    format!("attributes.{name}"),
                    format!("attribute '{name}' is a {t} (types never change): {e}"),
                )),
            },
            None => {
                let t = incoming.inferred();
                values.push((name.clone(), incoming.typed(t).expect("a value fits its own type")));
                new_attributes.push((name.clone(), t));
            }
        }
    }
    if errors.is_empty() { Ok(Resolved { values, new_attributes }) } else { Err(errors) }
}

/// The implicit integration's definition after adding `new` attributes to `current` (none yet:
/// `None`). Each property's path is its name (the key in `attributes`); a name that is not a
/// valid path (`a..b`, `.x`) gets its dots replaced in the path only: paths of this
/// integration are never resolved.
pub fn extended(current: Option<&Definition>, new: &[(String, AttrType)]) -> Definition {
    let mut def = current.cloned().unwrap_or_else(|| Definition {
        name: INTEGRATION_NAME.to_string(),
        user_identifier: PropertyPath::parse(USER_IDENTIFIER).expect("a valid path"),
        properties: Vec::new(),
        timestamp: None,
    });
    for (name, t) in new {
        let path = PropertyPath::parse(name)
            .or_else(|_| PropertyPath::parse(&name.replace('.', "_")))
            .expect("a 1-128 character name without dots is a valid path");
        def.properties.push(Property { path, name: name.clone(), attr_type: *t });
    }
    def
}

/// The implicit integration after new attributes were added: its definition, and every name
/// it ever defined with its type (a name keeps its type for good).
#[derive(Debug, Clone, PartialEq)]
pub struct Grown {
    pub definition: Definition,
    pub attribute_types: BTreeMap<String, AttrType>,
}

/// The attributes asked for would take the implicit integration past [`MAX_ATTRIBUTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the MoEngage integration would have more than {MAX_ATTRIBUTES} attributes")]
pub struct TooManyAttributes;

/// The implicit integration with `new` attributes added to `current` (its definition and
/// registry of types; `None` before the first attribute).
pub fn grown(
    current: Option<(&Definition, &BTreeMap<String, AttrType>)>,
    new: &[(String, AttrType)],
) -> Result<Grown, TooManyAttributes> {
    let definition = extended(current.map(|(d, _)| d), new);
    if definition.properties.len() > MAX_ATTRIBUTES {
        return Err(TooManyAttributes);
    }
    let mut attribute_types = current.map(|(_, t)| t.clone()).unwrap_or_default();
    attribute_types.extend(new.iter().cloned());
    Ok(Grown { definition, attribute_types })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn growing_keeps_every_type_and_stops_at_the_cap() {
        let first = grown(None, &[("a".into(), AttrType::String)]).unwrap();
        assert_eq!(first.definition.name, INTEGRATION_NAME);
        let retired = BTreeMap::from([("old".to_string(), AttrType::Number), ("a".into(), AttrType::String)]);
        let next = grown(Some((&first.definition, &retired)), &[("b".into(), AttrType::Boolean)]).unwrap();
        let names: Vec<&str> = next.definition.properties.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(next.attribute_types.len(), 3, "the registry keeps 'old'");
        let many: Vec<(String, AttrType)> =
            (0..=MAX_ATTRIBUTES).map(|i| (format!("n{i}"), AttrType::String)).collect();
        assert_eq!(grown(None, &many), Err(TooManyAttributes));
        assert!(grown(None, &many[..MAX_ATTRIBUTES]).is_ok());
    }

    fn seed() -> Value {
        json!({"type": "customer", "customer_id": "john@example.com", "attributes": {
            "name": "John", "points": 20, "expiry_date": "2020-05-31T03:47:35Z",
            "super_user": true, "user_persona": "browsers"}})
    }

    #[test]
    fn seed_body_parses_and_types_are_inferred() {
        let t = TrackUser::parse(seed()).unwrap();
        assert_eq!(t.customer_id.as_str(), "john@example.com");
        assert!(!t.update_existing_only);
        let r = resolve(&t.attributes, &BTreeMap::new()).unwrap();
        let types: BTreeMap<_, _> = r.new_attributes.iter().cloned().collect();
        assert_eq!(types["name"], AttrType::String);
        assert_eq!(types["points"], AttrType::Number);
        assert_eq!(types["expiry_date"], AttrType::Date);
        assert_eq!(types["super_user"], AttrType::Boolean);
        assert_eq!(types["user_persona"], AttrType::String);
        let values: BTreeMap<_, _> = r.values.into_iter().collect();
        assert_eq!(values["expiry_date"], AttrValue::Date("2020-05-31T03:47:35Z".into()));
        assert_eq!(values["points"], AttrValue::Number("20".into()));
    }

    #[test]
    fn reserved_and_bad_names_are_refused_naming_each() {
        let body = json!({"type": "customer", "customer_id": "u", "attributes": {
            "id": 1, "_id": 2, "": 3, "moe_mobile": "x", "ok": 1, " ": 1, "n".repeat(129): 1}});
        let errs = TrackUser::parse(body).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_deref().unwrap()).collect();
        let long = format!("attributes.{}", "n".repeat(129));
        for p in
            ["attributes.id", "attributes._id", "attributes.", "attributes.moe_mobile", "attributes. ", &long]
        {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        assert!(!paths.contains(&"attributes.ok"));
        assert!(check_name("moe").is_ok() && check_name("ID").is_ok() && check_name("x_moe_").is_ok());
        assert!(check_name(&"n".repeat(128)).is_ok());
    }

    #[test]
    fn envelope_edges() {
        let base = |patch: Value| {
            let mut b = seed();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    b.as_object_mut().unwrap().remove(k);
                } else {
                    b[k] = v.clone();
                }
            }
            TrackUser::parse(b)
        };
        assert!(base(json!({"type": "Customer"})).is_err(), "case-sensitive");
        assert!(base(json!({"type": "event"})).is_err());
        assert!(base(json!({"type": null})).is_err());
        assert!(base(json!({"customer_id": null})).is_err());
        assert!(base(json!({"customer_id": ""})).is_err());
        assert!(base(json!({"customer_id": "c".repeat(100)})).is_ok());
        assert!(base(json!({"customer_id": "c".repeat(101)})).is_err());
        assert!(base(json!({"customer_id": 1.5})).is_err());
        assert_eq!(base(json!({"customer_id": 123})).unwrap().customer_id.as_str(), "123");
        assert!(base(json!({"update_existing_only": "yes"})).is_err());
        assert!(base(json!({"update_existing_only": true})).unwrap().update_existing_only);
        assert!(base(json!({"platforms": [{"platform": "ANDROID", "active": "true"}], "extra": 1})).is_ok());
        assert!(base(json!({"attributes": [1]})).is_err());
        assert!(base(json!({"attributes": null})).unwrap().attributes.is_empty());
        assert!(base(json!({"attributes": {}})).unwrap().attributes.is_empty());
        assert!(TrackUser::parse(json!([seed()])).is_err());
        let many: Map<String, Value> = (0..101).map(|i| (format!("a{i}"), json!(i))).collect();
        assert!(base(json!({"attributes": many})).is_err());
    }

    #[test]
    fn values_are_checked_on_their_own() {
        let one = |v: Value| {
            TrackUser::parse(json!({"type": "customer", "customer_id": "u", "attributes": {"a": v}}))
        };
        for bad in [Value::Null, json!({"x": 1}), json!([1]), json!("x".repeat(1025)), json!(1e300)] {
            let errs = one(bad.clone()).unwrap_err();
            assert_eq!(errs[0].path.as_deref(), Some("attributes.a"), "{bad}");
            assert!(errs[0].reason.contains("'a'"), "{}", errs[0].reason);
        }
        assert!(one(json!("x".repeat(1024))).is_ok());
        assert!(one(json!(-1.5)).is_ok());
    }

    #[test]
    fn date_times_are_rfc3339_and_normalised_to_utc() {
        assert_eq!(date_time("2020-05-31T03:47:35Z").as_deref(), Some("2020-05-31T03:47:35Z"));
        assert_eq!(date_time("2020-05-31T05:47:35.25+02:00").as_deref(), Some("2020-05-31T03:47:35.25Z"));
        for not in
            ["2020-05-31", "2020-05-31T03:47:35", "2020-02-30T00:00:00Z", "31/05/2020 03:47", "browsers"]
        {
            assert_eq!(date_time(not), None, "{not}");
        }
    }

    #[test]
    fn recorded_types_never_change() {
        let attrs = |v: Value| {
            TrackUser::parse(json!({"type": "customer", "customer_id": "u", "attributes": {"points": v}}))
                .unwrap()
                .attributes
        };
        let known = BTreeMap::from([("points".to_string(), AttrType::Number)]);
        assert!(resolve(&attrs(json!(5)), &known).unwrap().new_attributes.is_empty());
        let errs = resolve(&attrs(json!("5")), &known).unwrap_err();
        assert_eq!(errs[0].path.as_deref(), Some("attributes.points"));
        assert!(errs[0].reason.contains("'points' is a Number"), "{}", errs[0].reason);
        // A date-time is also a string; a plain string is no date.
        let s = BTreeMap::from([("points".to_string(), AttrType::String)]);
        assert_eq!(
            resolve(&attrs(json!("2020-05-31T03:47:35Z")), &s).unwrap().values[0].1,
            AttrValue::String("2020-05-31T03:47:35Z".into())
        );
        let d = BTreeMap::from([("points".to_string(), AttrType::Date)]);
        assert!(resolve(&attrs(json!("soon")), &d).is_err());
        assert!(resolve(&attrs(json!(true)), &d).is_err());
    }

    #[test]
    fn definition_grows_with_valid_paths() {
        let d = extended(None, &[("a".into(), AttrType::Number), ("x..y".into(), AttrType::String)]);
        assert_eq!((d.name.as_str(), d.user_identifier.as_str()), (INTEGRATION_NAME, USER_IDENTIFIER));
        assert_eq!(d.properties[1].name, "x..y");
        assert_eq!(d.properties[1].path.as_str(), "x__y");
        let d2 = extended(Some(&d), &[(".b.".into(), AttrType::Boolean)]);
        assert_eq!(d2.properties.len(), 3);
        assert_eq!(d2.properties[2].path.as_str(), "_b_");
        assert_eq!(d2.types()["a"], AttrType::Number);
    }

    #[test]
    fn client_address_is_the_first_forwarded_one() {
        let src = Some("198.51.100.7");
        assert_eq!(client_address(Some("203.0.113.195"), src).as_deref(), Some("203.0.113.195"));
        assert_eq!(
            client_address(Some(" 203.0.113.195 , 70.41.3.18, 150.172.238.178"), src).as_deref(),
            Some("203.0.113.195")
        );
        assert_eq!(client_address(Some("2001:db8::1, 10.0.0.1"), src).as_deref(), Some("2001:db8::1"));
        assert_eq!(client_address(Some("203.0.113.195:443"), src).as_deref(), Some("203.0.113.195"));
        assert_eq!(client_address(Some("[2001:db8::1]:443"), src).as_deref(), Some("2001:db8::1"));
        assert_eq!(client_address(Some("unknown, 10.0.0.1"), src).as_deref(), Some("198.51.100.7"));
        assert_eq!(client_address(None, src).as_deref(), Some("198.51.100.7"));
        assert_eq!(client_address(Some(""), None), None);
    }

    #[test]
    fn the_implicit_integration_is_told_apart() {
        assert!(is_implicit_integration("moengage"));
        assert!(!is_implicit_integration(&uuid::Uuid::new_v4().to_string()));
    }
}
