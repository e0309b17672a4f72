//! The audit layer over real HTTP: one event per request, decisions, levels, redaction, header allowlist,
//! log injection, fail-closed 503, and when events of streamed responses are written.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msec_audit::{
    AuditConfigError, AuditLayer, AuditLog, CheckpointSigner, Level, MemorySink, Overflow, RequestAudit, Verifier,
};
use msec_core::context::{self, Outcome, SecurityContext};
use msec_core::policy::{AuthorizeLayer, Policy, Requirement};
use msec_core::{Principal, ReasonCode, Rejection};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

/// A stand-in authentication layer: `x-test-user: <sub> <scopes>` authenticates; `x-test-bad-user: <sub>`
/// fails with 401, naming the subject in the decision as a real authn layer would.
async fn test_authn(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    if let Some(bad) = req
        .headers()
        .get("x-test-bad-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        context::record_with(
            req.extensions(),
            "authn",
            Outcome::Deny,
            ReasonCode::new("invalid_credentials"),
            |d| {
                d.detail("subject", bad);
            },
        );
        let r = Rejection::invalid_token(ReasonCode::new("invalid_credentials"), "the credentials are invalid");
        return r
            .into_response::<axum::body::Body>(req.headers())
            .map(axum::body::Body::new);
    }
    let p = req
        .headers()
        .get("x-test-user")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(sub, scopes)| {
            Arc::new(
                Principal::builder(sub)
                    .scopes(scopes.split(','))
                    .token_id(format!("jti-{sub}"))
                    .build(),
            )
        });
    if let Some(p) = p {
        if let Some(ctx) = SecurityContext::get(req.extensions()) {
            ctx.set_principal(p.clone());
        }
        context::record_with(
            req.extensions(),
            "authn",
            Outcome::Allow,
            ReasonCode::new("authenticated"),
            |d| {
                d.detail("method", "test");
            },
        );
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

struct Server {
    base: String,
    sink: MemorySink,
    log: AuditLog,
    public: msec_audit::PublicKey,
}

async fn server(configure: impl FnOnce(msec_audit::AuditLayerBuilder) -> msec_audit::AuditLayerBuilder) -> Server {
    server_with(MemorySink::new(), AuditLog::builder(), configure).await
}

async fn server_with<S>(
    sink: S,
    builder: msec_audit::AuditLogBuilder,
    configure: impl FnOnce(msec_audit::AuditLayerBuilder) -> msec_audit::AuditLayerBuilder,
) -> Server
where
    S: msec_audit::Sink + Clone + Into<Option<MemorySink>>,
{
    let signer = CheckpointSigner::ephemeral().unwrap();
    let public = signer.public_key();
    let mem: Option<MemorySink> = sink.clone().into();
    let log = builder.signer(signer).start(sink).unwrap();
    let audit = configure(AuditLayer::builder(log.clone())).build().unwrap();
    let capture = audit.capture_layer();
    let policy = Policy::builder()
        .allow("health", ["GET /healthz"], Requirement::Public)
        .allow(
            "read orders",
            ["GET /v1/orders/{id}"],
            Requirement::scope("orders:read"),
        )
        .allow("pay", ["POST /v1/payments"], Requirement::scope("pay"))
        .allow("stream", ["GET /stream"], Requirement::Public)
        .allow("echo", ["POST /echo"], Requirement::Public)
        .build()
        .unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/v1/orders/{id}",
            get(move |req: axum::extract::Request| {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let audit = RequestAudit::get(req.extensions()).unwrap();
                    audit.set_attribute("order_id", 7);
                    audit.set_attribute("card_number", "4111111111111111");
                    "order 7"
                }
            }),
        )
        .route(
            "/v1/payments",
            post(|axum::Json(body): axum::Json<Value>| async move {
                axum::Json(json!({"ok": true, "amount": body["amount"], "token": "tok_secret_response"}))
            }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .layer(
            ServiceBuilder::new()
                .layer(audit)
                .layer(axum::middleware::from_fn(test_authn))
                .layer(AuthorizeLayer::new(policy))
                .layer(capture),
        );
    let (listener, addr) = msec_test_support::net::listener().await;
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        sink: mem.unwrap_or_default(),
        log,
        public,
    }
}

