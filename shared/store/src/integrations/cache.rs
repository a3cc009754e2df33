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

/// An account's integrations, when their read (or the last check) was sent, and the
/// definitions stamp read before them.
type Entry = (Arc<Vec<IntegrationRecord>>, Instant, i64);

#[derive(Default)]
pub struct DefinitionsCache {
    entries: Mutex<HashMap<AccountId, Entry>>,
}

impl DefinitionsCache {
    /// Every integration of the account, as of at most [`DEFINITION_STALENESS`] ago (the age
    /// counts from the moment the read was sent). Past that, the account's definitions stamp
    /// is read (1 RCU) and the definitions only when it moved: 41 definitions of 24 properties
    /// cost 15 RCU to read, and every warm instance checks once a second.
    pub async fn get(
        &self,
        store: &DynamoStore,
        account: &AccountId,
    ) -> Result<Arc<Vec<IntegrationRecord>>, StoreError> {
        let known = self.entries.lock().expect("not poisoned").get(account).cloned();
        let Some((list, at, stamp)) = known else { return self.refresh(store, account).await };
        if at.elapsed() < DEFINITION_STALENESS {
            return Ok(list);
        }
        let asked = Instant::now();
        let now = store.definitions_stamp(account).await?;
        if now != stamp {
            return self.read(store, account, asked, now).await;
        }
        self.keep(account, (list.clone(), asked, stamp));
        Ok(list)
    }

    /// Reads the account's integrations afresh and keeps them (for a caller that met a name
    /// its cached copy does not know: the MoEngage integration grows without waiting).
    pub async fn refresh(
        &self,
        store: &DynamoStore,
        account: &AccountId,
    ) -> Result<Arc<Vec<IntegrationRecord>>, StoreError> {
        let asked = Instant::now();
        let stamp = store.definitions_stamp(account).await?;
        self.read(store, account, asked, stamp).await
    }

    /// Reads the definitions that `stamp` (read before them, at `asked`) stands for: a write
    /// between the two reads shows as a change at the next check, never as a missed one.
    async fn read(
        &self,
        store: &DynamoStore,
        account: &AccountId,
        asked: Instant,
        stamp: i64,
    ) -> Result<Arc<Vec<IntegrationRecord>>, StoreError> {
        let list = Arc::new(store.list_integrations(account).await?);
        self.keep(account, (list.clone(), asked, stamp));
        Ok(list)
    }

    fn keep(&self, account: &AccountId, entry: Entry) {
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= ACCOUNTS_MAX && !entries.contains_key(account) {
            entries.clear();
        }
        entries.insert(account.clone(), entry);
    }
}
