//! docs/openapi.yaml stays true to the code: every request example of every operation (and
//! every operation without a body) is sent to the function that serves the route in
//! template.yaml, against the local server, and must get a status the document lists for that
//! operation: a 2xx unless the example is named `invalid`, never a 5xx.

use std::collections::BTreeMap;

use integration_tests::*;
use serde_json::{Value, json};

fn yaml(path: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn to_json(v: &serde_yaml::Value) -> Value {
    serde_json::to_value(v).unwrap()
}

/// (method, path template) → the template's function logical id.
fn served_by() -> BTreeMap<(String, String), String> {
    let t = yaml("template.yaml");
    let mut out = BTreeMap::new();
    for (id, res) in t["Resources"].as_mapping().unwrap() {
        for ev in res["Properties"]["Events"].as_mapping().into_iter().flat_map(|m| m.values()) {
            if ev["Type"].as_str() == Some("HttpApi") {
                let p = &ev["Properties"];
                out.insert(
                    (p["Method"].as_str().unwrap().to_uppercase(), p["Path"].as_str().unwrap().to_string()),
                    id.as_str().unwrap().to_string(),
                );
            }
        }
    }
    out
}

struct Case {
    method: String,
    path: String,
    name: String,
    content_type: Option<String>,
    body: Option<Value>,
    documented: Vec<u16>,
}

/// Writes first, reads next, deletes last (the integration's last of all).
fn order(c: &Case) -> (u8, u8) {
    let phase = match c.method.as_str() {
        "POST" => 0,
        // A lift needs the suppression that the user's DELETE leaves.
        "DELETE" if c.path.contains("/suppression/") => 3,
        "DELETE" => 2,
        _ => 1,
    };
    (phase, u8::from(c.path.starts_with("/public/v1/integrations")))
}

#[tokio::test]
async fn every_documented_example_gets_a_documented_answer() {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration_id, integration_token) = create_integration(&stack, &auth, SEED_INTEGRATION).await;
    let seg_app = stack.segments_app();
    let a = call_segments(
        &seg_app,
        &auth,
        "POST",
        &stack.segment_path(""),
        Some(r#"{"name": "docs", "userIds": ["a"]}"#),
    )
    .await;
    let segment = a.body["segmentGuid"].as_str().unwrap().to_string();
    let rule = r#"{"name": "docs", "rule": {"all": [{"attribute": {"property": "Customer_Type"}, "op": "is_set"}]}}"#;
    let a = call_segments(
        &seg_app,
        &auth,
        "POST",
        &format!("/public/v1/user/system/{}/rule-segment", stack.system),
        Some(rule),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let rule_segment = a.body["segmentGuid"].as_str().unwrap().to_string();
    let imports_app = stack.imports_app();
    let imports_path = format!("/public/v1/integrations/{integration_id}/imports");
    let a = call_app(&imports_app, &auth, "POST", &imports_path, Some(r#"{"format": "csv"}"#)).await;
    let import_id = a.body["importId"].as_str().unwrap().to_string();
    let token_app = stack.token_app();
    let (integrations_app, user_app) = (stack.integrations_app(), stack.user_data_app());
    let moengage_basic = stack.moengage_basic();
    let console_app = stack.served(console::App::new);

    let doc = to_json(&yaml("docs/openapi.yaml"));
    let functions = served_by();
    let mut cases = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let documented: Vec<u16> =
                op["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
            let mut bodies = Vec::new();
            for (ct, content) in op["requestBody"]["content"].as_object().into_iter().flatten() {
                if let Some(ex) = content.get("example") {
                    bodies.push(("example".to_string(), ct.clone(), ex.clone()));
                }
                for (name, ex) in content["examples"].as_object().into_iter().flatten() {
                    bodies.push((name.clone(), ct.clone(), ex["value"].clone()));
                }
            }
            let method = method.to_uppercase();
            if bodies.is_empty() {
                cases.push(Case {
                    method,
                    path: path.clone(),
                    name: "-".into(),
                    content_type: None,
                    body: None,
                    documented,
                });
            } else {
                for (name, ct, body) in bodies {
                    let (m, p, d) = (method.clone(), path.clone(), documented.clone());
                    cases.push(Case {
                        method: m,
                        path: p,
                        name,
                        content_type: Some(ct),
                        body: Some(body),
                        documented: d,
                    });
                }
            }
        }
    }
    cases.sort_by_key(order);
    assert!(cases.len() >= 30, "{} cases", cases.len());

    for c in &cases {
        let function = functions
            .get(&(c.method.clone(), c.path.clone()))
            .unwrap_or_else(|| panic!("{} {} is not served by any function", c.method, c.path));
        let segment = if c.path.contains("/rule-segment/") { &rule_segment } else { &segment };
        let url = c
            .path
            .replace("{systemGuid}", &stack.system.to_string())
            .replace("{segmentGuid}", segment)
            .replace("{integrationId}", &integration_id)
            .replace("{importId}", &import_id)
            .replace("{userId}", "john@walkme.example")
            .replace("{workspace_id}", "acme")
            .replace("{proxy+}", "app.js");
        let mut body = c.body.clone();
        if let Some(Value::Object(o)) = body.as_mut() {
            // Secrets in examples are placeholders: use this stack's.
            if o.contains_key("token") {
                o.insert("token".into(), json!(integration_token));
            }
            if o.contains_key("client_secret") {
                o.insert("client_id".into(), json!(stack.client_id));
                o.insert("client_secret".into(), json!(stack.client_secret.expose()));
            }
        }
        let form = c.content_type.as_deref() == Some("application/x-www-form-urlencoded");
        let text =
            body.as_ref().map(|b| if form { serde_urlencoded::to_string(b).unwrap() } else { b.to_string() });
        let authorization = match function.as_str() {
            "TokenFunction" | "ConsoleFunction"
                if body.as_ref().is_some_and(|b| b.get("client_secret").is_some()) =>
            {
                None
            }
            "TokenFunction" => Some(stack.basic()),
            _ if c.path.starts_with("/v1/customer") => Some(moengage_basic.clone()),
            _ => Some(auth.clone()),
        };
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &authorization {
            headers.push(("authorization", a));
        }
        if let Some(ct) = &c.content_type {
            headers.push(("content-type", ct));
        }
        let request = req(&c.method, &url, &headers, text.as_deref());
        let resp = match function.as_str() {
            "TokenFunction" => edge::front::serve(&token_app, request).await,
            "IntegrationsFunction" => edge::front::serve(&integrations_app, request).await,
            "UserDataFunction" => edge::front::serve(&user_app, request).await,
            "SegmentsFunction" => edge::front::serve(&seg_app, request).await,
            "ImportsFunction" => edge::front::serve(&imports_app, request).await,
            "ConsoleFunction" => edge::front::serve(&console_app, request).await,
            other => panic!("no handler for {other}"),
        };
        let a = answer(resp);
        let what = format!("{} {} (example {}): {} {}", c.method, c.path, c.name, a.status, a.body);
        assert!(c.documented.contains(&a.status), "undocumented status: {what}");
        assert!(a.status < 500, "{what}");
        if c.name != "invalid" {
            assert!((200..300).contains(&a.status), "a documented example must succeed: {what}");
        }
    }
}
