//! An integration item's attributes, to and from [`IntegrationRecord`]. The stored JSON of
//! properties and types is pinned: items written since the first release must keep decoding.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::IntegrationRecord;
use crate::StoreError;
use crate::codec::{Item, get_n, get_s, n, s};
use domain::AccountId;
use domain::integration::{AttrType, Definition, Property, PropertyPath};

/// A property as stored in an integration item's `properties` JSON. The store's own type, not
/// the API's body, so that changing the API's JSON cannot change stored items: these field
/// names and the type names (`AttrType::as_str`) are what existing items hold.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct StoredProperty {
    path: String,
    name: String,
    #[serde(rename = "type")]
    attr_type: String,
}

impl StoredProperty {
    fn of(p: &Property) -> Self {
        Self {
            path: p.path.as_str().to_string(),
            name: p.name.clone(),
            attr_type: p.attr_type.as_str().into(),
        }
    }

    fn into_property(self) -> Result<Property, String> {
        Ok(Property {
            path: PropertyPath::parse(&self.path).map_err(|e| e.to_string())?,
            name: self.name,
            attr_type: stored_type(&self.attr_type)?,
        })
    }
}

pub(super) fn stored_type(name: &str) -> Result<AttrType, String> {
    AttrType::parse(name).ok_or_else(|| format!("unknown attribute type '{name}'"))
}

fn properties_json(properties: &[Property]) -> String {
    let stored: Vec<StoredProperty> = properties.iter().map(StoredProperty::of).collect();
    serde_json::to_string(&stored).expect("serializable")
}

fn properties_from_json(raw: &str) -> Result<Vec<Property>, String> {
    let stored: Vec<StoredProperty> = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    stored.into_iter().map(StoredProperty::into_property).collect()
}

/// `attributeTypes`: a JSON object of attribute name to type name (older items: retired names now have items of their own).
#[cfg(test)]
fn types_json(types: &BTreeMap<String, AttrType>) -> String {
    let stored: BTreeMap<&str, &str> = types.iter().map(|(name, t)| (name.as_str(), t.as_str())).collect();
    serde_json::to_string(&stored).expect("serializable")
}

fn types_from_json(raw: &str) -> Result<BTreeMap<String, AttrType>, String> {
    let stored: BTreeMap<String, String> = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    stored.into_iter().map(|(name, t)| Ok((name, stored_type(&t)?))).collect()
}

pub(super) fn definition_attrs(rec: &IntegrationRecord) -> Vec<(&'static str, AttributeValue)> {
    let props = properties_json(&rec.definition.properties);
    let mut attrs = vec![
        ("integrationId", s(&rec.integration_id)),
        ("accountId", s(rec.account.as_str())),
        ("name", s(&rec.definition.name)),
        ("userIdentifierProperty", s(rec.definition.user_identifier.as_str())),
        ("properties", s(props)),
        ("tokenHash", s(&rec.token_hash)),
        ("version", n(rec.version)),
        ("createdAt", n(rec.created_at)),
        ("updatedAt", n(rec.updated_at)),
    ];
    // Absent when none: items written before source times existed decode alike.
    if let Some(t) = &rec.definition.timestamp {
        attrs.push(("timestampProperty", s(t.as_str())));
    }
    attrs
}

pub(super) fn record_from_item(item: &Item) -> Result<IntegrationRecord, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("integration item: {e}"));
    let definition = Definition {
        name: get_s(item, "name")?.to_string(),
        user_identifier: PropertyPath::parse(get_s(item, "userIdentifierProperty")?)
            .map_err(|e| corrupt(e.to_string()))?,
        properties: properties_from_json(get_s(item, "properties")?).map_err(corrupt)?,
        timestamp: match item.get("timestampProperty") {
            Some(_) => Some(
                PropertyPath::parse(get_s(item, "timestampProperty")?).map_err(|e| corrupt(e.to_string()))?,
            ),
            None => None,
        },
    };
    // The definition's own types, and the registry an older item still holds (retired names now have items of their own).
    let mut attribute_types: BTreeMap<String, AttrType> = match item.get("attributeTypes") {
        Some(_) => types_from_json(get_s(item, "attributeTypes")?).map_err(corrupt)?,
        None => BTreeMap::new(),
    };
    attribute_types.extend(definition.properties.iter().map(|p| (p.name.clone(), p.attr_type)));
    Ok(IntegrationRecord {
        integration_id: get_s(item, "integrationId")?.to_string(),
        account: AccountId::parse(get_s(item, "accountId")?).map_err(|e| corrupt(e.to_string()))?,
        definition,
        attribute_types,
        token_hash: get_s(item, "tokenHash")?.to_string(),
        version: get_n(item, "version")?,
        created_at: get_n(item, "createdAt")?,
        updated_at: get_n(item, "updatedAt")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_json_of_properties_and_types_is_pinned() {
        // Items written since the first release hold exactly this JSON; it must keep decoding.
        let properties = vec![
            Property {
                path: PropertyPath::parse("Type").unwrap(),
                name: "Customer_Type".into(),
                attr_type: AttrType::String,
            },
            Property {
                path: PropertyPath::parse("a.b").unwrap(),
                name: "Score".into(),
                attr_type: AttrType::Number,
            },
        ];
        let stored = r#"[{"path":"Type","name":"Customer_Type","type":"String"},{"path":"a.b","name":"Score","type":"Number"}]"#;
        assert_eq!(properties_json(&properties), stored);
        assert_eq!(properties_from_json(stored).unwrap(), properties);

        let types =
            BTreeMap::from([("Score".to_string(), AttrType::Number), ("Day".to_string(), AttrType::Date)]);
        let stored = r#"{"Day":"Date","Score":"Number"}"#;
        assert_eq!(types_json(&types), stored);
        assert_eq!(types_from_json(stored).unwrap(), types);
        assert!(properties_from_json(r#"[{"path":"x","name":"x","type":"string"}]"#).is_err());
    }
}
