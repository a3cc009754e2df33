//! Bulk file imports: create, upload to the presigned URL, the worker (as S3 → SQS invokes
//! it), status, the error report, modes, redelivered and concurrent events, resumed legs,
//! malformed files, tenancy, and the signed callback checked by a receiver of our own.

use std::time::Duration;

use import_worker::{Outcome, Worker};
use integration_tests::*;
use serde_json::{Value, json};
use store::imports::{Checkpoint, ImportStatus, Lease};

/// Email identifies the user; one property of each type, one of them nested.
const CRM: &str = r#"{"name": "CRM backfill", "userIdentifierProperty": "Email",
  "properties": [{"path": "Type", "name": "Customer_Type", "type": "String"},
                 {"path": "plan.seats", "name": "Seats", "type": "Number"},
                 {"path": "Since", "name": "Since", "type": "Date"},
                 {"path": "Vip", "name": "Vip", "type": "Boolean"}]}"#;

struct Import {
    id: String,
    path: String,
    upload_url: String,
    created: Value,
}

async fn create(stack: &Stack, auth: &str, integration: &str, body: Value) -> Import {
    let path = format!("/public/v1/integrations/{integration}/imports");
    let a = call_app(&stack.imports_app(), auth, "POST", &path, Some(&body.to_string())).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["importId"].as_str().unwrap().to_string();
    assert_eq!(a.header("location"), Some(format!("{path}/{id}").as_str()));
    Import {
        path: format!("{path}/{id}"),
        upload_url: a.body["uploadUrl"].as_str().unwrap().to_string(),
        id,
        created: a.body,
    }
}

