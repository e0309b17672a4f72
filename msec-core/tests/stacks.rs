//! AuthorizeLayer and SecureHeadersLayer in all three stacks — axum 0.8, tonic 0.14 (a real generated service
//! and client) and a bare hyper 1 `service_fn` — over real loopback connections.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use msec_core::policy::{AuthorizeLayer, Policy, Requirement};
use msec_core::{Principal, SecureHeadersLayer, SecureTransport};
use msec_test_support::net;
use msec_test_support::pb::echo_client::EchoClient;
use msec_test_support::pb::echo_server::{Echo, EchoServer};
use msec_test_support::pb::{SayReply, SayRequest};
use serde_json::{Value, json};
use tower::ServiceBuilder;

/// Test harness only: trusts `x-test-principal: <sub> <scope,...>` to stand in for an authentication layer.
fn inject_principal<B>(mut req: Request<B>) -> Request<B> {
    let p = req
        .headers()
        .get("x-test-principal")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(sub, scopes)| Arc::new(Principal::builder(sub).scopes(scopes.split(',')).build()));
    if let Some(p) = p {
        req.extensions_mut().insert(p);
    }
    req
}

fn policy() -> Policy {
    Policy::builder()
        .allow("health", ["GET /healthz"], Requirement::Public)
        .allow("me", ["GET /me"], Requirement::Public)
        .allow("read", ["GET /v1/orders/{id}"], Requirement::scope("orders:read"))
        .allow(
            "write",
            ["POST /v1/orders"],
            Requirement::all_scopes(["orders:write", "orders:audit"]),
        )
        .allow("echo", ["grpc /msec.test.v1.Echo/Say"], Requirement::scope("echo:say"))
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client.request(b.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn axum_app(app: Router) -> SocketAddr {
    let (l, addr) = net::listener().await;
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn secured_router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/me", get(|p: Principal| async move { p.subject }))
        .route(
            "/v1/orders/{id}",
            get(|p: Principal| async move { format!("order for {}", p.subject) }),
        )
        .route("/v1/orders", post(|| async { "created" }))
        .route("/v1/unlisted", get(|| async { "never" }))
        .layer(
            ServiceBuilder::new()
                .layer(SecureHeadersLayer::api())
                .map_request(inject_principal)
                .layer(AuthorizeLayer::new(policy()).realm("orders")),
        )
}

#[tokio::test]
async fn axum_statuses_headers_and_problem_bodies() {
    let addr = axum_app(secured_router()).await;

    let a = send(addr, "GET", "/healthz", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(&a.body[..], b"ok");

    // No credentials: 401, a Bearer challenge with no error attribute, RFC 9457 body.
    let a = send(addr, "GET", "/v1/orders/1", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.header("www-authenticate"), Some("Bearer realm=\"orders\""));
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        a.json(),
        json!({
            "type": "urn:msec:problem:missing_credentials",
            "title": "Unauthorized",
            "status": 401,
            "detail": "authentication is required",
            "code": "missing_credentials"
        })
    );

    // Authenticated without the scope: 403 insufficient_scope naming the scope.
    let a = send(addr, "GET", "/v1/orders/1", &[("x-test-principal", "alice other")]).await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.header("www-authenticate"),
        Some(
            "Bearer realm=\"orders\", error=\"insufficient_scope\", \
             error_description=\"the access token lacks a required scope\", scope=\"orders:read\""
        )
    );
    assert_eq!(a.json()["code"], "insufficient_scope");
    assert_eq!(a.json()["required_scopes"], json!(["orders:read"]));

    // All-of scopes: only the missing one is named.
    let a = send(
        addr,
        "POST",
        "/v1/orders",
        &[("x-test-principal", "alice orders:write")],
    )
    .await;
    assert_eq!(a.status, 403);
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .ends_with("scope=\"orders:audit\"")
    );

    let a = send(
        addr,
        "GET",
        "/v1/orders/1",
        &[("x-test-principal", "alice orders:read")],
    )
    .await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"order for alice"[..]));

    // A route the policy does not cover: denied by default, no challenge.
    let a = send(
        addr,
        "GET",
        "/v1/unlisted",
        &[("x-test-principal", "alice orders:read")],
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["code"], "no_matching_rule");
    assert_eq!(a.header("www-authenticate"), None);

    // Security headers on every answer, rejections included.
    for a in [
        send(addr, "GET", "/healthz", &[]).await,
        send(addr, "GET", "/v1/orders/1", &[]).await,
    ] {
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(a.header("x-frame-options"), Some("DENY"));
        assert_eq!(a.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(
            a.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'")
        );
        assert_eq!(a.header("strict-transport-security"), None, "no HSTS over plain HTTP");
    }
}

