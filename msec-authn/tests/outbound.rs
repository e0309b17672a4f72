//! Outbound service tokens against a real loopback OAuth 2.0 token endpoint: caching, refresh before expiry,
//! single flight, back-off when the endpoint is down, and `BearerTokenLayer` on a hyper-util client and on a
//! tonic client calling a tonic server behind `AuthnLayer`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use msec_authn::AuthnLayer;
use msec_authn::jwt::{Issuer, JwtValidator};
use msec_authn::keys::HttpConfig;
use msec_authn::outbound::{BearerTokenLayer, ClientCredentials, ClientCredentialsBuilder, TokenError, TokenErrorKind};
use msec_core::Principal;
use msec_core::clock::ManualClock;
use msec_test_support::TestKey;
use serde_json::json;
use tower::{Layer, ServiceBuilder, ServiceExt};

const CLIENT_ID: &str = "billing";
const SECRET: &str = "s3cr3t:with/odd+chars";

/// A loopback token endpoint. It counts requests, checks client authentication and mints ES256 JWTs.
struct Endpoint {
    base: String,
    calls: AtomicUsize,
    /// The HTTP status to answer with (200 = issue tokens).
    status: AtomicU16,
    expires_in: Mutex<serde_json::Value>,
    last_params: Mutex<Vec<(String, String)>>,
    /// When set, requests wait for a permit before answering (single-flight test).
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    arrived: tokio::sync::Notify,
}

impl Endpoint {
    async fn start() -> Arc<Self> {
        let (listener, addr) = msec_test_support::net::listener().await;
        let ep = Arc::new(Self {
            base: format!("http://{addr}"),
            calls: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            expires_in: Mutex::new(json!(3600)),
            last_params: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
            arrived: tokio::sync::Notify::new(),
        });
        let app = Router::new().route("/token", post(token)).with_state(ep.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        ep
    }

    fn url(&self) -> String {
        format!("{}/token", self.base)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::SeqCst);
    }

    fn source(&self) -> ClientCredentialsBuilder {
        ClientCredentials::builder(self.url())
            .client_secret_basic(CLIENT_ID, SECRET)
            .audience("echo")
            .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
    }
}

fn client_from_form(params: &HashMap<String, String>) -> Option<(String, String)> {
    Some((params.get("client_id")?.clone(), params.get("client_secret")?.clone()))
}

fn client_from_basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