async fn upload(import: &Import, file: &[u8]) {
    let (status, body) = http("PUT", &import.upload_url, file.to_vec()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

fn key(stack: &Stack, integration: &str, import: &Import) -> String {
    files::upload_key(&stack.account, integration, &import.id)
}

async fn status(stack: &Stack, auth: &str, import: &Import) -> Value {
    let a = call_app(&stack.imports_app(), auth, "GET", &import.path, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

async fn report(status: &Value) -> String {
    let (code, body) = http("GET", status["errorsUrl"].as_str().expect("an errorsUrl"), Vec::new()).await;
    assert_eq!(code, 200);
    String::from_utf8(body).unwrap()
}

async fn attributes(stack: &Stack, auth: &str, user: &str, integration: &str) -> Option<Value> {
    user_group(&stack.user_data_app(), auth, user, integration).await.map(|g| g["attributes"].clone())
}

async fn run_to_end(worker: &Worker, k: &str) {
    let answer = import_worker::handle(worker, upload_event("m-1", k)).await;
    assert!(answer.batch_item_failures.is_empty());
}

#[tokio::test]
async fn a_csv_file_is_judged_row_by_row_and_reported() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    let c = &import.created;
    assert_eq!((c["status"].as_str(), c["mode"].as_str()), (Some("waiting_for_upload"), Some("replace")));
    assert_eq!(c["uploadMethod"], "PUT");
    assert_eq!(c["uploadHeaders"], json!({}), "nothing beyond what curl sends");
    assert_eq!(c["maxBytes"], 5_368_709_120u64);
    assert!(c.get("callbackSecret").is_none());

    let file = "\u{feff}Email,Type,plan.seats,Since,Vip,Notes\r\n\
        a@x.com,gold,12,2024-02-29,true,hello\r\n\
        b@x.com,\"silver, \"\"plus\"\"\",,,FALSE,\r\n\
        c@x.com,bronze,many,2023-02-29,yes,\r\n\
        ,orphan,1,,,\r\n\
        d@x.com,,,,,\r\n\
        e@x.com,short\r\n\
        \r\n\
        a@x.com,platinum,,,,\r\n";
    upload(&import, file.as_bytes()).await;
    run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;

    let s = status(&stack, &auth, &import).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!((s["rowsRead"].as_i64(), s["accepted"].as_i64()), (Some(7), Some(2)), "{s}");
    assert_eq!((s["rejected"].as_i64(), s["superseded"].as_i64()), (Some(4), Some(1)), "{s}");
    assert_eq!(s["bytesRead"].as_u64(), Some(file.len() as u64));
    assert_eq!(s["ignoredColumns"], json!(["Notes"]));
    assert!(s["startedAt"].is_string() && s["finishedAt"].is_string());

    let lines: Vec<String> = report(&s).await.lines().map(str::to_string).collect();
    assert_eq!(lines[0], "row,column,reason");
    let has = |row: &str, column: &str, words: &str| {
        lines.iter().any(|l| l.starts_with(&format!("{row},{column},")) && l.contains(words))
    };
    // Blank lines are not rows (the CSV reader skips them): the second a@x.com is row 8.
    assert!(has("2", "", "superseded by row 8"), "{lines:?}");
    assert!(has("4", "plan.seats", "decimal"), "{lines:?}");
    assert!(has("4", "Since", "date"), "{lines:?}");
    assert!(has("4", "Vip", "not a Boolean"), "{lines:?}");
    assert!(has("5", "Email", "identifier is missing"), "{lines:?}");
    assert!(has("6", "", "at least one"), "{lines:?}");
    assert!(has("7", "", "expected 6 fields"), "{lines:?}");

    // The later row of a@x.com wins (replace: its empty cells are no values).
    assert_eq!(
        attributes(&stack, &auth, "a@x.com", &integration).await,
        Some(json!({"Customer_Type": "platinum"}))
    );
    assert_eq!(
        attributes(&stack, &auth, "b@x.com", &integration).await,
        Some(json!({"Customer_Type": "silver, \"plus\"", "Vip": false}))
    );
    assert_eq!(attributes(&stack, &auth, "c@x.com", &integration).await, None);
}

#[tokio::test]
async fn replace_removes_what_a_row_lacks_and_merge_keeps_it() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, token) = create_integration(&stack, &auth, CRM).await;
    let seed = json!({"token": token, "data": [
        {"Email": "r@x.com", "Type": "gold", "Vip": true},
        {"Email": "m@x.com", "Type": "gold", "Vip": true}]});
    let a = call_user_data(
        &stack.user_data_app(),
        &auth,
        "POST",
        "/public/v1/user/data",
        Some(&seed.to_string()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    for (mode, user) in [("replace", "r@x.com"), ("merge", "m@x.com")] {
        let import = create(&stack, &auth, &integration, json!({"format": "ndjson", "mode": mode})).await;
        let line = json!({"Email": user, "plan": {"seats": 3}, "Vip": null}).to_string();
        upload(&import, format!("{line}\n").as_bytes()).await;
        run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;
        let s = status(&stack, &auth, &import).await;
        // NDJSON is judged as JSON: a null is refused as in the API.
        assert_eq!((s["status"].as_str(), s["rejected"].as_i64()), (Some("completed"), Some(1)), "{s}");
        let fixed = json!({"Email": user, "plan": {"seats": 3}}).to_string();
        let again = create(&stack, &auth, &integration, json!({"format": "ndjson", "mode": mode})).await;
        upload(&again, format!("{fixed}\n").as_bytes()).await;
        run_to_end(&stack.import_worker(600), &key(&stack, &integration, &again)).await;
        assert_eq!(status(&stack, &auth, &again).await["accepted"], 1);
    }
    assert_eq!(attributes(&stack, &auth, "r@x.com", &integration).await, Some(json!({"Seats": 3})));
    assert_eq!(
        attributes(&stack, &auth, "m@x.com", &integration).await,
        Some(json!({"Customer_Type": "gold", "Vip": true, "Seats": 3}))
    );
}

fn rows(n: usize) -> String {
    let mut file = String::from("Email,Type,plan.seats\n");
    for i in 0..n {
        file.push_str(&format!("u{i}@x.com,t{i},{i}\n"));
    }
    file
}

#[tokio::test]
async fn redelivered_and_concurrent_events_count_each_row_once() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    upload(&import, rows(120).as_bytes()).await;
    let k = key(&stack, &integration, &import);
    let (mut w1, mut w2) = (stack.import_worker(600), stack.import_worker(600));
    (w1.page_rows, w2.page_rows) = (10, 10);
    // Two deliveries at once: one holds the lease, the other finds it busy.
    let (a, b) = tokio::join!(import_worker::run_key(&w1, "m-1", &k), import_worker::run_key(&w2, "m-2", &k));
    let outcomes = [a.unwrap(), b.unwrap()];
    assert!(outcomes.contains(&Outcome::Finished(ImportStatus::Completed)), "{outcomes:?}");
    assert!(outcomes.contains(&Outcome::Skipped), "{outcomes:?}");
    // Redelivered after the end: nothing happens.
    assert_eq!(import_worker::run_key(&stack.import_worker(600), "m-3", &k).await.unwrap(), Outcome::Skipped);
    let s = status(&stack, &auth, &import).await;
    assert_eq!(
        (s["rowsRead"].as_i64(), s["accepted"].as_i64(), s["rejected"].as_i64()),
        (Some(120), Some(120), Some(0))
    );
    assert!(s["errorsUrl"].is_null());
    assert_eq!(
        attributes(&stack, &auth, "u119@x.com", &integration).await,
        Some(json!({"Customer_Type": "t119", "Seats": 119}))
    );
}

#[tokio::test]
async fn an_import_out_of_time_hands_over_and_the_next_leg_resumes_at_the_checkpoint() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv", "mode": "merge"})).await;
    // A bad row in the second page: the report grows across legs.
    let file = rows(45).replace("u13@x.com,t13,13", "u13@x.com,t13,thirteen");
    upload(&import, file.as_bytes()).await;
    let k = key(&stack, &integration, &import);
    let mut legs = 0;
    let marker = format!("{k}{}", files::RESUME_SUFFIX);
    let mut next = k.clone();
    loop {
        // No time at all: each leg does one page of 10 rows, then hands over.
        let mut worker = stack.import_worker(0);
        worker.page_rows = 10;
        legs += 1;
        match import_worker::run_key(&worker, &format!("m-leg-{legs}"), &next).await.unwrap() {
            Outcome::Continued => {
                let s = status(&stack, &auth, &import).await;
                assert_eq!(s["status"], "processing");
                assert_eq!(s["rowsRead"].as_i64(), Some(10 * legs), "{s}");
                assert!(stack.files.head(&marker).await.unwrap().is_some(), "the next leg's marker");
                next = marker.clone();
            }
            Outcome::Finished(ImportStatus::Completed) => break,
            other => panic!("{other:?}"),
        }
        assert!(legs < 10);
    }
    assert_eq!(legs, 5);
    let s = status(&stack, &auth, &import).await;
    assert_eq!(
        (s["rowsRead"].as_i64(), s["accepted"].as_i64(), s["rejected"].as_i64()),
        (Some(45), Some(44), Some(1))
    );
    assert_eq!(s["bytesRead"].as_u64(), Some(file.len() as u64));
    let r = report(&s).await;
    assert_eq!(r.lines().count(), 2, "{r}");
    assert!(r.contains("15,plan.seats,"), "{r}");
    for i in [0, 9, 10, 44] {
        let got = attributes(&stack, &auth, &format!("u{i}@x.com"), &integration).await;
        assert_eq!(got, Some(json!({"Customer_Type": format!("t{i}"), "Seats": i})));
    }
}

#[tokio::test]
async fn a_file_that_cannot_be_read_fails_the_import_with_the_reason() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let cases: [(&str, &[u8], &str); 5] = [
        ("csv", b"Name,Type\nx,y\n", "user identifier 'Email'"),
        ("csv", b"Email,Type\na@x.com,\xff\xfe\n", "not UTF-8"),
        ("csv", b"", "empty"),
        ("csv", b"Email,Email\na,b\n", "twice"),
        ("ndjson", b"{\"Email\": \"a\", \"Type\": \"x\"}\n\xff\n", "not UTF-8"),
    ];
    for (format, file, reason) in cases {
        let import = create(&stack, &auth, &integration, json!({"format": format})).await;
        upload(&import, file).await;
        run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;
        let s = status(&stack, &auth, &import).await;
        assert_eq!(s["status"], "failed", "{s}");
        assert!(s["failure"].as_str().unwrap().contains(reason), "{reason}: {s}");
    }
    // The rows before the point where the file fails are written, and counted as written.
    let import = create(&stack, &auth, &integration, json!({"format": "ndjson"})).await;
    upload(&import, b"{\"Email\": \"early@x.com\", \"Type\": \"x\"}\n\xff\n").await;
    run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;
    let s = status(&stack, &auth, &import).await;
    assert_eq!((s["status"].as_str(), s["accepted"].as_i64()), (Some("failed"), Some(1)), "{s}");
    assert_eq!(
        attributes(&stack, &auth, "early@x.com", &integration).await,
        Some(json!({"Customer_Type": "x"}))
    );
    // An event for an import whose file never came (a resume marker alone, say).
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;
    let s = status(&stack, &auth, &import).await;
    assert_eq!((s["status"].as_str(), s["failure"].as_str()), (Some("failed"), Some("no file was uploaded")));
}