#[tokio::test]
async fn axum_extractors() {
    let addr = axum_app(secured_router()).await;
    // The policy lets /me through unauthenticated; the `Principal` extractor answers 401 itself.
    let a = send(addr, "GET", "/me", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["code"], "missing_credentials");
    let a = send(addr, "GET", "/me", &[("x-test-principal", "bob x")]).await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"bob"[..]));

    let app = Router::new()
        .route(
            "/who",
            get(|p: Option<Principal>, c: Option<msec_core::ClientAddr>| async move {
                format!("{:?} {}", p.map(|p| p.subject), c.is_some())
            }),
        )
        .route("/peer", get(|p: msec_core::PeerIdentity| async move { p.subject }))
        .route(
            "/addr",
            get(|c: msec_core::ClientAddr| async move { c.ip().to_string() }),
        );
    let (l, addr) = net::listener().await;
    tokio::spawn(async move { axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await });
    let a = send(addr, "GET", "/who", &[]).await;
    assert_eq!(&a.body[..], b"None true", "ClientAddr comes from axum's ConnectInfo");
    let a = send(addr, "GET", "/addr", &[]).await;
    assert_eq!(&a.body[..], b"127.0.0.1");
    let a = send(addr, "GET", "/peer", &[]).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["code"], "missing_peer_identity");
}

#[tokio::test]
async fn secure_headers_hsts_and_no_store() {
    let app = Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/framed", get(|| async { ([("x-frame-options", "SAMEORIGIN")], "f") }))
        .layer(
            ServiceBuilder::new()
                .map_request(|mut req: Request<axum::body::Body>| {
                    if req.headers().contains_key("x-test-tls") {
                        req.extensions_mut().insert(SecureTransport);
                    }
                    req
                })
                .layer(SecureHeadersLayer::api()),
        );
    let addr = axum_app(app).await;
    let a = send(addr, "GET", "/a", &[("x-test-tls", "1")]).await;
    assert_eq!(
        a.header("strict-transport-security"),
        Some("max-age=63072000; includeSubDomains")
    );
    assert_eq!(a.header("cache-control"), None);
    let a = send(addr, "GET", "/a", &[("authorization", "Bearer x")]).await;
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("strict-transport-security"), None);
    // The application's own value wins.
    let a = send(addr, "GET", "/framed", &[]).await;
    assert_eq!(a.header("x-frame-options"), Some("SAMEORIGIN"));
}

