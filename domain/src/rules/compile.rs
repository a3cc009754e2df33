//! Rules compiled once for many evaluations: regular expressions built, values parsed to
//! typed values, `ignoreCase` strings folded, attribute names resolved to the integrations
//! that hold them, and segment conditions resolved to static segments or to other compiled
//! rules.

use std::collections::{HashMap, HashSet};

use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::model::{AttributeCondition, GroupKind, MAX_REGEX_BYTES, Node, Op, Operand, Rule};
use super::validate::{Catalog, SegmentEntry, Typed, fits, value_of_type};
use crate::SegmentGuid;
use crate::exact::Decimal;
use crate::integration::AttrType;

/// Compiled regexes are bounded so that a 256-byte pattern cannot build a huge automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(crate) fn build_regex(pattern: &str, ignore_case: bool) -> Result<regex::Regex, String> {
    if pattern.len() > MAX_REGEX_BYTES {
        return Err(format!("a regular expression holds at most {MAX_REGEX_BYTES} bytes"));
    }
    regex::RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::Syntax(s) => {
                format!("not a valid regular expression: {}", s.lines().last().unwrap_or(""))
            }
            regex::Error::CompiledTooBig(_) => "the regular expression compiles too large".into(),
            other => other.to_string(),
        })
}

/// Unicode full case folding (CaseFolding.txt statuses C and F: "ß" folds to "ss").
pub(crate) fn fold(s: &str) -> String {
    caseless::default_case_fold_str(s)
}

