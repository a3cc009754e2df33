//! The fuzz harness: one function per target, each feeding arbitrary bytes to the real parsers
//! and verifier (`domain`, `auth`) the way the functions call them, and asserting what must hold
//! beyond "no panic". Used by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and, on stable,
//! by `shared/auth/tests/fuzz_regressions.rs`, which replays the seed corpus and every crash found.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock, PoisonError};

use auth::jwt::{self, AccessClaims, LEEWAY_SECS, TokenError};
use auth::{OAuthErrorKind, SigningKey, keys, token_request};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use domain::Problem;
use domain::integration::{AttrType, Definition};
use domain::segment::{Action, CreateSegment, MAX_EXTERNAL_ID_CHARS, MAX_IDS, MAX_NAME_CHARS};
use domain::segment::{MAX_REPORTED, UpdateSegment};
use domain::user_data::{self, AttrValue, Envelope, MAX_STRING_BYTES, MAX_USER_ID_CHARS, MAX_USERS};
use domain::user_data::{Mode, UserId, Validated};
use domain::{AccountId, ScopeSet};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// The fuzz targets, by name (the folders of `fuzz/seeds/`).
pub const TARGETS: [&str; 5] = ["user_data", "segment", "token_request", "jwt_verify", "import_rows"];

/// Runs one target's harness on one input.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "user_data" => user_data(data),
        "segment" => segment(data),
        "token_request" => token_request(data),
        "jwt_verify" => jwt_verify(data),
        "import_rows" => import_rows(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// user_data: POST /public/v1/user/data (and the integration TEST route, token optional)

/// The integrations the input is judged against: the seeds' (`Email`; `Type`, `Status`), the
/// seeds' nested example (`properties.ID`; `field1`, `field2`, `nested.field`, as `make dev`
/// creates them), and one with every type and a nested identifier.
fn definitions() -> &'static [Definition] {
    static DEFS: OnceLock<Vec<Definition>> = OnceLock::new();
    DEFS.get_or_init(|| {
        [
            json!({"name": "Update Customer Attributes", "userIdentifierProperty": "Email",
                "properties": [{"path": "Type", "name": "Customer_Type", "type": "String"},
                               {"path": "Status", "name": "Customer_Status", "type": "String"}]}),
            json!({"name": "Seed nested example", "userIdentifierProperty": "properties.ID",
                "properties": [{"path": "field1", "name": "field1", "type": "String"},
                               {"path": "field2", "name": "field2", "type": "Number"},
                               {"path": "nested.field", "name": "nested.field", "type": "Number"}]}),
            json!({"name": "Every type", "userIdentifierProperty": "user.id",
                "properties": [{"path": "n", "name": "N", "type": "Number"},
                               {"path": "d", "name": "D", "type": "Date"},
                               {"path": "b", "name": "B", "type": "Boolean"},
                               {"path": "s", "name": "S", "type": "String"},
                               {"path": "user.plan", "name": "Plan", "type": "String"},
                               {"path": "a.b.c", "name": "ABC", "type": "Number"}]}),
        ]
        .iter()
        .map(|v| Definition::from_json(v).expect("the harness's definitions are valid"))
        .collect()
    })
}

/// Bytes -> `json_body::<Envelope>` -> `into_request` -> `validate`, for each definition, as the
/// user-data handler (token required) and the integration test route (token optional) do.
pub fn user_data(data: &[u8]) {
    if data.len() > user_data::MAX_BODY_BYTES {
        return; // 413 before any parsing
    }
    for token_required in [true, false] {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(&domain::exact::protect_numbers(data)) else {
            return;
        };
        let request = match envelope.into_request(token_required) {
            Ok(r) => r,
            Err(errors) => {
                check_details(&errors, 0);
                continue;
            }
        };
        assert!(!request.data.is_empty() && request.data.len() <= MAX_USERS, "data length unchecked");
        assert!(!token_required || !request.token.is_empty(), "an empty token was accepted");
        for def in definitions() {
            let mut items = request.data.clone();
            match user_data::validate(def, &mut items) {
                Ok(v) => check_validated(def, &v, &request.data),
                Err(errors) => check_details(&errors, request.data.len()),
            }
        }
    }
}

