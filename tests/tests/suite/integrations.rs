//! /public/v1/integrations: create, list, get, patch, delete, test; the attribute cap under
//! concurrent edits; type immutability; tenancy.

use std::sync::Arc;

use integration_tests::*;
use serde_json::{Value, json};

async fn call(stack: &Stack, auth: &str, method: &str, path: &str, body: Option<&str>) -> Answer {
    call_integrations(&stack.integrations_app(), auth, method, path, body).await
}

fn props(prefix: &str, n: usize) -> Value {
    (0..n).map(|i| json!({"path": format!("{prefix}{i}"), "type": "String"})).collect()
}

fn definition(prefix: &str, n: usize) -> String {
    json!({"name": format!("integration {prefix}"), "userIdentifierProperty": "id", "properties": props(prefix, n)}).to_string()
}

#[tokio::test]
async fn create_returns_token_and_endpoint_then_get_list_patch_delete() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let a = call(&stack, &auth, "POST", "/public/v1/integrations", Some(SEED_INTEGRATION)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["integrationId"].as_str().unwrap().to_string();
    assert_eq!(a.header("location"), Some(format!("/public/v1/integrations/{id}").as_str()));
    let token = a.body["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    assert_eq!(a.body["endpoint"], format!("{ISSUER}/public/v1/user/data"));
    assert_eq!(a.body["userIdentifierProperty"], "Email");
    assert_eq!(
        a.body["properties"],
        json!([{"path": "Type", "name": "Customer_Type", "type": "String"}, {"path": "Status", "name": "Customer_Status", "type": "String"}])
    );

    let got = call(&stack, &auth, "GET", &format!("/public/v1/integrations/{id}"), None).await;
    assert_eq!(got.status, 200);
    assert!(got.body.get("token").is_none(), "the token is shown once, at creation");
    let list = call(&stack, &auth, "GET", "/public/v1/integrations", None).await;
    assert_eq!(list.body["integrations"].as_array().unwrap().len(), 1);

    let patch = json!({"name": "Renamed", "properties": [{"path": "Type", "name": "Customer_Type", "type": "String"}, {"path": "Plan", "type": "String"}]});
    let p = call(&stack, &auth, "PATCH", &format!("/public/v1/integrations/{id}"), Some(&patch.to_string()))
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["name"], "Renamed");
    assert_eq!(p.body["properties"][1], json!({"path": "Plan", "name": "Plan", "type": "String"}));

    // The token keeps working after a patch, with the new definition.
    let ud = stack.user_data_app();
    let body = json!({"token": token, "data": [{"Email": "a@x.io", "Plan": "pro", "Status": "ignored now"}]})
        .to_string();
    let w = call_user_data(&ud, &auth, "POST", "/public/v1/user/data", Some(&body)).await;
    assert_eq!((w.status, &w.body["ignoredFields"]), (200, &json!(["Status"])), "{}", w.body);

    let d = call(&stack, &auth, "DELETE", &format!("/public/v1/integrations/{id}"), None).await;
    assert_eq!(d.status, 204);
    assert_eq!(call(&stack, &auth, "GET", &format!("/public/v1/integrations/{id}"), None).await.status, 404);
    assert_eq!(
        call(&stack, &auth, "DELETE", &format!("/public/v1/integrations/{id}"), None).await.status,
        404
    );
    let w = call_user_data(&ud, &auth, "POST", "/public/v1/user/data", Some(&body)).await;
    assert_eq!(w.status, 404, "a deleted integration's token is dead");
    assert_eq!(call_user_data(&ud, &auth, "GET", "/public/v1/user/a@x.io", None).await.status, 404);
}

#[tokio::test]
async fn invalid_definitions_are_400_with_every_problem() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let bad = r#"{"userIdentifierProperty": "", "properties": [{"path": "a", "type": "Text"}, {"path": "a", "type": "String"}]}"#;
    let a = call(&stack, &auth, "POST", "/public/v1/integrations", Some(bad)).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (400, Some("validation_failed")));
    let paths: Vec<&str> =
        a.body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["name", "userIdentifierProperty", "properties[0].type"]);
    for body in ["", "{", "[]", r#"{"name": "x", "userIdentifierProperty": "id", "properties": []}"#] {
        let a = call(&stack, &auth, "POST", "/public/v1/integrations", Some(body)).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
    }
    // Non-UUID and unknown ids are 404, never 5xx.
    for id in ["nope", "00000000-0000-4000-8000-000000000000", "%00"] {
        let a = call(&stack, &auth, "GET", &format!("/public/v1/integrations/{id}"), None).await;
        assert_eq!(a.status, 404, "{id}");
    }
}

