//! Harness for the integration tests: a real local DynamoDB-compatible server (started by
//! `make test`, found through `AWS_ENDPOINT_URL_DYNAMODB`), one fresh set of tables per test,
//! API Gateway v2 events built from JSON, a counter of DynamoDB requests, and (in [`faults`])
//! fault injection on chosen DynamoDB calls.

pub mod browser;
pub mod faults;
pub mod iam;

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use auth::AuthConfig;
use auth::{ClientSecret, GeneratedKey};
use domain::{AccountId, ScopeSet, SystemGuid};
pub use edge::front::{Env, Served, Service};
use store::Tables;
use store::dynamo::DynamoStore;
use store::{ClientRecord, StoreError};

pub use faults::{Fault, FaultPlan, Faults, Injected, Reach};

pub const ISSUER: &str = "https://api.test.example";
pub const AUDIENCE: &str = "end-user-data-api";

/// Counts every DynamoDB HTTP request (retries included) by operation name. Requests of the
/// pay-per-call protections (rate limit, idempotency, usage: [`is_protection`]) are kept
/// apart, so that each test asserts the route's own requests and the protections' separately.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    ops: Arc<Mutex<Vec<String>>>,
    protection: Arc<Mutex<Vec<String>>>,
    rate: Arc<Mutex<Vec<String>>>,
    /// The route's requests with the table each names (the first, for a request naming
    /// several).
    on_table: Arc<Mutex<Vec<(String, String)>>>,
}

impl RequestCounter {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.ops.lock().unwrap())
    }
    /// The route's writes since the last call (its reads are taken too, and dropped).
    pub fn take_writes(&self) -> Vec<String> {
        self.take()
            .into_iter()
            .filter(|op| {
                matches!(
                    op.as_str(),
                    "PutItem" | "UpdateItem" | "BatchWriteItem" | "DeleteItem" | "TransactWriteItems"
                )
            })
            .collect()
    }
    /// The protections' requests since the last call.
    pub fn take_protection(&self) -> Vec<String> {
        std::mem::take(&mut *self.protection.lock().unwrap())
    }
    /// The rate limiter's window writes (`RATE#` keys) since the last call; they are counted
    /// among [`RequestCounter::take_protection`]'s too.
    pub fn take_rate(&self) -> Vec<String> {
        std::mem::take(&mut *self.rate.lock().unwrap())
    }
    /// The route's requests on `table` since the last call (or reset): the requests of
    /// [`RequestCounter::take`] that name it.
    pub fn take_on(&self, table: &str) -> Vec<String> {
        std::mem::take(&mut *self.on_table.lock().unwrap())
            .into_iter()
            .filter(|(_, t)| t == table)
            .map(|(op, _)| op)
            .collect()
    }
    pub fn reset(&self) {
        self.on_table.lock().unwrap().clear();
        self.ops.lock().unwrap().clear();
        self.protection.lock().unwrap().clear();
        self.rate.lock().unwrap().clear();
    }
}

/// The DynamoDB operation an interceptor sees (`PutItem`, `Query`, ...).
pub(crate) fn operation_name(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>().map(|m| m.name().to_string()).unwrap_or_default()
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = operation_name(cfg);
        let body = context.request().body().bytes();
        if is_rate_window(body) {
            self.rate.lock().unwrap().push(op.clone());
        }
        let protection = is_protection(body);
        if !protection {
            self.on_table.lock().unwrap().push((op.clone(), table_of(body)));
        }
        let list = if protection { &self.protection } else { &self.ops };
        list.lock().unwrap().push(op);
        Ok(())
    }
}

/// The table a serialized DynamoDB request names (the first of a batch or transaction).
fn table_of(body: Option<&[u8]>) -> String {
    let Some(Ok(request)) = body.map(serde_json::from_slice::<Value>) else {
        return String::new();
    };
    if let Some(t) = request["TableName"].as_str() {
        return t.to_string();
    }
    if let Some(t) = request["RequestItems"].as_object().and_then(|m| m.keys().next()) {
        return t.clone();
    }
    let first = &request["TransactItems"][0];
    first
        .as_object()
        .and_then(|a| a.values().next())
        .and_then(|a| a["TableName"].as_str())
        .unwrap_or("")
        .into()
}