/// A validation failure is a non-empty list of problems, each with a reason, and an index (if
/// any) inside the request.
fn check_details(errors: &[Problem], items: usize) {
    assert!(!errors.is_empty(), "a failure without any problem listed");
    for e in errors {
        assert!(!e.reason.is_empty(), "a problem without a reason: {e:?}");
        if let Some(i) = e.index {
            assert!(i < items, "problem index {i} past the {items} items");
        }
    }
}

/// What a validated request promises: the documented limits, the types of the integration,
/// and nothing imported reported as ignored.
fn check_validated(def: &Definition, v: &Validated, items: &[Value]) {
    assert_eq!(v.users.len(), items.len(), "every item is a user");
    assert!(!v.users.is_empty() && v.users.len() <= MAX_USERS);
    assert_eq!(v.mode == Mode::Merge, v.users.len() == 1, "one user merges, several replace");
    let mut ids = HashSet::new();
    for u in &v.users {
        check_user_id(&u.user_id);
        assert!(ids.insert(u.user_id.clone()), "user {:?} accepted twice", u.user_id);
        assert!(!u.values.is_empty(), "a user without any imported value");
        assert!(u.values.windows(2).all(|w| w[0].0 < w[1].0), "values not in property order");
        for (i, value) in &u.values {
            let prop = def.properties.get(*i).expect("value of an unknown property");
            check_value(prop.attr_type, value);
        }
    }
    assert!(v.ignored_fields.windows(2).all(|w| w[0] < w[1]), "ignored fields not sorted once each");
    for f in &v.ignored_fields {
        assert_ne!(f, def.user_identifier.as_str(), "the identifier reported as ignored");
        assert!(def.properties.iter().all(|p| p.path.as_str() != f), "imported {f} reported as ignored");
    }
}

fn check_user_id(id: &UserId) {
    let n = id.as_str().chars().count();
    assert!((1..=MAX_USER_ID_CHARS).contains(&n), "user id of {n} characters accepted");
}

fn check_value(t: AttrType, value: &AttrValue) {
    match (t, value) {
        (AttrType::String, AttrValue::String(s)) => {
            assert!(s.len() <= MAX_STRING_BYTES, "String of {} bytes accepted", s.len())
        }
        (AttrType::Number, AttrValue::Number(s)) => check_storable_number(s),
        (AttrType::Date, AttrValue::Date(s)) => assert!(is_date(s), "Date {s:?} accepted"),
        (AttrType::Boolean, AttrValue::Boolean(_)) => {}
        (t, v) => panic!("a {t} property holds {v:?}"),
    }
    // Reads and the integration test route show every value as JSON, a Number with every
    // digit it holds.
    let text = serde_json::to_string(value).expect("a value serializes");
    let shown: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    match value {
        AttrValue::Number(n) => assert_eq!(&text, n, "a Number is shown digit for digit"),
        AttrValue::Boolean(_) => assert!(shown.is_boolean()),
        AttrValue::String(_) | AttrValue::Date(_) => assert!(shown.is_string()),
    }
}

/// What DynamoDB stores exactly: a decimal of at most 38 significant digits whose magnitude,
/// computed from the text (not through a lossy f64), is within 1e-130 to 1e126, or 0 with an
/// exponent in that range.
fn check_storable_number(s: &str) {
    let x: f64 = s.parse().unwrap_or_else(|_| panic!("Number {s:?} is not a decimal"));
    assert!(x.is_finite(), "Number {s:?} is not finite");
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().unwrap_or_else(|_| panic!("Number {s:?}: exponent"))),
        None => (s, 0),
    };
    let mantissa = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()), "Number {s:?}");
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    assert!(significant <= 38, "Number {s:?} has {significant} significant digits");
    // The power of ten of the leading significant digit; a zero's exponent stays in that range too.
    let power = match digits.find(|c| c != '0') {
        Some(lead) => (digits.len() - lead - 1) as i64 - frac.len() as i64 + exponent,
        None => exponent,
    };
    assert!((-130..=125).contains(&power), "Number {s:?} (10^{power}) is not storable");
}

/// `YYYY-MM-DD` with a month of 1-12 and a day of 1-31 (the exact calendar is the unit tests').
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0..4, 5..7, 8..10].into_iter().all(|r| b[r].iter().all(u8::is_ascii_digit))
        && num(5..7).is_some_and(|m| (1..=12).contains(&m))
        && num(8..10).is_some_and(|d| (1..=31).contains(&d))
}

