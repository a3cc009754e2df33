//! Integrations: what the seeds' "integration wizard" creates. An integration names the
//! payload path of the user identifier and the properties to import (path, attribute name,
//! type). Definitions are parsed once into [`Integration`], whose paths are compiled for the
//! hot path of `POST /public/v1/user/data`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttrType {
    String,
    Number,
    Date,
    Boolean,
}

impl AttrType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "String" => Some(Self::String),
            "Number" => Some(Self::Number),
            "Date" => Some(Self::Date),
            "Boolean" => Some(Self::Boolean),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::Number => "Number",
            Self::Date => "Date",
            Self::Boolean => "Boolean",
        }
    }
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dot-separated path into a payload item. It matches a literal key that contains the dots
/// (`"properties.ID"`) first, and nested objects (`{"nested": {"field": 1}}`) second.
/// Why a property path is refused; the text is what the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a path must be 1 to {} characters long", PropertyPath::MAX_LEN)]
    Length,
    #[error("a path may not start or end with '.', nor contain '..'")]
    EmptySegment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyPath {
    raw: String,
    segments: Vec<String>,
}

impl PropertyPath {
    pub const MAX_LEN: usize = 256;

    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.is_empty() || s.chars().count() > Self::MAX_LEN {
            return Err(PathError::Length);
        }
        if s.split('.').any(str::is_empty) {
            return Err(PathError::EmptySegment);
        }
        Ok(Self { raw: s.to_string(), segments: s.split('.').map(str::to_string).collect() })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The value at this path in `item`, if any.
    pub fn resolve<'a>(&self, item: &'a serde_json::Map<String, Value>) -> Option<&'a Value> {
        if let Some(v) = item.get(&self.raw) {
            return Some(v);
        }
        if self.segments.len() == 1 {
            return None;
        }
        let mut current = item.get(&self.segments[0])?;
        for seg in &self.segments[1..] {
            current = current.as_object()?.get(seg)?;
        }
        Some(current)
    }

    /// Like [`resolve`](Self::resolve), for taking the value out without copying it.
    pub fn resolve_mut<'a>(&self, item: &'a mut serde_json::Map<String, Value>) -> Option<&'a mut Value> {
        if item.contains_key(&self.raw) {
            return item.get_mut(&self.raw);
        }
        if self.segments.len() == 1 {
            return None;
        }
        let mut current = item.get_mut(&self.segments[0])?;
        for seg in &self.segments[1..] {
            current = current.as_object_mut()?.get_mut(seg)?;
        }
        Some(current)
    }
}

/// An imported property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub path: PropertyPath,
    /// The attribute name it is stored under.
    pub name: String,
    pub attr_type: AttrType,
}

/// A validated integration definition (what create and patch accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    pub user_identifier: PropertyPath,
    pub properties: Vec<Property>,
    /// The payload path of the source time (`timestampProperty`): with one, writes are ordered
    /// by it (docs/DECISIONS.md, "Source-time ordering").
    pub timestamp: Option<PropertyPath>,
}

pub const MAX_NAME_LEN: usize = 200;
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 128;
pub const MAX_PROPERTIES: usize = 100;
/// Integrations one account may have (the implicit MoEngage one aside). With
/// [`MAX_ATTRIBUTE_LIMIT`], it keeps the integration list (one unpaginated answer) far below
/// Lambda's 6 MB response limit: about 2.5 MB at the very worst (docs/SECURITY.md).
pub const MAX_INTEGRATIONS_PER_ACCOUNT: i64 = 100;
/// The highest attribute limit an operator may give an account.
pub const MAX_ATTRIBUTE_LIMIT: i64 = 1000;

impl Definition {
    /// Validates a create body (`name`, `userIdentifierProperty`, `properties`); every
    /// problem is reported, with its path.
    pub fn from_json(body: &Value) -> Result<Self, Vec<Problem>> {
        let mut errors = Vec::new();
        let Some(obj) = body.as_object() else {
            return Err(vec![Problem::at("", "the body must be a JSON object")]);
        };
        let name = parse_name(obj.get("name"), &mut errors);
        let user_identifier = match obj.get("userIdentifierProperty") {
            Some(Value::String(s)) => {
                PropertyPath::parse(s).map_err(|e| errors.push(Problem::at("userIdentifierProperty", e))).ok()
            }
            _ => {
                errors.push(Problem::at("userIdentifierProperty", "required: a string path"));
                None
            }
        };
        let properties = parse_properties(obj.get("properties"), &mut errors);
        let timestamp = parse_timestamp(obj.get("timestampProperty"), &mut errors);
        for key in obj.keys() {
            if !matches!(key.as_str(), "name" | "userIdentifierProperty" | "properties" | "timestampProperty")
            {
                errors.push(Problem::at(key.clone(), "unknown field"));
            }
        }
        match (name, user_identifier, properties) {
            (Some(name), Some(user_identifier), Some(properties)) if errors.is_empty() => {
                let def = Definition { name, user_identifier, properties, timestamp };
                def.check_identifier_not_imported()?;
                Ok(def)
            }
            _ => Err(errors),
        }
    }

