use lambda_http::{Error, Request, run, service_fn};
use shared::config::{self, AuthConfig, Tables};
use shared::store::dynamo::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let sdk = config::aws_sdk_config().await;
    let store = DynamoStore::new(config::dynamodb_client(&sdk), Tables::from_env());
    let app = segments::App::new(store, &AuthConfig::from_env());
    let app = &app;
    run(service_fn(move |req: Request| async move { Ok::<_, Error>(segments::handle(app, req).await) })).await
}
