//! Everything the Lambda functions of the ingestion API share.
//!
//! - [`domain`]: the rules (identifiers, values, problems): the `domain` crate, re-exported;
//! - [`api`]: the response bodies of every route, named after their OpenAPI schemas;
//! - [`auth`]: OAuth2 token requests, JWT issue and verification, bearer checks;
//! - [`store`]: DynamoDB access (one concrete `DynamoStore`), and the table definitions;
//! - [`front`]: the one runner of every HTTP function: routes, authentication, protections;
//! - [`http`]: request parsing helpers and the one place errors become HTTP responses;
//! - [`config`]: what a function reads from its environment, once per cold start.

pub mod api;
pub mod auth;
pub mod config;
pub mod front;
pub use domain;
pub mod http;
pub mod imports;
pub mod protect;
pub mod store;
pub mod telemetry;
