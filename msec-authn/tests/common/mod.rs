//! Shared test helpers: a loopback identity provider (JWKS + discovery) the tests control, and a way to call a
//! layer-wrapped service.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use msec_authn::AuthnLayer;
use msec_authn::keys::{HttpConfig, RefreshConfig};
use msec_test_support::TestKey;
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};

pub struct IdpState {
    pub issuer: Mutex<String>,
    pub keys: Mutex<Vec<TestKey>>,
    pub jwks_hits: AtomicUsize,
    pub discovery_hits: AtomicUsize,
    pub not_modified: AtomicUsize,
    pub cache_control: Mutex<Option<String>>,
    pub etag: AtomicBool,
    pub down: AtomicBool,
    pub discovery_issuer: Mutex<Option<String>>,
    pub discovery_jwks_uri: Mutex<Option<String>>,
    pub notify: tokio::sync::Notify,
}

/// A loopback OIDC provider whose JWKS, cache headers and availability the test controls.
#[derive(Clone)]
pub struct Idp {
    pub base: String,
    pub state: Arc<IdpState>,
}

fn jwks_doc(keys: &[TestKey]) -> Value {
    json!({"keys": keys.iter().map(TestKey::public_jwk).collect::<Vec<_>>()})
}

async fn jwks(State(s): State<Arc<IdpState>>, headers: HeaderMap) -> Response {
    // Count the hit only once the answer is decided, so a test that waits for the hit and then changes the
    // IdP's state cannot race with this answer.
    let resp = jwks_answer(&s, &headers);
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    s.notify.notify_waiters();
    resp
}

fn jwks_answer(s: &IdpState, headers: &HeaderMap) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = serde_json::to_vec(&jwks_doc(&s.keys.lock().unwrap())).unwrap();
    let tag = format!(
        "\"{}\"",
        msec_test_support::keys::b64url(&ring::digest::digest(&ring::digest::SHA256, &body).as_ref()[..12])
    );
    let mut resp = if s.etag.load(Ordering::SeqCst)
        && headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == tag.as_bytes())
    {
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    if s.etag.load(Ordering::SeqCst) {
        resp.headers_mut()
            .insert(header::ETAG, HeaderValue::from_str(&tag).unwrap());
    }
    if let Some(cc) = s.cache_control.lock().unwrap().clone() {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_str(&cc).unwrap());
    }
    resp
}

async fn discovery(State(s): State<Arc<IdpState>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let issuer = s
        .discovery_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| s.issuer.lock().unwrap().clone());
    let jwks_uri = s
        .discovery_jwks_uri
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| format!("{}/jwks", s.issuer.lock().unwrap()));
    axum::Json(json!({"issuer": issuer, "jwks_uri": jwks_uri, "id_token_signing_alg_values_supported": ["RS256"]}))
        .into_response()
}

async fn big() -> Response {
    let filler = "x".repeat(2 * 1024 * 1024);
    axum::Json(json!({"keys": [], "filler": filler})).into_response()
}

impl Idp {
    /// Starts an IdP serving `keys`.
    pub async fn start(keys: Vec<TestKey>) -> Self {
        let state = Arc::new(IdpState {
            issuer: Mutex::new(String::new()),
            keys: Mutex::new(keys),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            cache_control: Mutex::new(None),
            etag: AtomicBool::new(false),
            down: AtomicBool::new(false),
            discovery_issuer: Mutex::new(None),
            discovery_jwks_uri: Mutex::new(None),
            notify: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/jwks", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/oauth-authorization-server", get(discovery))
            .route("/.well-known/oauth-authorization-server/tenant", get(discovery))
            .route("/tenant/.well-known/openid-configuration", get(discovery))
            .route("/big", get(big))
            .with_state(state.clone());
        let (listener, addr) = msec_test_support::net::listener().await;
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = format!("http://{addr}");
        *state.issuer.lock().unwrap() = base.clone();
        Self { base, state }
    }

    pub fn issuer(&self) -> String {
        self.state.issuer.lock().unwrap().clone()
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    pub fn set_keys(&self, keys: Vec<TestKey>) {
        *self.state.keys.lock().unwrap() = keys;
    }

    pub fn set_cache_control(&self, v: &str) {
        *self.state.cache_control.lock().unwrap() = Some(v.to_owned());
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    /// Waits (event-driven, bounded) until the JWKS endpoint has been hit `n` times.
    pub async fn wait_for_jwks_hits(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.state.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.jwks_hits() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("JWKS hits stayed at {} (wanted {n})", self.jwks_hits()));
    }

    /// A token for `key` from this issuer for audience `api`.
    pub fn token(&self, key: &TestKey, sub: &str) -> String {
        key.token().iss(&self.issuer()).aud("api").sub(sub).sign()
    }
}

pub fn loopback_http() -> HttpConfig {
    HttpConfig::new().danger_allow_http_for_loopback().no_proxy()
}

pub fn quick_refresh() -> RefreshConfig {
    RefreshConfig::new()
        .unknown_kid_cooldown(Duration::from_secs(30))
        .default_ttl(Duration::from_secs(300))
        .ttl_bounds(Duration::from_secs(60), Duration::from_secs(3600))
        .max_staleness(Duration::from_secs(600))
}

/// What a layer answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub decisions: Vec<msec_core::Decision>,
    pub principal: Option<Arc<msec_core::Principal>>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn code(&self) -> String {
        self.json()
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    }
    pub fn www_authenticate(&self) -> String {
        self.headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    pub fn authn_decision(&self) -> &msec_core::Decision {
        self.decisions
            .iter()
            .find(|d| d.layer == "authn")
            .expect("an authn decision")
    }
}

type Inner = tower::util::BoxCloneService<http::Request<Full<Bytes>>, http::Response<Full<Bytes>>, Infallible>;

/// A bare service answering 200 with the principal's subject.
pub fn echo() -> Inner {
    tower::util::BoxCloneService::new(tower::service_fn(|req: http::Request<Full<Bytes>>| async move {
        let sub = req
            .extensions()
            .get::<Arc<msec_core::Principal>>()
            .map_or_else(|| "anonymous".to_owned(), |p| p.subject.clone());
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(sub))))
    }))
}

/// Sends `req` through `layer` around [`echo`], with a fresh SecurityContext.
pub async fn call(layer: &AuthnLayer, mut req: http::Request<Full<Bytes>>) -> Answer {
    let ctx = msec_core::SecurityContext::new();
    req.extensions_mut().insert(ctx.clone());
    let mut svc = layer.layer(echo());
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
        decisions: ctx.decisions(),
        principal: ctx.principal(),
    }
}

/// A GET with `Authorization: Bearer token`.
pub fn bearer(token: &str) -> http::Request<Full<Bytes>> {
    http::Request::get("/v1/orders/7")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A GET without credentials.
pub fn anonymous(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(path).body(Full::new(Bytes::new())).unwrap()
}
