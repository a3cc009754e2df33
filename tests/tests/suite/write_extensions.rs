//! Write extensions (docs/DECISIONS.md, "Source-time ordering" and "Attribute operations"):
//! writes ordered by an integration's `timestampProperty`, and `$setOnce`, `$increment`,
//! `$unset` in a user entry, against the local server.

use std::sync::Arc;

use integration_tests::*;
use serde_json::{Value, json};

const TIMED: &str = r#"{"name": "timed", "userIdentifierProperty": "id", "timestampProperty": "ts",
    "properties": [{"path": "plan", "name": "Plan", "type": "String"},
                   {"path": "score", "name": "Score", "type": "Number"},
                   {"path": "vip", "name": "Vip", "type": "Boolean"}]}"#;
const UNTIMED: &str = r#"{"name": "ops", "userIdentifierProperty": "id",
    "properties": [{"path": "plan", "name": "Plan", "type": "String"},
                   {"path": "stats.score", "name": "Score", "type": "Number"},
                   {"path": "vip", "type": "Boolean"}]}"#;

struct World {
    _stack: Stack,
    app: Arc<Served<user_data::App>>,
    auth: Arc<String>,
    token: String,
    integration_id: String,
}

async fn world(definition: &str) -> World {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration_id, token) = create_integration(&stack, &auth, definition).await;
    let app = Arc::new(stack.user_data_app());
    World { _stack: stack, app, auth: Arc::new(auth), token, integration_id }
}