async fn send(req: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn get_req(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

impl Server {
    async fn requests(&self) -> Vec<Value> {
        self.log.flush().await.unwrap();
        common::of_kind(&self.sink.values(), "request")
    }
}

#[tokio::test]
async fn one_event_per_request_with_actor_action_outcome_and_decisions() {
    let s = server(|b| b).await;
    let (st, _) = send(get_req(
        &format!("{}/v1/orders/7?secret=1", s.base),
        &[
            ("x-test-user", "alice orders:read"),
            ("x-request-id", "req-42"),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("user-agent", "tests/1.0"),
        ],
    ))
    .await;
    assert_eq!(st, 200);
    let (st, _) = send(get_req(
        &format!("{}/v1/orders/8", s.base),
        &[("x-test-user", "bob other")],
    ))
    .await;
    assert_eq!(st, 403);
    let (st, _) = send(get_req(&format!("{}/v1/orders/9", s.base), &[])).await;
    assert_eq!(st, 401);
    let events = s.requests().await;
    assert_eq!(events.len(), 3, "{events:#?}");

    let ok = &events[0];
    assert_eq!(ok["actor"]["subject"], "alice");
    assert_eq!(ok["actor"]["token_id"], "jti-alice");
    assert_eq!(ok["actor"]["client"]["ip"], "127.0.0.1");
    assert_eq!(ok["action"]["method"], "GET");
    assert_eq!(ok["action"]["route"], "/v1/orders/{id}");
    assert_eq!(ok["action"]["path"], "/v1/orders/7", "no query string");
    assert_eq!(ok["outcome"], json!({"result": "allowed", "status": 200}));
    assert_eq!(ok["request_id"], "req-42");
    assert_eq!(ok["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ok["request"]["headers"]["user-agent"], "tests/1.0");
    assert_eq!(ok["decisions"][0]["layer"], "authn");
    assert_eq!(
        ok["decisions"][1],
        json!({"layer": "authz", "outcome": "allow", "code": "policy_allowed",
        "details": {"rule": "read orders", "route": "/v1/orders/{id}"}})
    );
    assert_eq!(ok["attributes"], json!({"order_id": 7, "card_number": "[REDACTED]"}));

    assert_eq!(
        events[1]["outcome"],
        json!({"result": "denied", "status": 403, "code": "insufficient_scope"})
    );
    assert_eq!(events[1]["decisions"][1]["details"]["required_scopes"], "orders:read");
    assert_eq!(
        events[2]["outcome"],
        json!({"result": "denied", "status": 401, "code": "missing_credentials"})
    );

    common::assert_schema_valid(&s.sink.contents());
    s.log.shutdown().await.unwrap();
    Verifier::new([s.public.clone()])
        .verify_bytes(&s.sink.contents())
        .unwrap();
}

#[tokio::test]
async fn levels_per_route_and_redacted_bodies() {
    let s = server(|b| {
        b.rule("GET /healthz", Level::None)
            .rule("POST /v1/payments", Level::RequestResponse)
            .rule("POST /{*rest}", Level::Request)
    })
    .await;
    let (st, _) = send(get_req(&format!("{}/healthz", s.base), &[])).await;
    assert_eq!(st, 200);
    let pay = Request::post(format!("{}/v1/payments", s.base))
        .header("x-test-user", "carol pay")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"amount": 12, "card": {"number": "4111", "cvv": "123"}, "password": "hunter2"}"#,
        )))
        .unwrap();
    let (st, _) = send(pay).await;
    assert_eq!(st, 200);
    let form = Request::post(format!("{}/echo", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from("user=ann&password=hunter2")))
        .unwrap();
    assert_eq!(send(form).await.0, 200);
    let big = Request::post(format!("{}/echo", s.base))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!(
            r#"{{"password": "hunter2", "pad": "{}"}}"#,
            "x".repeat(20_000)
        ))))
        .unwrap();
    assert_eq!(send(big).await.0, 200);
    let events = s.requests().await;
    assert_eq!(events.len(), 3, "healthz is not audited");
    let pay = &events[0];
    assert_eq!(
        pay["request"]["body"],
        json!({"amount": 12, "card": {"number": "4111", "cvv": "[REDACTED]"}, "password": "[REDACTED]"})
    );
    assert_eq!(
        pay["response"]["body"],
        json!({"ok": true, "amount": 12, "token": "[REDACTED]"})
    );
    assert_eq!(pay["response"]["headers"]["content-type"], "application/json");
    assert_eq!(
        events[1]["request"]["body"],
        json!({"user": "ann", "password": "[REDACTED]"})
    );
    assert!(
        events[1].get("response").is_none_or(|r| r.get("body").is_none()),
        "Request level: no response body"
    );
    assert_eq!(events[2]["request"]["body_omitted"], "truncated");
    assert!(events[2]["request"]["body_bytes"].as_u64().unwrap() > 20_000);
    let raw = String::from_utf8(s.sink.contents()).unwrap();
    assert!(!raw.contains("hunter2") && !raw.contains("tok_secret_response"));
    common::assert_schema_valid(raw.as_bytes());
}

