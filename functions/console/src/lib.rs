//! The console function: the web console's pages (`GET /console`, `GET /console/{proxy+}`),
//! its sign-in and sign-out (`POST` / `DELETE /console/session`), and the account's own usage
//! (`GET /public/v1/usage`). The pages hold no business rule: they call the API's own routes,
//! authenticated by the session cookie set here (docs/DECISIONS.md, "Console").

use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use auth::OAuthError;
use auth::token_request;
use domain::{Problem, Scope};
use edge::front::{Call, Dialect, Env, Route, Service};
use edge::http::error::render;
use edge::http::request::header;
use edge::http::{ApiError, Reply, RequestInfo};
use store::dynamo::DynamoStore;

/// The cookie the console's session token travels in; the API reads it only on requests that
/// also carry `X-Console-Request: 1` (shared's bearer extraction).
pub use auth::bearer::CONSOLE_SESSION_COOKIE as SESSION_COOKIE;

/// What the pages may run: their own scripts and styles, and calls to their own origin and to
/// the import bucket (an upload goes straight to its presigned URL). No inline script, no
/// `eval`, and no page may frame them.
pub fn csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        // Locally the bucket is the endpoint the SDK is pointed at; on AWS, S3's own hosts.
        let uploads = std::env::var("AWS_ENDPOINT_URL_S3")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|_| "https://*.amazonaws.com".into());
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' {uploads}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
    })
}

/// The usage route answers at most this many days at once.
const MAX_USAGE_DAYS: i64 = 92;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Index,
    Asset,
    SignIn,
    SignOut,
    Usage,
}

/// One embedded file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($name:literal => $ty:literal),* $(,)?) => {
        &[$(Asset { name: $name, content_type: $ty, body: include_bytes!(concat!("../assets/", $name)) }),*]
    };
}

/// Every file the console serves, built into the binary: no file system, no build step.
static ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "console.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "dom.js" => "text/javascript; charset=utf-8",
    "signin.js" => "text/javascript; charset=utf-8",
    "integrations.js" => "text/javascript; charset=utf-8",
    "users.js" => "text/javascript; charset=utf-8",
    "imports.js" => "text/javascript; charset=utf-8",
    "segments.js" => "text/javascript; charset=utf-8",
    "rules.js" => "text/javascript; charset=utf-8",
    "usage.js" => "text/javascript; charset=utf-8",
];

/// The rule builder's menus, written from the rule engine's own operator table
/// (`domain::rules::Op`), so the console holds no copy of SPEC's table to drift from it.
const OPERATORS: &str = "operators.json";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OperatorOut {
    op: &'static str,
    /// `none`, `one` (`value`), `list` (`values`), `pair` (`values: [low, high]`), `days`.
    operand: &'static str,
    ignore_case: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OperatorsOut {
    types: std::collections::BTreeMap<&'static str, Vec<OperatorOut>>,
    groups: [&'static str; 3],
    segment_ops: [&'static str; 2],
    max_depth: usize,
    max_conditions: usize,
}

fn operators() -> &'static [u8] {
    use domain::integration::AttrType;
    use domain::rules::{GroupKind, MAX_CONDITIONS, MAX_DEPTH, Op, OperandKind};
    static BODY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BODY.get_or_init(|| {
        let types = [AttrType::String, AttrType::Number, AttrType::Date, AttrType::Boolean]
            .into_iter()
            .map(|t| {
                let ops = Op::ALL
                    .iter()
                    .filter(|o| o.types().contains(&t))
                    .map(|o| OperatorOut {
                        op: o.as_str(),
                        operand: match o.operand() {
                            OperandKind::None => "none",
                            OperandKind::One => "one",
                            OperandKind::List => "list",
                            OperandKind::Pair => "pair",
                            OperandKind::Days => "days",
                        },
                        ignore_case: t == AttrType::String && o.takes_ignore_case(),
                    })
                    .collect();
                (t.as_str(), ops)
            })
            .collect();
        let out = OperatorsOut {
            types,
            groups: [GroupKind::All, GroupKind::Any, GroupKind::None].map(GroupKind::as_str),
            segment_ops: ["in", "not_in"],
            max_depth: MAX_DEPTH,
            max_conditions: MAX_CONDITIONS,
        };
        serde_json::to_vec(&out).expect("serializes")
    })
}

/// A content hash of every asset: the `ETag` of each, so a browser revalidates for a few
/// bytes and a new build is picked up at once.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        // FNV-1a: a change detector, not a security measure.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let files = ASSETS.iter().map(|a| (a.name, a.body)).chain([(OPERATORS, operators())]);
        for (name, body) in files {
            for b in name.as_bytes().iter().chain(body) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    })
}

