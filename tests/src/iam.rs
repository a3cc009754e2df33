//! Each function's DynamoDB requests, checked against its role in `template.yaml` as AWS IAM
//! would: the action, the table (or index) and, where a statement has one, the
//! `dynamodb:LeadingKeys` condition (`ForAllValues:StringLike`). Every test that serves a
//! function through [`crate::Stack::served`] runs under that function's policy, so a code path
//! that needs more than its role grants fails its test here instead of on AWS, and a policy is
//! exactly as wide as the tests show it must be (docs/SECURITY.md).

use std::sync::{Arc, OnceLock};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use store::Tables;
use store::schema;

/// One statement on a DynamoDB table of a function's role: an `Allow`, or a `Deny` of writes
/// that name any of some attributes (`ForAnyValue:StringEquals` on `dynamodb:Attributes`).
#[derive(Debug, Clone)]
struct Statement {
    deny: bool,
    /// A `Deny`'s attributes.
    attributes: Vec<String>,
    actions: Vec<String>,
    /// (table logical id, index name) pairs it grants.
    resources: Vec<(String, Option<String>)>,
    /// `dynamodb:LeadingKeys` patterns, if the statement is conditioned on them.
    leading_keys: Option<Vec<String>>,
}

/// A function's role, by its binary name (`Metadata.BuildProperties.Binary` in the template).
#[derive(Debug, Clone)]
pub struct Policy {
    function: String,
    statements: Vec<Statement>,
}

fn template() -> &'static Yaml {
    static T: OnceLock<Yaml> = OnceLock::new();
    T.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("template.yaml")).expect("valid YAML")
    })
}

