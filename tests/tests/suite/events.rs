//! Every sample event in events/ goes through the function that serves its route (as
//! template.yaml and the cargo-lambda router say), against the local server, and succeeds.
//! Placeholders are filled in as `scripts/invoke.sh` fills them from `.dev/demo.json`.

use base64::Engine;
use integration_tests::*;

/// The order the events run in: writes before the reads that need them, deletes last.
const ORDER: &[&str] = &[
    "token.json",
    "jwks.json",
    "openid-configuration.json",
    "integrations-create.json",
    "user-data-seed-single.json",
    "user-data-seed-multiple.json",
    "user-data-seed-nested.json",
    "user-data-operations.json",
    "moengage-track-user.json",
    "user-get.json",
    "integrations-list.json",
    "integrations-get.json",
    "integrations-patch.json",
    "integrations-test.json",
    // Creating the import yields the id that fills __IMPORT_ID__; its file is uploaded then.
    "imports-create.json",
    "import-worker-upload.json",
    "imports-get.json",
    "imports-list.json",
    // Creating the segment yields the guid that fills __SEGMENT_GUID__ in the ones after it.
    "segments-create.json",
    "segments-list.json",
    "segments-get.json",
    "segments-update-add.json",
    "segments-update-remove.json",
    "segments-update-override.json",
    "segments-members.json",
    "segments-delete.json",
    // Creating the rule segment yields the guid that fills __RULE_SEGMENT_GUID__.
    "rule-segments-create.json",
    "rule-segments-list.json",
    "rule-segments-get.json",
    "rule-segments-get-jsonlogic.json",
    "rule-segments-replace.json",
    "rule-segments-evaluate.json",
    "user-segments.json",
    "user-segments-explain.json",
    "segments-evaluate.json",
    "rule-segments-delete.json",
    "user-delete.json",
    "user-erase.json",
    "user-suppression-delete.json",
    "integrations-delete.json",
    "console-index.json",
    "console-asset.json",
    "console-session-create.json",
    "console-session-delete.json",
    "usage.json",
];

const NESTED_INTEGRATION: &str = r#"{"name": "Seed nested example", "userIdentifierProperty": "properties.ID",
  "properties": [{"path": "field1", "type": "String"}, {"path": "field2", "type": "Number"},
                 {"path": "nested.field", "type": "Number"}]}"#;

