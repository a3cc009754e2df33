//! Every write route under injected DynamoDB faults (tests/src/faults.rs): throttling (both
//! error forms), 500s, timeouts, hung attempts, transaction conflicts, `UnprocessedItems` and
//! `UnprocessedKeys`, each either before the request reaches the server or after the server
//! applied it (the answer lost).
//!
//! What every test shows, per route:
//! - faults within the retry budget (the SDK's 5 attempts, the batch and transaction loops'
//!   10): the call succeeds and everything it acknowledged reads back through the API;
//! - faults past the budget: `503` with the standard error body (MoEngage's shape on its
//!   route), and the same request sent again without faults leaves exactly the state one
//!   successful call leaves: no lost write, no effect applied twice (segment counts, attribute
//!   headroom, integrations created once);
//! - an applied request whose answer was lost and that the SDK retries is safe.

use domain::AccountId;
use integration_tests::Fault::{
    Hang, ServerError, Throttled, Throttling, Timeout, TransactionConflict, Unprocessed,
};
use integration_tests::*;
use serde_json::{Value, json};

const TWI: &str = "TransactWriteItems";

/// The standard 503 body.
fn assert_unavailable(a: &Answer) {
    assert_eq!(a.status, 503, "{}", a.body);
    let e = &a.body["error"];
    assert_eq!(e["code"], "service_unavailable", "{}", a.body);
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", a.body);
    assert_eq!(e["details"], json!([]), "{}", a.body);
    assert!(e["requestId"].as_str().is_some_and(|r| r.starts_with("req-")), "{}", a.body);
}

/// Disarms the plan; `n` faults were acted out.
fn injected(stack: &Stack, n: usize) -> Vec<Injected> {
    let got = stack.faults.disarm();
    assert_eq!(got.len(), n, "faults acted out: {got:?}");
    got
}

/// Every SDK attempt of one call of `op` fails, the first after the server applied it.
fn lost_then_failing(plan: FaultPlan, op: &'static str) -> FaultPlan {
    plan.lose(op, 1..=1, ServerError).fail(op, 2..=5, Throttled)
}

/// Four failing attempts of `op` (one of each kind), then the fifth and last goes through.
fn four_faults(plan: FaultPlan, op: &'static str) -> FaultPlan {
    plan.fail_each(op, 1, &[Throttled, Throttling, ServerError, Timeout])
}

/// The account's attribute headroom (limit − attributes in use), read directly.
async fn headroom(stack: &Stack, account: &AccountId) -> i64 {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    let out = stack
        .store
        .client()
        .get_item()
        .table_name(&stack.store.tables().config)
        .key("pk", S(format!("ACCOUNT#{account}")))
        .key("sk", S("ACCOUNT".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item.unwrap()["attributeHeadroom"].as_n().unwrap().parse().unwrap()
}

/// Another account of the stack with an attribute limit of `limit` and an all-scopes client:
/// (account, bearer, client secret).
async fn account_with_limit(stack: &Stack, id: &str, limit: i64) -> (AccountId, String) {
    stack.account_with_bearer(id, limit, 10_000).await
}

// ---------------------------------------------------------------------------------------------
// POST /public/v1/user/data, DELETE /public/v1/user/{userId}

struct Users {
    stack: Stack,
    app: Served<user_data::App>,
    auth: String,
    token: String,
    integration: String,
}

async fn users() -> Users {
    let stack = Stack::with_faults(FaultPlan::new()).await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, token) = create_integration(&stack, &auth, SEED_INTEGRATION).await;
    let app = stack.user_data_app();
    // The first call of an app reads the public keys (a Query): done here, before any plan.
    assert_eq!(call_user_data(&app, &auth, "GET", "/public/v1/user/nobody", None).await.status, 404);
    Users { stack, app, auth, token, integration }
}

impl Users {
    async fn send(&self, data: Value, existing_only: bool) -> Answer {
        let body = json!({"token": self.token, "data": data, "updateExistingOnly": existing_only});
        call_user_data(&self.app, &self.auth, "POST", "/public/v1/user/data", Some(&body.to_string())).await
    }
    async fn get(&self, user: &str) -> Answer {
        call_user_data(&self.app, &self.auth, "GET", &format!("/public/v1/user/{user}"), None).await
    }
    async fn erase(&self, user: &str) -> Answer {
        call_user_data(&self.app, &self.auth, "DELETE", &format!("/public/v1/user/{user}"), None).await
    }
    /// The user's attributes of the integration (None: the user has none).
    async fn attrs(&self, user: &str) -> Option<Value> {
        Some(user_group(&self.app, &self.auth, user, &self.integration).await?["attributes"].clone())
    }
    async fn all_have(&self, people: &[String], attributes: Value) {
        for p in people {
            assert_eq!(self.attrs(p).await, Some(attributes.clone()), "{p}");
        }
    }
    /// The user has neither attributes nor memberships.
    async fn gone(&self, user: &str) {
        assert_eq!(self.get(user).await.status, 404, "{user}");
    }
}

const JOHN: &str = "john@company.com";

#[tokio::test]
async fn merge_of_one_user() {
    let w = users().await;
    let data = |status: &str| json!([{"Email": JOHN, "Type": "Internal", "Status": status}]);
    let stored = |status: &str| Some(json!({"Customer_Type": "Internal", "Customer_Status": status}));

    // Within the SDK's 5 attempts: both throttling forms, a 500 and a timeout, then it applies.
    w.stack.faults.arm(four_faults(FaultPlan::new(), "UpdateItem"));
    let a = w.send(data("New"), false).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["accepted"], 1);
    injected(&w.stack, 4);
    assert_eq!(w.attrs(JOHN).await, stored("New"));

    // Applied, and the answer lost twice (a 500, then no answer until the attempt times out):
    // the SDK sends the same SET again.
    w.stack.faults.arm(FaultPlan::new().lose("UpdateItem", 1..=1, ServerError).lose(
        "UpdateItem",
        2..=2,
        Hang,
    ));
    let a = w.send(data("Active"), false).await;
    assert_eq!(a.status, 200, "{}", a.body);
    injected(&w.stack, 2);
    assert_eq!(w.attrs(JOHN).await, stored("Active"));

    // Past the budget, the first attempt applied: 503; the same request again completes it.
    w.stack.faults.arm(lost_then_failing(FaultPlan::new(), "UpdateItem"));
    assert_unavailable(&w.send(data("Churned"), false).await);
    injected(&w.stack, 5);
    let a = w.send(data("Churned"), false).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(w.attrs(JOHN).await, stored("Churned"));

    // Past the budget, never applied, updateExistingOnly for an unknown user: 503, nothing
    // written; the retry skips the user exactly as one call would.
    w.stack.faults.arm(FaultPlan::new().fail("UpdateItem", 1..=5, Timeout));
    let ghost = json!([{"Email": "ghost@company.com", "Status": "x"}]);
    assert_unavailable(&w.send(ghost.clone(), true).await);
    injected(&w.stack, 5);
    let a = w.send(ghost, true).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["skipped"], json!(["ghost@company.com"]));
    assert_eq!(w.attrs("ghost@company.com").await, None);
}

