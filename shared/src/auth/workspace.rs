//! MoEngage's credentials (`POST /v1/customer/{workspace_id}`): HTTP Basic
//! `base64(workspace_id ":" api_key)`. The workspace id is the account id and must equal the
//! path's; the API key is the secret of an enabled API client of that account that holds the
//! route's scope, found with one Query of the `byAccount` index and compared in constant time.
//! Every failure is the same 401.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use super::{ClientSecret, Principal, SecretHash};
use crate::domain::{AccountId, Scope, ScopeSet};
use crate::http::ApiError;
use crate::store::dynamo::DynamoStore;

/// A verified (workspace, API key) pair is trusted this long by a warm instance, so that a
/// busy account does not read the same index partition on every call. A disabled client or a
/// rotated secret therefore stops working here within this delay.
const VERIFIED_TTL: Duration = Duration::from_secs(10);
/// Entries before the cache is emptied (a bound on memory, not an eviction policy).
const CACHE_MAX: usize = 1024;

/// The `WWW-Authenticate` realm of every 401 of the route.
pub const REALM: &str = "moengage";

fn unauthorized() -> ApiError {
    ApiError::BadCredentials {
        realm: REALM,
        message: "authentication failed: send Basic base64(<workspace id>:<API key>) with the workspace id of the path",
    }
}

/// Checks MoEngage's Basic credentials, caching what it verified.
pub struct WorkspaceAuthenticator {
    store: DynamoStore,
    /// SHA-256 of (account, API key) → until when it is trusted, and whose key it is.
    verified: Mutex<HashMap<String, (Instant, Principal)>>,
}

impl WorkspaceAuthenticator {
    pub fn new(store: DynamoStore) -> Self {
        Self { store, verified: Mutex::default() }
    }

    /// The caller, if `authorization` names `workspace` and the secret of an enabled client of
    /// that account holding `required`. Every secret hash of the account is compared (constant
    /// time each), whatever matched.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        workspace: &str,
        required: Scope,
    ) -> Result<Principal, ApiError> {
        let (claimed, key) = parse_basic(authorization).ok_or_else(unauthorized)?;
        if claimed != workspace {
            return Err(unauthorized());
        }
        let account = AccountId::parse(&claimed).map_err(|_| unauthorized())?;
        let secret = ClientSecret::from_presented(&key).ok_or_else(unauthorized)?;
        let cache_key =
            SecretHash::of_str(&format!("{account}\n{}\n{required}", secret.expose())).to_base64();
        if let Some(p) = self.cached(&cache_key) {
            return Ok(p);
        }
        // The byAccount index (one Query): eventually consistent, so a client created a moment
        // ago may take about a second to be found.
        let clients = self.store.list_clients(&account).await?;
        let mut found = None;
        for c in &clients {
            let matches = c.secret_hash.verify(&secret);
            if matches & !c.disabled & c.scopes.contains(required) & (c.account == account) {
                found = Some(c.client_id.to_string());
            }
        }
        let client_id = found.ok_or_else(unauthorized)?;
        let principal = Principal { account, client_id, scopes: ScopeSet::from_iter([required]) };
        self.remember(cache_key, principal.clone());
        Ok(principal)
    }

    fn cached(&self, key: &str) -> Option<Principal> {
        let map = self.verified.lock().expect("not poisoned");
        map.get(key).filter(|(until, _)| *until > Instant::now()).map(|(_, p)| p.clone())
    }

    fn remember(&self, key: String, principal: Principal) {
        let mut map = self.verified.lock().expect("not poisoned");
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(key, (Instant::now() + VERIFIED_TTL, principal));
    }
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
