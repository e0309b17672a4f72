//! Authorization (msec-core): a deny-by-default route policy, problem+json rejections, secure headers.

use std::sync::Arc;

use axum::{Router, routing::get};
use msec::prelude::*;
use tower::ServiceBuilder;

use crate::{BoxError, Tour};

const POLICY: &str = r#"
[[rule]]
name = "health is public"
effect = "allow"
routes = ["GET /healthz"]
require = "public"

[[rule]]
name = "read orders"
effect = "allow"
routes = ["GET /v1/orders/{id}"]
require = { scope = "orders:read" }

[[rule]]
name = "write orders"
effect = "allow"
routes = ["POST /v1/orders"]
require = { scope = "orders:write" }
"#;

/// A stand-in for authentication until the tour's authn section wires msec-authn: it turns the demo header
/// `x-demo-principal: <subject> <scope,...>` into a `Principal`. Never do this in a real service.
async fn demo_principal(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let principal = req
        .headers()
        .get("x-demo-principal")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(sub, scopes)| Arc::new(Principal::builder(sub).scopes(scopes.split(',')).build()));
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

pub async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let policy = Policy::from_toml(POLICY)?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/orders/{id}", get(|p: Principal| async move { format!("order for {}", p.subject) }))
        .route("/v1/orders", axum::routing::post(|| async { "created" }))
        .route("/admin", get(|| async { "admin" }))
        .layer(
            ServiceBuilder::new()
                .layer(SecureHeadersLayer::api())
                .layer(axum::middleware::from_fn(demo_principal))
                .layer(AuthorizeLayer::new(policy).realm("tour")),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let s = "authz";
    let reader = [("x-demo-principal", "alice orders:read")];
    let a = tour.send(crate::get(&format!("{base}/healthz"), &[])).await?;
    tour.record(s, "GET /healthz (public)", &a, (200, "-"));
    let a = tour.send(crate::get(&format!("{base}/v1/orders/7"), &[])).await?;
    tour.record(s, "GET /v1/orders/7, no principal", &a, (401, "missing_credentials"));
    let a = tour.send(crate::get(&format!("{base}/v1/orders/7"), &reader)).await?;
    tour.record(s, "GET /v1/orders/7 with orders:read", &a, (200, "-"));
    let a = tour.send(crate::post_json(&format!("{base}/v1/orders"), &reader, "{}")).await?;
    tour.record(s, "POST /v1/orders with orders:read only", &a, (403, "insufficient_scope"));
    let a = tour.send(crate::get(&format!("{base}/admin"), &reader)).await?;
    tour.record(s, "GET /admin (no rule: denied by default)", &a, (403, "no_matching_rule"));
    Ok(())
}
