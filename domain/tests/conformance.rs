//! Runs every case of tests/conformance/rules.json (at the repository's root) through the
//! rule engine: parse, validate, compile, evaluate with explain.

use std::collections::{HashMap, HashSet};

use domain::exact::protect_numbers;
use domain::integration::AttrType;
use domain::rules::{self, Catalog, RuleSet, UserFacts};
use domain::user_data::typed;
use domain::{SegmentGuid, Timestamp};
use serde_json::Value;

fn suite() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/rules.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // 38-digit numbers keep every digit (serde_json would read them through an f64).
    serde_json::from_slice(&protect_numbers(&bytes)).expect("the suite is JSON")
}

fn catalog(doc: &Value) -> (Catalog, HashMap<String, HashMap<String, AttrType>>) {
    let mut catalog = Catalog::new();
    let mut types = HashMap::new();
    for (id, props) in doc["integrations"].as_object().unwrap() {
        let props: HashMap<String, AttrType> = props
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, t)| (n.clone(), AttrType::parse(t.as_str().unwrap()).unwrap()))
            .collect();
        catalog.add_integration_types(id.clone(), props.clone());
        types.insert(id.clone(), props);
    }
    for s in doc["segments"].as_array().unwrap() {
        let guid = SegmentGuid::parse(s["guid"].as_str().unwrap()).unwrap();
        if s["static"] == true {
            catalog.add_static_segment(guid);
        } else {
            let rule = rules::parse_and_validate(&s["rule"], &catalog, Some(guid))
                .expect("a suite segment is valid");
            let tz = rules::parse_timezone(s["timezone"].as_str()).unwrap();
            catalog.add_rule_segment(guid, rule, tz);
        }
    }
    (catalog, types)
}

/// What JsonLogic, run by datalogic-rs (flagd's engine), says of the exported rule; `None` when
/// the export cannot say this case: an operator it lists as unsupported, or a stored Number
/// that an f64 cannot hold (JsonLogic reads numbers as doubles).
fn jsonlogic(rule: &rules::Rule, catalog: &Catalog, attributes: &rules::Attributes) -> Option<bool> {
    let export = rules::to_jsonlogic(rule, catalog);
    let exact_in_f64 = attributes.values().flat_map(|m| m.values()).all(|v| match v {
        domain::user_data::AttrValue::Number(n) => {
            domain::exact::Decimal::parse(n).is_some_and(|d| d.significant_digits() <= 15)
        }
        _ => true,
    });
    if !export.unsupported.is_empty() || !exact_in_f64 {
        return None;
    }
    let engine = datalogic_rs::Engine::new();
    let logic = engine.compile(&export.logic).expect("datalogic compiles every export");
    let data = serde_json::to_string(attributes).unwrap();
    let mut session = engine.session();
    let v = session.eval_borrowed(&logic, data.as_str()).expect("datalogic evaluates every export");
    Some(engine.truthy(v))
}

/// Runs one case; `Err` says what differed. `Ok(true)` when JsonLogic agreed on it too.
fn run(
    case: &Value,
    catalog: &Catalog,
    set: &RuleSet,
    types: &HashMap<String, HashMap<String, AttrType>>,
) -> Result<bool, String> {
    let parsed = rules::parse_and_validate(&case["rule"], catalog, None);
    if let Some(expected) = case.get("problems") {
        let problems = parsed.err().ok_or("the rule was accepted")?;
        let got: Vec<Value> =
            problems.iter().map(|p| serde_json::json!({"pointer": p.pointer, "code": p.code})).collect();
        return if &Value::from(got.clone()) == expected {
            Ok(false)
        } else {
            Err(format!("problems {got:?}, expected {expected}"))
        };
    }
    let rule = parsed.map_err(|p| format!("refused: {p:?}"))?;
    let tz = rules::parse_timezone(case["timezone"].as_str()).map_err(|p| p.message)?;
    let compiled = set.compile_rule(catalog, &rule, tz);
    let mut attributes = rules::Attributes::new();
    for (id, values) in case["attributes"].as_object().unwrap() {
        let mut m = HashMap::new();
        for (name, v) in values.as_object().unwrap() {
            let t = types[id][name];
            m.insert(name.clone(), typed(t, v.clone()).map_err(|e| format!("attribute {id}.{name}: {e}"))?);
        }
        attributes.insert(id.clone(), m);
    }
    let statics: HashSet<SegmentGuid> = case["staticSegments"]
        .as_array()
        .map(|l| l.iter().map(|g| SegmentGuid::parse(g.as_str().unwrap()).unwrap()).collect())
        .unwrap_or_default();
    let now: jiff::Timestamp = case["now"].as_str().unwrap().parse().map_err(|e| format!("now: {e}"))?;
    let now = Timestamp::from_epoch_ms(now.as_millisecond()).unwrap();
    let out =
        set.evaluate_rule(&compiled, UserFacts { attributes: &attributes, static_segments: &statics }, now);
    if Value::Bool(out.matched) != case["matched"] {
        return Err(format!(
            "matched {}, expected {}; explain {:?}",
            out.matched, case["matched"], out.explain
        ));
    }
    // The same rule saved as a segment of the set: the compiled set's path (slots read once
    // per call) must agree with the dry run's.
    let mut saved = catalog.clone();
    let own = SegmentGuid::parse("00000000-0000-4000-8000-999999999999").unwrap();
    let exported = jsonlogic(&rule, catalog, &attributes);
    if exported.is_some_and(|m| m != out.matched) {
        return Err(format!("JsonLogic export says {exported:?}, the engine {}", out.matched));
    }
    saved.add_rule_segment(own, rule, rules::parse_timezone(case["timezone"].as_str()).unwrap());
    let in_set = RuleSet::compile(&saved)
        .evaluate(UserFacts { attributes: &attributes, static_segments: &statics }, now)
        .contains(&own);
    if in_set != out.matched {
        return Err(format!("the saved rule says {in_set}, the dry run {}", out.matched));
    }
    if let Some(expected) = case.get("outcomes") {
        let got: Value = out.explain.iter().map(|e| serde_json::to_value(e.outcome).unwrap()).collect();
        if &got != expected {
            return Err(format!("outcomes {got}, expected {expected}"));
        }
    }
    Ok(exported.is_some())
}

#[test]
fn conformance_suite() {
    let doc = suite();
    let (catalog, types) = catalog(&doc);
    let set = RuleSet::compile(&catalog);
    let cases = doc["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    let mut exported = 0;
    for c in cases {
        match run(c, &catalog, &set, &types) {
            Ok(agreed) => exported += usize::from(agreed),
            Err(e) => failures.push(format!("{}: {e}", c["name"])),
        }
    }
    println!(
        "rules conformance: {} cases, {} passed, {} failed; {exported} of them also agreed through the JsonLogic export (datalogic-rs)",
        cases.len(),
        cases.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
    assert!(cases.len() >= 150, "the suite must hold at least 150 cases");
    assert!(exported >= 100, "the export must say most cases, said {exported}");
}