#[tokio::test]
async fn imports_belong_to_their_account_and_the_request_is_judged() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    let app = stack.imports_app();
    let (_, other_auth) = stack.account_with_bearer("globex", 100, 10_000).await;
    for (method, path) in
        [("GET", import.path.clone()), ("GET", format!("/public/v1/integrations/{integration}/imports"))]
    {
        let a = call_app(&app, &other_auth, method, &path, None).await;
        assert_eq!(a.status, 404, "{path}: {}", a.body);
    }
    let a = call_app(
        &app,
        &other_auth,
        "POST",
        &format!("/public/v1/integrations/{integration}/imports"),
        Some(r#"{"format":"csv"}"#),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);

    let read_only = stack.bearer("endUsers:read").await;
    let a = call_app(&app, &read_only, "GET", &import.path, None).await;
    assert_eq!(a.status, 403, "{}", a.body);

    let path = format!("/public/v1/integrations/{integration}/imports");
    for (body, where_) in [
        (r#"{}"#, "format"),
        (r#"{"format": "xlsx"}"#, "format"),
        (r#"{"format": "csv", "mode": null}"#, "mode"),
        (r#"{"format": "csv", "callbackUrl": "ftp://x"}"#, "callbackUrl"),
        (r#"{"format": "csv", "extra": true}"#, "extra"),
    ] {
        let a = call_app(&app, &auth, "POST", &path, Some(body)).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert_eq!(a.body["error"]["details"][0]["path"], where_, "{body}: {}", a.body);
    }
    let a = call_app(&app, &auth, "GET", &format!("{path}/not-a-uuid"), None).await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn the_list_is_newest_first_and_paginated() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create(&stack, &auth, &integration, json!({"format": "csv"})).await.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ids.reverse();
    let path = format!("/public/v1/integrations/{integration}/imports");
    let app = stack.imports_app();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{path}?limit=2&cursor={c}"),
            None => format!("{path}?limit=2"),
        };
        let a = call_app(&app, &auth, "GET", &q, None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        seen.extend(
            a.body["imports"].as_array().unwrap().iter().map(|i| i["importId"].as_str().unwrap().to_string()),
        );
        match a.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    for bad in ["limit=0", "limit=101", "cursor=abc"] {
        let a = call_app(&app, &auth, "GET", &format!("{path}?{bad}"), None).await;
        assert_eq!(a.status, 400, "{bad}");
    }
}

/// A one-request HTTP receiver: answers `status` and hands over the request's signature
/// header and body.
async fn receiver(status: u16) -> (String, tokio::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/import", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    break (i + 4, length);
                }
            };
            while buf.len() < head_end + length {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let signature = head
                .lines()
                .find_map(|l| {
                    l.to_lowercase().starts_with("x-import-signature:").then(|| l[19..].trim().to_string())
                })
                .unwrap_or_default();
            let _ = tx.send((signature, buf[head_end..head_end + length].to_vec())).await;
            let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = sock.write_all(answer.as_bytes()).await;
        }
    });
    (url, rx)
}

/// What a receiver does with the documented scheme: HMAC-SHA256 of "<t>.<body>" under the
/// secret, hex, compared with v1.
fn verifies(secret: &str, signature: &str, body: &[u8]) -> bool {
    let mut parts = signature.split(',');
    let t = parts.next().and_then(|p| p.strip_prefix("t=")).unwrap();
    let v1 = parts.next().and_then(|p| p.strip_prefix("v1=")).unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let expected: String =
        aws_lc_rs::hmac::sign(&key, &signed).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    expected == v1
}

#[tokio::test]
async fn the_callback_is_signed_with_the_secret_shown_once_and_retried() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let (url, mut received) = receiver(200).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv", "callbackUrl": url})).await;
    let secret = import.created["callbackSecret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 43);
    let s = status(&stack, &auth, &import).await;
    assert!(s.get("callbackSecret").is_none(), "shown once: {s}");
    assert_eq!(s["callbackUrl"], url);

    upload(&import, rows(3).as_bytes()).await;
    run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;
    let (signature, body) = received.recv().await.unwrap();
    assert!(verifies(&secret, &signature, &body), "{signature}");
    assert!(!verifies("another secret", &signature, &body));
    let summary: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((summary["status"].as_str(), summary["accepted"].as_i64()), (Some("completed"), Some(3)));
    assert_eq!(summary["importId"], import.id.as_str());
    assert_eq!(status(&stack, &auth, &import).await["callbackStatus"], "delivered");

    // A receiver that fails is retried with backoff; its 4xx is final.
    let (url, mut received) = receiver(503).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv", "callbackUrl": url})).await;
    upload(&import, rows(1).as_bytes()).await;
    let started = std::time::Instant::now();
    run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;
    let mut attempts = 0;
    while received.try_recv().is_ok() {
        attempts += 1;
    }
    assert_eq!(attempts, 5);
    assert!(started.elapsed() >= Duration::from_secs(15), "backoff 1 + 2 + 4 + 8 s");
    assert_eq!(status(&stack, &auth, &import).await["callbackStatus"], "failed");
}

#[tokio::test]
async fn a_replace_import_costs_one_write_unit_per_row_one_conditional_put_each() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    let n = 2_000;
    upload(&import, rows(n).as_bytes()).await;
    let before = stack.units();
    stack.counter.reset();
    run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;
    let units = stack.units() - before;
    let ops = stack.counter.take();
    let batches = ops.iter().filter(|o| *o == "PutItem").count();
    // Items under 1 KB: one unit each; the record's lease, checkpoints and end are the rest.
    assert!(units.wcu <= 1.02 * n as f64, "{} WCU for {n} rows", units.wcu);
    assert!(units.wcu >= n as f64, "{} WCU for {n} rows", units.wcu);
    // One conditional put per row: a batch takes no suppression condition. The counter sees
    // each attempt, and the loaded local server drops some of 100 puts in flight, which the
    // SDK sends again (2,002, 2,007 and 2,046 in three CI runs): at least one per row, none
    // batched, and never two per row. What is billed is the units above.
    assert!(!ops.iter().any(|o| o == "BatchWriteItem"), "{ops:?}");
    assert!((n..=n + n / 10).contains(&batches), "{batches} puts for {n} rows");
    assert!(ops.len() - batches <= 8, "a small constant besides the puts: {ops:?}");
    assert!(units.rcu <= 5.0, "{} RCU", units.rcu);
    assert_eq!(status(&stack, &auth, &import).await["accepted"], n);
}

#[tokio::test]
async fn a_worker_that_died_is_taken_over_from_its_last_checkpoint_once_its_lease_runs_out() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    upload(&import, rows(30).as_bytes()).await;
    let k = key(&stack, &integration, &import);
    // A first worker reads one page, then hands over; a second takes the lease and dies
    // (never checkpoints) with its lease still running.
    let mut first = stack.import_worker(0);
    first.page_rows = 10;
    assert_eq!(import_worker::run_key(&first, "m-1", &k).await.unwrap(), Outcome::Continued);
    let now = domain::Timestamp::now().epoch_secs();
    let lease = stack
        .store
        .lease_import(&stack.account, &integration, &import.id, "dead", now, now + 60)
        .await
        .unwrap();
    assert!(matches!(lease, store::imports::Lease::Taken(_)));
    // Its message comes back while the lease runs: nothing happens.
    assert_eq!(import_worker::run_key(&stack.import_worker(600), "m-3", &k).await.unwrap(), Outcome::Skipped);
    // The lease ran out (as if 60 s later): the next delivery resumes at row 11.
    let later = now + 61;
    let lease = stack
        .store
        .lease_import(&stack.account, &integration, &import.id, "next", later, later + 60)
        .await
        .unwrap();
    let store::imports::Lease::Taken(rec) = lease else { panic!("{lease:?}") };
    assert_eq!(rec.progress.rows_read, 10);
    stack
        .store
        .checkpoint_import(
            &rec,
            "next",
            store::imports::Checkpoint { progress: &rec.progress, lease_until: now - 1, usage: None },
        )
        .await
        .unwrap();
    assert_eq!(
        import_worker::run_key(&stack.import_worker(600), "m-3", &k).await.unwrap(),
        Outcome::Finished(ImportStatus::Completed)
    );
    let s = status(&stack, &auth, &import).await;
    assert_eq!((s["rowsRead"].as_i64(), s["accepted"].as_i64()), (Some(30), Some(30)), "{s}");
}

