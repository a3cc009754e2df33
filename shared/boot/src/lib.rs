//! The one start-up of every function, HTTP or event: telemetry, the AWS configuration, the
//! store and its tables, read once per cold start ([`start`]). What else a function needs
//! (the import bucket, token settings) it builds from [`Boot::sdk`].

pub mod telemetry;

use store::{DynamoStore, Tables};

/// What every function starts with.
pub struct Boot {
    /// The AWS configuration from the standard environment (region, credentials, and
    /// `AWS_ENDPOINT_URL_DYNAMODB` for the local server).
    pub sdk: aws_config::SdkConfig,
    pub store: DynamoStore,
}

/// Telemetry first, then the AWS configuration and the store, from the environment.
pub async fn start() -> Boot {
    telemetry::init();
    let sdk = aws_sdk_config().await;
    let store = DynamoStore::new(store::dynamodb_client(&sdk), Tables::from_env());
    Boot { sdk, store }
}

/// The SDK configuration from the standard AWS environment.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}
