use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::integration::AttrType;
use crate::user_data::AttrValue;
use crate::{SegmentGuid, Timestamp};

fn guid(n: u32) -> SegmentGuid {
    SegmentGuid::parse(&format!("00000000-0000-4000-8000-{n:012}")).unwrap()
}

fn catalog() -> Catalog {
    let mut c = Catalog::new();
    c.add_integration_types(
        "crm",
        [
            ("plan".to_string(), AttrType::String),
            ("score".to_string(), AttrType::Number),
            ("signup".to_string(), AttrType::Date),
            ("vip".to_string(), AttrType::Boolean),
        ],
    );
    c.add_integration_types(
        "api",
        [("plan".to_string(), AttrType::String), ("score".to_string(), AttrType::Number)],
    );
    c.add_static_segment(guid(1));
    c
}

fn problems(rule: Value, catalog: &Catalog, own: Option<SegmentGuid>) -> Vec<(String, ProblemCode)> {
    parse_and_validate(&rule, catalog, own).unwrap_err().into_iter().map(|p| (p.pointer, p.code)).collect()
}

fn one(pointer: &str, code: ProblemCode) -> Vec<(String, ProblemCode)> {
    vec![(pointer.to_string(), code)]
}

fn plan_is(v: &str) -> Value {
    json!({"attribute": {"integration": "crm", "property": "plan"}, "op": "equals", "value": v})
}

#[test]
fn shape_problems_name_their_pointer() {
    let c = catalog();
    assert_eq!(problems(json!([]), &c, None), one("/rule", ProblemCode::BadNode));
    assert_eq!(
        problems(json!({"all": [plan_is("a")], "any": []}), &c, None),
        one("/rule", ProblemCode::BadNode)
    );
    assert_eq!(problems(json!({"all": {}}), &c, None), one("/rule/all", ProblemCode::BadNode));
    assert_eq!(
        problems(json!({"all": [plan_is("a")], "x/y~": 1}), &c, None),
        one("/rule/x~1y~0", ProblemCode::UnknownField)
    );
    assert_eq!(
        problems(json!({"any": [plan_is("a"), 3]}), &c, None),
        one("/rule/any/1", ProblemCode::BadNode)
    );
    assert_eq!(
        problems(json!({"attribute": {"property": "plan", "extra": 1}, "op": "is_set"}), &c, None),
        one("/rule/attribute/extra", ProblemCode::UnknownField)
    );
    assert_eq!(
        problems(json!({"attribute": {"integration": 5, "property": "plan"}, "op": "is_set"}), &c, None),
        one("/rule/attribute/integration", ProblemCode::BadNode)
    );
    assert_eq!(
        problems(json!({"attribute": {"integration": "crm"}, "op": "is_set"}), &c, None),
        one("/rule/attribute/property", ProblemCode::BadNode)
    );
    assert_eq!(
        problems(json!({"attribute": "plan", "op": "is_set"}), &c, None),
        one("/rule/attribute", ProblemCode::BadNode)
    );
    assert_eq!(
        problems(json!({"attribute": {"property": "plan"}}), &c, None),
        one("/rule/op", ProblemCode::UnknownOperator)
    );
}