    /// Applies a PATCH body (`name` and/or the whole new `properties` list).
    pub fn patched(&self, body: &Value) -> Result<Self, Vec<Problem>> {
        let Some(obj) = body.as_object() else {
            return Err(vec![Problem::at("", "the body must be a JSON object")]);
        };
        let mut errors = Vec::new();
        let mut next = self.clone();
        if obj.contains_key("name")
            && let Some(n) = parse_name(obj.get("name"), &mut errors)
        {
            next.name = n;
        }
        if obj.contains_key("properties")
            && let Some(p) = parse_properties(obj.get("properties"), &mut errors)
        {
            next.properties = p;
        }
        if obj.contains_key("timestampProperty") {
            next.timestamp = parse_timestamp(obj.get("timestampProperty"), &mut errors);
        }
        for key in obj.keys() {
            if !matches!(key.as_str(), "name" | "properties" | "timestampProperty") {
                let reason = if key == "userIdentifierProperty" {
                    "the user identifier property cannot change; create a new integration"
                } else {
                    "unknown field"
                };
                errors.push(Problem::at(key.clone(), reason));
            }
        }
        if !["name", "properties", "timestampProperty"].iter().any(|k| obj.contains_key(*k))
            && errors.is_empty()
        {
            errors.push(Problem::at("", "send 'name', 'properties' and/or 'timestampProperty'"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        next.check_identifier_not_imported()?;
        Ok(next)
    }

    fn check_identifier_not_imported(&self) -> Result<(), Vec<Problem>> {
        let mut clash: Vec<Problem> = self
            .properties
            .iter()
            .enumerate()
            .filter(|(_, p)| p.path == self.user_identifier)
            .map(|(i, _)| {
                Problem::at(format!("properties[{i}].path"), "the user identifier cannot also be a property")
            })
            .collect();
        if let Some(t) = &self.timestamp
            && (*t == self.user_identifier || self.properties.iter().any(|p| p.path == *t))
        {
            clash.push(Problem::at(
                "timestampProperty",
                "the source time cannot also be the user identifier or a property",
            ));
        }
        if clash.is_empty() { Ok(()) } else { Err(clash) }
    }

    /// The types of this definition's attributes, by name.
    pub fn types(&self) -> BTreeMap<String, AttrType> {
        self.properties.iter().map(|p| (p.name.clone(), p.attr_type)).collect()
    }

    /// Refuses a change of type for any attribute ever defined (`known`); returns the
    /// registry of every name ever used, with its type.
    pub fn merge_types(
        &self,
        known: &BTreeMap<String, AttrType>,
    ) -> Result<BTreeMap<String, AttrType>, Vec<Problem>> {
        let mut errors = Vec::new();
        let mut all = known.clone();
        for (i, p) in self.properties.iter().enumerate() {
            match known.get(&p.name) {
                Some(t) if *t != p.attr_type => errors.push(Problem::at(
                    format!("properties[{i}].type"),
                    format!("attribute '{}' is a {t}; the type of an attribute cannot change", p.name),
                )),
                _ => {
                    all.insert(p.name.clone(), p.attr_type);
                }
            }
        }
        if errors.is_empty() { Ok(all) } else { Err(errors) }
    }
}

fn parse_name(v: Option<&Value>, errors: &mut Vec<Problem>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_NAME_LEN => {
            Some(s.clone())
        }
        _ => {
            errors.push(Problem::at("name", format!("required: a string of 1 to {MAX_NAME_LEN} characters")));
            None
        }
    }
}

/// Paths beginning with `$` are the operations' (`$setOnce`, `$increment`, `$unset`).
const RESERVED_PREFIX: char = '$';

/// `timestampProperty`: absent or `null` for none, else a path.
fn parse_timestamp(v: Option<&Value>, errors: &mut Vec<Problem>) -> Option<PropertyPath> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.starts_with(RESERVED_PREFIX) => {
            errors.push(Problem::at("timestampProperty", "paths beginning with '$' are reserved"));
            None
        }
        Some(Value::String(s)) => {
            PropertyPath::parse(s).map_err(|e| errors.push(Problem::at("timestampProperty", e))).ok()
        }
        Some(_) => {
            errors.push(Problem::at("timestampProperty", "must be a string path or null"));
            None
        }
    }
}

