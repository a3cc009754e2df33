//! Request bodies of the rule-segment routes (SPEC, "Rule segments"), checked for shape before
//! the rule itself is judged by [`crate::rules`]. Every problem's path is a JSON pointer into
//! the body, like the rule's own (docs/DECISIONS.md, "Rule segments: routes").

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::Problem;
use crate::integration::AttrType;
use crate::rules::Attributes;
use crate::segment::MAX_NAME_CHARS;
use crate::user_data::{UserId, typed};

/// A description holds at most this many characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
/// Users of one batch evaluation.
pub const MAX_BATCH_USERS: usize = 100;

/// `POST .../rule-segment` and `PUT .../rule-segment/{segmentGuid}`:
/// `{"name", "description"?, "rule", "timezone"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSegmentBody {
    pub name: String,
    pub description: Option<String>,
    pub rule: Value,
    pub timezone: Option<String>,
}

/// `POST .../rule-segment/evaluate`: `{"rule", "timezone"?, "attributes"? | "userId"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRunBody {
    pub rule: Value,
    pub timezone: Option<String>,
    pub subject: Subject,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// `{"<integrationId>": {"<name>": value}}`, typed later against the integrations.
    Attributes(Map<String, Value>),
    User(UserId),
}

fn object<'a>(body: &'a Value, errors: &mut Vec<Problem>) -> Option<&'a Map<String, Value>> {
    let obj = body.as_object();
    if obj.is_none() {
        errors.push(Problem::at("", "the body must be a JSON object"));
    }
    obj
}

fn unknown(obj: &Map<String, Value>, known: &[&str], errors: &mut Vec<Problem>) {
    for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(Problem::at(format!("/{}", pointer_escape(k)), "unknown field"));
    }
}

/// RFC 6901: `~` and `/` in a member name.
pub fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn timezone(obj: &Map<String, Value>, errors: &mut Vec<Problem>) -> Option<String> {
    match obj.get("timezone") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(Problem::at("/timezone", "an IANA timezone name (a string)"));
            None
        }
    }
}

fn rule(obj: &Map<String, Value>, errors: &mut Vec<Problem>) -> Value {
    match obj.get("rule") {
        Some(r) => r.clone(),
        None => {
            errors.push(Problem::at("/rule", "required: a group or a condition"));
            Value::Null
        }
    }
}

impl RuleSegmentBody {
    pub fn from_json(body: &Value) -> Result<Self, Vec<Problem>> {
        let mut errors = Vec::new();
        let Some(obj) = object(body, &mut errors) else { return Err(errors) };
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_NAME_CHARS => {
                s.clone()
            }
            _ => {
                errors.push(Problem::at(
                    "/name",
                    format!("required: a string of 1 to {MAX_NAME_CHARS} characters"),
                ));
                String::new()
            }
        };
        let description = match obj.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() <= MAX_DESCRIPTION_CHARS => Some(s.clone()),
            Some(_) => {
                errors.push(Problem::at(
                    "/description",
                    format!("a string of at most {MAX_DESCRIPTION_CHARS} characters"),
                ));
                None
            }
        };
        let rule = rule(obj, &mut errors);
        let timezone = timezone(obj, &mut errors);
        unknown(obj, &["name", "description", "rule", "timezone"], &mut errors);
        if errors.is_empty() { Ok(Self { name, description, rule, timezone }) } else { Err(errors) }
    }
}

impl DryRunBody {
    pub fn from_json(body: &Value) -> Result<Self, Vec<Problem>> {
        let mut errors = Vec::new();
        let Some(obj) = object(body, &mut errors) else { return Err(errors) };
        let rule = rule(obj, &mut errors);
        let timezone = timezone(obj, &mut errors);
        let subject = match (obj.get("attributes"), obj.get("userId")) {
            (Some(_), Some(_)) => {
                errors.push(Problem::at("/userId", "send either attributes or userId, not both"));
                None
            }
            (None, Some(Value::String(u))) => match UserId::parse(u) {
                Ok(u) => Some(Subject::User(u)),
                Err(e) => {
                    errors.push(Problem::at("/userId", e));
                    None
                }
            },
            (None, Some(_)) => {
                errors.push(Problem::at("/userId", "a user id (a string)"));
                None
            }
            (Some(Value::Object(m)), None) => Some(Subject::Attributes(m.clone())),
            (Some(_), None) => {
                errors
                    .push(Problem::at("/attributes", "an object {\"<integrationId>\": {\"<name>\": value}}"));
                None
            }
            (None, None) => Some(Subject::Attributes(Map::new())),
        };
        unknown(obj, &["rule", "timezone", "attributes", "userId"], &mut errors);
        match subject {
            Some(subject) if errors.is_empty() => Ok(Self { rule, timezone, subject }),
            _ => Err(errors),
        }
    }
}

