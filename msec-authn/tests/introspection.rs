//! Opaque-token introspection (RFC 7662) over real HTTP: a loopback introspection endpoint the test controls (it
//! counts calls and checks client authentication), a protected axum service behind `AuthnLayer`, and a hyper
//! client. One test runs the endpoint over HTTPS with a private CA.
//!
//! Decision documented here: when the introspection endpoint refuses *our* client credentials (401/403), the
//! caller gets 503 `introspection_unavailable` — the caller's token was never judged, so 401 would be a lie.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use msec_authn::introspection::{IntrospectionAuthenticator, IntrospectionBuilder, TokenSelection};
use msec_authn::keys::HttpConfig;
use msec_authn::{AuthnChain, AuthnLayer, JwtAuthenticator};
use msec_core::clock::ManualClock;
use msec_core::{Principal, PrincipalKind};
use msec_test_support::{TestCa, TestKey};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Basic,
    Post,
}

/// The authorization server's introspection endpoint.
struct AsState {
    expect: Expect,
    client_id: &'static str,
    secret: &'static str,
    calls: AtomicUsize,
    tokens: Mutex<HashMap<String, Value>>,
    /// Non-zero: answer with this status.
    status: AtomicU16,
    delay: Mutex<Option<Duration>>,
    /// When set, every call waits for a permit before answering.
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

#[derive(Clone)]
struct As {
    url: String,
    state: Arc<AsState>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

async fn answer(state: Arc<AsState>, req: http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let form = parse_form(&body);
    state.calls.fetch_add(1, Ordering::SeqCst);
    let gate = state.gate.lock().unwrap().clone();
    if let Some(g) = gate {
        let _permit = g.acquire().await.unwrap();
    }
    let delay = *state.delay.lock().unwrap();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let reply = |status: u16, v: Value| {
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap()
    };
    let status = state.status.load(Ordering::SeqCst);
    if status != 0 {
        return reply(status, json!({"error": "server_error"}));
    }
    let authenticated = match state.expect {
        Expect::Basic => parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
            .and_then(|s| {
                s.split_once(':')
                    .map(|(id, secret)| (percent_decode(id), percent_decode(secret)))
            })
            .is_some_and(|(id, secret)| id == state.client_id && secret == state.secret),
        Expect::Post => {
            parts.headers.get("authorization").is_none()
                && form.get("client_id").map(String::as_str) == Some(state.client_id)
                && form.get("client_secret").map(String::as_str) == Some(state.secret)
        }
    };
    if !authenticated {
        return reply(401, json!({"error": "invalid_client"}));
    }
    assert_eq!(
        parts.headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(form.get("token_type_hint").map(String::as_str), Some("access_token"));
    let token = form.get("token").cloned().unwrap_or_default();
    let v = state
        .tokens
        .lock()
        .unwrap()
        .get(&token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    reply(200, v)
}

impl As {
    fn state(expect: Expect) -> Arc<AsState> {
        Arc::new(AsState {
            expect,
            client_id: "orders-api",
            secret: "s3cr3t&/=",
            calls: AtomicUsize::new(0),
            tokens: Mutex::new(HashMap::new()),
            status: AtomicU16::new(0),
            delay: Mutex::new(None),
            gate: Mutex::new(None),
        })
    }

    /// Plain HTTP on loopback.
    async fn start(expect: Expect) -> Self {
        let state = Self::state(expect);
        let (listener, addr) = msec_test_support::net::listener().await;
        let s = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = Arc::clone(&s);
                        async move { Ok::<_, Infallible>(answer(s, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://127.0.0.1:{}/introspect", addr.port()),
            state,
        }
    }

    /// HTTPS with a certificate for `localhost` from `ca`.
    async fn start_tls(expect: Expect, ca: &TestCa) -> Self {
        let state = Self::state(expect);
        let leaf = ca.localhost();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert()], leaf.key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let (listener, addr) = msec_test_support::net::listener().await;
        let s = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let s = Arc::clone(&s);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(move |req| {
                        let s = Arc::clone(&s);
                        async move { Ok::<_, Infallible>(answer(s, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self {
            url: format!("https://localhost:{}/introspect", addr.port()),
            state,
        }
    }

    fn set(&self, token: &str, v: Value) {
        self.state.tokens.lock().unwrap().insert(token.into(), v);
    }

    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn builder(&self) -> IntrospectionBuilder {
        let b = IntrospectionAuthenticator::builder(&self.url)
            .http(
                HttpConfig::new()
                    .danger_allow_http_for_loopback()
                    .no_proxy()
                    .timeout(Duration::from_secs(2)),
            )
            .issuer("https://as.example.com")
            .audience("orders-api");
        match self.state.expect {
            Expect::Basic => b.client_secret_basic(self.state.client_id, self.state.secret),
            Expect::Post => b.client_secret_post(self.state.client_id, self.state.secret),
        }
    }
}

fn active(sub: &str, exp: u64) -> Value {
    json!({
        "active": true, "iss": "https://as.example.com", "aud": ["orders-api", "other"],
        "sub": sub, "client_id": "web-app", "scope": "orders:read orders:write",
        "exp": exp, "iat": exp - 600, "jti": format!("jti-{sub}"), "token_type": "Bearer",
    })
}

/// The protected service: echoes the principal as JSON.
async fn serve(layer: AuthnLayer) -> String {
    let app = Router::new()
        .route(
            "/v1/me",
            get(|Extension(p): Extension<Arc<Principal>>| async move { Json((*p).clone()) }),
        )
        .layer(layer);
    let (listener, addr): (tokio::net::TcpListener, SocketAddr) = msec_test_support::net::listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1/me")
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body.get("code").and_then(Value::as_str).unwrap_or("-")
    }
}

async fn send(url: &str, token: Option<&str>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = http::Request::get(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let resp = client.request(b.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

fn clock() -> ManualClock {
    ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(T0))
}

#[tokio::test]
async fn active_token_becomes_a_principal() {
    let idp = As::start(Expect::Basic).await;
    idp.set("opaque-alice", active("alice", T0 + 600));
    let authn = idp.builder().clock(clock()).build().unwrap();
    let url = serve(AuthnLayer::new(authn)).await;
    let r = send(&url, Some("opaque-alice")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["subject"], "alice");
    assert_eq!(r.body["issuer"], "https://as.example.com");
    assert_eq!(r.body["kind"], "user");
    assert_eq!(r.body["scopes"], json!(["orders:read", "orders:write"]));
    assert_eq!(r.body["client_id"], "web-app");
    assert_eq!(r.body["token_id"], "jti-alice");
    assert_eq!(r.body["expires_at"], T0 + 600);
    assert_eq!(r.body["auth"]["method"], "introspection");
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn client_secret_post_and_service_principals() {
    let idp = As::start(Expect::Post).await;
    idp.set(
        "svc-token",
        json!({"active": true, "iss": "https://as.example.com", "aud": "orders-api", "client_id": "billing",
               "scope": "orders:read", "exp": T0 + 60}),
    );
    let authn = idp.builder().clock(clock()).build().unwrap();
    let p = authn.introspect("svc-token").await.unwrap().principal;
    assert_eq!(p.subject, "billing");
    assert_eq!(p.kind, PrincipalKind::Service);
    assert!(p.has_scope("orders:read"));
}

#[tokio::test]
async fn inactive_token_is_401_and_negatively_cached() {
    let idp = As::start(Expect::Basic).await;
    let clock = clock();
    let authn = idp
        .builder()
        .clock(clock.clone())
        .negative_ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = serve(AuthnLayer::new(authn).realm("orders")).await;
    let r = send(&url, Some("unknown-token")).await;
    assert_eq!((r.status, r.code()), (401, "token_inactive"));
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(r.headers["content-type"], "application/problem+json");
    // Within the negative TTL: no second call.
    let r = send(&url, Some("unknown-token")).await;
    assert_eq!((r.status, r.code()), (401, "token_inactive"));
    assert_eq!(idp.calls(), 1);
    // After it: asked again, and now the token is active.
    clock.advance(Duration::from_secs(6));
    idp.set("unknown-token", active("late", T0 + 600));
    let r = send(&url, Some("unknown-token")).await;
    assert_eq!(r.status, 200);
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn cache_hit_makes_no_call_and_entries_end_at_exp() {
    let idp = As::start(Expect::Basic).await;
    let clock = clock();
    idp.set("t-exp", active("alice", T0 + 30));
    let authn = idp
        .builder()
        .clock(clock.clone())
        .max_ttl(Duration::from_secs(300))
        .build()
        .unwrap();
    let url = serve(AuthnLayer::new(authn.clone())).await;
    assert_eq!(send(&url, Some("t-exp")).await.status, 200);
    assert_eq!(send(&url, Some("t-exp")).await.status, 200);
    assert_eq!(idp.calls(), 1, "the second request is a cache hit");
    assert_eq!(authn.cached_len(), 1);
    clock.advance(Duration::from_secs(29));
    assert_eq!(send(&url, Some("t-exp")).await.status, 200);
    assert_eq!(idp.calls(), 1);
    // Past `exp` (max TTL is 300 s): the cached answer is not used; the AS now says inactive.
    clock.advance(Duration::from_secs(2));
    idp.set("t-exp", json!({"active": false}));
    let r = send(&url, Some("t-exp")).await;
    assert_eq!((r.status, r.code()), (401, "token_inactive"));
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn max_ttl_bounds_positive_entries() {
    let idp = As::start(Expect::Basic).await;
    let clock = clock();
    idp.set("long", active("bob", T0 + 86_400));
    let authn = idp
        .builder()
        .clock(clock.clone())
        .max_ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(authn.introspect("long").await.is_ok());
    clock.advance(Duration::from_secs(9));
    assert!(authn.introspect("long").await.unwrap().cached);
    clock.advance(Duration::from_secs(2));
    assert!(!authn.introspect("long").await.unwrap().cached);
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn concurrent_requests_for_one_token_make_one_call() {
    let idp = As::start(Expect::Basic).await;
    idp.set("hot", active("carol", T0 + 600));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *idp.state.gate.lock().unwrap() = Some(Arc::clone(&gate));
    let authn = idp.builder().clock(clock()).build().unwrap();
    let url = serve(AuthnLayer::new(authn)).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { send(&url, Some("hot")).await.status })
        })
        .collect();
    // Hold the answer until the endpoint has the (single) call, so the other requests pile up behind it.
    while idp.calls() == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.add_permits(100);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn endpoint_down_is_503_with_a_stable_code() {
    let (listener, addr) = msec_test_support::net::listener().await;
    drop(listener);
    let authn = IntrospectionAuthenticator::builder(format!("http://{addr}/introspect"))
        .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
        .client_secret_basic("orders-api", "secret")
        .build()
        .unwrap();
    let url = serve(AuthnLayer::new(authn)).await;
    let r = send(&url, Some("any-token")).await;
    assert_eq!((r.status, r.code()), (503, "introspection_unavailable"));
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.headers["retry-after"], "5");
    assert_eq!(r.body["detail"], "token introspection is temporarily unavailable");
    assert!(!r.body.to_string().contains("any-token"));
}

#[tokio::test]
async fn slow_endpoint_times_out_as_503() {
    let idp = As::start(Expect::Basic).await;
    idp.set("slow", active("dave", T0 + 600));
    *idp.state.delay.lock().unwrap() = Some(Duration::from_secs(10));
    let authn = idp
        .builder()
        .http(
            HttpConfig::new()
                .danger_allow_http_for_loopback()
                .no_proxy()
                .timeout(Duration::from_millis(300)),
        )
        .clock(clock())
        .build()
        .unwrap();
    let url = serve(AuthnLayer::new(authn)).await;
    let r = send(&url, Some("slow")).await;
    assert_eq!((r.status, r.code()), (503, "introspection_unavailable"));
}

#[tokio::test]
async fn server_errors_are_503_and_not_cached_but_cached_answers_survive_them() {
    let idp = As::start(Expect::Basic).await;
    idp.set("good", active("erin", T0 + 600));
    let authn = idp.builder().clock(clock()).build().unwrap();
    let url = serve(AuthnLayer::new(authn)).await;
    assert_eq!(send(&url, Some("good")).await.status, 200);
    idp.state.status.store(500, Ordering::SeqCst);
    // Cached: still accepted while the endpoint fails.
    assert_eq!(send(&url, Some("good")).await.status, 200);
    // Not cached: 503, asked each time (failures are not cached).
    let r = send(&url, Some("other")).await;
    assert_eq!((r.status, r.code()), (503, "introspection_unavailable"));
    let r = send(&url, Some("other")).await;
    assert_eq!((r.status, r.code()), (503, "introspection_unavailable"));
    assert_eq!(idp.calls(), 3);
    // Recovered.
    idp.state.status.store(0, Ordering::SeqCst);
    idp.set("other", active("frank", T0 + 600));
    assert_eq!(send(&url, Some("other")).await.status, 200);
}

/// `serve_stale_on_outage`: while the endpoint fails, a token whose active answer left the cache is still
/// accepted for the stale window — asked each time, never past its `exp`, never for a token not seen active —
/// and without the option the same moment is a 503.
#[tokio::test]
async fn stale_answers_bridge_an_outage_within_their_bounds() {
    let idp = As::start(Expect::Basic).await;
    idp.set("worker", active("grace", T0 + 600));
    idp.set("short", active("hal", T0 + 80));
    let clock = clock();
    let b = || idp.builder().clock(clock.clone()).max_ttl(Duration::from_secs(60));
    let authn = b().serve_stale_on_outage(Duration::from_secs(120)).build().unwrap();
    let strict = b().build().unwrap();
    let url = serve(AuthnLayer::new(authn.clone())).await;
    let strict_url = serve(AuthnLayer::new(strict)).await;
    for u in [&url, &strict_url] {
        assert_eq!(send(u, Some("worker")).await.status, 200);
    }
    assert_eq!(send(&url, Some("short")).await.status, 200);
    assert_eq!(idp.calls(), 3);

    idp.state.status.store(500, Ordering::SeqCst);
    clock.advance(Duration::from_secs(61)); // past max_ttl: answers are stale
    let r = send(&url, Some("worker")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["subject"], "grace");
    assert_eq!(idp.calls(), 4, "the endpoint is still asked first");
    let r = send(&strict_url, Some("worker")).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "introspection_unavailable"),
        "off by default"
    );
    assert_eq!(send(&url, Some("short")).await.status, 200);
    // The answer says it is stale, and so does the authn decision the audit record gets.
    let a = authn.introspect("worker").await.unwrap();
    assert!(a.stale && a.cached);
    let ctx = msec_core::context::SecurityContext::new();
    let mut req = http::Request::get("/v1/me")
        .header("authorization", "Bearer worker")
        .body(axum::body::Body::empty())
        .unwrap();
    req.extensions_mut().insert(ctx.clone());
    let svc = tower::ServiceBuilder::new()
        .layer(AuthnLayer::new(authn.clone()))
        .service_fn(|_req: http::Request<axum::body::Body>| async {
            Ok::<_, Infallible>(http::Response::new(axum::body::Body::empty()))
        });
    assert_eq!(tower::ServiceExt::oneshot(svc, req).await.unwrap().status(), 200);
    let decision = serde_json::to_value(&ctx.decisions()[0]).unwrap();
    assert_eq!(decision["outcome"], "allow");
    assert_eq!(decision["details"]["stale"], "true", "{decision}");
    let r = send(&url, Some("never-seen")).await;
    assert_eq!((r.status, r.code()), (503, "introspection_unavailable"));

    clock.advance(Duration::from_secs(20)); // T0 + 81: past `short`'s exp, inside the stale window
    let r = send(&url, Some("short")).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "introspection_unavailable"),
        "never past exp"
    );
    assert_eq!(send(&url, Some("worker")).await.status, 200);
    clock.advance(Duration::from_secs(100)); // T0 + 181: past max_ttl + 120 s
    let r = send(&url, Some("worker")).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "introspection_unavailable"),
        "the window is bounded"
    );

    // Recovered: a fresh answer.
    idp.state.status.store(0, Ordering::SeqCst);
    assert_eq!(send(&url, Some("worker")).await.status, 200);
    assert!(
        idp.builder()
            .serve_stale_on_outage(Duration::from_secs(3601))
            .build()
            .is_err()
    );
}

/// Our client secret is wrong: the AS answers 401 invalid_client. The caller gets 503 (see the file docs).
#[tokio::test]
async fn wrong_client_secret_is_503() {
    let idp = As::start(Expect::Basic).await;
    idp.set("t", active("gina", T0 + 600));
    let authn = IntrospectionAuthenticator::builder(&idp.url)
        .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
        .client_secret_basic("orders-api", "wrong")
        .clock(clock())
        .build()
        .unwrap();
    let url = serve(AuthnLayer::new(authn)).await;
    let r = send(&url, Some("t")).await;
    assert_eq!((r.status, r.code()), (503, "introspection_unavailable"));
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn issuer_and_audience_are_checked() {
    let idp = As::start(Expect::Basic).await;
    let mut wrong_iss = active("h", T0 + 600);
    wrong_iss["iss"] = json!("https://evil.example.com");
    idp.set("wrong-iss", wrong_iss);
    let mut wrong_aud = active("h", T0 + 600);
    wrong_aud["aud"] = json!("billing-api");
    idp.set("wrong-aud", wrong_aud);
    let mut no_aud = active("h", T0 + 600);
    no_aud.as_object_mut().unwrap().remove("aud");
    idp.set("no-aud", no_aud);
    idp.set("garbage", json!({"active": "yes"}));
    let authn = idp.builder().clock(clock()).build().unwrap();
    let url = serve(AuthnLayer::new(authn)).await;
    let r = send(&url, Some("wrong-iss")).await;
    assert_eq!((r.status, r.code()), (401, "issuer_mismatch"));
    let r = send(&url, Some("wrong-aud")).await;
    assert_eq!((r.status, r.code()), (401, "audience_mismatch"));
    let r = send(&url, Some("no-aud")).await;
    assert_eq!((r.status, r.code()), (401, "audience_mismatch"));
    let r = send(&url, Some("garbage")).await;
    assert_eq!((r.status, r.code()), (503, "introspection_unavailable"));
}

#[tokio::test]
async fn jwts_are_left_to_the_jwt_authenticator() {
    let idp = As::start(Expect::Basic).await;
    idp.set("opaque-ivy", active("ivy", T0 + 600));
    let key = TestKey::es256();
    let validator = msec_authn::jwt::JwtValidator::builder()
        .issuer(
            msec_authn::jwt::Issuer::new("https://id.example.com")
                .audience("orders-api")
                .pem_key(
                    Some(&key.kid),
                    jsonwebtoken::Algorithm::ES256,
                    key.public_pem.as_bytes(),
                ),
        )
        .build()
        .unwrap();
    // Introspection first in the chain: it declines the JWT, the JWT authenticator takes it.
    let chain = AuthnChain::new()
        .with(idp.builder().clock(clock()).build().unwrap())
        .with(JwtAuthenticator::new(validator));
    let url = serve(AuthnLayer::new(chain)).await;
    let jwt = key
        .token()
        .iss("https://id.example.com")
        .aud("orders-api")
        .sub("jwt-user")
        .sign();
    let r = send(&url, Some(&jwt)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["subject"], "jwt-user");
    assert_eq!(r.body["auth"]["method"], "jwt");
    let r = send(&url, Some("opaque-ivy")).await;
    assert_eq!(r.body["subject"], "ivy");
    assert_eq!(idp.calls(), 1, "the JWT never went to the introspection endpoint");
    // Not a b64token: refused without a call.
    let r = send(&url, Some("bad\"token")).await;
    assert_eq!((r.status, r.code()), (400, "malformed_token"));
    assert_eq!(idp.calls(), 1);

    // `All` sends JWT-shaped tokens too.
    let all = idp
        .builder()
        .clock(clock())
        .tokens(TokenSelection::All)
        .build()
        .unwrap();
    assert_eq!(
        all.introspect(&jwt).await.unwrap_err().code().as_str(),
        "token_inactive"
    );
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn https_endpoint_with_a_private_ca() {
    let ca = TestCa::new("example.org");
    let idp = As::start_tls(Expect::Basic, &ca).await;
    idp.set("tls-token", active("judy", T0 + 600));
    let trusted = idp
        .builder()
        .http(HttpConfig::new().no_proxy().add_root_certificate(ca.cert()))
        .clock(clock())
        .build()
        .unwrap();
    let p = trusted.introspect("tls-token").await.unwrap().principal;
    assert_eq!(p.subject, "judy");
    // Without the CA: the TLS handshake fails → 503, no answer reached the endpoint.
    let untrusted = idp
        .builder()
        .http(HttpConfig::new().no_proxy())
        .clock(clock())
        .build()
        .unwrap();
    let e = untrusted.introspect("tls-token").await.unwrap_err();
    assert_eq!(e.code().as_str(), "introspection_unavailable");
    assert_eq!(idp.calls(), 1);
    // Plain HTTP to a non-loopback host is refused at build time, even with the danger switch.
    assert!(
        IntrospectionAuthenticator::builder("http://as.example.com/introspect")
            .http(HttpConfig::new().danger_allow_http_for_loopback())
            .client_secret_basic("a", "b")
            .build()
            .is_err()
    );
}