#[tokio::test]
async fn every_event_succeeds_on_its_function() {
    let stack = Stack::new().await;
    let token_app = stack.token_app();
    let integrations_app = stack.integrations_app();
    let user_data_app = stack.user_data_app();
    let segments_app = stack.segments_app();
    let imports_app = stack.imports_app();
    let console_app = stack.served(console::App::new);
    let bearer = stack.bearer(ALL_SCOPES).await;
    let (integration_id, integration_token) = create_integration(&stack, &bearer, SEED_INTEGRATION).await;
    let (_, nested_token) = create_integration(&stack, &bearer, NESTED_INTEGRATION).await;
    let basic_b64 = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        stack.client_id,
        stack.client_secret.expose()
    ));
    // MoEngage's Basic credentials: the workspace id (our account id) and the secret of the
    // account's client scoped to exactly endUserUpdate:write.
    let moengage_b64 = stack.moengage_basic().trim_start_matches("Basic ").to_string();

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    for f in &files {
        assert!(ORDER.contains(&f.as_str()), "events/{f}: add it to ORDER in tests/tests/suite/events.rs");
    }
    files.sort_by_key(|f| ORDER.iter().position(|o| o == f));

    let mut segment_guid: Option<String> = None;
    let mut rule_segment_guid: Option<String> = None;
    let mut import_id: Option<String> = None;
    for name in &files {
        let mut text = std::fs::read_to_string(format!("{dir}/{name}"))
            .unwrap()
            .replace("__BASIC_CREDENTIALS__", &basic_b64)
            .replace("__ACCESS_TOKEN__", bearer.trim_start_matches("Bearer "))
            .replace("__INTEGRATION_TOKEN__", &integration_token)
            .replace("__NESTED_INTEGRATION_TOKEN__", &nested_token)
            .replace("__INTEGRATION_ID__", &integration_id)
            .replace("__SYSTEM_GUID__", &stack.system.to_string())
            .replace("__WORKSPACE_ID__", stack.account.as_str())
            .replace("__MOENGAGE_BASIC__", &moengage_b64);
        if text.contains("__SEGMENT_GUID__") {
            let guid = segment_guid.as_deref().unwrap_or_else(|| {
                panic!("events/{name}: __SEGMENT_GUID__ needs segments-create.json to run before it")
            });
            text = text.replace("__SEGMENT_GUID__", guid);
        }
        if text.contains("__RULE_SEGMENT_GUID__") {
            let guid = rule_segment_guid.as_deref().unwrap_or_else(|| {
                panic!(
                    "events/{name}: __RULE_SEGMENT_GUID__ needs rule-segments-create.json to run before it"
                )
            });
            text = text.replace("__RULE_SEGMENT_GUID__", guid);
        }
        if text.contains("__IMPORT_ID__") {
            let id = import_id.as_deref().unwrap_or_else(|| {
                panic!("events/{name}: __IMPORT_ID__ needs imports-create.json to run before it")
            });
            text = text.replace("__IMPORT_ID__", id);
        }
        let ev: serde_json::Value = serde_json::from_str(&text).unwrap();
        if ev.get("routeKey").is_none() {
            // The import worker's SQS event: its import is read to the end.
            assert_eq!(name, "import-worker-upload.json");
            let ev = serde_json::from_value(ev).unwrap_or_else(|e| panic!("events/{name}: {e}"));
            let answer = import_worker::handle(&stack.import_worker(600), ev).await;
            assert!(answer.batch_item_failures.is_empty(), "events/{name}: {answer:?}");
            continue;
        }
        let route = ev["routeKey"].as_str().unwrap();
        let path = route.split_once(' ').unwrap().1;
        let resp = if path.starts_with("/console") || path == "/public/v1/usage" {
            edge::front::serve(&console_app, request(&ev)).await
        } else if path.starts_with("/accounts/") || path.starts_with("/.well-known/") {
            edge::front::serve(&token_app, request(&ev)).await
        } else if path.starts_with("/public/v1/user/system/") {
            edge::front::serve(&segments_app, request(&ev)).await
        } else if path.contains("/imports") {
            edge::front::serve(&imports_app, request(&ev)).await
        } else if path.starts_with("/public/v1/integrations") {
            edge::front::serve(&integrations_app, request(&ev)).await
        } else if path.starts_with("/public/v1/user/") || path.starts_with("/v1/customer/") {
            edge::front::serve(&user_data_app, request(&ev)).await
        } else {
            panic!("events/{name}: no function serves route '{route}'");
        };
        let a = answer(resp);
        assert!(a.status < 300, "events/{name}: {} {}", a.status, a.body);
        if name == "console-session-create.json" {
            let cookie = a.header("set-cookie").unwrap_or_default();
            assert!(cookie.starts_with("console_session=ey") && cookie.contains("HttpOnly"), "{cookie}");
        }
        if name == "usage.json" {
            assert_eq!(a.body["days"].as_array().map(Vec::len), Some(30), "{}", a.body);
        }
        if name == "integrations-test.json" {
            assert_eq!(a.body["valid"], true, "{}", a.body);
        }
        if name.starts_with("user-data-") {
            assert!(a.body["accepted"].as_u64().unwrap() >= 1, "{}", a.body);
        }
        if name == "moengage-track-user.json" {
            assert_eq!(a.body["status"], "success", "{}", a.body);
        }
        if name == "user-get.json" {
            // The seed's MoEngage attributes, typed, next to the WalkMe ones.
            let groups = a.body["integrations"].as_array().unwrap();
            let moe = groups.iter().find(|g| g["integrationId"] == "moengage").expect("MoEngage group");
            assert_eq!(moe["types"]["expiry_date"], "Date", "{}", a.body);
            assert_eq!(moe["clientIp"], "203.0.113.195", "{}", a.body);
        }
        // The seed segment: John and Melissa, + jane (add), - John (remove), then exactly
        // Melissa and jane (override).
        let expected_count = match name.as_str() {
            "segments-create.json" => Some(2),
            "segments-update-add.json" => Some(3),
            "segments-update-remove.json" | "segments-update-override.json" => Some(2),
            _ => None,
        };
        if let Some(n) = expected_count {
            assert_eq!(a.body["userCount"], n, "events/{name}: {}", a.body);
        }
        if name == "imports-create.json" {
            import_id = Some(a.body["importId"].as_str().unwrap().to_string());
            let file =
                b"Email,Type,Status\njohn.doe@walkme.example,Internal,New\njane@walkme.example,External,\n";
            let (status, _) = http("PUT", a.body["uploadUrl"].as_str().unwrap(), file.to_vec()).await;
            assert_eq!(status, 200);
        }
        if name == "imports-get.json" {
            assert_eq!(
                (a.body["status"].as_str(), a.body["accepted"].as_i64()),
                (Some("completed"), Some(2)),
                "{}",
                a.body
            );
        }
        if name == "segments-create.json" {
            assert_eq!(a.status, 201, "{}", a.body);
            segment_guid = Some(a.body["segmentGuid"].as_str().unwrap().to_string());
        }
        if name == "rule-segments-create.json" {
            assert_eq!(a.status, 201, "{}", a.body);
            rule_segment_guid = Some(a.body["segmentGuid"].as_str().unwrap().to_string());
        }
        if name == "rule-segments-evaluate.json" {
            assert_eq!(a.body["matched"], true, "{}", a.body);
        }
        if name == "user-segments.json" || name == "user-segments-explain.json" {
            let rule: Vec<&serde_json::Value> =
                a.body["segments"].as_array().unwrap().iter().filter(|s| s["type"] == "rule").collect();
            assert_eq!(rule.len(), 1, "joe.doe is External: {}", a.body);
            assert_eq!(a.body["explain"].is_array(), name == "user-segments-explain.json", "{}", a.body);
        }
        if name == "segments-members.json" {
            let mut ids: Vec<&str> =
                a.body["userIds"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            ids.sort_unstable();
            assert_eq!(ids, ["Melissa@company.com", "jane.doe@walkme.com"], "{}", a.body);
            assert!(a.body["nextCursor"].is_null(), "{}", a.body);
        }
    }
}
