use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::config::{self, Tables};
use shared::store::dynamo::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let sdk = config::aws_sdk_config().await;
    let store = DynamoStore::new(config::dynamodb_client(&sdk), Tables::from_env());
    let store = &store;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        segment_purge::handle(store, &event.payload).await.map_err(Error::from)
    }))
    .await
}
