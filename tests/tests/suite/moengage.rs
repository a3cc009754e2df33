//! POST /v1/customer/{workspace_id} (MoEngage Track User API), against the local server.

use domain::{AccountId, ScopeSet};
use integration_tests::*;
use serde_json::{Value, json};

const SUCCESS: &str = "Your request has been accepted and will be processed soon.";
const JOHN: &str = "john@example.com";

/// The seed's example attributes, in a complete Track User body.
fn seed_body() -> Value {
    json!({
        "type": "customer",
        "customer_id": JOHN,
        "attributes": {
            "name": "John",
            "points": 20,
            "expiry_date": "2020-05-31T03:47:35Z",
            "super_user": true,
            "user_persona": "browsers"
        }
    })
}

fn body(customer_id: &str, attributes: Value) -> Value {
    json!({"type": "customer", "customer_id": customer_id, "attributes": attributes})
}

struct World {
    stack: Stack,
    app: Served<user_data::App>,
    /// Basic credentials of this account's MoEngage client, as MoEngage sends them.
    moe: String,
    bearer: String,
}

async fn world() -> World {
    let stack = Stack::new().await;
    let moe = stack.moengage_basic();
    let bearer = stack.bearer(ALL_SCOPES).await;
    let app = stack.user_data_app();
    stack.counter.reset();
    World { stack, app, moe, bearer }
}

async fn track_raw(
    app: &Served<user_data::App>,
    auth: Option<&str>,
    workspace: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Answer {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    headers.extend_from_slice(extra);
    let path = format!("/v1/customer/{workspace}");
    answer(edge::front::serve(app, req("POST", &path, &headers, Some(body))).await)
}

impl World {
    async fn track(&self, body: &Value) -> Answer {
        track_raw(&self.app, Some(&self.moe), self.stack.account.as_str(), &body.to_string(), &[]).await
    }
    async fn get(&self, user: &str) -> Answer {
        call_user_data(&self.app, &self.bearer, "GET", &format!("/public/v1/user/{user}"), None).await
    }
    /// The user's MoEngage group in the end-user object, if any.
    async fn moengage(&self, user: &str) -> Option<Value> {
        user_group(&self.app, &self.bearer, user, "moengage").await
    }
}

fn assert_success(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"status": "success", "message": SUCCESS}));
}

/// MoEngage's error shape, exactly: `{"status": "fail", "error": {"message", "type", "request_id"}}`.
fn assert_fail(a: &Answer, status: u16, kind: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.body["status"], "fail", "{}", a.body);
    assert_eq!(a.body.as_object().unwrap().len(), 2, "{}", a.body);
    let e = a.body["error"].as_object().unwrap();
    assert_eq!(e.len(), 3, "{}", a.body);
    assert_eq!(e["type"], kind, "{}", a.body);
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(e["request_id"].as_str().is_some_and(|m| m.starts_with("req-")));
}

#[tokio::test]
async fn seed_body_succeeds_and_reads_back_typed() {
    let w = world().await;
    assert_success(&w.track(&seed_body()).await);

    let got = w.get(JOHN).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["integrations"].as_array().unwrap().len(), 1);
    let g = w.moengage(JOHN).await.unwrap();
    assert_eq!(g["name"], "MoEngage");
    assert_eq!(
        g["attributes"],
        json!({"name": "John", "points": 20, "expiry_date": "2020-05-31T03:47:35Z", "super_user": true,
               "user_persona": "browsers"})
    );
    assert_eq!(
        g["types"],
        json!({"name": "String", "points": "Number", "expiry_date": "Date", "super_user": "Boolean",
               "user_persona": "String"})
    );
    assert_eq!(g["clientIp"], "203.0.113.195", "no X-Forwarded-For: the request's source address");
    assert!(g["updatedAt"].as_str().unwrap().ends_with('Z'));

    // A merge: only the attributes sent change. Integer ids are the same user as their decimal
    // form; `platforms` and `update_existing_only: false` are accepted.
    let a = w
        .track(&json!({"type": "customer", "customer_id": JOHN, "update_existing_only": false,
            "platforms": [{"platform": "ANDROID", "active": "true"}],
            "attributes": {"points": 25.5, "expiry_date": "2021-01-01T10:00:00+02:00"}}))
        .await;
    assert_success(&a);
    let g = w.moengage(JOHN).await.unwrap();
    assert_eq!(g["attributes"]["points"], 25.5);
    assert_eq!(g["attributes"]["expiry_date"], "2021-01-01T08:00:00Z", "stored in UTC");
    assert_eq!(g["attributes"]["name"], "John");
    assert_success(&w.track(&body("123", json!({"points": 1}))).await);
    assert_success(
        &w.track(&json!({"type": "customer", "customer_id": 123, "attributes": {"name": "N"}})).await,
    );
    assert_eq!(w.moengage("123").await.unwrap()["attributes"], json!({"points": 1, "name": "N"}));
}

