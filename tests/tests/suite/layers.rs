//! The crates under `domain/`, `shared/` and `functions/` depend on each other one way, and a
//! function links only the crates it uses: the order the README's diagram shows, read from
//! each crate's `Cargo.toml`. Cargo refuses a cycle by itself; this also refuses a crate that
//! reaches a layer above its own, and an HTTP function that links the S3 client (`files`).

use std::collections::BTreeMap;

/// Each crate of the project, with the project crates it may depend on.
const LAYERS: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("shared/store", &["domain"]),
    ("shared/files", &["domain"]),
    ("shared/auth", &["domain", "store"]),
    ("shared/protect", &["domain", "store"]),
    ("shared/boot", &["store"]),
    ("shared/edge", &["domain", "store", "auth", "protect", "boot"]),
    ("functions/token", &["domain", "store", "auth", "edge"]),
    ("functions/integrations", &["domain", "store", "auth", "edge"]),
    ("functions/user-data", &["domain", "store", "auth", "protect", "edge"]),
    ("functions/segments", &["domain", "store", "auth", "protect", "edge"]),
    ("functions/imports", &["domain", "store", "files", "auth", "edge"]),
    ("functions/segment-purge", &["domain", "store", "boot"]),
    ("functions/import-worker", &["domain", "store", "files", "protect", "boot"]),
    // The console signs sessions in through the token function's own grant (DECISIONS, "Console").
    ("functions/console", &["domain", "store", "auth", "edge", "token"]),
    ("admin", &["domain", "store", "auth", "boot"]),
];

/// The names of the `[dependencies]` of a manifest (not its dev-dependencies).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
        } else if inside
            && let Some((name, _)) = line.split_once(['.', ' ', '='])
            && !name.is_empty()
            && !name.starts_with('#')
        {
            out.push(name.to_string());
        }
    }
    out
}

#[test]
fn every_crate_depends_only_on_the_layers_below_it() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let project: BTreeMap<&str, &str> =
        LAYERS.iter().map(|(dir, _)| (dir.rsplit('/').next().unwrap_or(dir), *dir)).collect();
    for (dir, allowed) in LAYERS {
        let manifest = std::fs::read_to_string(format!("{root}/{dir}/Cargo.toml")).unwrap();
        for dep in dependencies(&manifest) {
            if project.contains_key(dep.as_str()) {
                assert!(allowed.contains(&dep.as_str()), "{dir} depends on {dep}, which it may not reach");
            }
        }
    }
    // Every crate of the workspace is placed in a layer.
    let workspace = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
    for dir in project.values() {
        assert!(workspace.contains(&format!("\"{dir}\"")), "{dir} is not a workspace member");
    }
    let members = workspace.split("members = [").nth(1).and_then(|m| m.split(']').next()).unwrap();
    for member in members.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty()) {
        assert!(member == "tests" || project.values().any(|d| d == &member), "{member} has no layer");
    }
}