#[test]
fn operand_problems_name_their_pointer() {
    let c = catalog();
    let attr = |op: &str, extra: Value| {
        let mut v = json!({"attribute": {"integration": "crm", "property": "plan"}, "op": op});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"all": [v]})
    };
    assert_eq!(problems(attr("equals", json!({})), &c, None), one("/rule/all/0", ProblemCode::BadOperand));
    assert_eq!(
        problems(attr("equals", json!({"values": ["a"]})), &c, None),
        one("/rule/all/0/values", ProblemCode::BadOperand)
    );
    assert_eq!(
        problems(attr("in", json!({"value": "a"})), &c, None),
        one("/rule/all/0/value", ProblemCode::BadOperand)
    );
    assert_eq!(
        problems(attr("in", json!({"values": []})), &c, None),
        one("/rule/all/0/values", ProblemCode::BadOperand)
    );
    assert_eq!(
        problems(attr("in", json!({"values": ["a", null]})), &c, None),
        one("/rule/all/0/values/1", ProblemCode::BadOperand)
    );
    assert_eq!(
        problems(attr("is_set", json!({"value": "a"})), &c, None),
        one("/rule/all/0/value", ProblemCode::BadOperand)
    );
    assert_eq!(
        problems(attr("equals", json!({"value": {"a": 1}})), &c, None),
        one("/rule/all/0/value", ProblemCode::BadOperand)
    );
    assert_eq!(
        problems(attr("equals", json!({"value": 3})), &c, None),
        one("/rule/all/0/value", ProblemCode::WrongValueType)
    );
    assert_eq!(
        problems(attr("in", json!({"values": ["a", "b".repeat(1025)]})), &c, None),
        one("/rule/all/0/values/1", ProblemCode::ValueTooLarge)
    );
    assert_eq!(
        problems(attr("equals", json!({"value": "a", "ignoreCase": "yes"})), &c, None),
        one("/rule/all/0/ignoreCase", ProblemCode::BadIgnoreCase)
    );
    assert_eq!(
        problems(attr("is_set", json!({"ignoreCase": true})), &c, None),
        one("/rule/all/0/ignoreCase", ProblemCode::BadIgnoreCase)
    );
    assert_eq!(
        problems(attr("matches", json!({"value": "a{99999}"})), &c, None),
        one("/rule/all/0/value", ProblemCode::BadRegex)
    );
    // Limits at their edge are accepted.
    assert!(parse_and_validate(&attr("in", json!({"values": vec!["v"; 1000]})), &c, None).is_ok());
    assert!(parse_and_validate(&attr("equals", json!({"value": "é".repeat(512)})), &c, None).is_ok());
    assert!(parse_and_validate(&attr("matches", json!({"value": "a".repeat(256)})), &c, None).is_ok());
    assert!(parse_and_validate(&json!({"all": vec![plan_is("a"); 50]}), &c, None).is_ok());
}

#[test]
fn type_problems_name_their_pointer() {
    let c = catalog();
    let on = |prop: &str, op: &str, value: Value| json!({"any": [plan_is("x"), {"attribute": {"integration": "crm", "property": prop}, "op": op, "value": value}]});
    assert_eq!(
        problems(on("score", "contains", json!("1")), &c, None),
        one("/rule/any/1/op", ProblemCode::OperatorNotForType)
    );
    assert_eq!(
        problems(on("signup", "lt", json!("2026-01-01")), &c, None),
        one("/rule/any/1/op", ProblemCode::OperatorNotForType)
    );
    assert_eq!(
        problems(on("signup", "not_equals", json!("2026-01-01")), &c, None),
        one("/rule/any/1/op", ProblemCode::OperatorNotForType)
    );
    assert_eq!(
        problems(on("score", "equals", json!("1,5")), &c, None),
        one("/rule/any/1/value", ProblemCode::WrongValueType)
    );
    assert_eq!(
        problems(on("score", "equals", json!("1e999")), &c, None),
        one("/rule/any/1/value", ProblemCode::WrongValueType)
    );
    assert_eq!(
        problems(on("signup", "after", json!("2026-1-01")), &c, None),
        one("/rule/any/1/value", ProblemCode::WrongValueType)
    );
    assert_eq!(
        problems(on("signup", "after", json!(20260101)), &c, None),
        one("/rule/any/1/value", ProblemCode::WrongValueType)
    );
    assert_eq!(
        problems(on("signup", "within_last_days", json!("3")), &c, None),
        one("/rule/any/1/value", ProblemCode::BadDays)
    );
    assert_eq!(
        problems(
            json!({"attribute": {"integration": "crm", "property": "score"}, "op": "between", "values": [1, "x"]}),
            &c,
            None
        ),
        one("/rule/values/1", ProblemCode::WrongValueType)
    );
    // Without an integration, every integration holding the name must fit.
    let mut mixed = catalog();
    mixed.add_integration_types("legacy", [("plan".to_string(), AttrType::Number)]);
    let p = parse_and_validate(
        &json!({"attribute": {"property": "plan"}, "op": "equals", "value": "gold"}),
        &mixed,
        None,
    )
    .unwrap_err();
    assert_eq!((p[0].pointer.as_str(), p[0].code), ("/rule/value", ProblemCode::WrongValueType));
    assert!(p[0].message.contains("legacy"), "{}", p[0].message);
}

