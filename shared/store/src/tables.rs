//! The physical table names and the DynamoDB client, as a function reads them from its
//! environment once per cold start.

use crate::schema::{self, TableDef};

/// The physical names of the tables, as deployed (CloudFormation generates them) or as set
/// locally by `.dev/env`. Each falls back to the table's default name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    pub config: String,
    pub keys: String,
    pub end_users: String,
    pub segments: String,
}

impl Tables {
    pub fn from_env() -> Self {
        Self {
            config: name_from_env(&schema::CONFIG),
            keys: name_from_env(&schema::KEYS),
            end_users: name_from_env(&schema::END_USERS),
            segments: name_from_env(&schema::SEGMENTS),
        }
    }

    /// Every table prefixed, so that tests sharing one local server never see each other.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            config: format!("{prefix}{}", schema::CONFIG.default_name),
            keys: format!("{prefix}{}", schema::KEYS.default_name),
            end_users: format!("{prefix}{}", schema::END_USERS.default_name),
            segments: format!("{prefix}{}", schema::SEGMENTS.default_name),
        }
    }

    /// Each table definition with its physical name.
    pub fn named(&self) -> Vec<(&'static TableDef, &str)> {
        vec![
            (&schema::CONFIG, self.config.as_str()),
            (&schema::KEYS, self.keys.as_str()),
            (&schema::END_USERS, self.end_users.as_str()),
            (&schema::SEGMENTS, self.segments.as_str()),
        ]
    }
}

fn name_from_env(def: &TableDef) -> String {
    std::env::var(def.env_var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| def.default_name.to_string())
}

/// A DynamoDB client with retries tuned for a 30 s API Gateway budget: the SDK's standard
/// retry mode (exponential backoff with jitter, throttling-aware) with a few more attempts.
/// Timeouts default to 3 s per attempt and 10 s per operation; `DYNAMODB_ATTEMPT_TIMEOUT_MS`
/// and `DYNAMODB_OPERATION_TIMEOUT_MS` raise them for the local emulator, which serves one
/// request at a time and so queues a 25,000-id call's requests for seconds.
pub fn dynamodb_client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    let millis = |var: &str, default: u64| {
        std::env::var(var).ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(default)
    };
    let conf = aws_sdk_dynamodb::config::Builder::from(sdk)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(5))
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(std::time::Duration::from_millis(millis(
                    "DYNAMODB_ATTEMPT_TIMEOUT_MS",
                    3_000,
                )))
                .operation_timeout(std::time::Duration::from_millis(millis(
                    "DYNAMODB_OPERATION_TIMEOUT_MS",
                    10_000,
                )))
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}
