//! Fault injection for the tests' DynamoDB client: a plan says, per operation, which attempts
//! fail and how, and a layer between the SDK and its HTTP connection acts it out.
//!
//! The layer wraps the client's HTTP connector rather than being an interceptor alone, because
//! interceptor hooks are synchronous and always let the request go: they can neither keep a
//! request from the server nor make an attempt time out. Here every kind of fault exists in
//! both of the cases that matter for idempotency:
//! - [`Reach::NotSent`]: the request never reaches the server (failed before applying);
//! - [`Reach::Applied`]: the server applies it and its answer is lost, replaced by the fault
//!   (the hard case: the SDK, the store or the caller retries something already done).
//!
//! Attempts are counted per operation (`x-amz-target`) from the moment a plan is armed, every
//! HTTP request counting once (SDK retries included). Requests of the protections (rate limit,
//! idempotency, usage: [`crate::is_protection`]) are neither counted nor faulted: the tests aim at
//! the routes' own writes.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::{HttpClient, RuntimeComponents, SharedHttpClient};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::byte_stream::ByteStream;
use serde_json::{Map, Value, json};

/// What an attempt gets instead of the server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `400` `ProvisionedThroughputExceededException`, the type in the body's `__type`.
    Throttled,
    /// `400` `ThrottlingException`, the type in the `x-amzn-ErrorType` header.
    Throttling,
    /// `500` `InternalServerError`.
    ServerError,
    /// A connection-level timeout (the connector's error, as a read timeout gives).
    Timeout,
    /// No answer at all: the SDK's own attempt timeout ([`ATTEMPT_TIMEOUT`]) ends the attempt.
    Hang,
    /// `400` `TransactionCanceledException` with `TransactionConflict` for every action
    /// (TransactWriteItems only; never applied).
    TransactionConflict,
    /// BatchWriteItem / BatchGetItem: only the first half of the request's items (keys) reach
    /// the server; the rest come back in a `200` as `UnprocessedItems` (`UnprocessedKeys`).
    /// A request of one item (key) is not sent at all.
    Unprocessed,
    /// BatchGetItem, eventually consistent: answered by a replica that lags behind the
    /// table. The server answers; then every item found is replaced by the version the plan's
    /// [`FaultPlan::replica`] holds of it, and an item the replica does not hold is left out
    /// (not replicated yet). A strongly consistent request passes untouched: no replica
    /// answers those.
    Stale,
}

/// Whether the server saw the faulted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// It never reached the server.
    NotSent,
    /// The server applied it; its answer was lost and the fault took its place.
    Applied,
}

/// The SDK's per-attempt timeout in a client built with faults (the deployed default; the
/// local scripts raise it for big calls, which fault tests do not make): [`Fault::Hang`] costs
/// this.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, Clone)]
struct Rule {
    op: &'static str,
    attempts: RangeInclusive<u32>,
    fault: Fault,
    reach: Reach,
}

/// Which attempts of which operations fail, and how. The first rule that matches an attempt
/// applies; attempts no rule matches go to the server untouched.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    rules: Vec<Rule>,
    /// Whether the protections' requests (rate limit, idempotency, usage) are faulted too;
    /// by default they pass untouched, so that a test faults its route's own requests.
    protections: bool,
    /// What a lagging replica holds, for [`Fault::Stale`]: items in DynamoDB's JSON form.
    replica: Vec<Value>,
}

impl FaultPlan {
    pub fn new() -> Self {
        Self::default()
    }

    /// The items (DynamoDB JSON, `{"pk": {"S": ..}, ...}`) a lagging replica holds, as of an
    /// earlier moment: what [`Fault::Stale`] answers.
    pub fn replica(mut self, items: Vec<Value>) -> Self {
        self.replica = items;
        self
    }

    /// The same plan applied to the protections' requests only (the route's pass untouched).
    pub fn on_protections(mut self) -> Self {
        self.protections = true;
        self
    }

