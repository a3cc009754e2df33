//! Segments API request bodies (WalkMe Segments API): parsed and judged before any I/O.
//! The storage design lives with the segments function.

use std::collections::HashSet;

use serde_json::Value;

use super::user_data::{UserId, UserIdError};
use crate::Problem;

/// At most this many ids per request (the seeds: "up to 25k users per request").
pub const MAX_IDS: usize = 25_000;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EXTERNAL_ID_CHARS: usize = 256;
/// A request with thousands of bad ids reports the first ones only, to bound the response.
pub const MAX_REPORTED: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
    /// The membership becomes exactly the given list (which may be empty).
    Override,
}

/// `POST .../segment`: `{"id"?, "name", "userIds"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSegment {
    pub external_id: Option<String>,
    pub name: String,
    /// Distinct ids, in first-seen order.
    pub user_ids: Vec<UserId>,
}

/// `PUT .../segment/{segmentGuid}`: `{"action", "userIds"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSegment {
    pub action: Action,
    /// Distinct ids, in first-seen order.
    pub user_ids: Vec<UserId>,
}

fn object(body: &Value) -> Result<&serde_json::Map<String, Value>, Vec<Problem>> {
    body.as_object().ok_or_else(|| vec![Problem::at("", "the body must be a JSON object")])
}

impl CreateSegment {
    pub fn from_json(body: &Value) -> Result<Self, Vec<Problem>> {
        let obj = object(body)?;
        let mut errors = Vec::new();
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_NAME_CHARS => {
                s.clone()
            }
            _ => {
                errors.push(Problem::at(
                    "name",
                    format!("required: a string of 1 to {MAX_NAME_CHARS} characters"),
                ));
                String::new()
            }
        };
        let external_id = match obj.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_EXTERNAL_ID_CHARS => {
                Some(s.clone())
            }
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            Some(_) => {
                errors.push(Problem::at(
                    "id",
                    format!("the external id must be a string of 1 to {MAX_EXTERNAL_ID_CHARS} characters"),
                ));
                None
            }
        };
        let user_ids = match obj.get("userIds") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => user_ids(v, &mut errors),
        };
        unknown_fields(obj, &["id", "name", "userIds"], &mut errors);
        if errors.is_empty() { Ok(Self { external_id, name, user_ids }) } else { Err(errors) }
    }
}

impl UpdateSegment {
    pub fn from_json(body: &Value) -> Result<Self, Vec<Problem>> {
        let obj = object(body)?;
        let mut errors = Vec::new();
        let action = match obj.get("action").and_then(Value::as_str) {
            Some("add") => Some(Action::Add),
            Some("remove") => Some(Action::Remove),
            Some("override") => Some(Action::Override),
            _ => {
                errors.push(Problem::at("action", "required: one of \"add\", \"remove\", \"override\""));
                None
            }
        };
        let ids = match obj.get("userIds") {
            Some(v) => user_ids(v, &mut errors),
            None => {
                errors.push(Problem::at("userIds", "required: a list of user ids"));
                Vec::new()
            }
        };
        if matches!(action, Some(Action::Add | Action::Remove)) && ids.is_empty() && errors.is_empty() {
            errors.push(Problem::at("userIds", "add and remove need at least one user id"));
        }
        unknown_fields(obj, &["action", "userIds"], &mut errors);
        match action {
            Some(action) if errors.is_empty() => Ok(Self { action, user_ids: ids }),
            _ => Err(errors),
        }
    }
}

fn unknown_fields(obj: &serde_json::Map<String, Value>, known: &[&str], errors: &mut Vec<Problem>) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(Problem::at(key.clone(), "unknown field"));
    }
}