/// Runs legs (each out of time after one page of `page_rows`) until the import ends.
async fn legs_to_end(stack: &Stack, k: &str, page_rows: usize) -> (usize, Outcome) {
    let marker = format!("{k}{}", files::RESUME_SUFFIX);
    let mut next = k.to_string();
    for legs in 1..=20 {
        let mut worker = stack.import_worker(0);
        worker.page_rows = page_rows;
        match import_worker::run_key(&worker, &format!("m-{legs}"), &next).await.unwrap() {
            Outcome::Continued => next = marker.clone(),
            end => return (legs, end),
        }
    }
    panic!("no end after 20 legs");
}

#[tokio::test]
async fn a_file_that_ends_exactly_on_a_page_and_a_leg_ends_the_import() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    for with_final_line_end in [true, false] {
        let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
        let mut file = rows(40);
        if !with_final_line_end {
            file.pop();
        }
        upload(&import, file.as_bytes()).await;
        // Four pages of ten: the fourth leg reads the last row and ends the import itself.
        let (legs, end) = legs_to_end(&stack, &key(&stack, &integration, &import), 10).await;
        assert_eq!((legs, end), (4, Outcome::Finished(ImportStatus::Completed)));
        let s = status(&stack, &auth, &import).await;
        assert_eq!((s["rowsRead"].as_i64(), s["accepted"].as_i64()), (Some(40), Some(40)), "{s}");
        assert_eq!(s["bytesRead"].as_u64(), Some(file.len() as u64));
    }

    // A leg that handed over at the very end of the file (as one did before the end was
    // noticed): the next leg reads nothing (a range past the end is refused) and completes.
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    let file = rows(10);
    upload(&import, file.as_bytes()).await;
    let k = key(&stack, &integration, &import);
    let mut first = stack.import_worker(0);
    first.page_rows = 10;
    let now = domain::Timestamp::now().epoch_secs();
    let Lease::Taken(rec) =
        stack.store.lease_import(&stack.account, &integration, &import.id, "x", now, now + 60).await.unwrap()
    else {
        panic!("no lease")
    };
    let mut progress = rec.progress.clone();
    progress.bytes_read = file.len() as i64;
    progress.rows_read = 10;
    progress.accepted = 10;
    progress.header = Some(vec!["Email".into(), "Type".into(), "plan.seats".into()]);
    progress.etag = stack.files.head(&k).await.unwrap().map(|f| f.etag);
    let cp = Checkpoint { progress: &progress, lease_until: now - 1, usage: None };
    assert!(stack.store.checkpoint_import(&rec, "x", cp).await.unwrap());
    let marker = format!("{k}{}", files::RESUME_SUFFIX);
    assert_eq!(
        import_worker::run_key(&first, "m-2", &marker).await.unwrap(),
        Outcome::Finished(ImportStatus::Completed)
    );
    let s = status(&stack, &auth, &import).await;
    assert_eq!((s["status"].as_str(), s["accepted"].as_i64()), (Some("completed"), Some(10)), "{s}");
}

