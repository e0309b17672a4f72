//! API key verification per request, with the raw primitive beside msec's code in one group:
//!
//! - raw: `HashMap` lookup by key id + ring SHA-256 of the key + constant-time comparison of the digests;
//! - `parse_key` alone (format + CRC-32 checksum);
//! - `ApiKeyAuthenticator` from an `x-api-key` header with a `MemoryApiKeyStore` (checksum, digest, lookup,
//!   constant-time compare, revocation and expiry, the `Arc<Principal>`), with SHA-256 and with a peppered
//!   HMAC-SHA256;
//! - the full `AuthnLayer` around a bare service, and the bare service alone.
//!
//! Run: `cargo bench -p msec-authn --bench apikey -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::time::SystemTime;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http_body_util::Full;
use msec_authn::apikey::{ApiKeyAuthenticator, ApiKeySpec, KeyHasher, MemoryApiKeyStore, parse_key};
use msec_authn::{Attempt, Authenticator, AuthnLayer, RequestHead};
use msec_core::secret::SecretBytes;
use tower::{Layer, Service};

/// A store of `n` keys plus the one the benchmark presents (realistic map size).
fn setup(hasher: &KeyHasher, n: usize) -> (String, MemoryApiKeyStore) {
    let mut records = Vec::with_capacity(n + 1);
    for i in 0..n {
        let k = ApiKeySpec::new("sk_live")
            .subject(format!("bot-{i}"))
            .issue(hasher, SystemTime::now())
            .unwrap();
        records.push(k.record);
    }
    let k = ApiKeySpec::new("sk_live")
        .subject("billing-bot")
        .scopes(["orders:read", "orders:write"])
        .tenant("acme")
        .issue(hasher, SystemTime::now())
        .unwrap();
    records.push(k.record);
    (
        k.key.expose_secret().to_owned(),
        MemoryApiKeyStore::from_records(records).unwrap(),
    )
}

fn request(value: &http::HeaderValue) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = http::Uri::from_static("/v1/orders/7");
    req.headers_mut().insert("x-api-key", value.clone());
    req
}

fn bench(c: &mut Criterion) {
    let sha = KeyHasher::sha256();
    let (key, store) = setup(&sha, 1000);
    let value = http::HeaderValue::from_str(&key).unwrap();

    // The raw primitive: the digest table as a plain map key id -> SHA-256 digest.
    let table: HashMap<String, [u8; 32]> = store
        .records()
        .into_iter()
        .map(|r| (r.key_id.clone(), *r.digest.as_bytes()))
        .collect();
    let key_id = parse_key(&key).unwrap().key_id().to_owned();
    let id_len = key_id.len();
    let id_start = "sk_live_".len();

    let authn = ApiKeyAuthenticator::new(store.clone(), sha.clone());
    let pepper = KeyHasher::hmac_sha256(&SecretBytes::new(vec![7; 32])).unwrap();
    let (pkey, pstore) = setup(&pepper, 1000);
    let pvalue = http::HeaderValue::from_str(&pkey).unwrap();
    let peppered = ApiKeyAuthenticator::new(pstore, pepper);

    let bare = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let mut layered = AuthnLayer::new(authn.clone()).layer(bare);

    let verify = |a: &ApiKeyAuthenticator, req: &http::Request<Full<Bytes>>| {
        let Attempt::Claimed(f) = a.authenticate(&RequestHead::from_request(req)) else {
            panic!("not claimed")
        };
        f.into_ready().unwrap().unwrap()
    };
    let req = request(&value);
    assert_eq!(verify(&authn, &req).principal.subject, "billing-bot");
    let preq = request(&pvalue);
    assert_eq!(verify(&peppered, &preq).principal.subject, "billing-bot");

    let mut g = c.benchmark_group("apikey/verify");
    g.bench_function("raw: HashMap lookup + ring SHA-256 + constant-time eq", |b| {
        b.iter(|| {
            let k = black_box(key.as_str());
            let stored = table.get(&k[id_start..id_start + id_len]).unwrap();
            let d = ring::digest::digest(&ring::digest::SHA256, k.as_bytes());
            assert!(msec_core::secret::ct_eq(stored, d.as_ref()));
        });
    });
    g.bench_function("parse_key (format + CRC-32)", |b| {
        b.iter(|| parse_key(black_box(&key)).unwrap().key_id().len());
    });
    g.bench_function("ApiKeyAuthenticator, x-api-key, MemoryApiKeyStore, sha256", |b| {
        b.iter(|| verify(&authn, black_box(&req)));
    });
    g.bench_function("ApiKeyAuthenticator, x-api-key, MemoryApiKeyStore, hmac-sha256", |b| {
        b.iter(|| verify(&peppered, black_box(&preq)));
    });
    g.bench_function("AuthnLayer(ApiKeyAuthenticator) + bare service", |b| {
        b.iter(|| layered.call(request(&value)).now_or_never().unwrap().unwrap());
    });
    g.bench_function("bare service alone (no layer)", |b| {
        let mut svc = bare;
        b.iter(|| svc.call(request(&value)).now_or_never().unwrap().unwrap());
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