impl World {
    fn body(&self, data: Value) -> String {
        json!({"token": self.token, "data": data}).to_string()
    }
    async fn send(&self, data: Value) -> Answer {
        call_user_data(&self.app, &self.auth, "POST", "/public/v1/user/data", Some(&self.body(data))).await
    }
    /// Sends every body at once, each from its own task; the answers in the order given.
    async fn race(&self, bodies: Vec<Value>) -> Vec<Answer> {
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|data| {
                let (app, auth, body) = (self.app.clone(), self.auth.clone(), self.body(data));
                tokio::spawn(async move {
                    call_user_data(&app, &auth, "POST", "/public/v1/user/data", Some(&body)).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
    async fn attrs(&self, user: &str) -> Value {
        match user_group(&self.app, &self.auth, user, &self.integration_id).await {
            Some(g) => g["attributes"].clone(),
            None => json!({}),
        }
    }
}

#[tokio::test]
async fn swapped_source_times_end_alike_in_both_arrival_orders() {
    let w = world(TIMED).await;
    // The older write also carries a score the newer one does not: that part is applied.
    let older = |u: &str| json!([{"id": u, "ts": 1_733_480_000, "plan": "old", "score": 1}]);
    let newer = |u: &str| json!([{"id": u, "ts": "2024-12-06T10:13:21Z", "plan": "new"}]);

    let a = w.send(older("a")).await;
    assert_eq!(a.body, json!({"accepted": 1, "mode": "merge", "ignoredFields": [], "skipped": []}));
    let a = w.send(newer("a")).await;
    assert_eq!((a.status, a.body.get("stale")), (200, None), "{}", a.body);

    let b = w.send(newer("b")).await;
    assert_eq!(b.status, 200);
    let b = w.send(older("b")).await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(
        b.body["stale"],
        json!([{"userId": "b", "properties": ["Plan"]}]),
        "reported, not dropped silently"
    );
    for u in ["a", "b"] {
        assert_eq!(w.attrs(u).await, json!({"Plan": "new", "Score": 1}), "user {u}");
    }

    // Racing, in either order of sending: the newer value stays.
    for (i, pair) in [[older("c"), newer("c")], [newer("d"), older("d")]].into_iter().enumerate() {
        let answers = w.race(pair.to_vec()).await;
        assert!(answers.iter().all(|a| a.status == 200), "{i}");
        let user = if i == 0 { "c" } else { "d" };
        assert_eq!(w.attrs(user).await, json!({"Plan": "new", "Score": 1}), "user {user}");
    }

    // Equal times: the same winner whatever the arrival order (milliseconds and seconds alike).
    let tie = |u: &str, plan: &str, ts: Value| json!([{"id": u, "ts": ts, "plan": plan, "vip": plan == "x"}]);
    w.send(tie("e", "x", json!(1_733_480_000_000_i64))).await;
    w.send(tie("e", "y", json!(1_733_480_000))).await;
    w.send(tie("f", "y", json!(1_733_480_000))).await;
    w.send(tie("f", "x", json!(1_733_480_000_000_i64))).await;
    let (e, f) = (w.attrs("e").await, w.attrs("f").await);
    assert_eq!(e, f);
    assert!(e["Plan"] == "x" || e["Plan"] == "y");
}

#[tokio::test]
async fn a_replace_racing_a_merge_keeps_the_newer_of_each_attribute() {
    let w = world(TIMED).await;
    for round in 0..2 {
        let (u, v) = (format!("u{round}"), format!("v{round}"));
        w.send(json!([{"id": u, "ts": 100, "plan": "first", "score": 7}])).await;
        // The replace (t=300) leaves score out: removed. The merge is older (t=200): stale
        // for plan, and its score must not come back over the replace's removal.
        let replace = json!([{"id": u, "ts": 300, "plan": "replaced"}, {"id": v, "ts": 300, "vip": true}]);
        let merge = json!([{"id": u, "ts": 200, "plan": "merged", "score": 9}]);
        let bodies = if round == 0 { vec![replace, merge] } else { vec![merge, replace] };
        let answers = w.race(bodies).await;
        assert!(
            answers.iter().all(|a| a.status == 200),
            "{:?}",
            answers.iter().map(|a| &a.body).collect::<Vec<_>>()
        );
        assert_eq!(w.attrs(&u).await, json!({"Plan": "replaced"}), "round {round}");
        assert_eq!(w.attrs(&v).await, json!({"Vip": true}));
        // A later merge wins over the replace.
        let a = w.send(json!([{"id": u, "ts": 400, "score": 1}])).await;
        assert_eq!(a.body.get("stale"), None);
        assert_eq!(w.attrs(&u).await, json!({"Plan": "replaced", "Score": 1}));
        // A replace older than the attributes leaves them, and says so.
        let a = w.send(json!([{"id": u, "ts": 350, "vip": false}, {"id": v, "ts": 350, "vip": false}])).await;
        assert_eq!(a.body["mode"], "replace");
        assert_eq!(a.body["stale"], json!([{"userId": u, "properties": ["Score"]}]), "{}", a.body);
        assert_eq!(w.attrs(&u).await, json!({"Score": 1, "Vip": false}));
    }
}

#[tokio::test]
async fn concurrent_increments_add_up_exactly() {
    let w = world(UNTIMED).await;
    let one = json!([{"id": "n", "$increment": {"stats.score": "0.1"}}]);
    let answers = w.race(vec![one; 48]).await;
    assert!(answers.iter().all(|a| a.status == 200));
    assert_eq!(w.attrs("n").await["Score"].to_string(), "4.8", "0.1 × 48, exactly");
    // 38 significant digits survive (no float on the way).
    let big = json!([{"id": "n", "$increment": {"stats.score": "12345678901234567890123456789012340"}}]);
    assert_eq!(w.send(big).await.status, 200);
    let tiny = json!([{"id": "n", "$increment": {"stats.score": -0.8}}]);
    assert_eq!(w.send(tiny).await.status, 200);
    let raw = call_user_data(&w.app, &w.auth, "GET", "/public/v1/user/n", None).await.raw;
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.contains(r#""Score":12345678901234567890123456789012344"#), "every digit: {raw}");
    // A result past 38 digits is refused (400) and nothing of the entry is written.
    let past = json!([{"id": "n", "plan": "p", "$increment": {"stats.score": "0.000001"}}]);
    let a = w.send(past).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(w.attrs("n").await.get("Plan"), None);
    // With another user written in the same call: a 200 naming the refused one, so no retry
    // applies the other's increment twice.
    let two = json!([
        {"id": "n", "$increment": {"stats.score": "0.000001"}},
        {"id": "m", "$increment": {"stats.score": 5}}
    ]);
    let a = w.send(two).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["accepted"], 1);
    assert_eq!(a.body["refused"][0]["userId"], "n", "{}", a.body);
    assert_eq!(a.body["refused"].as_array().unwrap().len(), 1);
    assert_eq!(w.attrs("m").await["Score"].to_string(), "5");
}

#[tokio::test]
async fn set_once_racing_itself_sets_one_value_for_good() {
    let w = world(UNTIMED).await;
    let bodies: Vec<Value> =
        (0..16).map(|i| json!([{"id": "s", "$setOnce": {"plan": format!("p{i}")}}])).collect();
    let answers = w.race(bodies).await;
    assert!(answers.iter().all(|a| a.status == 200));
    let first = w.attrs("s").await["Plan"].clone();
    assert!(first.as_str().unwrap().starts_with('p'));
    w.send(json!([{"id": "s", "$setOnce": {"plan": "late"}, "vip": true}])).await;
    assert_eq!(w.attrs("s").await, json!({"Plan": first, "vip": true}));
    // $unset removes; then $setOnce sets again.
    w.send(json!([{"id": "s", "$unset": ["plan"]}])).await;
    assert_eq!(w.attrs("s").await, json!({"vip": true}));
    w.send(json!([{"id": "s", "$setOnce": {"plan": "again"}}])).await;
    assert_eq!(w.attrs("s").await["Plan"], "again");
}

#[tokio::test]
async fn wrong_operations_are_400_naming_entry_and_property_and_write_nothing() {
    let w = world(UNTIMED).await;
    let a = w
        .send(json!([
            {"id": "ok", "plan": "x"},
            {"id": "bad", "$increment": {"plan": 1, "nope": 1}, "$setOnce": {"vip": "yes"}, "$unset": ["zz"], "$push": {}},
            {"id": "twice", "plan": "x", "$unset": ["plan"]}
        ]))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let details: Vec<(u64, String)> = a.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["index"].as_u64().unwrap(), d["path"].as_str().unwrap().to_string()))
        .collect();
    for want in ["/$increment/plan", "/$increment/nope", "/$setOnce/vip", "/$unset/0", "/$push"] {
        assert!(details.contains(&(1, want.to_string())), "{want} in {details:?}");
    }
    assert!(details.contains(&(2, "plan".to_string())), "{details:?}");
    assert_eq!(w.attrs("ok").await, json!({}), "nothing written");

    // `$` paths are reserved in definitions; source times must be readable.
    let defs = [
        r#"{"name": "d", "userIdentifierProperty": "id", "properties": [{"path": "$x", "type": "String"}]}"#,
        r#"{"name": "d", "userIdentifierProperty": "id", "timestampProperty": "$ts", "properties": [{"path": "x", "type": "String"}]}"#,
        r#"{"name": "d", "userIdentifierProperty": "id", "timestampProperty": "x", "properties": [{"path": "x", "type": "String"}]}"#,
    ];
    let integrations = w._stack.integrations_app();
    for d in defs {
        let a = call_integrations(&integrations, &w.auth, "POST", "/public/v1/integrations", Some(d)).await;
        assert_eq!(a.status, 400, "{d}: {}", a.body);
    }
    let t = world(TIMED).await;
    for ts in [json!(null), json!("yesterday"), json!(-5)] {
        let a = t.send(json!([{"id": "x", "ts": ts, "plan": "p"}])).await;
        assert_eq!((a.status, a.body["error"]["details"][0]["path"].as_str()), (400, Some("ts")), "{ts}");
    }
    let a = t.send(json!([{"id": "x", "plan": "p"}])).await;
    assert_eq!(a.status, 400, "a missing source time");
    let integrations = t._stack.integrations_app();
    let got = call_integrations(
        &integrations,
        &t.auth,
        "GET",
        &format!("/public/v1/integrations/{}", t.integration_id),
        None,
    )
    .await;
    assert_eq!(got.body["timestampProperty"], "ts", "{}", got.body);
}

#[tokio::test]
async fn an_increment_retried_under_one_idempotency_key_applies_once() {
    let w = world(UNTIMED).await;
    let body = w.body(json!([{"id": "i", "$increment": {"stats.score": 5}}]));
    let headers = [
        ("authorization", w.auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "inc-1"),
    ];
    for _ in 0..3 {
        let a = answer(
            edge::front::serve(&*w.app, req("POST", "/public/v1/user/data", &headers, Some(&body))).await,
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    assert_eq!(w.attrs("i").await["Score"], json!(5));
    let headers = [
        ("authorization", w.auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "inc-2"),
    ];
    answer(edge::front::serve(&*w.app, req("POST", "/public/v1/user/data", &headers, Some(&body))).await);
    assert_eq!(w.attrs("i").await["Score"], json!(10), "another key applies again");
}

/// `scripts/quick-test.sh -p integration-tests --test suite ten_thousand -- --ignored
/// --nocapture`: 10,000 increments of 0.001 from 32 concurrent writers, then the exact total.
/// The writers call the store's write (what the route calls after validation), not the
/// route: 10,000 routed calls outlive a test bearer token on a loaded 2-core machine.
#[tokio::test]
#[ignore = "a 10,000-write run; the figure is in docs/CAPACITY.md"]
async fn ten_thousand_increments_from_32_writers() {
    let w = world(UNTIMED).await;
    let (calls, writers) = (10_000usize, 32usize);
    let integration =
        w._stack.store.get_integration(&w._stack.account, &w.integration_id).await.unwrap().unwrap();
    let def = Arc::new(integration.definition);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (store, account, id, def, next) = (
            w._stack.store.clone(),
            w._stack.account.clone(),
            w.integration_id.clone(),
            def.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut data = [json!({"id": "total", "$increment": {"stats.score": "0.001"}})];
            let update = domain::user_data::validate(&def, &mut data).unwrap().users.remove(0);
            let write = store::end_users::UserWrite::of(&update, &def, false);
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < calls {
                assert!(
                    store
                        .update_user(&account, &id, &write, false, "2026-12-06T00:00:00Z", None)
                        .await
                        .unwrap()
                        .written
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = w.attrs("total").await["Score"].to_string();
    println!("{calls} increments of 0.001 from {writers} writers: total {total}");
    assert_eq!(total, "10");
}

/// The end-users table's units per call, from the local DynamoDB's meter (the one `make
/// capacity` reads): docs/CAPACITY.md, "Write extensions".
#[tokio::test]
async fn ordered_writes_and_increments_cost_one_item_write() {
    let w = world(TIMED).await;
    let table = w._stack.store.tables().end_users.clone();
    let units = || units_of(&[&table]);
    let measure = async |label: &str, data: Value| {
        let before = units();
        let a = w.send(data).await;
        assert_eq!(a.status, 200, "{label}: {}", a.body);
        let u = units() - before;
        println!("{label}: {} RRU, {} WRU on the end-users table", u.rcu, u.wcu);
        (u.rcu, u.wcu, a.body)
    };
    w.send(json!([{"id": "m", "ts": 10, "plan": "a", "score": 1}])).await;
    let in_order = measure("in order", json!([{"id": "m", "ts": 20, "plan": "b", "score": 2}])).await;
    assert_eq!((in_order.0, in_order.1), (0.0, 1.0));
    let stale = measure("out of order, all stale", json!([{"id": "m", "ts": 15, "plan": "c"}])).await;
    assert_eq!((stale.0, stale.1), (0.0, 1.0), "the failed condition returns the item: no read");
    let part =
        measure("out of order, partly stale", json!([{"id": "m", "ts": 15, "plan": "c", "vip": true}])).await;
    assert_eq!((part.0, part.1), (0.0, 2.0), "the failed write and the fresh part's write");
    assert_eq!(part.2["stale"], json!([{"userId": "m", "properties": ["Plan"]}]));
    let inc = measure("increment", json!([{"id": "m", "ts": 30, "$increment": {"score": 1}}])).await;
    assert_eq!((inc.0, inc.1), (0.0, 1.0));
}

/// Runs one import of `file` to its end; returns its status and its error report's text.
async fn import(w: &World, body: Value, file: &str) -> (Value, String) {
    let (stack, imports) = (&w._stack, w._stack.imports_app());
    let path = format!("/public/v1/integrations/{}/imports", w.integration_id);
    let a = call_app(&imports, &w.auth, "POST", &path, Some(&body.to_string())).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["importId"].as_str().unwrap().to_string();
    let (code, _) = http("PUT", a.body["uploadUrl"].as_str().unwrap(), file.as_bytes().to_vec()).await;
    assert_eq!(code, 200);
    let key = files::upload_key(&stack.account, &w.integration_id, &id);
    let answer = import_worker::handle(&stack.import_worker(600), upload_event("m-1", &key)).await;
    assert!(answer.batch_item_failures.is_empty());
    let s = call_app(&imports, &w.auth, "GET", &format!("{path}/{id}"), None).await.body;
    let report = match s["errorsUrl"].as_str() {
        Some(url) => String::from_utf8(http("GET", url, Vec::new()).await.1).unwrap(),
        None => String::new(),
    };
    (s, report)
}

#[tokio::test]
async fn imports_order_by_the_integrations_source_time_and_apply_operations_row_by_row() {
    let w = world(TIMED).await;
    let lines = [
        json!({"id": "i", "ts": 200, "plan": "new"}),
        json!({"id": "i", "ts": 100, "plan": "old", "score": 3}),
        json!({"id": "i", "ts": 300, "$increment": {"score": 2}}),
        json!({"id": "i", "ts": 300, "$increment": {"score": 2}}),
    ];
    let file: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (s, report) = import(&w, json!({"format": "ndjson", "mode": "merge"}), &file).await;
    assert_eq!((s["status"].as_str(), s["accepted"].as_i64()), (Some("completed"), Some(4)), "{s}");
    assert!(report.contains("2,Plan,left as it was"), "the stale row is reported: {report}");
    assert_eq!(w.attrs("i").await, json!({"Plan": "new", "Score": 7}), "both increments, in order");
    // An increment past 38 digits is a report line, not a silent drop.
    let nines = "9".repeat(38);
    let line = json!({"id": "i", "ts": 400, "$increment": {"score": nines}});
    let (s, report) = import(&w, json!({"format": "ndjson", "mode": "merge"}), &format!("{line}\n")).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert!(report.contains("1,$increment,not written"), "{report}");
    assert_eq!(w.attrs("i").await, json!({"Plan": "new", "Score": 7}));

    // A CSV's source-time column orders a replace import alike.
    let (s, _) =
        import(&w, json!({"format": "csv", "mode": "replace"}), "id,ts,plan\nc,2024-12-06T10:00:00Z,a\n")
            .await;
    assert_eq!(s["accepted"], 1, "{s}");
    let (_, report) =
        import(&w, json!({"format": "csv", "mode": "replace"}), "id,ts,plan\nc,1733400000,b\n").await;
    assert!(report.contains("2,Plan,left as it was"), "{report}");
    assert_eq!(w.attrs("c").await, json!({"Plan": "a"}));
}