/// Whether a serialized DynamoDB request is one of the pay-per-call protections', told by the
/// config-table items it names (docs/TABLES.md): a `RATE#` window, an `IDEM#` record, a
/// `USAGE#` sum or the `LIMITS#` item, or the read of an older account item's `rateLimit`.
pub fn is_protection(body: Option<&[u8]>) -> bool {
    let Some(Ok(request)) = body.map(serde_json::from_slice::<Value>) else {
        return false;
    };
    let table = request["TableName"].as_str().unwrap_or("");
    if !table.ends_with(store::schema::CONFIG.default_name) {
        return false;
    }
    let key = request.get("Key").or_else(|| request.get("Item"));
    let pk = key.and_then(|k| k["pk"]["S"].as_str()).unwrap_or("");
    ["RATE#", "IDEM#", "USAGE#", "LIMITS#"].iter().any(|prefix| pk.starts_with(prefix))
        || request["ProjectionExpression"] == "rateLimit"
}

/// Whether a serialized DynamoDB request writes a rate-limit window (`RATE#`).
pub fn is_rate_window(body: Option<&[u8]>) -> bool {
    let Some(Ok(request)) = body.map(serde_json::from_slice::<Value>) else {
        return false;
    };
    request["Key"]["pk"]["S"].as_str().is_some_and(|pk| pk.starts_with("RATE#"))
}

/// A client of the local server with a request counter attached.
pub async fn dynamodb(counter: &RequestCounter) -> aws_sdk_dynamodb::Client {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "integration tests need a local DynamoDB-compatible server: run them with `make test`"
    );
    let sdk = boot::aws_sdk_config().await;
    let base = store::dynamodb_client(&sdk);
    let conf = base.config().to_builder().interceptor(counter.clone()).build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// A client of the local server with a request counter and the fault layer of `faults`. It is
/// the client of [`dynamodb`] (same store code, same retry mode and number of attempts) with
/// three changes that keep fault tests fast and apart: the SDK's backoff starts at 5 ms and
/// stops at 40 ms, an attempt times out after [`faults::ATTEMPT_TIMEOUT`], and its retry quota
/// (token bucket) is its own rather than the one all clients of the process share.
pub async fn dynamodb_with_faults(counter: &RequestCounter, faults: &Faults) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition};
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    let base = dynamodb(counter).await;
    let conf = base.config();
    let retry = conf
        .retry_config()
        .cloned()
        .unwrap_or_else(RetryConfig::standard)
        .with_initial_backoff(std::time::Duration::from_millis(5))
        .with_max_backoff(std::time::Duration::from_millis(40));
    let timeouts = conf
        .timeout_config()
        .map(TimeoutConfig::to_builder)
        .unwrap_or_default()
        .operation_attempt_timeout(faults::ATTEMPT_TIMEOUT)
        .build();
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https();
    let partition = RetryPartition::new(format!("faults-{}", uuid::Uuid::new_v4().simple()));
    let conf = conf
        .to_builder()
        .retry_config(retry)
        .timeout_config(timeouts)
        .retry_partition(partition)
        .http_client(faults.http_client(https))
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// The only scopes a client whose secret MoEngage sends may hold.
pub const MOENGAGE_SCOPE: &str = "endUserUpdate:write";

/// Capacity units, as the local server's meter (`GET /_meter`, docs/LOCAL_DYNAMODB.md) bills
/// them: DynamoDB's published sizing rules, not request counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub rcu: f64,
    pub wcu: f64,
}

impl std::ops::Sub for Units {
    type Output = Units;
    fn sub(self, o: Units) -> Units {
        Units { rcu: self.rcu - o.rcu, wcu: self.wcu - o.wcu }
    }
}

/// The meter's whole answer (a plain HTTP/1.0 GET: no client library needed).
pub fn meter() -> Value {
    use std::io::{Read, Write};
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("a local server");
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host).expect("the local server");
    write!(conn, "GET /_meter HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("meter answer {raw:?}: {e}"))
}

/// Units billed so far on the tables named in `tables` (the meter counts since its last
/// reset, for every test of the process: subtract two readings).
pub fn units_of(tables: &[&str]) -> Units {
    let m = meter();
    let mut u = Units::default();
    for t in tables {
        u.rcu += m["tables"][*t]["rcu"].as_f64().unwrap_or(0.0);
        u.wcu += m["tables"][*t]["wcu"].as_f64().unwrap_or(0.0);
    }
    u
}

pub fn auth_config() -> AuthConfig {
    AuthConfig { issuer: Some(ISSUER.into()), audience: AUDIENCE.into(), token_ttl_secs: 86_400 }
}

