//! Signing keys: the public halves in the config table (`JWKS`/`KEY#<kid>`, published, kept
//! until `retireAt`), the private halves in the keys table (`SIGNING`/`KEY#<kid>`), which only
//! the token function's role may read.

use jsonwebtoken::jwk::Jwk;

use super::StoreError;
use super::codec::{get_n, get_s, n, opt_n, s};
use super::dynamo::{DynamoStore, sdk_error};

const JWKS_PK: &str = "JWKS";
const SIGNING_PK: &str = "SIGNING";

/// A private key as stored.
#[derive(Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub private_pem: String,
    pub created_at: i64,
}

impl DynamoStore {
    /// Generates a new signing key and makes it the current one. The public halves of the
    /// previous keys stay published for `retire_after_secs` (at least the token lifetime), so
    /// tokens they signed keep verifying; their private halves are deleted at once.
    pub async fn rotate_signing_key(
        &self,
        now: i64,
        retire_after_secs: i64,
    ) -> Result<crate::auth::GeneratedKey, StoreError> {
        let key = crate::auth::keys::generate().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let jwk_json =
            serde_json::to_string(&key.public_jwk).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let previous_public = self.query_all(&self.tables().config, JWKS_PK).await?;
        let previous_private = self.query_all(&self.tables().keys, SIGNING_PK).await?;
        // Public first: a verifier must be able to find the key before any token carries it.
        self.client()
            .put_item()
            .table_name(&self.tables().config)
            .item("pk", s(JWKS_PK))
            .item("sk", s(format!("KEY#{}", key.kid)))
            .item("kid", s(&key.kid))
            .item("jwk", s(jwk_json))
            .item("createdAt", n(now))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        self.client()
            .put_item()
            .table_name(&self.tables().keys)
            .item("pk", s(SIGNING_PK))
            .item("sk", s(format!("KEY#{}", key.kid)))
            .item("kid", s(&key.kid))
            .item("privateKeyPem", s(&key.private_pem))
            .item("createdAt", n(now))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        for item in previous_public {
            let retire_at = opt_n(&item, "retireAt")?;
            if retire_at.is_some_and(|t| t <= now) {
                self.delete(&self.tables().config, &item).await?;
            } else if retire_at.is_none() {
                self.client()
                    .update_item()
                    .table_name(&self.tables().config)
                    .key("pk", item["pk"].clone())
                    .key("sk", item["sk"].clone())
                    .update_expression("SET retireAt = :r")
                    .expression_attribute_values(":r", n(now + retire_after_secs))
                    .send()
                    .await
                    .map_err(|e| sdk_error("UpdateItem", e))?;
            }
        }
        for item in previous_private {
            self.delete(&self.tables().keys, &item).await?;
        }
        Ok(key)
    }

    /// The published (public) keys, as a verifier or the JWKS document needs them.
    pub async fn public_keys(&self, now: i64) -> Result<Vec<Jwk>, StoreError> {
        let items = self.query_all(&self.tables().config, JWKS_PK).await?;
        let mut keys = Vec::with_capacity(items.len());
        for item in items {
            if opt_n(&item, "retireAt")?.is_some_and(|t| t <= now) {
                continue;
            }
            let jwk: Jwk = serde_json::from_str(get_s(&item, "jwk")?)
                .map_err(|e| StoreError::Corrupt(format!("jwk: {e}")))?;
            keys.push(jwk);
        }
        Ok(keys)
    }

    /// The newest private key; only the token function's role may read the keys table.
    pub async fn current_signing_key(&self) -> Result<Option<StoredSigningKey>, StoreError> {
        let items = self.query_all(&self.tables().keys, SIGNING_PK).await?;
        let mut best: Option<StoredSigningKey> = None;
        for item in items {
            let key = StoredSigningKey {
                kid: get_s(&item, "kid")?.to_string(),
                private_pem: get_s(&item, "privateKeyPem")?.to_string(),
                created_at: get_n(&item, "createdAt")?,
            };
            if best.as_ref().is_none_or(|b| key.created_at >= b.created_at) {
                best = Some(key);
            }
        }
        Ok(best)
    }
}