#[tokio::test]
async fn attribute_types_never_change() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (id, _) = create_integration(&stack, &auth, SEED_INTEGRATION).await;
    let path = format!("/public/v1/integrations/{id}");
    let to_number = r#"{"properties": [{"path": "Type", "name": "Customer_Type", "type": "Number"}]}"#;
    let a = call(&stack, &auth, "PATCH", &path, Some(to_number)).await;
    assert_eq!(a.status, 400);
    assert!(
        a.body["error"]["details"][0]["reason"].as_str().unwrap().contains("Customer_Type"),
        "{}",
        a.body
    );
    // Removed, then re-added with another type: still refused.
    let only_status = r#"{"properties": [{"path": "Status", "name": "Customer_Status", "type": "String"}]}"#;
    assert_eq!(call(&stack, &auth, "PATCH", &path, Some(only_status)).await.status, 200);
    assert_eq!(call(&stack, &auth, "PATCH", &path, Some(to_number)).await.status, 400);
    let back = r#"{"properties": [{"path": "Type", "name": "Customer_Type", "type": "String"}]}"#;
    assert_eq!(call(&stack, &auth, "PATCH", &path, Some(back)).await.status, 200);
    // The identifier cannot change.
    let a = call(&stack, &auth, "PATCH", &path, Some(r#"{"userIdentifierProperty": "id"}"#)).await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn an_account_has_at_most_100_integrations() {
    let stack = Stack::new().await;
    let (_, auth) = stack.account_with_bearer("big", 1000, 10_000).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        let a =
            call(&stack, &auth, "POST", "/public/v1/integrations", Some(&definition(&format!("i{i}"), 1)))
                .await;
        assert_eq!(a.status, 201, "integration {i}: {}", a.body);
        ids.push(a.body["integrationId"].as_str().unwrap().to_string());
    }
    // One past: refused with its own code, though attribute headroom remains.
    let a = call(&stack, &auth, "POST", "/public/v1/integrations", Some(&definition("x", 1))).await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (409, Some("integration_limit_exceeded")),
        "{}",
        a.body
    );
    // A delete frees a place.
    let path = format!("/public/v1/integrations/{}", ids[0]);
    assert_eq!(call(&stack, &auth, "DELETE", &path, None).await.status, 204);
    let a = call(&stack, &auth, "POST", "/public/v1/integrations", Some(&definition("y", 1))).await;
    assert_eq!(a.status, 201, "{}", a.body);
}

#[tokio::test]
async fn attribute_cap_counts_every_integration_at_the_edge() {
    let stack = Stack::new().await; // account limit: 100
    let auth = stack.bearer(ALL_SCOPES).await;
    let (a_id, _) = create_integration(&stack, &auth, &definition("a", 60)).await;
    let a = call(&stack, &auth, "POST", "/public/v1/integrations", Some(&definition("b", 41))).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (409, Some("attribute_limit_exceeded")));
    create_integration(&stack, &auth, &definition("b", 40)).await; // exactly 100
    let grow = json!({"properties": props("a", 61)}).to_string();
    let a = call(&stack, &auth, "PATCH", &format!("/public/v1/integrations/{a_id}"), Some(&grow)).await;
    assert_eq!(a.status, 409);
    let shrink = json!({"properties": props("a", 59)}).to_string();
    assert_eq!(
        call(&stack, &auth, "PATCH", &format!("/public/v1/integrations/{a_id}"), Some(&shrink)).await.status,
        200
    );
    create_integration(&stack, &auth, &definition("c", 1)).await; // 100 again
    assert_eq!(
        call(&stack, &auth, "POST", "/public/v1/integrations", Some(&definition("d", 1))).await.status,
        409
    );
    assert_eq!(
        call(&stack, &auth, "DELETE", &format!("/public/v1/integrations/{a_id}"), None).await.status,
        204
    );
    create_integration(&stack, &auth, &definition("d", 59)).await; // deleting freed 59
}

