//! POST /accounts/connect/token and the /.well-known documents, against the local server.

use integration_tests::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

const FORM: &str = "application/x-www-form-urlencoded";

fn app(stack: &Stack) -> Served<token::App> {
    stack.token_app()
}

async fn post_token(app: &Served<token::App>, auth: Option<&str>, content_type: &str, body: &str) -> Answer {
    let mut headers = vec![("content-type", content_type)];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    answer(edge::front::serve(app, req("POST", "/accounts/connect/token", &headers, Some(body))).await)
}

async fn jwks(app: &Served<token::App>) -> JwkSet {
    let a = answer(edge::front::serve(app, req("GET", "/.well-known/jwks.json", &[], None)).await);
    assert_eq!(a.status, 200);
    serde_json::from_value(a.body).unwrap()
}

/// Verifies as a third party would: the JWKS document and a standard JWT library, nothing else.
fn third_party_verify(token: &str, set: &JwkSet) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = set.find(header.kid.as_deref().unwrap()).expect("kid published in JWKS");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap().claims
}

#[tokio::test]
async fn seed_curl_request_gets_a_verifiable_rfc9068_token() {
    let stack = Stack::new().await;
    let app = app(&stack);
    let a = post_token(&app, Some(&stack.basic()), FORM, "grant_type=client_credentials").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("pragma"), Some("no-cache"));
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(a.body["expires_in"], 86400);
    assert!(a.body.get("refresh_token").is_none());
    let all = "endUserUpdate:write endUsers:read endUsers:delete segments:read segments:write integrations:read integrations:write";
    assert_eq!(a.body["scope"], all);

    let claims = third_party_verify(a.body["access_token"].as_str().unwrap(), &jwks(&app).await);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], stack.client_id.as_str());
    assert_eq!(claims["client_id"], stack.client_id.as_str());
    assert_eq!(claims["account"], "acme");
    assert_eq!(claims["scope"], all);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 86400);
    assert!(claims["jti"].as_str().unwrap().len() >= 32);
}

#[tokio::test]
async fn form_and_json_bodies_and_scope_subsets() {
    let stack = Stack::new().await;
    let app = app(&stack);
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope=segments%3Aread",
        stack.client_id,
        stack.client_secret.expose()
    );
    let a = post_token(&app, None, FORM, &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["scope"], "segments:read");

    let json = r#"{"grant_type":"client_credentials","scope":"endUsers:read segments:write"}"#;
    let a = post_token(&app, Some(&stack.basic()), "application/json", json).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["scope"], "endUsers:read segments:write");

    // A scope the client does not hold, and one that does not exist.
    let read_only = domain::ScopeSet::parse("segments:read").unwrap();
    let (limited, secret) = stack.create_client(&stack.account, "limited", read_only, 0).await.unwrap();
    let auth = basic(limited.client_id.as_str(), secret.expose());
    let a = post_token(&app, Some(&auth), FORM, "grant_type=client_credentials&scope=segments%3Awrite").await;
    assert_eq!((a.status, a.body["error"].as_str()), (400, Some("invalid_scope")));
    let a = post_token(&app, Some(&auth), FORM, "grant_type=client_credentials&scope=users%3Aread").await;
    assert_eq!((a.status, a.body["error"].as_str()), (400, Some("invalid_scope")));
    let a = post_token(&app, Some(&auth), FORM, "grant_type=client_credentials").await;
    assert_eq!((a.status, a.body["scope"].as_str()), (200, Some("segments:read")));
}

#[tokio::test]
async fn invalid_client_looks_the_same_for_unknown_disabled_and_wrong_secret() {
    let stack = Stack::new().await;
    let app = app(&stack);
    let (_, other_id, other_secret) = stack.other_account("globex").await;
    let now = domain::Timestamp::now().epoch_secs();
    stack.store.disable_client(&domain::ClientId::parse(&other_id).unwrap(), now, 3600).await.unwrap();

    let cases = [
        basic("0123456789abcdef0123456789abcdef", stack.client_secret.expose()),
        basic(&stack.client_id, "wrong-secret"),
        basic(&other_id, other_secret.expose()),
    ];
    let mut bodies = Vec::new();
    for auth in &cases {
        let a = post_token(&app, Some(auth), FORM, "grant_type=client_credentials").await;
        assert_eq!(a.status, 401);
        assert!(a.header("www-authenticate").unwrap().starts_with("Basic"));
        assert_eq!(a.header("cache-control"), Some("no-store"));
        bodies.push(a.raw);
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1], bodies[2]);
    let body: Value = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(body["error"], "invalid_client");

    // No credentials at all.
    let a = post_token(&app, None, FORM, "grant_type=client_credentials").await;
    assert_eq!((a.status, a.body["error"].as_str()), (401, Some("invalid_client")));
}

