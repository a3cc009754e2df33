//! Each function declares its routes once (`Service::ROUTES`). The three other places that
//! name them must agree with those declarations, method for method: `template.yaml` (what API
//! Gateway sends to which function), the local router of `cargo lambda watch` in `Cargo.toml`
//! (what `make dev` sends where) and `docs/openapi.yaml` (what clients are told, with each
//! operation's credentials and scope).

use std::collections::BTreeSet;

use edge::front::{Access, Route, Service};
use serde_yaml::Value;

/// (method, path) of every route the front treats as a write (an `Idempotency-Key` applies).
fn writes() -> BTreeSet<(String, String)> {
    fn of<S: Service>() -> Vec<(String, String)> {
        S::ROUTES.iter().filter(|r| r.write).map(|r| (r.method.to_string(), r.path.to_string())).collect()
    }
    [
        of::<token::App>(),
        of::<user_data::App>(),
        of::<integrations::App>(),
        of::<segments::App>(),
        of::<imports::App>(),
        of::<console::App>(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// (method, path, function binary, access) of every declared route.
fn declared() -> BTreeSet<(String, String, String, String)> {
    fn of<S: Service>(binary: &str) -> Vec<(String, String, String, String)> {
        S::ROUTES
            .iter()
            .map(|r: &Route<S::Op>| {
                (r.method.to_string(), r.path.to_string(), binary.to_string(), access(r.access))
            })
            .collect()
    }
    [
        of::<token::App>("token"),
        of::<user_data::App>("user-data"),
        of::<integrations::App>("integrations"),
        of::<segments::App>("segments"),
        of::<imports::App>("imports"),
        of::<console::App>("console"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn access(a: Access) -> String {
    match a {
        Access::Public => "public".into(),
        Access::Bearer(s) => format!("bearer {s}"),
        // HTTP Basic has no scopes in OpenAPI: the scheme's description names the scope (below).
        Access::WorkspaceBasic(_) => "moengage".into(),
    }
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn template_yaml_routes_each_declared_route_to_its_function() {
    let t: Value = serde_yaml::from_str(&read("template.yaml")).unwrap();
    let mut routed = BTreeSet::new();
    for res in t["Resources"].as_mapping().unwrap().values() {
        let Some(events) = res["Properties"]["Events"].as_mapping() else { continue };
        let binary = res["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap_or_default();
        for ev in events.values().filter(|e| e["Type"].as_str() == Some("HttpApi")) {
            let p = &ev["Properties"];
            routed.insert((
                p["Method"].as_str().unwrap().to_uppercase(),
                p["Path"].as_str().unwrap().to_string(),
                binary.to_string(),
            ));
        }
    }
    let want: BTreeSet<_> = declared().into_iter().map(|(m, p, b, _)| (m, p, b)).collect();
    assert_eq!(routed, want, "template.yaml's HttpApi events differ from the declared routes");
}

#[test]
fn the_local_router_sends_each_declared_path_to_its_function() {
    let text = read("Cargo.toml");
    let section = text.split("[workspace.metadata.lambda.watch.router]").nth(1).expect("the router section");
    let mut routed = BTreeSet::new();
    for line in section.lines().map(str::trim).take_while(|l| !l.starts_with('[')) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (path, function) =
            line.split_once(" = ").unwrap_or_else(|| panic!("unexpected router line {line}"));
        routed.insert((path.trim_matches('"').to_string(), function.trim_matches('"').to_string()));
    }
    let want: BTreeSet<_> = declared().into_iter().map(|(_, p, b, _)| (p, b)).collect();
    assert_eq!(
        routed, want,
        "Cargo.toml's [workspace.metadata.lambda.watch.router] differs from the declared routes"
    );
}

#[test]
fn the_openapi_document_describes_each_declared_route_with_its_credentials() {
    let doc: Value = serde_yaml::from_str(&read("docs/openapi.yaml")).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            let op = &item[method];
            if op.is_null() {
                continue;
            }
            let security: Vec<String> = op["security"]
                .as_sequence()
                .map(|reqs| {
                    reqs.iter()
                        .filter_map(|r| r.as_mapping())
                        .flat_map(|m| m.iter())
                        .map(|(scheme, scopes)| {
                            let scopes: Vec<&str> =
                                scopes.as_sequence().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
                            format!("{} {}", scheme.as_str().unwrap(), scopes.join(" "))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let access = match security.as_slice() {
                [one] if one.starts_with("bearerAuth ") => one.replacen("bearerAuth", "bearer", 1),
                [one] if one.starts_with("moengageBasic ") => one.replacen("moengageBasic", "moengage", 1),
                // No security, or the token endpoint's Basic (its own client authentication).
                [] => "public".into(),
                [one] if one.trim() == "basicAuth" => "public".into(),
                other => panic!("{method} {path:?}: unexpected security {other:?}"),
            };
            documented.insert((
                method.to_uppercase(),
                path.as_str().unwrap().to_string(),
                access.trim().to_string(),
            ));
        }
    }
    let want: BTreeSet<_> = declared().into_iter().map(|(m, p, _, a)| (m, p, a)).collect();
    assert_eq!(
        documented, want,
        "docs/openapi.yaml differs from the declared routes (method, path, credentials)"
    );
    let described = doc["components"]["securitySchemes"]["moengageBasic"]["description"].as_str().unwrap();
    for s in <user_data::App as Service>::ROUTES.iter().filter_map(|r| match r.access {
        Access::WorkspaceBasic(s) => Some(s),
        _ => None,
    }) {
        assert!(described.contains(&format!("`{s}`")), "moengageBasic's description must name the scope {s}");
    }
}

#[test]
fn the_openapi_document_offers_an_idempotency_key_exactly_on_write_routes() {
    let doc: Value = serde_yaml::from_str(&read("docs/openapi.yaml")).unwrap();
    let mut offered = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            let params = item[method]["parameters"].as_sequence().cloned().unwrap_or_default();
            if params.iter().any(|p| p["$ref"].as_str() == Some("#/components/parameters/IdempotencyKey")) {
                offered.insert((method.to_uppercase(), path.as_str().unwrap().to_string()));
            }
        }
    }
    assert_eq!(offered, writes(), "Idempotency-Key in docs/openapi.yaml differs from the write routes");
}

/// (method, path) of each curl command against `make dev` in a Markdown file: a command is a
/// line with `curl ` and the lines its trailing `\` continues; its method is `-X`/`--request`,
/// else POST when it sends data, else GET; its path is what follows the local API's address,
/// without the query.
fn curls(text: &str) -> Vec<(String, String)> {
    const HOST: &str = "http://127.0.0.1:9000";
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match current.as_mut() {
            Some(c) => c.push_str(line.trim_end_matches('\\')),
            None if line.contains("curl ") => current = Some(line.trim_end_matches('\\').to_string()),
            None => continue,
        }
        if !line.ends_with('\\') {
            commands.extend(current.take());
        }
    }
    commands
        .iter()
        .filter_map(|c| {
            let words: Vec<&str> = c.split_whitespace().collect();
            let method = words
                .windows(2)
                .find(|w| w[0] == "-X" || w[0] == "--request")
                .map(|w| w[1].to_string())
                .unwrap_or_else(|| {
                    let sends = words.iter().any(|w| w.starts_with("--data") || *w == "-d");
                    if sends { "POST" } else { "GET" }.to_string()
                });
            let at = c.find(HOST)? + HOST.len();
            let path: String =
                c[at..].chars().take_while(|ch| !matches!(ch, '\'' | '"' | ' ' | '?')).collect();
            Some((method, path))
        })
        .collect()
}

/// Whether a concrete path (with `$VARS` or values in its parameters) fits a route template.
fn fits(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

#[test]
fn the_walkthrough_calls_each_declared_route_with_curl() {
    let called = curls(&read("docs/WALKTHROUGH.md"));
    let missing: Vec<_> = declared()
        .into_iter()
        .filter(|(m, p, _, _)| !called.iter().any(|(cm, cp)| cm == m && fits(p, cp)))
        .map(|(m, p, _, _)| format!("{m} {p}"))
        .collect();
    assert!(missing.is_empty(), "docs/WALKTHROUGH.md has no curl of {missing:?}");
}

#[test]
fn the_readme_is_a_newcomers_page_with_the_seeds_two_calls() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 200, "README.md has {lines} lines; the rest belongs in docs/");
    let called = curls(&readme);
    for (m, p) in [("POST", "/accounts/connect/token"), ("POST", "/public/v1/user/data")] {
        assert!(called.contains(&(m.to_string(), p.to_string())), "README.md has no curl of {m} {p}");
    }
    for doc in ["docs/WALKTHROUGH.md", "docs/ARCHITECTURE.md", "docs/DEVELOPMENT.md"] {
        assert!(readme.contains(doc), "README.md does not point at {doc}");
    }
}
