//! template.yaml must agree with the table definitions in code (shared/store/src/schema.rs),
//! and every route in it must have a sample event.

use serde_yaml::Value;
use store::schema::{self, TableDef};

fn template() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn key_schema(v: &Value) -> Vec<(String, String)> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (k["AttributeName"].as_str().unwrap().to_string(), k["KeyType"].as_str().unwrap().to_string())
        })
        .collect()
}

fn expected_keys(hash: &str, range: Option<&str>) -> Vec<(String, String)> {
    let mut v = vec![(hash.to_string(), "HASH".to_string())];
    v.extend(range.map(|r| (r.to_string(), "RANGE".to_string())));
    v
}

fn check_table(t: &Value, def: &TableDef) {
    let res = &t["Resources"][def.logical_id];
    assert_eq!(res["Type"].as_str(), Some("AWS::DynamoDB::Table"), "{} missing", def.logical_id);
    let p = &res["Properties"];
    assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"), "{}", def.logical_id);
    assert_eq!(p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true));
    assert_eq!(key_schema(&p["KeySchema"]), expected_keys(def.hash_key, def.range_key), "{}", def.logical_id);

    let want_attrs = def.key_attributes();
    let mut attrs: Vec<&str> = p["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a["AttributeName"].as_str().unwrap())
        .collect();
    attrs.sort_unstable();
    assert_eq!(attrs, want_attrs, "{} attribute definitions", def.logical_id);

    let gsis = p["GlobalSecondaryIndexes"].as_sequence().cloned().unwrap_or_default();
    assert_eq!(gsis.len(), def.indexes.len(), "{} index count", def.logical_id);
    for ix in def.indexes {
        let g = gsis.iter().find(|g| g["IndexName"].as_str() == Some(ix.name)).expect("index in template");
        assert_eq!(key_schema(&g["KeySchema"]), expected_keys(ix.hash_key, ix.range_key));
    }

    let ttl = &p["TimeToLiveSpecification"];
    match def.ttl_attribute {
        Some(a) => {
            assert_eq!(ttl["AttributeName"].as_str(), Some(a), "{} TTL", def.logical_id);
            assert_eq!(ttl["Enabled"].as_bool(), Some(true));
        }
        None => assert!(ttl.is_null(), "{} has a TTL the code does not know", def.logical_id),
    }
}

#[test]
fn tables_match_the_code() {
    let t = template();
    for def in schema::ALL {
        check_table(&t, def);
    }
    let declared = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .count();
    assert_eq!(declared, schema::ALL.len(), "template declares tables the code does not know");
}

/// Every (method, path) of every HttpApi event in the template.
pub fn template_routes() -> Vec<(String, String)> {
    let t = template();
    let mut routes = Vec::new();
    for res in t["Resources"].as_mapping().unwrap().values() {
        if res["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let Some(events) = res["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for ev in events.values() {
            if ev["Type"].as_str() == Some("HttpApi") {
                let p = &ev["Properties"];
                routes.push((
                    p["Method"].as_str().unwrap().to_uppercase(),
                    p["Path"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    routes
}

#[test]
fn every_route_has_a_sample_event() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    let mut covered = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let ev: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if ev["Records"][0]["eventSource"] == "aws:sqs" {
            continue; // the import worker's event (tests/tests/suite/events.rs runs it)
        }
        let method = ev["requestContext"]["http"]["method"].as_str().unwrap().to_string();
        covered.push((method, ev["routeKey"].as_str().unwrap().to_string()));
    }
    for (method, path) in template_routes() {
        let key = format!("{method} {path}");
        assert!(covered.iter().any(|(_, rk)| *rk == key), "no event in events/ with routeKey '{key}'");
    }
}

#[test]
fn every_route_is_in_the_openapi_document() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_mapping().unwrap();
    for (method, path) in template_routes() {
        let item = paths
            .get(Value::String(path.clone()))
            .unwrap_or_else(|| panic!("{path} missing from docs/openapi.yaml"));
        assert!(
            !item[method.to_lowercase().as_str()].is_null(),
            "{method} {path} missing from docs/openapi.yaml"
        );
    }
    let documented: usize = paths
        .values()
        .map(|item| ["get", "post", "put", "patch", "delete"].iter().filter(|m| !item[**m].is_null()).count())
        .sum();
    assert_eq!(
        documented,
        template_routes().len(),
        "docs/openapi.yaml documents routes template.yaml does not serve"
    );
}

/// One tenant within its rate can hold at most its function's reservation, never every Lambda
/// instance of the region: each function reserves (and is capped at) a parameter's value.
#[test]
fn every_function_has_a_reserved_concurrency_parameter_with_a_default() {
    let t = template();
    for (name, res) in t["Resources"].as_mapping().unwrap() {
        if res["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let reserved = &res["Properties"]["ReservedConcurrentExecutions"];
        let text = serde_yaml::to_string(reserved).unwrap();
        let param = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ReservedConcurrency"))
            .unwrap_or_else(|| panic!("{name:?} has no reserved concurrency parameter: {text}"));
        let p = &t["Parameters"][format!("ReservedConcurrency{}", param.trim_end_matches([',', ']']))];
        assert!(p["Default"].as_u64().is_some_and(|d| d > 0), "{name:?}: a default above 0");
        assert_eq!(p["MinValue"].as_u64(), Some(0), "{name:?}: 0 turns the reservation off");
    }
}

/// The routes anyone may call have their own throttle at the edge, before any function runs.
#[test]
fn every_public_route_is_throttled_at_the_edge() {
    let t = template();
    let settings = t["Resources"]["HttpApi"]["Properties"]["RouteSettings"].as_mapping().unwrap();
    let public = <token::App as edge::front::Service>::ROUTES.iter().map(|r| (r.method, r.path)).chain(
        <console::App as edge::front::Service>::ROUTES
            .iter()
            .filter(|r| r.access == edge::front::Access::Public)
            .map(|r| (r.method, r.path)),
    );
    for (method, path) in public {
        let key = format!("{method} {path}");
        let s = settings.get(key.as_str()).unwrap_or_else(|| panic!("no RouteSettings for {key}"));
        assert!(!s["ThrottlingRateLimit"].is_null() && !s["ThrottlingBurstLimit"].is_null(), "{key}");
    }
}
