//! 200 rule segments of 10 conditions each, evaluated for one user: by this engine (compiled
//! once), and, in the same run, the same rules exported as JsonLogic and evaluated by
//! datalogic-rs (the engine of OpenFeature flagd), also compiled once with the user's data
//! parsed once. Both must agree on every segment; the ratio is printed at the end.
//!
//! `cargo bench -p domain --bench rules --features rules`

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use domain::integration::AttrType;
use domain::rules::{self, Attributes, Catalog, RuleSet, UserFacts};
use domain::user_data::AttrValue;
use domain::{SegmentGuid, Timestamp};
use serde_json::{Value, json};

const RULES: usize = 200;

fn catalog_types() -> Vec<(String, AttrType)> {
    [
        ("plan", AttrType::String),
        ("city", AttrType::String),
        ("email", AttrType::String),
        ("type", AttrType::String),
        ("score", AttrType::Number),
        ("visits", AttrType::Number),
        ("vip", AttrType::Boolean),
        ("signup", AttrType::Date),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect()
}

/// Rule `i`: 10 conditions over both integrations, most of them exportable operators, values
/// varied so that rules match, fail early and fail late.
fn rule(i: usize) -> Value {
    let at = |p: &str| json!({"integration": "crm", "property": p});
    let plans: Vec<String> = (0..10).map(|k| format!("plan-{}", (i + k) % 13)).collect();
    json!({"all": [
        {"attribute": {"property": "type"}, "op": "equals", "value": if i.is_multiple_of(4) { "trial" } else { "paying" }},
        {"attribute": at("plan"), "op": "in", "values": plans},
        {"attribute": at("score"), "op": "gt", "value": (i % 50) as i64 - 5},
        {"attribute": at("email"), "op": "ends_with", "value": if i.is_multiple_of(7) { "@other.org" } else { "@acme.com" }},
        {"attribute": at("city"), "op": "not_equals", "value": format!("city-{}", i % 9)},
        {"any": [
            {"attribute": at("vip"), "op": "is_true"},
            {"attribute": at("visits"), "op": "between", "values": [i % 30, 40 + i % 30]},
            {"attribute": at("email"), "op": "starts_with", "value": format!("user{}", i % 5)},
            {"attribute": at("city"), "op": "contains", "value": "ar"},
            {"attribute": at("signup"), "op": "is_set"}
        ]}
    ]})
}

fn user() -> (Attributes, Value) {
    let crm = [
        ("plan", AttrValue::String("plan-3".into())),
        ("city", AttrValue::String("Paris".into())),
        ("email", AttrValue::String("user3@acme.com".into())),
        ("type", AttrValue::String("free".into())),
        ("score", AttrValue::Number("42".into())),
        ("visits", AttrValue::Number("35".into())),
        ("vip", AttrValue::Boolean(false)),
        ("signup", AttrValue::Date("2026-01-15".into())),
    ];
    let api = [("type", AttrValue::String("paying".into())), ("score", AttrValue::Number("7".into()))];
    let mut attributes = Attributes::new();
    attributes.insert("crm".into(), crm.iter().map(|(n, v)| (n.to_string(), v.clone())).collect());
    attributes.insert("api".into(), api.iter().map(|(n, v)| (n.to_string(), v.clone())).collect());
    let data = serde_json::to_value(&attributes).unwrap();
    (attributes, data)
}

struct Setup {
    set: RuleSet,
    attributes: Attributes,
    statics: HashSet<SegmentGuid>,
    engine: datalogic_rs::Engine,
    logics: Vec<datalogic_rs::Logic>,
    data: datalogic_rs::ParsedData,
}

fn setup() -> Setup {
    let mut catalog = Catalog::new();
    catalog.add_integration_types("crm", catalog_types());
    catalog.add_integration_types(
        "api",
        catalog_types().into_iter().filter(|(n, _)| n == "type" || n == "score"),
    );
    let mut exports = Vec::new();
    for i in 0..RULES {
        let r = rules::parse_and_validate(&rule(i), &catalog, None).expect("a bench rule is valid");
        let export = rules::to_jsonlogic(&r, &catalog);
        assert!(export.unsupported.is_empty(), "rule {i}: {:?}", export.unsupported);
        exports.push(export.logic);
        let guid = SegmentGuid::parse(&format!("00000000-0000-4000-8000-{i:012}")).unwrap();
        catalog.add_rule_segment(guid, r, jiff::tz::TimeZone::UTC);
    }
    let set = RuleSet::compile(&catalog);
    let engine = datalogic_rs::Engine::new();
    let logics = exports.iter().map(|l| engine.compile(l).expect("datalogic compiles the export")).collect();
    let (attributes, data) = user();
    let data = datalogic_rs::ParsedData::from_json(&data.to_string()).unwrap();
    Setup { set, attributes, statics: HashSet::new(), engine, logics, data }
}

fn now() -> Timestamp {
    Timestamp::from_epoch_secs(1_781_524_800).unwrap()
}

fn ours(s: &Setup) -> usize {
    s.set.evaluate(UserFacts { attributes: &s.attributes, static_segments: &s.statics }, now()).len()
}

fn theirs(s: &Setup, session: &mut datalogic_rs::Session<'_>) -> usize {
    let mut n = 0;
    for logic in &s.logics {
        let v = session.eval_borrowed(logic, &s.data).expect("datalogic evaluates");
        n += usize::from(s.engine.truthy(v));
        session.reset();
    }
    n
}

/// Both engines say the same for every rule: the export is faithful on this user.
fn agree(s: &Setup) -> usize {
    let ours: Vec<bool> = {
        let matched: HashSet<SegmentGuid> = s
            .set
            .evaluate(UserFacts { attributes: &s.attributes, static_segments: &s.statics }, now())
            .into_iter()
            .collect();
        s.set.segment_guids().map(|g| matched.contains(&g)).collect()
    };
    let mut session = s.engine.session();
    let theirs: Vec<bool> = s
        .logics
        .iter()
        .map(|l| {
            let v = session.eval_borrowed(l, &s.data).unwrap();
            let t = s.engine.truthy(v);
            session.reset();
            t
        })
        .collect();
    assert_eq!(ours, theirs, "the engines disagree");
    ours.iter().filter(|m| **m).count()
}

/// The best of several interleaved batches: noise from other processes only ever slows a
/// batch down.
fn per_call(mut f: impl FnMut() -> usize) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..15 {
        let start = Instant::now();
        for _ in 0..200 {
            black_box(f());
        }
        best = best.min(start.elapsed() / 200);
    }
    best
}

fn main() {
    let s = setup();
    let matched = agree(&s);
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut g = c.benchmark_group("200 rule segments x 10 conditions, one user");
    g.bench_function("domain::rules", |b| b.iter(|| black_box(ours(&s))));
    let mut session = s.engine.session();
    g.bench_function("datalogic-rs (JsonLogic export)", |b| b.iter(|| black_box(theirs(&s, &mut session))));
    g.finish();
    c.final_summary();
    let ours_t = per_call(|| ours(&s));
    let theirs_t = per_call(|| theirs(&s, &mut session));
    println!(
        "rules bench: {RULES} rules, {matched} matched; domain::rules {ours_t:?} per user, datalogic-rs {theirs_t:?} per user: ours is {:.2}x faster",
        theirs_t.as_secs_f64() / ours_t.as_secs_f64()
    );
}
