//! Revocation (msec-authn): an orders service validating JWTs with `AuthnLayer` and a `MemoryDenylist` hook
//! (with many replicas, `RedisDenylist` is the same hook on the shared Redis). A token is accepted, revoked by
//! its `jti` (the entry lives until the token's `exp`), and refused on the next request.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::{Extension, Router, routing::get};
use msec::authn::AuthnLayer;
use msec::authn::jwt::{Algorithm, Issuer, JwtValidator};
use msec::authn::revocation::MemoryDenylist;
use msec::prelude::*;
use msec_test_support::TestKey;

use crate::{BoxError, Tour};

const ISSUER: &str = "https://id.example.com";

pub(crate) async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let key = TestKey::es256();
    let validator = JwtValidator::builder()
        .issuer(Issuer::new(ISSUER).audience("orders-api").pem_key(
            Some(&key.kid),
            Algorithm::ES256,
            key.public_pem.as_bytes(),
        ))
        .build()?;
    // One clone goes into the layer, the other stays with whoever revokes (an admin endpoint, an event consumer).
    let denylist = MemoryDenylist::new(100_000);
    let app = Router::new()
        .route(
            "/v1/orders/{id}",
            get(|Extension(p): Extension<Arc<Principal>>| async move { format!("orders of {}", p.subject) }),
        )
        .layer(AuthnLayer::jwt(validator).realm("tour").hook(denylist.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/orders/7", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let s = "revocation";
    let exp = SystemTime::now() + Duration::from_secs(600);
    let token = key
        .token()
        .iss(ISSUER)
        .aud("orders-api")
        .sub("mallory")
        .jti("token-7f3a")
        .expires_at(exp)
        .sign();
    let bearer = format!("Bearer {token}");

    let a = tour.send(crate::get(&url, &[("authorization", &bearer)])).await?;
    tour.record(
        s,
        "GET /v1/orders/7 with a valid token (jti token-7f3a)",
        &a,
        (200, "-"),
    );

    // The user reports the token stolen: revoke this jti until the token's exp.
    denylist.revoke_token(Some(ISSUER), "token-7f3a", exp)?;
    let a = tour.send(crate::get(&url, &[("authorization", &bearer)])).await?;
    tour.record(
        s,
        "GET /v1/orders/7, same token after its jti was revoked",
        &a,
        (401, "token_revoked"),
    );
    let challenge = a
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tour.note(
        s,
        "  its WWW-Authenticate challenge",
        "-",
        "error=\"invalid_token\"",
        challenge.contains("error=\"invalid_token\""),
    );
    Ok(())
}