#[tokio::test]
async fn a_leg_that_fails_after_taking_the_lease_is_resumed_by_its_message_at_once() {
    let stack = Stack::with_faults(FaultPlan::new()).await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    upload(&import, rows(30).as_bytes()).await;
    let k = key(&stack, &integration, &import);
    let mut worker = stack.import_worker(600);
    worker.page_rows = 10;

    // The second page's writes fail past every retry: the leg fails with the lease taken.
    // (10 rows a page, one conditional put per row.)
    stack.faults.arm(FaultPlan::new().fail("PutItem", 11..=100_000, Fault::ServerError));
    let answer = import_worker::handle(&worker, upload_event("m-1", &k)).await;
    let failed: Vec<&str> = answer.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["m-1"]);
    stack.faults.disarm();
    let s = status(&stack, &auth, &import).await;
    assert_eq!((s["status"].as_str(), s["rowsRead"].as_i64()), (Some("processing"), Some(10)), "{s}");

    // The message comes back (10 s later locally; well within the failed leg's lease): it
    // resumes at the checkpoint, it is not skipped.
    let answer = import_worker::handle(&worker, upload_event("m-1", &k)).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let s = status(&stack, &auth, &import).await;
    assert_eq!(
        (s["status"].as_str(), s["rowsRead"].as_i64(), s["accepted"].as_i64()),
        (Some("completed"), Some(30), Some(30)),
        "{s}"
    );

    // A leg that died without letting its lease go (killed, say): another message's delivery
    // finds the import busy, its own message's next delivery takes it over.
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    upload(&import, rows(5).as_bytes()).await;
    let k = key(&stack, &integration, &import);
    let now = domain::Timestamp::now().epoch_secs();
    let lease =
        stack.store.lease_import(&stack.account, &integration, &import.id, "m-dead", now, now + 120).await;
    assert!(matches!(lease.unwrap(), Lease::Taken(_)));
    assert_eq!(import_worker::run_key(&worker, "m-other", &k).await.unwrap(), Outcome::Skipped);
    assert_eq!(
        import_worker::run_key(&worker, "m-dead", &k).await.unwrap(),
        Outcome::Finished(ImportStatus::Completed)
    );
}

