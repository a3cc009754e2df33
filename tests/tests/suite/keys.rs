//! Every DynamoDB key built from caller input, at its longest: no id, name or cursor a caller
//! may send makes a key or item DynamoDB refuses (which would answer 5xx, and a retry could
//! never succeed). The local server enforces DynamoDB's key sizes (2,048 bytes for a
//! partition key, 1,024 for a sort key). The widest characters are four UTF-8 bytes.

use integration_tests::*;
use serde_json::json;

/// The widest character: four UTF-8 bytes.
const WIDE: &str = "\u{1F600}";

fn wide(chars: usize) -> String {
    WIDE.repeat(chars)
}

/// Percent-encodes a path segment as a client would send it.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn the_longest_user_ids_are_stored_read_and_erased() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (_, token) = create_integration(&stack, &auth, SEED_INTEGRATION).await;
    let app = stack.user_data_app();
    let longest = wide(100);
    let body = json!({"token": token, "data": [{"Email": longest, "Type": "A"}]}).to_string();
    let a = call_user_data(&app, &auth, "POST", "/public/v1/user/data", Some(&body)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let path = format!("/public/v1/user/{}", enc(&longest));
    assert_eq!(call_user_data(&app, &auth, "GET", &path, None).await.status, 200);
    assert_eq!(call_user_data(&app, &auth, "DELETE", &path, None).await.status, 204);
    // One past: a clear 4xx, in the body and in the path.
    let body = json!({"token": token, "data": [{"Email": wide(101), "Type": "A"}]}).to_string();
    assert_eq!(call_user_data(&app, &auth, "POST", "/public/v1/user/data", Some(&body)).await.status, 400);
    let path = format!("/public/v1/user/{}", enc(&wide(101)));
    for method in ["GET", "DELETE"] {
        let a = call_user_data(&app, &auth, method, &path, None).await;
        assert_eq!(a.status, 400, "{method}: {}", a.body);
    }
    // MoEngage's customer_id is a user id too.
    let moe = stack.moengage_basic();
    let body = json!({"type": "customer", "customer_id": longest, "attributes": {"n": 1}}).to_string();
    let h = [("authorization", moe.as_str()), ("content-type", "application/json")];
    let path = format!("/v1/customer/{}", stack.account);
    let a = answer(edge::front::serve(&app, req("POST", &path, &h, Some(&body))).await);
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn the_longest_segment_ids_names_and_members_are_stored() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let app = stack.segments_app();
    let external = wide(256);
    let member = wide(100);
    let body = json!({"id": external, "name": wide(200), "userIds": [member]}).to_string();
    let a = call_segments(&app, &auth, "POST", &stack.segment_path(""), Some(&body)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let guid = a.body["segmentGuid"].as_str().unwrap().to_string();
    // The external id still guards uniqueness.
    let again = call_segments(&app, &auth, "POST", &stack.segment_path(""), Some(&body)).await;
    assert_eq!(again.status, 409, "{}", again.body);
    let a = call_segments(&app, &auth, "GET", &stack.segment_path(&format!("/{guid}/members")), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["userIds"], json!([member]));
    // The user read lists the membership.
    let users = stack.user_data_app();
    let path = format!("/public/v1/user/{}", enc(&member));
    let a = call_user_data(&users, &auth, "GET", &path, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["segments"][0]["segmentGuid"], guid.as_str());
    // One past each limit: 400.
    for body in [
        json!({"id": wide(257), "name": "n", "userIds": []}),
        json!({"name": wide(201), "userIds": []}),
        json!({"name": "n", "userIds": [wide(101)]}),
    ] {
        let a = call_segments(&app, &auth, "POST", &stack.segment_path(""), Some(&body.to_string())).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
    }
}

#[tokio::test]
async fn ids_and_cursors_in_paths_and_queries_never_reach_a_key_unchecked() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let long = enc(&wide(700)); // 2,800 bytes: past any key
    let integrations = stack.integrations_app();
    for method in ["GET", "PATCH", "DELETE"] {
        let a = call_integrations(
            &integrations,
            &auth,
            method,
            &format!("/public/v1/integrations/{long}"),
            Some("{}"),
        )
        .await;
        assert!(a.status == 404 || a.status == 400, "{method}: {} {}", a.status, a.body);
    }
    let segments = stack.segments_app();
    for path in [
        format!("/public/v1/user/system/{long}/segment"),
        stack.segment_path(&format!("/{long}")),
        stack.segment_path(&format!("/{long}/members")),
    ] {
        let a = call_segments(&segments, &auth, "GET", &path, None).await;
        assert!(a.status == 404 || a.status == 400, "{path}: {} {}", a.status, a.body);
    }
    // A cursor this API did not issue, however long: 400.
    let body = json!({"name": "s", "userIds": ["a"]}).to_string();
    let a = call_segments(&segments, &auth, "POST", &stack.segment_path(""), Some(&body)).await;
    let guid = a.body["segmentGuid"].as_str().unwrap().to_string();
    let cursor = "A".repeat(4000);
    let a = call_segments(
        &segments,
        &auth,
        "GET",
        &stack.segment_path(&format!("/{guid}/members?cursor={cursor}")),
        None,
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    // The longest Idempotency-Key is only ever stored as its hash.
    let users = stack.user_data_app();
    let key = "k".repeat(255);
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", key.as_str()),
    ];
    let a = answer(edge::front::serve(&users, req("DELETE", "/public/v1/user/someone", &h, None)).await);
    assert_eq!(a.status, 204, "{}", a.body);
}
