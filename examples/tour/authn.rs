//! Authentication (msec-authn): a loopback OIDC issuer (discovery document + JWKS), a service that validates its
//! access tokens with `AuthnLayer`, and good and bad tokens sent to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::{Json, Router, routing::get};
use msec::authn::AuthnLayer;
use msec::authn::jwt::{Issuer, JwtValidator};
use msec::authn::keys::HttpConfig;
use msec::prelude::*;
use msec_test_support::TestKey;
use serde_json::{Value, json};

use crate::{BoxError, Tour};

#[derive(Clone)]
struct Idp {
    issuer: String,
    key: TestKey,
    jwks_hits: Arc<AtomicUsize>,
}

/// Starts the issuer: `/.well-known/openid-configuration` names `/jwks`, which serves the public key.
async fn start_idp() -> Result<Idp, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let idp = Idp {
        issuer: format!("http://{}", listener.local_addr()?),
        key: TestKey::rs256(),
        jwks_hits: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(idp): State<Idp>| async move {
                Json(json!({"issuer": idp.issuer, "jwks_uri": format!("{}/jwks", idp.issuer)}))
            }),
        )
        .route(
            "/jwks",
            get(|State(idp): State<Idp>| async move {
                idp.jwks_hits.fetch_add(1, Ordering::SeqCst);
                (
                    [("cache-control", "max-age=300")],
                    Json(msec_test_support::keys::jwks(&[&idp.key])),
                )
            }),
        )
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(idp)
}

pub(crate) async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let idp = start_idp().await?;
    // OIDC discovery → JWKS, fetched before the service starts (fail start if the issuer is down). Plain HTTP is
    // allowed here only because the issuer is on loopback.
    let validator = JwtValidator::builder()
        .issuer(Issuer::new(&idp.issuer).audience("orders-api").oidc_discovery())
        .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
        .build_and_fetch()
        .await?;

    let app = Router::new()
        .route(
            "/v1/orders/{id}",
            get(|p: Principal| async move { format!("orders of {}", p.subject) }),
        )
        .layer(AuthnLayer::jwt(validator).realm("tour"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/orders/7", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let s = "authn";
    let token = |f: &dyn Fn(Value) -> Value| {
        let claims = f(json!({
            "iss": idp.issuer, "aud": "orders-api", "sub": "alice", "scope": "orders:read",
            "iat": now() - 10, "exp": now() + 600,
        }));
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": idp.key.kid});
        msec_test_support::keys::sign_compact(&idp.key, &header, &claims)
    };
    let bearer = |t: &str| format!("Bearer {t}");

    let valid = token(&|c| c);
    let a = tour
        .send(crate::get(&url, &[("authorization", &bearer(&valid))]))
        .await?;
    tour.record(s, "GET /v1/orders/7 with a valid token", &a, (200, "-"));

    let expired = token(&|mut c| {
        c["iat"] = json!(now() - 7200);
        c["exp"] = json!(now() - 3600);
        c
    });
    let a = tour
        .send(crate::get(&url, &[("authorization", &bearer(&expired))]))
        .await?;
    tour.record(
        s,
        "GET /v1/orders/7, token expired an hour ago",
        &a,
        (401, "token_expired"),
    );

    let billing = token(&|mut c| {
        c["aud"] = json!("billing-api");
        c
    });
    let a = tour
        .send(crate::get(&url, &[("authorization", &bearer(&billing))]))
        .await?;
    tour.record(
        s,
        "GET /v1/orders/7, token for billing-api",
        &a,
        (401, "audience_mismatch"),
    );

    let a = tour.send(crate::get(&url, &[])).await?;
    tour.record(s, "GET /v1/orders/7, no token", &a, (401, "missing_credentials"));

    let none = format!(
        "{}.{}.",
        msec_test_support::keys::b64url(br#"{"alg":"none"}"#),
        valid.split('.').nth(1).unwrap_or_default()
    );
    let a = tour
        .send(crate::get(&url, &[("authorization", &bearer(&none))]))
        .await?;
    tour.record(
        s,
        "GET /v1/orders/7, unsigned token (alg none)",
        &a,
        (401, "alg_not_allowed"),
    );

    let a = tour
        .send(crate::get(&url, &[("authorization", "Bearer not-a-token")]))
        .await?;
    tour.record(
        s,
        "GET /v1/orders/7, garbage bearer value",
        &a,
        (400, "malformed_token"),
    );

    let hits = idp.jwks_hits.load(Ordering::SeqCst);
    tour.note(
        s,
        "JWKS fetches for all of the above",
        &hits.to_string(),
        "-",
        hits == 1,
    );
    Ok(())
}

fn now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