pub struct App {
    token: token::App,
    store: DynamoStore,
}

impl App {
    pub fn new(env: &Env) -> Self {
        Self { token: token::App::new(env), store: env.store.clone() }
    }
}

impl Service for App {
    type Op = Op;
    const ROUTES: &'static [Route<Op>] = &[
        Route::public("GET", "/console", Op::Index, Dialect::Rest),
        Route::public("GET", "/console/{proxy+}", Op::Asset, Dialect::Rest),
        Route::public("POST", "/console/session", Op::SignIn, Dialect::OAuth),
        Route::public("DELETE", "/console/session", Op::SignOut, Dialect::Rest),
        Route::bearer("GET", "/public/v1/usage", Op::Usage, Scope::IntegrationsRead),
    ];

    async fn handle(&self, op: Op, call: Call<'_>) -> Result<Reply, ApiError> {
        match op {
            Op::Index => Ok(asset(call.req, "index.html")),
            Op::Asset => Ok(asset(call.req, call.param("proxy+"))),
            Op::SignIn => {
                Ok(sign_in(self, call.info, call.req).await.unwrap_or_else(|e| refused(e, call.info)))
            }
            Op::SignOut => Ok(sign_out(call.req)),
            Op::Usage => usage(self, &call).await,
        }
    }
}

/// Headers every console answer carries.
fn hardened(reply: Reply) -> Reply {
    reply
        .header("content-security-policy", csp())
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("x-frame-options", "DENY")
}

fn asset(req: &Request, name: &str) -> Reply {
    let found = match name {
        OPERATORS => Some(("application/json", operators())),
        _ => ASSETS.iter().find(|a| a.name == name).map(|a| (a.content_type, a.body)),
    };
    let Some((content_type, body)) = found else {
        let body = b"not found".to_vec();
        return hardened(raw(404, "text/plain; charset=utf-8", body));
    };
    let etag = format!("\"{}\"", version());
    let reply = if header(req, "if-none-match") == Some(etag.as_str()) {
        raw(304, content_type, Vec::new())
    } else {
        raw(200, content_type, body.to_vec())
    };
    hardened(reply.header("etag", &etag).header("cache-control", "no-cache"))
}

fn raw(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
    let response = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(if body.is_empty() { Body::Empty } else { Body::from(body) })
        .expect("valid response");
    Reply { response, usage: Default::default() }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Session<'a> {
    client_id: &'a str,
    scope: String,
    expires_in: i64,
}

/// Sign-in: the client's id and secret, exactly as the token route takes them (a form or JSON
/// body, or Basic), minted by the same code; the token goes into a cookie scripts cannot read.
async fn sign_in(app: &App, info: &RequestInfo, req: &Request) -> Result<Reply, OAuthError> {
    let parsed =
        token_request::parse(header(req, "authorization"), header(req, "content-type"), req.body().as_ref())?;
    let issued = app.token.issue(info, &parsed).await?;
    let cookie = session_cookie(req, &issued.access_token, issued.expires_in);
    let body = Session {
        client_id: &parsed.client_id,
        scope: issued.scope.to_string(),
        expires_in: issued.expires_in,
    };
    Ok(hardened(Reply::json(200, &body))
        .header("set-cookie", &cookie)
        .header("cache-control", "no-store")
        .header("pragma", "no-cache"))
}

/// The token route's error, without its `WWW-Authenticate: Basic` challenge: a browser answers
/// that challenge by prompting for a password, and the page's own form is the prompt here.
fn refused(e: OAuthError, info: &RequestInfo) -> Reply {
    let mut response = render(ApiError::OAuth(e), Dialect::OAuth, &info.request_id);
    response.headers_mut().remove("www-authenticate");
    hardened(Reply { response, usage: Default::default() })
}

fn sign_out(req: &Request) -> Reply {
    hardened(Reply::no_content())
        .header("set-cookie", &session_cookie(req, "", 0))
        .header("cache-control", "no-store")
}