/// Creates an API client as `admin client create` does: the secret is generated here and
/// returned; the store keeps only its hash.
pub async fn create_client(
    store: &DynamoStore,
    account: &AccountId,
    name: &str,
    scopes: ScopeSet,
    now: i64,
) -> Result<(ClientRecord, ClientSecret), StoreError> {
    let secret = ClientSecret::generate();
    let record = store.create_client(account, name, scopes, secret.hash(), now).await?;
    Ok((record, secret))
}

/// Generates a signing key and makes it sign at once, as `admin keys revoke` does (`admin keys
/// rotate` publishes it first: [`DynamoStore::rotate_signing_key`]'s activation lead).
pub async fn rotate_signing_key(
    store: &DynamoStore,
    now: i64,
    retire_after_secs: i64,
) -> Result<GeneratedKey, StoreError> {
    let key = auth::keys::generate().expect("an RSA key");
    store.rotate_signing_key(&key.kid, &key.private_pem, &key.public_jwk, now, 0, retire_after_secs).await?;
    Ok(key)
}

/// One test's world: its own tables, an account with a client holding every scope, and a
/// current signing key.
pub struct Stack {
    pub store: DynamoStore,
    pub counter: RequestCounter,
    /// The fault layer of the store's client (only a stack built by [`Stack::with_faults`] has
    /// one; arming the others panics).
    pub faults: Faults,
    pub account: AccountId,
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// The API key MoEngage sends: the secret of `account`'s client scoped to exactly
    /// `endUserUpdate:write`.
    pub moengage_key: ClientSecret,
    /// A system of `account`.
    pub system: SystemGuid,
    /// This stack's import bucket (its own, on the local server).
    pub files: files::Files,
    /// The AWS configuration of the local server.
    pub sdk: aws_config::SdkConfig,
}

impl Stack {
    pub async fn new() -> Self {
        let counter = RequestCounter::default();
        let client = dynamodb(&counter).await;
        Self::build(client, counter, Faults::default()).await
    }

    /// A stack whose store's client goes through a fault layer; `plan` is armed once the
    /// stack is set up (arm another with `stack.faults.arm(..)` after more setup).
    pub async fn with_faults(plan: FaultPlan) -> Self {
        let counter = RequestCounter::default();
        let faults = Faults::attached();
        let client = dynamodb_with_faults(&counter, &faults).await;
        let stack = Self::build(client, counter, faults).await;
        stack.faults.arm(plan);
        stack
    }

    async fn build(client: aws_sdk_dynamodb::Client, counter: RequestCounter, faults: Faults) -> Self {
        let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let store = DynamoStore::new(client, Tables::with_prefix(&prefix));
        store.create_tables().await.expect("tables");
        let account = AccountId::parse("acme").unwrap();
        let now = domain::Timestamp::now().epoch_secs();
        store.create_account(&account, 100, 10_000, now).await.expect("account");
        let (client, secret) =
            create_client(&store, &account, "test", ScopeSet::all(), now).await.expect("client");
        let (_, moengage_key) =
            create_client(&store, &account, "moengage", ScopeSet::parse(MOENGAGE_SCOPE).unwrap(), now)
                .await
                .expect("moengage client");
        rotate_signing_key(&store, now, 3600).await.expect("key");
        let system = SystemGuid::generate();
        store.create_system(&account, system, now).await.expect("system");
        let sdk = boot::aws_sdk_config().await;
        let files = files::Files::new(&sdk, format!("{prefix}imports"));
        files.client().create_bucket().bucket(files.bucket()).send().await.expect("bucket");
        counter.reset();
        Self {
            store,
            counter,
            faults,
            account,
            client_id: client.client_id.to_string(),
            client_secret: secret,
            moengage_key,
            system,
            files,
            sdk,
        }
    }

    /// Another account with its own all-scopes client, in the same tables.
    pub async fn other_account(&self, id: &str) -> (AccountId, String, ClientSecret) {
        self.account_with_limits(id, 100, 10_000).await
    }

    /// Another account with these limits and its own all-scopes client (id, secret).
    pub async fn account_with_limits(
        &self,
        id: &str,
        attribute_limit: i64,
        rate_limit: i64,
    ) -> (AccountId, String, ClientSecret) {
        let account = AccountId::parse(id).unwrap();
        let now = domain::Timestamp::now().epoch_secs();
        self.store.create_account(&account, attribute_limit, rate_limit, now).await.expect("account");
        let (client, secret) =
            self.create_client(&account, "other", ScopeSet::all(), now).await.expect("client");
        self.counter.reset();
        (account, client.client_id.to_string(), secret)
    }

