//! Revocation over real HTTP: a JWT-protected axum service with a denylist hook, the in-memory denylist and the
//! Redis one (the real Redis at 127.0.0.1:6379; skipped with a notice when it is down, a failure under
//! `MSEC_REQUIRE_SERVICES=1`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msec_authn::jwt::{Issuer, JwtValidator};
use msec_authn::revocation::{MemoryDenylist, RevocationError};
use msec_authn::{AuthnLayer, PostVerify};
use msec_core::Principal;
use msec_core::clock::ManualClock;
use msec_test_support::TestKey;
use serde_json::Value;

const ISS: &str = "https://id.example.com";

fn validator(key: &TestKey) -> JwtValidator {
    JwtValidator::builder()
        .issuer(Issuer::new(ISS).audience("orders-api").pem_key(
            Some(&key.kid),
            jsonwebtoken::Algorithm::ES256,
            key.public_pem.as_bytes(),
        ))
        .build()
        .unwrap()
}

fn token(key: &TestKey, sub: &str, jti: &str) -> String {
    key.token().iss(ISS).aud("orders-api").sub(sub).jti(jti).sign()
}

/// Serves `/v1/me` (the subject) behind `AuthnLayer::jwt(..).hook(hook)`.
async fn serve(key: &TestKey, hook: impl PostVerify) -> String {
    let app = Router::new()
        .route(
            "/v1/me",
            get(|Extension(p): Extension<Arc<Principal>>| async move { p.subject.clone() }),
        )
        .layer(AuthnLayer::jwt(validator(key)).realm("orders").hook(hook));
    let (listener, addr) = msec_test_support::net::listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1/me")
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn code(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "-".into())
    }
}

