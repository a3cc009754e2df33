//! Issuing an access token (`auth::jwt::issue`, RS256 with a 2048-bit key, as the
//! token endpoint does) and verifying it (`auth::jwt::verify`, the bearer check every
//! other route runs: header, key lookup in the JWKS, signature, `iss`/`aud`/`exp`/`nbf`,
//! scopes, account) next to two baselines in the same run: a bare `serde_json` parse of the
//! same claims and a base64url decode of the token's payload. Report the ratios
//! (`cargo bench -p auth --bench token`).

use auth::jwt::{self, AccessClaims};
use auth::{SigningKey, keys};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::JwkSet;
use std::hint::black_box;

const ISSUER: &str = "https://api.example.com";
const AUDIENCE: &str = "end-user-data-api";

/// The claims the token endpoint issues for a client holding every scope.
fn claims() -> AccessClaims {
    let now = domain::Timestamp::now().epoch_secs();
    AccessClaims {
        iss: ISSUER.into(),
        sub: "42b8391f17dd4846bbc28818a15c7e15".into(),
        aud: AUDIENCE.into(),
        exp: now + 86_400,
        iat: now,
        nbf: now,
        jti: "0b5c3a52-8f0e-4c3c-9d8e-3a1f2b4c5d6e".into(),
        client_id: "42b8391f17dd4846bbc28818a15c7e15".into(),
        scope: "endUserUpdate:write endUsers:read endUsers:delete segments:read segments:write \
                integrations:read integrations:write"
            .into(),
        account: "acme".into(),
        secret_version: None,
    }
}

fn bench(c: &mut Criterion) {
    let generated = keys::generate().expect("an RSA key");
    let key = SigningKey::from_pem(&generated.kid, &generated.private_pem).expect("a signing key");
    let jwks = JwkSet { keys: vec![generated.public_jwk.clone()] };
    let claims = claims();
    let claims_json = serde_json::to_vec(&claims).unwrap();
    let token = jwt::issue(&key, &claims).unwrap();
    let payload = token.split('.').nth(1).unwrap().to_string();
    let (verified, _, _) = jwt::verify(&token, &jwks, ISSUER, AUDIENCE).expect("the token verifies");
    assert_eq!(verified, claims);
    eprintln!("token: {} bytes, claims: {} bytes", token.len(), claims_json.len());

    let mut group = c.benchmark_group("access token");
    group.bench_function("baseline: serde_json::from_slice::<AccessClaims>", |b| {
        b.iter(|| black_box(serde_json::from_slice::<AccessClaims>(black_box(&claims_json)).unwrap()))
    });
    group.bench_function("baseline: base64url decode of the payload", |b| {
        b.iter(|| black_box(URL_SAFE_NO_PAD.decode(black_box(payload.as_bytes())).unwrap()))
    });
    group.bench_function("issue (jwt::issue, RS256 sign)", |b| {
        b.iter(|| black_box(jwt::issue(&key, black_box(&claims)).unwrap()))
    });
    group.bench_function("verify (jwt::verify, the bearer check)", |b| {
        b.iter(|| black_box(jwt::verify(black_box(&token), &jwks, ISSUER, AUDIENCE).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
