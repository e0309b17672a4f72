//! AuthorizeLayer overhead: a bare inner service beside the same service behind a 5-route and a 100-route policy.
//!
//! Run: `cargo bench --bench authorize`
#![allow(missing_docs, clippy::unwrap_used)]
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::Empty;
use msec::core::Principal;
use msec::core::policy::{AuthorizeLayer, Policy, Requirement};
use tower::{Layer, Service, ServiceExt, service_fn};

fn policy(routes: usize) -> Policy {
    let mut b = Policy::builder().allow("health", ["GET /healthz"], Requirement::Public);
    for i in 0..routes - 1 {
        b = b.allow(
            &format!("r{i}"),
            [format!("GET /v1/svc{i}/items/{{id}}")],
            Requirement::scope(format!("svc{i}:read")),
        );
    }
    b.build().expect("valid policy")
}

fn request(path: &str, principal: &Arc<Principal>) -> Request<()> {
    let mut req = Request::get(path).body(()).expect("request");
    req.extensions_mut().insert(principal.clone());
    req
}

fn bench(c: &mut Criterion) {
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) });
    let p5 = Arc::new(Principal::builder("alice").scopes(["svc3:read"]).build());
    let p100 = Arc::new(Principal::builder("alice").scopes(["svc97:read"]).build());

    let mut g = c.benchmark_group("authorize");
    g.bench_function("bare_service", |b| {
        let mut svc = inner;
        b.iter(|| {
            let req = request("/v1/svc3/items/42", &p5);
            black_box(
                svc.ready()
                    .now_or_never()
                    .unwrap()
                    .unwrap()
                    .call(req)
                    .now_or_never()
                    .unwrap()
                    .unwrap(),
            )
        });
    });
    for (n, path, p) in [(5, "/v1/svc3/items/42", &p5), (100, "/v1/svc97/items/42", &p100)] {
        let mut svc = AuthorizeLayer::new(policy(n)).layer(inner);
        g.bench_function(format!("policy_{n}_routes_allow"), |b| {
            b.iter(|| {
                let req = request(path, p);
                black_box(
                    svc.ready()
                        .now_or_never()
                        .unwrap()
                        .unwrap()
                        .call(req)
                        .now_or_never()
                        .unwrap()
                        .unwrap(),
                )
            });
        });
    }
    let mut svc = AuthorizeLayer::new(policy(100)).layer(inner);
    g.bench_function("policy_100_routes_deny_insufficient_scope", |b| {
        b.iter(|| {
            let req = request("/v1/svc10/items/42", &p100);
            black_box(
                svc.ready()
                    .now_or_never()
                    .unwrap()
                    .unwrap()
                    .call(req)
                    .now_or_never()
                    .unwrap()
                    .unwrap(),
            )
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