    /// `fault` on attempts `attempts` (1-based) of `op` (`"BatchWriteItem"`, `"UpdateItem"`,
    /// ...), none of which reaches the server.
    pub fn fail(mut self, op: &'static str, attempts: RangeInclusive<u32>, fault: Fault) -> Self {
        if fault == Fault::TransactionConflict {
            assert_eq!(op, "TransactWriteItems", "TransactionConflict is a TransactWriteItems answer");
        }
        if fault == Fault::Stale {
            assert_eq!(op, "BatchGetItem", "Stale is an eventually consistent BatchGetItem answer");
        }
        if fault == Fault::Unprocessed {
            assert!(matches!(op, "BatchWriteItem" | "BatchGetItem"), "Unprocessed is a batch answer");
        }
        self.rules.push(Rule { op, attempts, fault, reach: Reach::NotSent });
        self
    }

    /// On attempts `attempts` of `op` the server applies the request, and its answer is lost:
    /// `fault` takes its place.
    pub fn lose(mut self, op: &'static str, attempts: RangeInclusive<u32>, fault: Fault) -> Self {
        assert!(
            matches!(
                fault,
                Fault::Throttled | Fault::Throttling | Fault::ServerError | Fault::Timeout | Fault::Hang
            ),
            "{fault:?} cannot follow an applied request"
        );
        self.rules.push(Rule { op, attempts, fault, reach: Reach::Applied });
        self
    }

    /// Attempts `first`, `first + 1`, ... of `op` get the faults of `faults` in turn, none
    /// reaching the server.
    pub fn fail_each(mut self, op: &'static str, first: u32, faults: &[Fault]) -> Self {
        for (i, f) in faults.iter().enumerate() {
            let n = first + i as u32;
            self = self.fail(op, n..=n, *f);
        }
        self
    }
}

/// One fault that was acted out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub op: String,
    pub attempt: u32,
    pub fault: Fault,
    pub reach: Reach,
}

#[derive(Debug, Default)]
struct State {
    plan: FaultPlan,
    attempts: HashMap<String, u32>,
    injected: Vec<Injected>,
}

/// The handle of a client's fault layer: arm a plan, read what happened.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    attached: bool,
}

impl Faults {
    /// A handle whose layer goes into a client (see [`Faults::http_client`]).
    pub(crate) fn attached() -> Self {
        Self { state: Arc::default(), attached: true }
    }

    /// Replaces the plan; attempts are counted afresh.
    pub fn arm(&self, plan: FaultPlan) {
        assert!(self.attached, "this Stack has no fault layer: build it with Stack::with_faults");
        let mut s = self.state.lock().unwrap();
        *s = State { plan, ..State::default() };
    }

    /// No more faults; returns those acted out since the plan was armed.
    pub fn disarm(&self) -> Vec<Injected> {
        let mut s = self.state.lock().unwrap();
        s.plan = FaultPlan::default();
        std::mem::take(&mut s.injected)
    }

    /// The faults acted out since the plan was armed.
    pub fn injected(&self) -> Vec<Injected> {
        self.state.lock().unwrap().injected.clone()
    }

    /// Requests of `op` since the plan was armed, faulted or not.
    pub fn attempts(&self, op: &str) -> u32 {
        self.state.lock().unwrap().attempts.get(op).copied().unwrap_or(0)
    }

    /// `inner` with this fault layer in front of its connections.
    pub(crate) fn http_client(&self, inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(FaultClient { inner, faults: self.clone() })
    }

    fn decide(&self, req: &HttpRequest) -> Option<(String, Fault, Reach, Vec<Value>)> {
        let protection = crate::is_protection(req.body().bytes());
        let mut s = self.state.lock().unwrap();
        if protection != s.plan.protections {
            return None;
        }
        let op = operation(req)?;
        let attempt = {
            let n = s.attempts.entry(op.clone()).or_default();
            *n += 1;
            *n
        };
        let rule = s.plan.rules.iter().find(|r| r.op == op && r.attempts.contains(&attempt))?.clone();
        s.injected.push(Injected { op: op.clone(), attempt, fault: rule.fault, reach: rule.reach });
        let replica = if rule.fault == Fault::Stale { s.plan.replica.clone() } else { Vec::new() };
        Some((op, rule.fault, rule.reach, replica))
    }
}

/// `BatchWriteItem` from `x-amz-target: DynamoDB_20120810.BatchWriteItem`.
fn operation(req: &HttpRequest) -> Option<String> {
    let target = req.headers().get("x-amz-target")?;
    Some(target.rsplit('.').next()?.to_string())
}

