//! Revocation without a clock gap, and signing keys published before they sign: tokens minted
//! by the token function's own code while an operator disables a client or rotates its secret,
//! then checked by the bearer verifier; a key rotation judged at chosen instants.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auth::keys::ACTIVATION_LEAD_SECS;
use auth::recent::Recent;
use auth::token_request::{self, TokenRequest};
use auth::token_service::{self, TokenSettings};
use auth::{Authenticator, BearerError, ClientSecret, SigningKey, TokenError};
use domain::{ClientId, Scope};
use integration_tests::*;
use store::ClientRevocation;

/// How long the operator's tool takes between reading its clock and its write landing (with
/// clock skew, a slow network): the window in which a token minted with the old credentials
/// used to outlive the revocation.
const TOOL_LAG: Duration = Duration::from_millis(2_300);

fn request(client_id: &str, secret: &ClientSecret) -> TokenRequest {
    token_request::parse(
        Some(&basic(client_id, secret.expose())),
        Some("application/x-www-form-urlencoded"),
        b"grant_type=client_credentials",
    )
    .expect("a well-formed token request")
}

/// Mints tokens through the token endpoint's own code until `stop`; each success's token and
/// its `iat`.
async fn mint_until(
    stack: &Stack,
    key: &SigningKey,
    request: &TokenRequest,
    stop: &AtomicBool,
) -> Vec<(String, i64)> {
    let reads = Recent::default();
    let settings = settings();
    let mut minted = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let now = domain::Timestamp::now().epoch_secs();
        if let Ok(issued) =
            token_service::issue_token(&stack.store, &reads, key, &settings, request, now).await
        {
            minted.push((issued.access_token, now));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    minted
}

fn settings() -> TokenSettings {
    TokenSettings { issuer: ISSUER.into(), audience: AUDIENCE.into(), ttl_secs: 600 }
}

async fn current_key(stack: &Stack) -> SigningKey {
    let stored =
        stack.store.current_signing_key(domain::Timestamp::now().epoch_secs()).await.unwrap().unwrap();
    SigningKey::from_pem(&stored.kid, &stored.private_pem).unwrap()
}

async fn verdict(auth: &Authenticator, token: &str) -> Result<(), BearerError> {
    auth.authenticate(Some(&format!("Bearer {token}")), None, Scope::SegmentsRead).await.map(|_| ())
}

fn revoked(r: Result<(), BearerError>) -> bool {
    matches!(r, Err(BearerError::Invalid(TokenError::Revoked)))
}

#[tokio::test]
async fn no_token_minted_while_a_client_is_being_disabled_survives_it() {
    let stack = Stack::new().await;
    let key = current_key(&stack).await;
    // Zero: the verifier re-reads revocations at every check, as after its refresh interval.
    let auth = Authenticator::new(stack.store.clone(), &auth_config()).with_max_key_age(Duration::ZERO);
    let id = ClientId::parse(&stack.client_id).unwrap();
    let stop = AtomicBool::new(false);
    let operator = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = domain::Timestamp::now().epoch_secs();
        tokio::time::sleep(TOOL_LAG).await;
        stack.store.disable_client(&id, now, 3600).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        now
    };
    let asking = request(&stack.client_id, &stack.client_secret);
    let (minted, stamped) = tokio::join!(mint_until(&stack, &key, &asking, &stop), operator);
    assert!(minted.len() >= 3, "minted {}", minted.len());
    // The gap is exercised: tokens minted after the operator's clock read, before its write.
    assert!(minted.iter().any(|(_, iat)| *iat > stamped), "no token minted inside the gap");
    for (token, iat) in &minted {
        assert!(
            revoked(verdict(&auth, token).await),
            "a token minted at {iat} (operator's now {stamped}) verifies"
        );
    }
}

