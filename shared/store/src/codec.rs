//! Item codec: DynamoDB attribute values to and from Rust values.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::StoreError;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!("attribute '{name}' missing or not a string"))),
    }
}

pub(crate) fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => {
            v.parse().map_err(|_| StoreError::Corrupt(format!("attribute '{name}' is not an integer")))
        }
        _ => Err(StoreError::Corrupt(format!("attribute '{name}' missing or not a number"))),
    }
}

pub(crate) fn opt_n(item: &Item, name: &str) -> Result<Option<i64>, StoreError> {
    if item.contains_key(name) { get_n(item, name).map(Some) } else { Ok(None) }
}

/// The key of the item `pk`/`sk` (every table's key attributes).
pub(crate) fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}
