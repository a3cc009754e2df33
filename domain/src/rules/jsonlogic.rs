//! A rule as JsonLogic, the language of OpenFeature flagd's targeting, wherever JsonLogic can
//! say it. The evaluation context it reads is `{"<integrationId>": {"<property>": value}}`
//! (a Date as its `YYYY-MM-DD` string, a Number as a JSON number). What it cannot say is
//! listed, and exported as `false` (docs/DECISIONS.md, "Rule segments: JsonLogic export").

use serde::Serialize;
use serde_json::{Value, json};

use super::model::{AttributeCondition, GroupKind, MAX_CHAIN_DEPTH, Node, Op, Operand, Rule};
use super::validate::{Catalog, SegmentEntry, fits};
use crate::exact;
use crate::integration::AttrType;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonLogicExport {
    pub logic: Value,
    /// Empty when `logic` is the whole rule.
    pub unsupported: Vec<Unsupported>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsupported {
    pub pointer: String,
    pub operator: String,
    pub reason: String,
}

/// JsonLogic compares numbers as IEEE doubles: 15 significant digits survive any of them.
const FLOAT_EXACT_DIGITS: usize = 15;

/// Exports a rule; rule segments it names are inlined (their chains are short: at most 3).
pub fn to_jsonlogic(rule: &Rule, catalog: &Catalog) -> JsonLogicExport {
    let mut unsupported = Vec::new();
    let logic = node(&rule.root, catalog, &mut unsupported, "", 0);
    JsonLogicExport { logic, unsupported }
}

/// Inlining stops here: chains are at most [`MAX_CHAIN_DEPTH`] when saved, so only a cycle
/// that raced in between two saves reaches it.
const MAX_INLINE_DEPTH: usize = MAX_CHAIN_DEPTH + 1;

fn node(n: &Node, catalog: &Catalog, out: &mut Vec<Unsupported>, prefix: &str, depth: usize) -> Value {
    match n {
        Node::Group(g) => {
            let children: Vec<Value> =
                g.children.iter().map(|c| node(c, catalog, out, prefix, depth)).collect();
            match g.kind {
                GroupKind::All => json!({"and": children}),
                GroupKind::Any => json!({"or": children}),
                GroupKind::None => json!({"!": {"or": children}}),
            }
        }
        Node::Segment(s) => {
            let inner = match catalog.segment(&s.segment) {
                None => json!(false),
                Some(SegmentEntry::Rule(..)) if depth >= MAX_INLINE_DEPTH => {
                    out.push(Unsupported {
                        pointer: format!("{prefix}{}", s.pointer),
                        operator: if s.negated { "not_in" } else { "in" }.into(),
                        reason: "the segments this one names form a cycle".into(),
                    });
                    return json!(false);
                }
                Some(SegmentEntry::Rule(r, _)) => {
                    // Pointers inside an inlined rule are named through the condition that
                    // inlined it.
                    let nested = format!("{prefix}{}@{}", s.pointer, s.segment);
                    node(&r.root, catalog, out, &format!("{nested}:"), depth + 1)
                }
                Some(SegmentEntry::Static) => {
                    out.push(Unsupported {
                        pointer: format!("{prefix}{}", s.pointer),
                        operator: if s.negated { "not_in" } else { "in" }.into(),
                        reason: "a static segment's members are not in a flagd evaluation context".into(),
                    });
                    return json!(false);
                }
            };
            if s.negated { json!({"!": inner}) } else { inner }
        }
        Node::Attribute(c) => attribute(c, catalog, out, prefix),
    }
}

fn attribute(c: &AttributeCondition, catalog: &Catalog, out: &mut Vec<Unsupported>, prefix: &str) -> Value {
    let mut refuse = |reason: &str| {
        out.push(Unsupported {
            pointer: format!("{prefix}{}", c.pointer),
            operator: c.op.as_str().into(),
            reason: reason.into(),
        });
        json!(false)
    };
    let (op, negated) = c.op.positive();
    if c.ignore_case {
        return refuse("JsonLogic has no Unicode case folding (ignoreCase)");
    }
    let mut per_target = Vec::new();
    let targets: Vec<(&str, AttrType)> = catalog
        .targets(c.integration.as_deref(), &c.property)
        .into_iter()
        .filter(|(_, t)| fits(c, *t).is_ok())
        .collect();
    if targets.is_empty() {
        return json!(false); // stale: false whatever the operator
    }
    for (id, t) in targets {
        if id.contains('.') || c.property.contains('.') {
            return refuse(
                "a JsonLogic variable path splits at '.', which this integration id or property name holds",
            );
        }
        let var = json!({"var": format!("{id}.{}", c.property)});
        let set = json!({"!==": [var, null]});
        let value = |v: &Value| -> Value {
            match (t, exact::number_text(v)) {
                (AttrType::Number, Some(text)) => serde_json::from_str(&text).unwrap_or(Value::Null),
                (AttrType::Number, None) => {
                    v.as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(Value::Null)
                }
                _ => v.clone(),
            }
        };
        if t == AttrType::Number && numbers(&c.operand).any(|d| d > FLOAT_EXACT_DIGITS) {
            return refuse("JsonLogic compares numbers as 64-bit floats, which keep 15 significant digits");
        }
        let one = || match &c.operand {
            Operand::Value(v) => value(v),
            _ => Value::Null,
        };
        let list = || match &c.operand {
            Operand::Values(vs) => vs.iter().map(value).collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        let expr = match (op, t) {
            (Op::Equals, _) => json!({"===": [var, one()]}),
            (Op::In, _) => json!({"in": [var, list()]}),
            (Op::Contains, _) => json!({"and": [set, {"in": [one(), var]}]}),
            (Op::StartsWith, _) => json!({"and": [set, {"starts_with": [var, one()]}]}),
            (Op::EndsWith, _) => json!({"and": [set, {"ends_with": [var, one()]}]}),
            (Op::Lt, _) => json!({"and": [set, {"<": [var, one()]}]}),
            (Op::Lte, _) => json!({"and": [set, {"<=": [var, one()]}]}),
            (Op::Gt, _) => json!({"and": [set, {">": [var, one()]}]}),
            (Op::Gte, _) => json!({"and": [set, {">=": [var, one()]}]}),
            (Op::Between, AttrType::Number) => {
                let l = list();
                json!({"and": [set, {"<=": [l[0], var, l[1]]}]})
            }
            (Op::IsTrue, _) => json!({"===": [var, true]}),
            (Op::IsFalse, _) => json!({"===": [var, false]}),
            (Op::IsSet, _) => set,
            (Op::Matches, _) => return refuse("JsonLogic (and flagd) has no regular expressions"),
            (Op::Between | Op::Before | Op::After, AttrType::Date) => {
                return refuse("JsonLogic engines disagree on ordering strings, so dates cannot be compared");
            }
            _ => return refuse("JsonLogic has no calendar: \"today\" in a timezone cannot be said"),
        };
        per_target.push(expr);
    }
    let positive = if per_target.len() == 1 { per_target.remove(0) } else { json!({"or": per_target}) };
    if negated { json!({"!": positive}) } else { positive }
}

/// The significant digits of each number of the operand.
fn numbers(operand: &Operand) -> impl Iterator<Item = usize> + '_ {
    let values: Vec<&Value> = match operand {
        Operand::Value(v) => vec![v],
        Operand::Values(vs) => vs.iter().collect(),
        _ => Vec::new(),
    };
    values.into_iter().map(|v| {
        let text = match v {
            Value::String(s) => Some(s.as_str().into()),
            v => exact::number_text(v),
        };
        text.and_then(|t| exact::Decimal::parse(&t)).map_or(0, |d| d.significant_digits())
    })
}