#[tokio::test]
async fn attribute_cap_holds_under_concurrent_edits() {
    let stack = Stack::new().await;
    let small = domain::AccountId::parse("small").unwrap();
    stack.store.create_account(&small, 10, 100, 0).await.unwrap();
    let (client, _) = stack.create_client(&small, "c", domain::ScopeSet::all(), 0).await.unwrap();
    let auth = Arc::new(stack.bearer_for(&small, client.client_id.as_str(), ALL_SCOPES).await);
    let app = Arc::new(stack.integrations_app());

    // Eight racing creates of 3 attributes each against a cap of 10: exactly three may win.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (app, auth) = (app.clone(), auth.clone());
        tasks.spawn(async move {
            let def = definition(&format!("r{i}_"), 3);
            call_integrations(&app, &auth, "POST", "/public/v1/integrations", Some(&def)).await.status
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 201, 201, 409, 409, 409, 409, 409]);

    // Racing patches that each grow a different integration by 1 (headroom left: 1).
    let list = call_integrations(&app, &auth, "GET", "/public/v1/integrations", None).await;
    let ids: Vec<String> = list.body["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["integrationId"].as_str().unwrap().to_string())
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.clone() {
        let (app, auth) = (app.clone(), auth.clone());
        tasks.spawn(async move {
            let body = json!({"properties": props(&format!("g{id}"), 4)}).to_string();
            call_integrations(&app, &auth, "PATCH", &format!("/public/v1/integrations/{id}"), Some(&body))
                .await
                .status
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409]);
    let list = call_integrations(&app, &auth, "GET", "/public/v1/integrations", None).await;
    let total: usize = list.body["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["properties"].as_array().unwrap().len())
        .sum();
    assert_eq!(total, 10);
}

#[tokio::test]
async fn test_endpoint_reports_what_would_be_stored_and_writes_nothing() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (id, token) = create_integration(&stack, &auth, SEED_INTEGRATION).await;
    let path = format!("/public/v1/integrations/{id}/test");
    stack.counter.reset();
    let body = json!({"token": token, "data": [{"Email": "a@x.io", "Type": "Internal", "x": 1}, {"Email": "b@x.io", "Status": "New"}]}).to_string();
    let a = call(&stack, &auth, "POST", &path, Some(&body)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"valid": true, "mode": "replace", "errors": [], "ignoredFields": ["x"], "users": [
            {"userId": "a@x.io", "set": {"Customer_Type": "Internal"}, "unset": ["Customer_Status"]},
            {"userId": "b@x.io", "set": {"Customer_Status": "New"}, "unset": ["Customer_Type"]}]})
    );
    let a =
        call(&stack, &auth, "POST", &path, Some(r#"{"data": [{"Email": "a@x.io", "Type": null}]}"#)).await;
    assert_eq!(a.body["valid"], false);
    assert_eq!(a.body["errors"][0]["path"], "Type");
    // A body that is not an object is unreadable, not a sample with problems (serde would
    // read a struct from an array by position).
    for not_an_object in ["[null, null]", "[]", "\"x\"", "1"] {
        let a = call(&stack, &auth, "POST", &path, Some(not_an_object)).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (400, Some("invalid_body")),
            "{not_an_object}"
        );
    }
    let ops = stack.counter.take();
    assert!(ops.iter().all(|op| op == "GetItem" || op == "Query"), "the test endpoint only reads: {ops:?}");
    let ud = stack.user_data_app();
    assert_eq!(call_user_data(&ud, &auth, "GET", "/public/v1/user/a@x.io", None).await.status, 404);
}

#[tokio::test]
async fn scopes_and_tenancy() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (id, _) = create_integration(&stack, &auth, SEED_INTEGRATION).await;
    let read_only = stack.bearer("integrations:read").await;
    assert_eq!(call(&stack, &read_only, "GET", "/public/v1/integrations", None).await.status, 200);
    let a = call(&stack, &read_only, "POST", "/public/v1/integrations", Some(SEED_INTEGRATION)).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (403, Some("insufficient_scope")));
    let a = call(&stack, &read_only, "DELETE", &format!("/public/v1/integrations/{id}"), None).await;
    assert_eq!(a.status, 403);
    let none = stack.bearer("segments:read").await;
    assert_eq!(call(&stack, &none, "GET", "/public/v1/integrations", None).await.status, 403);

    let (other, client, _) = stack.other_account("globex").await;
    let other_auth = stack.bearer_for(&other, &client, ALL_SCOPES).await;
    for (method, suffix, body) in [
        ("GET", "", None),
        ("PATCH", "", Some(r#"{"name": "x"}"#)),
        ("DELETE", "", None),
        ("POST", "/test", Some(r#"{"data": [{"Email": "a", "Type": "b"}]}"#)),
    ] {
        let a =
            call(&stack, &other_auth, method, &format!("/public/v1/integrations/{id}{suffix}"), body).await;
        assert_eq!(a.status, 404, "{method} {suffix}: another account's integration does not exist for it");
    }
    let list = call(&stack, &other_auth, "GET", "/public/v1/integrations", None).await;
    assert_eq!(list.body["integrations"], json!([]));
    assert_eq!(
        call(&stack, &auth, "GET", &format!("/public/v1/integrations/{id}"), None).await.body["name"],
        "Update Customer Attributes"
    );
    let a = call(&stack, &auth, "PUT", &format!("/public/v1/integrations/{id}"), None).await;
    assert_eq!(a.status, 405);
}

/// The integration's own item holds its current definition only: names it no longer imports
/// are recorded one item each (`ATYPE#<id>#<name>`), so however many names come and go the
/// item stays bounded, PATCH keeps working, and a retired name still cannot come back with
/// another type (but can with its own). An item written before the attribute registry moved out of it, holding the whole
/// registry in `attributeTypes`, is moved out on its next change.
#[tokio::test]
async fn the_integration_item_stays_bounded_as_names_come_and_go() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (id, _) = create_integration(&stack, &auth, &definition("r0-", 100)).await;
    let path = format!("/public/v1/integrations/{id}");
    let (pk, sk) = (format!("ACCOUNT#{}", stack.account), format!("INTEGRATION#{id}"));
    let size = || stack.config_item_size(&pk, &sk);
    let first = size().await;
    for round in 1..5 {
        let renamed = json!({"properties": props(&format!("r{round}-"), 100)}).to_string();
        let a = call(&stack, &auth, "PATCH", &path, Some(&renamed)).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // 500 names used, 400 retired: the item is the size of one definition.
    assert!(size().await <= first + 16, "{first} → {}", size().await);
    let back_as_number = json!({"properties": [{"path": "r1-7", "type": "Number"}]}).to_string();
    let a = call(&stack, &auth, "PATCH", &path, Some(&back_as_number)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body["error"]["details"][0]["reason"].as_str().unwrap().contains("r1-7"), "{}", a.body);
    let back = json!({"properties": [{"path": "r1-7", "type": "String"}]}).to_string();
    assert_eq!(call(&stack, &auth, "PATCH", &path, Some(&back)).await.status, 200);

    // An item as written before the registry moved out: the registry inside it. Its names still judge, and
    // its next change moves them out.
    stack
        .store
        .client()
        .update_item()
        .table_name(&stack.store.tables().config)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("ACCOUNT#{}", stack.account)))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(format!("INTEGRATION#{id}")))
        .update_expression("SET attributeTypes = :t")
        .expression_attribute_values(
            ":t",
            aws_sdk_dynamodb::types::AttributeValue::S(r#"{"Legacy":"Number","r1-7":"String"}"#.into()),
        )
        .send()
        .await
        .unwrap();
    let legacy_as_string =
        json!({"properties": [{"path": "r1-7", "type": "String"}, {"path": "Legacy", "type": "String"}]})
            .to_string();
    assert_eq!(call(&stack, &auth, "PATCH", &path, Some(&legacy_as_string)).await.status, 400);
    assert_eq!(call(&stack, &auth, "PATCH", &path, Some(&back)).await.status, 200);
    size().await; // no attributeTypes any more
    assert_eq!(
        call(&stack, &auth, "PATCH", &path, Some(&legacy_as_string)).await.status,
        400,
        "moved, not lost"
    );
}

/// The account's item holds its attribute limit: the functions that update that item (its
/// attribute headroom) may not touch the limit; only the operator's tool (no role) may.
#[tokio::test]
async fn no_function_role_may_write_the_accounts_attribute_limit() {
    let stack = Stack::new().await;
    for function in ["integrations", "user-data", "imports", "import-worker"] {
        let raise = stack
            .store_as(function)
            .client()
            .update_item()
            .table_name(&stack.store.tables().config)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("ACCOUNT#{}", stack.account)))
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("ACCOUNT".into()))
            .update_expression("SET #l = :v")
            .expression_attribute_names("#l", "attributeLimit")
            .expression_attribute_values(":v", aws_sdk_dynamodb::types::AttributeValue::N("100000".into()))
            .send()
            .await;
        let err = raise.expect_err(function);
        assert!(format!("{err:?}").contains("denied"), "{function}: {err:?}");
    }
    let account = stack.store.get_account(&stack.account).await.unwrap().unwrap();
    assert_eq!(account.attribute_limit, 100, "unchanged");
}
