//! This function's policy for integration definitions: a warm instance judges a call by a
//! definition at most [`DEFINITION_STALENESS`] old (the store's contract with every writer of
//! integrations, docs/DECISIONS.md), so it keeps what it read for that long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use store::DynamoStore;
use store::StoreError;
use store::integrations::{DEFINITION_STALENESS, IntegrationRecord};

/// Tokens an instance remembers before it forgets them all (a bound on memory).
const TOKEN_CACHE_MAX: usize = 4096;

/// Per warm instance: integrations by token hash, each re-read once it is
/// [`DEFINITION_STALENESS`] old. An entry's age counts from the moment its read was sent, so it
/// reflects every write committed before that moment. Unknown tokens are not remembered.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Arc<IntegrationRecord>, Instant)>>,
}

impl TokenCache {
    /// The integration `token_hash` belongs to, as of at most [`DEFINITION_STALENESS`] ago.
    pub async fn get(
        &self,
        store: &DynamoStore,
        token_hash: &str,
    ) -> Result<Option<Arc<IntegrationRecord>>, StoreError> {
        if let Some((rec, at)) = self.entries.lock().expect("not poisoned").get(token_hash)
            && at.elapsed() < DEFINITION_STALENESS
        {
            return Ok(Some(rec.clone()));
        }
        let asked = Instant::now();
        let found = store.integration_by_token(token_hash).await?.map(Arc::new);
        let mut entries = self.entries.lock().expect("not poisoned");
        match &found {
            Some(rec) => {
                if entries.len() >= TOKEN_CACHE_MAX {
                    entries.clear();
                }
                entries.insert(token_hash.to_string(), (rec.clone(), asked));
            }
            None => {
                entries.remove(token_hash);
            }
        }
        Ok(found)
    }
}
