//! Rule segments' engine (SPEC, "Rule segments"): pure, no I/O. The HTTP layer reads what the
//! engine needs and calls:
//!
//! - [`Catalog`]: the account's integrations (id → attribute name → type) and the system's
//!   segments (static, or rule with its timezone), built from what the caller read.
//! - [`parse_and_validate`]`(rule_json, &catalog, own_guid)` → a [`Rule`], or every
//!   [`RuleProblem`] (`pointer` such as `/rule/any/1/all/0`, a stable `code`, a `message`),
//!   checked when a rule is saved or dry-run. [`parse_timezone`] checks `timezone` (`/timezone`).
//! - [`RuleSet::compile`]`(&catalog)`: every rule segment compiled once (regexes built, values
//!   typed, strings folded, names resolved); [`RuleSet::compile_rule`] compiles one unsaved
//!   rule against the set for a dry run.
//! - [`RuleSet::evaluate`]`(user, now)`: the rule segments a user is in;
//!   [`RuleSet::evaluate_explained`] and [`RuleSet::evaluate_rule`] add, per condition, its
//!   pointer, outcome (matched, failed, missing, stale) and the value it saw. One `now` serves
//!   the whole call; each rule's timezone turns it into that rule's "today".
//! - [`stale_conditions`]`(&rule, &catalog)`: pointers of conditions on what was deleted since
//!   the rule was saved (false whatever their operator).
//! - [`to_jsonlogic`]`(&rule, &catalog)`: the rule for OpenFeature flagd, and what it cannot say.
//!
//! Choices SPEC leaves open are in docs/DECISIONS.md under "Rule segments".

mod compile;
mod eval;
mod jsonlogic;
mod model;
mod validate;

pub use compile::{CompiledRule, RuleSet};
pub use eval::{Attributes, ConditionExplain, Outcome, RuleOutcome, SegmentOutcome, UserFacts};
pub use jsonlogic::{JsonLogicExport, Unsupported, to_jsonlogic};
pub use model::{
    AttributeCondition, Group, GroupKind, MAX_CHAIN_DEPTH, MAX_CONDITIONS, MAX_DEPTH, MAX_IN_VALUES,
    MAX_REGEX_BYTES, MAX_RULE_SEGMENTS, MAX_VALUE_BYTES, Node, Op, Operand, OperandKind, ProblemCode, Rule,
    RuleProblem, SegmentCondition, parse,
};
pub use validate::{Catalog, SegmentEntry, stale_conditions, validate};

use serde_json::Value;

use crate::SegmentGuid;

/// Where the rule sits in a request body; every pointer starts with it.
pub const RULE_POINTER: &str = "/rule";

/// Parses the body's `rule` and judges it against the catalog. `own` is the segment being
/// replaced (a `PUT`), so that naming itself, directly or not, is a cycle.
pub fn parse_and_validate(
    rule: &Value,
    catalog: &Catalog,
    own: Option<SegmentGuid>,
) -> Result<Rule, Vec<RuleProblem>> {
    let parsed = parse(rule, RULE_POINTER)?;
    let problems = validate(&parsed, catalog, own);
    if problems.is_empty() { Ok(parsed) } else { Err(problems) }
}

/// The body's `timezone`: an IANA name from the bundled database (a Lambda has no
/// /usr/share/zoneinfo); absent means UTC.
pub fn parse_timezone(name: Option<&str>) -> Result<jiff::tz::TimeZone, RuleProblem> {
    match name {
        None => Ok(jiff::tz::TimeZone::UTC),
        Some(n) => jiff::tz::TimeZone::get(n).map_err(|_| {
            RuleProblem::new(
                "/timezone",
                ProblemCode::BadTimezone,
                format!("'{n}' is not an IANA timezone name"),
            )
        }),
    }
}

#[cfg(test)]
mod tests;
