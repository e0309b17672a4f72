//! API keys (msec-authn): keys made as `msec apikey new` makes them, their records (digests only) in an in-memory
//! store, and a service that accepts them from `x-api-key` or `Authorization: Bearer`.

use std::time::{Duration, SystemTime};

use axum::{Router, routing::get};
use msec::authn::AuthnLayer;
use msec::authn::apikey::{ApiKeyAuthenticator, ApiKeySpec, ApiKeyStore, KeyHasher, MemoryApiKeyStore};
use msec::prelude::*;

use crate::{BoxError, Tour};

pub(crate) async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let s = "apikey";
    // `msec apikey new --prefix sk_live --scopes orders:read --subject billing-bot --expires-in 90d` does this
    // and prints the record as one JSON line; the service loads such lines with MemoryApiKeyStore::from_file.
    let hasher = KeyHasher::sha256();
    let issue = |subject: &str| {
        ApiKeySpec::new("sk_live")
            .subject(subject)
            .scopes(["orders:read"])
            .expires_in(Duration::from_secs(90 * 86_400))
            .issue(&hasher, SystemTime::now())
    };
    let billing = issue("billing-bot")?;
    let old = issue("billing-bot")?;
    let lines = format!("{}\n{}\n", billing.record.to_json_line(), old.record.to_json_line());
    let store = MemoryApiKeyStore::from_json_lines(&lines)?;
    let _ = store.revoke(old.key.key_id()).await?;

    let app = Router::new()
        .route(
            "/v1/orders/7",
            get(|p: Principal| async move { format!("orders of {} (key {:?})", p.subject, p.token_id) }),
        )
        .layer(AuthnLayer::new(ApiKeyAuthenticator::new(store, hasher).prefixes(["sk_live"])?).realm("tour"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/orders/7", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let a = tour
        .send(crate::get(&url, &[("x-api-key", billing.key.expose_secret())]))
        .await?;
    tour.record(s, "GET /v1/orders/7 with an API key (x-api-key)", &a, (200, "-"));

    let bearer = format!("Bearer {}", billing.key.expose_secret());
    let a = tour.send(crate::get(&url, &[("authorization", &bearer)])).await?;
    tour.record(s, "GET /v1/orders/7 with the key as a bearer token", &a, (200, "-"));

    // One character mistyped: the checksum refuses it before any store lookup.
    let mut typo = billing.key.expose_secret().to_owned();
    let last = if typo.ends_with('x') { "y" } else { "x" };
    typo.replace_range(typo.len() - 1.., last);
    let a = tour.send(crate::get(&url, &[("x-api-key", &typo)])).await?;
    tour.record(
        s,
        "GET /v1/orders/7, API key with a bad checksum",
        &a,
        (401, "invalid_api_key"),
    );

    let a = tour
        .send(crate::get(&url, &[("x-api-key", old.key.expose_secret())]))
        .await?;
    tour.record(s, "GET /v1/orders/7, revoked API key", &a, (401, "api_key_revoked"));
    Ok(())
}
