//! Storage on DynamoDB: [`dynamo::DynamoStore`] and its methods, one file per kind of item.
//! There are no store traits (docs/DECISIONS.md, "Store").

pub mod accounts;
pub mod batch;
pub mod clients;
pub(crate) mod codec;
pub mod concurrent;
pub mod dynamo;
pub mod end_users;
pub mod imports;
pub mod integrations;
pub mod protections;
pub mod schema;
pub mod segments;
pub mod signing_keys;

pub use clients::ClientRecord;
pub use signing_keys::StoredSigningKey;

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