async fn token(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = ep.calls.fetch_add(1, Ordering::SeqCst) + 1;
    ep.arrived.notify_waiters();
    let gate = ep.gate.lock().unwrap().clone();
    if let Some(g) = gate {
        g.acquire().await.unwrap().forget();
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    *ep.last_params.lock().unwrap() = pairs.clone();
    let params: HashMap<String, String> = pairs.into_iter().collect();
    let status = ep.status.load(Ordering::SeqCst);
    if status != 200 {
        return (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(json!({"error": "temporarily_unavailable"})),
        )
            .into_response();
    }
    if params.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let client = client_from_basic(&headers).or_else(|| client_from_form(&params));
    if client != Some((CLIENT_ID.to_owned(), SECRET.to_owned())) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    let key = TestKey::es256();
    let jwt = key
        .token()
        .iss(&ep.base)
        .aud(params.get("audience").map_or("none", String::as_str))
        .sub(CLIENT_ID)
        .claim("client_id", CLIENT_ID)
        .claim("n", n)
        .scope(params.get("scope").map_or("", String::as_str))
        .sign();
    axum::Json(json!({
        "access_token": jwt,
        "token_type": "Bearer",
        "expires_in": ep.expires_in.lock().unwrap().clone(),
        "scope": params.get("scope"),
    }))
    .into_response()
}

/// The `n` claim of a token minted by the endpoint (which request issued it).
fn serial(token: &str) -> u64 {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["n"].as_u64().unwrap()
}

#[tokio::test]
async fn caches_the_token_and_authenticates_the_client() {
    let ep = Endpoint::start().await;
    let src = ep
        .source()
        .scope("orders:read orders:write")
        .resource("https://orders")
        .build()
        .unwrap();
    let a = src.token().await.unwrap();
    let b = src.token().await.unwrap();
    assert_eq!(ep.calls(), 1, "two calls, one fetch");
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert_eq!(a.scope(), Some("orders:read orders:write"));
    assert!(a.header_value().is_sensitive());
    let params = ep.last_params.lock().unwrap().clone();
    let has = |k: &str, v: &str| params.iter().any(|(pk, pv)| pk == k && pv == v);
    assert!(has("grant_type", "client_credentials") && has("scope", "orders:read orders:write"));
    assert!(has("audience", "echo") && has("resource", "https://orders"));
    // With client_secret_basic the secret is not in the body.
    assert!(!params.iter().any(|(k, _)| k == "client_secret"));

    // client_secret_post.
    let post = ClientCredentials::builder(ep.url())
        .client_secret_post(CLIENT_ID, SECRET)
        .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
        .build()
        .unwrap();
    assert!(post.token().await.is_ok());
    assert!(
        ep.last_params
            .lock()
            .unwrap()
            .contains(&("client_secret".to_owned(), SECRET.to_owned()))
    );

    // A wrong secret: a typed rejection carrying the OAuth error code.
    let wrong = ClientCredentials::builder(ep.url())
        .client_secret_basic(CLIENT_ID, "wrong")
        .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
        .build()
        .unwrap();
    let e = wrong.token().await.unwrap_err();
    assert_eq!(
        (e.kind(), e.oauth_error()),
        (TokenErrorKind::Rejected, Some("invalid_client"))
    );
    assert!(!e.to_string().contains("wrong") && !format!("{e:?}").contains("wrong"));
}

#[tokio::test]
async fn refreshes_shortly_before_expiry() {
    let ep = Endpoint::start().await;
    *ep.expires_in.lock().unwrap() = json!(100);
    let clock = ManualClock::starting_now();
    let src = ep
        .source()
        .refresh_skew(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let first = src.token().await.unwrap();
    assert_eq!(serial(first.expose_secret()), 1);
    clock.advance(Duration::from_secs(89));
    assert_eq!(serial(src.token().await.unwrap().expose_secret()), 1);
    assert_eq!(ep.calls(), 1);
    // 10 s before expiry: refreshed.
    clock.advance(Duration::from_secs(2));
    assert_eq!(serial(src.token().await.unwrap().expose_secret()), 2);
    assert_eq!(ep.calls(), 2);
    // The new token is cached for its own lifetime.
    clock.advance(Duration::from_secs(80));
    assert_eq!(serial(src.token().await.unwrap().expose_secret()), 2);
    assert_eq!(ep.calls(), 2);
    // invalidate() forces a fetch.
    src.invalidate();
    assert_eq!(serial(src.token().await.unwrap().expose_secret()), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fetch() {
    let ep = Endpoint::start().await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *ep.gate.lock().unwrap() = Some(gate.clone());
    let src = ep.source().build().unwrap();
    let arrived = ep.arrived.notified();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let src = src.clone();
            tokio::spawn(async move { src.token().await.map(|t| t.expose_secret().to_owned()) })
        })
        .collect();
    // The first fetch has reached the endpoint and is held there while the other 31 callers arrive.
    arrived.await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(100);
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }
    assert_eq!(ep.calls(), 1, "32 concurrent callers, one fetch");
    assert!(tokens.iter().all(|t| t == &tokens[0]));
}

/// By default the back-off is jittered: each client waits between half and all of the delay, so replicas that
/// failed together spread their retries.
#[tokio::test]
async fn backoff_is_jittered_by_default() {
    let ep = Endpoint::start().await;
    ep.set_status(503);
    let clock = ManualClock::starting_now();
    let mut waits = Vec::new();
    for _ in 0..12 {
        let src = ep
            .source()
            .backoff(Duration::from_secs(8), Duration::from_secs(8))
            .clock(clock.clone())
            .build()
            .unwrap();
        assert_eq!(src.token().await.unwrap_err().retry_in(), None);
        let wait = src.token().await.unwrap_err().retry_in().unwrap();
        assert!(
            (Duration::from_secs(4)..=Duration::from_secs(8)).contains(&wait),
            "{wait:?}"
        );
        waits.push(wait);
    }
    waits.sort();
    waits.dedup();
    assert!(waits.len() > 1, "twelve clients, one identical wait: {waits:?}");
}

#[tokio::test]
async fn endpoint_down_gives_a_typed_error_and_backs_off() {
    let ep = Endpoint::start().await;
    *ep.expires_in.lock().unwrap() = json!(100);
    ep.set_status(503);
    let clock = ManualClock::starting_now();
    let src = ep
        .source()
        .backoff(Duration::from_secs(1), Duration::from_secs(4))
        .exact_backoff()
        .refresh_skew(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let e = src.token().await.unwrap_err();
    assert_eq!((e.kind(), e.retry_in()), (TokenErrorKind::ServerError, None));
    assert_eq!(ep.calls(), 1);

    // No fetch storm: callers during the back-off get the error at once, without a request.
    for _ in 0..50 {
        let e = src.token().await.unwrap_err();
        assert_eq!(
            (e.kind(), e.retry_in()),
            (TokenErrorKind::ServerError, Some(Duration::from_secs(1)))
        );
    }
    assert_eq!(ep.calls(), 1);

    // 1 s, 2 s, 4 s, 4 s (the cap) between attempts.
    let s = Duration::from_secs;
    for (wait, calls) in [(s(1), 2), (s(1), 2), (s(1), 3), (s(3), 3), (s(1), 4), (s(4), 5)] {
        clock.advance(wait);
        assert!(src.token().await.is_err());
        assert_eq!(ep.calls(), calls, "after {wait:?}");
    }
    // Back up: the next due attempt succeeds and the back-off resets.
    ep.set_status(200);
    clock.advance(s(4));
    let t = src.token().await.unwrap();
    assert_eq!(ep.calls(), 6);

    // Down again when the token is due for refresh but still valid: the caller still gets it.
    ep.set_status(500);
    clock.advance(s(95));
    assert_eq!(src.token().await.unwrap().expose_secret(), t.expose_secret());
    assert_eq!(ep.calls(), 7);
    // Once it has expired, the error surfaces (after the 1 s back-off of the first failure).
    clock.advance(s(6));
    assert_eq!(src.token().await.unwrap_err().kind(), TokenErrorKind::ServerError);
    assert_eq!(ep.calls(), 8);
}

#[tokio::test]
async fn unreachable_endpoint_fails_the_call_without_calling_the_service() {
    let (listener, addr) = msec_test_support::net::listener().await;
    drop(listener);
    let src = ClientCredentials::builder(format!("http://{addr}/token"))
        .client_secret_basic(CLIENT_ID, SECRET)
        .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
        .backoff(Duration::from_secs(600), Duration::from_secs(600))
        .build()
        .unwrap();
    let e = src.token().await.unwrap_err();
    assert_eq!(e.kind(), TokenErrorKind::Unreachable);

    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let inner = tower::service_fn(move |_req: http::Request<Full<Bytes>>| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(http::Response::new(())) }
    });
    let svc = BearerTokenLayer::new(src).layer(inner);
    let err = svc.oneshot(http::Request::new(Full::default())).await.unwrap_err();
    let te = err.downcast_ref::<TokenError>().unwrap();
    assert_eq!(te.kind(), TokenErrorKind::Unreachable);
    assert!(
        te.retry_in().is_some(),
        "the second attempt was held back by the back-off"
    );
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

fn validator(ep: &Endpoint) -> JwtValidator {
    let key = TestKey::es256();
    JwtValidator::builder()
        .issuer(Issuer::new(ep.base.clone()).audience("echo").pem_key(
            Some(&key.kid),
            jsonwebtoken::Algorithm::ES256,
            key.public_pem.as_bytes(),
        ))
        .build()
        .unwrap()
}

#[tokio::test]
async fn hyper_util_client_with_the_layer() {
    let ep = Endpoint::start().await;
    let app = Router::new()
        .route(
            "/whoami",
            get(|Extension(p): Extension<Arc<Principal>>| async move { p.subject.clone() }),
        )
        .layer(AuthnLayer::jwt(validator(&ep)));
    let (listener, addr): (_, SocketAddr) = msec_test_support::net::listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(BearerTokenLayer::new(ep.source().build().unwrap()))
        .service(client.clone());
    for _ in 0..3 {
        let req = http::Request::get(format!("http://{addr}/whoami"))
            .body(Full::default())
            .unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], CLIENT_ID.as_bytes());
    }
    assert_eq!(ep.calls(), 1);
    // Without the layer: 401.
    let req = http::Request::get(format!("http://{addr}/whoami"))
        .body(Full::default())
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 401);
}