#[tokio::test]
async fn replace_of_many_users() {
    let w = users().await;
    let people = ids("p", 26);
    let data = |people: &[String], kind: &str| -> Value {
        people.iter().map(|p| json!({"Email": p, "Type": kind})).collect()
    };
    // Every user starts with a Status that a replace without it removes.
    let seed: Value = people.iter().map(|p| json!({"Email": p, "Type": "Seed", "Status": "Old"})).collect();
    assert_eq!(w.send(seed, false).await.status, 200);

    // One conditional PutItem per user (docs/DECISIONS.md, "Erasure that sticks"). Four SDK
    // faults on the puts: within the budget, every user written.
    w.stack.faults.arm(four_faults(FaultPlan::new(), "PutItem"));
    let a = w.send(data(&people, "A"), false).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["accepted"], 26);
    assert_eq!(a.body["mode"], "replace");
    injected(&w.stack, 4);
    w.all_have(&people, json!({"Customer_Type": "A"})).await;

    // Applied, answers lost: the SDK puts the same items again (their condition still holds).
    w.stack.faults.arm(FaultPlan::new().lose("PutItem", 1..=2, Timeout));
    let a = w.send(data(&people, "B"), false).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.get("suppressed").is_none(), "a retried put is not taken for a suppression");
    injected(&w.stack, 2);
    w.all_have(&people, json!({"Customer_Type": "B"})).await;

    // Past the SDK budget after one put applied: 503; the retry completes every user.
    w.stack.faults.arm(FaultPlan::new().lose("PutItem", 1..=1, ServerError).fail(
        "PutItem",
        2..=100_000,
        ServerError,
    ));
    assert_unavailable(&w.send(data(&people, "C"), false).await);
    w.stack.faults.disarm();
    assert_eq!(w.send(data(&people, "C"), false).await.status, 200);
    w.all_have(&people, json!({"Customer_Type": "C"})).await;
}

