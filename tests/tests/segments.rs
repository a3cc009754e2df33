//! Segments API against the local server: the seeds' calls, the edges of SPEC's limits,
//! tenancy, exact counts under concurrency, members paging, the end-user read, the purge of
//! replaced generations, and the DynamoDB requests each call costs.

use std::collections::{BTreeMap, HashSet};

use integration_tests::*;
use serde_json::{Value, json};
use shared::domain::SegmentGuid;
use shared::store::segments::{SHARDS, shard_of};

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@company.com")).collect()
}

struct Ctx {
    stack: Stack,
    app: Served<segments::App>,
    auth: String,
}

impl Ctx {
    async fn new() -> Self {
        let stack = Stack::new().await;
        let auth = stack.bearer("segments:read segments:write").await;
        Self { app: stack.segments_app(), stack, auth }
    }

    async fn call(&self, method: &str, rest: &str, body: Option<&str>) -> Answer {
        call_segments(&self.app, &self.auth, method, &self.stack.segment_path(rest), body).await
    }

    async fn create(&self, name: &str, user_ids: &[String]) -> String {
        let body = json!({ "name": name, "userIds": user_ids }).to_string();
        let a = self.call("POST", "", Some(&body)).await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["segmentGuid"].as_str().unwrap().to_string()
    }

    async fn update(&self, seg: &str, action: &str, user_ids: &[String]) -> Answer {
        let body = json!({ "action": action, "userIds": user_ids }).to_string();
        self.call("PUT", &format!("/{seg}"), Some(&body)).await
    }