mod grpc {
    use super::*;
    use msec_test_support::pb::echo_client::EchoClient;
    use msec_test_support::pb::echo_server::{Echo, EchoServer};
    use msec_test_support::pb::{SayReply, SayRequest};
    use std::error::Error as _;

    struct EchoImpl;

    #[tonic::async_trait]
    impl Echo for EchoImpl {
        async fn say(&self, req: tonic::Request<SayRequest>) -> Result<tonic::Response<SayReply>, tonic::Status> {
            let subject = req
                .extensions()
                .get::<Arc<Principal>>()
                .map(|p| p.subject.clone())
                .unwrap_or_default();
            Ok(tonic::Response::new(SayReply {
                message: req.into_inner().message,
                subject,
                peer: String::new(),
            }))
        }
    }

    /// The end-to-end test: a tonic client with `BearerTokenLayer` calls a tonic server with
    /// `AuthnLayer`; the token comes from the loopback token endpoint.
    #[tokio::test]
    async fn tonic_client_with_service_token_calls_tonic_server_with_authn() {
        let ep = Endpoint::start().await;
        let (incoming, addr) = msec_test_support::net::tonic_incoming().await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(AuthnLayer::jwt(validator(&ep)).realm("echo"))
                .add_service(EchoServer::new(EchoImpl))
                .serve_with_incoming(incoming),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();

        let authed = ServiceBuilder::new()
            .layer(BearerTokenLayer::new(ep.source().scope("echo:say").build().unwrap()))
            .service(channel.clone());
        let mut client = EchoClient::new(authed);
        for i in 0..3 {
            let reply = client
                .say(SayRequest {
                    message: format!("hi {i}"),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!((reply.message, reply.subject.as_str()), (format!("hi {i}"), CLIENT_ID));
        }
        assert_eq!(ep.calls(), 1, "one token for three calls");

        // The same server without a service token: UNAUTHENTICATED.
        let mut bare = EchoClient::new(channel.clone());
        let st = bare.say(SayRequest { message: "x".into() }).await.unwrap_err();
        assert_eq!(st.code(), tonic::Code::Unauthenticated);

        // A token endpoint that is down: the call fails on the client with the typed error, nothing is sent.
        let (l, dead) = msec_test_support::net::listener().await;
        drop(l);
        let down = ClientCredentials::builder(format!("http://{dead}/token"))
            .client_secret_basic(CLIENT_ID, SECRET)
            .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
            .build()
            .unwrap();
        let mut failing = EchoClient::new(BearerTokenLayer::new(down).layer(channel.clone()));
        let st = failing.say(SayRequest { message: "x".into() }).await.unwrap_err();
        let te = st.source().and_then(|s| s.downcast_ref::<TokenError>()).unwrap();
        assert_eq!(te.kind(), TokenErrorKind::Unreachable);
        // With the `tonic` feature the failure carries a gRPC code a client can act on.
        #[cfg(feature = "tonic")]
        assert_eq!(st.code(), tonic::Code::Unavailable, "{st:?}");
        #[cfg(not(feature = "tonic"))]
        assert_eq!(st.code(), tonic::Code::Unknown, "{st:?}");

        // A client the token endpoint refuses (wrong secret): UNAUTHENTICATED with the feature.
        let refused = ClientCredentials::builder(ep.url())
            .client_secret_basic(CLIENT_ID, "wrong")
            .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
            .build()
            .unwrap();
        let mut refused = EchoClient::new(BearerTokenLayer::new(refused).layer(channel));
        let st = refused.say(SayRequest { message: "x".into() }).await.unwrap_err();
        let te = st.source().and_then(|s| s.downcast_ref::<TokenError>()).unwrap();
        assert_eq!(te.kind(), TokenErrorKind::Rejected);
        #[cfg(feature = "tonic")]
        assert_eq!(st.code(), tonic::Code::Unauthenticated, "{st:?}");
    }
}
