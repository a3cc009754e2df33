//! Everything the Lambda functions of the ingestion API share.
//!
//! - [`domain`]: the rules (identifiers, scopes, secrets), free of AWS types;
//! - [`auth`]: OAuth2 token requests, JWT issue and verification, bearer checks;
//! - [`store`]: DynamoDB access behind narrow traits, and the table definitions;
//! - [`http`]: request parsing helpers and the one place errors become HTTP responses;
//! - [`config`]: what a function reads from its environment, once per cold start.

pub mod auth;
pub mod config;
pub mod domain;
pub mod http;
pub mod protect;
pub mod store;
pub mod telemetry;

/// Seconds since the Unix epoch; the one clock every rule uses.
pub fn now_epoch() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