#[tokio::test]
async fn denied_requests_are_audited_even_on_level_none_routes() {
    let s = server(|b| b.default_level(Level::None)).await;
    assert_eq!(
        send(get_req(&format!("{}/v1/orders/1", s.base), &[("x-test-user", "a b")]))
            .await
            .0,
        403
    );
    assert_eq!(
        send(get_req(
            &format!("{}/v1/orders/1", s.base),
            &[("x-test-user", "a orders:read")]
        ))
        .await
        .0,
        200
    );
    let events = s.requests().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["outcome"]["code"], "insufficient_scope");
}

#[tokio::test]
async fn credentials_are_never_logged() {
    for bad in [
        "authorization",
        "Cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-session-id",
    ] {
        let log = AuditLog::builder()
            .danger_unsigned_checkpoints()
            .start(MemorySink::new())
            .unwrap();
        let err = AuditLayer::builder(log).log_request_headers([bad]).build().unwrap_err();
        assert_eq!(err, AuditConfigError::SensitiveHeader(bad.to_owned()));
    }
    let s = server(|b| b.log_request_headers(["user-agent", "x-forwarded-for"])).await;
    let (st, _) = send(get_req(
        &format!("{}/v1/orders/1", s.base),
        &[
            ("authorization", "Bearer SECRET-TOKEN"),
            ("cookie", "session=SECRET-COOKIE"),
            ("x-api-key", "SECRET-KEY"),
            ("x-test-user", "a orders:read"),
            ("user-agent", "ua"),
        ],
    ))
    .await;
    assert_eq!(st, 200);
    let events = s.requests().await;
    assert_eq!(events[0]["request"]["headers"], json!({"user-agent": "ua"}));
    assert!(!String::from_utf8(s.sink.contents()).unwrap().contains("SECRET-"));
}

#[tokio::test]
async fn log_injection_attempts_stay_one_well_formed_record() {
    let s = server(|b| b.rule("POST /echo", Level::RequestResponse)).await;
    let huge = "A".repeat(16 * 1024);
    let evil_ua = "curl/8\u{202e}txt.exe";
    let body =
        "{\"note\": \"line1\\n{\\\"v\\\":1,\\\"seq\\\":0,\\\"forged\\\":true}\\r\\n\\u001b[2J\\u001b[31mred\\u009b\"}";
    let req = Request::post(format!("{}/echo?x=%0a%1b", s.base))
        .header("content-type", "application/json")
        .header("user-agent", evil_ua)
        .header("x-request-id", "abc\tdef")
        .header("x-long", huge.as_str())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    assert_eq!(send(req).await.0, 200);
    let s2 = AuditLayer::builder(s.log.clone())
        .log_request_headers(["x-long"])
        .build();
    assert!(s2.is_ok());
    let events = s.requests().await;
    assert_eq!(events.len(), 1);
    let raw = s.sink.contents();
    let lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), s.sink.len(), "one line per record");
    assert!(
        !raw.iter().any(|&b| b == 0x1b || b == b'\r'),
        "control bytes are escaped in the file"
    );
    let e = &events[0];
    assert_eq!(
        e["request"]["body"]["note"],
        "line1\n{\"v\":1,\"seq\":0,\"forged\":true}\r\n\u{1b}[2J\u{1b}[31mred\u{9b}"
    );
    assert_eq!(e["request"]["headers"]["user-agent"], evil_ua);
    assert!(
        e.get("request_id").is_none(),
        "an id with control characters is not used"
    );
    // For a terminal, `tail` neutralises what a terminal would obey.
    let shown = msec_audit::tail::render(e);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{202e}') && !shown.contains('\n'),
        "{shown}"
    );
    let mut v = e.clone();
    v["actor"]["subject"] = Value::from("mallory\u{1b}[2J\nseq 99 forged");
    let shown = msec_audit::tail::render(&v);
    assert!(shown.contains(r"mallory\x1b[2J\x0aseq 99 forged"), "{shown}");
    common::assert_schema_valid(&raw);
    s.log.shutdown().await.unwrap();
    Verifier::new([s.public.clone()])
        .verify_bytes(&s.sink.contents())
        .unwrap();
}