// ---------------------------------------------------------------------------------------------
// segment: POST .../segment and PUT .../segment/{segmentGuid}

/// Bytes -> JSON -> both segment request parsers.
pub fn segment(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(&domain::exact::protect_numbers(data)) else {
        return;
    };
    match CreateSegment::from_json(&body) {
        Ok(c) => {
            let n = c.name.chars().count();
            assert!((1..=MAX_NAME_CHARS).contains(&n) && !c.name.trim().is_empty(), "name {:?}", c.name);
            if let Some(id) = &c.external_id {
                let n = id.chars().count();
                assert!((1..=MAX_EXTERNAL_ID_CHARS).contains(&n), "external id of {n} characters");
            }
            check_segment_ids(&c.user_ids);
        }
        Err(errors) => check_segment_errors(&errors),
    }
    match UpdateSegment::from_json(&body) {
        Ok(u) => {
            check_segment_ids(&u.user_ids);
            if matches!(u.action, Action::Add | Action::Remove) {
                assert!(!u.user_ids.is_empty(), "add/remove without ids accepted");
            }
        }
        Err(errors) => check_segment_errors(&errors),
    }
}

fn check_segment_ids(ids: &[UserId]) {
    assert!(ids.len() <= MAX_IDS, "{} ids accepted", ids.len());
    let mut seen = HashSet::new();
    for id in ids {
        check_user_id(id);
        assert!(seen.insert(id), "duplicate id {id:?} kept");
    }
}

fn check_segment_errors(errors: &[Problem]) {
    check_details(errors, 0);
    let per_id =
        errors.iter().filter(|e| e.path.as_deref().is_some_and(|p| p.starts_with("userIds["))).count();
    assert!(per_id <= MAX_REPORTED, "{per_id} id problems listed");
}

// ---------------------------------------------------------------------------------------------
// token_request: POST /accounts/connect/token

/// Input: `<Authorization>\n<Content-Type>\n<body>`. An empty line is an absent header; a line
/// that is no valid visible-ASCII header value is absent too, as the handler's `header()` sees it.
pub fn token_request(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let authorization = parts.next().and_then(header_value);
    let content_type = parts.next().and_then(header_value);
    let body = parts.next().unwrap_or_default();
    let result = token_request::parse(authorization, content_type, body);
    assert_eq!(result, token_request::parse(authorization, content_type, body), "not deterministic");
    match result {
        Ok(r) => {
            assert!(body.len() <= token_request::MAX_BODY);
            assert!(!r.client_id.is_empty(), "empty client id accepted");
            assert!(!r.client_secret.expose().is_empty(), "empty secret accepted");
            if let Some(a) = authorization {
                let scheme = a.trim().get(..5).unwrap_or_default();
                assert!(scheme.eq_ignore_ascii_case("basic"), "credentials accepted from {a:?}");
            }
        }
        Err(e) => {
            assert!(
                matches!(
                    e.kind,
                    OAuthErrorKind::InvalidRequest
                        | OAuthErrorKind::InvalidClient
                        | OAuthErrorKind::UnsupportedGrantType
                ),
                "parse answered {e:?}"
            );
            assert!(matches!(e.kind.status(), 400 | 401));
            assert!(!e.description.is_empty());
        }
    }
}

fn header_value(line: &[u8]) -> Option<&str> {
    let visible = |b: &u8| *b == b'\t' || (0x20..0x7f).contains(b);
    if line.is_empty() || !line.iter().all(visible) {
        return None;
    }
    std::str::from_utf8(line).ok()
}

// ---------------------------------------------------------------------------------------------
// jwt_verify: bearer tokens on every other route

pub const ISSUER: &str = "https://api.example.test";
pub const AUDIENCE: &str = "end-user-data-api";
const CLIENT: &str = "7d68ba500d0a11e981b802edda63c0de";

