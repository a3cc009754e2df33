//! POST /public/v1/user/data, GET and DELETE /public/v1/user/{userId}, against the local server.

use integration_tests::*;
use serde_json::{Value, json};

struct World {
    stack: Stack,
    app: Served<user_data::App>,
    auth: String,
    token: String,
    integration_id: String,
}

async fn world() -> World {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration_id, token) = create_integration(&stack, &auth, SEED_INTEGRATION).await;
    let app = stack.user_data_app();
    World { stack, app, auth, token, integration_id }
}

impl World {
    async fn post(&self, body: &str) -> Answer {
        call_user_data(&self.app, &self.auth, "POST", "/public/v1/user/data", Some(body)).await
    }
    async fn send(&self, data: Value) -> Answer {
        self.post(&json!({"token": self.token, "data": data}).to_string()).await
    }
    async fn get(&self, user: &str) -> Answer {
        call_user_data(&self.app, &self.auth, "GET", &format!("/public/v1/user/{user}"), None).await
    }
    /// The attributes of this world's integration for `user`, or None when the user has none.
    async fn attrs(&self, user: &str) -> Option<Value> {
        Some(user_group(&self.app, &self.auth, user, &self.integration_id).await?["attributes"].clone())
    }
}

const JOHN: &str = "[email protected]";

#[tokio::test]
async fn seed_single_user_merges_and_three_users_replace() {
    let w = world().await;
    // The seeds' single-user example, verbatim but for the token.
    let single = format!(
        "{{\n\"token\": \"{}\",\n\"data\": [\n{{\n\"Email\": \"[email protected]\",\n\"Status\": \"New\",\n\"Type\": \"Internal\"\n}}\n]\n}}",
        w.token
    );
    let a = w.post(&single).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"accepted": 1, "mode": "merge", "ignoredFields": [], "skipped": []}));
    let got = w.get(JOHN).await;
    assert_eq!(got.body["userId"], JOHN);
    assert_eq!(got.body["segments"], json!([]));
    let group = &got.body["integrations"][0];
    assert_eq!(group["name"], "Update Customer Attributes");
    assert_eq!(group["attributes"], json!({"Customer_Type": "Internal", "Customer_Status": "New"}));
    assert_eq!(group["types"], json!({"Customer_Type": "String", "Customer_Status": "String"}));
    assert!(group["updatedAt"].as_str().unwrap().ends_with('Z'));

    // Merge keeps what is not sent.
    let a = w.send(json!([{"Email": JOHN, "Status": "Veteran"}])).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        w.attrs(JOHN).await.unwrap(),
        json!({"Customer_Type": "Internal", "Customer_Status": "Veteran"})
    );

    // The seeds' three-user example (replace), then one more replace that drops John's Type.
    let three = json!([
        {"Email": "[email protected]", "Status": "New", "Type": "Internal"},
        {"Email": "[email protected]", "Status": "Retired", "Type": "Internal"},
        {"Email": "[email protected]", "Status": "Veteran", "Type": "External"}
    ]);
    let a = w.send(three).await;
    assert_eq!(
        (a.status, a.body["mode"].as_str()),
        (400, None),
        "the seed's three users share one obfuscated address"
    );
    let three = json!([
        {"Email": "john@walkme.example", "Status": "New", "Type": "Internal"},
        {"Email": "jane@walkme.example", "Status": "Retired", "Type": "Internal"},
        {"Email": "joe@walkme.example", "Status": "Veteran", "Type": "External"}
    ]);
    let a = w.send(three).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"accepted": 3, "mode": "replace", "ignoredFields": [], "skipped": []}));
    assert_eq!(
        w.attrs("jane@walkme.example").await.unwrap(),
        json!({"Customer_Type": "Internal", "Customer_Status": "Retired"})
    );
    let a = w.send(json!([{"Email": "john@walkme.example", "Status": "Gone"}, {"Email": "joe@walkme.example", "Type": "Internal"}])).await;
    assert_eq!(a.status, 200);
    assert_eq!(w.attrs("john@walkme.example").await.unwrap(), json!({"Customer_Status": "Gone"}));
    assert_eq!(w.attrs("joe@walkme.example").await.unwrap(), json!({"Customer_Type": "Internal"}));
    assert_eq!(
        w.attrs("jane@walkme.example").await.unwrap(),
        json!({"Customer_Type": "Internal", "Customer_Status": "Retired"})
    );
}