#[test]
fn limit_and_catalog_problems_name_their_pointer() {
    let c = catalog();
    let nest = |depth: usize| (0..depth).fold(plan_is("a"), |inner, _| json!({"all": [inner]}));
    assert!(parse_and_validate(&nest(5), &c, None).is_ok());
    assert_eq!(problems(nest(6), &c, None), one("/rule/all/0/all/0/all/0/all/0/all/0", ProblemCode::TooDeep));
    assert_eq!(
        problems(json!({"any": [{"all": []}]}), &c, None),
        one("/rule/any/0/all", ProblemCode::EmptyGroup)
    );
    assert_eq!(
        problems(json!({"all": vec![plan_is("a"); 51]}), &c, None),
        one("/rule", ProblemCode::TooManyConditions)
    );
    assert_eq!(
        problems(
            json!({"attribute": {"property": "plan"}, "op": "not_in", "values": vec!["v"; 1001]}),
            &c,
            None
        ),
        one("/rule/values", ProblemCode::TooManyValues)
    );
    assert_eq!(
        problems(json!({"attribute": {"integration": "erp", "property": "plan"}, "op": "is_set"}), &c, None),
        one("/rule/attribute/integration", ProblemCode::UnknownIntegration)
    );
    assert_eq!(
        problems(json!({"attribute": {"integration": "api", "property": "vip"}, "op": "is_set"}), &c, None),
        one("/rule/attribute/property", ProblemCode::UnknownProperty)
    );
    assert_eq!(
        problems(json!({"attribute": {"property": "nope"}, "op": "is_set"}), &c, None),
        one("/rule/attribute/property", ProblemCode::UnknownProperty)
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let c = catalog();
    let got = problems(
        json!({"any": [
            {"attribute": {"integration": "crm", "property": "score"}, "op": "starts_with", "value": "1"},
            plan_is("fine"),
            {"all": [{"attribute": {"property": "plan"}, "op": "matches", "value": "("}, {"segment": "x", "op": "in"}]}
        ]}),
        &c,
        None,
    );
    assert_eq!(
        got,
        vec![
            ("/rule/any/2/all/0/value".to_string(), ProblemCode::BadRegex),
            ("/rule/any/2/all/1/segment".to_string(), ProblemCode::BadSegmentId),
        ],
        "parsing problems come first; the catalog is consulted once the rule parses"
    );
    let got = problems(
        json!({"any": [
            {"attribute": {"integration": "crm", "property": "score"}, "op": "starts_with", "value": "1"},
            {"attribute": {"integration": "crm", "property": "signup"}, "op": "equals", "value": "2026-13-01"}
        ]}),
        &c,
        None,
    );
    assert_eq!(
        got,
        vec![
            ("/rule/any/0/op".to_string(), ProblemCode::OperatorNotForType),
            ("/rule/any/1/value".to_string(), ProblemCode::WrongValueType),
        ]
    );
}

#[test]
fn segment_problems_name_their_pointer() {
    let mut c = catalog();
    let seg = |g: SegmentGuid, op: &str| json!({"segment": g.to_string(), "op": op});
    assert_eq!(
        problems(json!({"segment": "nope", "op": "in"}), &c, None),
        one("/rule/segment", ProblemCode::BadSegmentId)
    );
    assert_eq!(problems(seg(guid(1), "has"), &c, None), one("/rule/op", ProblemCode::UnknownOperator));
    assert_eq!(
        problems(json!({"all": [seg(guid(9), "in")]}), &c, None),
        one("/rule/all/0/segment", ProblemCode::UnknownSegment)
    );
    assert_eq!(
        problems(json!({"any": [seg(guid(5), "in")]}), &c, Some(guid(5))),
        one("/rule/any/0", ProblemCode::SegmentCycle)
    );
    // 2 -> 3 -> 4: saving 4 to name 2 closes a cycle, reported at the condition.
    let parse = |v: Value| parse(&v, "/rule").unwrap();
    c.add_rule_segment(guid(4), parse(plan_is("a")), jiff::tz::TimeZone::UTC);
    c.add_rule_segment(guid(3), parse(seg(guid(4), "in")), jiff::tz::TimeZone::UTC);
    c.add_rule_segment(guid(2), parse(seg(guid(3), "not_in")), jiff::tz::TimeZone::UTC);
    assert_eq!(
        problems(json!({"all": [plan_is("b"), seg(guid(2), "in")]}), &c, Some(guid(4))),
        one("/rule/all/1", ProblemCode::SegmentCycle)
    );
    // Chains: a new rule naming 2 is 3 hops (2 -> 3 -> 4): allowed; naming one more is 4.
    assert!(parse_and_validate(&seg(guid(2), "in"), &c, None).is_ok());
    c.add_rule_segment(guid(6), parse(seg(guid(2), "in")), jiff::tz::TimeZone::UTC);
    assert_eq!(
        problems(json!({"none": [seg(guid(6), "in")]}), &c, None),
        one("/rule/none/0", ProblemCode::ChainTooDeep)
    );
    // Saving 4 with a segment condition would push 6 (which contains it) past 3 hops.
    assert_eq!(problems(seg(guid(1), "in"), &c, Some(guid(4))), one("/rule", ProblemCode::ChainTooDeep));
    assert_eq!(
        parse_timezone(Some("Mars/Olympus")).unwrap_err().pointer,
        "/timezone",
        "a timezone is checked at its own pointer"
    );
    assert_eq!(parse_timezone(None).unwrap(), jiff::tz::TimeZone::UTC);
}

fn attrs(v: Value) -> Attributes {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(id, m)| {
            let values = m
                .as_object()
                .unwrap()
                .iter()
                .map(|(n, v)| {
                    let value = match v {
                        Value::String(s) if n == "signup" => AttrValue::Date(s.clone()),
                        Value::String(s) if n == "score" => AttrValue::Number(s.clone()),
                        Value::String(s) => AttrValue::String(s.clone()),
                        Value::Bool(b) => AttrValue::Boolean(*b),
                        other => AttrValue::Number(other.to_string()),
                    };
                    (n.clone(), value)
                })
                .collect();
            (id.clone(), values)
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp::from_epoch_secs(1_781_524_800).unwrap() // 2026-06-15T12:00:00Z
}

#[test]
fn explain_names_each_condition_its_outcome_and_the_value_it_saw() {
    let c = catalog();
    let rule = parse_and_validate(
        &json!({"all": [
            {"attribute": {"property": "plan"}, "op": "equals", "value": "gold"},
            {"attribute": {"integration": "crm", "property": "score"}, "op": "gt", "value": 10},
            {"attribute": {"integration": "crm", "property": "vip"}, "op": "is_true"},
            {"segment": guid(1).to_string(), "op": "not_in"}
        ]}),
        &c,
        None,
    )
    .unwrap();
    let set = RuleSet::compile(&c);
    let compiled = set.compile_rule(&c, &rule, jiff::tz::TimeZone::UTC);
    let a = attrs(json!({"crm": {"plan": "silver", "score": "12"}, "api": {"plan": "gold"}}));
    let statics = HashSet::new();
    let out = set.evaluate_rule(&compiled, UserFacts { attributes: &a, static_segments: &statics }, now());
    assert!(!out.matched);
    let e = &out.explain;
    assert_eq!(e.len(), 4);
    assert_eq!(
        (e[0].pointer.as_str(), e[0].outcome, e[0].integration.as_deref()),
        ("/rule/all/0", Outcome::Matched, Some("api"))
    );
    assert_eq!(
        e[0].value,
        Some(AttrValue::String("gold".into())),
        "the value that matched, not crm's silver"
    );
    assert_eq!((e[1].outcome, e[1].value.clone()), (Outcome::Matched, Some(AttrValue::Number("12".into()))));
    assert_eq!((e[2].outcome, e[2].holds, e[2].value.clone()), (Outcome::Missing, false, None));
    assert_eq!((e[3].outcome, e[3].holds), (Outcome::Matched, true));
    let wire = serde_json::to_value(&e[0]).unwrap();
    assert_eq!(
        wire,
        json!({"pointer": "/rule/all/0", "outcome": "matched", "holds": true, "integration": "api", "value": "gold"})
    );
}

#[test]
fn conditions_on_what_was_deleted_are_stale_and_false_whatever_the_operator() {
    let c = catalog();
    let rule = parse_and_validate(
        &json!({"any": [
            {"attribute": {"integration": "api", "property": "plan"}, "op": "not_equals", "value": "gold"},
            {"attribute": {"property": "score"}, "op": "not_in", "values": [1]},
            {"segment": guid(1).to_string(), "op": "not_in"},
            {"attribute": {"integration": "crm", "property": "plan"}, "op": "is_not_set"}
        ]}),
        &c,
        None,
    )
    .unwrap();
    assert!(stale_conditions(&rule, &c).is_empty());
    // The api integration, crm's score and the static segment are deleted.
    let mut after = Catalog::new();
    after.add_integration_types("crm", [("plan".to_string(), AttrType::String)]);
    assert_eq!(stale_conditions(&rule, &after), vec!["/rule/any/0", "/rule/any/1", "/rule/any/2"]);
    let set = RuleSet::compile(&after);
    let compiled = set.compile_rule(&after, &rule, jiff::tz::TimeZone::UTC);
    let a = attrs(json!({"crm": {"plan": "x"}}));
    let statics = HashSet::new();
    let out = set.evaluate_rule(&compiled, UserFacts { attributes: &a, static_segments: &statics }, now());
    let outcomes: Vec<Outcome> = out.explain.iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, [Outcome::Stale, Outcome::Stale, Outcome::Stale, Outcome::Failed]);
    assert!(!out.matched, "negative operators on stale conditions are false too");
}

#[test]
fn a_rule_set_reports_its_segments_and_memoises_segment_in_segment() {
    let mut c = catalog();
    let p = |v: Value| parse(&v, "/rule").unwrap();
    c.add_rule_segment(guid(10), p(plan_is("gold")), jiff::tz::TimeZone::UTC);
    c.add_rule_segment(
        guid(11),
        p(json!({"segment": guid(10).to_string(), "op": "in"})),
        jiff::tz::TimeZone::UTC,
    );
    c.add_rule_segment(
        guid(12),
        p(json!({"segment": guid(10).to_string(), "op": "not_in"})),
        jiff::tz::TimeZone::UTC,
    );
    let set = RuleSet::compile(&c);
    assert_eq!(set.len(), 3);
    let statics = HashSet::new();
    let gold = attrs(json!({"crm": {"plan": "gold"}}));
    assert_eq!(
        set.evaluate(UserFacts { attributes: &gold, static_segments: &statics }, now()),
        vec![guid(10), guid(11)]
    );
    let none = Attributes::new();
    let explained = set.evaluate_explained(UserFacts { attributes: &none, static_segments: &statics }, now());
    let matched: Vec<bool> = explained.iter().map(|s| s.matched).collect();
    assert_eq!(matched, [false, false, true]);
    assert_eq!(explained[2].segment_guid, guid(12).to_string());
}

#[test]
fn jsonlogic_export_says_what_it_cannot_express() {
    let c = catalog();
    let rule = parse_and_validate(
        &json!({"all": [
            {"attribute": {"property": "plan"}, "op": "not_equals", "value": "gold"},
            {"attribute": {"integration": "crm", "property": "score"}, "op": "between", "values": [1, "2.5"]},
            {"attribute": {"integration": "crm", "property": "plan"}, "op": "matches", "value": "^a"},
            {"attribute": {"integration": "crm", "property": "plan"}, "op": "equals", "value": "a", "ignoreCase": true},
            {"attribute": {"integration": "crm", "property": "score"}, "op": "equals", "value": "1.2345678901234567"},
            {"attribute": {"integration": "crm", "property": "signup"}, "op": "within_last_days", "value": 3},
            {"segment": guid(1).to_string(), "op": "in"}
        ]}),
        &c,
        None,
    )
    .unwrap();
    let out = to_jsonlogic(&rule, &c);
    assert_eq!(
        out.logic["and"][0],
        json!({"!": {"or": [{"===": [{"var": "api.plan"}, "gold"]}, {"===": [{"var": "crm.plan"}, "gold"]}]}})
    );
    assert_eq!(
        out.logic["and"][1],
        json!({"and": [{"!==": [{"var": "crm.score"}, null]}, {"<=": [1, {"var": "crm.score"}, 2.5]}]})
    );
    let pointers: Vec<&str> = out.unsupported.iter().map(|u| u.pointer.as_str()).collect();
    assert_eq!(pointers, ["/rule/all/2", "/rule/all/3", "/rule/all/4", "/rule/all/5", "/rule/all/6"]);
    assert_eq!(out.logic["and"][2], json!(false));
}

#[test]
fn a_cycle_that_raced_in_is_false_when_evaluated_and_not_inlined_forever() {
    // Two saves that each passed validation alone: 20 names 21, then 21 names 20.
    let mut c = catalog();
    let seg = |g: u32| parse(&json!({"segment": guid(g).to_string(), "op": "in"}), "/rule").unwrap();
    c.add_rule_segment(guid(20), seg(21), jiff::tz::TimeZone::UTC);
    c.add_rule_segment(guid(21), seg(20), jiff::tz::TimeZone::UTC);
    let set = RuleSet::compile(&c);
    let (none, statics) = (Attributes::new(), HashSet::new());
    assert!(set.evaluate(UserFacts { attributes: &none, static_segments: &statics }, now()).is_empty());
    let out = to_jsonlogic(&seg(20), &c);
    assert_eq!(out.unsupported.len(), 1);
    assert!(out.unsupported[0].reason.contains("cycle"));
}

// ---- The algebra, on random rules and users.

fn leaf() -> impl Strategy<Value = Value> {
    let word = prop::sample::select(vec!["gold", "Gold", "silver", "straße", "STRASSE", ""]);
    let num =
        prop::sample::select(vec!["-1", "0", "1", "1.0", "2.5", "12345678901234567890123456789012345678"]);
    let day =
        prop::sample::select(vec!["2026-06-01", "2026-06-14", "2026-06-15", "2026-06-16", "2026-07-01"]);
    let integ = prop::option::of(prop::sample::select(vec!["crm", "api"]));
    let attr = |i: Option<&str>, p: &str| match i {
        Some(i) => json!({"integration": i, "property": p}),
        None => json!({"property": p}),
    };
    prop_oneof![
        (integ.clone(), prop::sample::select(vec!["equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with"]), word.clone(), any::<bool>())
            .prop_map(move |(i, op, v, ic)| json!({"attribute": attr(i, "plan"), "op": op, "value": v, "ignoreCase": ic})),
        (integ.clone(), prop::sample::select(vec!["in", "not_in"]), prop::collection::vec(word.clone(), 1..3))
            .prop_map(move |(i, op, vs)| json!({"attribute": attr(i, "plan"), "op": op, "values": vs})),
        (integ.clone(), prop::sample::select(vec!["matches", "not_matches"]), prop::sample::select(vec!["^g", "d$", "(?i)GOLD", "ß"]))
            .prop_map(move |(i, op, v)| json!({"attribute": attr(i, "plan"), "op": op, "value": v})),
        (integ.clone(), prop::sample::select(vec!["equals", "not_equals", "lt", "lte", "gt", "gte"]), num.clone())
            .prop_map(move |(i, op, v)| json!({"attribute": attr(i, "score"), "op": op, "value": v})),
        (integ, prop::sample::select(vec!["in", "not_in", "between"]), num.clone(), num)
            .prop_map(move |(i, op, a, b)| json!({"attribute": attr(i, "score"), "op": op, "values": [a, b]})),
        (prop::sample::select(vec!["equals", "before", "after", "within_last_days", "more_than_days_ago", "within_next_days", "more_than_days_ahead"]), day, 0u64..20)
            .prop_map(|(op, d, n)| {
                let v = if op.contains("days") { json!(n) } else { json!(d) };
                json!({"attribute": {"integration": "crm", "property": "signup"}, "op": op, "value": v})
            }),
        prop::sample::select(vec!["is_true", "is_false", "is_set", "is_not_set"])
            .prop_map(|op| json!({"attribute": {"integration": "crm", "property": "vip"}, "op": op})),
        prop::sample::select(vec!["in", "not_in"]).prop_map(|op| json!({"segment": guid(1).to_string(), "op": op})),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        (prop::sample::select(vec!["all", "any", "none"]), prop::collection::vec(inner, 1..4))
            .prop_map(|(k, cs)| json!({k: cs}))
    })
}