/// One key pair for the whole run, its JWKS, and a valid token issued with it.
struct Keys {
    kid: String,
    rsa: EncodingKey,
    jwks: JwkSet,
    /// Secrets an attacker could try as an HMAC key (alg confusion): the public JWK, its `n`.
    public_material: Vec<Vec<u8>>,
    valid: String,
    /// When the run started: mode 2's times are offsets from it, so that its tokens (and their
    /// signatures) depend on the input alone.
    started: i64,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let generated = keys::generate().expect("an RSA key");
        let signing = SigningKey::from_pem(&generated.kid, &generated.private_pem).expect("its PEM");
        let rsa = EncodingKey::from_rsa_pem(generated.private_pem.as_bytes()).expect("its PEM");
        let jwk_json = serde_json::to_vec(&generated.public_jwk).expect("a JWK serializes");
        let n = serde_json::to_value(&generated.public_jwk).expect("a JWK serializes")["n"].to_string();
        let now = domain::Timestamp::now().epoch_secs();
        let claims = claims(now, 86_400, 0, 0);
        let valid = jwt::issue(&signing, &claims).expect("the token signs");
        let k = Keys {
            kid: generated.kid,
            rsa,
            jwks: JwkSet { keys: vec![generated.public_jwk] },
            public_material: vec![jwk_json, n.trim_matches('"').as_bytes().to_vec()],
            valid,
            started: now,
        };
        let (got, _, _) = jwt::verify(&k.valid, &k.jwks, ISSUER, AUDIENCE).expect("a fresh token verifies");
        assert_eq!(got, claims);
        k
    })
}

fn claims(now: i64, exp: i64, nbf: i64, iat: i64) -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        sub: CLIENT.into(),
        aud: AUDIENCE.into(),
        exp: now + exp,
        iat: now + iat,
        nbf: now + nbf,
        jti: "4f0c2b8e-0d0a-4f7e-9d2c-2a5b7c9e1f30".into(),
        client_id: CLIENT.into(),
        scope: "endUserUpdate:write segments:read".into(),
        account: "acme".into(),
        secret_version: None,
    }
}

/// The first byte picks a mode:
/// - 0: the rest, as text, is a token: `peek_kid` and `verify` must refuse it;
/// - 1: the rest is a list of edits applied to a valid token (bytes, parts, re-encoded parts,
///   signatures with our key or with the public key as an HMAC secret); whatever `verify`
///   accepts must be a token our key signed with RS256 and whose claims hold;
/// - 2: the rest picks claims (issuer, audience, times, subject, scope, account) for a token
///   our key signs; `verify` must accept it exactly when they are right.
pub fn jwt_verify(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            let _ = jwt::peek_kid(&token);
            let k = keys();
            let result = jwt::verify(&token, &k.jwks, ISSUER, AUDIENCE);
            assert!(result.is_err(), "a token not issued by our key was accepted: {token}");
        }
        1 => edited_token(rest),
        _ => chosen_claims(rest),
    }
}

/// Mode 1. Edits are read 3 bytes at a time: `op, a, b`.
fn edited_token(mut ops: &[u8]) {
    let k = keys();
    let mut token = k.valid.clone().into_bytes();
    // The tokens our key signed (RS256) in this run of edits.
    let mut signed: Vec<Vec<u8>> = vec![token.clone()];
    while let [op, a, b, tail @ ..] = ops {
        ops = tail;
        let (a, b) = (*a as usize, *b as usize);
        let mut parts: Vec<Vec<u8>> = token.split(|c| *c == b'.').map(<[u8]>::to_vec).collect();
        let len = token.len().max(1);
        match op % 10 {
            0 if !token.is_empty() => token[(a * 256 + b) % len] ^= 1 << (b % 8),
            1 => token.insert((a * 256 + b) % (token.len() + 1), b as u8),
            2 if !token.is_empty() => {
                token.remove((a * 256 + b) % len);
            }
            3 => token.truncate((a * 256 + b) % len),
            // Replace part `a % 4` with the (base64 of the) next `(a / 4) * 256 + b` input
            // bytes, `$KID` in them standing for our kid.
            4 | 5 => {
                let n = ((a / 4) * 256 + b).min(ops.len());
                let raw = String::from_utf8_lossy(&ops[..n]).replace("$KID", &k.kid);
                ops = &ops[n..];
                let encoded = if op % 10 == 4 { B64.encode(raw) } else { raw };
                let i = (a % 4).min(parts.len() - 1);
                parts[i] = encoded.into_bytes();
                token = parts.join(&b'.');
            }
            // Swap or drop parts; add a part.
            6 => {
                let n = parts.len();
                parts.swap(a % n, b % n);
                token = parts.join(&b'.');
            }
            7 => {
                if parts.len() > 1 {
                    parts.remove(a % parts.len());
                } else {
                    parts.push(parts[0].clone());
                }
                token = parts.join(&b'.');
            }
            // Sign what is there (all but the last part) with our key and RS256...
            8 => {
                let message = message_of(&token);
                let sig = rs256(&message);
                token = [message, sig.into_bytes()].join(&b'.');
                signed.push(token.clone());
            }
            // ... or with HS256 keyed by public material (must never verify).
            _ => {
                let message = message_of(&token);
                let secret = &k.public_material[a % k.public_material.len()];
                let key = EncodingKey::from_secret(secret);
                let alg = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512][b % 3];
                let sig = jsonwebtoken::crypto::sign(&message, &key, alg).expect("signs");
                token = [message, sig.into_bytes()].join(&b'.');
            }
        }
    }
    let text = String::from_utf8_lossy(&token);
    let _ = jwt::peek_kid(&text);
    let result = jwt::verify(&text, &k.jwks, ISSUER, AUDIENCE);
    if token == k.valid.as_bytes() {
        assert!(result.is_ok(), "the valid token was refused: {result:?}");
    }
    if let Ok((claims, scopes, account)) = result {
        assert!(
            signed.iter().any(|t| *t == text.as_bytes()),
            "accepted a token our key did not sign: {text}"
        );
        check_accepted(&text, &claims, scopes, &account);
    }
}

