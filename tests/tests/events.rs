//! Every sample event in events/ goes through the function that serves its route, against the
//! local server, and succeeds. Placeholders (`__BASIC_CREDENTIALS__`, `__ACCESS_TOKEN__`) are
//! filled in as `scripts/invoke.sh` fills them from `.dev/demo.json`.

use base64::Engine;
use integration_tests::*;

#[tokio::test]
async fn every_event_succeeds_on_its_function() {
    let stack = Stack::new().await;
    let token_app = token::App::new(stack.store.clone(), auth_config());
    let basic_b64 = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        stack.client_id,
        stack.client_secret.expose()
    ));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("__BASIC_CREDENTIALS__", &basic_b64);
        let ev: serde_json::Value = serde_json::from_str(&text).unwrap();
        let route = ev["routeKey"].as_str().unwrap();
        let resp = match route {
            "POST /accounts/connect/token"
            | "GET /.well-known/jwks.json"
            | "GET /.well-known/openid-configuration" => {
                token::handle(&token_app, request(&ev)).await
            }
            other => panic!("{}: no function serves route '{other}'", path.display()),
        };
        let a = answer(resp);
        assert!(
            a.status < 300,
            "{}: {} {}",
            path.display(),
            a.status,
            a.body
        );
        seen += 1;
    }
    assert!(seen >= 3);
}