#[tokio::test]
async fn huge_headers_are_bounded() {
    let s = server(|b| b.log_request_headers(["x-long", "user-agent"])).await;
    let huge = "B".repeat(32 * 1024);
    let mut req = get_req(
        &format!("{}/v1/orders/1", s.base),
        &[("x-test-user", "a orders:read"), ("user-agent", &huge)],
    );
    for _ in 0..50 {
        req.headers_mut().append("x-long", huge[..1000].parse().unwrap());
    }
    assert_eq!(send(req).await.0, 200);
    let events = s.requests().await;
    let ua = events[0]["request"]["headers"]["user-agent"].as_str().unwrap();
    assert!(ua.len() <= 260, "{}", ua.len());
    assert!(events[0]["request"]["headers"]["x-long"].as_str().unwrap().len() <= 600);
    assert!(s.sink.records().iter().all(|r| r.line.len() < 4096));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_503_without_running_the_request() {
    let gate = common::GateSink::new();
    let signer = CheckpointSigner::ephemeral().unwrap();
    let log = AuditLog::builder()
        .signer(signer)
        .capacity(2)
        .overflow(Overflow::FailClosed)
        .start(gate.clone())
        .unwrap();
    log.flush().await.unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let app = Router::new()
        .route(
            "/work",
            get(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    "done"
                }
            }),
        )
        .layer(AuditLayer::new(log.clone()));
    let (listener, addr) = msec_test_support::net::listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}/work");
    gate.set_open(false);
    let mut statuses = Vec::new();
    let mut codes = Vec::new();
    for _ in 0..6 {
        let (st, body) = send(get_req(&url, &[])).await;
        statuses.push(st.as_u16());
        if st == 503 {
            codes.push(
                serde_json::from_slice::<Value>(&body).unwrap()["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    assert_eq!(statuses, [200, 200, 503, 503, 503, 503]);
    assert_eq!(handled.load(Ordering::SeqCst), 2, "refused requests never ran");
    assert!(codes.iter().all(|c| c == "audit_unavailable"));
    gate.set_open(true);
    log.flush().await.unwrap();
    assert_eq!(send(get_req(&url, &[])).await.0, 200);
    log.shutdown().await.unwrap();
    let values = gate.mem.values();
    assert_eq!(common::of_kind(&values, "request").len(), 3);
    let refused: u64 = common::of_kind(&values, "gap")
        .iter()
        .map(|g| g["refused"].as_u64().unwrap())
        .sum();
    assert_eq!(refused, 4);
}

#[tokio::test]
async fn streamed_responses_are_audited_when_the_body_ends() {
    let sink = MemorySink::new();
    let log = AuditLog::builder()
        .danger_unsigned_checkpoints()
        .start(sink.clone())
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
    let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
    let svc = ServiceBuilder::new()
        .layer(AuditLayer::new(log.clone()))
        .service_fn(move |_req: Request<_>| {
            let rx = rx.lock().unwrap().take().unwrap();
            async move {
                let stream = tokio_stream_from(rx);
                let mut resp = Response::new(StreamBody::new(stream));
                resp.headers_mut()
                    .insert("content-type", "application/grpc".parse().unwrap());
                Ok::<_, Infallible>(resp)
            }
        });
    let req = Request::post("/shop.Orders/Watch")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"chunk"))))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let _ = body.frame().await.unwrap().unwrap();
    log.flush().await.unwrap();
    assert!(
        common::of_kind(&sink.values(), "request").is_empty(),
        "not yet: the stream is still open"
    );
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "5".parse().unwrap());
    tx.send(Ok(http_body::Frame::trailers(trailers))).await.unwrap();
    drop(tx);
    while body.frame().await.is_some() {}
    log.flush().await.unwrap();
    let events = common::of_kind(&sink.values(), "request");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["action"]["protocol"], "grpc");
    assert_eq!(e["action"]["grpc_service"], "shop.Orders");
    assert_eq!(e["action"]["grpc_method"], "Watch");
    assert_eq!(
        e["outcome"],
        json!({"result": "allowed", "status": 200, "grpc_status": 5})
    );
    common::assert_schema_valid(&sink.contents());
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn an_abandoned_response_is_audited_as_aborted() {
    let sink = MemorySink::new();
    let log = AuditLog::builder()
        .danger_unsigned_checkpoints()
        .start(sink.clone())
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(AuditLayer::new(log.clone()))
        .service_fn(|_req: Request<_>| async {
            let stream = futures_util::stream::pending::<Result<http_body::Frame<Bytes>, Infallible>>();
            Ok::<_, Infallible>(Response::new(StreamBody::new(stream)))
        });
    let resp = svc.oneshot(get_req("/events", &[])).await.unwrap();
    drop(resp);
    // And a request whose handler never answers, cancelled.
    let svc2 = ServiceBuilder::new()
        .layer(AuditLayer::new(log.clone()))
        .service_fn(|_req: Request<_>| std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>());
    let fut = svc2.oneshot(get_req("/slow", &[]));
    let _ = tokio::time::timeout(std::time::Duration::from_millis(1), fut).await;
    log.flush().await.unwrap();
    let events = common::of_kind(&sink.values(), "request");
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0]["outcome"],
        json!({"result": "allowed", "status": 200, "aborted": true})
    );
    assert_eq!(events[1]["outcome"], json!({"result": "error", "aborted": true}));
    common::assert_schema_valid(&sink.contents());
}
