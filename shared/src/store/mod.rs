//! Storage on DynamoDB: [`dynamo::DynamoStore`] and its methods, one file per kind of item.
//! There are no store traits (docs/DECISIONS.md, "Store").

pub mod batch;
pub mod dynamo;
pub mod end_users;
pub mod integrations;
pub mod protections;
pub mod schema;
pub mod segments;

use crate::domain::{AccountId, ClientId, ScopeSet, SecretHash};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled past retries, timed out, or the service answered 5xx: nothing is known to
    /// have been applied by the failing request.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored item does not have the shape this code writes.
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not found: {0}")]
    NotFound(String),
}

#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client_id: ClientId,
    pub account: AccountId,
    pub name: String,
    pub secret_hash: SecretHash,
    pub scopes: ScopeSet,
    pub disabled: bool,
    pub created_at: i64,
}

/// Failed authentications of one client id in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureWindow {
    pub count: u32,
    pub window_start: i64,
}

#[derive(Debug, Default)]
pub struct ClientLookup {
    pub client: Option<ClientRecord>,
    pub failures: Option<FailureWindow>,
}

/// A private key as stored.
#[derive(Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub private_pem: String,
    pub created_at: i64,
}
