//! Bearer verification (auth::Authenticator) as every later endpoint uses it.

use std::time::Duration;

use auth::jwt::{self, AccessClaims};
use auth::{Authenticator, BearerError, SigningKey, TokenError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use domain::Scope;
use edge::front::Dialect;
use edge::http::ApiError;
use edge::http::error::render;
use integration_tests::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

async fn signing_key(stack: &Stack) -> SigningKey {
    let stored =
        stack.store.current_signing_key(domain::Timestamp::now().epoch_secs()).await.unwrap().unwrap();
    SigningKey::from_pem(&stored.kid, &stored.private_pem).unwrap()
}

fn claims(stack: &Stack) -> AccessClaims {
    let now = domain::Timestamp::now().epoch_secs();
    AccessClaims {
        iss: ISSUER.into(),
        sub: stack.client_id.clone(),
        aud: AUDIENCE.into(),
        exp: now + 600,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: stack.client_id.clone(),
        scope: "segments:read endUsers:read".into(),
        account: "acme".into(),
        secret_version: None,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn check(auth: &Authenticator, token: &str) -> Result<(), BearerError> {
    auth.authenticate(Some(&bearer(token)), Some("api.test.example"), Scope::SegmentsRead).await.map(|_| ())
}

fn invalid(r: Result<(), BearerError>) -> TokenError {
    match r {
        Err(BearerError::Invalid(e)) => e,
        other => panic!("expected invalid_token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_yields_the_principal() {
    let stack = Stack::new().await;
    let auth = Authenticator::new(stack.store.clone(), &auth_config());
    let token = jwt::issue(&signing_key(&stack).await, &claims(&stack)).unwrap();
    let p = auth.authenticate(Some(&bearer(&token)), None, Scope::EndUsersRead).await.unwrap();
    assert_eq!(p.account.as_str(), "acme");
    assert_eq!(p.client_id, stack.client_id);
    // Keys are cached: the second check reads nothing.
    stack.counter.reset();
    auth.authenticate(Some(&bearer(&token)), None, Scope::EndUsersRead).await.unwrap();
    assert!(stack.counter.take().is_empty());
}

#[tokio::test]
async fn scope_missing_is_403_insufficient_scope() {
    let stack = Stack::new().await;
    let auth = Authenticator::new(stack.store.clone(), &auth_config());
    let token = jwt::issue(&signing_key(&stack).await, &claims(&stack)).unwrap();
    let err = auth.authenticate(Some(&bearer(&token)), None, Scope::SegmentsWrite).await.unwrap_err();
    assert!(matches!(err, BearerError::InsufficientScope(Scope::SegmentsWrite)));
    let a = answer(render(ApiError::from(err), Dialect::Rest, "r1"));
    assert_eq!(a.status, 403);
    assert_eq!(a.body["error"]["code"], "insufficient_scope");
    let challenge = a.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"segments:write\""));
}

#[tokio::test]
async fn missing_credentials_get_a_bare_challenge() {
    let stack = Stack::new().await;
    let auth = Authenticator::new(stack.store.clone(), &auth_config());
    for header in [None, Some("Basic Zm9vOmJhcg==")] {
        let err = auth.authenticate(header, None, Scope::SegmentsRead).await.unwrap_err();
        assert!(matches!(err, BearerError::Missing));
        let a = answer(render(ApiError::from(err), Dialect::Rest, "r1"));
        assert_eq!((a.status, a.header("www-authenticate")), (401, Some("Bearer")));
        assert_eq!(a.body["error"]["requestId"], "r1");
    }
    assert!(stack.counter.take().is_empty(), "no credentials, no reads");
}

#[tokio::test]
async fn expired_premature_wrong_issuer_or_audience_are_refused() {
    let stack = Stack::new().await;
    let auth = Authenticator::new(stack.store.clone(), &auth_config());
    let key = signing_key(&stack).await;
    let now = domain::Timestamp::now().epoch_secs();

    let mut c = claims(&stack);
    c.exp = now - 31; // past the 30 s leeway
    assert!(matches!(invalid(check(&auth, &jwt::issue(&key, &c).unwrap()).await), TokenError::Expired));
    c.exp = now - 10; // inside the leeway
    assert!(check(&auth, &jwt::issue(&key, &c).unwrap()).await.is_ok());

    let mut c = claims(&stack);
    c.nbf = now + 120;
    assert!(matches!(invalid(check(&auth, &jwt::issue(&key, &c).unwrap()).await), TokenError::NotYetValid));

    let mut c = claims(&stack);
    c.iss = "https://evil.example".into();
    assert!(matches!(invalid(check(&auth, &jwt::issue(&key, &c).unwrap()).await), TokenError::Issuer));

    let mut c = claims(&stack);
    c.aud = "another-api".into();
    assert!(matches!(invalid(check(&auth, &jwt::issue(&key, &c).unwrap()).await), TokenError::Audience));

    let a = answer(render(ApiError::from(BearerError::Invalid(TokenError::Expired)), Dialect::Rest, "r"));
    assert_eq!(a.status, 401);
    assert!(a.header("www-authenticate").unwrap().starts_with("Bearer error=\"invalid_token\""));
}

#[tokio::test]
async fn algorithm_confusion_and_forgery_are_refused() {
    let stack = Stack::new().await;
    let auth = Authenticator::new(stack.store.clone(), &auth_config());
    let key = signing_key(&stack).await;
    let good = jwt::issue(&key, &claims(&stack)).unwrap();
    let parts: Vec<&str> = good.split('.').collect();

    // alg: none, no signature.
    let none_header = B64.encode(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{}"}}"#, key.kid));
    let none = format!("{none_header}.{}.", parts[1]);
    assert!(matches!(invalid(check(&auth, &none).await), TokenError::Malformed | TokenError::Algorithm));

    // HS256 keyed with the public key material (the classic confusion attack).
    let jwk = stack.store.public_keys(domain::Timestamp::now().epoch_secs()).await.unwrap().remove(0);
    let public_json = serde_json::to_vec(&jwk).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.typ = Some("at+jwt".into());
    h.kid = Some(key.kid.clone());
    let hs = jsonwebtoken::encode(&h, &claims(&stack), &EncodingKey::from_secret(&public_json)).unwrap();
    assert!(matches!(invalid(check(&auth, &hs).await), TokenError::Algorithm));

    // typ JWT (an ID token or some other JWT) is not an access token.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(key.kid.clone());
    h.typ = Some("JWT".into());
    let stored =
        stack.store.current_signing_key(domain::Timestamp::now().epoch_secs()).await.unwrap().unwrap();
    let enc = EncodingKey::from_rsa_pem(stored.private_pem.as_bytes()).unwrap();
    let typ_jwt = jsonwebtoken::encode(&h, &claims(&stack), &enc).unwrap();
    assert!(matches!(invalid(check(&auth, &typ_jwt).await), TokenError::Type));

    // Payload changed after signing.
    let mut c = claims(&stack);
    c.scope = "segments:read segments:write".into();
    let forged = format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(&c).unwrap()), parts[2]);
    assert!(matches!(invalid(check(&auth, &forged).await), TokenError::Signature));

    // Garbage, and an empty bearer.
    assert!(matches!(invalid(check(&auth, "not.a.jwt").await), TokenError::Malformed));
    let r = auth.authenticate(Some("Bearer "), None, Scope::SegmentsRead).await.map(|_| ());
    assert!(matches!(invalid(r), TokenError::Malformed));
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_and_unknown_kids_refresh_once() {
    let stack = Stack::new().await;
    let auth = Authenticator::new(stack.store.clone(), &auth_config());
    let old = jwt::issue(&signing_key(&stack).await, &claims(&stack)).unwrap();
    check(&auth, &old).await.unwrap();

    // Signed with the rotated key itself: a rotation in the same second as the stack's first
    // key ties with it on (activeFrom, createdAt), and which of the two signs then is the
    // store's choice, not this test's point.
    let rotated = stack.rotate_signing_key(domain::Timestamp::now().epoch_secs(), 3600).await.unwrap();
    let new_key = SigningKey::from_pem(&rotated.kid, &rotated.private_pem).unwrap();
    let new = jwt::issue(&new_key, &claims(&stack)).unwrap();
    stack.counter.reset();
    // The cached key set does not know the new kid yet: one refresh, then it verifies.
    check(&auth, &new).await.unwrap();
    assert_eq!(stack.counter.take(), ["Query"]);
    check(&auth, &old).await.unwrap();

    // A flood of unknown kids costs no further reads inside the refresh interval.
    let mut h = Header::new(Algorithm::RS256);
    h.typ = Some("at+jwt".into());
    h.kid = Some("unknown-kid".into());
    let stored =
        stack.store.current_signing_key(domain::Timestamp::now().epoch_secs()).await.unwrap().unwrap();
    let enc = EncodingKey::from_rsa_pem(stored.private_pem.as_bytes()).unwrap();
    let unknown = jsonwebtoken::encode(&h, &claims(&stack), &enc).unwrap();
    stack.counter.reset();
    for _ in 0..5 {
        assert!(matches!(invalid(check(&auth, &unknown).await), TokenError::UnknownKey));
    }
    assert!(stack.counter.take().is_empty());

    // Once retired, a key no longer verifies (a fresh verifier reads the key set anew).
    stack.rotate_signing_key(domain::Timestamp::now().epoch_secs(), 0).await.unwrap();
    let fresh = Authenticator::new(stack.store.clone(), &auth_config());
    assert!(matches!(invalid(check(&fresh, &new).await), TokenError::UnknownKey));
    check(&fresh, &old).await.unwrap(); // retired an hour from its own rotation, not yet
}

#[tokio::test]
async fn disabling_a_client_or_rotating_its_secret_stops_its_tokens() {
    let stack = Stack::new().await;
    // Zero: re-read at every check, as a warm instance does once its 30 s have passed.
    let auth = Authenticator::new(stack.store.clone(), &auth_config()).with_max_key_age(Duration::ZERO);
    let key = signing_key(&stack).await;
    let token = jwt::issue(&key, &claims(&stack)).unwrap();
    assert!(check(&auth, &token).await.is_ok());
    let id = domain::ClientId::parse(&stack.client_id).unwrap();
    let now = domain::Timestamp::now().epoch_secs();
    stack.store.disable_client(&id, now, 3600).await.unwrap();
    assert!(matches!(invalid(check(&auth, &token).await), TokenError::Revoked));
    // A disabled client's tokens are refused whenever they were minted.
    let later = AccessClaims { iat: now + 1, nbf: now + 1, secret_version: Some(0), ..claims(&stack) };
    assert!(matches!(invalid(check(&auth, &jwt::issue(&key, &later).unwrap()).await), TokenError::Revoked));
    // Another client's tokens are untouched.
    let (_, other_id, _) = stack.other_account("globex").await;
    let other = AccessClaims {
        sub: other_id.clone(),
        client_id: other_id,
        account: "globex".into(),
        ..claims(&stack)
    };
    assert!(check(&auth, &jwt::issue(&key, &other).unwrap()).await.is_ok());

    // Rotation of the secret revokes the same way.
    let (_, third_id, _) = stack.other_account("initech").await;
    let third = AccessClaims {
        sub: third_id.clone(),
        client_id: third_id.clone(),
        account: "initech".into(),
        ..claims(&stack)
    };
    let third_token = jwt::issue(&key, &third).unwrap();
    assert!(check(&auth, &third_token).await.is_ok());
    let secret = auth::ClientSecret::generate();
    let id = domain::ClientId::parse(&third_id).unwrap();
    let now = domain::Timestamp::now().epoch_secs();
    stack.store.rotate_client_secret(&id, &secret.hash(), now, 3600).await.unwrap();
    assert!(matches!(invalid(check(&auth, &third_token).await), TokenError::Revoked));
}

#[tokio::test]
async fn a_warm_verifier_reads_keys_and_revocations_once_per_interval() {
    let stack = Stack::new().await;
    let auth = Authenticator::new(stack.store.clone(), &auth_config());
    let token = jwt::issue(&signing_key(&stack).await, &claims(&stack)).unwrap();
    stack.counter.reset();
    for _ in 0..20 {
        check(&auth, &token).await.unwrap();
    }
    assert_eq!(stack.counter.take(), ["Query"], "one read, not one per call");
}

#[tokio::test]
async fn a_revoked_signing_key_stops_verifying() {
    let stack = Stack::new().await;
    let auth = Authenticator::new(stack.store.clone(), &auth_config()).with_max_key_age(Duration::ZERO);
    let key = signing_key(&stack).await;
    let token = jwt::issue(&key, &claims(&stack)).unwrap();
    assert!(check(&auth, &token).await.is_ok());
    // As `admin keys revoke` does for the current key: a new key first, then the revocation.
    let now = domain::Timestamp::now().epoch_secs();
    let new = stack.rotate_signing_key(now, 3600).await.unwrap();
    assert!(check(&auth, &token).await.is_ok(), "a plain rotation keeps old tokens valid");
    stack.store.revoke_signing_key(&key.kid).await.unwrap();
    assert!(matches!(invalid(check(&auth, &token).await), TokenError::UnknownKey));
    assert_eq!(
        stack.store.current_signing_key(domain::Timestamp::now().epoch_secs()).await.unwrap().unwrap().kid,
        new.kid
    );
    assert!(check(&auth, &jwt::issue(&signing_key(&stack).await, &claims(&stack)).unwrap()).await.is_ok());
    assert!(matches!(stack.store.revoke_signing_key(&key.kid).await, Err(store::StoreError::NotFound(_))));
}
