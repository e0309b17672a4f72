//! Interleaved ratios, robust to a busy machine: bare `jsonwebtoken::decode` and the msec validator (uncached)
//! run in alternating blocks, and the median of the per-round ratios is reported; likewise the cached path
//! through `AuthnLayer` against the same loop without the layer. Complements the criterion bench `jwt`, whose
//! groups run one after the other and so see different background load.
//!
//! Run: `cargo bench -p msec-authn --bench jwt_ratio`
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::Full;
use jsonwebtoken::{DecodingKey, Validation};
use msec_authn::AuthnLayer;
use msec_authn::jwt::{Issuer, JwtValidator};
use msec_test_support::{Alg, TestKey};
use serde_json::Value;
use tower::{Layer, Service};

const ISS: &str = "https://id.example.com";
const ROUNDS: usize = 15;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `a` and `b` `n` times each, alternating, `ROUNDS` times; returns (median a, median b, median ratio b/a)
/// with times per call.
fn interleave(n: u32, mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration, f64) {
    let (mut ta, mut tb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..n {
            a();
        }
        let da = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            b();
        }
        let db = t.elapsed() / n;
        ratios.push(db.as_secs_f64() / da.as_secs_f64());
        ta.push(da.as_secs_f64());
        tb.push(db.as_secs_f64());
    }
    (
        Duration::from_secs_f64(median(ta)),
        Duration::from_secs_f64(median(tb)),
        median(ratios),
    )
}

/// `loop <RS256|ES256|EdDSA> <layer|plain> <n>`: only the cached request loop, for `perf stat -e task-clock`
/// (CPU time, which a busy machine's waiting does not inflate).
fn cached_loop(alg: &str, with_layer: bool, n: u32) {
    let key = TestKey::for_alg(match alg {
        "RS256" => Alg::RS256,
        "ES256" => Alg::ES256,
        _ => Alg::EdDSA,
    });
    let token = key
        .token()
        .iss(ISS)
        .aud("api")
        .sub("alice")
        .scope("orders:read orders:write")
        .jti("bench-1")
        .sign();
    let v = JwtValidator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("api")
                .jwk_set(msec_test_support::keys::jwks(&[&key])),
        )
        .build()
        .unwrap();
    let bare_svc = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let mut layered = AuthnLayer::jwt(v).layer(bare_svc);
    let mut plain = bare_svc;
    let hv = http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    for _ in 0..n {
        let mut req = http::Request::new(Full::new(Bytes::new()));
        req.headers_mut().insert(http::header::AUTHORIZATION, hv.clone());
        if with_layer {
            black_box(layered.call(req).now_or_never().unwrap().unwrap());
        } else {
            black_box(plain.call(req).now_or_never().unwrap().unwrap());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "loop") {
        cached_loop(&args[i + 1], args[i + 2] == "layer", args[i + 3].parse().unwrap());
        return;
    }
    let _ = msec_authn::crypto::install_default();
    println!(
        "| alg | bare jsonwebtoken::decode | msec validator, uncached | ratio (median of {ROUNDS} interleaved rounds) |"
    );
    println!("|---|---|---|---|");
    let mut cached_rows = Vec::new();
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
        let jwk = key.public_jwk();
        let dk = match alg {
            Alg::RS256 => DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()),
            Alg::ES256 => DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap()),
            _ => DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()),
        }
        .unwrap();
        let mut validation = Validation::new(alg.name().parse().unwrap());
        validation.set_audience(&["api"]);
        validation.set_issuer(&[ISS]);
        let build = |cache: bool| {
            let b = JwtValidator::builder().issuer(
                Issuer::new(ISS)
                    .audience("api")
                    .jwk_set(msec_test_support::keys::jwks(&[&key])),
            );
            if cache { b } else { b.no_cache() }.build().unwrap()
        };
        let uncached = build(false);
        let (bare, ours, ratio) = interleave(
            300,
            || {
                black_box(jsonwebtoken::decode::<Value>(black_box(&token), &dk, &validation).unwrap());
            },
            || {
                black_box(uncached.validate(black_box(&token)).into_ready().unwrap().unwrap());
            },
        );
        println!("| {} | {bare:.1?} | {ours:.1?} | **{ratio:.3}** |", alg.name());

        let cached = build(true);
        let bare_svc = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let mut layered = AuthnLayer::jwt(cached).layer(bare_svc);
        let mut plain = bare_svc;
        let hv = http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let request = || {
            let mut req = http::Request::new(Full::new(Bytes::new()));
            req.headers_mut().insert(http::header::AUTHORIZATION, hv.clone());
            req
        };
        let (without, with, _) = interleave(
            20_000,
            || {
                black_box(plain.call(request()).now_or_never().unwrap().unwrap());
            },
            || {
                black_box(layered.call(request()).now_or_never().unwrap().unwrap());
            },
        );
        cached_rows.push((alg.name(), token.len(), without, with));
    }
    println!();
    println!("| alg (token bytes) | request + bare service | same + AuthnLayer, cached hit | the layer's own cost |");
    println!("|---|---|---|---|");
    for (alg, len, without, with) in cached_rows {
        println!(
            "| {alg} ({len} B) | {without:.2?} | {with:.2?} | **{:.2?}** |",
            with.saturating_sub(without)
        );
    }
}