#[tokio::test]
async fn files_of_no_data_rows_end_and_blank_lines_count_toward_a_page() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let cases: [(&str, &[u8], &str); 4] = [
        ("csv", b"Email,Type,plan.seats\n", "completed"),
        ("csv", b"\xEF\xBB\xBFEmail,Type\r\n\r\n\r\n", "completed"),
        ("ndjson", b"\n\n  \r\n\n", "completed"),
        ("csv", b"\n\n\n", "failed"),
    ];
    for (format, file, end) in cases {
        let import = create(&stack, &auth, &integration, json!({"format": format})).await;
        upload(&import, file).await;
        run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;
        let s = status(&stack, &auth, &import).await;
        assert_eq!(s["status"], end, "{}: {s}", String::from_utf8_lossy(file));
        assert_eq!((s["rowsRead"].as_i64(), s["accepted"].as_i64()), (Some(0), Some(0)), "{s}");
    }

    // 20 MB of line ends: read in pages of at most 8 MiB (with a checkpoint and a look at the
    // clock after each), not in one unbounded call (which overflowed the stack).
    let import = create(&stack, &auth, &integration, json!({"format": "ndjson"})).await;
    let file = vec![b'\n'; 20 * 1024 * 1024];
    upload(&import, &file).await;
    let (legs, end) = legs_to_end(&stack, &key(&stack, &integration, &import), 10).await;
    assert_eq!((legs, end), (3, Outcome::Finished(ImportStatus::Completed)));
    let s = status(&stack, &auth, &import).await;
    assert_eq!((s["rowsRead"].as_i64(), s["bytesRead"].as_u64()), (Some(0), Some(file.len() as u64)), "{s}");
}

#[tokio::test]
async fn a_header_of_huge_names_keeps_the_import_record_small() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    // A 300 KB column name (the record held it whole: past DynamoDB's 400 KB item limit the
    // checkpoint failed and the import stayed `processing`), and many more columns.
    let huge = "N".repeat(300 * 1024);
    let extra: Vec<String> = (0..2000).map(|i| format!("col{i:04}{}", "x".repeat(100))).collect();
    let file =
        format!("Email,{huge},Type,{}\na@x.com,1,gold,{}\n", extra.join(","), vec!["v"; 2000].join(","));
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    upload(&import, file.as_bytes()).await;
    run_to_end(&stack.import_worker(600), &key(&stack, &integration, &import)).await;
    let s = status(&stack, &auth, &import).await;
    assert_eq!(
        (s["status"].as_str(), s["accepted"].as_i64()),
        (Some("completed"), Some(1)),
        "{}",
        &s.to_string()[..500]
    );
    let ignored = s["ignoredColumns"].as_array().unwrap();
    assert_eq!(ignored.len(), 100, "the first 100 ignored columns are listed");
    assert_eq!(ignored[0].as_str().unwrap().len(), domain::import::MAX_QUOTED_NAME_BYTES);
    assert!(s.to_string().len() < 40 * 1024, "{} bytes", s.to_string().len());
    assert_eq!(
        attributes(&stack, &auth, "a@x.com", &integration).await,
        Some(json!({"Customer_Type": "gold"}))
    );
}

