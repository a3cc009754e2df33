//! Evaluation of compiled rules for one user at one "now", with or without the explanation
//! of every condition.

use std::collections::{HashMap, HashSet};

use jiff::civil::Date;
use serde::Serialize;

use super::compile::{CKind, CNode, CompiledRule, Matcher, RuleSet, SegRef, Window, fold};
use super::validate::parse_date;
use crate::exact::Decimal;
use crate::user_data::AttrValue;
use crate::{SegmentGuid, Timestamp};

/// A user's stored attributes: integration id → attribute name → value.
pub type Attributes = HashMap<String, HashMap<String, AttrValue>>;

/// What one evaluation knows of the user.
#[derive(Debug, Clone, Copy)]
pub struct UserFacts<'a> {
    pub attributes: &'a Attributes,
    /// The static segments the user is a member of.
    pub static_segments: &'a HashSet<SegmentGuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The condition holds on a value it saw (or the segment membership it asked for).
    Matched,
    /// The condition does not hold on the value it saw.
    Failed,
    /// No value: a positive operator is false, a negative one true (see `holds`).
    Missing,
    /// It names an integration, property or segment that no longer exists: false.
    Stale,
}

/// One condition of an explained evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionExplain {
    pub pointer: String,
    pub outcome: Outcome,
    /// Whether the condition is true.
    pub holds: bool,
    /// The integration whose value decided (a matching one first, else the first present).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<AttrValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleOutcome {
    pub matched: bool,
    pub explain: Vec<ConditionExplain>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentOutcome {
    pub segment_guid: String,
    pub matched: bool,
    pub explain: Vec<ConditionExplain>,
}

/// Segment-in-segment is bounded when saved; this bound only stops a cycle that raced in
/// between two saves.
const MAX_EVAL_DEPTH: usize = 8;

const UNKNOWN: u8 = 0;
const BUSY: u8 = 1;
const FALSE: u8 = 2;
const TRUE: u8 = 3;

struct Evaluator<'s, 'u> {
    set: &'s RuleSet,
    user: UserFacts<'u>,
    now: jiff::Timestamp,
    /// Per rule segment of the set: UNKNOWN, BUSY (being evaluated: a cycle reads false), or
    /// its outcome. One call evaluates each rule segment at most once.
    memo: Vec<u8>,
    /// The user's values of the set's slots, read and parsed once per call.
    slots: Vec<Option<Stored<'u>>>,
}

/// A stored value read once: typed, with its case folding made when first asked for.
struct Stored<'u> {
    integration: &'u str,
    raw: &'u AttrValue,
    parsed: Parsed<'u>,
    folded: std::cell::OnceCell<String>,
}

enum Parsed<'u> {
    Str(&'u str),
    /// `None`: not decimal text (never stored; reads as no value).
    Num(Option<Decimal>),
    Date(Option<Date>),
    Bool(bool),
}

impl<'u> Stored<'u> {
    fn new(integration: &'u str, raw: &'u AttrValue) -> Self {
        let parsed = match raw {
            AttrValue::String(s) => Parsed::Str(s),
            AttrValue::Number(n) => Parsed::Num(Decimal::parse(n)),
            AttrValue::Date(d) => Parsed::Date(parse_date(d)),
            AttrValue::Boolean(b) => Parsed::Bool(*b),
        };
        Self { integration, raw, parsed, folded: std::cell::OnceCell::new() }
    }