#[tokio::test]
async fn a_secret_rotation_refuses_every_old_secret_token_and_none_of_the_new() {
    let stack = Stack::new().await;
    let key = current_key(&stack).await;
    let auth = Authenticator::new(stack.store.clone(), &auth_config()).with_max_key_age(Duration::ZERO);
    let id = ClientId::parse(&stack.client_id).unwrap();
    let new_secret = ClientSecret::generate();
    let stop = AtomicBool::new(false);
    let operator = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = domain::Timestamp::now().epoch_secs();
        tokio::time::sleep(TOOL_LAG).await;
        let version = stack.store.rotate_client_secret(&id, &new_secret.hash(), now, 3600).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        stop.store(true, Ordering::SeqCst);
        (now, version)
    };
    let old_request = request(&stack.client_id, &stack.client_secret);
    let new_request = request(&stack.client_id, &new_secret);
    let (old, mut new, (stamped, version)) = tokio::join!(
        mint_until(&stack, &key, &old_request, &stop),
        mint_until(&stack, &key, &new_request, &stop),
        operator
    );
    assert_eq!(version, 1);
    assert!(old.len() >= 3, "old {}", old.len());
    assert!(old.iter().any(|(_, iat)| *iat > stamped), "no old-secret token minted inside the gap");
    // New-secret tokens stamped in the seconds around the rotation's own stamp verify: no clock
    // decides. They are minted at chosen instants, because a loaded machine may take seconds to
    // mint the first racing one.
    let reads = Recent::default();
    for iat in stamped - 1..=stamped + 1 {
        let issued = token_service::issue_token(&stack.store, &reads, &key, &settings(), &new_request, iat)
            .await
            .unwrap_or_else(|e| panic!("the new secret mints no token at {iat}: {e:?}"));
        new.push((issued.access_token, iat));
    }
    for (token, iat) in &old {
        assert!(
            revoked(verdict(&auth, token).await),
            "an old-secret token minted at {iat} (operator's now {stamped}) verifies"
        );
    }
    for (token, iat) in &new {
        verdict(&auth, token)
            .await
            .unwrap_or_else(|e| panic!("a new-secret token minted at {iat} is refused: {e:?}"));
    }

    // A second rotation refuses the first rotation's tokens.
    let newest = ClientSecret::generate();
    let now = domain::Timestamp::now().epoch_secs();
    assert_eq!(stack.store.rotate_client_secret(&id, &newest.hash(), now, 3600).await.unwrap(), 2);
    for (token, _) in &new {
        assert!(revoked(verdict(&auth, token).await));
    }
}

/// The client's secret and version, and its revocation entry, as stored.
async fn stored(stack: &Stack, id: &ClientId) -> (store::SecretHash, i64, bool, Option<ClientRevocation>) {
    let client = stack.store.client_record(id).await.unwrap().unwrap();
    let now = domain::Timestamp::now().epoch_secs();
    let entry = stack.store.verification_set(now).await.unwrap().revoked_clients.get(id.as_str()).copied();
    (client.secret_hash, client.secret_version, client.disabled, entry)
}

#[tokio::test]
async fn concurrent_rotations_each_take_a_version_and_only_the_last_secret_works() {
    let stack = Stack::new().await;
    let key = current_key(&stack).await;
    let id = ClientId::parse(&stack.client_id).unwrap();
    let now = domain::Timestamp::now().epoch_secs();
    let secrets: Vec<ClientSecret> = (0..4).map(|_| ClientSecret::generate()).collect();
    let mut rotations = tokio::task::JoinSet::new();
    for (i, secret) in secrets.iter().enumerate() {
        let (store, id, hash) = (stack.store.clone(), id.clone(), secret.hash());
        rotations.spawn(async move { (i, store.rotate_client_secret(&id, &hash, now, 3600).await.unwrap()) });
    }
    let mut versions = vec![0; secrets.len()];
    for (i, version) in rotations.join_all().await {
        versions[i] = version;
    }
    let last = versions.iter().position(|v| *v == 4).expect("one rotation takes version 4");
    versions.sort();
    assert_eq!(versions, [1, 2, 3, 4], "each rotation its own version");
    let (hash, version, _, entry) = stored(&stack, &id).await;
    assert_eq!((hash, version), (secrets[last].hash(), 4));
    assert_eq!(entry.and_then(|e| e.secret_versions_below), Some(4), "the entry is the last rotation's");
    let reads = Recent::default();
    for (i, secret) in secrets.iter().enumerate() {
        let issued = token_service::issue_token(
            &stack.store,
            &reads,
            &key,
            &settings(),
            &request(&stack.client_id, secret),
            domain::Timestamp::now().epoch_secs(),
        )
        .await;
        assert_eq!(issued.is_ok(), i == last, "secret {i} (the last rotation's: {last})");
    }
}

