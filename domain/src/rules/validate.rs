//! A parsed rule judged against the account's catalog: integrations and their property types,
//! and the system's segments (for segment conditions, cycles and chain depth).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::model::{
    AttributeCondition, MAX_CHAIN_DEPTH, Node, Op, Operand, OperandKind, ProblemCode, Rule, RuleProblem,
    pointer_push,
};
use crate::SegmentGuid;
use crate::exact;
use crate::integration::{AttrType, Definition};

/// What a rule may name: the account's integrations (id → attribute name → type) and the
/// system's segments. Built by the caller from what it has read; the engine does no I/O.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    integrations: BTreeMap<String, BTreeMap<String, AttrType>>,
    /// In the order they were added, which is the order evaluation reports them in.
    segments: Vec<(SegmentGuid, SegmentEntry)>,
    segment_index: HashMap<SegmentGuid, usize>,
}

#[derive(Debug, Clone)]
pub enum SegmentEntry {
    Static,
    /// A rule segment: its rule and the timezone that decides its "today".
    Rule(Box<Rule>, jiff::tz::TimeZone),
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_integration(&mut self, id: impl Into<String>, def: &Definition) -> &mut Self {
        self.add_integration_types(id, def.types())
    }

    pub fn add_integration_types(
        &mut self,
        id: impl Into<String>,
        types: impl IntoIterator<Item = (String, AttrType)>,
    ) -> &mut Self {
        self.integrations.insert(id.into(), types.into_iter().collect());
        self
    }

    pub fn add_static_segment(&mut self, guid: SegmentGuid) -> &mut Self {
        self.add_segment(guid, SegmentEntry::Static)
    }

    pub fn add_rule_segment(
        &mut self,
        guid: SegmentGuid,
        rule: Rule,
        timezone: jiff::tz::TimeZone,
    ) -> &mut Self {
        self.add_segment(guid, SegmentEntry::Rule(Box::new(rule), timezone))
    }

    fn add_segment(&mut self, guid: SegmentGuid, entry: SegmentEntry) -> &mut Self {
        match self.segment_index.get(&guid) {
            Some(&i) => self.segments[i].1 = entry,
            None => {
                self.segment_index.insert(guid, self.segments.len());
                self.segments.push((guid, entry));
            }
        }
        self
    }

    pub fn segment(&self, guid: &SegmentGuid) -> Option<&SegmentEntry> {
        self.segment_index.get(guid).map(|&i| &self.segments[i].1)
    }

    /// Every segment, in the order added.
    pub fn segments(&self) -> impl Iterator<Item = (SegmentGuid, &SegmentEntry)> {
        self.segments.iter().map(|(g, e)| (*g, e))
    }

    /// The (integration id, type) pairs a condition's attribute names now: one for a named
    /// integration that has the property, every integration holding the name otherwise.
    pub fn targets(&self, integration: Option<&str>, property: &str) -> Vec<(&str, AttrType)> {
        match integration {
            Some(id) => self
                .integrations
                .get_key_value(id)
                .and_then(|(id, props)| props.get(property).map(|t| (id.as_str(), *t)))
                .into_iter()
                .collect(),
            None => self
                .integrations
                .iter()
                .filter_map(|(id, props)| props.get(property).map(|t| (id.as_str(), *t)))
                .collect(),
        }
    }
}

/// Judges a parsed rule against the catalog. `own` is the segment being saved (`None` for a
/// new one or a dry run): a condition naming it, directly or through other rule segments, is a
/// cycle.
pub fn validate(rule: &Rule, catalog: &Catalog, own: Option<SegmentGuid>) -> Vec<RuleProblem> {
    let mut problems = Vec::new();
    for node in rule.conditions() {
        match node {
            Node::Attribute(c) => attribute(c, catalog, &mut problems),
            Node::Segment(s) => {
                if Some(s.segment) == own {
                    problems.push(RuleProblem::new(
                        &s.pointer,
                        ProblemCode::SegmentCycle,
                        "a segment cannot contain itself",
                    ));
                } else if catalog.segment(&s.segment).is_none() {
                    problems.push(RuleProblem::new(
                        &pointer_push(&s.pointer, "segment"),
                        ProblemCode::UnknownSegment,
                        format!("no segment {} in this system", s.segment),
                    ));
                } else if let Some(path) = cycle_through(catalog, s.segment, own) {
                    problems.push(RuleProblem::new(
                        &s.pointer,
                        ProblemCode::SegmentCycle,
                        format!("segment {} leads back here: {}", s.segment, path),
                    ));
                }
            }
            Node::Group(_) => {}
        }
    }
    if problems.is_empty() {
        chain_depth(rule, catalog, own, &mut problems);
    }
    problems
}