#[derive(Debug)]
struct FaultClient {
    inner: SharedHttpClient,
    faults: Faults,
}

impl HttpClient for FaultClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(FaultConnector { inner, faults: self.faults.clone() })
    }
}

#[derive(Debug)]
struct FaultConnector {
    inner: SharedHttpConnector,
    faults: Faults,
}

impl HttpConnector for FaultConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        match self.faults.decide(&request) {
            None => self.inner.call(request),
            Some((op, fault, reach, replica)) => {
                let inner = self.inner.clone();
                HttpConnectorFuture::new(async move { act(inner, request, &op, fault, reach, replica).await })
            }
        }
    }
}

async fn act(
    inner: SharedHttpConnector,
    request: HttpRequest,
    op: &str,
    fault: Fault,
    reach: Reach,
    replica: Vec<Value>,
) -> Result<HttpResponse, ConnectorError> {
    match fault {
        Fault::Unprocessed => return unprocessed(inner, request, op).await,
        Fault::Stale => return stale(inner, request, &replica).await,
        Fault::TransactionConflict => {
            let actions = json_of(request.body().bytes())["TransactItems"].as_array().map_or(1, Vec::len);
            let reasons: Vec<Value> = (0..actions)
                .map(|_| json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}))
                .collect();
            let message = format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                vec!["TransactionConflict"; actions].join(", ")
            );
            return Ok(response(
                400,
                None,
                json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                    "message": message,
                    "CancellationReasons": reasons,
                }),
            ));
        }
        _ => {}
    }
    if reach == Reach::Applied {
        let mut resp = inner.call(request).await?;
        // The whole answer: the server is done with the request.
        let _ = ByteStream::new(resp.take_body()).collect().await;
    }
    match fault {
        Fault::Throttled => Ok(response(
            400,
            None,
            json!({
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded (injected)",
            }),
        )),
        Fault::Throttling => Ok(response(
            400,
            Some("ThrottlingException"),
            json!({"message": "Rate of requests exceeds the allowed throughput (injected)"}),
        )),
        Fault::ServerError => Ok(response(
            500,
            None,
            json!({"__type": "com.amazon.coral.service#InternalServerError", "message": "Internal server error (injected)"}),
        )),
        Fault::Timeout => Err(ConnectorError::timeout("injected timeout".into())),
        Fault::Hang => std::future::pending().await,
        Fault::Unprocessed | Fault::TransactionConflict | Fault::Stale => unreachable!("answered above"),
    }
}

fn json_of(bytes: Option<&[u8]>) -> Value {
    serde_json::from_slice(bytes.expect("DynamoDB request bodies are in memory")).expect("a JSON body")
}

/// A DynamoDB (JSON protocol) answer.
fn response(status: u16, error_type_header: Option<&str>, body: Value) -> HttpResponse {
    let text = body.to_string();
    let len = text.len();
    let mut resp = HttpResponse::new(StatusCode::try_from(status).expect("a status"), text.into());
    let headers = resp.headers_mut();
    headers.insert("content-type", "application/x-amz-json-1.0");
    headers.insert("content-length", len.to_string());
    headers.insert("x-amzn-requestid", "fault-injected");
    if let Some(t) = error_type_header {
        headers.insert("x-amzn-errortype", t.to_string());
    }
    resp
}

/// Sends `request` with `body` in place of its own: the server's JSON answer, or its whole
/// response when that is not a `200`.
async fn send_with_body(
    inner: &SharedHttpConnector,
    mut request: HttpRequest,
    body: &Value,
) -> Result<Result<Value, HttpResponse>, ConnectorError> {
    let text = body.to_string();
    request.headers_mut().insert("content-length", text.len().to_string());
    *request.body_mut() = text.into();
    let mut resp = inner.call(request).await?;
    if resp.status().as_u16() != 200 {
        return Ok(Err(resp));
    }
    let bytes = ByteStream::new(resp.take_body())
        .collect()
        .await
        .map_err(|e| ConnectorError::io(e.into()))?
        .into_bytes();
    Ok(Ok(serde_json::from_slice(&bytes).expect("a JSON answer")))
}

