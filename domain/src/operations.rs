//! Attribute operations of a user entry: `$setOnce`, `$increment`, `$unset`. They name
//! properties by payload path, as plain values do, and obey the same whitelist, types and
//! renames. Rules: docs/DECISIONS.md, "Attribute operations".

use serde_json::{Map, Value};

use crate::integration::{AttrType, Definition};
use crate::user_data::{AttrValue, check_number, typed};

pub const SET_ONCE: &str = "$setOnce";
pub const INCREMENT: &str = "$increment";
pub const UNSET: &str = "$unset";

/// One entry's operations, by property index of the integration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ops {
    /// Set only where the user has no value.
    pub set_once: Vec<(usize, AttrValue)>,
    /// Exact decimal deltas, as checked text (a missing value counts as 0).
    pub increment: Vec<(usize, String)>,
    pub unset: Vec<usize>,
}

impl Ops {
    pub fn is_empty(&self) -> bool {
        self.set_once.is_empty() && self.increment.is_empty() && self.unset.is_empty()
    }

    /// The properties the operations name.
    pub fn properties(&self) -> impl Iterator<Item = usize> + '_ {
        let once = self.set_once.iter().map(|(i, _)| *i);
        once.chain(self.increment.iter().map(|(i, _)| *i)).chain(self.unset.iter().copied())
    }
}

/// A JSON pointer (RFC 6901) into a user entry.
pub fn pointer(parts: &[&str]) -> String {
    parts.iter().map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect()
}

/// Takes the operations out of `obj`; problems come as (JSON pointer in the entry, reason).
/// Any other top-level key beginning with `$` is refused, unless an existing property (from
/// before `$` was reserved) imports it.
pub fn take(def: &Definition, obj: &mut Map<String, Value>, problems: &mut Vec<(String, String)>) -> Ops {
    let mut ops = Ops::default();
    let reserved: Vec<String> = obj.keys().filter(|k| k.starts_with('$')).cloned().collect();
    for key in reserved {
        let mut bad = |at: String, reason: String| problems.push((at, reason));
        match key.as_str() {
            SET_ONCE | INCREMENT => {
                let Some(Value::Object(map)) = obj.remove(&key) else {
                    bad(pointer(&[&key]), "must be an object of property paths to values".into());
                    continue;
                };
                for (path, value) in map {
                    let at = pointer(&[&key, &path]);
                    let Some(pi) = property(def, &path) else {
                        bad(at, "not an imported property of this integration".into());
                        continue;
                    };
                    if key == SET_ONCE {
                        match typed(def.properties[pi].attr_type, value) {
                            Ok(v) => ops.set_once.push((pi, v)),
                            Err(e) => bad(at, e.to_string()),
                        }
                    } else if def.properties[pi].attr_type != AttrType::Number {
                        bad(
                            at,
                            format!(
                                "only a Number property can be incremented; this one is a {}",
                                def.properties[pi].attr_type
                            ),
                        );
                    } else {
                        match delta(value) {
                            Ok(d) => ops.increment.push((pi, d)),
                            Err(reason) => bad(at, reason),
                        }
                    }
                }
            }
            UNSET => {
                let Some(Value::Array(list)) = obj.remove(&key) else {
                    bad(pointer(&[&key]), "must be a list of property paths".into());
                    continue;
                };
                for (i, path) in list.iter().enumerate() {
                    let at = pointer(&[&key, &i.to_string()]);
                    match path.as_str().map(|p| property(def, p)) {
                        Some(Some(pi)) => ops.unset.push(pi),
                        Some(None) => bad(at, "not an imported property of this integration".into()),
                        None => bad(at, "must be a property path (a string)".into()),
                    }
                }
            }
            _ if legacy(def, &key) => {}
            _ => bad(
                pointer(&[&key]),
                format!(
                    "keys beginning with '$' are reserved: the operations are {SET_ONCE}, {INCREMENT} and {UNSET}"
                ),
            ),
        }
    }
    ops
}

fn property(def: &Definition, path: &str) -> Option<usize> {
    def.properties.iter().position(|p| p.path.as_str() == path)
}

/// Whether a path of the definition reads `key` (stored before `$` was reserved).
fn legacy(def: &Definition, key: &str) -> bool {
    let paths = def.properties.iter().map(|p| p.path.as_str()).chain([def.user_identifier.as_str()]);
    paths
        .chain(def.timestamp.as_ref().map(|t| t.as_str()))
        .any(|p| p == key || (p.len() > key.len() && p.starts_with(key) && p.as_bytes()[key.len()] == b'.'))
}

/// A delta: a JSON number or a string holding one, checked like a Number value (every digit
/// kept: it reaches DynamoDB's `ADD` as text).
fn delta(v: Value) -> Result<String, String> {
    match typed(AttrType::Number, v) {
        Ok(AttrValue::Number(n)) => check_number(&n).map_err(|e| e.to_string()),
        Ok(_) => Err("a delta must be a number".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def() -> Definition {
        Definition::from_json(&json!({"name": "t", "userIdentifierProperty": "id",
            "properties": [{"path": "score", "name": "Score", "type": "Number"},
                           {"path": "plan", "name": "Plan", "type": "String"},
                           {"path": "a/b", "type": "Number"}]}))
        .unwrap()
    }

    fn run(v: Value) -> (Ops, Vec<(String, String)>, Value) {
        let mut obj = v.as_object().unwrap().clone();
        let mut problems = Vec::new();
        let ops = take(&def(), &mut obj, &mut problems);
        (ops, problems, Value::Object(obj))
    }

    #[test]
    fn operations_are_read_by_path_and_taken_out() {
        let (ops, problems, rest) = run(json!({"id": 1, "$setOnce": {"plan": "free"},
            "$increment": {"score": "0.1", "a/b": -2}, "$unset": []}));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ops.set_once, vec![(1, AttrValue::String("free".into()))]);
        assert_eq!(ops.increment, vec![(2, "-2".to_string()), (0, "0.1".to_string())]);
        assert_eq!(rest, json!({"id": 1}));
    }

    #[test]
    fn every_wrong_operation_is_named_by_pointer() {
        let (_, problems, _) = run(json!({"id": 1, "$setOnce": {"plan": 5, "nope": 1},
            "$increment": {"plan": 1, "score": 1.5e300, "a/b": "x"}, "$unset": ["score", 3, "zz"],
            "$inc": {}, "$unset2": 1}));
        let at: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert!(problems.iter().any(|(p, r)| p == "/$increment/plan" && r.contains("Number")));
        assert!(problems.iter().any(|(p, r)| p == "/$inc" && r.contains("reserved")));
        let mut sorted = at.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "/$inc",
                "/$increment/a~1b",
                "/$increment/plan",
                "/$increment/score",
                "/$setOnce/nope",
                "/$setOnce/plan",
                "/$unset/1",
                "/$unset/2",
                "/$unset2"
            ]
        );
    }

    #[test]
    fn a_dollar_key_an_existing_property_imports_is_a_value() {
        let mut d = def();
        d.properties[1].path = crate::integration::PropertyPath::parse("$plan").unwrap();
        let mut obj = json!({"$plan": "x"}).as_object().unwrap().clone();
        let mut problems = Vec::new();
        take(&d, &mut obj, &mut problems);
        assert!(problems.is_empty());
        assert!(obj.contains_key("$plan"));
    }
}
