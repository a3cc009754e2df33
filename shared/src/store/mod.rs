//! Storage behind narrow traits; [`dynamo::DynamoStore`] implements them on DynamoDB.

pub mod batch;
pub mod dynamo;
pub mod end_users;
pub mod integrations;
pub mod protections;
pub mod schema;
pub mod segments;

use std::future::Future;

use jsonwebtoken::jwk::Jwk;

use crate::auth::SecretHash;
use crate::domain::user_data::UserId;
use crate::domain::{AccountId, ClientId, ScopeSet};
use end_users::{StoredAttributes, UserWrite};
use integrations::{IntegrationRecord, IntegrationWriteError};

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

/// What the token endpoint needs: one read per request, one write per failure.
pub trait ClientStore: Send + Sync {
    fn client_with_failures(
        &self,
        id: &ClientId,
    ) -> impl Future<Output = Result<ClientLookup, StoreError>> + Send;

    fn record_failure(
        &self,
        id: &ClientId,
        now: i64,
        window_secs: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The published (public) keys, as a verifier or the JWKS document needs them.
pub trait PublicKeyStore: Send + Sync {
    fn public_keys(&self, now: i64) -> impl Future<Output = Result<Vec<Jwk>, StoreError>> + Send;
}

/// A private key as stored.
#[derive(Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub private_pem: String,
    pub created_at: i64,
}

/// The private keys; only the token function's role may read them.
pub trait SigningKeyStore: Send + Sync {
    fn current_signing_key(
        &self,
    ) -> impl Future<Output = Result<Option<StoredSigningKey>, StoreError>> + Send;
}

/// Integrations and their token lookup (config table).
pub trait IntegrationStore: Send + Sync {
    /// Creates it, consuming attribute headroom of the account atomically.
    fn create_integration(
        &self,
        rec: &IntegrationRecord,
    ) -> impl Future<Output = Result<(), IntegrationWriteError>> + Send;
    /// Replaces `old` by `new` if nobody changed it meanwhile.
    fn update_integration(
        &self,
        old: &IntegrationRecord,
        new: &IntegrationRecord,
    ) -> impl Future<Output = Result<(), IntegrationWriteError>> + Send;
    fn delete_integration(
        &self,
        rec: &IntegrationRecord,
    ) -> impl Future<Output = Result<(), IntegrationWriteError>> + Send;
    fn get_integration(
        &self,
        account: &AccountId,
        id: &str,
    ) -> impl Future<Output = Result<Option<IntegrationRecord>, StoreError>> + Send;
    /// One strongly consistent read by the token's hash.
    fn integration_by_token(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<IntegrationRecord>, StoreError>> + Send;
    fn list_integrations(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<Vec<IntegrationRecord>, StoreError>> + Send;
}

/// End-user attributes (end-users table).
pub trait EndUserStore: Send + Sync {
    /// Sets the given attributes of one user, keeping the others; with `only_existing`,
    /// writes nothing (false) unless the user has attributes of this integration.
    fn merge_user(
        &self,
        account: &AccountId,
        integration_id: &str,
        user: &UserWrite<'_>,
        only_existing: bool,
        now: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Makes each user's attributes of this integration exactly those given; returns the
    /// users skipped under `only_existing`.
    fn replace_users(
        &self,
        account: &AccountId,
        integration_id: &str,
        users: &[UserWrite<'_>],
        only_existing: bool,
        now: &str,
    ) -> impl Future<Output = Result<Vec<UserId>, StoreError>> + Send;
    fn read_user(
        &self,
        account: &AccountId,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredAttributes>, StoreError>> + Send;
    /// Erases every item of the user; returns how many there were.
    fn delete_user(
        &self,
        account: &AccountId,
        user_id: &str,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}