/// Two single-user merges of different attributes of one user, sent at the same time: both
/// are kept (a merge is one `UpdateItem` of the attributes sent, never a read-modify-write).
#[tokio::test]
async fn concurrent_merges_of_different_attributes_both_stay() {
    let w = world().await;
    for round in 0..16 {
        let user = format!("race{round}@walkme.example");
        let status = format!("Status {round}");
        let (a, b) = tokio::join!(
            w.send(json!([{"Email": user, "Type": "Internal"}])),
            w.send(json!([{"Email": user, "Status": status}]))
        );
        assert_eq!((a.status, b.status), (200, 200), "{} {}", a.body, b.body);
        assert_eq!((a.body["mode"].as_str(), b.body["mode"].as_str()), (Some("merge"), Some("merge")));
        assert_eq!(
            w.attrs(&user).await.unwrap(),
            json!({"Customer_Type": "Internal", "Customer_Status": status}),
            "round {round}"
        );
    }
}

#[tokio::test]
async fn other_integrations_of_the_same_user_are_never_touched() {
    let w = world().await;
    let (other_id, other_token) = create_integration(
        &w.stack,
        &w.auth,
        r#"{"name": "Billing", "userIdentifierProperty": "user.email", "properties": [{"path": "plan", "name": "Plan", "type": "String"}, {"path": "mrr", "name": "MRR", "type": "Number"}]}"#,
    )
    .await;
    let a = w.post(&json!({"token": other_token, "data": [{"user": {"email": "a@x.io"}, "plan": "pro", "mrr": "99.50"}]}).to_string()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = w.send(json!([{"Email": "a@x.io", "Type": "T"}, {"Email": "b@x.io", "Type": "U"}])).await;
    assert_eq!(a.status, 200);
    let got = w.get("a@x.io").await.body;
    let groups = got["integrations"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let billing = groups.iter().find(|g| g["integrationId"] == other_id.as_str()).unwrap();
    assert_eq!(billing["attributes"], json!({"Plan": "pro", "MRR": 99.5}));
    assert_eq!(billing["types"], json!({"Plan": "String", "MRR": "Number"}));

    // After the integration is deleted, its attributes no longer appear.
    let d = call_integrations(
        &w.stack.integrations_app(),
        &w.auth,
        "DELETE",
        &format!("/public/v1/integrations/{other_id}"),
        None,
    )
    .await;
    assert_eq!(d.status, 204);
    let got = w.get("a@x.io").await.body;
    assert_eq!(got["integrations"].as_array().unwrap().len(), 1);
}

/// A body of exactly `size` bytes: one valid user padded with an ignored field.
fn body_of_size(token: &str, size: usize) -> String {
    let base = json!({"token": token, "data": [{"Email": "pad@x.io", "Type": "T", "pad": ""}]}).to_string();
    let pad = "x".repeat(size - base.len());
    let body = base.replace("\"pad\":\"\"", &format!("\"pad\":\"{pad}\""));
    assert_eq!(body.len(), size);
    body
}

#[tokio::test]
async fn limits_at_the_edge_and_one_past() {
    let w = world().await;
    let users = |n: usize| -> Value {
        (0..n).map(|i| json!({"Email": format!("u{i}@x.io"), "Status": "S"})).collect()
    };
    let a = w.send(users(100)).await;
    assert_eq!((a.status, a.body["accepted"].as_u64()), (200, Some(100)), "{}", a.body);
    w.stack.counter.reset();
    let a = w.send(users(101)).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (400, Some("validation_failed")));
    assert_eq!(a.body["error"]["details"][0]["path"], "data");
    assert!(w.stack.counter.take_writes().is_empty());

    const MAX: usize = 2 * 1024 * 1024;
    let a = w.post(&body_of_size(&w.token, MAX)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["ignoredFields"], json!(["pad"]));
    w.stack.counter.reset();
    let a = w.post(&body_of_size(&w.token, MAX + 1)).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (413, Some("payload_too_large")));
    assert!(w.stack.counter.take().is_empty(), "refused before any read");

    let id100 = "i".repeat(100);
    assert_eq!(w.send(json!([{"Email": id100, "Type": "T"}])).await.status, 200);
    assert_eq!(w.attrs(&id100).await.unwrap(), json!({"Customer_Type": "T"}));
    w.stack.counter.reset();
    let a = w.send(json!([{"Email": "i".repeat(101), "Type": "T"}])).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.body["error"]["details"][0],
        json!({"index": 0, "path": "Email", "reason": "a user id must be 1 to 100 characters long"})
    );
    assert!(w.stack.counter.take_writes().is_empty());
    let a = w.get(&"i".repeat(101)).await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_writes_nothing() {
    let w = world().await;
    let typed = r#"{"name": "Typed", "userIdentifierProperty": "id", "properties": [
        {"path": "n", "type": "Number"}, {"path": "d", "type": "Date"}, {"path": "b", "type": "Boolean"},
        {"path": "nested.s", "name": "S", "type": "String"}]}"#;
    let (_, typed_token) = create_integration(&w.stack, &w.auth, typed).await;
    let (other_account, other_client, _) = w.stack.other_account("globex").await;
    let other_auth = w.stack.bearer_for(&other_account, &other_client, ALL_SCOPES).await;
    let (_, other_token) = create_integration(&w.stack, &other_auth, SEED_INTEGRATION).await;
    w.stack.counter.reset();

    let t = &typed_token;
    let cases: Vec<(String, u16, &str)> = vec![
        (json!({"token": t, "data": [{"id": "u", "n": null}]}).to_string(), 400, "validation_failed"),
        (
            json!({"token": t, "data": [{"id": "u", "nested": {"s": null}}]}).to_string(),
            400,
            "validation_failed",
        ),
        (json!({"token": t, "data": [{"id": null, "n": 1}]}).to_string(), 400, "validation_failed"),
        (json!({"token": t, "data": [{"id": "u", "n": "12abc"}]}).to_string(), 400, "validation_failed"),
        (json!({"token": t, "data": [{"id": "u", "b": "yes"}]}).to_string(), 400, "validation_failed"),
        (json!({"token": t, "data": [{"id": "u", "d": "2024-02-30"}]}).to_string(), 400, "validation_failed"),
        (
            json!({"token": t, "data": [{"id": "u", "nested": {"s": 5}}]}).to_string(),
            400,
            "validation_failed",
        ),
        (json!({"token": t, "data": [{"id": "u"}]}).to_string(), 400, "validation_failed"),
        (
            json!({"token": t, "data": [{"id": "u", "n": 1}, {"id": "u", "n": 2}]}).to_string(),
            400,
            "validation_failed",
        ),
        (json!({"token": t, "data": []}).to_string(), 400, "validation_failed"),
        (json!({"token": t}).to_string(), 400, "validation_failed"),
        (json!({"data": [{"id": "u", "n": 1}]}).to_string(), 400, "validation_failed"),
        (
            json!({"token": t, "data": [{"id": "u", "n": 1}], "updateExistingOnly": 1}).to_string(),
            400,
            "validation_failed",
        ),
        // `null` is not `false` (it was read as absent, and the update applied).
        (
            json!({"token": t, "data": [{"id": "u", "n": 1}], "updateExistingOnly": null}).to_string(),
            400,
            "validation_failed",
        ),
        (r#"{"token": "#.to_string(), 400, "invalid_json"),
        ("".to_string(), 400, "invalid_json"),
        ("\"just a string\"".to_string(), 400, "invalid_body"),
        // Not an object, like a string: unreadable (serde would read an array by position).
        ("[1, 2]".to_string(), 400, "invalid_body"),
        (json!({"token": "0".repeat(64), "data": [{"id": "u", "n": 1}]}).to_string(), 404, "not_found"),
        (json!({"token": other_token, "data": [{"Email": "u", "Type": "T"}]}).to_string(), 404, "not_found"),
    ];
    for (body, status, code) in &cases {
        let a = w.post(body).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{body} -> {}",
            a.body
        );
        assert!(a.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(a.body["error"]["requestId"].is_string());
    }
    // Every problem of a request is listed, with index and path.
    let a = w
        .post(
            &json!({"token": t, "data": [{"id": "ok", "n": 1}, {"id": "u", "d": "2023-02-29", "b": "no"}]})
                .to_string(),
        )
        .await;
    let details = a.body["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 2);
    assert_eq!((details[0]["index"].as_u64(), details[0]["path"].as_str()), (Some(1), Some("d")));
    assert_eq!((details[1]["index"].as_u64(), details[1]["path"].as_str()), (Some(1), Some("b")));

    // Wrong content type; missing scope; no token at all.
    let body = json!({"token": t, "data": [{"id": "u", "n": 1}]}).to_string();
    let headers = [("authorization", w.auth.as_str()), ("content-type", "text/plain")];
    let a =
        answer(edge::front::serve(&w.app, req("POST", "/public/v1/user/data", &headers, Some(&body))).await);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (415, Some("unsupported_media_type")));
    let read_only = w.stack.bearer("endUsers:read").await;
    let a = call_user_data(&w.app, &read_only, "POST", "/public/v1/user/data", Some(&body)).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (403, Some("insufficient_scope")));
    let a = answer(edge::front::serve(&w.app, req("POST", "/public/v1/user/data", &[], Some(&body))).await);
    assert_eq!((a.status, a.header("www-authenticate")), (401, Some("Bearer")));
    assert!(w.stack.counter.take_writes().is_empty(), "no refused request wrote anything");
    assert_eq!(w.get("u").await.status, 404);
}

