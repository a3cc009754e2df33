//! The store's DynamoDB client and table names ([`DynamoStore`]), how its SDK errors map to
//! [`StoreError`], table creation from `schema.rs`, and the queries every item kind uses.
//! Each kind of item has its own file: `accounts.rs`, `clients.rs`, `signing_keys.rs`,
//! `integrations.rs`, `end_users.rs`, `segments/`, `protections.rs` (layouts in
//! `docs/TABLES.md`).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use super::StoreError;
use super::codec::{Item, key, s};
use super::schema::TableDef;
use crate::tables::Tables;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
}

/// Maps any SDK failure that callers do not handle themselves. The cause is logged where the
/// error is turned into a response, never sent to the caller.
pub(crate) fn sdk_error<E, R>(op: &'static str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
    match code {
        // Neither heals by retrying: a missing table, or a request DynamoDB refuses as it is
        // (a key past its size, say), which is our bug and must not tell the caller to retry.
        "ResourceNotFoundException" | "ValidationException" => StoreError::Refused { op, source: e.into() },
        _ => StoreError::unavailable(op, e),
    }
}

pub(crate) fn is_conditional_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates every table that does not exist yet and waits until each is active.
    pub async fn create_tables(&self) -> Result<Vec<String>, StoreError> {
        let mut created = Vec::new();
        for (def, name) in self.tables.named() {
            if self.create_table(def, name).await? {
                created.push(name.to_string());
            }
        }
        Ok(created)
    }

    async fn create_table(&self, def: &TableDef, name: &str) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(def.hash_key, def.range_key)));
        for a in def.key_attributes() {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("name and type are set"),
            );
        }
        for ix in def.indexes {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(ix.name)
                    .set_key_schema(Some(key_schema(ix.hash_key, ix.range_key)))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .expect("index is complete"),
            );
        }
        let created = match req.send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("ResourceInUseException") => false,
            Err(e) => return Err(sdk_error("CreateTable", e)),
        };
        self.wait_active(name).await?;
        if created && let Some(ttl) = def.ttl_attribute {
            self.client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(ttl)
                        .enabled(true)
                        .build()
                        .expect("ttl spec is complete"),
                )
                .send()
                .await
                .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
        }
        Ok(created)
    }

    async fn wait_active(&self, name: &str) -> Result<(), StoreError> {
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTable", e))?;
            let active = out.table().and_then(|t| t.table_status()).map(|s| s.as_str() == "ACTIVE");
            if active == Some(true) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        Err(StoreError::Busy { op: "CreateTable", reason: "the table did not become active in 60 s" })
    }

    /// Whether the item `pk`/`sk` exists: one strongly consistent GetItem that reads its key only.
    pub(crate) async fn exists(&self, table: &str, pk: String, sk: String) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key(pk, sk)))
            .projection_expression("pk")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item.is_some())
    }

    /// Every item of one partition, strongly consistent, all pages.
    pub(crate) async fn query_all(&self, table: &str, pk: &str) -> Result<Vec<Item>, StoreError> {
        self.query_prefix(table, pk, "").await
    }

    /// Every item of one partition whose sort key starts with `sk_prefix`, strongly
    /// consistent, all pages.
    pub(crate) async fn query_prefix(
        &self,
        table: &str,
        pk: &str,
        sk_prefix: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut query = self.client.query().table_name(table).expression_attribute_values(":p", s(pk));
            query = if sk_prefix.is_empty() {
                query.key_condition_expression("pk = :p")
            } else {
                query
                    .key_condition_expression("pk = :p AND begins_with(sk, :s)")
                    .expression_attribute_values(":s", s(sk_prefix))
            };
            let page = query
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    pub(crate) async fn delete(&self, table: &str, item: &Item) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(table)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }
}

fn key_schema(hash: &str, range: Option<&str>) -> Vec<KeySchemaElement> {
    let mut v = vec![
        KeySchemaElement::builder().attribute_name(hash).key_type(KeyType::Hash).build().expect("complete"),
    ];
    if let Some(r) = range {
        v.push(
            KeySchemaElement::builder().attribute_name(r).key_type(KeyType::Range).build().expect("complete"),
        );
    }
    v
}
