//! The rule tree as saved, and its parsing from JSON. Parsing checks everything that does not
//! depend on the account (shape, operators, operand shapes, limits, regular expressions);
//! `validate` checks the rest against the account's catalog.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::SegmentGuid;
use crate::exact;
use crate::integration::AttrType;

/// Groups nest at most this deep (the root group is depth 1).
pub const MAX_DEPTH: usize = 5;
/// Conditions (attribute and segment) in one rule.
pub const MAX_CONDITIONS: usize = 50;
/// Bytes of one value: a string's UTF-8, a number's text.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Members of an `in` / `not_in` list.
pub const MAX_IN_VALUES: usize = 1000;
/// Bytes of a regular expression.
pub const MAX_REGEX_BYTES: usize = 256;
/// Rule segments one system may have (SPEC's limit, enforced where segments are created).
pub const MAX_RULE_SEGMENTS: usize = 200;
/// Segment-in-segment hops from a rule (see docs/DECISIONS.md, "Rule segments: chain depth").
pub const MAX_CHAIN_DEPTH: usize = 3;

/// What is wrong with a rule, and where: `pointer` is the RFC 6901 JSON pointer into the
/// request body (`/rule/any/1/all/0`), `code` is stable, `message` is for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    pub pointer: String,
    pub code: ProblemCode,
    pub message: String,
}

impl RuleProblem {
    pub(crate) fn new(pointer: &str, code: ProblemCode, message: impl Into<String>) -> Self {
        Self { pointer: pointer.to_string(), code, message: message.into() }
    }
}

impl From<RuleProblem> for crate::Problem {
    fn from(p: RuleProblem) -> Self {
        crate::Problem::at(p.pointer, format!("{}: {}", p.code.as_str(), p.message))
    }
}

/// The stable codes of [`RuleProblem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// Not a group or a condition object.
    BadNode,
    UnknownField,
    EmptyGroup,
    TooDeep,
    TooManyConditions,
    UnknownOperator,
    /// `value` / `values` absent, of the wrong shape, or sent to an operator that takes none.
    BadOperand,
    ValueTooLarge,
    TooManyValues,
    BadRegex,
    BadDays,
    BadSegmentId,
    BadIgnoreCase,
    UnknownIntegration,
    UnknownProperty,
    OperatorNotForType,
    WrongValueType,
    UnknownSegment,
    SegmentCycle,
    ChainTooDeep,
    BadTimezone,
}

impl ProblemCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadNode => "bad_node",
            Self::UnknownField => "unknown_field",
            Self::EmptyGroup => "empty_group",
            Self::TooDeep => "too_deep",
            Self::TooManyConditions => "too_many_conditions",
            Self::UnknownOperator => "unknown_operator",
            Self::BadOperand => "bad_operand",
            Self::ValueTooLarge => "value_too_large",
            Self::TooManyValues => "too_many_values",
            Self::BadRegex => "bad_regex",
            Self::BadDays => "bad_days",
            Self::BadSegmentId => "bad_segment_id",
            Self::BadIgnoreCase => "bad_ignore_case",
            Self::UnknownIntegration => "unknown_integration",
            Self::UnknownProperty => "unknown_property",
            Self::OperatorNotForType => "operator_not_for_type",
            Self::WrongValueType => "wrong_value_type",
            Self::UnknownSegment => "unknown_segment",
            Self::SegmentCycle => "segment_cycle",
            Self::ChainTooDeep => "chain_too_deep",
            Self::BadTimezone => "bad_timezone",
        }
    }
}

/// A parsed rule: its tree, and the JSON it came from (what is stored and returned).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub root: Node,
    pub source: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Group(Group),
    Attribute(AttributeCondition),
    Segment(SegmentCondition),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    All,
    Any,
    None,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Any => "any",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub pointer: String,
    pub kind: GroupKind,
    pub children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttributeCondition {
    pub pointer: String,
    /// `None`: the property name in any integration of the account.
    pub integration: Option<String>,
    pub property: String,
    pub op: Op,
    pub operand: Operand,
    pub ignore_case: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    None,
    Value(Value),
    Values(Vec<Value>),
    Days(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentCondition {
    pub pointer: String,
    pub segment: SegmentGuid,
    /// `not_in`.
    pub negated: bool,
}

/// What an operator takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperandKind {
    None,
    One,
    List,
    Pair,
    Days,
}

macro_rules! ops {
    ($($variant:ident $name:literal $kind:ident [$($t:ident),*];)*) => {
        /// The operators of SPEC's table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op { $($variant),* }
        impl Op {
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $(Op::$variant => $name),* }
            }
            pub fn parse(s: &str) -> Option<Op> {
                match s { $($name => Some(Op::$variant),)* _ => None }
            }
            pub fn operand(self) -> OperandKind {
                match self { $(Op::$variant => OperandKind::$kind),* }
            }
            /// The property types that offer this operator.
            pub fn types(self) -> &'static [AttrType] {
                match self { $(Op::$variant => &[$(AttrType::$t),*]),* }
            }
        }
    };
}