fn user() -> impl Strategy<Value = (Attributes, bool)> {
    let word =
        prop::option::of(prop::sample::select(vec!["gold", "GOLD", "silver", "Straße", "strasse", ""]));
    let num = prop::option::of(prop::sample::select(vec![
        "-1",
        "0",
        "1.00",
        "2.5",
        "12345678901234567890123456789012345678",
    ]));
    let day =
        prop::option::of(prop::sample::select(vec!["2026-06-01", "2026-06-15", "2026-06-16", "2026-07-01"]));
    (word.clone(), word, num.clone(), num, day, prop::option::of(any::<bool>()), any::<bool>()).prop_map(
        |(p1, p2, s1, s2, d, vip, member)| {
            let mut crm = serde_json::Map::new();
            let mut api = serde_json::Map::new();
            p1.map(|v| crm.insert("plan".into(), json!(v)));
            s1.map(|v| crm.insert("score".into(), json!(v)));
            d.map(|v| crm.insert("signup".into(), json!(v)));
            vip.map(|v| crm.insert("vip".into(), json!(v)));
            p2.map(|v| api.insert("plan".into(), json!(v)));
            s2.map(|v| api.insert("score".into(), json!(v)));
            (attrs(json!({"crm": crm, "api": api})), member)
        },
    )
}

