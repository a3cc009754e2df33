//! Reads several handlers share, answered the same way everywhere.

use domain::{AccountId, IntegrationId};
use store::DynamoStore;
use store::integrations::IntegrationRecord;

use crate::http::ApiError;

/// The integration `raw_id` of `account`, or `404`: ids are UUIDs, so anything else cannot
/// exist and costs no read; another account's integration is never told apart from none.
pub async fn account_integration(
    store: &DynamoStore,
    account: &AccountId,
    raw_id: &str,
) -> Result<IntegrationRecord, ApiError> {
    let not_found = || ApiError::NotFound("integration not found".into());
    let id = IntegrationId::parse(raw_id).map_err(|_| not_found())?;
    store.get_integration(account, id.as_str()).await?.ok_or_else(not_found)
}