#[tokio::test]
async fn a_rotation_or_a_disable_is_stored_whole_or_not_at_all() {
    let stack = Stack::with_faults(FaultPlan::new()).await;
    let id = ClientId::parse(&stack.client_id).unwrap();
    let before = stored(&stack, &id).await;
    assert_eq!((before.1, before.2, before.3), (0, false, None));
    let new_secret = ClientSecret::generate();
    let now = domain::Timestamp::now().epoch_secs();

    // Every attempt fails: nothing changes, the old secret and its tokens stay valid.
    stack.faults.arm(FaultPlan::new().fail("TransactWriteItems", 1..=5, Fault::ServerError));
    let e = stack.store.rotate_client_secret(&id, &new_secret.hash(), now, 3600).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(stack.faults.disarm().len(), 5);
    assert_eq!(stored(&stack, &id).await, before);

    // Applied, its answer lost: the SDK's resend finds the version taken, and the rotation
    // knows its own secret there: one version, not two.
    stack.faults.arm(FaultPlan::new().lose("TransactWriteItems", 1..=1, Fault::Timeout));
    assert_eq!(stack.store.rotate_client_secret(&id, &new_secret.hash(), now, 3600).await.unwrap(), 1);
    assert_eq!(stack.faults.disarm().len(), 1);
    let (hash, version, disabled, entry) = stored(&stack, &id).await;
    assert_eq!((hash, version, disabled), (new_secret.hash(), 1, false));
    assert_eq!(entry.map(|e| (e.all, e.secret_versions_below)), Some((false, Some(1))));

    // A disable that fails leaves the client enabled and its tokens valid.
    stack.faults.arm(FaultPlan::new().fail("TransactWriteItems", 1..=5, Fault::Throttling));
    assert!(stack.store.disable_client(&id, now, 3600).await.unwrap_err().is_transient());
    stack.faults.disarm();
    let (_, _, disabled, entry) = stored(&stack, &id).await;
    assert!(!disabled);
    assert_eq!(entry.map(|e| e.all), Some(false));

    stack.store.disable_client(&id, now, 3600).await.unwrap();
    let (_, _, disabled, entry) = stored(&stack, &id).await;
    assert!(disabled);
    assert_eq!(
        entry.map(|e| (e.all, e.secret_versions_below)),
        Some((true, Some(1))),
        "a disable keeps the rotation's"
    );

    // An unknown client: NotFound, and no entry written for it.
    let ghost = ClientId::generate();
    assert!(matches!(
        stack.store.rotate_client_secret(&ghost, &new_secret.hash(), now, 3600).await,
        Err(store::StoreError::NotFound(_))
    ));
    assert!(matches!(
        stack.store.disable_client(&ghost, now, 3600).await,
        Err(store::StoreError::NotFound(_))
    ));
    let set = stack.store.verification_set(domain::Timestamp::now().epoch_secs()).await.unwrap();
    assert!(!set.revoked_clients.contains_key(ghost.as_str()));
}

#[tokio::test]
async fn a_rotated_key_is_published_at_once_and_signs_only_after_every_cache_holds_it() {
    let stack = Stack::new().await;
    let now = domain::Timestamp::now().epoch_secs();
    let old = stack.store.current_signing_key(now).await.unwrap().unwrap();
    let new = auth::keys::generate().unwrap();
    let active_from = stack
        .store
        .rotate_signing_key(&new.kid, &new.private_pem, &new.public_jwk, now, ACTIVATION_LEAD_SECS, 3600)
        .await
        .unwrap();
    assert_eq!(active_from, now + ACTIVATION_LEAD_SECS);
    assert!(
        ACTIVATION_LEAD_SECS as u64
            > auth::keys::JWKS_HTTP_MAX_AGE_SECS + auth::keys::JWKS_INSTANCE_CACHE_SECS
    );
    let kids = |at: i64| {
        let store = stack.store.clone();
        async move {
            let mut kids: Vec<String> =
                store.public_keys(at).await.unwrap().into_iter().filter_map(|k| k.common.key_id).collect();
            kids.sort();
            kids
        }
    };
    let mut both = vec![old.kid.clone(), new.kid.clone()];
    both.sort();
    // Just after the rotation: the old key still signs, the JWKS holds both.
    for at in [now, now + 1, active_from - 1] {
        assert_eq!(
            stack.store.current_signing_key(at).await.unwrap().unwrap().kid,
            old.kid,
            "at +{}",
            at - now
        );
        assert_eq!(kids(at).await, both, "at +{}", at - now);
    }
    // After the lead time the new key signs, and the old one still verifies its tokens.
    assert_eq!(stack.store.current_signing_key(active_from).await.unwrap().unwrap().kid, new.kid);
    assert_eq!(kids(active_from + 3599).await, both);
    assert_eq!(kids(active_from + 3600).await, vec![new.kid.clone()]);

    // The next rotation deletes the private half that no longer signs, keeps the one that does.
    let later = active_from + 10;
    let third = auth::keys::generate().unwrap();
    stack
        .store
        .rotate_signing_key(
            &third.kid,
            &third.private_pem,
            &third.public_jwk,
            later,
            ACTIVATION_LEAD_SECS,
            3600,
        )
        .await
        .unwrap();
    assert_eq!(stack.store.current_signing_key(later).await.unwrap().unwrap().kid, new.kid);
    assert_eq!(stack.store.current_signing_key(i64::MAX / 2).await.unwrap().unwrap().kid, third.kid);
    stack.store.revoke_signing_key(&new.kid).await.unwrap();
    assert!(stack.store.current_signing_key(later).await.unwrap().is_none(), "the old private half was kept");
}