    async fn count(&self, seg: &str) -> i64 {
        let a = self.call("GET", &format!("/{seg}"), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["userCount"].as_i64().unwrap()
    }

    /// Every member, following the cursors with pages of `limit`.
    async fn all_members(&self, seg: &str, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let q = match &cursor {
                Some(c) => format!("/{seg}/members?limit={limit}&cursor={c}"),
                None => format!("/{seg}/members?limit={limit}"),
            };
            let a = self.call("GET", &q, None).await;
            assert_eq!(a.status, 200, "{}", a.body);
            let page: Vec<String> =
                a.body["userIds"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
            assert!(page.len() <= limit);
            out.extend(page);
            match a.body["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
        panic!("cursors never ended");
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The seeds' create body (with a concrete external id and name) and update body, then list,
/// get, remove and delete.
#[tokio::test]
async fn seeds_calls_work_end_to_end() {
    let c = Ctx::new().await;
    let create = r#"{"id": "heap-segment-42", "name": "Heap: trial users", "userIds": ["John@company.com", "Melissa@company.com"] }"#;
    let a = c.call("POST", "", Some(create)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let seg = a.body["segmentGuid"].as_str().unwrap().to_string();
    assert!(SegmentGuid::parse(&seg).is_ok(), "a hyphenated UUID: {seg}");
    assert_eq!(a.header("location"), Some(c.stack.segment_path(&format!("/{seg}")).as_str()));
    assert_eq!(a.body["id"], "heap-segment-42");
    assert_eq!(a.body["name"], "Heap: trial users");
    assert_eq!(a.body["userCount"], 2);
    assert_eq!(a.body["systemGuid"], c.stack.system.to_string());
    assert!(a.body["createdAt"].as_str().unwrap().ends_with('Z'));

    let update = "{\"action\": \"add\",\n    \"userIds\": [\"jane.doe@walkme.com\"]\n}";
    let a = c.call("PUT", &format!("/{seg}"), Some(update)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["userCount"], 3);
    assert!(a.body["updatedAt"].as_str().unwrap() >= a.body["createdAt"].as_str().unwrap());

    let a = c.call("GET", "", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let list = a.body["segments"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["segmentGuid"], seg.as_str());
    assert_eq!(list[0]["userCount"], 3);

    assert_eq!(
        sorted(c.all_members(&seg, 1000).await),
        vec!["John@company.com", "Melissa@company.com", "jane.doe@walkme.com"]
    );

    let a = c.update(&seg, "remove", &["John@company.com".into()]).await;
    assert_eq!(a.body["userCount"], 2);

    let a = c.call("DELETE", &format!("/{seg}"), None).await;
    assert_eq!(a.status, 204);
    for (m, rest) in
        [("GET", format!("/{seg}")), ("DELETE", format!("/{seg}")), ("GET", format!("/{seg}/members"))]
    {
        assert_eq!(c.call(m, &rest, None).await.status, 404, "{m} {rest} after delete");
    }
    assert_eq!(c.update(&seg, "add", &["x".into()]).await.status, 404);
    assert_eq!(c.call("GET", "", None).await.body["segments"], json!([]));
    // The external id is free again.
    assert_eq!(c.call("POST", "", Some(create)).await.status, 201);
}

#[tokio::test]
async fn limits_of_ids_per_request_and_id_length() {
    let c = Ctx::new().await;
    let max = ids("u", 25_000);
    let seg = c.create("max", &max).await;
    assert_eq!(c.count(&seg).await, 25_000);

    let mut over = max.clone();
    over.push("one-more@company.com".into());
    let body = json!({ "name": "over", "userIds": over }).to_string();
    let a = c.call("POST", "", Some(&body)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["details"][0]["path"], "userIds");
    let a = c.update(&seg, "add", &over).await;
    assert_eq!(a.status, 400);
    assert_eq!(c.count(&seg).await, 25_000, "nothing applied");

    let id100 = "x".repeat(100);
    let id101 = "y".repeat(101);
    let a = c.update(&seg, "add", std::slice::from_ref(&id100)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["userCount"], 25_001, "a segment grows past 25,000 by add");
    let a = c.update(&seg, "add", &["ok@company.com".into(), id101]).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["details"][0]["path"], "userIds[1]");
    assert_eq!(c.count(&seg).await, 25_001, "a request with one bad id writes nothing");
    // Multi-byte characters count as characters, not bytes.
    let a = c.update(&seg, "add", &["é".repeat(100)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn bad_bodies_are_400_with_the_place() {
    let c = Ctx::new().await;
    let seg = c.create("s", &ids("a", 3)).await;
    let cases: &[(&str, &str, &str)] = &[
        ("POST", "{}", "name"),
        ("POST", r#"{"name": ""}"#, "name"),
        ("POST", r#"{"name": "n", "userIds": "a"}"#, "userIds"),
        ("POST", r#"{"name": "n", "userIds": [null]}"#, "userIds[0]"),
        ("POST", r#"{"name": "n", "userIds": [""]}"#, "userIds[0]"),
        ("POST", r#"{"name": "n", "userIds": [1.5]}"#, "userIds[0]"),
        ("POST", r#"{"name": "n", "id": {}}"#, "id"),
        ("POST", r#"{"name": "n", "extra": 1}"#, "extra"),
        ("PUT", r#"{"action": "append", "userIds": ["a"]}"#, "action"),
        ("PUT", r#"{"userIds": ["a"]}"#, "action"),
        ("PUT", r#"{"action": "add"}"#, "userIds"),
        ("PUT", r#"{"action": "add", "userIds": []}"#, "userIds"),
        ("PUT", r#"{"action": "remove", "userIds": []}"#, "userIds"),
    ];
    for (method, body, path) in cases {
        let rest = if *method == "POST" { String::new() } else { format!("/{seg}") };
        let a = c.call(method, &rest, Some(body)).await;
        assert_eq!(a.status, 400, "{method} {body}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "validation_failed", "{body}");
        assert_eq!(a.body["error"]["details"][0]["path"], *path, "{body}: {}", a.body);
    }
    // A body that is not an object is unreadable, whatever it holds.
    for body in ["[]", "[1]", "\"add\""] {
        let a = c.call("PUT", &format!("/{seg}"), Some(body)).await;
        assert_eq!((a.status, a.body["error"]["code"].as_str()), (400, Some("invalid_body")), "{body}");
    }
    let a = c.call("PUT", &format!("/{seg}"), Some("{not json")).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["code"], "invalid_json");
    assert_eq!(c.count(&seg).await, 3);
    assert_eq!(c.call("GET", "", None).await.body["segments"].as_array().unwrap().len(), 1, "no create");
}

#[tokio::test]
async fn membership_actions_and_their_edges() {
    let c = Ctx::new().await;
    // Empty create; duplicates count once; integer ids kept in decimal.
    let seg = c.create("s", &[]).await;
    assert_eq!(c.count(&seg).await, 0);
    let a = c
        .call("PUT", &format!("/{seg}"), Some(r#"{"action": "add", "userIds": ["a", "b", "a", 42, "42"]}"#))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["userCount"], 3);
    assert_eq!(sorted(c.all_members(&seg, 10).await), vec!["42", "a", "b"]);
    // Adding members again changes nothing.
    assert_eq!(c.update(&seg, "add", &["a".into(), "b".into()]).await.body["userCount"], 3);
    // Removing non-members is not an error and changes nothing.
    let a = c.update(&seg, "remove", &["nobody".into(), "a".into()]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["userCount"], 2);
    // Override makes the membership exactly the list, then empty.
    let a = c.update(&seg, "override", &["b".into(), "c".into(), "d".into()]).await;
    assert_eq!(a.body["userCount"], 3);
    assert_eq!(sorted(c.all_members(&seg, 10).await), vec!["b", "c", "d"]);
    let a = c.update(&seg, "override", &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["userCount"], 0);
    assert_eq!(c.all_members(&seg, 10).await, Vec::<String>::new());
    assert_eq!(c.count(&seg).await, 0);
    // And grows again from there.
    assert_eq!(c.update(&seg, "add", &["e".into()]).await.body["userCount"], 1);
    assert_eq!(c.all_members(&seg, 10).await, vec!["e"]);
}

#[tokio::test]
async fn external_ids_are_unique_per_system() {
    let c = Ctx::new().await;
    let body = r#"{"id": "ext-1", "name": "a"}"#;
    assert_eq!(c.call("POST", "", Some(body)).await.status, 201);
    let a = c.call("POST", "", Some(body)).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "external_id_taken");
    // Integer external ids are the same id as their decimal string.
    assert_eq!(c.call("POST", "", Some(r#"{"id": 7, "name": "a"}"#)).await.status, 201);
    assert_eq!(c.call("POST", "", Some(r#"{"id": "7", "name": "b"}"#)).await.status, 409);
    // Another system of the same account may reuse it.
    let other = shared::domain::SystemGuid::generate();
    c.stack
        .store
        .create_system(&c.stack.account, other, shared::domain::Timestamp::now().epoch_secs())
        .await
        .unwrap();
    let path = format!("/public/v1/user/system/{other}/segment");
    assert_eq!(call_segments(&c.app, &c.auth, "POST", &path, Some(body)).await.status, 201);
    // Without an id, names may repeat.
    assert_eq!(c.call("POST", "", Some(r#"{"name": "a"}"#)).await.status, 201);
    assert_eq!(c.call("GET", "", None).await.body["segments"].as_array().unwrap().len(), 3);
}

/// Another account's system and segments are 404 on every route, and nothing is touched.
#[tokio::test]
async fn another_account_sees_nothing() {
    let c = Ctx::new().await;
    let seg = c.create("mine", &ids("m", 5)).await;
    let (other, other_client, _) = c.stack.other_account("globex").await;
    let theirs = c.stack.bearer_for(&other, &other_client, "segments:read segments:write").await;
    let sys = c.stack.system;
    let calls: Vec<(&str, String, Option<&str>)> = vec![
        ("POST", format!("/public/v1/user/system/{sys}/segment"), Some(r#"{"name": "x"}"#)),
        ("GET", format!("/public/v1/user/system/{sys}/segment"), None),
        ("GET", format!("/public/v1/user/system/{sys}/segment/{seg}"), None),
        (
            "PUT",
            format!("/public/v1/user/system/{sys}/segment/{seg}"),
            Some(r#"{"action": "override", "userIds": []}"#),
        ),
        ("GET", format!("/public/v1/user/system/{sys}/segment/{seg}/members"), None),
        ("DELETE", format!("/public/v1/user/system/{sys}/segment/{seg}"), None),
    ];
    for (m, path, body) in &calls {
        let a = call_segments(&c.app, &theirs, m, path, *body).await;
        assert_eq!(a.status, 404, "{m} {path}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "not_found");
    }
    assert_eq!(c.count(&seg).await, 5);
    assert_eq!(c.call("GET", "", None).await.body["segments"].as_array().unwrap().len(), 1);

    // Malformed and unknown guids are 404 too, never 5xx.
    for rest in [
        "/not-a-uuid".to_string(),
        "/12345aeb123c4d838b38a5a456789d0a".to_string(),
        format!("/{}", SegmentGuid::generate()),
        format!("/{}/members", SegmentGuid::generate()),
    ] {
        assert_eq!(c.call("GET", &rest, None).await.status, 404, "{rest}");
    }
    let a = call_segments(&c.app, &c.auth, "GET", "/public/v1/user/system/nope/segment", None).await;
    assert_eq!(a.status, 404);
    let unknown = shared::domain::SystemGuid::generate();
    let a = call_segments(
        &c.app,
        &c.auth,
        "POST",
        &format!("/public/v1/user/system/{unknown}/segment"),
        Some(r#"{"name": "x"}"#),
    )
    .await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn scopes_are_enforced() {
    let c = Ctx::new().await;
    let seg = c.create("s", &[]).await;
    let read_only = c.stack.bearer("segments:read").await;
    let write_only = c.stack.bearer("segments:write").await;
    let path = c.stack.segment_path(&format!("/{seg}"));
    let a =
        call_segments(&c.app, &read_only, "PUT", &path, Some(r#"{"action": "add", "userIds": ["a"]}"#)).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["error"]["code"], "insufficient_scope");
    assert_eq!(call_segments(&c.app, &write_only, "GET", &path, None).await.status, 403);
    assert_eq!(call_segments(&c.app, &read_only, "GET", &path, None).await.status, 200);
    assert_eq!(call_segments(&c.app, "Bearer nope", "GET", &path, None).await.status, 401);
    let a = call_segments(&c.app, &c.auth, "PATCH", &path, None).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("GET, PUT, DELETE"));
}

#[tokio::test]
async fn members_pages_return_every_member_once() {
    let c = Ctx::new().await;
    let all = ids("p", 2_500);
    let seg = c.create("paged", &all).await;
    for limit in [1_000, 333] {
        let listed = c.all_members(&seg, limit).await;
        assert_eq!(listed.len(), 2_500, "limit {limit}");
        assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 2_500, "no repeats at limit {limit}");
        assert_eq!(sorted(listed), sorted(all.clone()));
    }
    // A tiny segment: one page, no cursor.
    let small = c.create("small", &["only".into()]).await;
    let a = c.call("GET", &format!("/{small}/members"), None).await;
    assert_eq!(a.body, json!({ "userIds": ["only"], "nextCursor": null }));

    for q in ["limit=0", "limit=10001", "limit=abc", "limit=-1", "cursor=%21%21", "cursor=eyJnIjoxfQ"] {
        let a = c.call("GET", &format!("/{seg}/members?{q}"), None).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
    }
    let a = c.call("GET", &format!("/{seg}/members?limit=10000"), None).await;
    assert_eq!(a.body["userIds"].as_array().unwrap().len(), 2_500);

    // A cursor from before an override no longer applies.
    let a = c.call("GET", &format!("/{seg}/members?limit=10"), None).await;
    let cursor = a.body["nextCursor"].as_str().unwrap().to_string();
    c.update(&seg, "override", &["z".into()]).await;
    let a = c.call("GET", &format!("/{seg}/members?limit=10&cursor={cursor}"), None).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "cursor_stale");
}

/// Racing adds, removes and overrides of overlapping ids on one segment: afterwards the count
/// equals the members listed, and matches what a sequential model allows.
#[ignore = "issue 15: concurrent adds and removes conflict on the shard counters (TransactionConflict) and answer 503"]
#[tokio::test]
async fn counts_stay_exact_under_concurrent_changes() {
    let c = std::sync::Arc::new(Ctx::new().await);
    let seg = c.create("race", &ids("r", 100)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..12 {
        let c = c.clone();
        let seg = seg.clone();
        tasks.spawn(async move {
            // Overlapping windows of the same 300 ids.
            let window: Vec<String> = ids("r", 300).into_iter().skip(round * 17 % 150).take(150).collect();
            let action = if round % 2 == 0 { "add" } else { "remove" };
            let a = c.update(&seg, action, &window).await;
            assert_eq!(a.status, 200, "{}", a.body);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let members = c.all_members(&seg, 10_000).await;
    assert_eq!(members.iter().collect::<HashSet<_>>().len(), members.len());
    assert_eq!(c.count(&seg).await, members.len() as i64, "userCount equals the members");

    // The same with overrides in the mix.
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..8 {
        let c = c.clone();
        let seg = seg.clone();
        tasks.spawn(async move {
            let window: Vec<String> = ids("r", 300).into_iter().skip(round * 29 % 200).take(100).collect();
            let action = ["add", "override", "remove", "add"][round % 4];
            assert_eq!(c.update(&seg, action, &window).await.status, 200);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let members = c.all_members(&seg, 10_000).await;
    assert_eq!(c.count(&seg).await, members.len() as i64);
}

/// The end-user read lists the user's segments at once; erasing the user leaves them.
#[tokio::test]
async fn end_user_read_and_erase_include_segments() {
    let c = Ctx::new().await;
    let user_app = c.stack.user_data_app();
    let all = c.stack.bearer(ALL_SCOPES).await;
    let a = call_segments(
        &c.app,
        &all,
        "POST",
        &c.stack.segment_path(""),
        Some(r#"{"id": "e1", "name": "One", "userIds": ["jane@x.com", "bob@x.com"]}"#),
    )
    .await;
    let one = a.body["segmentGuid"].as_str().unwrap().to_string();
    let two = c.create("Two", &["jane@x.com".into()]).await;
    let three = c.create("Three", &["bob@x.com".into()]).await;

    let a = call_user_data(&user_app, &all, "GET", "/public/v1/user/jane@x.com", None).await;
    assert_eq!(a.status, 200, "a user with memberships only is found: {}", a.body);
    assert_eq!(a.body["integrations"], json!([]));
    let mut segs: Vec<Value> = a.body["segments"].as_array().unwrap().clone();
    segs.sort_by_key(|s| s["name"].as_str().unwrap().to_string());
    assert_eq!(
        segs,
        vec![
            json!({"systemGuid": c.stack.system.to_string(), "segmentGuid": one, "id": "e1", "name": "One"}),
            json!({"systemGuid": c.stack.system.to_string(), "segmentGuid": two, "id": null, "name": "Two"}),
        ]
    );
    // Removal and override are visible at once, too.
    c.update(&two, "override", &["someone-else".into()]).await;
    let a = call_user_data(&user_app, &all, "GET", "/public/v1/user/jane@x.com", None).await;
    assert_eq!(a.body["segments"].as_array().unwrap().len(), 1);

    c.stack.counter.reset();
    let a = call_user_data(&user_app, &all, "DELETE", "/public/v1/user/jane@x.com", None).await;
    assert_eq!(a.status, 204);
    assert_eq!(call_user_data(&user_app, &all, "GET", "/public/v1/user/jane@x.com", None).await.status, 404);
    assert_eq!(c.count(&one).await, 1, "jane left One; bob stays");
    assert_eq!(c.all_members(&one, 10).await, vec!["bob@x.com"]);
    assert_eq!(c.count(&three).await, 1, "other users' segments untouched");
    // Idempotent.
    assert_eq!(
        call_user_data(&user_app, &all, "DELETE", "/public/v1/user/jane@x.com", None).await.status,
        204
    );
    assert_eq!(c.count(&one).await, 1);
}

/// After an override or a delete, the purge function (given the stream record DynamoDB
/// would send) removes every item of the replaced generation, and only those.
#[tokio::test]
async fn purge_removes_replaced_generations_only() {
    let c = Ctx::new().await;
    let seg = c.create("p", &ids("g", 300)).await;
    let guid = SegmentGuid::parse(&seg).unwrap();
    let before = c.stack.store.segment_head(&c.stack.account, c.stack.system, guid).await.unwrap().unwrap();
    c.update(&seg, "override", &ids("h", 50)).await;
    let after = c.stack.store.segment_head(&c.stack.account, c.stack.system, guid).await.unwrap().unwrap();
    assert_ne!(before.generation, after.generation);

    let image = |generation: &str| {
        json!({
            "pk": {"S": format!("{}#SEGMENTS", c.stack.account)},
            "sk": {"S": format!("S#{}#{seg}", c.stack.system)},
            "segmentGuid": {"S": seg}, "systemGuid": {"S": c.stack.system.to_string()},
            "name": {"S": "p"}, "generation": {"S": generation},
            "createdAt": {"N": "1"}, "updatedAt": {"N": "2"}
        })
    };
    let record = |name: &str, old: Value, new: Option<Value>| {
        let mut ddb = json!({
            "ApproximateCreationDateTime": 1795424400,
            "Keys": {"pk": old["pk"].clone(), "sk": old["sk"].clone()},
            "OldImage": old, "SequenceNumber": "111", "SizeBytes": 200,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        });
        if let Some(n) = new {
            ddb["NewImage"] = n;
        }
        json!({"eventID": "1", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
               "awsRegion": "us-east-1", "dynamodb": ddb,
               "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026"})
    };
    // A rename-like MODIFY that keeps the generation purges nothing.
    let same =
        json!({"Records": [record("MODIFY", image(&after.generation), Some(image(&after.generation)))]});
    assert!(segment_purge::targets(&same).is_empty());

    let event =
        json!({"Records": [record("MODIFY", image(&before.generation), Some(image(&after.generation)))]});
    assert_eq!(segment_purge::targets(&event).len(), 1);
    segment_purge::handle(&c.stack.store, &event).await.unwrap();
    let left = c.stack.store.purge_generation(&c.stack.account, guid, &before.generation).await.unwrap();
    assert_eq!(left, 0, "the old generation is gone");
    assert_eq!(c.count(&seg).await, 50);
    assert_eq!(sorted(c.all_members(&seg, 1000).await), sorted(ids("h", 50)));

    // Delete: the REMOVE record purges the current generation.
    assert_eq!(c.call("DELETE", &format!("/{seg}"), None).await.status, 204);
    let event = json!({"Records": [record("REMOVE", image(&after.generation), None)]});
    segment_purge::handle(&c.stack.store, &event).await.unwrap();
    assert_eq!(c.stack.store.purge_generation(&c.stack.account, guid, &after.generation).await.unwrap(), 0);
}

fn tally(ops: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for op in ops {
        *m.entry(op.clone()).or_insert(0) += 1;
    }
    m
}

fn expect(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().filter(|(_, n)| *n > 0).map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Transactions an add/remove of these (all changing) ids needs: whole shard groups packed
/// into transactions of at most 100 actions (members + one counter per shard).
fn transactions_for(user_ids: &[String]) -> usize {
    let mut per_shard = [0usize; SHARDS as usize];
    for id in user_ids {
        per_shard[shard_of(id) as usize] += 1;
    }
    let (mut count, mut used) = (0, 0);
    for n in per_shard.iter().filter(|n| **n > 0) {
        let mut left = *n;
        while left > 0 {
            let part = left.min(99);
            if used + part + 1 > 100 || count == 0 {
                count += 1;
                used = 0;
            }
            used += part + 1;
            left -= part;
        }
    }
    count
}

fn shards_used(user_ids: &[String]) -> usize {
    user_ids.iter().map(|u| shard_of(u)).collect::<HashSet<_>>().len()
}

/// DynamoDB requests per call, counted at the SDK (retries included).
#[tokio::test]
async fn dynamodb_requests_per_call() {
    let c = Ctx::new().await;
    let counter = &c.stack.counter;
    let auth_query = 1; // the bearer check reads the public keys once per cold verifier

    let first = ids("c", 250);
    counter.reset();
    let seg = c.create("counted", &first).await;
    let writes = (first.len() + shards_used(&first)).div_ceil(25);
    assert_eq!(
        tally(&counter.take()),
        expect(&[
            ("Query", auth_query),
            ("GetItem", 1),
            ("BatchWriteItem", writes),
            ("TransactWriteItems", 1)
        ]),
        "create: system + ⌈(n + shards)/25⌉ batch writes + head"
    );

    let more = ids("d", 250);
    counter.reset();
    assert_eq!(c.update(&seg, "add", &more).await.body["userCount"], 500);
    assert_eq!(
        tally(&counter.take()),
        expect(&[("GetItem", 1), ("BatchGetItem", 3 + 1), ("TransactWriteItems", transactions_for(&more))]),
        "add: head + ⌈n/100⌉ reads + transactions + one counter read"
    );
    assert!(transactions_for(&more) <= more.len().div_ceil(25));

    counter.reset();
    assert_eq!(c.update(&seg, "add", &more).await.body["userCount"], 500);
    assert_eq!(
        tally(&counter.take()),
        expect(&[("GetItem", 1), ("BatchGetItem", 4)]),
        "re-adding members writes nothing"
    );

    counter.reset();
    assert_eq!(c.update(&seg, "remove", &first[..100]).await.body["userCount"], 400);
    assert_eq!(
        tally(&counter.take()),
        expect(&[
            ("GetItem", 1),
            ("BatchGetItem", 2),
            ("TransactWriteItems", transactions_for(&first[..100]))
        ])
    );

    let list = ids("o", 40);
    counter.reset();
    assert_eq!(c.update(&seg, "override", &list).await.body["userCount"], 40);
    let writes = (list.len() + shards_used(&list)).div_ceil(25);
    assert_eq!(
        tally(&counter.take()),
        expect(&[("GetItem", 1), ("BatchWriteItem", writes), ("UpdateItem", 1)]),
        "override: a fresh generation and one flip, whatever the old size"
    );

    counter.reset();
    c.call("GET", &format!("/{seg}"), None).await;
    assert_eq!(tally(&counter.take()), expect(&[("GetItem", 1), ("BatchGetItem", 1)]));

    counter.reset();
    c.call("GET", "", None).await;
    assert_eq!(
        tally(&counter.take()),
        expect(&[("GetItem", 1), ("Query", 1), ("BatchGetItem", 1)]),
        "list of one segment"
    );

    counter.reset();
    let page = c.call("GET", &format!("/{seg}/members?limit=10000"), None).await;
    assert_eq!(page.body["userIds"].as_array().unwrap().len(), 40);
    assert_eq!(
        tally(&counter.take()),
        expect(&[("GetItem", 1), ("BatchGetItem", 1), ("Query", shards_used(&list))]),
        "members: only non-empty shards are read"
    );

    counter.reset();
    assert_eq!(c.call("DELETE", &format!("/{seg}"), None).await.status, 204);
    assert_eq!(
        tally(&counter.take()),
        expect(&[("GetItem", 1), ("TransactWriteItems", 1)]),
        "delete: constant, whatever the size (the purge runs later)"
    );

    // Bad input costs nothing but the token check.
    counter.reset();
    let a = c.update(&seg, "add", &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(tally(&counter.take()), expect(&[]));
}

/// The issue's budget: an add of 25,000 new ids costs at most ⌈n/25⌉ + ⌈n/100⌉ + a small
/// constant (1,260) requests, and the count is exact.
#[ignore = "issue 15: a 25,000-id add's concurrent transactions conflict on shared shard counters (TransactionConflict) and the call answers 503"]
#[tokio::test]
async fn adding_25000_ids_stays_within_the_request_budget() {
    let c = Ctx::new().await;
    let seg = c.create("big", &ids("first", 10)).await;
    let many = ids("big", 25_000);
    c.stack.counter.reset();
    let a = c.update(&seg, "add", &many).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["userCount"], 25_010);
    let ops = c.stack.counter.take();
    let t = tally(&ops);
    assert!(ops.len() <= 1_260, "{} requests: {t:?}", ops.len());
    assert_eq!(t.get("BatchGetItem").copied(), Some(250 + 1));
    assert!(t.get("TransactWriteItems").copied().unwrap_or(0) <= 1_000, "{t:?}");
    assert_eq!(c.all_members(&seg, 10_000).await.len(), 25_010);
}