#[tokio::test]
async fn replace_of_existing_users_only() {
    let w = users().await;
    let known = ids("k", 10);
    let unknown = ids("u", 10);
    let seed: Value = known.iter().map(|p| json!({"Email": p, "Type": "Seed"})).collect();
    assert_eq!(w.send(seed, false).await.status, 200);
    let all: Value = known.iter().chain(&unknown).map(|p| json!({"Email": p, "Type": "New"})).collect();

    // UnprocessedKeys on the existence check (and then a throttle): the check still sees
    // every known user, so exactly the unknown ones are skipped.
    w.stack.faults.arm(FaultPlan::new().fail("BatchGetItem", 1..=3, Unprocessed).fail(
        "BatchGetItem",
        4..=4,
        Throttling,
    ));
    let a = w.send(all.clone(), true).await;
    assert_eq!(a.status, 200, "{}", a.body);
    injected(&w.stack, 4);
    assert_eq!(a.body["accepted"], 10);
    assert_eq!(sorted(serde_json::from_value(a.body["skipped"].clone()).unwrap()), sorted(unknown.clone()));
    for p in &known {
        assert_eq!(w.attrs(p).await, Some(json!({"Customer_Type": "New"})), "{p}");
    }
    for p in &unknown {
        assert_eq!(w.attrs(p).await, None, "{p}");
    }

    // The check past its budget: 503 and nothing written; then the same request.
    let newer: Value = known.iter().chain(&unknown).map(|p| json!({"Email": p, "Type": "Newer"})).collect();
    w.stack.faults.arm(FaultPlan::new().fail("BatchGetItem", 1..=5, ServerError));
    assert_unavailable(&w.send(newer.clone(), true).await);
    injected(&w.stack, 5);
    assert_eq!(w.attrs(&known[0]).await, Some(json!({"Customer_Type": "New"})));
    let a = w.send(newer, true).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["accepted"], 10);
    for p in &known {
        assert_eq!(w.attrs(p).await, Some(json!({"Customer_Type": "Newer"})), "{p}");
    }
    for p in &unknown {
        assert_eq!(w.attrs(p).await, None, "{p}");
    }
}

