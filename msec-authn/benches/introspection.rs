//! Per-request costs of the introspection cache and the revocation denylist, each beside its raw primitive:
//!
//! - `introspection_cached_hit`: a keyed SipHash-2-4-128 of the token + a quick_cache lookup (the primitive) beside
//!   `IntrospectionAuthenticator::authenticate` on a cached token (bearer extraction, size check, digest, cache
//!   lookup, expiry check against the clock, `Authenticated` built).
//! - `denylist_check`: a bare `HashMap<String, _>` lookup beside `MemoryDenylist` as a `PostVerify` hook (read
//!   lock, `jti` and subject lookups) for a token that is not revoked, with 10 000 entries in the list.
//!
//! - `redis_denylist` (feature `redis`, Redis on 127.0.0.1:6379; skipped with a notice when absent): the raw
//!   primitive, one `MGET` of the four keys a check reads, beside `RedisDenylist` as a `PostVerify` hook (key
//!   hashing and the same `MGET`), and beside it again with `local_cache` (a hit: hashing and a quick_cache
//!   lookup, no round trip).
//!
//! Run: `cargo bench -p msec-authn --all-features --bench introspection -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use msec_authn::introspection::IntrospectionAuthenticator;
use msec_authn::keys::HttpConfig;
use msec_authn::revocation::MemoryDenylist;
use msec_authn::{Attempt, Authenticated, Authenticator, PostVerify, RequestHead};
use msec_core::Principal;
use serde_json::json;

const TOKEN: &str = "2YotnFZFEjr1zCsicMWpAA-opaque-access-token-0123456789";

fn cached_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A loopback introspection endpoint, asked once to fill the cache.
    let authn = rt.block_on(async {
        let exp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let app = Router::new().route(
            "/introspect",
            post(move || async move {
                axum::Json(
                    json!({"active": true, "sub": "alice", "scope": "orders:read", "exp": exp,
                                  "client_id": "web", "jti": "j1"}),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let authn = IntrospectionAuthenticator::builder(format!("http://{addr}/introspect"))
            .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
            .client_secret_basic("rs", "secret")
            .max_ttl(Duration::from_secs(3600))
            .build()
            .unwrap();
        authn.introspect(TOKEN).await.unwrap();
        authn
    });
    let req = http::Request::get("/v1/orders")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(())
        .unwrap();
    let head = RequestHead::from_request(&req);
    let Attempt::Claimed(f) = authn.authenticate(&head) else {
        unreachable!()
    };
    assert!(f.into_ready().unwrap().unwrap().cached);

    let raw: quick_cache::sync::Cache<[u8; 16], Arc<Principal>> = quick_cache::sync::Cache::new(10_000);
    let secret = [7u8; 16];
    let key = |t: &[u8]| -> [u8; 16] {
        use siphasher::sip128::Hasher128 as _;
        use std::hash::Hasher as _;
        let mut h = siphasher::sip128::SipHasher24::new_with_key(&secret);
        h.write(t);
        u128::from(h.finish128()).to_le_bytes()
    };
    raw.insert(key(TOKEN.as_bytes()), Arc::new(Principal::builder("alice").build()));

    let mut g = c.benchmark_group("introspection_cached_hit");
    g.bench_function("raw: keyed siphash128(token) + quick_cache get", |b| {
        b.iter(|| raw.get(&key(black_box(TOKEN).as_bytes())).unwrap());
    });
    g.bench_function("msec: IntrospectionAuthenticator::authenticate (cached)", |b| {
        b.iter(|| match authn.authenticate(black_box(&head)) {
            Attempt::Claimed(f) => f.into_ready().unwrap().unwrap(),
            _ => unreachable!(),
        });
    });
    g.finish();
}

fn denylist(c: &mut Criterion) {
    let later = SystemTime::now() + Duration::from_secs(3600);
    let list = MemoryDenylist::new(100_000);
    let mut map: HashMap<String, SystemTime> = HashMap::new();
    for i in 0..10_000 {
        list.revoke_token(Some("https://id"), &format!("revoked-{i}"), later)
            .unwrap();
        map.insert(format!("revoked-{i}"), later);
    }
    for i in 0..100 {
        list.revoke_subject(None, &format!("user-{i}"), later).unwrap();
    }
    let principal = Principal::builder("alice")
        .issuer("https://id")
        .token_id("a-live-token-id")
        .build();
    let auth = Authenticated::new(Arc::new(principal));
    let req = http::Request::get("/").body(()).unwrap();
    let head = RequestHead::from_request(&req);
    assert!(list.check(&auth, &head).into_ready().unwrap().is_ok());

    let mut g = c.benchmark_group("denylist_check");
    g.bench_function("raw: HashMap<String, _> get (miss)", |b| {
        b.iter(|| map.get(black_box("a-live-token-id")).copied());
    });
    g.bench_function("msec: MemoryDenylist as PostVerify (not revoked)", |b| {
        b.iter(|| list.check(black_box(&auth), &head).into_ready().unwrap().is_ok());
    });
    g.finish();
}

#[cfg(feature = "redis")]
fn redis_denylist(c: &mut Criterion) {
    use msec_authn::revocation::RedisDenylist;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = "redis://127.0.0.1:6379";
    let raw = rt.block_on(async {
        let client = redis::Client::open(url).ok()?;
        tokio::time::timeout(Duration::from_secs(1), client.get_connection_manager())
            .await
            .ok()?
            .ok()
    });
    let Some(raw) = raw else {
        eprintln!("NOTICE: Redis is not reachable at {url}; the redis_denylist group is skipped");
        return;
    };
    let prefix = format!("msec-bench:{}", std::process::id());
    let (plain, cached) = rt.block_on(async {
        let plain = RedisDenylist::builder(url).prefix(prefix.clone()).build().unwrap();
        let cached = RedisDenylist::builder(url)
            .prefix(prefix.clone())
            .local_cache(Duration::from_secs(300), 10_000)
            .build()
            .unwrap();
        (plain, cached)
    });
    let principal = Principal::builder("alice")
        .issuer("https://id")
        .token_id("a-live-token-id")
        .build();
    let auth = Authenticated::new(Arc::new(principal));
    let req = http::Request::get("/").body(()).unwrap();
    let head = RequestHead::from_request(&req);
    let keys: Vec<String> = (0..4).map(|i| format!("{prefix}:k{i}")).collect();
    rt.block_on(async {
        assert!(plain.check(&auth, &head).await.is_ok());
        assert!(cached.check(&auth, &head).await.is_ok());
    });

    let mut g = c.benchmark_group("redis_denylist");
    g.bench_function("raw: MGET of 4 keys (one round trip)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut conn = raw.clone();
                let v: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.unwrap();
                v
            })
        });
    });
    g.bench_function("msec: RedisDenylist as PostVerify (not revoked)", |b| {
        b.iter(|| rt.block_on(plain.check(black_box(&auth), &head)).is_ok());
    });
    g.bench_function("msec: RedisDenylist with local_cache (hit)", |b| {
        b.iter(|| cached.check(black_box(&auth), &head).into_ready().unwrap().is_ok());
    });
    g.finish();
}

#[cfg(not(feature = "redis"))]
fn redis_denylist(_: &mut Criterion) {}

criterion_group!(benches, cached_hit, denylist, redis_denylist);
criterion_main!(benches);