/// A list of 0 to 25,000 ids (strings, or integers kept in decimal form), each 1 to 100
/// characters; duplicates count once.
fn user_ids(v: &Value, errors: &mut Vec<Problem>) -> Vec<UserId> {
    let Some(list) = v.as_array() else {
        errors.push(Problem::at("userIds", "must be a list of user ids"));
        return Vec::new();
    };
    if list.len() > MAX_IDS {
        errors.push(Problem::at("userIds", format!("at most {MAX_IDS} ids per request, got {}", list.len())));
        return Vec::new();
    }
    let mut seen = HashSet::with_capacity(list.len());
    let mut out = Vec::with_capacity(list.len());
    let mut bad = 0;
    for (i, item) in list.iter().enumerate() {
        let parsed = match item {
            Value::String(s) => UserId::parse(s),
            Value::Number(n) if n.is_i64() || n.is_u64() => UserId::parse(&n.to_string()),
            _ => Err(UserIdError::ListedNotStringOrInteger),
        };
        match parsed {
            Ok(id) => {
                if seen.insert(id.clone()) {
                    out.push(id);
                }
            }
            Err(reason) => {
                bad += 1;
                if bad <= MAX_REPORTED {
                    errors.push(Problem::at(format!("userIds[{i}]"), reason));
                }
            }
        }
    }
    if bad > MAX_REPORTED {
        errors.push(Problem::at(
            "userIds",
            format!("{bad} invalid ids in all; the first {MAX_REPORTED} are listed"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("user{i}@company.com")).collect()
    }

    #[test]
    fn seed_create_body() {
        let c = CreateSegment::from_json(&json!({"id": "heap-123", "name": "my new external segment",
            "userIds": ["John@company.com", "Melissa@company.com"]}))
        .unwrap();
        assert_eq!(c.external_id.as_deref(), Some("heap-123"));
        assert_eq!(c.user_ids.len(), 2);
        let c = CreateSegment::from_json(&json!({"name": "no ids"})).unwrap();
        assert!(c.user_ids.is_empty() && c.external_id.is_none());
    }

    #[test]
    fn id_count_edges() {
        assert_eq!(
            UpdateSegment::from_json(&json!({"action": "add", "userIds": ids(25_000)}))
                .unwrap()
                .user_ids
                .len(),
            25_000
        );
        let e = UpdateSegment::from_json(&json!({"action": "add", "userIds": ids(25_001)})).unwrap_err();
        assert_eq!(e[0].path.as_deref(), Some("userIds"));
        assert!(CreateSegment::from_json(&json!({"name": "n", "userIds": ids(25_001)})).is_err());
    }

    #[test]
    fn id_length_edges_and_duplicates() {
        let ok = UpdateSegment::from_json(
            &json!({"action": "add", "userIds": ["a".repeat(100), "b", "b", 7, "7"]}),
        )
        .unwrap();
        assert_eq!(
            ok.user_ids.iter().map(UserId::as_str).collect::<Vec<_>>(),
            ["a".repeat(100).as_str(), "b", "7"]
        );
        let e = UpdateSegment::from_json(
            &json!({"action": "add", "userIds": ["x", "a".repeat(101), "", null, 1.5]}),
        )
        .unwrap_err();
        let paths: Vec<_> = e.iter().map(|d| d.path.clone().unwrap()).collect();
        assert_eq!(paths, ["userIds[1]", "userIds[2]", "userIds[3]", "userIds[4]"]);
    }

    #[test]
    fn actions() {
        assert_eq!(
            UpdateSegment::from_json(&json!({"action": "override", "userIds": []})).unwrap().action,
            Action::Override
        );
        assert!(UpdateSegment::from_json(&json!({"action": "add", "userIds": []})).is_err());
        assert!(UpdateSegment::from_json(&json!({"action": "remove", "userIds": []})).is_err());
        assert!(UpdateSegment::from_json(&json!({"action": "replace", "userIds": ["a"]})).is_err());
        assert!(UpdateSegment::from_json(&json!({"action": "ADD", "userIds": ["a"]})).is_err());
        assert!(UpdateSegment::from_json(&json!({"userIds": ["a"]})).is_err());
        assert!(UpdateSegment::from_json(&json!({"action": "add"})).is_err());
        assert!(UpdateSegment::from_json(&json!({"action": "add", "userIds": "a"})).is_err());
        assert!(UpdateSegment::from_json(&json!([])).is_err());
    }

    #[test]
    fn many_bad_ids_are_reported_boundedly() {
        let bad: Vec<Value> = (0..5_000).map(|_| json!("")).collect();
        let e = UpdateSegment::from_json(&json!({"action": "add", "userIds": bad})).unwrap_err();
        assert_eq!(e.len(), MAX_REPORTED + 1);
        assert!(e.last().unwrap().reason.contains("5000 invalid"));
    }

    #[test]
    fn create_field_errors() {
        let e = CreateSegment::from_json(&json!({"id": "", "name": "", "extra": 1})).unwrap_err();
        let paths: Vec<_> = e.iter().map(|d| d.path.clone().unwrap()).collect();
        assert_eq!(paths, ["name", "id", "extra"]);
        assert!(CreateSegment::from_json(&json!({"name": "x".repeat(201)})).is_err());
        assert!(CreateSegment::from_json(&json!({"name": "x".repeat(200)})).is_ok());
    }
}
