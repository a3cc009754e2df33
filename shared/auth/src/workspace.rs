//! MoEngage's credentials (`POST /v1/customer/{workspace_id}`): HTTP Basic
//! `base64(workspace_id ":" api_key)`. The workspace id is the account id and must equal the
//! path's; the API key is the secret of an enabled API client of that account whose scopes are
//! exactly the route's (`endUserUpdate:write`): a key kept on MoEngage's side can then do
//! nothing else, neither here nor at the token endpoint. The account's clients are found with
//! one Query of the `byAccount` index and every secret hash is compared in constant time.
//! Every failure is the same 401.
//!
//! What an instance read is reused: a verified (workspace, key) for [`VERIFIED_TTL`], an
//! account's client list for a failed attempt for [`FAILURE_REUSE`], so that a flood of
//! wrong keys costs at most one Query per account per second per instance and no write.

use std::time::Duration;

use base64::Engine;

use super::recent::Recent;
use super::{ClientSecret, Principal, SecretHash};
use domain::{AccountId, Scope, ScopeSet};
use store::{ClientRecord, DynamoStore, StoreError};

/// A verified (workspace, API key) pair is trusted this long by a warm instance, so that a
/// busy account does not read the same index partition on every call. A disabled client or a
/// rotated secret therefore stops working here within this delay.
const VERIFIED_TTL: Duration = Duration::from_secs(10);
/// A failed attempt is judged against the account's clients as read this recently.
const FAILURE_REUSE: Duration = Duration::from_secs(1);

/// The `WWW-Authenticate` realm of every 401 of the route.
pub const REALM: &str = "moengage";

/// Why MoEngage's credentials were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// Absent or wrong, whatever the cause: every such failure is the same `401`.
    #[error("{UNAUTHORIZED}")]
    Unauthorized,
    /// The account's clients could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What every refused caller reads.
pub const UNAUTHORIZED: &str =
    "authentication failed: send Basic base64(<workspace id>:<API key>) with the workspace id of the path";

fn unauthorized() -> WorkspaceError {
    WorkspaceError::Unauthorized
}

/// Checks MoEngage's Basic credentials, caching what it verified.
pub struct WorkspaceAuthenticator {
    store: DynamoStore,
    /// SHA-256 of (account, API key, scope) → whose key it is.
    verified: Recent<String, Principal>,
    /// The clients of an account, as last read.
    clients: Recent<AccountId, Vec<ClientRecord>>,
}

impl WorkspaceAuthenticator {
    pub fn new(store: DynamoStore) -> Self {
        Self { store, verified: Recent::default(), clients: Recent::default() }
    }

    /// The caller, if `authorization` names `workspace` and the secret of an enabled client of
    /// that account scoped to exactly `required`.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        workspace: &str,
        required: Scope,
    ) -> Result<Principal, WorkspaceError> {
        let (claimed, key) = parse_basic(authorization).ok_or_else(unauthorized)?;
        if claimed != workspace {
            return Err(unauthorized());
        }
        let account = AccountId::parse(&claimed).map_err(|_| unauthorized())?;
        let secret = ClientSecret::from_presented(&key).ok_or_else(unauthorized)?;
        let cache_key =
            SecretHash::of_str(&format!("{account}\n{}\n{required}", secret.expose())).to_base64();
        if let Some(p) = self.verified.get(&cache_key, VERIFIED_TTL) {
            return Ok(p);
        }
        let scopes = ScopeSet::from_iter([required]);
        if let Some(clients) = self.clients.get(&account, FAILURE_REUSE)
            && matching(&clients, &account, &secret, scopes).is_none()
        {
            return Err(unauthorized());
        }
        // The byAccount index (one Query): eventually consistent, so a client created a moment
        // ago may take about a second to be found.
        let clients = self.store.list_clients(&account).await?;
        let found = matching(&clients, &account, &secret, scopes);
        self.clients.put(account.clone(), clients);
        let client_id = found.ok_or_else(unauthorized)?;
        let principal = Principal { account, client_id, scopes };
        self.verified.put(cache_key, principal.clone());
        Ok(principal)
    }
}

/// The id of the enabled client of `account` whose secret is `secret` and whose scopes are
/// exactly `scopes`. Every hash is compared (constant time each), whatever matched.
fn matching(
    clients: &[ClientRecord],
    account: &AccountId,
    secret: &ClientSecret,
    scopes: ScopeSet,
) -> Option<String> {
    let mut found = None;
    for c in clients {
        let matches = secret.matches(&c.secret_hash);
        if matches & !c.disabled & (c.scopes == scopes) & (&c.account == account) {
            found = Some(c.client_id.to_string());
        }
    }
    found
}

/// `Basic base64(workspace_id ":" api_key)` → (workspace id, API key). `None` for any other
/// scheme, bad base64, non-UTF-8, or a missing `:`.
pub fn parse_basic(header: Option<&str>) -> Option<(String, String)> {
    let header = header?.trim();
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = rest.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (workspace, key) = text.split_once(':')?;
    Some((workspace.to_string(), key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        let enc = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert_eq!(parse_basic(Some(&enc("acme:k:ey"))), Some(("acme".into(), "k:ey".into())));
        assert_eq!(
            parse_basic(Some(&enc("acme:key").replace("Basic", "basic"))),
            Some(("acme".into(), "key".into()))
        );
        assert_eq!(parse_basic(Some(&enc("acme"))), None);
        assert_eq!(parse_basic(Some("Bearer abc")), None);
        assert_eq!(parse_basic(Some("Basic !!!")), None);
        assert_eq!(parse_basic(Some("Basic")), None);
        assert_eq!(parse_basic(None), None);
    }
}