    /// [`Stack::account_with_limits`], with a bearer token of every scope for its client.
    pub async fn account_with_bearer(
        &self,
        id: &str,
        attribute_limit: i64,
        rate_limit: i64,
    ) -> (AccountId, String) {
        let (account, client, _) = self.account_with_limits(id, attribute_limit, rate_limit).await;
        let bearer = self.bearer_for(&account, &client, ALL_SCOPES).await;
        (account, bearer)
    }

    /// Units billed so far on this stack's tables (see [`units_of`]).
    pub fn units(&self) -> Units {
        let t = self.store.tables();
        units_of(&[&t.config, &t.keys, &t.end_users, &t.segments])
    }

    /// The size of a config-table item (attribute names + string values, 8 bytes per other
    /// value: an estimate for bounds), read strongly consistent; it must hold no
    /// `attributeTypes` (docs/DECISIONS.md "Integration definitions cached per instance": no integration item carries the registry of names).
    pub async fn config_item_size(&self, pk: &str, sk: &str) -> usize {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        let item = self
            .store
            .client()
            .get_item()
            .table_name(&self.store.tables().config)
            .key("pk", S(pk.into()))
            .key("sk", S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap_or_else(|| panic!("no item {pk} / {sk}"));
        assert!(!item.contains_key("attributeTypes"), "{pk} / {sk}");
        item.iter().map(|(k, v)| k.len() + v.as_s().map_or(8, String::len)).sum()
    }

    /// [`create_client`] in this stack's tables.
    pub async fn create_client(
        &self,
        account: &AccountId,
        name: &str,
        scopes: ScopeSet,
        now: i64,
    ) -> Result<(ClientRecord, ClientSecret), StoreError> {
        create_client(&self.store, account, name, scopes, now).await
    }

    /// [`rotate_signing_key`] in this stack's tables.
    pub async fn rotate_signing_key(
        &self,
        now: i64,
        retire_after_secs: i64,
    ) -> Result<GeneratedKey, StoreError> {
        rotate_signing_key(&self.store, now, retire_after_secs).await
    }

    pub fn basic(&self) -> String {
        basic(&self.client_id, self.client_secret.expose())
    }

    /// MoEngage's `Authorization` for this stack's account.
    pub fn moengage_basic(&self) -> String {
        basic(self.account.as_str(), self.moengage_key.expose())
    }

    /// A new client of `account` as MoEngage needs one; its Basic credentials.
    pub async fn moengage_client(&self, account: &AccountId) -> String {
        let now = domain::Timestamp::now().epoch_secs();
        let scopes = ScopeSet::parse(MOENGAGE_SCOPE).unwrap();
        let (_, key) = self.create_client(account, "moengage", scopes, now).await.expect("client");
        basic(account.as_str(), key.expose())
    }

    /// `Bearer <token>` for this stack's account with the given scopes, signed by the
    /// current key exactly as the token endpoint signs.
    pub async fn bearer(&self, scopes: &str) -> String {
        self.bearer_for(&self.account, &self.client_id, scopes).await
    }

    pub async fn bearer_for(&self, account: &AccountId, client_id: &str, scopes: &str) -> String {
        let stored =
            self.store.current_signing_key(domain::Timestamp::now().epoch_secs()).await.unwrap().unwrap();
        let key = auth::SigningKey::from_pem(&stored.kid, &stored.private_pem).unwrap();
        let now = domain::Timestamp::now().epoch_secs();
        let claims = auth::AccessClaims {
            iss: ISSUER.into(),
            sub: client_id.into(),
            aud: AUDIENCE.into(),
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: client_id.into(),
            scope: scopes.into(),
            account: account.to_string(),
            secret_version: None,
        };
        format!("Bearer {}", auth::jwt::issue(&key, &claims).unwrap())
    }

    pub fn integrations_app(&self) -> Served<integrations::App> {
        self.served(integrations::App::new)
    }

    pub fn user_data_app(&self) -> Served<user_data::App> {
        self.served(user_data::App::new)
    }

    pub fn segments_app(&self) -> Served<segments::App> {
        self.served(segments::App::new)
    }

    pub fn token_app(&self) -> Served<token::App> {
        self.served(token::App::new)
    }

    pub fn imports_app(&self) -> Served<imports::App> {
        self.served(|env| imports::App::with_files(env, self.files.clone()))
    }

    /// The import worker as its `main` runs it, under its role, with `seconds` of work before
    /// it hands an import over to its next leg.
    pub fn import_worker(&self, seconds: u64) -> import_worker::Worker {
        import_worker::Worker {
            store: self.store_as("import-worker"),
            limiter: std::sync::Arc::new(protect::rate::RateLimiter::default()),
            files: self.files.clone(),
            stop_at: std::time::Instant::now() + std::time::Duration::from_secs(seconds),
            callback: import_worker::callback::Sender::new(true),
            page_rows: import_worker::PAGE_ROWS,
        }
    }

    /// A function as its `main` serves it, on this stack's tables, under its role in
    /// `template.yaml` ([`iam`]): a request the role does not allow fails.
    pub fn served<S: Service>(&self, make: impl FnOnce(&Env) -> S) -> Served<S> {
        // `user_data::App` is the function built as `user-data`.
        let krate = std::any::type_name::<S>().split("::").next().unwrap_or_default();
        let env = Env {
            store: self.store_as(&krate.replace('_', "-")),
            auth: auth_config(),
            sdk: self.sdk.clone(),
        };
        Served::new(&env, make(&env))
    }

    /// This stack's store as the function built as `binary` may use it: its requests are
    /// checked against the function's role, and counted and fault-injected as the stack's.
    pub fn store_as(&self, binary: &str) -> DynamoStore {
        let tables = self.store.tables().clone();
        let config = self
            .store
            .client()
            .config()
            .to_builder()
            .interceptor(iam::PolicyCheck::new(binary, tables.clone()))
            .build();
        DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), tables)
    }

    /// `/public/v1/user/system/<this stack's system>/segment` followed by `rest`.
    pub fn segment_path(&self, rest: &str) -> String {
        format!("/public/v1/user/system/{}/segment{rest}", self.system)
    }
}