    fn text(&self, fold_it: bool) -> Option<&str> {
        match self.parsed {
            Parsed::Str(s) if fold_it => Some(self.folded.get_or_init(|| fold(s))),
            Parsed::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn to_jiff(now: Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(now.epoch_ms()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

impl RuleSet {
    /// The rule segments the user is in now, in catalog order.
    pub fn evaluate(&self, user: UserFacts<'_>, now: Timestamp) -> Vec<SegmentGuid> {
        let mut ev = Evaluator::new(self, user, now);
        (0..self.segments.len()).filter(|&i| ev.segment(i, 0)).map(|i| self.segments[i].0).collect()
    }

    /// Every rule segment's outcome, with every condition explained.
    pub fn evaluate_explained(&self, user: UserFacts<'_>, now: Timestamp) -> Vec<SegmentOutcome> {
        let mut ev = Evaluator::new(self, user, now);
        (0..self.segments.len())
            .map(|i| {
                let (guid, rule) = &self.segments[i];
                let RuleOutcome { matched, explain } = ev.explained(rule);
                SegmentOutcome { segment_guid: guid.to_string(), matched, explain }
            })
            .collect()
    }

    /// One rule (a dry run's, compiled with [`RuleSet::compile_rule`]), explained.
    pub fn evaluate_rule(&self, rule: &CompiledRule, user: UserFacts<'_>, now: Timestamp) -> RuleOutcome {
        Evaluator::new(self, user, now).explained(rule)
    }
}

/// A leaf's result with what it saw.
struct Seen<'u> {
    holds: bool,
    outcome: Outcome,
    integration: Option<&'u str>,
    value: Option<&'u AttrValue>,
}

impl<'s, 'u> Evaluator<'s, 'u> {
    fn new(set: &'s RuleSet, user: UserFacts<'u>, now: Timestamp) -> Self {
        let mut slots: Vec<Option<Stored<'u>>> = Vec::with_capacity(set.slot_count as usize);
        slots.resize_with(set.slot_count as usize, || None);
        for (id, values) in user.attributes {
            let Some(names) = set.slots.get(id.as_str()) else { continue };
            for (name, v) in values {
                if let Some(&i) = names.get(name.as_str()) {
                    slots[i as usize] = Some(Stored::new(id, v));
                }
            }
        }
        Self { set, user, now: to_jiff(now), memo: vec![UNKNOWN; set.segments.len()], slots }
    }

    fn today(&self, rule: &CompiledRule) -> Option<Date> {
        rule.needs_today.then(|| rule.timezone.to_datetime(self.now).date())
    }

    fn segment(&mut self, i: usize, depth: usize) -> bool {
        match self.memo[i] {
            TRUE => return true,
            FALSE | BUSY => return false,
            _ => {}
        }
        if depth > MAX_EVAL_DEPTH {
            return false;
        }
        self.memo[i] = BUSY;
        let set = self.set;
        let rule = &set.segments[i].1;
        let today = self.today(rule);
        let r = self.node(rule, &rule.root, today, depth);
        self.memo[i] = if r { TRUE } else { FALSE };
        r
    }

    fn node(&mut self, rule: &CompiledRule, n: &CNode, today: Option<Date>, depth: usize) -> bool {
        match n {
            CNode::All(cs) => cs.iter().all(|c| self.node(rule, c, today, depth)),
            CNode::Any(cs) => cs.iter().any(|c| self.node(rule, c, today, depth)),
            CNode::None(cs) => !cs.iter().any(|c| self.node(rule, c, today, depth)),
            CNode::Leaf(i) => self.leaf(&rule.conditions[*i].kind, today, depth, false).holds,
        }
    }

    /// `explain` asks for the value that decided, which a plain evaluation does not need.
    fn leaf(&mut self, kind: &CKind, today: Option<Date>, depth: usize, explain: bool) -> Seen<'u> {
        match kind {
            CKind::Stale => Seen { holds: false, outcome: Outcome::Stale, integration: None, value: None },
            CKind::Segment { target, negated } => {
                let member = match *target {
                    SegRef::Static(g) => self.user.static_segments.contains(&g),
                    SegRef::Rule(i) => self.segment(i, depth + 1),
                };
                let holds = member != *negated;
                let outcome = if holds { Outcome::Matched } else { Outcome::Failed };
                Seen { holds, outcome, integration: None, value: None }
            }
            CKind::Attribute { targets, negated } => {
                let attrs = self.user.attributes;
                let mut first_seen: Option<(&'u str, &'u AttrValue)> = None;
                let mut matched: Option<(&'u str, &'u AttrValue)> = None;
                for t in targets.iter() {
                    let by_name;
                    let stored = match t.slot {
                        Some(i) => self.slots[i as usize].as_ref(),
                        None => {
                            by_name = attrs
                                .get_key_value(&*t.integration)
                                .and_then(|(id, m)| m.get(&*t.property).map(|v| Stored::new(id, v)));
                            by_name.as_ref()
                        }
                    };
                    let Some(v) = stored else { continue };
                    match test(&t.matcher, v, today) {
                        Some(true) => {
                            matched = Some((v.integration, v.raw));
                            break;
                        }
                        Some(false) if explain && first_seen.is_none() => {
                            first_seen = Some((v.integration, v.raw))
                        }
                        _ => {}
                    }
                }
                let holds = matched.is_some() != *negated;
                let (outcome, seen) = match (matched, first_seen) {
                    (Some(m), _) => (if holds { Outcome::Matched } else { Outcome::Failed }, Some(m)),
                    (None, Some(f)) => (if holds { Outcome::Matched } else { Outcome::Failed }, Some(f)),
                    (None, None) => (Outcome::Missing, None),
                };
                Seen { holds, outcome, integration: seen.map(|s| s.0), value: seen.map(|s| s.1) }
            }
        }
    }

    fn explained(&mut self, rule: &CompiledRule) -> RuleOutcome {
        let today = self.today(rule);
        let seen: Vec<Seen<'u>> =
            rule.conditions.iter().map(|c| self.leaf(&c.kind, today, 0, true)).collect();
        fn combine(n: &CNode, seen: &[Seen<'_>]) -> bool {
            match n {
                CNode::All(cs) => cs.iter().all(|c| combine(c, seen)),
                CNode::Any(cs) => cs.iter().any(|c| combine(c, seen)),
                CNode::None(cs) => !cs.iter().any(|c| combine(c, seen)),
                CNode::Leaf(i) => seen[*i].holds,
            }
        }
        let matched = combine(&rule.root, &seen);
        let explain = rule
            .conditions
            .iter()
            .zip(seen)
            .map(|(c, s)| ConditionExplain {
                pointer: c.pointer.clone(),
                outcome: s.outcome,
                holds: s.holds,
                integration: s.integration.map(str::to_string),
                value: s.value.cloned(),
            })
            .collect();
        RuleOutcome { matched, explain }
    }
}

/// The positive matcher on one stored value; `None` when the value is not of the matcher's
/// type (read as no value).
fn test(m: &Matcher, v: &Stored<'_>, today: Option<Date>) -> Option<bool> {
    Some(match (m, &v.parsed) {
        (Matcher::IsSet, _) => true,
        (Matcher::StrEq { value, fold }, _) => v.text(*fold)? == &**value,
        (Matcher::StrIn { values, fold }, _) => values.contains(v.text(*fold)?),
        (Matcher::Contains { value, fold }, _) => v.text(*fold)?.contains(&**value),
        (Matcher::StartsWith { value, fold }, _) => v.text(*fold)?.starts_with(&**value),
        (Matcher::EndsWith { value, fold }, _) => v.text(*fold)?.ends_with(&**value),
        (Matcher::Regex(r), Parsed::Str(s)) => r.is_match(s),
        (Matcher::NumCmp(d, accept), Parsed::Num(n)) => accept.holds((*n)?.cmp(d)),
        (Matcher::NumBetween(lo, hi), Parsed::Num(n)) => {
            let x = (*n)?;
            *lo <= x && x <= *hi
        }
        (Matcher::NumIn(ds), Parsed::Num(n)) => ds.binary_search(&(*n)?).is_ok(),
        (Matcher::DateCmp(d, accept), Parsed::Date(x)) => accept.holds((*x)?.cmp(d)),
        (Matcher::DateBetween(lo, hi), Parsed::Date(x)) => {
            let x = (*x)?;
            *lo <= x && x <= *hi
        }
        (Matcher::DateWindow(w, n), Parsed::Date(x)) => window(*w, *n, (*x)?, today?),
        (Matcher::IsTrue, Parsed::Bool(b)) => *b,
        (Matcher::IsFalse, Parsed::Bool(b)) => !*b,
        _ => return None,
    })
}

/// SPEC's day windows. A window reaching past the calendar's range is cut at its end.
fn window(w: Window, n: u64, d: Date, today: Date) -> bool {
    let shift = |forward: bool| -> Date {
        let span = i64::try_from(n).ok().and_then(|n| jiff::Span::new().try_days(n).ok());
        let moved =
            span.and_then(|s| if forward { today.checked_add(s).ok() } else { today.checked_sub(s).ok() });
        moved.unwrap_or(if forward { Date::MAX } else { Date::MIN })
    };
    match w {
        Window::LastDays => shift(false) <= d && d <= today,
        Window::MoreThanAgo => d < shift(false),
        Window::NextDays => today <= d && d <= shift(true),
        Window::MoreThanAhead => d > shift(true),
    }
}