/// `Some(path)` when following rule segments from `from` reaches `own` (or loops).
fn cycle_through(catalog: &Catalog, from: SegmentGuid, own: Option<SegmentGuid>) -> Option<String> {
    fn walk(
        catalog: &Catalog,
        at: SegmentGuid,
        own: Option<SegmentGuid>,
        path: &mut Vec<SegmentGuid>,
    ) -> bool {
        if Some(at) == own || path.contains(&at) {
            path.push(at);
            return true;
        }
        path.push(at);
        if let Some(SegmentEntry::Rule(r, _)) = catalog.segment(&at) {
            for next in r.segment_refs() {
                if walk(catalog, next, own, path) {
                    return true;
                }
            }
        }
        path.pop();
        false
    }
    let mut path = Vec::new();
    walk(catalog, from, own, &mut path)
        .then(|| path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> "))
}

/// Hops of segment-in-segment below a rule: 0 without segment conditions, else 1 + the deepest
/// rule segment it names (a static segment adds no hop below it).
fn depth_of(
    catalog: &Catalog,
    rule: &Rule,
    own: Option<(SegmentGuid, &Rule)>,
    seen: &mut HashSet<SegmentGuid>,
) -> usize {
    let refs = rule.segment_refs();
    if refs.is_empty() {
        return 0;
    }
    1 + refs
        .into_iter()
        .map(|g| {
            let next = match own {
                Some((own_guid, own_rule)) if own_guid == g => Some(own_rule),
                _ => match catalog.segment(&g) {
                    Some(SegmentEntry::Rule(r, _)) => Some(&**r),
                    _ => None,
                },
            };
            match next {
                Some(r) if seen.insert(g) => {
                    let d = depth_of(catalog, r, own, seen);
                    seen.remove(&g);
                    d
                }
                _ => 0,
            }
        })
        .max()
        .unwrap_or(0)
}

/// The rule's own chain, and the chains of the saved rules that name it, stay within
/// [`MAX_CHAIN_DEPTH`] hops.
fn chain_depth(rule: &Rule, catalog: &Catalog, own: Option<SegmentGuid>, problems: &mut Vec<RuleProblem>) {
    let mut seen = HashSet::from_iter(own);
    for node in rule.conditions() {
        let Node::Segment(s) = node else { continue };
        let below = match catalog.segment(&s.segment) {
            Some(SegmentEntry::Rule(r, _)) => {
                seen.insert(s.segment);
                let d = depth_of(catalog, r, None, &mut seen);
                seen.remove(&s.segment);
                d
            }
            _ => 0,
        };
        if 1 + below > MAX_CHAIN_DEPTH {
            problems.push(RuleProblem::new(
                &s.pointer,
                ProblemCode::ChainTooDeep,
                format!(
                    "segments nest in segments at most {MAX_CHAIN_DEPTH} deep; this one reaches {}",
                    1 + below
                ),
            ));
        }
    }
    let Some(own) = own else { return };
    if !problems.is_empty() {
        return;
    }
    for (guid, entry) in &catalog.segments {
        let SegmentEntry::Rule(other, _) = entry else { continue };
        if *guid == own || !reaches(catalog, other, own, &mut HashSet::new()) {
            continue;
        }
        let d = depth_of(catalog, other, Some((own, rule)), &mut HashSet::from([*guid]));
        if d > MAX_CHAIN_DEPTH {
            problems.push(RuleProblem::new(
                "/rule",
                ProblemCode::ChainTooDeep,
                format!(
                    "segment {guid} contains this one and would nest {d} deep (at most {MAX_CHAIN_DEPTH})"
                ),
            ));
        }
    }
}

fn reaches(catalog: &Catalog, rule: &Rule, target: SegmentGuid, seen: &mut HashSet<SegmentGuid>) -> bool {
    rule.segment_refs().into_iter().any(|g| {
        g == target
            || (seen.insert(g)
                && matches!(catalog.segment(&g), Some(SegmentEntry::Rule(r, _)) if reaches(catalog, r, target, seen)))
    })
}

fn attribute(c: &AttributeCondition, catalog: &Catalog, problems: &mut Vec<RuleProblem>) {
    let attr_at = pointer_push(&c.pointer, "attribute");
    if let Some(id) = &c.integration
        && !catalog.integrations.contains_key(id)
    {
        problems.push(RuleProblem::new(
            &pointer_push(&attr_at, "integration"),
            ProblemCode::UnknownIntegration,
            format!("no integration '{id}' in this account"),
        ));
        return;
    }
    let targets = catalog.targets(c.integration.as_deref(), &c.property);
    if targets.is_empty() {
        let where_ = match &c.integration {
            Some(id) => format!("integration '{id}'"),
            None => "any integration of this account".to_string(),
        };
        problems.push(RuleProblem::new(
            &pointer_push(&attr_at, "property"),
            ProblemCode::UnknownProperty,
            format!("no property '{}' in {where_}", c.property),
        ));
        return;
    }
    // Every integration the condition spans must make sense of it (docs/DECISIONS.md,
    // "Rule segments: a condition without an integration").
    let mut types: Vec<AttrType> = Vec::new();
    for (_, t) in &targets {
        if !types.contains(t) {
            types.push(*t);
        }
    }
    for t in types {
        let holders: Vec<&str> = targets.iter().filter(|(_, tt)| *tt == t).map(|(id, _)| *id).collect();
        if let Err(p) = fits(c, t) {
            let mut p = p;
            if c.integration.is_none() {
                p.message =
                    format!("{} (property '{}' is a {t} in {})", p.message, c.property, holders.join(", "));
            }
            problems.push(p);
            return;
        }
    }
}

/// Whether the condition's operator and values fit a property of type `t`.
pub(crate) fn fits(c: &AttributeCondition, t: AttrType) -> Result<(), RuleProblem> {
    if !c.op.types().contains(&t) {
        let offered: Vec<&str> =
            Op::ALL.iter().filter(|o| o.types().contains(&t)).map(|o| o.as_str()).collect();
        return Err(RuleProblem::new(
            &pointer_push(&c.pointer, "op"),
            ProblemCode::OperatorNotForType,
            format!("a {t} property offers {}, not '{}'", offered.join(", "), c.op.as_str()),
        ));
    }
    if c.ignore_case && t != AttrType::String {
        return Err(RuleProblem::new(
            &pointer_push(&c.pointer, "ignoreCase"),
            ProblemCode::BadIgnoreCase,
            format!("ignoreCase applies to String properties, not a {t}"),
        ));
    }
    let check = |v: &Value, at: &str| -> Result<(), RuleProblem> {
        value_of_type(v, t).map(|_| ()).map_err(|m| RuleProblem::new(at, ProblemCode::WrongValueType, m))
    };
    match &c.operand {
        Operand::Value(v) if c.op.operand() == OperandKind::One => {
            check(v, &pointer_push(&c.pointer, "value"))
        }
        Operand::Values(vs) => {
            let at = pointer_push(&c.pointer, "values");
            for (i, v) in vs.iter().enumerate() {
                check(v, &format!("{at}/{i}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A rule's value as a value of type `t`.
#[derive(Debug, Clone)]
pub(crate) enum Typed {
    String(String),
    Number(exact::Decimal),
    Date(jiff::civil::Date),
}

pub(crate) fn value_of_type(v: &Value, t: AttrType) -> Result<Typed, String> {
    match t {
        AttrType::String => match v {
            Value::String(s) => Ok(Typed::String(s.clone())),
            _ => Err("a String property is compared with a string".into()),
        },
        AttrType::Number => {
            let text = match v {
                Value::String(s) => Some(s.as_str().into()),
                v => exact::number_text(v),
            };
            text.filter(|t| crate::user_data::check_number(t).is_ok())
                .and_then(|t| exact::Decimal::parse(&t))
                .map(Typed::Number)
                .ok_or_else(|| {
                    "a Number property is compared with an exact decimal of at most 38 digits".into()
                })
        }
        AttrType::Date => v
            .as_str()
            .and_then(parse_date)
            .map(Typed::Date)
            .ok_or_else(|| "a Date property is compared with a real date 'YYYY-MM-DD'".into()),
        AttrType::Boolean => Err("a Boolean property takes no value".into()),
    }
}

/// `YYYY-MM-DD`, a real calendar date; read by hand because it runs on every evaluation.
pub(crate) fn parse_date(s: &str) -> Option<jiff::civil::Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i32> {
        b[r].iter().try_fold(0i32, |acc, c| c.is_ascii_digit().then(|| acc * 10 + i32::from(c - b'0')))
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    jiff::civil::Date::new(i16::try_from(y).ok()?, i8::try_from(m).ok()?, i8::try_from(d).ok()?).ok()
}

/// The pointers of the conditions that name an integration, a property or a segment that no
/// longer exists: such a condition is false whatever its operator.
pub fn stale_conditions(rule: &Rule, catalog: &Catalog) -> Vec<String> {
    rule.conditions()
        .into_iter()
        .filter_map(|n| match n {
            Node::Attribute(c) if is_stale(c, catalog) => Some(c.pointer.clone()),
            Node::Segment(s) if catalog.segment(&s.segment).is_none() => Some(s.pointer.clone()),
            _ => None,
        })
        .collect()
}

/// Stale: nothing the condition names exists now, or nothing that exists can hold it (a
/// property re-created with another type).
pub(crate) fn is_stale(c: &AttributeCondition, catalog: &Catalog) -> bool {
    !catalog.targets(c.integration.as_deref(), &c.property).iter().any(|(_, t)| fits(c, *t).is_ok())
}