#[tokio::test]
async fn hyper_service_fn() {
    let svc = ServiceBuilder::new()
        .map_request(inject_principal)
        .layer(AuthorizeLayer::new(policy()))
        .service(tower::service_fn(|req: Request<hyper::body::Incoming>| async move {
            let who = req.extensions().get::<Arc<Principal>>().map(|p| p.subject.clone());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who.unwrap_or_default()))))
        }));
    let (l, addr) = net::listener().await;
    tokio::spawn(async move {
        loop {
            let (stream, _) = l.accept().await.unwrap();
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let a = send(
        addr,
        "GET",
        "/v1/orders/9",
        &[("x-test-principal", "carol orders:read")],
    )
    .await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"carol"[..]));
    let a = send(addr, "GET", "/v1/orders/9", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    assert_eq!(a.json()["code"], "missing_credentials");
    let a = send(
        addr,
        "DELETE",
        "/v1/orders/9",
        &[("x-test-principal", "carol orders:read")],
    )
    .await;
    assert_eq!(
        (a.status, a.json()["code"].clone()),
        (StatusCode::FORBIDDEN, json!("no_matching_rule"))
    );
}

#[derive(Default)]
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

#[tokio::test]
async fn tonic_client_reads_trailers_only_statuses() {
    let (incoming, addr) = net::tonic_incoming().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(
                ServiceBuilder::new()
                    .map_request(inject_principal::<tonic::body::Body>)
                    .layer(AuthorizeLayer::new(policy()).realm("echo")),
            )
            .add_service(EchoServer::new(EchoImpl))
            .serve_with_incoming(incoming),
    );
    let mut client = EchoClient::connect(format!("http://{addr}")).await.unwrap();

    let call = |principal: Option<&'static str>| {
        let mut req = tonic::Request::new(SayRequest { message: "hi".into() });
        if let Some(p) = principal {
            req.metadata_mut().insert("x-test-principal", p.parse().unwrap());
        }
        req
    };

    let reply = client.say(call(Some("dave echo:say"))).await.unwrap().into_inner();
    assert_eq!((reply.message.as_str(), reply.subject.as_str()), ("hi", "dave"));

    let st = client.say(call(None)).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unauthenticated);
    assert_eq!(st.message(), "missing_credentials: authentication is required");
    assert_eq!(st.metadata().get("www-authenticate").unwrap(), "Bearer realm=\"echo\"");

    let st = client.say(call(Some("dave other"))).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        st.message(),
        "insufficient_scope: the access token lacks a required scope"
    );
    assert!(
        st.metadata()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("scope=\"echo:say\"")
    );

    // The client keeps working on the same HTTP/2 connection after rejections.
    let reply = client.say(call(Some("erin echo:say"))).await.unwrap().into_inner();
    assert_eq!(reply.subject, "erin");
}

#[tokio::test]
async fn decisions_reach_the_security_context() {
    use msec_core::{Outcome, ReasonCode, Rejection, SecurityContext};
    use tower::ServiceExt;

    let policy = Policy::builder()
        .allow("read", ["GET /v1/orders/{id}"], Requirement::scope("orders:read"))
        .shadow_deny(
            "try: block carol",
            ["/v1/{*rest}"],
            Requirement::claim_equals("sub", "carol"),
        )
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(policy))
        .service(tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }));

    let ctx = SecurityContext::new();
    let mut req = Request::get("/v1/orders/5").body(()).unwrap();
    req.extensions_mut().insert(ctx.clone());
    req.extensions_mut()
        .insert(Arc::new(Principal::builder("alice").build()));
    let resp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 403);
    let rejection = resp.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.code(), ReasonCode::INSUFFICIENT_SCOPE);
    let d = ctx.decisions();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].layer, d[0].outcome, d[0].code),
        ("authz", Outcome::Deny, ReasonCode::INSUFFICIENT_SCOPE)
    );
    assert_eq!(d[0].get_detail("rule"), Some("read"));
    assert_eq!(d[0].get_detail("route"), Some("/v1/orders/{id}"));
    assert_eq!(d[0].get_detail("required_scopes"), Some("orders:read"));
    assert_eq!(ctx.route().as_deref(), Some("/v1/orders/{id}"));

    let ctx = SecurityContext::new();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "carol".into());
    let mut req = Request::get("/v1/orders/5").body(()).unwrap();
    req.extensions_mut().insert(ctx.clone());
    req.extensions_mut().insert(Arc::new(
        Principal::builder("carol")
            .scopes(["orders:read"])
            .claims(claims)
            .build(),
    ));
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let d = ctx.decisions();
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[0].outcome, d[0].get_detail("rule")),
        (Outcome::ShadowDeny, Some("try: block carol"))
    );
    assert_eq!((d[1].outcome, d[1].code), (Outcome::Allow, ReasonCode::POLICY_ALLOWED));
}
