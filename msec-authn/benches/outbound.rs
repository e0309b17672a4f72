//! `BearerTokenLayer` with a cached token beside the raw primitive: inserting a prepared `Authorization` header
//! by hand before calling the same inner service.
//!
//! Run: `cargo bench -p msec-authn --bench outbound -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;

use axum::Router;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use msec_authn::keys::HttpConfig;
use msec_authn::outbound::{BearerTokenLayer, ClientCredentials};
use msec_test_support::TestKey;
use serde_json::json;
use tower::{Layer, Service};

/// The inner client: answers at once with the number of headers it saw.
fn inner()
-> impl Service<Request<()>, Response = usize, Error = Infallible, Future = Ready<Result<usize, Infallible>>> + Clone {
    tower::service_fn(|req: Request<()>| ready(Ok::<_, Infallible>(black_box(req.headers().len()))))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let token = TestKey::es256().token().sub("billing").aud("orders").sign();
    let source = rt.block_on(async {
        let (listener, addr) = msec_test_support::net::listener().await;
        let body = json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
        let app = Router::new().route("/token", post(move || async move { axum::Json(body) }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let source = ClientCredentials::builder(format!("http://{addr}/token"))
            .client_secret_basic("billing", "bench-secret")
            .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
            .build()
            .unwrap();
        source.token().await.unwrap();
        source
    });

    let mut g = c.benchmark_group("outbound_bearer_cached");
    // The raw primitive: a prepared sensitive header value, cloned into each request by hand.
    let mut prepared = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    prepared.set_sensitive(true);
    let mut raw = inner();
    g.bench_function("raw header insert + inner call", |b| {
        b.iter(|| {
            let mut req = Request::new(());
            req.headers_mut().insert(AUTHORIZATION, prepared.clone());
            raw.call(req).now_or_never().unwrap().unwrap()
        });
    });
    let mut layered = BearerTokenLayer::new(source).layer(inner());
    g.bench_function("BearerTokenLayer (cached token) + inner call", |b| {
        b.iter(|| layered.call(Request::new(())).now_or_never().unwrap().unwrap());
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