/// A dry run's attributes typed by the integrations' property types (`types`: integration id
/// → name → type): an unknown integration or property, or a value of the wrong type, is a
/// problem at `/attributes/<id>/<name>`.
pub fn typed_attributes(
    raw: &Map<String, Value>,
    types: &HashMap<String, HashMap<String, AttrType>>,
) -> Result<Attributes, Vec<Problem>> {
    let mut errors = Vec::new();
    let mut out = Attributes::new();
    for (id, values) in raw {
        let at = format!("/attributes/{}", pointer_escape(id));
        let Some(props) = types.get(id) else {
            errors.push(Problem::at(at, "no integration of this account has this id"));
            continue;
        };
        let Some(values) = values.as_object() else {
            errors.push(Problem::at(at, "an object of attribute name → value"));
            continue;
        };
        let mut m = HashMap::with_capacity(values.len());
        for (name, v) in values {
            let at = format!("{at}/{}", pointer_escape(name));
            match props.get(name) {
                None => errors.push(Problem::at(at, "this integration has no property of this name")),
                Some(t) => match typed(*t, v.clone()) {
                    Ok(v) => {
                        m.insert(name.clone(), v);
                    }
                    Err(e) => errors.push(Problem::at(at, e)),
                },
            }
        }
        out.insert(id.clone(), m);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// `POST .../segments/evaluate`: `{"userIds": [≤ 100]}`, each a valid user id, no repeats.
pub fn batch_user_ids(body: &Value) -> Result<Vec<UserId>, Vec<Problem>> {
    let mut errors = Vec::new();
    let Some(obj) = object(body, &mut errors) else { return Err(errors) };
    unknown(obj, &["userIds"], &mut errors);
    let mut ids = Vec::new();
    match obj.get("userIds") {
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_BATCH_USERS => {
            let mut seen = std::collections::HashSet::new();
            for (i, v) in list.iter().enumerate() {
                match v.as_str().map(UserId::parse) {
                    Some(Ok(u)) if seen.insert(u.as_str().to_string()) => ids.push(u),
                    Some(Ok(_)) => errors.push(Problem::at(format!("/userIds/{i}"), "a repeated user id")),
                    Some(Err(e)) => errors.push(Problem::at(format!("/userIds/{i}"), e)),
                    None => errors.push(Problem::at(format!("/userIds/{i}"), "a user id (a string)")),
                }
            }
        }
        _ => errors
            .push(Problem::at("/userIds", format!("required: an array of 1 to {MAX_BATCH_USERS} user ids"))),
    }
    if errors.is_empty() { Ok(ids) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(e: Vec<Problem>) -> Vec<String> {
        e.into_iter().map(|p| p.path.unwrap()).collect()
    }

    #[test]
    fn bodies_name_what_is_wrong_by_pointer() {
        let e = RuleSegmentBody::from_json(&json!({"name": "", "timezone": 3, "x/y": 1})).unwrap_err();
        assert_eq!(paths(e), ["/name", "/rule", "/timezone", "/x~1y"]);
        let ok = RuleSegmentBody::from_json(&json!({"name": "n", "rule": {"all": []}})).unwrap();
        assert_eq!(ok.description, None);
        let e = DryRunBody::from_json(&json!({"rule": {}, "attributes": {}, "userId": "u"})).unwrap_err();
        assert_eq!(paths(e), ["/userId"]);
        let ids: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
        assert_eq!(paths(batch_user_ids(&json!({"userIds": ids})).unwrap_err()), ["/userIds"]);
        assert_eq!(batch_user_ids(&json!({"userIds": ids[..100]})).unwrap().len(), 100);
        assert_eq!(paths(batch_user_ids(&json!({"userIds": ["a", "a"]})).unwrap_err()), ["/userIds/1"]);
    }

    #[test]
    fn dry_run_attributes_are_typed_by_the_integration() {
        let types = HashMap::from([(
            "crm".to_string(),
            HashMap::from([("plan".to_string(), AttrType::String), ("seats".to_string(), AttrType::Number)]),
        )]);
        let raw = json!({"crm": {"plan": "pro", "seats": "x"}, "gone": {}});
        let e = typed_attributes(raw.as_object().unwrap(), &types).unwrap_err();
        assert_eq!(paths(e), ["/attributes/crm/seats", "/attributes/gone"]);
        let raw = json!({"crm": {"plan": "pro", "seats": 3}});
        assert_eq!(typed_attributes(raw.as_object().unwrap(), &types).unwrap()["crm"].len(), 2);
    }
}