#[tokio::test]
async fn rfc6749_request_errors() {
    let stack = Stack::new().await;
    let app = app(&stack);
    let auth = stack.basic();
    for (ct, body, status, code) in [
        (FORM, "grant_type=password", 400, "unsupported_grant_type"),
        (FORM, "", 400, "invalid_request"),
        (FORM, "scope=segments%3Aread", 400, "invalid_request"),
        ("text/plain", "grant_type=client_credentials", 400, "invalid_request"),
        ("application/json", "{not json", 400, "invalid_request"),
    ] {
        let a = post_token(&app, Some(&auth), ct, body).await;
        assert_eq!((a.status, a.body["error"].as_str()), (status, Some(code)), "{ct} {body}");
        assert!(a.body["error_description"].is_string());
    }
    // Credentials in header and body at once.
    let body = format!("grant_type=client_credentials&client_id={}", stack.client_id);
    let a = post_token(&app, Some(&auth), FORM, &body).await;
    assert_eq!((a.status, a.body["error"].as_str()), (400, Some("invalid_request")));
    // Wrong method, unknown route.
    let a = answer(edge::front::serve(&app, req("GET", "/accounts/connect/token", &[], None)).await);
    assert_eq!((a.status, a.header("allow")), (405, Some("POST")));
    let a = answer(edge::front::serve(&app, req("GET", "/nope", &[], None)).await);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (404, Some("route_not_found")));
}

#[tokio::test]
async fn wrong_secrets_never_lock_out_the_right_one_and_cost_no_write() {
    let stack = Stack::new().await;
    let app = app(&stack);
    let ok = "grant_type=client_credentials";
    post_token(&app, Some(&stack.basic()), FORM, ok).await; // warm the signing key
    stack.counter.reset();
    // Anyone can read a client id in any token: a flood of guesses for it...
    for i in 0..50 {
        let a = post_token(&app, Some(&basic(&stack.client_id, &format!("guess-{i}"))), FORM, ok).await;
        assert_eq!(a.status, 401);
    }
    let ops = stack.counter.take();
    assert!(ops.iter().all(|op| op == "GetItem"), "no write for a failure: {ops:?}");
    assert!(ops.len() <= 2, "one read per second at most: {ops:?}");
    // ...never refuses the right secret, which is judged on a fresh read.
    let a = post_token(&app, Some(&stack.basic()), FORM, ok).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(stack.counter.take(), ["GetItem"]);
    // Unknown ids: one read each, then none for a minute; malformed ids: none.
    let unknown = basic("ffffffffffffffffffffffffffffffff", "guess");
    for _ in 0..5 {
        assert_eq!(post_token(&app, Some(&unknown), FORM, ok).await.status, 401);
    }
    assert_eq!(stack.counter.take(), ["GetItem"]);
    assert_eq!(post_token(&app, Some(&basic("not an id!", "x")), FORM, ok).await.status, 401);
    assert!(stack.counter.take().is_empty());
}

#[tokio::test]
async fn a_rotated_secret_stops_at_once_even_on_a_warm_instance() {
    let stack = Stack::new().await;
    let app = app(&stack);
    let ok = "grant_type=client_credentials";
    assert_eq!(post_token(&app, Some(&stack.basic()), FORM, ok).await.status, 200);
    let id = domain::ClientId::parse(&stack.client_id).unwrap();
    let new = auth::ClientSecret::generate();
    let now = domain::Timestamp::now().epoch_secs();
    stack.store.rotate_client_secret(&id, &new.hash(), now, 3600).await.unwrap();
    assert_eq!(post_token(&app, Some(&stack.basic()), FORM, ok).await.status, 401, "old secret");
    let fresh = basic(&stack.client_id, new.expose());
    assert_eq!(post_token(&app, Some(&fresh), FORM, ok).await.status, 200, "new secret");
}

#[tokio::test]
async fn dynamodb_requests_per_token_call() {
    let stack = Stack::new().await;
    let app = app(&stack);
    let ok = "grant_type=client_credentials";
    post_token(&app, Some(&stack.basic()), FORM, ok).await;
    // Cold: the signing key (keys table) and the client (config table).
    assert_eq!(stack.counter.take(), ["Query", "GetItem"]);
    post_token(&app, Some(&stack.basic()), FORM, ok).await;
    assert_eq!(stack.counter.take(), ["GetItem"], "warm: one read per token");
    post_token(&app, Some(&stack.basic()), FORM, "grant_type=password").await;
    assert!(stack.counter.take().is_empty(), "a malformed request costs nothing");
}

#[tokio::test]
async fn the_public_key_document_costs_one_read_per_instance_per_interval() {
    let stack = Stack::new().await;
    let app = app(&stack);
    for _ in 0..10 {
        assert_eq!(jwks(&app).await.keys.len(), 1);
    }
    assert_eq!(stack.counter.take(), ["Query"]);
}

#[tokio::test]
async fn discovery_document_names_the_issuer_and_jwks() {
    let stack = Stack::new().await;
    let app = app(&stack);
    let a =
        answer(edge::front::serve(&app, req("GET", "/.well-known/openid-configuration", &[], None)).await);
    assert_eq!(a.status, 200);
    assert_eq!(a.body["issuer"], ISSUER);
    assert_eq!(a.body["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
    assert_eq!(a.body["token_endpoint"], format!("{ISSUER}/accounts/connect/token"));
    let set = jwks(&app).await;
    assert_eq!(set.keys.len(), 1);
    let text = serde_json::to_string(&set).unwrap();
    for private_member in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\""] {
        assert!(!text.contains(private_member), "JWKS leaks {private_member}");
    }
}
