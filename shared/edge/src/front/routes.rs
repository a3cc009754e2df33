//! Each function declares its routes once, as a table of [`Route`]s: method, path template,
//! what the front must do before the handler runs (who may call, idempotency, rate-limit
//! cost) and the wire dialect its errors are rendered in. Matching, `404`s, `405`s and their
//! `Allow` header all come from that table; `tests/tests/suite/routes.rs` checks it against
//! `template.yaml`, the local router in `Cargo.toml` and `docs/openapi.yaml`.

pub use crate::http::Dialect;
use domain::Scope;

/// Who may call a route; the front checks it before anything else runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: public documents, and the token endpoint, which authenticates its client itself.
    Public,
    /// An access token (RFC 6750) that grants this scope.
    Bearer(Scope),
    /// MoEngage's Basic `workspace_id:api_key`: the workspace of the path, and the secret of
    /// a client of that account that holds this scope.
    WorkspaceBasic(Scope),
}

/// One route of a function. `Op` is the function's own name for it.
#[derive(Debug)]
pub struct Route<Op: 'static> {
    pub method: &'static str,
    /// As in `template.yaml`: literal segments and `{name}` parameters.
    pub path: &'static str,
    pub op: Op,
    pub access: Access,
    /// A write: an `Idempotency-Key` header makes it replayable.
    pub write: bool,
    /// Rate-limit units a call is charged when admitted; the work it then does past that
    /// (`UsageReport::units`: one unit per 100 users written or segment ids processed) is
    /// charged to the account's next calls.
    pub cost: u32,
    pub dialect: Dialect,
}

impl<Op: Copy> Route<Op> {
    /// A route for bearer tokens granting `scope`, in the REST dialect, costing one unit; a
    /// write unless its method is `GET`.
    pub const fn bearer(method: &'static str, path: &'static str, op: Op, scope: Scope) -> Self {
        let write = !matches!(method.as_bytes(), b"GET");
        Self { method, path, op, access: Access::Bearer(scope), write, cost: 1, dialect: Dialect::Rest }
    }

    /// A route anyone may call, which writes nothing for the front to protect.
    pub const fn public(method: &'static str, path: &'static str, op: Op, dialect: Dialect) -> Self {
        Self { method, path, op, access: Access::Public, write: false, cost: 1, dialect }
    }
}

/// The path parameters of a matched route, percent-decoded.
#[derive(Debug, Default)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The parameter `name` of the route's template. The template declares it, so a handler
    /// asking for a name its template lacks is a bug the route tests catch; it reads as "".
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v.as_str())
    }
}

/// A request no route of the function serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The path is served, with other methods: `405` with this `Allow` value.
    Method { allow: String, dialect: Dialect },
    /// No route has this path: `404`.
    Path,
}

const METHOD_ORDER: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The parameters of `template` if it matches `segments`, with how many literal segments it
/// has (a more literal template wins: `/user/data` before `/user/{userId}`).
fn matches(template: &'static str, segments: &[String]) -> Option<(usize, Params)> {
    let parts: Vec<&'static str> = template.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    let mut literals = 0;
    for (part, seg) in parts.into_iter().zip(segments) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => params.push((name, seg.clone())),
            None if part == seg => literals += 1,
            None => return None,
        }
    }
    Some((literals, Params(params)))
}

/// The route serving `method` on `segments` (the request path's segments, decoded), or why
/// there is none.
pub fn find<Op>(
    routes: &'static [Route<Op>],
    method: &str,
    segments: &[String],
) -> Result<(&'static Route<Op>, Params), Miss> {
    let mut best: Option<(usize, &'static Route<Op>, Params)> = None;
    let mut allowed: Vec<&'static str> = Vec::new();
    let mut dialect = None;
    for route in routes {
        let Some((literals, params)) = matches(route.path, segments) else { continue };
        dialect.get_or_insert(route.dialect);
        if !allowed.contains(&route.method) {
            allowed.push(route.method);
        }
        if route.method == method && best.as_ref().is_none_or(|(l, ..)| literals > *l) {
            best = Some((literals, route, params));
        }
    }
    match (best, dialect) {
        (Some((_, route, params)), _) => Ok((route, params)),
        (None, Some(dialect)) => {
            allowed.sort_by_key(|m| METHOD_ORDER.iter().position(|o| o == m).unwrap_or(usize::MAX));
            Err(Miss::Method { allow: allowed.join(", "), dialect })
        }
        (None, None) => Err(Miss::Path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        Update,
        Read,
        Erase,
    }

    const fn route(method: &'static str, path: &'static str, op: Op) -> Route<Op> {
        Route::public(method, path, op, Dialect::Rest)
    }

    static ROUTES: &[Route<Op>] = &[
        route("POST", "/public/v1/user/data", Op::Update),
        route("GET", "/public/v1/user/{userId}", Op::Read),
        route("DELETE", "/public/v1/user/{userId}", Op::Erase),
    ];

    fn segs(path: &str) -> Vec<String> {
        crate::http::request::split_path(path)
    }

    #[test]
    fn the_literal_route_wins_and_parameters_are_named() {
        let (r, _) = find(ROUTES, "POST", &segs("/public/v1/user/data")).unwrap();
        assert_eq!(r.op, Op::Update);
        let (r, p) = find(ROUTES, "GET", &segs("/public/v1/user/data")).unwrap();
        assert_eq!((r.op, p.get("userId")), (Op::Read, "data"));
        let (r, p) = find(ROUTES, "DELETE", &segs("/public/v1/user/john%40x.io")).unwrap();
        assert_eq!((r.op, p.get("userId")), (Op::Erase, "john@x.io"));
    }

    #[test]
    fn allow_lists_every_method_of_every_template_the_path_matches() {
        let miss = find(ROUTES, "PUT", &segs("/public/v1/user/data")).unwrap_err();
        assert_eq!(miss, Miss::Method { allow: "GET, POST, DELETE".into(), dialect: Dialect::Rest });
        let miss = find(ROUTES, "POST", &segs("/public/v1/user/someone")).unwrap_err();
        assert_eq!(miss, Miss::Method { allow: "GET, DELETE".into(), dialect: Dialect::Rest });
        assert_eq!(find(ROUTES, "GET", &segs("/public/v1/user")).unwrap_err(), Miss::Path);
        assert_eq!(find(ROUTES, "GET", &segs("/public/v1/user/a/b")).unwrap_err(), Miss::Path);
    }
}
