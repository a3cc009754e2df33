//! The types of attribute names an integration once imported and no longer does, kept so that
//! a name keeps its type for good (`ATYPE#<integrationId>#<name>` items of the account).

use std::collections::BTreeMap;

use super::IntegrationRecord;
use super::codec::stored_type;
use crate::StoreError;
use crate::accounts::account_pk;
use crate::codec::{Item, get_s, s};
use crate::dynamo::DynamoStore;
use domain::integration::AttrType;

fn retired_sk(integration_id: &str, name: &str) -> String {
    format!("ATYPE#{integration_id}#{name}")
}

impl DynamoStore {
    /// The recorded types of those of `names` the integration once imported and no longer does
    /// (one strongly consistent `BatchGetItem` per 100 names).
    pub async fn retired_types(
        &self,
        rec: &IntegrationRecord,
        names: &[&str],
    ) -> Result<BTreeMap<String, AttrType>, StoreError> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let pk = account_pk(&rec.account);
        let keys: Vec<Item> = names
            .iter()
            .map(|name| {
                Item::from([("pk".into(), s(&pk)), ("sk".into(), s(retired_sk(&rec.integration_id, name)))])
            })
            .collect();
        let found =
            crate::batch::get_all(self.client(), &self.tables().config, keys, &["attrName", "attrType"], 4)
                .await?;
        let corrupt = |e: String| StoreError::Corrupt(format!("retired attribute item: {e}"));
        found
            .iter()
            .map(|item| {
                Ok((
                    get_s(item, "attrName")?.to_string(),
                    stored_type(get_s(item, "attrType")?).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    /// Records the types of names leaving the definition. Written before the change's
    /// transaction: if that fails, the names are still in the definition with these very
    /// types, so the records are true either way (puts of whole items: a retry rewrites them).
    pub async fn retire_names(
        &self,
        rec: &IntegrationRecord,
        retired: &BTreeMap<String, AttrType>,
    ) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        let pk = account_pk(&rec.account);
        let requests: Vec<WriteRequest> = retired
            .iter()
            .map(|(name, t)| {
                let item = Item::from([
                    ("pk".into(), s(&pk)),
                    ("sk".into(), s(retired_sk(&rec.integration_id, name))),
                    ("attrName".into(), s(name)),
                    ("attrType".into(), s(t.as_str())),
                ]);
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().expect("item is set"))
                    .build()
            })
            .collect();
        crate::batch::write_all(self.client(), &self.tables().config, requests, 4).await
    }
}
