//! The account's integration definitions kept per warm instance, re-read once they are
//! [`DEFINITION_STALENESS`] old: the same contract as the user-data function's token cache
//! (docs/DECISIONS.md, "Integration definitions cached per instance, ≤ 1 s stale; edits wait
//! it out"), so every integration edit is seen by calls sent after its answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{DEFINITION_STALENESS, IntegrationRecord};
use crate::StoreError;
use crate::dynamo::DynamoStore;
use domain::AccountId;

/// Accounts an instance remembers before it forgets them all (a bound on memory).
const ACCOUNTS_MAX: usize = 1024;

/// An account's integrations and when their read was sent.
type Entry = (Arc<Vec<IntegrationRecord>>, Instant);

#[derive(Default)]
pub struct DefinitionsCache {
    entries: Mutex<HashMap<AccountId, Entry>>,
}

impl DefinitionsCache {
    /// Every integration of the account, as of at most [`DEFINITION_STALENESS`] ago (the age
    /// counts from the moment the read was sent).
    pub async fn get(
        &self,
        store: &DynamoStore,
        account: &AccountId,
    ) -> Result<Arc<Vec<IntegrationRecord>>, StoreError> {
        if let Some((list, at)) = self.entries.lock().expect("not poisoned").get(account)
            && at.elapsed() < DEFINITION_STALENESS
        {
            return Ok(list.clone());
        }
        self.refresh(store, account).await
    }

    /// Reads the account's integrations afresh and keeps them (for a caller that met a name
    /// its cached copy does not know: the MoEngage integration grows without waiting).
    pub async fn refresh(
        &self,
        store: &DynamoStore,
        account: &AccountId,
    ) -> Result<Arc<Vec<IntegrationRecord>>, StoreError> {
        let asked = Instant::now();
        let list = Arc::new(store.list_integrations(account).await?);
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= ACCOUNTS_MAX {
            entries.clear();
        }
        entries.insert(account.clone(), (list.clone(), asked));
        Ok(list)
    }
}
