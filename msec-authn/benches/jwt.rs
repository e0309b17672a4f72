//! JWT verification: bare `jsonwebtoken::decode` (with msec's ring provider installed, the same key and the same
//! checks: alg, iss, aud, exp) beside the msec validator uncached and cached, and the full `AuthnLayer` around a
//! bare service, per algorithm.
//!
//! Run: `cargo bench -p msec-authn --bench jwt -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use msec_authn::AuthnLayer;
use msec_authn::jwt::{Issuer, JwtValidator};
use msec_test_support::{Alg, TestKey};
use serde_json::Value;
use tower::{Layer, Service};

const ISS: &str = "https://id.example.com";

fn decoding_key(jwk: &Value) -> DecodingKey {
    match jwk["kty"].as_str().unwrap() {
        "RSA" => DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap(),
        "EC" => DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap()).unwrap(),
        _ => DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap(),
    }
}

fn validator(key: &TestKey, cache: bool) -> JwtValidator {
    let b = JwtValidator::builder().issuer(
        Issuer::new(ISS)
            .audience("api")
            .jwk_set(msec_test_support::keys::jwks(&[key])),
    );
    if cache { b } else { b.no_cache() }.build().unwrap()
}

/// A request carrying `authorization` (a shared `HeaderValue`, as hyper hands over header bytes it parsed
/// once): what a server builds before any layer runs. Its cost is measured separately below.
fn request(authorization: &http::HeaderValue) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = http::Uri::from_static("/v1/orders/7");
    req.headers_mut()
        .insert(http::header::AUTHORIZATION, authorization.clone());
    req
}

fn bench(c: &mut Criterion) {
    let _ = msec_authn::crypto::install_default();
    for alg in [Alg::RS256, Alg::ES256, Alg::EdDSA] {
        let key = TestKey::for_alg(alg);
        let token = key
            .token()
            .iss(ISS)
            .aud("api")
            .sub("alice")
            .scope("orders:read orders:write")
            .jti("bench-1")
            .sign();
        let jwt_alg: Algorithm = alg.name().parse().unwrap();
        let dk = decoding_key(&key.public_jwk());
        let mut validation = Validation::new(jwt_alg);
        validation.set_audience(&["api"]);
        validation.set_issuer(&[ISS]);
        let uncached = validator(&key, false);
        let cached = validator(&key, true);
        cached.validate(&token).into_ready().unwrap().unwrap();
        let bare = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let mut layer_cached = AuthnLayer::jwt(cached.clone()).layer(bare);
        let mut layer_uncached = AuthnLayer::jwt(uncached.clone()).layer(bare);
        let authorization = http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();

        let mut g = c.benchmark_group(format!("jwt/{}", alg.name()));
        g.bench_function("jsonwebtoken::decode (bare)", |b| {
            b.iter(|| jsonwebtoken::decode::<Value>(black_box(&token), &dk, &validation).unwrap());
        });
        g.bench_function("msec validator, uncached", |b| {
            b.iter(|| uncached.validate(black_box(&token)).into_ready().unwrap().unwrap());
        });
        g.bench_function("msec validator, cached", |b| {
            b.iter(|| cached.validate(black_box(&token)).into_ready().unwrap().unwrap());
        });
        g.bench_function("AuthnLayer + bare service, uncached", |b| {
            b.iter(|| {
                layer_uncached
                    .call(request(&authorization))
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            });
        });
        g.bench_function("AuthnLayer + bare service, cached", |b| {
            b.iter(|| {
                layer_cached
                    .call(request(&authorization))
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            });
        });
        g.bench_function("bare service alone (no layer)", |b| {
            let mut svc = bare;
            b.iter(|| svc.call(request(&authorization)).now_or_never().unwrap().unwrap());
        });
        g.finish();
    }

    // Parts of a cached hit: the cache key of the token, per token size — the keyed SipHash-2-4-128 the cache
    // uses, beside the SHA-256 it used before.
    let mut g = c.benchmark_group("jwt/overheads");
    for alg in [Alg::RS256, Alg::ES256] {
        let token = TestKey::for_alg(alg).token().iss(ISS).aud("api").sub("alice").sign();
        g.bench_function(
            format!("SHA-256 of a {} token ({} bytes)", alg.name(), token.len()),
            |b| {
                b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(token.as_bytes())));
            },
        );
        g.bench_function(
            format!(
                "keyed SipHash-2-4-128 of a {} token ({} bytes)",
                alg.name(),
                token.len()
            ),
            |b| {
                b.iter(|| {
                    use siphasher::sip128::Hasher128 as _;
                    use std::hash::Hasher as _;
                    let mut h = siphasher::sip128::SipHasher24::new_with_key(&[7; 16]);
                    h.write(black_box(token.as_bytes()));
                    h.finish128()
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
