//! RateLimitLayer composes with tower's ConcurrencyLimit and LoadShed (concurrency is tower's job).
#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use common::{client, get as http_get};
use msec_core::{ReasonCode, Rejection};
use msec_ratelimit::{Quota, RateLimitLayer, RateLimiter, Rule};
use tokio::sync::Notify;
use tower::ServiceBuilder;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test]
async fn load_shed_beside_the_rate_limiter() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (st, rel) = (started.clone(), release.clone());
    let slow = move || {
        let (st, rel) = (st.clone(), rel.clone());
        async move {
            st.notify_one();
            rel.notified().await;
            "done"
        }
    };
    let limiter = RateLimiter::builder()
        .rule(Rule::new("global", Quota::per_second(100)))
        .build()
        .unwrap();
    let app = Router::new().route("/report", get(slow)).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: BoxError| async {
                Rejection::unavailable(ReasonCode::SERVICE_UNAVAILABLE, "the server is busy").with_retry_after(1)
            }))
            .load_shed()
            .concurrency_limit(1)
            .layer(RateLimitLayer::new(limiter)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/report", listener.local_addr().unwrap());
    // Converted to a service once (`into_make_service*`): served directly, axum 0.8 would apply the route layers
    // per connection, and each connection would get a concurrency limit of its own.
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let c = client();
    let first = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { http_get(&c, &url, &[]).await.status })
    };
    started.notified().await;
    let a = http_get(&c, &url, &[]).await;
    assert_eq!((a.status, a.code()), (503, "service_unavailable"));
    release.notify_one();
    assert_eq!(first.await.unwrap(), 200);
}