fn parse_properties(v: Option<&Value>, errors: &mut Vec<Problem>) -> Option<Vec<Property>> {
    let Some(list) = v.and_then(Value::as_array) else {
        errors.push(Problem::at("properties", "required: a list of {path, name, type}"));
        return None;
    };
    if list.is_empty() || list.len() > MAX_PROPERTIES {
        errors.push(Problem::at("properties", format!("must hold 1 to {MAX_PROPERTIES} properties")));
        return None;
    }
    let before = errors.len();
    let mut out: Vec<Property> = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let at = |field: &str| format!("properties[{i}]{field}");
        let Some(obj) = p.as_object() else {
            errors.push(Problem::at(at(""), "must be an object {path, name, type}"));
            continue;
        };
        let path = match obj.get("path") {
            Some(Value::String(s)) if s.starts_with(RESERVED_PREFIX) => {
                errors.push(Problem::at(at(".path"), "paths beginning with '$' are reserved for operations"));
                None
            }
            Some(Value::String(s)) => {
                PropertyPath::parse(s).map_err(|e| errors.push(Problem::at(at(".path"), e))).ok()
            }
            _ => {
                errors.push(Problem::at(at(".path"), "required: a string path"));
                None
            }
        };
        let name = match obj.get("name") {
            None | Some(Value::Null) => path.as_ref().map(|p| p.as_str().to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(Problem::at(at(".name"), "must be a string"));
                None
            }
        };
        if let Some(n) = &name
            && (n.trim().is_empty() || n.chars().count() > MAX_ATTRIBUTE_NAME_LEN)
        {
            errors.push(Problem::at(
                at(".name"),
                format!("an attribute name must be 1 to {MAX_ATTRIBUTE_NAME_LEN} characters"),
            ));
        }
        let attr_type = match obj.get("type") {
            Some(Value::String(s)) => AttrType::parse(s).or_else(|| {
                errors.push(Problem::at(at(".type"), "must be one of String, Number, Date, Boolean"));
                None
            }),
            _ => {
                errors.push(Problem::at(at(".type"), "required: one of String, Number, Date, Boolean"));
                None
            }
        };
        for key in obj.keys() {
            if !matches!(key.as_str(), "path" | "name" | "type") {
                errors.push(Problem::at(at(&format!(".{key}")), "unknown field"));
            }
        }
        if let (Some(path), Some(name), Some(attr_type)) = (path, name, attr_type) {
            if out.iter().any(|q| q.name == name) {
                errors.push(Problem::at(at(".name"), format!("attribute name '{name}' is used twice")));
            }
            if out.iter().any(|q| q.path == path) {
                errors.push(Problem::at(at(".path"), format!("path '{}' is imported twice", path.as_str())));
            }
            out.push(Property { path, name, attr_type });
        }
    }
    (errors.len() == before).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed() -> Value {
        json!({"name": "Update Customer Attributes", "userIdentifierProperty": "Email",
               "properties": [{"path": "Type", "name": "Customer_Type", "type": "String"},
                              {"path": "Status", "name": "Customer_Status", "type": "String"}]})
    }

    #[test]
    fn seed_definition_parses() {
        let d = Definition::from_json(&seed()).unwrap();
        assert_eq!(d.user_identifier.as_str(), "Email");
        assert_eq!(d.properties[0].name, "Customer_Type");
        assert_eq!(d.properties[1].attr_type, AttrType::String);
    }

    #[test]
    fn name_defaults_to_path() {
        let d = Definition::from_json(&json!({"name": "n", "userIdentifierProperty": "properties.ID",
            "properties": [{"path": "nested.field", "type": "Number"}]}))
        .unwrap();
        assert_eq!(d.properties[0].name, "nested.field");
    }

    #[test]
    fn every_problem_is_reported() {
        let errs = Definition::from_json(&json!({"userIdentifierProperty": "a..b",
            "properties": [{"path": "x", "type": "Text"}, {"path": "x", "name": "y", "type": "Number"}, 3], "extra": 1}))
        .unwrap_err();
        let paths: Vec<_> = errs.iter().map(|e| e.path.clone().unwrap()).collect();
        for p in ["name", "userIdentifierProperty", "properties[0].type", "properties[2]", "extra"] {
            assert!(paths.contains(&p.to_string()), "{p} missing from {paths:?}");
        }
    }

    #[test]
    fn duplicates_and_identifier_clash_refused() {
        let dup = json!({"name": "n", "userIdentifierProperty": "id",
            "properties": [{"path": "a", "name": "A", "type": "String"}, {"path": "b", "name": "A", "type": "String"}]});
        assert!(Definition::from_json(&dup).is_err());
        let clash = json!({"name": "n", "userIdentifierProperty": "id", "properties": [{"path": "id", "type": "String"}]});
        assert!(Definition::from_json(&clash).is_err());
        let empty = json!({"name": "n", "userIdentifierProperty": "id", "properties": []});
        assert!(Definition::from_json(&empty).is_err());
    }

    #[test]
    fn property_count_edges() {
        let props = |n: usize| -> Vec<Value> {
            (0..n).map(|i| json!({"path": format!("p{i}"), "type": "String"})).collect()
        };
        let body = |n| json!({"name": "n", "userIdentifierProperty": "id", "properties": props(n)});
        assert!(Definition::from_json(&body(100)).is_ok());
        assert!(Definition::from_json(&body(101)).is_err());
    }

    #[test]
    fn name_length_edges() {
        let body = |name: &str, attr: &str| json!({"name": name, "userIdentifierProperty": "id", "properties": [{"path": "p", "name": attr, "type": "String"}]});
        assert!(Definition::from_json(&body(&"n".repeat(200), "a")).is_ok());
        assert!(Definition::from_json(&body(&"n".repeat(201), "a")).is_err());
        assert!(Definition::from_json(&body("n", &"a".repeat(128))).is_ok());
        assert!(Definition::from_json(&body("n", &"a".repeat(129))).is_err());
        assert!(Definition::from_json(&body("n", "")).is_err());
        let path = |p: &str| json!({"name": "n", "userIdentifierProperty": "id", "properties": [{"path": p, "name": "a", "type": "String"}]});
        assert!(Definition::from_json(&path(&"p".repeat(256))).is_ok());
        assert!(Definition::from_json(&path(&"p".repeat(257))).is_err());
    }

    #[test]
    fn types_never_change() {
        let d = Definition::from_json(&seed()).unwrap();
        let known = d.merge_types(&BTreeMap::new()).unwrap();
        let changed = d
            .patched(&json!({"properties": [{"path": "Type", "name": "Customer_Type", "type": "Number"}]}))
            .unwrap();
        let errs = changed.merge_types(&known).unwrap_err();
        assert!(errs[0].reason.contains("Customer_Type"));
        // Removed, then re-added with another type: still refused.
        let removed = d
            .patched(
                &json!({"properties": [{"path": "Status", "name": "Customer_Status", "type": "String"}]}),
            )
            .unwrap();
        let known2 = removed.merge_types(&known).unwrap();
        assert!(changed.merge_types(&known2).is_err());
    }

    #[test]
    fn timestamp_property_is_optional_patchable_and_never_reserved_or_clashing() {
        let mut body = seed();
        body["timestampProperty"] = json!("meta.sentAt");
        let d = Definition::from_json(&body).unwrap();
        assert_eq!(d.timestamp.as_ref().map(PropertyPath::as_str), Some("meta.sentAt"));
        assert_eq!(Definition::from_json(&seed()).unwrap().timestamp, None);
        assert_eq!(d.patched(&json!({"timestampProperty": null})).unwrap().timestamp, None);
        let changed = d.patched(&json!({"timestampProperty": "ts"})).unwrap();
        assert_eq!(changed.timestamp.unwrap().as_str(), "ts");
        for bad in [json!("$ts"), json!("Email"), json!("Type"), json!(5), json!("a..b")] {
            let mut body = seed();
            body["timestampProperty"] = bad.clone();
            let errs = Definition::from_json(&body).unwrap_err();
            assert_eq!(errs[0].path.as_deref(), Some("timestampProperty"), "{bad}");
        }
        let reserved = d.patched(&json!({"properties": [{"path": "$plan", "type": "String"}]})).unwrap_err();
        assert_eq!(reserved[0].path.as_deref(), Some("properties[0].path"));
    }

    #[test]
    fn paths_match_literal_dotted_keys_first_then_nested() {
        let p = PropertyPath::parse("properties.ID").unwrap();
        let item = json!({"properties.ID": "lit", "properties": {"ID": "nested"}});
        assert_eq!(p.resolve(item.as_object().unwrap()), Some(&json!("lit")));
        let item = json!({"properties": {"ID": "nested"}});
        assert_eq!(p.resolve(item.as_object().unwrap()), Some(&json!("nested")));
        let item = json!({"properties": "flat"});
        assert_eq!(p.resolve(item.as_object().unwrap()), None);
        assert!(PropertyPath::parse(".a").is_err());
        assert!(PropertyPath::parse("").is_err());
    }
}