#[tokio::test]
async fn each_pages_report_lines_are_stored_once_and_assembled_at_the_end() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    // Every row is bad.
    let mut file = String::from("Email,Type,plan.seats\n");
    for i in 0..45 {
        file.push_str(&format!("u{i}@x.com,t,=1+{i}\n"));
    }
    upload(&import, file.as_bytes()).await;
    let (legs, end) = legs_to_end(&stack, &key(&stack, &integration, &import), 10).await;
    assert_eq!((legs, end), (5, Outcome::Finished(ImportStatus::Completed)));
    let s = status(&stack, &auth, &import).await;
    assert_eq!(s["rejected"].as_i64(), Some(45));
    let r = report(&s).await;
    assert_eq!(r.lines().count(), 46, "{r}");
    assert!(r.lines().nth(1).unwrap().starts_with("2,plan.seats,'=1+0'"), "{r}");
    assert!(r.lines().last().unwrap().starts_with("46,plan.seats,"), "{r}");
    // One part per page, written once: together they are the report, less its header.
    let prefix = files::report_parts_prefix(&stack.account, &integration, &import.id);
    let parts = stack.files.list(&prefix).await.unwrap();
    assert_eq!(parts.len(), 5, "{parts:?}");
    let mut stored = 0;
    for p in &parts {
        stored += stack.files.read_all(p).await.unwrap().unwrap().len();
    }
    assert_eq!(stored + "row,column,reason\n".len(), r.len());
}

/// One worker serving the queue in order, as a reserved concurrency of 1 would: each message's
/// leg runs for at most `slice`, and a leg that hands over queues its next message at the back.
/// Returns, per import key, the seconds from the start until it ended.
async fn serve_queue(
    stack: &Stack,
    keys: &[String],
    slice: Duration,
    page_rows: Option<usize>,
) -> std::collections::HashMap<String, f64> {
    let start = std::time::Instant::now();
    let mut queue: std::collections::VecDeque<String> = keys.iter().cloned().collect();
    let mut ended = std::collections::HashMap::new();
    let mut n = 0;
    while let Some(k) = queue.pop_front() {
        n += 1;
        let mut worker = stack.import_worker(0);
        worker.stop_at = std::time::Instant::now() + slice;
        if let Some(rows) = page_rows {
            worker.page_rows = rows;
        }
        match import_worker::run_key(&worker, &format!("q-{n}"), &k).await.unwrap() {
            Outcome::Continued => {
                let upload = k.strip_suffix(files::RESUME_SUFFIX).unwrap_or(&k).to_string();
                queue.push_back(format!("{upload}{}", files::RESUME_SUFFIX));
            }
            Outcome::Finished(_) => {
                let upload = k.strip_suffix(files::RESUME_SUFFIX).unwrap_or(&k).to_string();
                ended.insert(upload, start.elapsed().as_secs_f64());
            }
            other => panic!("{other:?}"),
        }
    }
    ended
}

#[tokio::test]
async fn a_small_import_of_another_account_waits_one_slice_not_the_whole_big_import() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (big_integration, _) = create_integration(&stack, &auth, CRM).await;
    let (other, other_client, _) = stack.account_with_limits("globex", 100, 10_000).await;
    let other_auth = stack.bearer_for(&other, &other_client, ALL_SCOPES).await;
    let (small_integration, _) = create_integration(&stack, &other_auth, CRM).await;
    // FAIRNESS_ROWS sets the big import's rows (the issue's run: 1,000,000, about an hour here
    // at ~300 rows/s; 200,000 take 11 minutes). Past 100,000 only the sliced pass runs: without slices the small import
    // ends after the whole big one, which the default run shows each time.
    let big_rows: usize = std::env::var("FAIRNESS_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000);
    // (At that size a leg runs for 5 s of pages of the worker's own size, as on AWS, instead
    // of one 100-row page: 10,000 hand-overs would measure the hand-overs.)
    let huge = big_rows > 100_000;
    let passes: &[Duration] =
        if huge { &[Duration::from_secs(5)] } else { &[Duration::from_secs(3600), Duration::ZERO] };
    let mut times = Vec::new();
    for &slice in passes {
        let big = create(&stack, &auth, &big_integration, json!({"format": "csv"})).await;
        upload(&big, rows(big_rows).as_bytes()).await;
        let small = create(&stack, &other_auth, &small_integration, json!({"format": "csv"})).await;
        upload(&small, rows(10).as_bytes()).await;
        let big_key = key(&stack, &big_integration, &big);
        let small_key = files::upload_key(&other, &small_integration, &small.id);
        // The big import's upload came first.
        let page_rows = if huge { None } else { Some(100) };
        let ended = serve_queue(&stack, &[big_key.clone(), small_key.clone()], slice, page_rows).await;
        times.push((ended[&small_key], ended[&big_key]));
        println!(
            "FAIRNESS pass of {slice:?} slices: small {:.2} s, big {:.2} s",
            ended[&small_key], ended[&big_key]
        );
        // A new token: the big import may take longer than a token lives (1,000,000 rows here:
        // an hour).
        let other_auth = stack.bearer_for(&other, &other_client, ALL_SCOPES).await;
        let s = status(&stack, &other_auth, &small).await;
        assert_eq!(s["accepted"].as_i64(), Some(10), "{s}");
    }
    if let [(sliced_small, sliced_big)] = times[..] {
        println!(
            "FAIRNESS {big_rows} rows: the small import ended after {sliced_small:.2} s with slices; \
             the big one after {sliced_big:.2} s, which is when it would end without them"
        );
        assert!(sliced_small < sliced_big, "with slices it ends first");
        return;
    }
    let ((unsliced_small, unsliced_big), (sliced_small, sliced_big)) = (times[0], times[1]);
    println!(
        "FAIRNESS small import ended after {unsliced_small:.2} s without slices (the big one: {unsliced_big:.2} s), \
         {sliced_small:.2} s with them (the big one: {sliced_big:.2} s)"
    );
    assert!(unsliced_small >= unsliced_big, "without slices the small import waits for the whole big one");
    assert!(sliced_small < sliced_big, "with slices it ends first");
}