pub const ALL_SCOPES: &str = "endUserUpdate:write endUsers:read endUsers:delete segments:read segments:write integrations:read integrations:write";

/// The seeds' integration: `Email` identifies the user; `Type` and `Status` are imported as
/// `Customer_Type` and `Customer_Status`, both String.
pub const SEED_INTEGRATION: &str = r#"{"name": "Update Customer Attributes", "userIdentifierProperty": "Email",
  "properties": [{"path": "Type", "name": "Customer_Type", "type": "String"},
                 {"path": "Status", "name": "Customer_Status", "type": "String"}]}"#;

/// Sends a JSON request with a bearer token; returns the answer.
pub async fn call_integrations(
    app: &Served<integrations::App>,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Answer {
    call_app(app, auth, method, path, body).await
}

pub async fn call_user_data(
    app: &Served<user_data::App>,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Answer {
    call_app(app, auth, method, path, body).await
}

/// The user's group of `integration_id` in `GET /public/v1/user/{user}` (its `attributes`,
/// `types`, `updatedAt`...); `None` when the user is unknown (404) or has no such group.
pub async fn user_group(
    app: &Served<user_data::App>,
    auth: &str,
    user: &str,
    integration_id: &str,
) -> Option<Value> {
    let a = call_user_data(app, auth, "GET", &format!("/public/v1/user/{user}"), None).await;
    if a.status == 404 {
        return None;
    }
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["integrations"].as_array().unwrap().iter().find(|g| g["integrationId"] == integration_id).cloned()
}

pub async fn call_segments(
    app: &Served<segments::App>,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Answer {
    call_app(app, auth, method, path, body).await
}

/// Sends a JSON request with a bearer token to any function; returns the answer.
pub async fn call_app<S: Service>(
    app: &Served<S>,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Answer {
    let headers = [("authorization", auth), ("content-type", "application/json")];
    answer(edge::front::serve(app, req(method, path, &headers, body)).await)
}

/// A plain HTTP request to a URL (a presigned S3 URL of the local server); a body goes as
/// `curl --data-binary` sends it, typed as a form. Returns the status and the body.
pub async fn http(method: &str, url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-length", body.len())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let answer = client.request(req).await.expect("HTTP request");
    let status = answer.status().as_u16();
    (status, answer.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// Creates an integration from `definition`; returns (integrationId, token).
pub async fn create_integration(stack: &Stack, auth: &str, definition: &str) -> (String, String) {
    let a = call_integrations(
        &stack.integrations_app(),
        auth,
        "POST",
        "/public/v1/integrations",
        Some(definition),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    (a.body["integrationId"].as_str().unwrap().to_string(), a.body["token"].as_str().unwrap().to_string())
}

pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

/// An API Gateway HTTP API (payload 2.0) event, as API Gateway sends it.
pub fn event(method: &str, path_and_query: &str, headers: &[(&str, &str)], body: Option<&str>) -> Value {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let headers: serde_json::Map<String, Value> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), json!(v))).collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "api.test.example",
            "domainPrefix": "api",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.195",
                "userAgent": "integration-tests"
            },
            "requestId": format!("req-{}", uuid::Uuid::new_v4().simple()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:09:00:00 +0000",
            "timeEpoch": 1795424400000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

pub fn request(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway v2 event")
}

pub fn req(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Request {
    request(&event(method, path, headers, body))
}

/// Status, headers and JSON body of a response.
pub struct Answer {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn answer(resp: Response<Body>) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp.body().as_ref().to_vec();
    // The console's pages and assets are the only bodies that are not JSON.
    let json = headers.get("content-type").and_then(|v| v.to_str().ok()).is_none_or(|t| t.contains("json"));
    let body =
        if raw.is_empty() || !json { Value::Null } else { serde_json::from_slice(&raw).expect("JSON body") };
    Answer { status, headers, body, raw }
}

/// Capacity units a table has consumed so far, from the local server's meter (`GET /_meter`,
/// docs/LOCAL_DYNAMODB.md): (read units, write units), summed over the table and its indexes.
/// Every test has its own tables, so the difference of two readings is what one test's calls
/// cost, whatever other tests run meanwhile. `None` when the server has no meter.
pub fn table_units(table: &str) -> Option<(f64, f64)> {
    let meter = meter_call("GET", "/_meter", None)?;
    let t = meter.get("tables")?.get(table);
    let unit = |k: &str| t.and_then(|t| t.get(k)).and_then(Value::as_f64).unwrap_or(0.0);
    Some((unit("rcu"), unit("wcu")))
}

/// One call to the local server's meter (`GET /_meter`, `POST /_meter/reset`,
/// `POST /_meter/config`); its JSON answer, or `None` without a meter.
pub fn meter_call(method: &str, path: &str, body: Option<&str>) -> Option<Value> {
    use std::io::{Read, Write};
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok()?;
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut stream = std::net::TcpStream::connect(&host).ok()?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    serde_json::from_str(&body).ok().or(Some(Value::Null))
}
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The SQS event the queue delivers for an upload under `key` (S3's notification, in
/// AWS's documented shape, as the message body), as message `message_id`.
pub fn upload_event(message_id: &str, key: &str) -> aws_lambda_events::event::sqs::SqsEvent {
    let s3 = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-12-06T09:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AROAEXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {}, "s3": {"s3SchemaVersion": "1.0", "configurationId": "uploads",
            "bucket": {"name": "imports", "arn": "arn:aws:s3:::imports"},
            "object": {"key": key.replace(' ', "+"), "size": 1, "sequencer": "0"}}}]});
    serde_json::from_value(
        serde_json::json!({"Records": [{"messageId": message_id, "body": s3.to_string()}]}),
    )
    .expect("an SQS event")
}

/// `n` distinct user ids: `<prefix><i>@company.com`.
pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@company.com")).collect()
}

/// `v`, sorted: for comparing sets of ids whatever order an answer lists them in.
pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Asserts that a warm call made exactly the requests `expected` (in any order). A per-instance
/// cache lives `staleness` from its read; when the call that filled it was sent (`warmed`)
/// longer ago than that, as on a loaded machine, the call may also have made some of `checks`:
/// the stamp reads of a cache past its staleness, a unit each whatever the data, which is what
/// the exact-count tests judge. Returns whether the call was judged as fresh.
pub fn assert_warm(
    ops: &[String],
    expected: &[&str],
    warmed: std::time::Instant,
    staleness: std::time::Duration,
    checks: &[&str],
) -> bool {
    let mut extra: Vec<&str> = ops.iter().map(String::as_str).collect();
    for e in expected {
        let i = extra.iter().position(|o| o == e);
        assert!(i.is_some(), "a warm call's requests {ops:?} lack {e} (expected {expected:?})");
        extra.remove(i.unwrap());
    }
    let fresh = warmed.elapsed() < staleness;
    if fresh {
        assert!(extra.is_empty(), "a warm call's requests {ops:?}: expected {expected:?}");
    } else {
        let mut allowed = checks.to_vec();
        for x in &extra {
            let i = allowed.iter().position(|c| c == x);
            assert!(i.is_some(), "{ops:?}: past the caches' staleness, {expected:?} and at most {checks:?}");
            allowed.remove(i.unwrap());
        }
    }
    fresh
}

/// Peak resident set of this process so far (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}
