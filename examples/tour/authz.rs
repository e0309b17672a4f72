//! Authorization (msec-core): a deny-by-default route policy, problem+json rejections, secure headers.

use axum::{Router, routing::get};
use msec::authn::AuthnLayer;
use msec::authn::jwt::{Issuer, JwtValidator};
use msec::prelude::*;
use msec_test_support::TestKey;
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

/// The issuer whose tokens this section's service accepts (keys configured statically: the authn section shows
/// JWKS discovery).
const ISSUER: &str = "https://id.tour.example";

/// An access token for `sub` with `scope`, signed by the tour issuer's key.
fn token(sub: &str, scope: &str) -> String {
    TestKey::es256()
        .token()
        .iss(ISSUER)
        .aud("orders-api")
        .sub(sub)
        .scope(scope)
        .sign()
}

pub async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let policy = Policy::from_toml(POLICY)?;
    let validator = JwtValidator::builder()
        .issuer(
            Issuer::new(ISSUER)
                .audience("orders-api")
                .jwk_set(msec_test_support::keys::jwks(&[&TestKey::es256()])),
        )
        .build()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/v1/orders/{id}",
            get(|p: Principal| async move { format!("order for {}", p.subject) }),
        )
        .route("/v1/orders", axum::routing::post(|| async { "created" }))
        .route("/admin", get(|| async { "admin" }))
        .layer(
            ServiceBuilder::new()
                .layer(SecureHeadersLayer::api())
                // Optional: a request without a token goes on as anonymous, so the policy decides (public health
                // check, 401 on orders); a bad token is still refused here.
                .layer(AuthnLayer::jwt(validator).optional().realm("tour"))
                .layer(AuthorizeLayer::new(policy).realm("tour")),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let s = "authz";
    let reader_token = format!("Bearer {}", token("alice", "orders:read"));
    let reader = [("authorization", reader_token.as_str())];
    let a = tour.send(crate::get(&format!("{base}/healthz"), &[])).await?;
    tour.record(s, "GET /healthz (public)", &a, (200, "-"));
    let a = tour.send(crate::get(&format!("{base}/v1/orders/7"), &[])).await?;
    tour.record(s, "GET /v1/orders/7, no token", &a, (401, "missing_credentials"));
    let a = tour.send(crate::get(&format!("{base}/v1/orders/7"), &reader)).await?;
    tour.record(s, "GET /v1/orders/7, token with orders:read", &a, (200, "-"));
    let a = tour
        .send(crate::post_json(&format!("{base}/v1/orders"), &reader, "{}"))
        .await?;
    tour.record(
        s,
        "POST /v1/orders, token with orders:read only",
        &a,
        (403, "insufficient_scope"),
    );
    let a = tour.send(crate::get(&format!("{base}/admin"), &reader)).await?;
    tour.record(
        s,
        "GET /admin (no rule: denied by default)",
        &a,
        (403, "no_matching_rule"),
    );
    Ok(())
}