#[tokio::test]
async fn the_implicit_integration_is_not_managed_by_the_integrations_api() {
    let w = world().await;
    assert_success(&w.track(&seed_body()).await);
    let integrations = w.stack.integrations_app();
    let (seed_id, _) = create_integration(&w.stack, &w.bearer, SEED_INTEGRATION).await;
    let list = call_integrations(&integrations, &w.bearer, "GET", "/public/v1/integrations", None).await;
    let ids: Vec<&str> = list.body["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["integrationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [seed_id.as_str()], "not listed");
    for (method, path, body) in [
        ("GET", "/public/v1/integrations/moengage", None),
        ("PATCH", "/public/v1/integrations/moengage", Some(r#"{"name": "Mine"}"#)),
        ("DELETE", "/public/v1/integrations/moengage", None),
        ("POST", "/public/v1/integrations/moengage/test", Some(r#"{"data": [{"customer_id": "x"}]}"#)),
    ] {
        let a = call_integrations(&integrations, &w.bearer, method, path, body).await;
        assert_eq!(a.status, 404, "{method} {path}: {}", a.body);
    }
    assert_eq!(w.moengage(JOHN).await.unwrap()["attributes"]["points"], 20, "untouched");
}

#[tokio::test]
async fn bad_bodies_are_400_in_moengage_shape_naming_the_attribute_and_write_nothing() {
    let w = world().await;
    let cases: Vec<(Value, &str)> = vec![
        (body("u", json!({"id": "x"})), "'id'"),
        (body("u", json!({"_id": "x"})), "'_id'"),
        (body("u", json!({"": "x"})), "''"),
        (body("u", json!({"moe_x": "x"})), "'moe_x'"),
        (body("u", json!({"moe_mobile": "+919876543210", "ok": 1})), "'moe_mobile'"),
        (body("u", json!({"a": null})), "'a'"),
        (body("u", json!({"a": {"nested": 1}})), "'a'"),
        (body("u", json!({"a": [1, 2]})), "'a'"),
        (body("u", json!({"a": "x".repeat(1025)})), "'a'"),
        (body("u", json!({"n": 1e300})), "'n'"),
        (json!({"type": "Customer", "customer_id": "u", "attributes": {"a": 1}}), "type"),
        (json!({"type": "event", "customer_id": "u", "attributes": {"a": 1}}), "type"),
        (json!({"customer_id": "u", "attributes": {"a": 1}}), "type"),
        (json!({"type": "customer", "attributes": {"a": 1}}), "customer_id"),
        (body("", json!({"a": 1})), "customer_id"),
        (body(&"c".repeat(101), json!({"a": 1})), "customer_id"),
        (json!({"type": "customer", "customer_id": 1.5, "attributes": {"a": 1}}), "customer_id"),
        (json!({"type": "customer", "customer_id": "u", "attributes": "a=1"}), "attributes"),
        (
            json!({"type": "customer", "customer_id": "u", "update_existing_only": "yes"}),
            "update_existing_only",
        ),
        (json!([seed_body()]), "object"),
    ];
    w.track(&body("warm", json!({}))).await; // verifies the credentials once
    w.stack.counter.reset();
    for (b, named) in &cases {
        let a = w.track(b).await;
        assert_fail(&a, 400, "Bad Request");
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{b} -> {message}");
        assert!(message.ends_with("nothing was written"), "{message}");
    }
    // Every problem of a body is named.
    let a = w.track(&body("u", json!({"id": 1, "moe_x": 2, "fine": 3, "bad": null}))).await;
    let message = a.body["error"]["message"].as_str().unwrap();
    for named in ["'id'", "'moe_x'", "'bad'"] {
        assert!(message.contains(named), "{message}");
    }
    assert!(!message.contains("'fine'"));

    for (raw, expected) in [("{\"type\": ", "not valid JSON"), ("", "empty")] {
        let a = track_raw(&w.app, Some(&w.moe), "acme", raw, &[]).await;
        assert_fail(&a, 400, "Bad Request");
        assert!(a.body["error"]["message"].as_str().unwrap().contains(expected), "{}", a.body);
    }
    let seed = seed_body().to_string();
    // This content type replaces the default one.
    let a = track_raw(&w.app, Some(&w.moe), "acme", &seed, &[("content-type", "text/plain")]).await;
    assert_fail(&a, 415, "Unsupported Media Type");
    assert!(w.stack.counter.take_writes().is_empty(), "no refused request wrote anything");
    assert_eq!(w.get("u").await.status, 404);
    assert_eq!(w.get(JOHN).await.status, 404);

    // MoEngage's 128 KB limit: at the edge accepted, one byte past refused before any read.
    const MAX: usize = 128 * 1024;
    let sized = |n: usize| {
        let base =
            json!({"type": "customer", "customer_id": "pad", "attributes": {"a": 1}, "pad": ""}).to_string();
        let b = base.replace("\"pad\":\"\"", &format!("\"pad\":\"{}\"", "x".repeat(n - base.len())));
        assert_eq!(b.len(), n);
        b
    };
    assert_success(&track_raw(&w.app, Some(&w.moe), "acme", &sized(MAX), &[]).await);
    w.stack.counter.reset();
    assert_fail(
        &track_raw(&w.app, Some(&w.moe), "acme", &sized(MAX + 1), &[]).await,
        413,
        "Payload Too Large",
    );
    assert!(w.stack.counter.take().is_empty(), "refused before any read (credentials cached)");

    // Other methods on the path.
    let headers = [("authorization", w.moe.as_str())];
    let a = answer(edge::front::serve(&w.app, req("GET", "/v1/customer/acme", &headers, None)).await);
    assert_fail(&a, 405, "Method Not Allowed");
    assert_eq!(a.header("allow"), Some("POST"));
}

#[tokio::test]
async fn types_are_set_on_first_sight_and_never_change() {
    let w = world().await;
    assert_success(&w.track(&seed_body()).await);
    w.stack.counter.reset();
    for (attrs, named) in [
        (json!({"points": "20"}), "'points' is a Number"),
        (json!({"points": true}), "'points' is a Number"),
        (json!({"expiry_date": "tomorrow"}), "'expiry_date' is a Date"),
        (json!({"expiry_date": 1590896855}), "'expiry_date' is a Date"),
        (json!({"super_user": "true"}), "'super_user' is a Boolean"),
        (json!({"name": 5}), "'name' is a String"),
    ] {
        let a = w.track(&body(JOHN, attrs.clone())).await;
        assert_fail(&a, 400, "Bad Request");
        assert!(a.body["error"]["message"].as_str().unwrap().contains(named), "{attrs} -> {}", a.body);
    }
    // All or nothing: a new attribute next to a refused value is not recorded, and nothing of
    // the user changes.
    let a = w.track(&body(JOHN, json!({"level": 3, "name": "Johnny", "points": "x"}))).await;
    assert_fail(&a, 400, "Bad Request");
    assert!(w.stack.counter.take_writes().is_empty());
    let g = w.moengage(JOHN).await.unwrap();
    assert_eq!(g["attributes"]["name"], "John");
    assert!(g["attributes"].get("level").is_none());
    // ... so `level` is still free to become a String.
    assert_success(&w.track(&body(JOHN, json!({"level": "gold"}))).await);
    assert_eq!(w.moengage(JOHN).await.unwrap()["types"]["level"], "String");
    // A date-time is also a valid String value; a String attribute stays a String.
    assert_success(&w.track(&body(JOHN, json!({"user_persona": "2020-05-31T03:47:35Z"}))).await);
    assert_eq!(w.moengage(JOHN).await.unwrap()["types"]["user_persona"], "String");

    // A fresh instance (no cache) judges the same from the stored types.
    let cold = w.stack.user_data_app();
    let a =
        track_raw(&cold, Some(&w.moe), "acme", &body(JOHN, json!({"points": "1"})).to_string(), &[]).await;
    assert_fail(&a, 400, "Bad Request");
}

#[tokio::test]
async fn concurrent_first_sights_agree_on_one_type() {
    let w = world().await;
    let (a, b) = (w.stack.user_data_app(), w.stack.user_data_app());
    let one = body("u1", json!({"score": 1, "only_a": true})).to_string();
    let two = body("u2", json!({"score": "high", "only_b": "x"})).to_string();
    let (ra, rb) = tokio::join!(
        track_raw(&a, Some(&w.moe), "acme", &one, &[]),
        track_raw(&b, Some(&w.moe), "acme", &two, &[])
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{} / {}", ra.body, rb.body);
    // Distinct new names from concurrent calls are all recorded (the loser of the race re-reads).
    let three = body("u3", json!({"c3": 1})).to_string();
    let four = body("u4", json!({"c4": 1})).to_string();
    let (r3, r4) = tokio::join!(
        track_raw(&a, Some(&w.moe), "acme", &three, &[]),
        track_raw(&b, Some(&w.moe), "acme", &four, &[])
    );
    assert_success(&r3);
    assert_success(&r4);
    assert_eq!(w.moengage("u3").await.unwrap()["types"]["c3"], "Number");
    assert_eq!(w.moengage("u4").await.unwrap()["types"]["c4"], "Number");
}

#[tokio::test]
async fn every_authentication_failure_is_the_same_401() {
    let w = world().await;
    let now = domain::Timestamp::now().epoch_secs();
    let acme = w.stack.account.clone();
    let (disabled, disabled_key) = w
        .stack
        .create_client(&acme, "off", ScopeSet::parse("endUserUpdate:write").unwrap(), now)
        .await
        .unwrap();
    w.stack.store.disable_client(&disabled.client_id, now, 3600).await.unwrap();
    let (_, read_only_key) = w
        .stack
        .create_client(&acme, "ro", ScopeSet::parse("endUsers:read segments:write").unwrap(), now)
        .await
        .unwrap();
    let (_, writer_key) = w
        .stack
        .create_client(&acme, "moe", ScopeSet::parse("endUserUpdate:write").unwrap(), now)
        .await
        .unwrap();
    let (globex, _, globex_key) = w.stack.other_account("globex").await;
    let key = w.stack.client_secret.expose();
    let seed = seed_body().to_string();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no header", None, "acme"),
        ("bearer", Some(w.bearer.clone()), "acme"),
        ("not base64", Some("Basic ***".into()), "acme"),
        ("no colon", Some(format!("Basic {}", b64("acme"))), "acme"),
        ("wrong key", Some(basic("acme", "not-the-key")), "acme"),
        ("empty key", Some(basic("acme", "")), "acme"),
        ("client id instead of workspace", Some(basic(&w.stack.client_id, key)), w.stack.client_id.as_str()),
        ("unknown workspace", Some(basic("initech", key)), "initech"),
        ("invalid workspace", Some(basic("a#b", key)), "a%23b"),
        ("another account's key", Some(basic("acme", globex_key.expose())), "acme"),
        ("this key, another workspace", Some(basic("globex", key)), "globex"),
        ("path and credentials differ", Some(basic("acme", key)), "globex"),
        (
            "path and credentials differ (other way)",
            Some(basic(globex.as_str(), globex_key.expose())),
            "acme",
        ),
        ("disabled client", Some(basic("acme", disabled_key.expose())), "acme"),
        ("client without endUserUpdate:write", Some(basic("acme", read_only_key.expose())), "acme"),
        // A leaked MoEngage key must not mint tokens for erase or segments: a client holding
        // more than the route's scope is refused here.
        ("a client with every scope", Some(basic("acme", key)), "acme"),
    ];
    let mut messages = Vec::new();
    for (what, auth, path_ws) in &cases {
        let a = track_raw(&w.app, auth.as_deref(), path_ws, &seed, &[]).await;
        assert_fail(&a, 401, "Authentication required");
        assert_eq!(a.header("www-authenticate"), Some("Basic realm=\"moengage\""), "{what}");
        messages.push(a.body["error"]["message"].as_str().unwrap().to_string());
    }
    assert!(messages.windows(2).all(|m| m[0] == m[1]), "one body for every cause: {messages:?}");
    assert!(w.stack.counter.take_writes().is_empty());
    assert_eq!(w.get(JOHN).await.status, 404);

    // A client holding only endUserUpdate:write is enough.
    let a = track_raw(&w.app, Some(&basic("acme", writer_key.expose())), "acme", &seed, &[]).await;
    assert_success(&a);
}

#[tokio::test]
async fn a_flood_of_wrong_keys_costs_at_most_one_read_per_second_and_no_write() {
    let w = world().await;
    let seed = seed_body().to_string();
    w.stack.counter.reset();
    for i in 0..20 {
        let a = track_raw(&w.app, Some(&basic("acme", &format!("guess-{i}"))), "acme", &seed, &[]).await;
        assert_fail(&a, 401, "Authentication required");
    }
    let ops = w.stack.counter.take();
    assert!(ops.iter().all(|op| op == "Query"), "reads only: {ops:?}");
    assert!(ops.len() <= 2, "20 wrong keys within a second or two: {ops:?}");
    // The right key right after: served (the failures reused a read, they did not block it).
    let a = track_raw(&w.app, Some(&w.moe), "acme", &seed, &[]).await;
    assert_success(&a);
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn a_long_number_keeps_every_digit() {
    let w = world().await;
    let n = "98765432109876543210.123456789";
    let body = format!(r#"{{"type": "customer", "customer_id": "exact", "attributes": {{"balance": {n}}}}}"#);
    let a = track_raw(&w.app, Some(&w.moe), "acme", &body, &[]).await;
    assert_success(&a);
    let read = w.get("exact").await;
    let text = String::from_utf8(read.raw.clone()).unwrap();
    assert!(text.contains(&format!(r#""balance":{n}"#)), "{text}");
    assert_eq!(w.moengage("exact").await.unwrap()["types"]["balance"], "Number");
}

#[tokio::test]
async fn another_accounts_data_and_types_are_untouched() {
    let w = world().await;
    assert_success(&w.track(&seed_body()).await);
    let (globex, globex_client, _) = w.stack.other_account("globex").await;
    let globex_moe = w.stack.moengage_client(&globex).await;
    // The same user id and attribute names, other types: each account has its own.
    let theirs = body(JOHN, json!({"points": "many", "name": "Other John"})).to_string();
    assert_success(&track_raw(&w.app, Some(&globex_moe), "globex", &theirs, &[]).await);

    let g = w.moengage(JOHN).await.unwrap();
    assert_eq!(g["attributes"]["points"], 20);
    assert_eq!(g["attributes"]["name"], "John");
    let globex_bearer = w.stack.bearer_for(&globex, &globex_client, ALL_SCOPES).await;
    let a = call_user_data(&w.app, &globex_bearer, "GET", &format!("/public/v1/user/{JOHN}"), None).await;
    assert_eq!(a.body["integrations"][0]["attributes"], json!({"points": "many", "name": "Other John"}));
    assert_eq!(a.body["integrations"][0]["types"], json!({"points": "String", "name": "String"}));
    // A user only the other account knows is unknown here.
    assert_success(
        &track_raw(
            &w.app,
            Some(&globex_moe),
            "globex",
            &body("only-globex", json!({"a": 1})).to_string(),
            &[],
        )
        .await,
    );
    assert_eq!(w.get("only-globex").await.status, 404);
}

#[tokio::test]
async fn update_existing_only_writes_nothing_for_unknown_users() {
    let w = world().await;
    // A user with WalkMe data only has no MoEngage data yet.
    let (_, token) = create_integration(&w.stack, &w.bearer, SEED_INTEGRATION).await;
    let walkme = json!({"token": token, "data": [{"Email": "walkme@x.io", "Type": "Internal"}]}).to_string();
    assert_eq!(
        call_user_data(&w.app, &w.bearer, "POST", "/public/v1/user/data", Some(&walkme)).await.status,
        200
    );

    let only_existing = |user: &str, attrs: Value| json!({"type": "customer", "customer_id": user, "update_existing_only": true, "attributes": attrs});
    w.stack.counter.reset();
    for user in ["new@x.io", "walkme@x.io"] {
        // Accepted as MoEngage accepts it, but nothing is created.
        assert_success(&w.track(&only_existing(user, json!({"plan": "pro"}))).await);
    }
    assert!(w.stack.counter.take_writes().is_empty(), "not even the new attribute was recorded");
    assert_eq!(w.get("new@x.io").await.status, 404);
    assert!(w.moengage("walkme@x.io").await.is_none());

    assert_success(&w.track(&body("known@x.io", json!({"plan": "free"}))).await);
    assert_success(&w.track(&only_existing("known@x.io", json!({"plan": "pro", "seats": 3}))).await);
    assert_eq!(w.moengage("known@x.io").await.unwrap()["attributes"], json!({"plan": "pro", "seats": 3}));
    // Known attributes only (no integration change): the conditional write refuses alone.
    assert_success(&w.track(&only_existing("new@x.io", json!({"plan": "pro"}))).await);
    assert_eq!(w.get("new@x.io").await.status, 404);
}

#[tokio::test]
async fn the_client_address_is_recorded_from_x_forwarded_for() {
    let w = world().await;
    let b = body(JOHN, json!({"name": "John"})).to_string();
    let xff = [("x-forwarded-for", "198.51.100.23, 70.41.3.18, 150.172.238.178")];
    assert_success(&track_raw(&w.app, Some(&w.moe), "acme", &b, &xff).await);
    assert_eq!(w.moengage(JOHN).await.unwrap()["clientIp"], "198.51.100.23");
    // The last update's address wins; a garbage header falls back to the source address.
    assert_success(&track_raw(&w.app, Some(&w.moe), "acme", &b, &[("x-forwarded-for", "2001:db8::7")]).await);
    assert_eq!(w.moengage(JOHN).await.unwrap()["clientIp"], "2001:db8::7");
    assert_success(&track_raw(&w.app, Some(&w.moe), "acme", &b, &[("x-forwarded-for", "unknown")]).await);
    assert_eq!(w.moengage(JOHN).await.unwrap()["clientIp"], "203.0.113.195");
    // Only the MoEngage item carries it.
    let (_, token) = create_integration(&w.stack, &w.bearer, SEED_INTEGRATION).await;
    let walkme = json!({"token": token, "data": [{"Email": JOHN, "Type": "Internal"}]}).to_string();
    assert_eq!(
        call_user_data(&w.app, &w.bearer, "POST", "/public/v1/user/data", Some(&walkme)).await.status,
        200
    );
    let groups = w.get(JOHN).await.body["integrations"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 2);
    assert!(groups.iter().filter(|g| g["integrationId"] != "moengage").all(|g| g.get("clientIp").is_none()));
}

#[tokio::test]
async fn the_attribute_cap_refuses_new_attributes_whole() {
    let w = world().await;
    let tiny = AccountId::parse("tiny").unwrap();
    let now = domain::Timestamp::now().epoch_secs();
    w.stack.store.create_account(&tiny, 3, 10_000, now).await.unwrap();
    let (client, _) = w.stack.create_client(&tiny, "all", ScopeSet::all(), now).await.unwrap();
    let moe = w.stack.moengage_client(&tiny).await;
    let bearer = w.stack.bearer_for(&tiny, client.client_id.as_str(), ALL_SCOPES).await;
    let send = |attrs: Value| {
        let b = body("u", attrs).to_string();
        let (app, moe) = (&w.app, &moe);
        async move { track_raw(app, Some(moe), "tiny", &b, &[]).await }
    };

    assert_success(&send(json!({"a": 1, "b": 2})).await);
    w.stack.counter.reset();
    let a = send(json!({"a": 10, "c": 3, "d": 4})).await;
    assert_fail(&a, 409, "Conflict");
    let message = a.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'c'") && message.contains("'d'") && message.contains("attribute limit"),
        "{message}"
    );
    assert_eq!(w.stack.counter.take_writes(), ["TransactWriteItems"], "the refused transaction only");
    assert_eq!(attributes(&w.app, &bearer).await, json!({"a": 1, "b": 2}), "nothing written, not even 'a'");

    // The last free attribute, then the integrations API sees the cap reached too.
    assert_success(&send(json!({"c": 3})).await);
    assert_eq!(attributes(&w.app, &bearer).await, json!({"a": 1, "b": 2, "c": 3}));
    let def = r#"{"name": "One more", "userIdentifierProperty": "id", "properties": [{"path": "x", "type": "String"}]}"#;
    let a =
        call_integrations(&w.stack.integrations_app(), &bearer, "POST", "/public/v1/integrations", Some(def))
            .await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (409, Some("attribute_limit_exceeded")));
    // Known attributes keep working at the cap.
    assert_success(&send(json!({"a": 5, "b": 6, "c": 7})).await);
    assert_eq!(attributes(&w.app, &bearer).await, json!({"a": 5, "b": 6, "c": 7}));
}

/// The MoEngage attributes of user `u`.
async fn attributes(app: &Served<user_data::App>, bearer: &str) -> Value {
    let a = call_user_data(app, bearer, "GET", "/public/v1/user/u", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["integrations"][0]["attributes"].clone()
}

#[tokio::test]
async fn dynamodb_requests_per_call() {
    let w = world().await;
    let count = |a: Answer, w: &World| {
        assert!(a.status < 500, "{}", a.body);
        w.stack.counter.take()
    };

    // Cold instance, first call of the account: the clients (index Query), the integration
    // (none yet), the integration created with the cap, the user merged.
    let a = w.track(&seed_body()).await;
    assert_eq!(count(a, &w), ["Query", "GetItem", "TransactWriteItems", "UpdateItem"]);
    // Warm: credentials and types are known: one UpdateItem.
    let a = w.track(&body("u2", json!({"points": 3, "name": "U"}))).await;
    assert_eq!(count(a, &w), ["UpdateItem"]);
    // A new attribute: the integration read afresh and grown.
    let a = w.track(&body("u2", json!({"tier": "gold"}))).await;
    assert_eq!(count(a, &w), ["GetItem", "TransactWriteItems", "UpdateItem"]);
    // Refusals: a known attribute of the wrong type or a bad body cost nothing; bad
    // credentials at most the index Query (none while the account's clients were read less
    // than a second ago).
    let a = w.track(&body("u2", json!({"points": "3"}))).await;
    assert_eq!(count(a, &w), Vec::<String>::new());
    let a = w.track(&body("u2", json!({"id": 1}))).await;
    assert_eq!(count(a, &w), Vec::<String>::new());
    let a = track_raw(&w.app, Some(&basic("acme", "wrong")), "acme", &seed_body().to_string(), &[]).await;
    let ops = count(a, &w);
    assert!(ops.is_empty() || ops == ["Query"], "{ops:?}");
    let a = track_raw(&w.app, None, "acme", &seed_body().to_string(), &[]).await;
    assert_eq!(count(a, &w), Vec::<String>::new());
    // update_existing_only: an unknown user with a new attribute is checked before the
    // integration grows; with known attributes the conditional UpdateItem alone decides.
    let only = json!({"type": "customer", "customer_id": "nobody", "update_existing_only": true,
                      "attributes": {"brand_new": 1}});
    assert_eq!(count(w.track(&only).await, &w), ["GetItem", "GetItem"]);
    let only = json!({"type": "customer", "customer_id": "nobody", "update_existing_only": true,
                      "attributes": {"points": 1}});
    assert_eq!(count(w.track(&only).await, &w), ["UpdateItem"]);
    // Another warm instance: the credentials and the types are read once.
    let other = w.stack.user_data_app();
    let a = track_raw(&other, Some(&w.moe), "acme", &body("u3", json!({"points": 1})).to_string(), &[]).await;
    assert_eq!(count(a, &w), ["Query", "GetItem", "UpdateItem"]);
    // The warm end-user read: the user's items and its memberships; the account's
    // integrations come from the instance's cache (once the public keys are cached too).
    let warmed = std::time::Instant::now();
    w.get(JOHN).await;
    w.stack.counter.reset();
    w.get(JOHN).await;
    let definitions_stamp = ["GetItem"];
    let ops = w.stack.counter.take();
    assert_warm(
        &ops,
        &["Query", "Query"],
        warmed,
        store::integrations::DEFINITION_STALENESS,
        &definitions_stamp,
    );
}

/// Regression ("one front" issue): the protections' answers on this route were in the REST
/// envelope (schema fuzzing found a `422` without `"status"`). Every error is MoEngage's shape.
#[tokio::test]
async fn idempotency_answers_are_in_moengage_shape() {
    let w = world().await;
    let account = w.stack.account.as_str();
    let first = seed_body().to_string();
    let key = [("idempotency-key", "moe-1")];
    let a = track_raw(&w.app, Some(&w.moe), account, &first, &key).await;
    assert_success(&a);
    // Same key, same body: the stored answer.
    let a = track_raw(&w.app, Some(&w.moe), account, &first, &key).await;
    assert_success(&a);
    assert_eq!(a.header("idempotent-replayed"), Some("true"));
    // Same key, another body: 422, in MoEngage's shape.
    let other = body(JOHN, json!({"name": "Jane"})).to_string();
    let a = track_raw(&w.app, Some(&w.moe), account, &other, &key).await;
    assert_fail(&a, 422, "Unprocessable Entity");
    // A malformed key: 400, in MoEngage's shape.
    let a = track_raw(&w.app, Some(&w.moe), account, &first, &[("idempotency-key", "")]).await;
    assert_fail(&a, 400, "Bad Request");
}
