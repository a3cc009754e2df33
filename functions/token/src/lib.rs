//! The token function: `POST /accounts/connect/token`, `GET /.well-known/jwks.json` and
//! `GET /.well-known/openid-configuration`.

use std::time::{Duration, Instant};

use lambda_http::{Body, Request, Response};
use serde::Serialize;
use tokio::sync::RwLock;
use tracing::Instrument;

use shared::auth::token_request;
use shared::auth::token_service::{self, FailurePolicy, TokenSettings};
use shared::auth::{IssuerPolicy, OAuthError, OAuthErrorKind, SigningKey};
use shared::config::AuthConfig;
use shared::domain::Scope;
use shared::http::request::header;
use shared::http::{ApiError, RequestInfo, json_response};
use shared::store::dynamo::DynamoStore;

/// A rotated key is picked up within this long; tokens signed meanwhile by the previous key
/// stay valid because its public half stays published for their whole lifetime.
const SIGNING_KEY_MAX_AGE: Duration = Duration::from_secs(300);

pub struct App {
    store: DynamoStore,
    auth: AuthConfig,
    issuer: IssuerPolicy,
    failures: FailurePolicy,
    signing_key: RwLock<Option<(Instant, SigningKey)>>,
}

impl App {
    pub fn new(store: DynamoStore, auth: AuthConfig) -> Self {
        let issuer = IssuerPolicy::from_config(auth.issuer.as_deref());
        Self { store, auth, issuer, failures: FailurePolicy::default(), signing_key: RwLock::new(None) }
    }

    pub fn with_failure_policy(mut self, failures: FailurePolicy) -> Self {
        self.failures = failures;
        self
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
        let stored = self.store.current_signing_key().await.map_err(|e| {
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

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    expires_in: i64,
    token_type: &'static str,
    scope: String,
}

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let info = RequestInfo::from_request(&req);
    let span = info.span();
    serve(app, info, req).instrument(span).await
}

async fn serve(app: &App, info: RequestInfo, req: Request) -> Response<Body> {
    let result = match (info.method.as_str(), info.route().as_slice()) {
        ("POST", ["accounts", "connect", "token"]) => return token(app, &info, &req).await,
        ("GET", [".well-known", "jwks.json"]) => jwks(app).await,
        ("GET", [".well-known", "openid-configuration"]) => Ok(openid_configuration(app, &info)),
        (m, ["accounts", "connect", "token"]) => {
            Err(ApiError::MethodNotAllowed { method: m.into(), allow: "POST" })
        }
        (m, [".well-known", "jwks.json" | "openid-configuration"]) => {
            Err(ApiError::MethodNotAllowed { method: m.into(), allow: "GET" })
        }
        (m, _) => Err(ApiError::RouteNotFound { method: m.into(), path: info.segments.join("/") }),
    };
    result.unwrap_or_else(|e| e.into_response(&info.request_id))
}

async fn token(app: &App, info: &RequestInfo, req: &Request) -> Response<Body> {
    let outcome = async {
        let parsed = token_request::parse(
            header(req, "authorization"),
            header(req, "content-type"),
            req.body().as_ref(),
        )?;
        let issuer = app.issuer.resolve(info.domain.as_deref()).ok_or_else(|| {
            tracing::error!("TOKEN_ISSUER is unset and the request carries no domain");
            OAuthError::new(OAuthErrorKind::TemporarilyUnavailable, "the token service is misconfigured")
        })?;
        let settings = TokenSettings {
            issuer,
            audience: app.auth.audience.clone(),
            ttl_secs: app.auth.token_ttl_secs,
            failures: app.failures,
        };
        let key = app.signing_key().await?;
        let issued =
            token_service::issue_token(&app.store, &key, &settings, &parsed, shared::now_epoch()).await;
        if let Err(e) = &issued {
            tracing::info!(request_id = %info.request_id, client_id = %parsed.client_id, error = e.kind.code(), "token refused");
        } else {
            tracing::info!(request_id = %info.request_id, client_id = %parsed.client_id, "token issued");
        }
        issued
    }
    .await;

    let mut resp = match outcome {
        Ok(issued) => json_response(
            200,
            &TokenResponse {
                access_token: &issued.access_token,
                expires_in: issued.expires_in,
                token_type: "Bearer",
                scope: issued.scope.to_string(),
            },
        ),
        Err(e) => {
            let mut resp = json_response(e.kind.status(), &e.body());
            if e.kind == OAuthErrorKind::InvalidClient {
                resp.headers_mut()
                    .insert("www-authenticate", "Basic realm=\"token\"".parse().expect("ascii"));
            }
            if let Some(secs) = e.retry_after {
                resp.headers_mut().insert("retry-after", secs.into());
            }
            resp
        }
    };
    // RFC 6749 §5.1: token responses must not be cached, errors included.
    let headers = resp.headers_mut();
    headers.insert("cache-control", "no-store".parse().expect("ascii"));
    headers.insert("pragma", "no-cache".parse().expect("ascii"));
    resp
}

async fn jwks(app: &App) -> Result<Response<Body>, ApiError> {
    let keys = app.store.public_keys(shared::now_epoch()).await?;
    let mut resp = json_response(200, &serde_json::json!({ "keys": keys }));
    resp.headers_mut().insert("cache-control", "public, max-age=300".parse().expect("ascii"));
    Ok(resp)
}

fn openid_configuration(app: &App, info: &RequestInfo) -> Response<Body> {
    let issuer = app.issuer.resolve(info.domain.as_deref()).unwrap_or_default();
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let doc = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/accounts/connect/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "access_token_signing_alg_values_supported": ["RS256"],
    });
    let mut resp = json_response(200, &doc);
    resp.headers_mut().insert("cache-control", "public, max-age=300".parse().expect("ascii"));
    resp
}