/// Sends the first half of each table's items (keys), answers the rest as unprocessed.
async fn unprocessed(
    inner: SharedHttpConnector,
    request: HttpRequest,
    op: &str,
) -> Result<HttpResponse, ConnectorError> {
    let writes = op == "BatchWriteItem";
    let mut body = json_of(request.body().bytes());
    let items = body["RequestItems"].as_object_mut().expect("RequestItems");
    let mut rest = Map::new();
    for (table, spec) in items.iter_mut() {
        let list = if writes { spec.as_array_mut() } else { spec["Keys"].as_array_mut() }.expect("a list");
        let tail = Value::Array(list.split_off(list.len() / 2));
        let left = if writes {
            tail
        } else {
            let mut keys_and_attributes = spec.clone();
            keys_and_attributes["Keys"] = tail;
            keys_and_attributes
        };
        rest.insert(table.clone(), left);
    }
    let answer_key = if writes { "UnprocessedItems" } else { "UnprocessedKeys" };
    items.retain(|_, spec| {
        let list = if writes { spec.as_array() } else { spec["Keys"].as_array() };
        list.is_some_and(|l| !l.is_empty())
    });
    let mut answer = if !items.is_empty() {
        match send_with_body(&inner, request, &body).await? {
            Ok(answer) => answer,
            Err(resp) => return Ok(resp),
        }
    } else if writes {
        json!({})
    } else {
        json!({"Responses": rest.keys().map(|t| (t.clone(), json!([]))).collect::<Map<_, _>>()})
    };
    // What the server left unprocessed itself, plus what never reached it.
    let mut merged = answer[answer_key].as_object().cloned().unwrap_or_default();
    for (table, left) in rest {
        match merged.get_mut(&table) {
            Some(theirs) if writes => {
                theirs.as_array_mut().expect("a list").extend(left.as_array().cloned().unwrap_or_default())
            }
            Some(theirs) => {
                let keys = left["Keys"].as_array().cloned().unwrap_or_default();
                theirs["Keys"].as_array_mut().expect("keys").extend(keys)
            }
            None => {
                merged.insert(table, left);
            }
        }
    }
    answer[answer_key] = Value::Object(merged);
    Ok(response(200, None, answer))
}

/// An eventually consistent BatchGetItem answered by a lagging replica: the server's items,
/// each as `replica` holds it (left out when the replica does not hold it), projected as the
/// request asked. The request goes to the server without its projection, so that the items
/// come back with their keys to match the replica's by.
async fn stale(
    inner: SharedHttpConnector,
    request: HttpRequest,
    replica: &[Value],
) -> Result<HttpResponse, ConnectorError> {
    let mut body = json_of(request.body().bytes());
    let tables = body["RequestItems"].as_object_mut().expect("RequestItems");
    if tables.values().any(|spec| spec["ConsistentRead"] == json!(true)) {
        return inner.call(request).await;
    }
    // Per table: the attribute names the request projects (None: whole items).
    let mut projections: HashMap<String, Option<Vec<String>>> = HashMap::new();
    for (table, spec) in tables.iter_mut() {
        let spec = spec.as_object_mut().expect("KeysAndAttributes");
        let names = spec.remove("ExpressionAttributeNames").unwrap_or(json!({}));
        let projected = spec.remove("ProjectionExpression").and_then(|p| p.as_str().map(str::to_string));
        let projected = projected.map(|p| {
            p.split(',')
                .map(|n| {
                    let n = n.trim();
                    names[n].as_str().unwrap_or(n).to_string()
                })
                .collect()
        });
        projections.insert(table.clone(), projected);
    }
    let mut answer = match send_with_body(&inner, request, &body).await? {
        Ok(answer) => answer,
        Err(resp) => return Ok(resp),
    };
    let key_of = |item: &Value| (item["pk"].clone(), item["sk"].clone());
    if let Some(tables) = answer["Responses"].as_object_mut() {
        for (table, items) in tables.iter_mut() {
            let projected = projections.get(table).cloned().flatten();
            let list = items.as_array_mut().expect("a list");
            *list = list
                .iter()
                .filter_map(|item| replica.iter().find(|r| key_of(r) == key_of(item)))
                .map(|r| match &projected {
                    Some(names) => Value::Object(
                        r.as_object()
                            .expect("an item")
                            .iter()
                            .filter(|(k, _)| names.contains(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                    None => r.clone(),
                })
                .collect();
        }
    }
    Ok(response(200, None, answer))
}