/// `Secure` when the request came over https (API Gateway says so in `X-Forwarded-Proto`);
/// `make dev` serves plain http on 127.0.0.1, where a `Secure` cookie would never be sent back.
fn session_cookie(req: &Request, value: &str, max_age: i64) -> String {
    let https = header(req, "x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let secure = if https { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageDay {
    day: String,
    calls: i64,
    users_updated: i64,
    segment_ids: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageAnswer {
    from: String,
    to: String,
    days: Vec<UsageDay>,
}

/// The caller's account's usage per day, summed over its clients (every day of the range,
/// zeros included, so a chart needs no gap filling).
async fn usage(app: &App, call: &Call<'_>) -> Result<Reply, ApiError> {
    let account = call.principal()?.account.clone();
    let query = call.req.query_string_parameters_ref();
    let param = |name: &str| query.and_then(|q| q.first(name)).map(str::to_string);
    let today = time::OffsetDateTime::now_utc().date();
    let mut problems = Vec::new();
    let mut day = |name: &str, default: time::Date| match param(name) {
        None => Some(default),
        Some(s) => parse_day(&s).or_else(|| {
            problems.push(Problem::at(name, "must be a date YYYY-MM-DD"));
            None
        }),
    };
    let to = day("to", today);
    let from = day("from", to.unwrap_or(today) - time::Duration::days(29));
    let (Some(from), Some(to)) = (from, to) else {
        return Err(ApiError::validation("the query is invalid", problems));
    };
    let span = (to - from).whole_days();
    if !(0..MAX_USAGE_DAYS).contains(&span) {
        let reason = format!("must be on or after from, at most {} days later", MAX_USAGE_DAYS - 1);
        return Err(ApiError::validation("the query is invalid", vec![Problem::at("to", reason)]));
    }
    let days: Vec<String> = (0..=span).map(|i| fmt_day(from + time::Duration::days(i))).collect();
    let rows = app.store.usage(&account, &days).await?;
    let days = days
        .into_iter()
        .map(|d| {
            let mut out = UsageDay { day: d, calls: 0, users_updated: 0, segment_ids: 0 };
            for (_, _, u) in rows.iter().filter(|(day, ..)| *day == out.day) {
                out.calls += u.calls;
                out.users_updated += u.users_updated;
                out.segment_ids += u.segment_ids;
            }
            out
        })
        .collect();
    Ok(Reply::json(200, &UsageAnswer { from: fmt_day(from), to: fmt_day(to), days }))
}

fn parse_day(s: &str) -> Option<time::Date> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn fmt_day(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_pages_name_is_embedded() {
        for a in ASSETS {
            let text = std::str::from_utf8(a.body).unwrap();
            for part in text.split(['"', '\'']).filter(|p| p.starts_with("./") || p.starts_with("/console/"))
            {
                let name = part.trim_start_matches("./").trim_start_matches("/console/");
                let name = name.split('?').next().unwrap();
                if name.ends_with(".js") || name.ends_with(".css") {
                    assert!(
                        ASSETS.iter().any(|x| x.name == name),
                        "{} names {name}, which is not embedded",
                        a.name
                    );
                }
            }
        }
    }

    #[test]
    fn the_operator_menus_are_the_engines_table() {
        let menus: serde_json::Value = serde_json::from_slice(operators()).unwrap();
        let ops = |t: &str| -> Vec<String> {
            menus["types"][t].as_array().unwrap().iter().map(|o| o["op"].as_str().unwrap().into()).collect()
        };
        assert_eq!(ops("Boolean"), ["is_true", "is_false", "is_set", "is_not_set"]);
        assert!(ops("Date").contains(&"within_last_days".into()) && !ops("Date").contains(&"lt".into()));
        let contains = &menus["types"]["String"][4];
        assert_eq!(
            (contains["op"].as_str(), contains["ignoreCase"].as_bool()),
            (Some("contains"), Some(true))
        );
        assert_eq!(menus["types"]["Number"][8]["operand"], "pair", "between takes [low, high]");
        assert_eq!(menus["types"]["Number"][0]["ignoreCase"], false);
    }

    #[test]
    fn no_asset_holds_inline_script_or_style_attributes() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!html.contains("<script>") && !html.contains(" onclick=") && !html.contains(" style="));
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for banned in ["innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function"] {
                assert!(!text.contains(banned), "{} uses {banned}", a.name);
            }
        }
    }
}