/// The RS256 signature of `message` by the run's key, base64url. PKCS#1 v1.5 signatures are
/// deterministic, so the ones made are kept (up to 4,096): an RSA signature costs about a
/// millisecond, and fuzzing signs the same bytes over and over.
fn rs256(message: &[u8]) -> String {
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(sig) = cache.lock().unwrap_or_else(PoisonError::into_inner).get(message) {
        return sig.clone();
    }
    let sig = jsonwebtoken::crypto::sign(message, &keys().rsa, Algorithm::RS256).expect("signs");
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= 4096 {
        cache.clear();
    }
    cache.insert(message.to_vec(), sig.clone());
    sig
}

/// Everything up to the last `.` (the signing input), or the whole token.
fn message_of(token: &[u8]) -> Vec<u8> {
    match token.iter().rposition(|c| *c == b'.') {
        Some(i) => token[..i].to_vec(),
        None => token.to_vec(),
    }
}

/// What an accepted token must be: RS256, `at+jwt`, our kid, the claims it carries, and those
/// claims right for this verifier.
fn check_accepted(token: &str, claims: &AccessClaims, scopes: ScopeSet, account: &AccountId) {
    let header = jsonwebtoken::decode_header(token).expect("an accepted token has a header");
    assert_eq!(header.alg, Algorithm::RS256);
    assert!(header.typ.is_some_and(|t| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")));
    assert_eq!(header.kid.as_deref(), Some(keys().kid.as_str()));
    let payload = token.split('.').nth(1).and_then(|p| B64.decode(p).ok()).expect("a payload");
    let carried: AccessClaims = serde_json::from_slice(&payload).expect("the payload holds the claims");
    assert_eq!(&carried, claims, "the claims returned are not the ones signed");
    let now = domain::Timestamp::now().epoch_secs();
    let leeway = LEEWAY_SECS as i64 + 5; // time passes while the harness runs
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.aud, AUDIENCE);
    assert!(claims.exp >= now - leeway, "expired token accepted");
    assert!(claims.nbf <= now + leeway && claims.iat <= now + leeway, "future token accepted");
    assert_eq!(claims.sub, claims.client_id);
    assert_eq!(Ok(scopes), ScopeSet::parse(&claims.scope), "scopes differ from the claim");
    assert_eq!(account.as_str(), claims.account);
}

/// Mode 2: `[iss, aud, exp, nbf, iat, sub, scope, account]`, one byte each (missing bytes are 0,
/// the valid choice). Times are offsets from the run's start in steps of 7 s.
fn chosen_claims(input: &[u8]) {
    let byte = |i: usize| input.get(i).copied().unwrap_or(0);
    let offset = |i: usize| (byte(i) as i8 as i64) * 7; // -896..=889 s
    let k = keys();
    let mut c = claims(k.started, offset(2) + 3_600 * i64::from(byte(2) == 0), offset(3), offset(4));
    let issuers =
        [ISSUER, "https://api.example.test/", "https://evil.example", "", "HTTPS://API.EXAMPLE.TEST"];
    let audiences = [AUDIENCE, "end-user-data-api ", "other-api", ""];
    let scopes = [
        "endUserUpdate:write segments:read",
        "",
        "segments:read  segments:write",
        "users:read",
        "Segments:read",
    ];
    let accounts = ["acme", "", "a/b", "ACME-1"];
    c.iss = issuers[byte(0) as usize % issuers.len()].into();
    c.aud = audiences[byte(1) as usize % audiences.len()].into();
    if byte(5) % 2 == 1 {
        c.sub = "someone-else".into();
    }
    c.scope = scopes[byte(6) as usize % scopes.len()].into();
    c.account = accounts[byte(7) as usize % accounts.len()].into();
    // What `jwt::issue` writes, signed through the cache.
    let header = json!({"typ": jwt::ACCESS_TOKEN_TYP, "alg": "RS256", "kid": k.kid});
    let message =
        format!("{}.{}", B64.encode(header.to_string()), B64.encode(serde_json::to_vec(&c).expect("claims")));
    let token = format!("{message}.{}", rs256(message.as_bytes()));
    let now = domain::Timestamp::now().epoch_secs();
    let result = jwt::verify(&token, &k.jwks, ISSUER, AUDIENCE);
    let leeway = LEEWAY_SECS as i64;
    let expected = c.iss == ISSUER
        && c.aud == AUDIENCE
        && c.exp >= now - leeway
        && c.nbf <= now + leeway
        && c.iat <= now + leeway
        && c.sub == c.client_id
        && ScopeSet::parse(&c.scope).is_ok()
        && AccountId::parse(&c.account).is_ok();
    // Within 2 s of an edge the second that passes between `now` and the verifier's clock could
    // flip the answer: no verdict is asserted there.
    let edges = [c.exp - (now - leeway), c.nbf - (now + leeway), c.iat - (now + leeway)];
    if edges.iter().all(|d| d.abs() > 2) {
        assert_eq!(result.is_ok(), expected, "claims {c:?}: verify answered {result:?}");
    }
    match result {
        Ok((claims, scopes, account)) => check_accepted(&token, &claims, scopes, &account),
        Err(e) => assert!(!matches!(e, TokenError::Sign | TokenError::UnknownKey | TokenError::Algorithm)),
    }
}

// ---------------------------------------------------------------------------------------------
// import_rows: an uploaded import file, as the import worker splits it into rows

/// First byte: bit 0 the format (CSV, NDJSON), the rest the size of the chunks the file
/// arrives in (1 to 128 bytes); the rest is the file. The rows, their offsets and the outcome
/// must not depend on how the bytes arrive; offsets grow and stay inside the file; a CSV row
/// holds at most `MAX_ROW_FIELDS` fields of at most `MAX_ROW_BYTES` in all.
pub fn import_rows(data: &[u8]) {
    use domain::import::{Format, MAX_ROW_BYTES, MAX_ROW_FIELDS};
    use domain::import_rows::{Row, split_all};
    let Some((&mode, file)) = data.split_first() else { return };
    let format = if mode & 1 == 0 { Format::Csv } else { Format::Ndjson };
    let chunk = usize::from(mode >> 1) + 1;
    let (rows, end) = split_all(format, file, chunk);
    assert_eq!(
        (&rows, &end),
        (&split_all(format, file, usize::MAX).0, &split_all(format, file, usize::MAX).1)
    );
    let mut last = 0;
    let mut bytes = 0;
    for (row, offset) in &rows {
        assert!(*offset > last && *offset <= file.len() as u64, "offset {offset} after {last}");
        last = *offset;
        let (fields, n) = match row {
            Row::Header(f, n) | Row::Data(f, n) => (f.as_slice(), *n),
            Row::Blank(n) => (&[][..], *n),
        };
        bytes += n;
        assert!(fields.len() <= MAX_ROW_FIELDS);
        assert!(fields.iter().map(String::len).sum::<usize>() <= MAX_ROW_BYTES);
        if format == Format::Ndjson {
            assert!(fields.len() <= 1 && !fields.iter().any(|f| f.trim().is_empty() || f.contains('\n')));
        }
    }
    assert!(bytes <= file.len());
    if let Err(reason) = end {
        assert!(!reason.is_empty());
    }
}