ops! {
    Equals "equals" One [String, Number, Date];
    NotEquals "not_equals" One [String, Number];
    In "in" List [String, Number];
    NotIn "not_in" List [String, Number];
    Contains "contains" One [String];
    NotContains "not_contains" One [String];
    StartsWith "starts_with" One [String];
    EndsWith "ends_with" One [String];
    Matches "matches" One [String];
    NotMatches "not_matches" One [String];
    Lt "lt" One [Number];
    Lte "lte" One [Number];
    Gt "gt" One [Number];
    Gte "gte" One [Number];
    Between "between" Pair [Number, Date];
    Before "before" One [Date];
    After "after" One [Date];
    WithinLastDays "within_last_days" Days [Date];
    MoreThanDaysAgo "more_than_days_ago" Days [Date];
    WithinNextDays "within_next_days" Days [Date];
    MoreThanDaysAhead "more_than_days_ahead" Days [Date];
    IsTrue "is_true" None [Boolean];
    IsFalse "is_false" None [Boolean];
    IsSet "is_set" None [String, Number, Date, Boolean];
    IsNotSet "is_not_set" None [String, Number, Date, Boolean];
}

impl Op {
    /// The positive operator a negative one is the exact negation of (SPEC's "Semantics"), and
    /// whether `self` is that negation.
    pub fn positive(self) -> (Op, bool) {
        match self {
            Op::NotEquals => (Op::Equals, true),
            Op::NotIn => (Op::In, true),
            Op::NotContains => (Op::Contains, true),
            Op::NotMatches => (Op::Matches, true),
            Op::IsNotSet => (Op::IsSet, true),
            op => (op, false),
        }
    }

    pub fn takes_ignore_case(self) -> bool {
        self.types().contains(&AttrType::String) && self.operand() != OperandKind::None
    }
}

