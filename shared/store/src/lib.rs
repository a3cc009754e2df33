//! Storage on DynamoDB: [`dynamo::DynamoStore`] and its methods, one file per kind of item,
//! and every record type those items hold (the protections' included). Nothing here knows
//! HTTP, tokens or S3. There are no store traits (docs/DECISIONS.md, "Store").

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
pub mod rule_segments;
pub mod schema;
pub mod secret_hash;
pub mod segments;
pub mod signing_keys;
pub mod suppression;
pub mod tables;
pub(crate) mod transact;

pub use clients::ClientRecord;
pub use dynamo::DynamoStore;
pub use secret_hash::SecretHash;
pub use signing_keys::{ClientRevocation, StoredSigningKey};
pub use tables::{Tables, dynamodb_client};

use aws_sdk_dynamodb::error::DisplayErrorContext;

/// What a failed request to the store left behind: the error it met, kept whole.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled past retries, timed out, or the service answered 5xx: nothing is known to
    /// have been applied by the failing request.
    #[error("storage unavailable: {op}: {}", DisplayErrorContext(&**source))]
    Unavailable {
        op: &'static str,
        #[source]
        source: Cause,
    },
    /// A bounded retry gave up: items stayed unprocessed, or concurrent writers kept winning.
    /// Nothing more than what a retry of the same request completes was applied.
    #[error("storage busy: {op}: {reason}")]
    Busy { op: &'static str, reason: &'static str },
    /// DynamoDB refused the request as it is (a missing table, a key past its size): our bug
    /// or our deployment's, which a retry does not heal.
    #[error("storage refused {op}: {}", DisplayErrorContext(&**source))]
    Refused {
        op: &'static str,
        #[source]
        source: Cause,
    },
    /// A stored item does not have the shape this code writes.
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not found: {0}")]
    NotFound(String),
}

impl StoreError {
    /// The store could not answer now; the same request may succeed later (`503`).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Busy { .. })
    }

    /// `op` failed with `source`, a failure a retry may heal.
    pub fn unavailable(op: &'static str, source: impl Into<Cause>) -> Self {
        Self::Unavailable { op, source: source.into() }
    }
}
