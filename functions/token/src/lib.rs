//! The token function: `POST /accounts/connect/token`, `GET /.well-known/jwks.json` and
//! `GET /.well-known/openid-configuration`.

use std::time::{Duration, Instant};

use lambda_http::Request;
use tokio::sync::RwLock;

use auth::AuthConfig;
use auth::recent::Recent;
use auth::token_request;
use auth::token_request::TokenRequest;
use auth::token_service::{self, ClientReads, IssuedToken, TokenSettings};
use auth::{IssuerPolicy, OAuthError, OAuthErrorKind, SigningKey};
use domain::{ClientId, Scope, Timestamp};
use edge::api;
use edge::front::{Call, Dialect, Env, Route, Service};
use edge::http::request::header;
use edge::http::{ApiError, Reply, RequestInfo};
use store::dynamo::DynamoStore;

/// A key that became active is picked up within this long; tokens signed meanwhile by the
/// previous key stay valid because its public half stays published for their whole lifetime
/// (a revoked key's tokens do not: `admin keys revoke` rotates first).
const SIGNING_KEY_MAX_AGE: Duration = Duration::from_secs(30);
/// The JWKS document is public and unauthenticated: one read per instance per this long,
/// however many requests ask for it.
const JWKS_MAX_AGE: Duration = Duration::from_secs(auth::keys::JWKS_INSTANCE_CACHE_SECS);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Token,
    Jwks,
    OpenIdConfiguration,
}

pub struct App {
    store: DynamoStore,
    auth: AuthConfig,
    issuer: IssuerPolicy,
    clients: ClientReads,
    jwks: Recent<(), Vec<auth::Jwk>>,
    signing_key: RwLock<Option<(Instant, SigningKey)>>,
}

impl App {
    pub fn new(env: &Env) -> Self {
        Self {
            store: env.store.clone(),
            issuer: IssuerPolicy::from_config(env.auth.issuer.as_deref()),
            auth: env.auth.clone(),
            clients: ClientReads::default(),
            jwks: Recent::default(),
            signing_key: RwLock::new(None),
        }
    }

    async fn signing_key(&self) -> Result<SigningKey, OAuthError> {
        if let Some((at, key)) = &*self.signing_key.read().await
            && at.elapsed() < SIGNING_KEY_MAX_AGE
        {
            return Ok(key.clone());
        }
        let unavailable = || {
            OAuthError::new(
                OAuthErrorKind::TemporarilyUnavailable,
                "the token service is not ready; retry later",
            )
        };
        let stored = self.store.current_signing_key(Timestamp::now().epoch_secs()).await.map_err(|e| {
            tracing::error!(error = %e, "could not read the signing key");
            unavailable()
        })?;
        let Some(stored) = stored else {
            tracing::error!("no signing key: run `admin keys rotate`");
            return Err(unavailable());
        };
        let key = SigningKey::from_pem(&stored.kid, &stored.private_pem).map_err(|e| {
            tracing::error!(error = %e, "the stored signing key is unusable");
            unavailable()
        })?;
        *self.signing_key.write().await = Some((Instant::now(), key.clone()));
        Ok(key)
    }
}

impl App {
    /// Authenticates the client of `parsed` and signs its token: the grant of the token
    /// route, also used by the console's sign-in (docs/DECISIONS.md, "Console").
    pub async fn issue(&self, info: &RequestInfo, parsed: &TokenRequest) -> Result<IssuedToken, OAuthError> {
        let issuer = self.issuer.resolve(info.domain.as_deref()).ok_or_else(|| {
            tracing::error!("TOKEN_ISSUER is unset and the request carries no domain");
            OAuthError::new(OAuthErrorKind::TemporarilyUnavailable, "the token service is misconfigured")
        })?;
        let settings = TokenSettings {
            issuer,
            audience: self.auth.audience.clone(),
            ttl_secs: self.auth.token_ttl_secs,
        };
        let key = self.signing_key().await?;
        let issued = token_service::issue_token(
            &self.store,
            &self.clients,
            &key,
            &settings,
            parsed,
            Timestamp::now().epoch_secs(),
        )
        .await;
        // Only an id of the form we issue is logged: a caller that swaps its id and secret
        // would otherwise log its secret.
        let client_id = if ClientId::is_issued_form(&parsed.client_id) {
            parsed.client_id.as_str()
        } else {
            "(malformed)"
        };
        if let Err(e) = &issued {
            tracing::info!(request_id = %info.request_id, client_id, error = e.kind.code(), "token refused");
        } else {
            tracing::info!(request_id = %info.request_id, client_id, "token issued");
        }
        issued
    }
}

impl Service for App {
    type Op = Op;
    const ROUTES: &'static [Route<Op>] = &[
        Route::public("POST", "/accounts/connect/token", Op::Token, Dialect::OAuth),
        Route::public("GET", "/.well-known/jwks.json", Op::Jwks, Dialect::Rest),
        Route::public("GET", "/.well-known/openid-configuration", Op::OpenIdConfiguration, Dialect::Rest),
    ];

    async fn handle(&self, op: Op, call: Call<'_>) -> Result<Reply, ApiError> {
        match op {
            Op::Token => token(self, call.info, call.req).await.map_err(ApiError::OAuth),
            Op::Jwks => jwks(self).await,
            Op::OpenIdConfiguration => Ok(openid_configuration(self, call.info)),
        }
    }
}

async fn token(app: &App, info: &RequestInfo, req: &Request) -> Result<Reply, OAuthError> {
    let parsed =
        token_request::parse(header(req, "authorization"), header(req, "content-type"), req.body().as_ref())?;
    let issued = app.issue(info, &parsed).await?;
    // RFC 6749 §5.1: token responses must not be cached (errors get the same headers from
    // the OAuth dialect).
    Ok(Reply::json(
        200,
        &api::TokenResponse {
            access_token: &issued.access_token,
            expires_in: issued.expires_in,
            token_type: "Bearer",
            scope: issued.scope.to_string(),
        },
    )
    .header("cache-control", "no-store")
    .header("pragma", "no-cache"))
}

async fn jwks(app: &App) -> Result<Reply, ApiError> {
    let keys = match app.jwks.get(&(), JWKS_MAX_AGE) {
        Some(keys) => keys,
        None => {
            let keys = app.store.public_keys(Timestamp::now().epoch_secs()).await?;
            app.jwks.put((), keys.clone());
            keys
        }
    };
    Ok(Reply::json(200, &api::Jwks { keys }).header("cache-control", &jwks_cache_control()))
}

/// The JWKS document's caching, which a new key's activation lead outlasts.
fn jwks_cache_control() -> String {
    format!("public, max-age={}", auth::keys::JWKS_HTTP_MAX_AGE_SECS)
}

fn openid_configuration(app: &App, info: &RequestInfo) -> Reply {
    let issuer = app.issuer.resolve(info.domain.as_deref()).unwrap_or_default();
    let doc = api::OpenIdConfiguration {
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        token_endpoint: format!("{issuer}/accounts/connect/token"),
        issuer,
        grant_types_supported: ["client_credentials"],
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        scopes_supported: Scope::ALL.iter().map(|s| s.as_str()).collect(),
        response_types_supported: ["token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
        access_token_signing_alg_values_supported: ["RS256"],
    };
    Reply::json(200, &doc).header("cache-control", "public, max-age=300")
}
