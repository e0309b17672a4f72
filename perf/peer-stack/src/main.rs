//! `/v1/hello` behind the stack users assemble today: jwt-authorizer (JWKS, signature verified on every
//! request) + tower_governor (per-IP GCRA). `/bare/hello` has no layer. Used by `perf/run.sh`.
//!
//! Configuration: PEER_ADDR (default 127.0.0.1:3100), PEER_JWKS_URL, PEER_ISSUER, PEER_AUDIENCE,
//! PEER_RATE_PER_SECOND (default 1000000: the limiter runs but never refuses during load tests).
use std::net::SocketAddr;

use axum::extract::Request;
use axum::routing::get;
use axum::Router;
use jwt_authorizer::{IntoLayer, JwtAuthorizer, Validation};
use tower::ServiceBuilder;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

#[derive(Clone, Debug, serde::Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: String,
}

async fn hello(req: Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    match req.extensions().get::<jsonwebtoken::TokenData<Claims>>() {
        Some(t) if t.claims.scope.split(' ').any(|s| s == "hello:read") => {
            format!("hello {}", t.claims.sub).into_response()
        }
        _ => axum::http::StatusCode::FORBIDDEN.into_response(),
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() {
    let addr: SocketAddr = env("PEER_ADDR", "127.0.0.1:3100").parse().expect("PEER_ADDR");
    let jwks = std::env::var("PEER_JWKS_URL").expect("PEER_JWKS_URL");
    let validation = Validation::new()
        .iss(&[env("PEER_ISSUER", "http://127.0.0.1:3200")])
        .aud(&[env("PEER_AUDIENCE", "orders-api")]);
    let auth = JwtAuthorizer::<Claims>::from_jwks_url(&jwks)
        .validation(validation)
        .build()
        .await
        .expect("jwt-authorizer");
    let per_second: u64 = env("PEER_RATE_PER_SECOND", "1000000").parse().expect("rate");
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond((1_000_000_000 / per_second).max(1))
        .burst_size(u32::try_from(per_second).unwrap_or(u32::MAX))
        .finish()
        .expect("governor config");

    let protected = ServiceBuilder::new()
        .layer(GovernorLayer::new(governor))
        .map_response(|r: axum07::response::Response| r.map(axum::body::Body::new))
        .layer(auth.into_layer())
        .map_response(|r: axum::response::Response| r.map(axum07::body::Body::new))
        .service(Router::new().route("/v1/hello", get(hello)));
    let app = Router::new()
        .route("/bare/hello", get(|| async { "hello" }))
        .route_service("/v1/hello", protected);
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    eprintln!("peer stack listening on http://{addr}");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
}