/// The userCount of each segment.
async fn counts(w: &Users, segments: &[String]) -> Vec<i64> {
    let app = w.stack.segments_app();
    let mut out = Vec::new();
    for s in segments {
        let a = call_segments(&app, &w.auth, "GET", &w.stack.segment_path(&format!("/{s}")), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        out.push(a.body["userCount"].as_i64().unwrap());
    }
    out
}

#[tokio::test]
async fn erase_of_a_user_with_segment_memberships() {
    let w = users().await;
    let seg_app = w.stack.segments_app();
    let (u, v, x, y) = ("u@company.com", "v@company.com", "x@company.com", "y@company.com");
    for user in [u, v, x, y] {
        let a = w.send(json!([{"Email": user, "Type": "T"}]), false).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let members: Vec<&str> = vec![u, v, x, y, "other1", "other2"];
    let mut segments = Vec::new();
    for name in ["one", "two"] {
        let body = json!({"name": name, "userIds": members}).to_string();
        let a = call_segments(&seg_app, &w.auth, "POST", &w.stack.segment_path(""), Some(&body)).await;
        assert_eq!(a.status, 201, "{}", a.body);
        segments.push(a.body["segmentGuid"].as_str().unwrap().to_string());
    }
    // Within the budgets: on the segment probe (UnprocessedKeys), the membership transaction,
    // the partition read and the item deletes (one item: not sent, all unprocessed).
    w.stack.faults.arm(
        FaultPlan::new()
            .fail("BatchGetItem", 1..=1, Unprocessed)
            .fail_each(TWI, 1, &[Throttled, ServerError, Throttling])
            .fail("Query", 2..=2, Timeout)
            .fail("BatchWriteItem", 1..=2, Unprocessed),
    );
    assert_eq!(w.erase(u).await.status, 204);
    injected(&w.stack, 7);
    w.gone(u).await;
    assert_eq!(counts(&w, &segments).await, vec![5, 5]);

    // The membership transaction applied, its answer lost: the SDK's retry finds the members
    // gone (its conditions fail), and no count drops twice.
    w.stack.faults.arm(FaultPlan::new().lose(TWI, 1..=1, Timeout));
    assert_eq!(w.erase(v).await.status, 204);
    injected(&w.stack, 1);
    w.gone(v).await;
    assert_eq!(counts(&w, &segments).await, vec![4, 4]);

    // Past the budget after the transaction applied: 503; the retry completes the erase,
    // and the counts dropped once.
    w.stack.faults.arm(lost_then_failing(FaultPlan::new(), TWI));
    assert_unavailable(&w.erase(x).await);
    injected(&w.stack, 5);
    assert_eq!(w.erase(x).await.status, 204);
    w.gone(x).await;
    assert_eq!(counts(&w, &segments).await, vec![3, 3]);

    // Past the budget on the item deletes, after the memberships went: the same.
    w.stack.faults.arm(FaultPlan::new().fail("BatchWriteItem", 1..=5, ServerError));
    assert_unavailable(&w.erase(y).await);
    injected(&w.stack, 5);
    assert!(w.attrs(y).await.is_some(), "nothing deleted by the failed batch");
    assert_eq!(w.erase(y).await.status, 204);
    w.gone(y).await;
    assert_eq!(counts(&w, &segments).await, vec![2, 2]);
}

// ---------------------------------------------------------------------------------------------
// Segments

struct Segs {
    stack: Stack,
    app: Served<segments::App>,
    auth: String,
}

async fn segs() -> Segs {
    let stack = Stack::with_faults(FaultPlan::new()).await;
    let auth = stack.bearer("segments:read segments:write").await;
    let app = stack.segments_app();
    assert_eq!(call_segments(&app, &auth, "GET", &stack.segment_path(""), None).await.status, 200);
    Segs { stack, app, auth }
}

impl Segs {
    async fn call(&self, method: &str, rest: &str, body: Option<&str>) -> Answer {
        call_segments(&self.app, &self.auth, method, &self.stack.segment_path(rest), body).await
    }
    async fn create(&self, body: &Value) -> Answer {
        self.call("POST", "", Some(&body.to_string())).await
    }
    async fn update(&self, seg: &str, action: &str, user_ids: &[String]) -> Answer {
        let body = json!({"action": action, "userIds": user_ids}).to_string();
        self.call("PUT", &format!("/{seg}"), Some(&body)).await
    }
    /// (userCount, every member sorted).
    async fn state(&self, seg: &str) -> (i64, Vec<String>) {
        let a = self.call("GET", &format!("/{seg}"), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let m = self.call("GET", &format!("/{seg}/members?limit=10000"), None).await;
        assert_eq!(m.status, 200, "{}", m.body);
        assert_eq!(m.body["nextCursor"], Value::Null);
        let members = serde_json::from_value(m.body["userIds"].clone()).unwrap();
        (a.body["userCount"].as_i64().unwrap(), sorted(members))
    }
    /// The segment holds exactly `model`, and counts it.
    async fn check(&self, seg: &str, model: &std::collections::BTreeSet<String>) {
        assert_eq!(self.state(seg).await, (model.len() as i64, model.iter().cloned().collect()));
    }
    /// Names of the system's segments.
    async fn names(&self) -> Vec<String> {
        let a = self.call("GET", "", None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        sorted(
            a.body["segments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().into())
                .collect(),
        )
    }
}

#[tokio::test]
async fn segment_create() {
    let c = segs().await;
    let members = ids("m", 30);
    let expect = |n: usize, prefix: &str| (n as i64, sorted(ids(prefix, n)));

    // Within the budgets: the generation's batch writes (UnprocessedItems, throttles) and the
    // head's transaction.
    c.stack.faults.arm(
        FaultPlan::new()
            .fail("BatchWriteItem", 1..=4, Unprocessed)
            .fail_each("BatchWriteItem", 5, &[Throttled, Timeout])
            .fail_each(TWI, 1, &[Throttling, ServerError, Timeout]),
    );
    let a = c.create(&json!({"name": "within", "userIds": members})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["userCount"], 30);
    injected(&c.stack, 9);
    assert_eq!(c.state(a.body["segmentGuid"].as_str().unwrap()).await, expect(30, "m"));

    // The head's transaction applied and its answer lost: the SDK's retry fails its conditions
    // (the head and the external-id guard exist). The segment is this call's: 201, members
    // intact (not 409 external_id_taken with the generation purged from under the head).
    c.stack.faults.arm(FaultPlan::new().lose(TWI, 1..=1, ServerError));
    let a = c.create(&json!({"id": "ext-lost", "name": "lost", "userIds": ids("l", 10)})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["id"], "ext-lost");
    injected(&c.stack, 1);
    assert_eq!(c.state(a.body["segmentGuid"].as_str().unwrap()).await, expect(10, "l"));

    // Past the SDK budget, the first attempt applied: the head is there, so the call succeeded.
    c.stack.faults.arm(lost_then_failing(FaultPlan::new(), TWI));
    let a = c.create(&json!({"name": "lost-past-budget", "userIds": ids("q", 10)})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    injected(&c.stack, 5);
    assert_eq!(c.state(a.body["segmentGuid"].as_str().unwrap()).await, expect(10, "q"));

    // Past the budget, never applied: 503 and no segment; the same request creates exactly one.
    c.stack.faults.arm(FaultPlan::new().fail(TWI, 1..=5, ServerError));
    let body = json!({"id": "ext-retry", "name": "retried", "userIds": ids("r", 10)});
    assert_unavailable(&c.create(&body).await);
    injected(&c.stack, 5);
    assert_eq!(c.names().await, vec!["lost", "lost-past-budget", "within"]);
    let a = c.create(&body).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(c.state(a.body["segmentGuid"].as_str().unwrap()).await, expect(10, "r"));

    // Past the budget on the generation's writes: the same.
    c.stack.faults.arm(FaultPlan::new().fail("BatchWriteItem", 1..=100, ServerError));
    let body = json!({"name": "batch", "userIds": ids("b", 20)});
    assert_unavailable(&c.create(&body).await);
    c.stack.faults.disarm();
    assert_eq!(c.names().await, vec!["lost", "lost-past-budget", "retried", "within"]);
    let a = c.create(&body).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(c.state(a.body["segmentGuid"].as_str().unwrap()).await, expect(20, "b"));

    // With an Idempotency-Key: 503, then the same request and key create it once; a third
    // call replays that answer.
    let key = [
        ("authorization", c.auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "seg-create-1"),
    ];
    let body = json!({"name": "keyed", "userIds": ids("k", 5)}).to_string();
    let path = c.stack.segment_path("");
    let keyed = || async { answer(edge::front::serve(&c.app, req("POST", &path, &key, Some(&body))).await) };
    c.stack.faults.arm(FaultPlan::new().fail(TWI, 1..=5, Throttled));
    assert_unavailable(&keyed().await);
    injected(&c.stack, 5);
    let first = keyed().await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = keyed().await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (201, Some("true")));
    assert_eq!(again.raw, first.raw);
    assert_eq!(c.names().await, vec!["batch", "keyed", "lost", "lost-past-budget", "retried", "within"]);
}

#[tokio::test]
async fn segment_add_and_remove() {
    let c = segs().await;
    let a = c.create(&json!({"name": "s", "userIds": ids("a", 12)})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let seg = a.body["segmentGuid"].as_str().unwrap().to_string();
    let mut model: std::collections::BTreeSet<String> = ids("a", 12).into_iter().collect();
    // add, within the budgets: UnprocessedKeys on the membership read, SDK faults and
    // transaction conflicts (retried by the store) on the transaction, a throttle on the count.
    let add: Vec<String> = ids("a", 20).into_iter().skip(8).collect(); // 4 members, 8 new
    c.stack.faults.arm(
        FaultPlan::new().fail("BatchGetItem", 1..=2, Unprocessed).fail("Query", 1..=1, Throttling).fail_each(
            TWI,
            1,
            &[Throttled, TransactionConflict, ServerError, TransactionConflict],
        ),
    );
    let a = c.update(&seg, "add", &add).await;
    assert_eq!(a.status, 200, "{}", a.body);
    injected(&c.stack, 7);
    model.extend(add);
    assert_eq!(a.body["userCount"], model.len());
    c.check(&seg, &model).await;

    // add, the transaction applied and its answer lost: its retry is refused by the members'
    // conditions; each new member counted once.
    let add = ids("n", 5);
    c.stack.faults.arm(FaultPlan::new().lose(TWI, 1..=1, ServerError));
    let a = c.update(&seg, "add", &add).await;
    assert_eq!(a.status, 200, "{}", a.body);
    injected(&c.stack, 1);
    model.extend(add);
    assert_eq!(a.body["userCount"], model.len());
    c.check(&seg, &model).await;

    // add, past the budget after the transaction applied: 503; the retry counts nothing twice.
    let add = ids("p", 5);
    c.stack.faults.arm(lost_then_failing(FaultPlan::new(), TWI));
    assert_unavailable(&c.update(&seg, "add", &add).await);
    injected(&c.stack, 5);
    let a = c.update(&seg, "add", &add).await;
    assert_eq!(a.status, 200, "{}", a.body);
    model.extend(add);
    assert_eq!(a.body["userCount"], model.len());
    c.check(&seg, &model).await;

    // add, past the budget on the membership read: 503 before any write.
    let add = ids("q", 3);
    c.stack.faults.arm(FaultPlan::new().fail("BatchGetItem", 1..=5, ServerError));
    assert_unavailable(&c.update(&seg, "add", &add).await);
    injected(&c.stack, 5);
    c.check(&seg, &model).await;
    assert_eq!(c.update(&seg, "add", &add).await.status, 200);
    model.extend(add);
    c.check(&seg, &model).await;

    // remove: within the budgets, lost answer, past the budget.
    let remove = ids("a", 5);
    c.stack.faults.arm(FaultPlan::new().fail("BatchGetItem", 1..=1, Unprocessed).fail_each(
        TWI,
        1,
        &[TransactionConflict, Timeout],
    ));
    let a = c.update(&seg, "remove", &remove).await;
    assert_eq!(a.status, 200, "{}", a.body);
    injected(&c.stack, 3);
    remove.iter().for_each(|r| assert!(model.remove(r)));
    assert_eq!(a.body["userCount"], model.len());
    c.check(&seg, &model).await;

    let remove = ids("n", 5);
    c.stack.faults.arm(FaultPlan::new().lose(TWI, 1..=1, Timeout));
    let a = c.update(&seg, "remove", &remove).await;
    assert_eq!(a.status, 200, "{}", a.body);
    injected(&c.stack, 1);
    remove.iter().for_each(|r| assert!(model.remove(r)));
    assert_eq!(a.body["userCount"], model.len());
    c.check(&seg, &model).await;

    let remove = ids("p", 5);
    c.stack.faults.arm(lost_then_failing(FaultPlan::new(), TWI));
    assert_unavailable(&c.update(&seg, "remove", &remove).await);
    injected(&c.stack, 5);
    let a = c.update(&seg, "remove", &remove).await;
    assert_eq!(a.status, 200, "{}", a.body);
    remove.iter().for_each(|r| assert!(model.remove(r)));
    assert_eq!(a.body["userCount"], model.len());
    c.check(&seg, &model).await;
}

#[tokio::test]
async fn segment_override() {
    let c = segs().await;
    let a = c.create(&json!({"name": "o", "userIds": ids("a", 10)})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let seg = a.body["segmentGuid"].as_str().unwrap().to_string();
    let expect = |n: usize, prefix: &str| (n as i64, sorted(ids(prefix, n)));

    // Within the budgets: the new generation's writes and the head's flip.
    c.stack.faults.arm(FaultPlan::new().fail("BatchWriteItem", 1..=3, Unprocessed).fail_each(
        "UpdateItem",
        1,
        &[Throttled, ServerError, Timeout],
    ));
    let a = c.update(&seg, "override", &ids("b", 25)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["userCount"], 25);
    injected(&c.stack, 6);
    assert_eq!(c.state(&seg).await, expect(25, "b"));

    // The flip applied, its answer lost: the SDK's retry fails its condition, the head
    // already points at the new generation.
    c.stack.faults.arm(FaultPlan::new().lose("UpdateItem", 1..=1, ServerError));
    let a = c.update(&seg, "override", &ids("c", 15)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    injected(&c.stack, 1);
    assert_eq!(c.state(&seg).await, expect(15, "c"));

    // Past the budget, the flip applied: the head points at the new generation, so the call
    // succeeded (and that generation must not be purged from under the head).
    c.stack.faults.arm(lost_then_failing(FaultPlan::new(), "UpdateItem"));
    let a = c.update(&seg, "override", &ids("d", 10)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["userCount"], 10);
    injected(&c.stack, 5);
    assert_eq!(c.state(&seg).await, expect(10, "d"));

    // Past the budget, never applied: 503 and the old membership intact; then the retry.
    c.stack.faults.arm(FaultPlan::new().fail("UpdateItem", 1..=5, Throttled));
    assert_unavailable(&c.update(&seg, "override", &ids("e", 5)).await);
    injected(&c.stack, 5);
    assert_eq!(c.state(&seg).await, expect(10, "d"));
    assert_eq!(c.update(&seg, "override", &ids("e", 5)).await.status, 200);
    assert_eq!(c.state(&seg).await, expect(5, "e"));
}

#[tokio::test]
async fn segment_delete() {
    let c = segs().await;
    let create = |x: &str| json!({"id": x, "name": x, "userIds": ids(x, 3)});
    let mut guids = Vec::new();
    for x in ["within", "lost", "past"] {
        let a = c.create(&create(x)).await;
        assert_eq!(a.status, 201, "{}", a.body);
        guids.push(a.body["segmentGuid"].as_str().unwrap().to_string());
    }
    let path = |g: &str| format!("/{g}");

    c.stack.faults.arm(FaultPlan::new().fail_each(TWI, 1, &[Throttled, ServerError, Timeout]));
    assert_eq!(c.call("DELETE", &path(&guids[0]), None).await.status, 204);
    injected(&c.stack, 3);
    assert_eq!(c.call("GET", &path(&guids[0]), None).await.status, 404);

    // Applied, answer lost: the SDK's retry finds the head gone. The segment was deleted by
    // this call: 204, not 404.
    c.stack.faults.arm(FaultPlan::new().lose(TWI, 1..=1, ServerError));
    let a = c.call("DELETE", &path(&guids[1]), None).await;
    assert_eq!(a.status, 204, "{}", a.body);
    injected(&c.stack, 1);
    assert_eq!(c.call("GET", &path(&guids[1]), None).await.status, 404);

    // Past the budget, never applied: 503, the segment still there; the retry deletes it.
    c.stack.faults.arm(FaultPlan::new().fail(TWI, 1..=5, ServerError));
    assert_unavailable(&c.call("DELETE", &path(&guids[2]), None).await);
    injected(&c.stack, 5);
    assert_eq!(c.state(&guids[2]).await, (3, sorted(ids("past", 3))));
    assert_eq!(c.call("DELETE", &path(&guids[2]), None).await.status, 204);
    assert_eq!(c.call("GET", &path(&guids[2]), None).await.status, 404);

    assert_eq!(c.names().await, Vec::<String>::new());
    // Every external id is free again.
    for x in ["within", "lost", "past"] {
        assert_eq!(c.create(&create(x)).await.status, 201, "{x}");
    }
}

// ---------------------------------------------------------------------------------------------
// Integrations

/// An integrations call, with an `Idempotency-Key` when `key` is set.
async fn integ(
    stack: &Stack,
    auth: &str,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Answer {
    let mut headers = vec![("authorization", auth), ("content-type", "application/json")];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    answer(edge::front::serve(&stack.integrations_app(), req(method, path, &headers, body)).await)
}

async fn integration_ids(stack: &Stack, auth: &str) -> Vec<String> {
    let a = integ(stack, auth, None, "GET", "/public/v1/integrations", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    sorted(
        a.body["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["integrationId"].as_str().unwrap().into())
            .collect(),
    )
}

/// The integration's token writes user data.
async fn token_works(stack: &Stack, auth: &str, token: &str) -> bool {
    let body = json!({"token": token, "data": [{"Email": JOHN, "Type": "x"}]}).to_string();
    call_user_data(&stack.user_data_app(), auth, "POST", "/public/v1/user/data", Some(&body)).await.status
        == 200
}

const TWO_PROPS: &str = SEED_INTEGRATION;

#[tokio::test]
async fn integration_create() {
    let stack = Stack::with_faults(FaultPlan::new()).await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let path = "/public/v1/integrations";
    assert_eq!(integration_ids(&stack, &auth).await, Vec::<String>::new());
    let mut room = headroom(&stack, &stack.account).await;
    let mut created = Vec::new();

    // Within the SDK's budget.
    stack.faults.arm(four_faults(FaultPlan::new(), TWI));
    let a = integ(&stack, &auth, Some("create-within"), "POST", path, Some(TWO_PROPS)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    injected(&stack, 4);
    created.push(a.body["integrationId"].as_str().unwrap().to_string());
    room -= 2;
    assert_eq!(headroom(&stack, &stack.account).await, room);
    assert!(token_works(&stack, &auth, a.body["token"].as_str().unwrap()).await);

    // The transaction applied, its answer lost: the SDK's retry fails the "absent" condition
    // on the integration this call just wrote. 201 with the token (not 409, which the key
    // would replay forever while the token is lost), headroom consumed once.
    stack.faults.arm(FaultPlan::new().lose(TWI, 1..=1, ServerError));
    let a = integ(&stack, &auth, Some("create-lost"), "POST", path, Some(TWO_PROPS)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    injected(&stack, 1);
    created.push(a.body["integrationId"].as_str().unwrap().to_string());
    room -= 2;
    assert_eq!(headroom(&stack, &stack.account).await, room);
    assert!(token_works(&stack, &auth, a.body["token"].as_str().unwrap()).await);

    // Past the budget, the first attempt applied: the integration is there, so it succeeded.
    stack.faults.arm(lost_then_failing(FaultPlan::new(), TWI));
    let a = integ(&stack, &auth, Some("create-lost-past"), "POST", path, Some(TWO_PROPS)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    injected(&stack, 5);
    created.push(a.body["integrationId"].as_str().unwrap().to_string());
    room -= 2;
    assert_eq!(headroom(&stack, &stack.account).await, room);
    assert!(token_works(&stack, &auth, a.body["token"].as_str().unwrap()).await);

    // Past the budget, never applied: 503 (not kept by the key); the same request and key
    // create it once, and a third call replays that answer.
    stack.faults.arm(FaultPlan::new().fail(TWI, 1..=5, ServerError));
    assert_unavailable(&integ(&stack, &auth, Some("create-retry"), "POST", path, Some(TWO_PROPS)).await);
    injected(&stack, 5);
    assert_eq!(headroom(&stack, &stack.account).await, room);
    assert_eq!(integration_ids(&stack, &auth).await, sorted(created.clone()));
    let first = integ(&stack, &auth, Some("create-retry"), "POST", path, Some(TWO_PROPS)).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = integ(&stack, &auth, Some("create-retry"), "POST", path, Some(TWO_PROPS)).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (201, Some("true")));
    assert_eq!(again.raw, first.raw);
    created.push(first.body["integrationId"].as_str().unwrap().to_string());
    room -= 2;
    assert_eq!(headroom(&stack, &stack.account).await, room, "consumed once");
    assert_eq!(integration_ids(&stack, &auth).await, sorted(created), "created once");
    assert!(token_works(&stack, &auth, first.body["token"].as_str().unwrap()).await);
}

fn props(n: usize) -> String {
    let list: Vec<Value> =
        (0..n).map(|i| json!({"path": format!("P{i}"), "name": format!("A{i}"), "type": "String"})).collect();
    json!({"properties": list}).to_string()
}

#[tokio::test]
async fn integration_patch_and_delete() {
    let stack = Stack::with_faults(FaultPlan::new()).await;
    // An account with room for 4 attributes, 2 of them used.
    let (account, auth) = account_with_limit(&stack, "tight", 4).await;
    let (id, token) = create_integration(&stack, &auth, TWO_PROPS).await;
    let path = format!("/public/v1/integrations/{id}");
    assert_eq!(headroom(&stack, &account).await, 2);
    let names = || async {
        let a = integ(&stack, &auth, None, "GET", &path, None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    // PATCH to 4 properties, using the last of the headroom; the transaction applied and its
    // answer lost. The SDK's retry fails both the headroom condition (this call used it) and
    // the version condition (this call bumped it): the change is re-read and found done. 200,
    // not 409 attribute_limit_exceeded.
    stack.faults.arm(FaultPlan::new().lose(TWI, 1..=1, ServerError));
    let a = integ(&stack, &auth, None, "PATCH", &path, Some(&props(4))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    injected(&stack, 1);
    assert_eq!(names().await, vec!["A0", "A1", "A2", "A3"]);
    assert_eq!(headroom(&stack, &account).await, 0);

    // Within the budget.
    stack.faults.arm(four_faults(FaultPlan::new(), TWI));
    let a = integ(&stack, &auth, None, "PATCH", &path, Some(r#"{"name": "renamed"}"#)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    injected(&stack, 4);
    assert_eq!(a.body["name"], "renamed");

    // Past the budget after applying (down to 3 properties): 503; the retry frees the
    // attribute once.
    stack.faults.arm(lost_then_failing(FaultPlan::new(), TWI));
    assert_unavailable(&integ(&stack, &auth, None, "PATCH", &path, Some(&props(3))).await);
    injected(&stack, 5);
    let a = integ(&stack, &auth, None, "PATCH", &path, Some(&props(3))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(names().await, vec!["A0", "A1", "A2"]);
    assert_eq!(headroom(&stack, &account).await, 1, "freed once");

    // DELETE past the budget, never applied: 503, the integration intact.
    stack.faults.arm(FaultPlan::new().fail(TWI, 1..=5, Throttling));
    assert_unavailable(&integ(&stack, &auth, None, "DELETE", &path, None).await);
    injected(&stack, 5);
    assert_eq!(names().await, vec!["A0", "A1", "A2"]);
    assert_eq!(headroom(&stack, &account).await, 1);

    // DELETE applied, answer lost: the SDK's retry fails the version condition on the item
    // this call deleted. 204 (not 404), headroom freed once, the token dead.
    stack.faults.arm(FaultPlan::new().lose(TWI, 1..=1, Timeout));
    let a = integ(&stack, &auth, None, "DELETE", &path, None).await;
    assert_eq!(a.status, 204, "{}", a.body);
    injected(&stack, 1);
    assert_eq!(integ(&stack, &auth, None, "GET", &path, None).await.status, 404);
    assert_eq!(headroom(&stack, &account).await, 4);
    assert!(!token_works(&stack, &auth, &token).await);
}

// ---------------------------------------------------------------------------------------------
// POST /v1/customer/{workspace_id} (MoEngage)

#[tokio::test]
async fn moengage_track_user() {
    let stack = Stack::with_faults(FaultPlan::new()).await;
    let (account, bearer) = account_with_limit(&stack, "moe", 4).await;
    let moe = stack.moengage_client(&account).await;
    let app = stack.user_data_app();
    let track = |attributes: Value| {
        let body = json!({"type": "customer", "customer_id": JOHN, "attributes": attributes}).to_string();
        let (app, moe, account) = (&app, moe.clone(), account.clone());
        async move {
            let headers = [("content-type", "application/json"), ("authorization", moe.as_str())];
            answer(
                edge::front::serve(
                    app,
                    req("POST", &format!("/v1/customer/{account}"), &headers, Some(&body)),
                )
                .await,
            )
        }
    };
    let stored = || async {
        let a = call_user_data(&app, &bearer, "GET", &format!("/public/v1/user/{JOHN}"), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["integrations"][0]["attributes"].clone()
    };
    let ok = |a: &Answer| {
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["status"], "success", "{}", a.body);
    };
    // The first call of an app reads the account's clients (a Query) and the public keys: done
    // here, before any plan.
    ok(&track(json!({})).await);
    assert_eq!(call_user_data(&app, &bearer, "GET", "/public/v1/user/nobody", None).await.status, 404);

    // New attributes within the budgets: the integration's growth and the user's write.
    stack.faults.arm(FaultPlan::new().fail_each(TWI, 1, &[Throttled, ServerError]).fail_each(
        "UpdateItem",
        1,
        &[Throttling, Timeout],
    ));
    ok(&track(json!({"plan": "gold", "points": 3})).await);
    injected(&stack, 4);
    assert_eq!(stored().await, json!({"plan": "gold", "points": 3}));
    assert_eq!(headroom(&stack, &account).await, 2);

    // Past the budget on a growth that applied: 503 in MoEngage's shape; the retry finds the
    // attribute there and only writes the user, the headroom consumed once.
    stack.faults.arm(lost_then_failing(FaultPlan::new(), TWI));
    let a = track(json!({"region": "eu"})).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.body["status"], "fail");
    assert_eq!(a.body["error"]["type"], "Service Unavailable");
    assert!(a.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(a.body["error"]["request_id"].as_str().is_some_and(|r| r.starts_with("req-")));
    injected(&stack, 5);
    ok(&track(json!({"region": "eu"})).await);
    assert_eq!(stored().await, json!({"plan": "gold", "points": 3, "region": "eu"}));
    assert_eq!(headroom(&stack, &account).await, 1);

    // The last attribute the account has room for; the growth applied and its answer lost.
    // The SDK's retry fails both the headroom condition (this call used it) and the version
    // condition: re-read, the attribute is there. 200, not 409 "nothing was written".
    stack.faults.arm(FaultPlan::new().lose(TWI, 1..=1, ServerError));
    ok(&track(json!({"plan": "gold", "tier": "a"})).await);
    injected(&stack, 1);
    assert_eq!(stored().await, json!({"plan": "gold", "points": 3, "region": "eu", "tier": "a"}));
    assert_eq!(headroom(&stack, &account).await, 0);

    // Past the budget on the user's write: 503; the retry writes it.
    stack.faults.arm(lost_then_failing(FaultPlan::new(), "UpdateItem"));
    let a = track(json!({"points": 4})).await;
    assert_eq!((a.status, &a.body["error"]["type"]), (503, &json!("Service Unavailable")), "{}", a.body);
    injected(&stack, 5);
    ok(&track(json!({"points": 4})).await);
    assert_eq!(stored().await, json!({"plan": "gold", "points": 4, "region": "eu", "tier": "a"}));
    assert_eq!(headroom(&stack, &account).await, 0);
}
