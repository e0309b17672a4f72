//! Service-to-service tokens (msec-authn outbound): a billing service gets an access token from a loopback
//! OAuth 2.0 token endpoint (client credentials) and calls the orders service through `BearerTokenLayer`; the
//! orders service validates it with `AuthnLayer`. A call without the layer, and a client with a wrong secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msec::authn::AuthnLayer;
use msec::authn::jwt::{Algorithm, Issuer, JwtValidator};
use msec::authn::keys::HttpConfig;
use msec::authn::outbound::{BearerTokenLayer, ClientCredentials, TokenError};
use msec::prelude::*;
use msec_test_support::TestKey;
use serde_json::json;
use tower::{Layer, ServiceExt};

use crate::{Answer, BoxError, Tour};

const CLIENT_ID: &str = "billing";
const CLIENT_SECRET: &str = "billing-secret-from-the-vault";

#[derive(Clone)]
struct TokenEndpoint {
    issuer: String,
    key: Arc<TestKey>,
    fetches: Arc<AtomicUsize>,
}

/// `POST /token`: `grant_type=client_credentials` with `client_secret_post` credentials → a 10-minute ES256 JWT
/// for the orders API.
async fn token(State(ep): State<TokenEndpoint>, body: Bytes) -> Response {
    ep.fetches.fetch_add(1, Ordering::SeqCst);
    let form = String::from_utf8_lossy(&body);
    let param = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_default()
            .to_owned()
    };
    if param("grant_type") != "client_credentials" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    // The demo's values need no percent-decoding; compare the secret in constant time.
    if param("client_id") != CLIENT_ID
        || !msec_core::secret::ct_eq(param("client_secret").as_bytes(), CLIENT_SECRET.as_bytes())
    {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let jwt = ep
        .key
        .token()
        .iss(&ep.issuer)
        .aud("orders-api")
        .sub(CLIENT_ID)
        .claim("client_id", CLIENT_ID)
        .expires_in(std::time::Duration::from_secs(600))
        .sign();
    Json(json!({"access_token": jwt, "token_type": "Bearer", "expires_in": 600})).into_response()
}

fn source(url: &str, secret: &str) -> Result<ClientCredentials, BoxError> {
    Ok(ClientCredentials::builder(url)
        .client_secret_post(CLIENT_ID, secret)
        // Plain HTTP only because the token endpoint is on loopback.
        .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
        .build()?)
}

pub(crate) async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    // The authorization server's token endpoint.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ep = TokenEndpoint {
        issuer: format!("http://{}", listener.local_addr()?),
        key: Arc::new(TestKey::es256()),
        fetches: Arc::new(AtomicUsize::new(0)),
    };
    let token_url = format!("{}/token", ep.issuer);
    let app = Router::new().route("/token", post(token)).with_state(ep.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The orders service trusts the authorization server's key.
    let validator = JwtValidator::builder()
        .issuer(Issuer::new(&ep.issuer).audience("orders-api").pem_key(
            Some(&ep.key.kid),
            Algorithm::ES256,
            ep.key.public_pem.as_bytes(),
        ))
        .build()?;
    let orders = Router::new()
        .route(
            "/v1/orders",
            get(|p: Principal| async move { format!("orders for service {} ({:?})", p.subject, p.kind) }),
        )
        .layer(AuthnLayer::jwt(validator).realm("orders"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/orders", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, orders).await });

    // The billing service's outgoing HTTP client, with its service token attached by the layer.
    let s = "service token";
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let billing = BearerTokenLayer::new(source(&token_url, CLIENT_SECRET)?).layer(http.clone());
    for n in 1..=2 {
        let resp = billing.clone().oneshot(crate::get(&url, &[])).await?;
        let (parts, body) = resp.into_parts();
        let answer = Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        };
        tour.record(
            s,
            &format!("billing → GET /v1/orders through BearerTokenLayer (call {n})"),
            &answer,
            (200, "-"),
        );
    }
    let fetches = ep.fetches.load(Ordering::SeqCst);
    tour.note(
        s,
        "token endpoint requests for both calls",
        &fetches.to_string(),
        "-",
        fetches == 1,
    );

    let a = tour.send(crate::get(&url, &[])).await?;
    tour.record(s, "GET /v1/orders without the layer", &a, (401, "missing_credentials"));

    // A client with the wrong secret: the call fails on the client side, typed; nothing reaches the orders service.
    let wrong = BearerTokenLayer::new(source(&token_url, "not-the-secret")?).layer(http);
    let outcome = match wrong.oneshot(crate::get(&url, &[])).await {
        Ok(resp) => (resp.status().to_string(), "-".to_owned()),
        Err(e) => match e.downcast_ref::<TokenError>() {
            Some(te) => (
                "client error".to_owned(),
                format!("token {}: {}", te.kind().as_str(), te.oauth_error().unwrap_or("-")),
            ),
            None => ("client error".to_owned(), e.to_string()),
        },
    };
    let ok = outcome.1 == "token rejected: invalid_client";
    tour.note(s, "billing with a wrong client secret", &outcome.0, &outcome.1, ok);
    Ok(())
}
