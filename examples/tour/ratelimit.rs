//! Rate limiting (msec-ratelimit): a client going over its quota with honest RateLimit headers, the client IP
//! resolved behind a trusted proxy, the penalty box banning a password guesser, and tower's concurrency limit
//! with load shedding beside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msec::prelude::*;
use msec::ratelimit::{ClientIpLayer, PenaltyBox, Quota, RateLimitLayer, RateLimiter, Rule, TrustedProxies};
use tokio::sync::Notify;
use tower::ServiceBuilder;

use crate::{BoxError, Tour};

/// The login handler: only `x-password: hunter2` gets in.
async fn login(headers: http::HeaderMap) -> Result<&'static str, Rejection> {
    match headers.get("x-password") {
        Some(p) if p == "hunter2" => Ok("welcome"),
        _ => Err(Rejection::missing_credentials()),
    }
}

pub(crate) async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let limiter = RateLimiter::builder()
        .rule(Rule::new("per-client", Quota::per_minute(3)).route("/api/{*rest}"))
        .rule(Rule::new("login", Quota::per_minute(10)).route("POST /login"))
        .penalty_box(PenaltyBox::builder().threshold(3).ban(Duration::from_secs(300)))
        .build()?;
    let bans = limiter.penalty_box().ok_or("penalty box configured")?.clone();
    let app = Router::new()
        .route("/api/items", get(|| async { "items" }))
        .route("/login", post(login))
        .layer(
            ServiceBuilder::new()
                // The tour's client connects from 127.0.0.1, our stand-in for a load balancer.
                .layer(ClientIpLayer::new(TrustedProxies::new(["127.0.0.0/8"])?))
                .layer(RateLimitLayer::new(limiter)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await });

    let s = "ratelimit";
    let items = format!("{base}/api/items");
    let alice = [("x-forwarded-for", "198.51.100.7")];
    for n in 1..=3 {
        let a = tour.send(crate::get(&items, &alice)).await?;
        let rl = header(&a, "ratelimit");
        tour.record(
            s,
            &format!("GET /api/items #{n} from 198.51.100.7 -> RateLimit: {rl}"),
            &a,
            (200, "-"),
        );
    }
    let a = tour.send(crate::get(&items, &alice)).await?;
    let what = format!(
        "GET /api/items #4 -> Retry-After: {}, RateLimit-Policy: {}",
        header(&a, "retry-after"),
        header(&a, "ratelimit-policy")
    );
    tour.record(s, &what, &a, (429, "rate_limited"));
    let a = tour
        .send(crate::get(&items, &[("x-forwarded-for", "203.0.113.9")]))
        .await?;
    tour.record(s, "GET /api/items from 203.0.113.9 (its own quota)", &a, (200, "-"));

    let login_url = format!("{base}/login");
    let mallory = [("x-forwarded-for", "192.0.2.66"), ("x-password", "guess")];
    for n in 1..=3 {
        let a = tour.send(crate::post_json(&login_url, &mallory, "{}")).await?;
        tour.record(
            s,
            &format!("POST /login, wrong password #{n} from 192.0.2.66"),
            &a,
            (401, "missing_credentials"),
        );
    }
    let right = [("x-forwarded-for", "192.0.2.66"), ("x-password", "hunter2")];
    let a = tour.send(crate::post_json(&login_url, &right, "{}")).await?;
    let what = format!(
        "POST /login, right password, but banned -> Retry-After: {}",
        header(&a, "retry-after")
    );
    tour.record(s, &what, &a, (429, "banned"));
    let key = bans.key_for_ip("192.0.2.66".parse()?).ok_or("ip key")?;
    bans.unban(&key).await?;
    let a = tour.send(crate::post_json(&login_url, &right, "{}")).await?;
    tour.record(s, "PenaltyBox::unban, then the right password", &a, (200, "-"));
    // What a threat detector does: ban by hand.
    let bot = bans.key_for_ip("203.0.113.66".parse()?).ok_or("ip key")?;
    bans.ban(&bot, Duration::from_secs(3600)).await?;
    let a = tour
        .send(crate::get(&items, &[("x-forwarded-for", "203.0.113.66")]))
        .await?;
    tour.record(
        s,
        "GET /api/items from 203.0.113.66 after PenaltyBox::ban",
        &a,
        (429, "banned"),
    );

    concurrency(tour).await
}

/// tower's ConcurrencyLimit + LoadShed beside the rate limiter: one request in flight, the next one shed (503).
async fn concurrency(tour: &mut Tour) -> Result<(), BoxError> {
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
    let app = Router::new().route("/report", get(slow)).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: BoxError| async {
                Rejection::unavailable(ReasonCode::SERVICE_UNAVAILABLE, "the server is busy").with_retry_after(1)
            }))
            .load_shed()
            .concurrency_limit(1)
            .layer(RateLimitLayer::new(
                RateLimiter::builder()
                    .rule(Rule::new("reports", Quota::per_second(10)))
                    .build()?,
            )),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/report", listener.local_addr()?);
    // `into_make_service*` converts the router once; served directly, axum would apply route layers per
    // connection and each connection would get a concurrency limit of its own.
    tokio::spawn(async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await });

    let first = {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let req = crate::get(&url, &[]);
        tokio::spawn(async move {
            let resp = client.request(req).await?;
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await?;
            Ok::<u16, BoxError>(status)
        })
    };
    started.notified().await;
    let a = tour.send(crate::get(&url, &[])).await?;
    tour.record(
        "ratelimit",
        "GET /report while another is in flight (limit 1)",
        &a,
        (503, "service_unavailable"),
    );
    release.notify_one();
    let status = first.await??;
    tour.note(
        "ratelimit",
        "the request in flight completes",
        &status.to_string(),
        "-",
        status == 200,
    );
    Ok(())
}

fn header(a: &crate::Answer, name: &str) -> String {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned()
}