/// One rule ready to evaluate, with the timezone that decides its "today".
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub(crate) root: CNode,
    pub(crate) conditions: Vec<CCondition>,
    pub(crate) timezone: TimeZone,
    pub(crate) needs_today: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum CNode {
    All(Box<[CNode]>),
    Any(Box<[CNode]>),
    None(Box<[CNode]>),
    Leaf(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct CCondition {
    pub pointer: String,
    pub kind: CKind,
}

#[derive(Debug, Clone)]
pub(crate) enum CKind {
    /// Holds (before `negated`) when some target's value passes its matcher.
    Attribute {
        targets: Box<[Target]>,
        negated: bool,
    },
    Segment {
        target: SegRef,
        negated: bool,
    },
    /// Names what no longer exists: false whatever the operator.
    Stale,
}

#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Where the evaluator keeps this attribute's value for the call (see [`RuleSet`]);
    /// `None` for a pair no rule of the set names (a dry run's), looked up by name.
    pub slot: Option<u32>,
    pub integration: Box<str>,
    pub property: Box<str>,
    pub matcher: Matcher,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum SegRef {
    Static(SegmentGuid),
    /// Index into the [`RuleSet`].
    Rule(usize),
}

/// Orderings accepted by a comparison, as a mask of `Less`, `Equal`, `Greater`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accept(u8);

impl Accept {
    const LESS: u8 = 1;
    const EQUAL: u8 = 2;
    const GREATER: u8 = 4;

    pub fn holds(self, o: std::cmp::Ordering) -> bool {
        let bit = match o {
            std::cmp::Ordering::Less => Self::LESS,
            std::cmp::Ordering::Equal => Self::EQUAL,
            std::cmp::Ordering::Greater => Self::GREATER,
        };
        self.0 & bit != 0
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Window {
    /// `[today - n, today]`
    LastDays,
    /// `< today - n`
    MoreThanAgo,
    /// `[today, today + n]`
    NextDays,
    /// `> today + n`
    MoreThanAhead,
}

/// The positive test of a condition on one stored value.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    StrEq {
        value: Box<str>,
        fold: bool,
    },
    StrIn {
        values: HashSet<Box<str>>,
        fold: bool,
    },
    Contains {
        value: Box<str>,
        fold: bool,
    },
    StartsWith {
        value: Box<str>,
        fold: bool,
    },
    EndsWith {
        value: Box<str>,
        fold: bool,
    },
    Regex(regex::Regex),
    NumCmp(Decimal, Accept),
    NumBetween(Decimal, Decimal),
    /// Sorted.
    NumIn(Box<[Decimal]>),
    DateCmp(Date, Accept),
    DateBetween(Date, Date),
    DateWindow(Window, u64),
    IsTrue,
    IsFalse,
    IsSet,
}

impl Matcher {
    /// The matcher of a condition's positive operator for a property of type `t`; `None` when
    /// the condition does not fit the type.
    fn build(c: &AttributeCondition, t: AttrType) -> Option<Matcher> {
        fits(c, t).ok()?;
        let (op, _) = c.op.positive();
        let one = || match &c.operand {
            Operand::Value(v) => value_of_type(v, t).ok(),
            _ => None,
        };
        let list = || -> Option<Vec<Typed>> {
            match &c.operand {
                Operand::Values(vs) => vs.iter().map(|v| value_of_type(v, t).ok()).collect(),
                _ => None,
            }
        };
        let text = |typed: Typed| match typed {
            Typed::String(s) if c.ignore_case => Some(fold(&s).into_boxed_str()),
            Typed::String(s) => Some(s.into_boxed_str()),
            _ => None,
        };
        let fold = c.ignore_case;
        let accept = |mask| Some(Accept(mask));
        let cmp_mask = match op {
            Op::Equals => accept(Accept::EQUAL),
            Op::Lt | Op::Before => accept(Accept::LESS),
            Op::Lte => accept(Accept::LESS | Accept::EQUAL),
            Op::Gt | Op::After => accept(Accept::GREATER),
            Op::Gte => accept(Accept::GREATER | Accept::EQUAL),
            _ => None,
        };
        Some(match (op, t) {
            (Op::Equals, AttrType::String) => Matcher::StrEq { value: text(one()?)?, fold },
            (Op::In, AttrType::String) => {
                Matcher::StrIn { values: list()?.into_iter().map(text).collect::<Option<_>>()?, fold }
            }
            (Op::Contains, _) => Matcher::Contains { value: text(one()?)?, fold },
            (Op::StartsWith, _) => Matcher::StartsWith { value: text(one()?)?, fold },
            (Op::EndsWith, _) => Matcher::EndsWith { value: text(one()?)?, fold },
            (Op::Matches, _) => match one()? {
                Typed::String(p) => Matcher::Regex(build_regex(&p, c.ignore_case).ok()?),
                _ => return None,
            },
            (Op::In, AttrType::Number) => {
                let mut ds: Vec<Decimal> = list()?
                    .into_iter()
                    .map(|v| match v {
                        Typed::Number(d) => Some(d),
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                ds.sort();
                Matcher::NumIn(ds.into_boxed_slice())
            }
            (Op::Between, _) => match list()?.as_slice() {
                [Typed::Number(lo), Typed::Number(hi)] => Matcher::NumBetween(*lo, *hi),
                [Typed::Date(lo), Typed::Date(hi)] => Matcher::DateBetween(*lo, *hi),
                _ => return None,
            },
            (Op::WithinLastDays | Op::MoreThanDaysAgo | Op::WithinNextDays | Op::MoreThanDaysAhead, _) => {
                let Operand::Days(n) = c.operand else { return None };
                let w = match op {
                    Op::WithinLastDays => Window::LastDays,
                    Op::MoreThanDaysAgo => Window::MoreThanAgo,
                    Op::WithinNextDays => Window::NextDays,
                    _ => Window::MoreThanAhead,
                };
                Matcher::DateWindow(w, n)
            }
            (Op::IsTrue, _) => Matcher::IsTrue,
            (Op::IsFalse, _) => Matcher::IsFalse,
            (Op::IsSet, _) => Matcher::IsSet,
            (_, _) => match (one()?, cmp_mask?) {
                (Typed::Number(d), mask) => Matcher::NumCmp(d, mask),
                (Typed::Date(d), mask) => Matcher::DateCmp(d, mask),
                _ => return None,
            },
        })
    }

    pub fn needs_today(&self) -> bool {
        matches!(self, Matcher::DateWindow(..))
    }
}

/// Every rule segment of a system compiled, with the static segments they may name. Built once
/// per loaded catalog; evaluated for many users.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub(crate) segments: Vec<(SegmentGuid, CompiledRule)>,
    pub(crate) index: HashMap<SegmentGuid, usize>,
    pub(crate) statics: HashSet<SegmentGuid>,
    /// Every (integration, property) a rule of the set reads, numbered: an evaluation reads
    /// the user's attributes into these slots once, so conditions neither hash names nor
    /// parse stored numbers and dates again.
    pub(crate) slots: HashMap<Box<str>, HashMap<Box<str>, u32>>,
    pub(crate) slot_count: u32,
}

impl RuleSet {
    /// Compiles every rule segment of the catalog. Rules were validated when saved; what has
    /// gone since (an integration, a property, a segment) compiles to a stale condition.
    pub fn compile(catalog: &Catalog) -> RuleSet {
        let mut set = RuleSet::default();
        for (guid, entry) in catalog.segments() {
            match entry {
                SegmentEntry::Static => {
                    set.statics.insert(guid);
                }
                SegmentEntry::Rule(..) => {
                    set.index.insert(guid, set.index.len());
                }
            }
        }
        for (_, entry) in catalog.segments() {
            if let SegmentEntry::Rule(rule, _) = entry {
                set.intern(catalog, rule);
            }
        }
        let mut segments = Vec::with_capacity(set.index.len());
        for (guid, entry) in catalog.segments() {
            if let SegmentEntry::Rule(rule, tz) = entry {
                segments.push((guid, set.compile_rule(catalog, rule, tz.clone())));
            }
        }
        set.segments = segments;
        set
    }

    fn intern(&mut self, catalog: &Catalog, rule: &Rule) {
        for node in rule.conditions() {
            let Node::Attribute(c) = node else { continue };
            for (id, _) in catalog.targets(c.integration.as_deref(), &c.property) {
                let names = self.slots.entry(id.into()).or_default();
                if !names.contains_key(c.property.as_str()) {
                    names.insert(c.property.as_str().into(), self.slot_count);
                    self.slot_count += 1;
                }
            }
        }
    }

    /// Compiles one rule against this set (a dry run's unsaved rule, whose segment conditions
    /// name this set's segments).
    pub fn compile_rule(&self, catalog: &Catalog, rule: &Rule, timezone: TimeZone) -> CompiledRule {
        let mut conditions = Vec::new();
        let root = self.node(catalog, &rule.root, &mut conditions);
        let needs_today = conditions.iter().any(|c: &CCondition| match &c.kind {
            CKind::Attribute { targets, .. } => targets.iter().any(|t| t.matcher.needs_today()),
            _ => false,
        });
        CompiledRule { root, conditions, timezone, needs_today }
    }

    fn node(&self, catalog: &Catalog, n: &Node, out: &mut Vec<CCondition>) -> CNode {
        match n {
            Node::Group(g) => {
                let children: Box<[CNode]> = g.children.iter().map(|c| self.node(catalog, c, out)).collect();
                match g.kind {
                    GroupKind::All => CNode::All(children),
                    GroupKind::Any => CNode::Any(children),
                    GroupKind::None => CNode::None(children),
                }
            }
            Node::Attribute(c) => {
                let targets: Box<[Target]> = catalog
                    .targets(c.integration.as_deref(), &c.property)
                    .into_iter()
                    .filter_map(|(id, t)| {
                        Some(Target {
                            slot: self.slots.get(id).and_then(|m| m.get(c.property.as_str())).copied(),
                            integration: id.into(),
                            property: c.property.as_str().into(),
                            matcher: Matcher::build(c, t)?,
                        })
                    })
                    .collect();
                let kind = if targets.is_empty() {
                    CKind::Stale
                } else {
                    CKind::Attribute { targets, negated: c.op.positive().1 }
                };
                out.push(CCondition { pointer: c.pointer.clone(), kind });
                CNode::Leaf(out.len() - 1)
            }
            Node::Segment(s) => {
                let target = match self.index.get(&s.segment) {
                    Some(&i) => Some(SegRef::Rule(i)),
                    None => self.statics.contains(&s.segment).then_some(SegRef::Static(s.segment)),
                };
                let kind = match target {
                    Some(target) => CKind::Segment { target, negated: s.negated },
                    None => CKind::Stale,
                };
                out.push(CCondition { pointer: s.pointer.clone(), kind });
                CNode::Leaf(out.len() - 1)
            }
        }
    }

    /// The rule segments, in catalog order.
    pub fn segment_guids(&self) -> impl Iterator<Item = SegmentGuid> + '_ {
        self.segments.iter().map(|(g, _)| *g)
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}