fn conditions(v: &Value) -> usize {
    match ["all", "any", "none"].iter().find_map(|k| v.get(*k)) {
        Some(children) => children.as_array().unwrap().iter().map(conditions).sum(),
        None => 1,
    }
}

fn holds(rule: &Value, user: &(Attributes, bool)) -> bool {
    let c = catalog();
    let rule = parse_and_validate(rule, &c, None).unwrap_or_else(|p| panic!("{rule}: {p:?}"));
    let set = RuleSet::compile(&c);
    let compiled = set.compile_rule(&c, &rule, jiff::tz::TimeZone::get("Europe/London").unwrap());
    let statics: HashSet<SegmentGuid> = if user.1 { HashSet::from([guid(1)]) } else { HashSet::new() };
    let out =
        set.evaluate_rule(&compiled, UserFacts { attributes: &user.0, static_segments: &statics }, now());
    out.matched
}

/// The operator with its positive or negative counterpart swapped in.
fn flipped(v: &Value) -> Option<Value> {
    let pairs: HashMap<&str, &str> = [
        ("equals", "not_equals"),
        ("in", "not_in"),
        ("contains", "not_contains"),
        ("matches", "not_matches"),
        ("is_set", "is_not_set"),
    ]
    .into_iter()
    .flat_map(|(p, n)| [(p, n), (n, p)])
    .collect();
    let op = v["op"].as_str()?;
    let other = pairs.get(op)?;
    // Date `equals` has no `not_equals` (SPEC's table).
    if v["attribute"]["property"] == "signup" {
        return None;
    }
    let mut out = v.clone();
    out["op"] = json!(other);
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn none_is_the_negation_of_any(children in prop::collection::vec(tree(), 1..4), u in user()) {
        prop_assume!(conditions(&json!({"any": children})) <= MAX_CONDITIONS);
        prop_assert_eq!(holds(&json!({"none": children}), &u), !holds(&json!({"any": children}), &u));
    }

    #[test]
    fn each_negative_operator_is_the_negation_of_its_positive(l in leaf(), u in user()) {
        if let Some(other) = flipped(&l) {
            prop_assert_eq!(holds(&other, &u), !holds(&l, &u), "{} vs {}", l, other);
        }
    }

    #[test]
    fn all_is_none_of_the_negations(children in prop::collection::vec(tree(), 1..4), u in user()) {
        prop_assume!(conditions(&json!({"all": children})) <= MAX_CONDITIONS);
        let negated: Vec<Value> = children.iter().map(|c| json!({"none": [c]})).collect();
        prop_assert_eq!(holds(&json!({"all": children}), &u), holds(&json!({"none": negated}), &u));
    }
}