#[tokio::test]
async fn an_account_runs_at_most_its_running_slots_and_the_rest_wait_in_the_queue() {
    use store::imports::RUNNING_PER_ACCOUNT;
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let now = domain::Timestamp::now().epoch_secs();
    // Two long legs of this account are running.
    for i in 0..RUNNING_PER_ACCOUNT {
        let slot = stack
            .store
            .take_running_slot(&stack.account, &format!("busy-{i}"), now, now + 600)
            .await
            .unwrap();
        assert_eq!(slot, Some(i));
    }
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    upload(&import, rows(5).as_bytes()).await;
    let k = key(&stack, &integration, &import);
    assert_eq!(import_worker::run_key(&stack.import_worker(0), "m-1", &k).await.unwrap(), Outcome::Deferred);
    let s = status(&stack, &auth, &import).await;
    assert_eq!(s["status"], "waiting_for_upload", "untouched while it waits: {s}");
    let marker = format!("{k}{}", files::RESUME_SUFFIX);
    assert!(stack.files.head(&marker).await.unwrap().is_some(), "queued again");

    // Another account's import is not held back.
    let (other, other_auth) = stack.account_with_bearer("globex", 100, 10_000).await;
    let (other_integration, _) = create_integration(&stack, &other_auth, CRM).await;
    let theirs = create(&stack, &other_auth, &other_integration, json!({"format": "csv"})).await;
    upload(&theirs, rows(5).as_bytes()).await;
    let their_key = files::upload_key(&other, &other_integration, &theirs.id);
    assert_eq!(
        import_worker::run_key(&stack.import_worker(600), "m-2", &their_key).await.unwrap(),
        Outcome::Finished(ImportStatus::Completed)
    );

    // A running leg ends: the waiting import's marker runs it, and its slot is free again after.
    stack.store.release_running_slot(&stack.account, 1, "busy-1", now).await.unwrap();
    assert_eq!(
        import_worker::run_key(&stack.import_worker(600), "m-3", &marker).await.unwrap(),
        Outcome::Finished(ImportStatus::Completed)
    );
    let later = domain::Timestamp::now().epoch_secs();
    assert_eq!(
        stack.store.take_running_slot(&stack.account, "next", later, later + 60).await.unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn an_imports_rows_are_its_clients_usage_once_even_when_a_checkpoint_is_sent_twice() {
    let stack = Stack::with_faults(FaultPlan::new()).await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let import = create(&stack, &auth, &integration, json!({"format": "csv"})).await;
    // 30 rows, one of them rejected: 29 users written, in pages of 10.
    upload(&import, rows(30).replace("u7@x.com,t7,7", "u7@x.com,t7,seven").as_bytes()).await;
    let mut worker = stack.import_worker(600);
    worker.page_rows = 10;
    // The second page's checkpoint commits and its answer is lost: the SDK sends it again.
    stack.faults.arm(FaultPlan::new().lose("TransactWriteItems", 2..=2, Fault::ServerError));
    stack.counter.reset();
    let answer =
        import_worker::handle(&worker, upload_event("m-1", &key(&stack, &integration, &import))).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    // Its rows were admitted against the account's rate limit, in the API's units.
    assert!(!stack.counter.take_rate().is_empty(), "the worker leased rate-limit units");
    assert_eq!(stack.faults.disarm().len(), 1, "the fault was injected");
    let s = status(&stack, &auth, &import).await;
    assert_eq!((s["status"].as_str(), s["accepted"].as_i64()), (Some("completed"), Some(29)), "{s}");
    let day = protect::usage::day_of(shared_now_ms());
    let usage = stack.store.usage(&stack.account, std::slice::from_ref(&day)).await.unwrap();
    let by_import: i64 = usage.iter().map(|(_, _, u)| u.users_updated).sum();
    assert_eq!(by_import, 29, "{usage:?}");
    assert!(
        usage.iter().all(|(_, client, _)| client == &stack.client_id),
        "the creating client's usage: {usage:?}"
    );
}

fn shared_now_ms() -> i64 {
    domain::Timestamp::now().epoch_ms()
}