async fn send(url: &str, token: &str) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn assert_revoked(r: &Reply) {
    assert_eq!((r.status, r.code().as_str()), (401, "token_revoked"));
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("realm=\"orders\""), "{challenge}");
    assert_eq!(r.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn memory_revoked_jti_is_401_token_revoked() {
    let key = TestKey::es256();
    let denylist = MemoryDenylist::new(1000);
    let url = serve(&key, denylist.clone()).await;
    let t = token(&key, "alice", "jti-1");
    let other = token(&key, "alice", "jti-2");
    assert_eq!(send(&url, &t).await.status, 200);
    denylist
        .revoke_token(Some(ISS), "jti-1", SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    // The verified-token cache does not bypass the hook: hooks run on cached verifications too.
    assert_revoked(&send(&url, &t).await);
    assert_eq!(send(&url, &other).await.status, 200);
    // A jti of another issuer is not this token.
    denylist
        .revoke_token(
            Some("https://other"),
            "jti-2",
            SystemTime::now() + Duration::from_secs(3600),
        )
        .unwrap();
    assert_eq!(send(&url, &other).await.status, 200);
}

#[tokio::test]
async fn memory_entries_expire_with_the_token() {
    let key = TestKey::es256();
    let clock = ManualClock::starting_now();
    let denylist = MemoryDenylist::with_clock(1000, clock.clone());
    let url = serve(&key, denylist.clone()).await;
    let t = token(&key, "bob", "jti-b");
    // Revoked until "exp" = 60 s from the denylist's clock.
    denylist
        .revoke_token(
            None,
            "jti-b",
            msec_core::clock::Clock::now(&clock) + Duration::from_secs(60),
        )
        .unwrap();
    assert_revoked(&send(&url, &t).await);
    clock.advance(Duration::from_secs(59));
    assert_revoked(&send(&url, &t).await);
    clock.advance(Duration::from_secs(2));
    // The entry is gone when the token (by the denylist's clock) would have expired.
    assert_eq!(send(&url, &t).await.status, 200);
    assert_eq!(denylist.purge_expired(), 0);
}

#[tokio::test]
async fn memory_subject_revocation_spares_tokens_issued_later() {
    let key = TestKey::es256();
    let denylist = MemoryDenylist::new(1000);
    let url = serve(&key, denylist.clone()).await;
    let before = key
        .token()
        .iss(ISS)
        .aud("orders-api")
        .sub("carol")
        .issued_at(SystemTime::now() - Duration::from_secs(10))
        .sign();
    denylist
        .revoke_subject(Some(ISS), "carol", SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    assert_revoked(&send(&url, &before).await);
    let after = key
        .token()
        .iss(ISS)
        .aud("orders-api")
        .sub("carol")
        .issued_at(SystemTime::now() + Duration::from_secs(5))
        .sign();
    assert_eq!(send(&url, &after).await.status, 200);
}

#[tokio::test]
async fn memory_denylist_is_bounded_and_says_so() {
    let d = MemoryDenylist::new(1);
    let later = SystemTime::now() + Duration::from_secs(60);
    d.revoke_token(None, "a", later).unwrap();
    assert_eq!(d.revoke_token(None, "b", later), Err(RevocationError::Full(1)));
    assert_eq!(d.len(), 1);
}

#[cfg(feature = "redis")]
mod redis_backed {
    use super::*;
    use msec_authn::revocation::{FailurePolicy, RedisDenylist};

    fn prefix() -> String {
        let n = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("msec-test:{}:{n}", std::process::id())
    }

    #[tokio::test]
    async fn redis_revoked_jti_is_401_token_revoked() {
        let Some(redis_url) = msec_test_support::services::redis_url().await else {
            return;
        };
        let key = TestKey::es256();
        let p = prefix();
        let denylist = RedisDenylist::builder(&redis_url).prefix(p.clone()).build().unwrap();
        denylist.ping().await.unwrap();
        let url = serve(&key, denylist.clone()).await;
        let t = token(&key, "dave", "jti-r1");
        assert_eq!(send(&url, &t).await.status, 200);
        // Another replica (a second client on the same Redis) revokes it.
        let replica = RedisDenylist::builder(&redis_url).prefix(p).build().unwrap();
        let principal = Principal::builder("dave")
            .issuer(ISS)
            .token_id("jti-r1")
            .expires_at(SystemTime::now() + Duration::from_secs(600))
            .build();
        replica.revoke_principal(&principal).await.unwrap();
        assert_revoked(&send(&url, &t).await);
        assert_eq!(send(&url, &token(&key, "dave", "jti-r2")).await.status, 200);
        // Subject revocation.
        denylist
            .revoke_subject(None, "erin", SystemTime::now() + Duration::from_secs(600))
            .await
            .unwrap();
        let erin = key
            .token()
            .iss(ISS)
            .aud("orders-api")
            .sub("erin")
            .issued_at(SystemTime::now() - Duration::from_secs(5))
            .sign();
        assert_revoked(&send(&url, &erin).await);
    }

    /// `local_cache`: another replica's revocation is not seen until the cached answer's lifetime passes on the
    /// injected clock (the documented staleness), this replica's own revocation bites at once, and the
    /// settings are bounded.
    #[tokio::test]
    async fn local_cache_is_stale_for_at_most_its_ttl() {
        let Some(redis_url) = msec_test_support::services::redis_url().await else {
            return;
        };
        let key = TestKey::es256();
        let clock = ManualClock::starting_now();
        let p = prefix();
        let cached = RedisDenylist::builder(&redis_url)
            .prefix(p.clone())
            .clock(clock.clone())
            .local_cache(Duration::from_secs(2), 100)
            .build()
            .unwrap();
        assert!(format!("{cached:?}").contains("RedisDenylist"));
        let replica = RedisDenylist::builder(&redis_url).prefix(p).build().unwrap();
        let url = serve(&key, cached.clone()).await;
        let later = SystemTime::now() + Duration::from_secs(600);

        let t1 = token(&key, "gina", "jti-c1");
        assert_eq!(send(&url, &t1).await.status, 200);
        replica.revoke_token(Some(ISS), "jti-c1", later).await.unwrap();
        assert_eq!(
            send(&url, &t1).await.status,
            200,
            "the cached answer stands until its ttl"
        );
        clock.advance(Duration::from_millis(1900));
        assert_eq!(send(&url, &t1).await.status, 200);
        clock.advance(Duration::from_millis(200));
        assert_revoked(&send(&url, &t1).await);
        // The revoked answer is cached too, and stays revoked.
        assert_revoked(&send(&url, &t1).await);

        let t2 = token(&key, "gina", "jti-c2");
        assert_eq!(send(&url, &t2).await.status, 200);
        cached.revoke_token(Some(ISS), "jti-c2", later).await.unwrap();
        assert_revoked(&send(&url, &t2).await);
        // Another token of the same subject is a different entry.
        assert_eq!(send(&url, &token(&key, "gina", "jti-c3")).await.status, 200);

        for (ttl, cap) in [
            (Duration::ZERO, 10),
            (Duration::from_secs(301), 10),
            (Duration::from_secs(1), 0),
        ] {
            assert!(
                RedisDenylist::builder(&redis_url)
                    .local_cache(ttl, cap)
                    .build()
                    .is_err(),
                "{ttl:?} {cap}"
            );
        }
    }

    #[tokio::test]
    async fn redis_entry_ttl_is_what_is_left_of_the_token() {
        let Some(redis_url) = msec_test_support::services::redis_url().await else {
            return;
        };
        let clock = ManualClock::starting_now();
        let p = prefix();
        let denylist = RedisDenylist::builder(&redis_url)
            .prefix(p.clone())
            .clock(clock.clone())
            .build()
            .unwrap();
        let exp = msec_core::clock::Clock::now(&clock) + Duration::from_secs(600);
        clock.advance(Duration::from_secs(500));
        denylist.revoke_token(Some(ISS), "jti-ttl", exp).await.unwrap();
        // Already expired by the clock: nothing is written.
        clock.advance(Duration::from_secs(200));
        denylist.revoke_token(Some(ISS), "jti-gone", exp).await.unwrap();

        let client = redis::Client::open(redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{p}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        let pttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut conn).await.unwrap();
        assert!(
            (95_000..=100_000).contains(&pttl),
            "TTL = exp - now = 100 s, got {pttl} ms"
        );
        // Keys carry no token ids or subjects.
        assert!(!keys[0].contains("jti-ttl"));
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    }

    #[tokio::test]
    async fn redis_down_fails_closed_with_503() {
        let (listener, addr) = msec_test_support::net::listener().await;
        drop(listener);
        let key = TestKey::es256();
        let closed = RedisDenylist::builder(format!("redis://{addr}"))
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let url = serve(&key, closed.clone()).await;
        let r = send(&url, &token(&key, "frank", "jti-f")).await;
        assert_eq!((r.status, r.code().as_str()), (503, "revocation_unavailable"));
        assert_eq!(r.headers["retry-after"], "5");
        assert!(closed.ping().await.is_err());

        let open = RedisDenylist::builder(format!("redis://{addr}"))
            .timeout(Duration::from_millis(200))
            .failure_policy(FailurePolicy::Open)
            .build()
            .unwrap();
        let url = serve(&key, open).await;
        assert_eq!(send(&url, &token(&key, "frank", "jti-f")).await.status, 200);
    }
}