fn strings(v: &Yaml) -> Vec<String> {
    match v {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Sequence(items) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// `!GetAtt X.Arn` → (X, None); `!Sub "${X.Arn}/index/I"` → (X, Some(I)).
fn resource(v: &Yaml) -> Option<(String, Option<String>)> {
    let Yaml::Tagged(tagged) = v else { return None };
    let text = tagged.value.as_str()?;
    match tagged.tag.to_string().as_str() {
        "!GetAtt" => Some((text.strip_suffix(".Arn")?.to_string(), None)),
        "!Sub" => {
            let rest = text.strip_prefix("${")?;
            let (logical, after) = rest.split_once(".Arn}")?;
            let index = after.strip_prefix("/index/").map(str::to_string);
            Some((logical.to_string(), index))
        }
        _ => None,
    }
}

impl Policy {
    /// The role of the function built as `binary`.
    pub fn of(binary: &str) -> Self {
        let resources = template()["Resources"].as_mapping().expect("Resources");
        let function = resources
            .values()
            .find(|r| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
            .unwrap_or_else(|| panic!("template.yaml has no function built as {binary}"));
        let mut statements = Vec::new();
        for policy in function["Properties"]["Policies"].as_sequence().into_iter().flatten() {
            for s in policy["Statement"].as_sequence().into_iter().flatten() {
                let deny = match s["Effect"].as_str() {
                    Some("Allow") => false,
                    Some("Deny") => true,
                    _ => continue,
                };
                let resources: Vec<_> = match &s["Resource"] {
                    Yaml::Sequence(items) => items.iter().filter_map(resource).collect(),
                    one => resource(one).into_iter().collect(),
                };
                let condition = &s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
                statements.push(Statement {
                    deny,
                    attributes: strings(&s["Condition"]["ForAnyValue:StringEquals"]["dynamodb:Attributes"]),
                    actions: strings(&s["Action"]),
                    resources,
                    leading_keys: (!condition.is_null()).then(|| strings(condition)),
                });
            }
        }
        Self { function: binary.to_string(), statements }
    }

    /// Why the role refuses `action` on `table` (`index`) for partition keys `keys`, naming
    /// the top-level attributes `attributes`, if it does.
    fn refuses(
        &self,
        action: &str,
        table: &str,
        index: Option<&str>,
        keys: &[String],
        attributes: &[String],
    ) -> Option<String> {
        let on = |s: &Statement| {
            s.actions.iter().any(|a| a == &format!("dynamodb:{action}") || a == "dynamodb:*")
                && s.resources.iter().any(|(t, i)| t == table && i.as_deref() == index)
        };
        if let Some(s) = self
            .statements
            .iter()
            .find(|s| s.deny && on(s) && attributes.iter().any(|a| s.attributes.contains(a)))
        {
            return Some(format!(
                "IAM: the {} role is denied dynamodb:{action} on {table} naming {:?}",
                self.function, s.attributes
            ));
        }
        let allowed = self.statements.iter().filter(|s| !s.deny).any(|s| {
            s.actions.iter().any(|a| a == &format!("dynamodb:{action}") || a == "dynamodb:*")
                && s.resources.iter().any(|(t, i)| t == table && i.as_deref() == index)
                // A key this check could not read counts as refused: a LeadingKeys condition is
                // never passed by having nothing to test.
                && s.leading_keys.as_ref().is_none_or(|patterns| {
                    !keys.is_empty() && keys.iter().all(|k| patterns.iter().any(|p| like(p, k)))
                })
        });
        (!allowed).then(|| {
            let on = index.map_or(table.to_string(), |i| format!("{table}/index/{i}"));
            format!(
                "IAM: the {} role may not dynamodb:{action} on {on} with leading keys {keys:?}",
                self.function
            )
        })
    }
}

type Check = (String, String, Option<String>, Vec<String>, Vec<String>);

/// The top-level attribute names of an item.
fn item_attributes(item: &Json) -> Vec<String> {
    item.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// The top-level attribute names an `UpdateItem` (or a transaction's `Update`) writes: the
/// paths of its update expression, `#names` resolved.
fn update_attributes(update: &Json) -> Vec<String> {
    let expr = update["UpdateExpression"].as_str().unwrap_or("");
    let names = &update["ExpressionAttributeNames"];
    let mut out = Vec::new();
    for token in expr.split(|c: char| !(c.is_alphanumeric() || c == '#' || c == ':' || c == '_' || c == '.'))
    {
        let top = token.split(['.', '[']).next().unwrap_or("");
        if top.is_empty() || top.starts_with(':') || top.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        if ["SET", "ADD", "REMOVE", "DELETE", "if_not_exists", "list_append"].contains(&top) {
            continue;
        }
        let name = if top.starts_with('#') {
            names[top].as_str().unwrap_or(top).to_string()
        } else {
            top.to_string()
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// IAM's `StringLike`: `*` matches any run of characters, `?` one character.
fn like(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| go(rest, &v[i..])),
            Some(('?', rest)) => !v.is_empty() && go(rest, &v[1..]),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    go(&pattern.chars().collect::<Vec<_>>(), &value.chars().collect::<Vec<_>>())
}

/// An interceptor refusing every request the function's role would not allow.
#[derive(Debug, Clone)]
pub struct PolicyCheck {
    policy: Arc<Policy>,
    tables: Tables,
}

impl PolicyCheck {
    pub fn new(binary: &str, tables: Tables) -> Self {
        Self { policy: Arc::new(Policy::of(binary)), tables }
    }

    fn logical(&self, physical: &str) -> String {
        let t = &self.tables;
        let def =
            [(&t.config, &schema::CONFIG), (&t.keys, &schema::KEYS), (&t.end_users, &schema::END_USERS)]
                .into_iter()
                .chain([(&t.segments, &schema::SEGMENTS)])
                .find(|(name, _)| name.as_str() == physical);
        def.map_or_else(|| format!("unknown table {physical}"), |(_, d)| d.logical_id.to_string())
    }

    /// (action, table logical id, index, partition keys, attributes written) that IAM
    /// evaluates for a request.
    fn checks(&self, op: &str, req: &Json) -> Vec<Check> {
        let checks = self.key_checks(op, req);
        let mut written: Vec<Vec<String>> = Vec::new();
        match op {
            "PutItem" => written.push(item_attributes(&req["Item"])),
            "UpdateItem" => written.push(update_attributes(req)),
            "BatchWriteItem" => {
                let puts = req["RequestItems"].as_object().into_iter().flatten().flat_map(|(_, w)| {
                    w.as_array().into_iter().flatten().map(|w| item_attributes(&w["PutRequest"]["Item"]))
                });
                written.push(puts.flatten().collect());
            }
            "TransactWriteItems" => {
                for item in req["TransactItems"].as_array().into_iter().flatten() {
                    let attrs = if item["Put"].is_object() {
                        item_attributes(&item["Put"]["Item"])
                    } else if item["Update"].is_object() {
                        update_attributes(&item["Update"])
                    } else {
                        Vec::new()
                    };
                    // The transaction action and the item's own action, each with its attributes.
                    written.push(attrs.clone());
                    written.push(attrs);
                }
            }
            _ => {}
        }
        checks
            .into_iter()
            .enumerate()
            .map(|(i, (action, table, index, keys))| {
                let attrs = if op == "BatchWriteItem" { written.first() } else { written.get(i) };
                (action, table, index, keys, attrs.cloned().unwrap_or_default())
            })
            .collect()
    }

    /// (action, table logical id, index, partition keys) that IAM evaluates for a request.
    fn key_checks(&self, op: &str, req: &Json) -> Vec<(String, String, Option<String>, Vec<String>)> {
        let pk = |item: &Json| item["pk"]["S"].as_str().map(str::to_string).into_iter().collect::<Vec<_>>();
        let table = |r: &Json| self.logical(r["TableName"].as_str().unwrap_or(""));
        match op {
            "GetItem" | "DeleteItem" | "UpdateItem" => vec![(op.into(), table(req), None, pk(&req["Key"]))],
            "PutItem" => vec![(op.into(), table(req), None, pk(&req["Item"]))],
            "Query" => {
                let index = req["IndexName"].as_str().map(str::to_string);
                let expr = req["KeyConditionExpression"].as_str().unwrap_or("");
                // `<hash attribute> = :name` comes first in every key condition the store writes.
                let name = expr.split('=').nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("");
                let key = req["ExpressionAttributeValues"][name]["S"].as_str().map(str::to_string);
                vec![(op.into(), table(req), index, key.into_iter().collect())]
            }
            "Scan" => {
                vec![(op.into(), table(req), req["IndexName"].as_str().map(str::to_string), Vec::new())]
            }
            "BatchGetItem" => req["RequestItems"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(t, r)| {
                    let keys = r["Keys"].as_array().into_iter().flatten().flat_map(pk).collect();
                    (op.to_string(), self.logical(t), None, keys)
                })
                .collect(),
            "BatchWriteItem" => req["RequestItems"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(t, writes)| {
                    let keys = writes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|w| {
                            let item = if w["PutRequest"].is_object() {
                                &w["PutRequest"]["Item"]
                            } else {
                                &w["DeleteRequest"]["Key"]
                            };
                            pk(item)
                        })
                        .collect();
                    (op.to_string(), self.logical(t), None, keys)
                })
                .collect(),
            // A transaction needs the transaction action and each item's own action.
            "TransactWriteItems" | "TransactGetItems" => {
                let mut out = Vec::new();
                for item in req["TransactItems"].as_array().into_iter().flatten() {
                    for (kind, action, key) in [
                        ("Put", "PutItem", "Item"),
                        ("Update", "UpdateItem", "Key"),
                        ("Delete", "DeleteItem", "Key"),
                        ("ConditionCheck", "ConditionCheckItem", "Key"),
                        ("Get", "GetItem", "Key"),
                    ] {
                        let part = &item[kind];
                        if part.is_object() {
                            let keys = pk(&part[key]);
                            out.push((op.to_string(), table(part), None, keys.clone()));
                            out.push((action.to_string(), table(part), None, keys));
                        }
                    }
                }
                out
            }
            // Table management and anything else: the roles grant none of it.
            other => vec![(other.to_string(), table(req), None, Vec::new())],
        }
    }
}

impl Intercept for PolicyCheck {
    fn name(&self) -> &'static str {
        "PolicyCheck"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = crate::operation_name(cfg);
        let body = context.request().body().bytes().unwrap_or(b"{}");
        let req: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
        for (action, table, index, keys, attributes) in self.checks(&op, &req) {
            if let Some(why) = self.policy.refuses(&action, &table, index.as_deref(), &keys, &attributes) {
                // Printed as well: the function turns the error into a 5xx, which hides it.
                eprintln!("{why}");
                return Err(why.into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_like_matches_as_iam_does() {
        assert!(like("RATE#*", "RATE#acme#0"));
        assert!(like("JWKS", "JWKS"));
        assert!(!like("JWKS", "JWKS#x"));
        assert!(!like("ACCOUNT#*", "CLIENT#1"));
        assert!(like("A?C", "ABC") && !like("A?C", "AC"));
    }

    /// The config and keys tables hold every tenant's clients, limits and integrations: no
    /// role reads or writes them but by the key prefixes it needs.
    #[test]
    fn every_grant_on_the_shared_tables_is_narrowed_to_key_prefixes() {
        for f in ["token", "user-data", "integrations", "segments", "segment-purge", "console"] {
            for s in Policy::of(f).statements.into_iter().filter(|s| !s.deny) {
                let shared = s.resources.iter().any(|(t, _)| t == "ConfigTable" || t == "SigningKeysTable");
                assert!(!shared || s.leading_keys.is_some(), "{f}: {s:?} has no dynamodb:LeadingKeys");
                let patterns = s.leading_keys.unwrap_or_default();
                assert!(!patterns.iter().any(|p| p == "*"), "{f}: {patterns:?}");
            }
        }
    }

    /// What only the operator may change: no function's role writes an account's limits, a
    /// client or a signing key, whatever the tests exercise.
    #[test]
    fn no_function_may_write_limits_clients_or_keys() {
        for f in ["token", "user-data", "integrations", "segments", "segment-purge", "console"] {
            let policy = Policy::of(f);
            for action in ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"] {
                for key in ["LIMITS#acme", "CLIENT#0123", "JWKS"] {
                    let refused = policy.refuses(action, "ConfigTable", None, &[key.to_string()], &[]);
                    assert!(refused.is_some(), "{f} may {action} {key}");
                }
                assert!(
                    policy.refuses(action, "SigningKeysTable", None, &["SIGNING".into()], &[]).is_some(),
                    "{f}"
                );
            }
        }
    }

    /// The account's item holds its attribute limit (and, for older accounts, its rate limit):
    /// functions update that item (attribute headroom, integration count), never the limits.
    #[test]
    fn no_function_may_write_an_accounts_limits_into_its_item() {
        let functions = [
            "token",
            "user-data",
            "integrations",
            "segments",
            "segment-purge",
            "imports",
            "import-worker",
            "console",
        ];
        for f in functions {
            let policy = Policy::of(f);
            for action in ["PutItem", "UpdateItem", "BatchWriteItem", "TransactWriteItems"] {
                for attr in ["attributeLimit", "rateLimit"] {
                    let attrs = ["attributeHeadroom".to_string(), attr.to_string()];
                    let refused =
                        policy.refuses(action, "ConfigTable", None, &["ACCOUNT#acme".into()], &attrs);
                    assert!(refused.is_some_and(|r| r.contains("denied")), "{f} may {action} {attr}");
                }
            }
        }
    }

    #[test]
    fn an_update_names_the_top_level_attributes_it_writes() {
        let update = serde_json::json!({
            "UpdateExpression": "SET #n = :v, a.b = if_not_exists(a.b, :z) ADD attributeHeadroom :d REMOVE old[0]",
            "ExpressionAttributeNames": {"#n": "attributeLimit"}});
        assert_eq!(update_attributes(&update), ["attributeLimit", "a", "attributeHeadroom", "old"]);
    }

    #[test]
    fn every_function_has_a_role_with_statements() {
        for f in ["token", "user-data", "integrations", "segments", "segment-purge", "console"] {
            assert!(!Policy::of(f).statements.is_empty(), "{f}");
        }
    }
}