#[tokio::test]
async fn numbers_dates_booleans_and_integer_ids_round_trip() {
    let w = world().await;
    let def = r#"{"name": "Typed", "userIdentifierProperty": "properties.ID", "properties": [
        {"path": "n", "name": "N", "type": "Number"}, {"path": "d", "name": "D", "type": "Date"},
        {"path": "b", "name": "B", "type": "Boolean"}, {"path": "nested.field", "name": "F", "type": "Number"}]}"#;
    let (id, token) = create_integration(&w.stack, &w.auth, def).await;
    let a = w.post(&json!({"token": token, "data": [{"properties.ID": 123, "n": "12.50", "d": "2024-02-29", "b": false, "nested": {"field": 456}, "field1": "value"}]}).to_string()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["ignoredFields"], json!(["field1"]));
    let got = w.get("123").await.body;
    let g = got["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["integrationId"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(g["attributes"], json!({"N": 12.5, "D": "2024-02-29", "B": false, "F": 456}));
    assert_eq!(g["types"], json!({"N": "Number", "D": "Date", "B": "Boolean", "F": "Number"}));
}

#[tokio::test]
async fn numbers_keep_every_digit_sent_up_to_dynamodbs_38() {
    let w = world().await;
    let def = r#"{"name": "Exact", "userIdentifierProperty": "id", "properties": [
        {"path": "n", "name": "N", "type": "Number"}, {"path": "m", "name": "M", "type": "Number"},
        {"path": "s", "name": "S", "type": "String"}]}"#;
    let (_, token) = create_integration(&w.stack, &w.auth, def).await;
    let n = "1.2345678901234567890123456789012345678"; // 38 significant digits
    let m = "-123456789012345678901234567890"; // past 64 bits
    let id = "123456789012345678901234567"; // an integer id past 64 bits
    let body = format!(r#"{{"token": "{token}", "data": [{{"id": {id}, "n": {n}, "m": {m}, "s": "x"}}]}}"#);
    let a = w.post(&body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let read = w.get(id).await;
    assert_eq!(read.status, 200, "the id kept its digits too: {}", read.body);
    let text = String::from_utf8(read.raw.clone()).unwrap();
    assert!(text.contains(&format!(r#""N":{n}"#)), "JSON number, every digit: {text}");
    assert!(text.contains(&format!(r#""M":{m}"#)), "{text}");
    // 39 significant digits is one past DynamoDB's: refused, not rounded.
    let body = format!(
        r#"{{"token": "{token}", "data": [{{"id": 1, "n": 1.23456789012345678901234567890123456789}}]}}"#
    );
    let a = w.post(&body).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["details"][0]["path"], "n");
    // A long number where a String is expected is named a number.
    let body = format!(r#"{{"token": "{token}", "data": [{{"id": 1, "s": 1.23456789012345678901}}]}}"#);
    let a = w.post(&body).await;
    assert_eq!(a.status, 400);
    assert!(a.body["error"]["details"][0]["reason"].as_str().unwrap().contains("got a number"), "{}", a.body);
}

#[tokio::test]
async fn update_existing_only_skips_unknown_users() {
    let w = world().await;
    assert_eq!(w.send(json!([{"Email": "known@x.io", "Type": "A"}])).await.status, 200);
    let a = w.post(&json!({"token": w.token, "updateExistingOnly": true, "data": [{"Email": "new@x.io", "Type": "B"}]}).to_string()).await;
    assert_eq!(a.body, json!({"accepted": 0, "mode": "merge", "ignoredFields": [], "skipped": ["new@x.io"]}));
    assert_eq!(w.get("new@x.io").await.status, 404);
    let a = w
        .post(&json!({"token": w.token, "updateExistingOnly": true, "data": [{"Email": "new@x.io", "Type": "B"}, {"Email": "known@x.io", "Status": "S"}]}).to_string())
        .await;
    assert_eq!(
        a.body,
        json!({"accepted": 1, "mode": "replace", "ignoredFields": [], "skipped": ["new@x.io"]})
    );
    assert_eq!(w.attrs("known@x.io").await.unwrap(), json!({"Customer_Status": "S"}));
    assert_eq!(w.get("new@x.io").await.status, 404);
}

#[tokio::test]
async fn delete_erases_the_user_and_is_idempotent() {
    let w = world().await;
    assert_eq!(w.send(json!([{"Email": "gone@x.io", "Type": "A"}])).await.status, 200);
    for _ in 0..2 {
        let a = call_user_data(&w.app, &w.auth, "DELETE", "/public/v1/user/gone%40x.io", None).await;
        assert_eq!(a.status, 204);
    }
    assert_eq!(w.get("gone@x.io").await.status, 404);
    let read_only = w.stack.bearer("endUsers:read").await;
    let a = call_user_data(&w.app, &read_only, "DELETE", "/public/v1/user/x", None).await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn users_of_another_account_are_invisible() {
    let w = world().await;
    assert_eq!(w.send(json!([{"Email": "shared@x.io", "Type": "A"}])).await.status, 200);
    let (other, client, _) = w.stack.other_account("globex").await;
    let other_auth = w.stack.bearer_for(&other, &client, ALL_SCOPES).await;
    let a = call_user_data(&w.app, &other_auth, "GET", "/public/v1/user/shared@x.io", None).await;
    assert_eq!(a.status, 404);
    let a = call_user_data(&w.app, &other_auth, "DELETE", "/public/v1/user/shared@x.io", None).await;
    assert_eq!(a.status, 204);
    assert!(w.attrs("shared@x.io").await.is_some(), "the other account's delete did not touch it");
}

#[tokio::test]
async fn dynamodb_requests_per_call() {
    let w = world().await;
    w.send(json!([{"Email": "warm@x.io", "Type": "A"}])).await; // warms the key cache
    w.stack.counter.reset();

    // The integration is read by its token at most once a second per instance (the cache of
    // `TokenCache`): a call re-reads it only when the last read is a second old.
    let lookup = |mut ops: Vec<String>| {
        if ops.first().is_some_and(|o| o == "GetItem") {
            ops.remove(0);
        }
        ops
    };
    w.send(json!([{"Email": "one@x.io", "Type": "A"}])).await;
    assert_eq!(lookup(w.stack.counter.take()), ["UpdateItem"], "merge: (lookup) + one UpdateItem");

    let hundred: Value = (0..100).map(|i| json!({"Email": format!("u{i}"), "Type": "A"})).collect();
    let before = w.stack.units();
    let a = w.send(hundred).await;
    assert_eq!(a.status, 200);
    let ops = lookup(w.stack.counter.take());
    // One conditional PutItem per user (a batch takes no condition: docs/DECISIONS.md,
    // "Erasure that sticks"); the same units.
    assert_eq!(ops, ["PutItem"; 100], "replace: one conditional put per user");
    // In units, everything included (the protections too, usage written per call here): the
    // 100 items, ≤ 1 RCU (the integration, when this instance re-reads it), and the
    // protections' share of a lease and a usage sum.
    let spent = w.stack.units() - before;
    assert!(spent.rcu <= 1.0 + 1e-9 && spent.wcu <= 102.0 + 1e-9, "100-user replace: {spent:?}");

    let with_flag: Value = (0..100).map(|i| json!({"Email": format!("u{i}"), "Type": "B"})).collect();
    w.post(&json!({"token": w.token, "updateExistingOnly": true, "data": with_flag}).to_string()).await;
    let ops = lookup(w.stack.counter.take());
    assert_eq!(ops[..1], ["BatchGetItem"]);
    assert_eq!(ops[1..], ["PutItem"; 100]);

    let warmed = std::time::Instant::now();
    w.get("one@x.io").await;
    let mut cold = w.stack.counter.take();
    cold.sort();
    assert_eq!(
        cold,
        ["GetItem", "Query", "Query", "Query"],
        "cold: the user's partition + the account's definitions stamp, then its integrations + its segment heads (none: no probe)"
    );
    w.get("one@x.io").await;
    // Warm: the user's partition + its segment heads; the integrations are cached (≤ 1 s).
    let definitions_stamp = ["GetItem"];
    assert_warm(
        &w.stack.counter.take(),
        &["Query", "Query"],
        warmed,
        store::integrations::DEFINITION_STALENESS,
        &definitions_stamp,
    );
    // An erase: the integrations, the account's gates (8 Queries), marker and index, the
    // user's items, their tombstones, its segment heads, the audit record (the window is a
    // GetItem of the limits item, counted with the protections). The account's first erase
    // of the day raises its 256 gates; the next ones only read them.
    for (user, raised) in [("one@x.io", 256), ("two@x.io", 0)] {
        call_user_data(&w.app, &w.auth, "DELETE", &format!("/public/v1/user/{user}"), None).await;
        let ops = w.stack.counter.take();
        let count = |op: &str| ops.iter().filter(|o| *o == op).count();
        assert_eq!(
            (count("Query"), count("UpdateItem"), count("BatchWriteItem"), count("PutItem")),
            (11, raised, 2, 1),
            "{ops:?}"
        );
        assert_eq!(ops.len(), 14 + raised, "{ops:?}");
    }
    w.send(json!([{"Email": "x", "Type": null}])).await;
    assert!(lookup(w.stack.counter.take()).is_empty(), "invalid items cost the lookup only");
}

/// A warm instance reads the integration by its token at most once per
/// `DEFINITION_STALENESS`, and a `PATCH` answers only once that bound has passed: an update
/// sent right after the answer is judged by the new definition, by an instance that had the
/// old one cached.
#[tokio::test]
async fn a_patch_takes_effect_for_the_next_call_and_warm_calls_read_no_integration() {
    let w = world().await;
    assert_eq!(w.send(json!([{"Email": JOHN, "Type": "A"}])).await.status, 200);
    w.stack.counter.take();
    let tables = w.stack.store.tables();
    let (users, config) = (tables.end_users.as_str(), tables.config.as_str());
    let before = (units_of(&[users]), units_of(&[config]));
    let started = std::time::Instant::now();
    for i in 0..10 {
        let a = w.send(json!([{"Email": JOHN, "Type": format!("T{i}")}])).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // The route's own units: the users' items, and reads of the integration (the
    // protections' writes are tested in tests/tests/suite/protections.rs).
    let spent = Units { wcu: (units_of(&[users]) - before.0).wcu, rcu: (units_of(&[config]) - before.1).rcu };
    let ops = w.stack.counter.take();
    w.stack.counter.take_protection();
    // Ten merges: one UpdateItem each; the integration is re-read once per second that
    // passed (quick calls: at most twice), never per call.
    let secs = started.elapsed().as_secs_f64().ceil() as usize;
    let reads = ops.iter().filter(|o| *o == "GetItem").count();
    assert!(reads <= secs + 1, "{ops:?} in {secs} s");
    assert_eq!(ops.iter().filter(|o| *o == "UpdateItem").count(), 10, "{ops:?}");
    assert!(spent.wcu <= 10.0 + 1e-9 && spent.rcu <= reads as f64 + 1e-9, "{spent:?}");

    // The cache is warm with the seed definition. Add a Number property `Score`: before the
    // patch `Score` is ignored; right after it, a non-number is refused.
    let a = w.send(json!([{"Email": JOHN, "Type": "B", "Score": "high"}])).await;
    assert_eq!((a.status, a.body["ignoredFields"].clone()), (200, json!(["Score"])), "{}", a.body);
    let integrations = w.stack.integrations_app();
    let patch = json!({"properties": [
        {"path": "Type", "name": "Customer_Type", "type": "String"},
        {"path": "Status", "name": "Customer_Status", "type": "String"},
        {"path": "Score", "name": "Score", "type": "Number"}]})
    .to_string();
    let path = format!("/public/v1/integrations/{}", w.integration_id);
    let started = std::time::Instant::now();
    let p = call_integrations(&integrations, &w.auth, "PATCH", &path, Some(&patch)).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(started.elapsed() >= store::integrations::DEFINITION_STALENESS);
    let a = w.send(json!([{"Email": JOHN, "Type": "B", "Score": "high"}])).await;
    assert_eq!(a.status, 400, "the new definition judges the next call: {}", a.body);
    let a = w.send(json!([{"Email": JOHN, "Score": "7"}])).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // A delete, the same: the next call does not find the token.
    let d = call_integrations(&integrations, &w.auth, "DELETE", &path, None).await;
    assert_eq!(d.status, 204);
    assert_eq!(w.send(json!([{"Email": JOHN, "Type": "C"}])).await.status, 404);
}

/// The token item holds the current definition only, so its size is bounded by the
/// definition's limits however often the integration changes; a definition at its largest
/// (100 properties with the longest paths and names) is still read on the hot path at most
/// once a second per instance.
#[tokio::test]
async fn the_token_item_stays_bounded_as_names_come_and_go() {
    let stack = Stack::new().await;
    let (_, auth) = stack.account_with_bearer("big", 1000, 10_000).await;
    let props = |round: usize| {
        let list: Vec<Value> = (0..100)
            .map(|i| {
                json!({"path": format!("{:0>250}{round:03}{i:03}", "p"), "name": format!("{:0>122}{round:03}{i:03}", "n"),
                       "type": "String"})
            })
            .collect();
        if round == 0 {
            json!({"name": "x".repeat(200), "userIdentifierProperty": "id", "properties": list})
        } else {
            json!({"properties": list})
        }
        .to_string()
    };
    let (id, token) = create_integration(&stack, &auth, &props(0)).await;
    let integrations = stack.integrations_app();
    let path = format!("/public/v1/integrations/{id}");
    // Three renames of every property: the registry of names ever used grows, the token item
    // does not.
    for round in 1..4 {
        let p = call_integrations(&integrations, &auth, "PATCH", &path, Some(&props(round))).await;
        assert_eq!(p.status, 200, "{}", p.body);
    }
    let hash = auth::SecretHash::of_str(&token).to_hex();
    let size = stack.config_item_size(&format!("ITOKEN#{hash}"), "ITOKEN").await;
    assert!(size <= 48 * 1024, "docs/TABLES.md: the token item's largest size; {size}");

    let app = stack.user_data_app();
    let mut user = serde_json::Map::new();
    user.insert("id".into(), json!("u1"));
    user.insert(format!("{:0>250}{:03}{:03}", "p", 3, 0), json!("v"));
    let body = json!({"token": token, "data": [Value::Object(user)]}).to_string();
    stack.counter.take();
    let (before, started) = (stack.units(), std::time::Instant::now());
    for _ in 0..20 {
        let a = call_user_data(&app, &auth, "POST", "/public/v1/user/data", Some(&body)).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let (spent, secs) = (stack.units() - before, started.elapsed().as_secs_f64());
    let reads = stack.counter.take().iter().filter(|o| *o == "GetItem").count();
    // One read of the ≤ 48 KB item (12 RCU) per second at most, whatever the call rate: at
    // 12 calls a second or more, ≤ 1 RCU per merge.
    assert!(reads as f64 <= secs.ceil() + 1.0, "{reads} reads in {secs} s");
    // (+ 0.5: the new instance's one read of the account's rate limit.)
    assert!(spent.rcu <= 12.0 * reads as f64 + 0.5 + 1e-9, "{spent:?}");
}