/// RFC 6901: `~` and `/` in a member name are escaped.
pub(crate) fn pointer_push(base: &str, token: &str) -> String {
    format!("{base}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// Parses a rule; `base` is the pointer of the rule in the body (`/rule`). Every problem is
/// reported.
pub fn parse(value: &Value, base: &str) -> Result<Rule, Vec<RuleProblem>> {
    let mut p = Parser { problems: Vec::new(), conditions: 0 };
    let root = p.node(value, base, 0);
    if p.conditions > MAX_CONDITIONS {
        p.problems.push(RuleProblem::new(
            base,
            ProblemCode::TooManyConditions,
            format!("a rule holds at most {MAX_CONDITIONS} conditions, this one {}", p.conditions),
        ));
    }
    match root {
        Some(root) if p.problems.is_empty() => Ok(Rule { root, source: value.clone() }),
        _ => Err(p.problems),
    }
}

struct Parser {
    problems: Vec<RuleProblem>,
    conditions: usize,
}

impl Parser {
    fn err(&mut self, pointer: &str, code: ProblemCode, message: impl Into<String>) {
        self.problems.push(RuleProblem::new(pointer, code, message));
    }

    fn node(&mut self, v: &Value, at: &str, depth: usize) -> Option<Node> {
        let Some(obj) = v.as_object() else {
            self.err(
                at,
                ProblemCode::BadNode,
                "a group {\"all\"|\"any\"|\"none\": [...]} or a condition object",
            );
            return None;
        };
        let groups: Vec<GroupKind> = [GroupKind::All, GroupKind::Any, GroupKind::None]
            .into_iter()
            .filter(|k| obj.contains_key(k.as_str()))
            .collect();
        match (groups.as_slice(), obj.contains_key("attribute"), obj.contains_key("segment")) {
            ([kind], false, false) => self.group(obj, *kind, at, depth + 1),
            ([], true, false) => {
                self.conditions += 1;
                self.attribute(obj, at).map(Node::Attribute)
            }
            ([], false, true) => {
                self.conditions += 1;
                self.segment(obj, at).map(Node::Segment)
            }
            _ => {
                self.err(
                    at,
                    ProblemCode::BadNode,
                    "exactly one of \"all\", \"any\", \"none\", \"attribute\" or \"segment\"",
                );
                None
            }
        }
    }

    fn group(&mut self, obj: &Map<String, Value>, kind: GroupKind, at: &str, depth: usize) -> Option<Node> {
        let key = kind.as_str();
        self.unknown_fields(obj, at, &[key]);
        if depth > MAX_DEPTH {
            self.err(at, ProblemCode::TooDeep, format!("groups nest at most {MAX_DEPTH} deep"));
            return None;
        }
        let here = pointer_push(at, key);
        let Some(list) = obj[key].as_array() else {
            self.err(&here, ProblemCode::BadNode, "a group holds a list of groups and conditions");
            return None;
        };
        if list.is_empty() {
            self.err(&here, ProblemCode::EmptyGroup, "a group holds at least one group or condition");
            return None;
        }
        let before = self.problems.len();
        let children: Vec<Node> = list
            .iter()
            .enumerate()
            .filter_map(|(i, c)| self.node(c, &format!("{here}/{i}"), depth))
            .collect();
        (self.problems.len() == before)
            .then(|| Node::Group(Group { pointer: at.to_string(), kind, children }))
    }

    fn unknown_fields(&mut self, obj: &Map<String, Value>, at: &str, known: &[&str]) {
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            self.err(&pointer_push(at, key), ProblemCode::UnknownField, "unknown field");
        }
    }

    fn segment(&mut self, obj: &Map<String, Value>, at: &str) -> Option<SegmentCondition> {
        self.unknown_fields(obj, at, &["segment", "op"]);
        let segment = match obj["segment"].as_str().map(SegmentGuid::parse) {
            Some(Ok(g)) => Some(g),
            _ => {
                self.err(
                    &pointer_push(at, "segment"),
                    ProblemCode::BadSegmentId,
                    "a segment GUID (hyphenated)",
                );
                None
            }
        };
        let negated = match obj.get("op").and_then(Value::as_str) {
            Some("in") => Some(false),
            Some("not_in") => Some(true),
            _ => {
                self.err(
                    &pointer_push(at, "op"),
                    ProblemCode::UnknownOperator,
                    "a segment condition's op is \"in\" or \"not_in\"",
                );
                None
            }
        };
        Some(SegmentCondition { pointer: at.to_string(), segment: segment?, negated: negated? })
    }

    fn attribute(&mut self, obj: &Map<String, Value>, at: &str) -> Option<AttributeCondition> {
        self.unknown_fields(obj, at, &["attribute", "op", "value", "values", "ignoreCase"]);
        let before = self.problems.len();
        let attr_at = pointer_push(at, "attribute");
        let (integration, property) = match obj["attribute"].as_object() {
            Some(a) => {
                self.unknown_fields(a, &attr_at, &["integration", "property"]);
                let integration = match a.get("integration") {
                    None => None,
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    Some(_) => {
                        self.err(
                            &pointer_push(&attr_at, "integration"),
                            ProblemCode::BadNode,
                            "an integration id (a string)",
                        );
                        None
                    }
                };
                let property = match a.get("property") {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    _ => {
                        self.err(
                            &pointer_push(&attr_at, "property"),
                            ProblemCode::BadNode,
                            "required: the property's attribute name (a string)",
                        );
                        None
                    }
                };
                (integration, property)
            }
            None => {
                self.err(&attr_at, ProblemCode::BadNode, "an object {\"integration\"?, \"property\"}");
                (None, None)
            }
        };
        let op_at = pointer_push(at, "op");
        let op = match obj.get("op").and_then(Value::as_str) {
            Some(s) => Op::parse(s).or_else(|| {
                self.err(&op_at, ProblemCode::UnknownOperator, format!("unknown operator '{s}'"));
                None
            }),
            None => {
                self.err(&op_at, ProblemCode::UnknownOperator, "required: an operator name");
                None
            }
        };
        let ignore_case = match obj.get("ignoreCase") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) if op.is_none_or(Op::takes_ignore_case) => true,
            Some(Value::Bool(true)) => {
                self.err(
                    &pointer_push(at, "ignoreCase"),
                    ProblemCode::BadIgnoreCase,
                    "ignoreCase applies only to the operators of String values",
                );
                false
            }
            Some(_) => {
                self.err(&pointer_push(at, "ignoreCase"), ProblemCode::BadIgnoreCase, "true or false");
                false
            }
        };
        let operand = op.and_then(|op| self.operand(obj, op, at, ignore_case));
        if self.problems.len() != before {
            return None;
        }
        Some(AttributeCondition {
            pointer: at.to_string(),
            integration,
            property: property?,
            op: op?,
            operand: operand?,
            ignore_case,
        })
    }

    fn operand(&mut self, obj: &Map<String, Value>, op: Op, at: &str, ignore_case: bool) -> Option<Operand> {
        let kind = op.operand();
        let (wanted, other) = match kind {
            OperandKind::None => ("", ""),
            OperandKind::One | OperandKind::Days => ("value", "values"),
            OperandKind::List | OperandKind::Pair => ("values", "value"),
        };
        for key in ["value", "values"] {
            if obj.contains_key(key) && (kind == OperandKind::None || key == other) {
                let msg = match kind {
                    OperandKind::None => format!("'{}' takes no value", op.as_str()),
                    _ => format!("'{}' takes \"{wanted}\", not \"{other}\"", op.as_str()),
                };
                self.err(&pointer_push(at, key), ProblemCode::BadOperand, msg);
                return None;
            }
        }
        if kind == OperandKind::None {
            return Some(Operand::None);
        }
        let here = pointer_push(at, wanted);
        let Some(v) = obj.get(wanted) else {
            self.err(at, ProblemCode::BadOperand, format!("'{}' needs \"{wanted}\"", op.as_str()));
            return None;
        };
        match kind {
            OperandKind::Days => match exact::number_text(v) {
                Some(t) if t.bytes().all(|c| c.is_ascii_digit()) => match t.parse::<u64>() {
                    Ok(n) => Some(Operand::Days(n)),
                    Err(_) => {
                        self.err(&here, ProblemCode::BadDays, "too many days");
                        None
                    }
                },
                _ => {
                    self.err(&here, ProblemCode::BadDays, "a whole number of days, 0 or more");
                    None
                }
            },
            OperandKind::One => {
                self.scalar(v, &here)?;
                if matches!(op, Op::Matches | Op::NotMatches) {
                    self.regex(v, &here, ignore_case)?;
                }
                Some(Operand::Value(v.clone()))
            }
            _ => {
                let Some(list) = v.as_array() else {
                    self.err(&here, ProblemCode::BadOperand, "a list of values");
                    return None;
                };
                if kind == OperandKind::Pair && list.len() != 2 {
                    self.err(&here, ProblemCode::BadOperand, "between takes two values: [low, high]");
                    return None;
                }
                if list.is_empty() {
                    self.err(&here, ProblemCode::BadOperand, "at least one value");
                    return None;
                }
                if list.len() > MAX_IN_VALUES {
                    self.err(
                        &here,
                        ProblemCode::TooManyValues,
                        format!("at most {MAX_IN_VALUES} values, got {}", list.len()),
                    );
                    return None;
                }
                let before = self.problems.len();
                for (i, item) in list.iter().enumerate() {
                    self.scalar(item, &format!("{here}/{i}"));
                }
                (self.problems.len() == before).then(|| Operand::Values(list.clone()))
            }
        }
    }

    /// A string or a number (either form) of at most [`MAX_VALUE_BYTES`].
    fn scalar(&mut self, v: &Value, at: &str) -> Option<()> {
        let len = match (v, exact::number_text(v)) {
            (Value::String(s), _) => s.len(),
            (_, Some(t)) => t.len(),
            _ => {
                self.err(at, ProblemCode::BadOperand, "a string or a number");
                return None;
            }
        };
        if len > MAX_VALUE_BYTES {
            self.err(
                at,
                ProblemCode::ValueTooLarge,
                format!("a value holds at most {MAX_VALUE_BYTES} bytes"),
            );
            return None;
        }
        Some(())
    }

    /// Built here as it will be compiled (case-insensitive automata are larger), so a saved
    /// regex always compiles later.
    fn regex(&mut self, v: &Value, at: &str, ignore_case: bool) -> Option<()> {
        let Some(pattern) = v.as_str() else {
            self.err(at, ProblemCode::BadRegex, "a regular expression (a string)");
            return None;
        };
        if pattern.len() > MAX_REGEX_BYTES {
            self.err(
                at,
                ProblemCode::BadRegex,
                format!("a regular expression holds at most {MAX_REGEX_BYTES} bytes"),
            );
            return None;
        }
        match super::compile::build_regex(pattern, ignore_case) {
            Ok(_) => Some(()),
            Err(e) => {
                self.err(at, ProblemCode::BadRegex, e);
                None
            }
        }
    }
}

impl Rule {
    /// Every condition (the leaves), in document order.
    pub fn conditions(&self) -> Vec<&Node> {
        fn walk<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
            match n {
                Node::Group(g) => g.children.iter().for_each(|c| walk(c, out)),
                leaf => out.push(leaf),
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// The segments this rule's segment conditions name.
    pub fn segment_refs(&self) -> Vec<SegmentGuid> {
        self.conditions()
            .into_iter()
            .filter_map(|n| match n {
                Node::Segment(s) => Some(s.segment),
                _ => None,
            })
            .collect()
    }
}
