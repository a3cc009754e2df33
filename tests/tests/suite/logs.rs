//! What the functions log: JSON lines that each name their request (request id, route, and
//! the account once known), and never a secret.

use std::io::Write;
use std::sync::{Arc, Mutex};

use integration_tests::*;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_line_names_its_request_and_no_secret_appears() {
    let capture = Capture::default();
    let sink = capture.clone();
    let filter = tracing_subscriber::EnvFilter::new("info");
    // While one subscriber is registered in the whole process, tracing asks only the current
    // thread's about a callsite it meets first, and caches the answer: a callsite another
    // test's thread reaches first would be cached as unwanted. A second one, kept alive here,
    // makes it ask every registered subscriber, this thread's included.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _logs = tracing::subscriber::set_default(boot::telemetry::subscriber(filter, move || sink.clone()));

    let stack = Stack::new().await;
    let token_app = stack.token_app();
    let headers =
        [("authorization", stack.basic()), ("content-type", "application/x-www-form-urlencoded".into())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = answer(
        edge::front::serve(
            &token_app,
            req("POST", "/accounts/connect/token", &headers, Some("grant_type=client_credentials")),
        )
        .await,
    );
    assert_eq!(a.status, 200);
    let access = a.body["access_token"].as_str().unwrap().to_string();
    let bad = [("authorization", basic(&stack.client_id, "wrong-secret-value"))];
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    edge::front::serve(
        &token_app,
        req("POST", "/accounts/connect/token", &bad, Some("grant_type=client_credentials")),
    )
    .await;

    // A client that swaps its id and secret: the "id" it sends is its secret.
    let swapped = [("authorization", basic(stack.client_secret.expose(), &stack.client_id))];
    let swapped: Vec<(&str, &str)> = swapped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = answer(
        edge::front::serve(
            &token_app,
            req("POST", "/accounts/connect/token", &swapped, Some("grant_type=client_credentials")),
        )
        .await,
    );
    assert_eq!(a.status, 401);
    // 8 KiB of attacker-chosen text as a client id.
    let noise = "x".repeat(8192);
    let form = format!("grant_type=client_credentials&client_id={noise}&client_secret=s");
    let form_headers = [("content-type", "application/x-www-form-urlencoded")];
    edge::front::serve(&token_app, req("POST", "/accounts/connect/token", &form_headers, Some(&form))).await;

    let auth = stack.bearer(ALL_SCOPES).await;
    let (_, integration_token) = create_integration(&stack, &auth, SEED_INTEGRATION).await;
    let user_app = stack.user_data_app();
    let body = json!({"token": integration_token, "data": [{"Email": "log@x.io", "Type": "A"}]}).to_string();
    assert_eq!(
        call_user_data(&user_app, &auth, "POST", "/public/v1/user/data", Some(&body)).await.status,
        200
    );
    call_user_data(&user_app, &auth, "POST", "/public/v1/user/data", Some("{}")).await;
    call_user_data(&user_app, "Bearer not.a.token", "GET", "/public/v1/user/log@x.io", None).await;

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    assert!(lines.len() >= 5, "{text}");
    for line in &lines {
        let span = &line["span"];
        assert!(span["request_id"].as_str().is_some_and(|s| !s.is_empty()), "no request id: {line}");
        assert!(span["route"].as_str().is_some_and(|s| !s.is_empty()), "no route: {line}");
    }
    let written =
        lines.iter().find(|l| l["fields"]["message"] == "user data written").expect("the write is logged");
    assert_eq!(written["span"]["account"], "acme", "{written}");
    assert_eq!(written["level"], "INFO");

    for secret in [
        stack.client_secret.expose(),
        "wrong-secret-value",
        integration_token.as_str(),
        access.as_str(),
        &auth[7..],
        noise.as_str(),
    ] {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
    assert!(text.contains(&stack.client_id), "a well-formed client id is logged");
}
