//! The msec stack on a bare hyper 1 `service_fn` — no axum, no router: a `match` on method and path, served by
//! hyper-util's connection builder over plain HTTP, and the same stack over TLS with msec-tls's serve loop.
//!
//! The stack, outermost first:
//!
//! | layer | what it does here |
//! |---|---|
//! | accept loop | hyper-util `auto::Builder`; puts the socket's `ClientAddr` on each request |
//! | `AuditLayer` | one audit record per request, with every decision below |
//! | `FirewallLayer` | rejects encoded slashes, dot segments, control characters, ... (400) |
//! | `AuthnLayer` | `Authorization: Bearer` JWT → `Arc<Principal>` (401); `/healthz` skips it |
//! | `AuthorizeLayer` | deny-by-default policy: a scope per route (403) |
//! | `RateLimitLayer` | a quota per user on `/v1/*` (429 with `Retry-After`) |
//! | `JsonSchemaLayer` | JSON guard (415, 413, 400) + JSON Schema (422) on `POST /v1/orders` |
//! | handler | `hyper::service::service_fn`, wrapped for tower by `msec::tls::from_hyper` |
//!
//! Self-contained: it starts a JWKS endpoint and the service on 127.0.0.1, sends scripted requests, prints what
//! happened and the audit log, and exits 0 when every answer is the expected one.
//!
//! Run: `cargo run --example hyper_service`
#![allow(clippy::print_stdout, missing_docs, unreachable_pub)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use msec::audit::{AuditLayer, AuditLog, CheckpointSigner, MemorySink};
use msec::authn::jwt::{Issuer, JwtValidator};
use msec::authn::keys::HttpConfig;
use msec::authn::{AuthnLayer, AuthnMode};
use msec::prelude::*;
use msec::ratelimit::{KeySpec, Quota, RateLimitLayer, RateLimiter, Rule};
use msec::tls::{CertSource, ClientAuth, ClientTls, ServerAuth, ServerTls, Trust};
use msec::validate::guard::JsonLimits;
use msec::validate::{FirewallLayer, GuardedBody, JsonSchemaLayer, SchemaSet};
use msec_test_support::{TestCa, TestKey};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests per minute each user may make on `/v1/*`.
const REQUESTS_PER_MINUTE: u32 = 10;

const ORDER_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["item", "quantity"],
  "properties": {
    "item": {"type": "string", "minLength": 1, "maxLength": 64},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 1000}
  },
  "additionalProperties": false
}"#;

// ---------------------------------------------------------------------------------------------------------------
// The application: a plain hyper handler. By the time it runs, msec has authenticated the user, checked the
// route's scope and the user's quota, and validated the JSON body against its schema.
// ---------------------------------------------------------------------------------------------------------------

async fn handle(request: Request<GuardedBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let user = request
        .extensions()
        .get::<Arc<Principal>>()
        .map(|p| p.subject.clone())
        .unwrap_or_default();
    let answer = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, "/v1/hello") => (StatusCode::OK, json!({"hello": user})),
        (&Method::POST, "/v1/orders") => match request.into_body().collect().await {
            // The body is the document the guard and the schema checked: `item` and `quantity` are there.
            Ok(body) => match serde_json::from_slice::<Value>(&body.to_bytes()) {
                Ok(order) => (
                    StatusCode::CREATED,
                    json!({"item": order["item"], "quantity": order["quantity"], "customer": user}),
                ),
                Err(_) => (StatusCode::BAD_REQUEST, json!({"error": "invalid body"})),
            },
            Err(_) => (StatusCode::BAD_REQUEST, json!({"error": "invalid body"})),
        },
        _ => (StatusCode::NOT_FOUND, json!({"error": "not found"})),
    };
    Ok(json_response(answer.0, &answer.1))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

// ---------------------------------------------------------------------------------------------------------------
// Serving a tower service over plain HTTP with hyper-util: one task per connection, HTTP/1.1 and HTTP/2.
// msec's layers read the client address from the request extensions, so the loop puts the socket's there (behind
// a load balancer, msec-ratelimit's `ClientIpLayer` would replace it with the forwarded one).
// ---------------------------------------------------------------------------------------------------------------

fn serve_http<S, B>(listener: tokio::net::TcpListener, service: S)
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    tokio::spawn(async move {
        while let Ok((tcp, remote)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let per_connection = service_fn(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(ClientAddr::from_socket(remote));
                    service.clone().oneshot(request)
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), per_connection)
                    .await;
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------------------------
// The identity provider: its JWKS on loopback (another hyper `service_fn`), and the tokens it would issue.
// ---------------------------------------------------------------------------------------------------------------

async fn start_idp(key: &TestKey) -> Result<String, BoxError> {
    let jwks = Bytes::from(serde_json::to_vec(&msec_test_support::keys::jwks(&[key]))?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", listener.local_addr()?);
    let app = service_fn(move |_request: Request<Incoming>| {
        let jwks = jwks.clone();
        async move { Ok::<_, Infallible>(Response::new(Full::new(jwks))) }
    });
    serve_http(listener, msec::tls::from_hyper(app));
    Ok(issuer)
}

fn token(key: &TestKey, issuer: &str, user: &str, scope: &str) -> String {
    key.token()
        .iss(issuer)
        .aud("hello-api")
        .sub(user)
        .scope(scope)
        .issued_at(SystemTime::now())
        .expires_in(Duration::from_secs(600))
        .sign()
}

// ---------------------------------------------------------------------------------------------------------------
// The client side and the printed table.
// ---------------------------------------------------------------------------------------------------------------

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

impl Answer {
    /// The problem+json `code`, empty for an answer without one.
    fn code(&self) -> String {
        self.body["code"].as_str().unwrap_or_default().to_owned()
    }
}

async fn send<C>(client: &Client<C, Full<Bytes>>, request: Request<Full<Bytes>>) -> Result<Answer, BoxError>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let (parts, body) = client.request(request).await?.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

fn request(method: Method, url: &str, token: Option<&str>, content_type: &str, body: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if !body.is_empty() {
        builder = builder.header("content-type", content_type);
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap_or_default()
}

struct Row {
    request: String,
    status: String,
    detail: String,
    ok: bool,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    /// Requests that reached the service (each must leave one audit record).
    requests: usize,
}

impl Table {
    /// Records an answer against the expected status and problem+json code (`""` for none).
    fn record(&mut self, what: &str, answer: &Answer, expected: (u16, &str), detail: String) {
        self.requests += 1;
        let code = answer.code();
        self.rows.push(Row {
            request: what.to_owned(),
            status: format!("{} {code}", answer.status).trim_end().to_owned(),
            detail,
            ok: answer.status == expected.0 && code == expected.1,
        });
    }

    fn note(&mut self, what: &str, status: &str, ok: bool) {
        self.rows.push(Row {
            request: what.to_owned(),
            status: status.to_owned(),
            detail: String::new(),
            ok,
        });
    }

    fn print(&self) -> bool {
        let w0 = self
            .rows
            .iter()
            .map(|r| r.request.chars().count())
            .max()
            .unwrap_or(0)
            .max(7);
        let w1 = self.rows.iter().map(|r| r.status.len()).max().unwrap_or(0).max(6);
        println!("{:w0$}  {:w1$}  detail", "request", "status");
        println!("{}", "-".repeat(w0 + w1 + 40));
        for r in &self.rows {
            let mark = if r.ok { "" } else { "   <-- UNEXPECTED" };
            println!("{:w0$}  {:w1$}  {}{mark}", r.request, r.status, r.detail);
        }
        self.rows.iter().all(|r| r.ok)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // --- Authentication: an issuer on loopback, its keys fetched before serving. Plain-HTTP key fetching is
    // allowed for loopback addresses only, and only because this option says so. ------------------------------
    let key = TestKey::rs256();
    let issuer = start_idp(&key).await?;
    let validator = JwtValidator::builder()
        .issuer(
            Issuer::new(&issuer)
                .audience("hello-api")
                .jwks_url(format!("{issuer}/jwks")),
        )
        .http(HttpConfig::new().danger_allow_http_for_loopback().no_proxy())
        .build_and_fetch()
        .await?;

    // --- Authorization: deny by default; one rule per route. --------------------------------------------------
    let policy = Policy::builder()
        .allow("health", ["GET /healthz"], Requirement::Public)
        .allow("hello", ["GET /v1/hello"], Requirement::scope("hello:read"))
        .allow("place orders", ["POST /v1/orders"], Requirement::scope("orders:write"))
        .build()?;

    // --- Rate limiting: a quota per user (the token's subject) on /v1/*. ------------------------------------
    let per_user = RateLimiter::builder()
        .rule(
            Rule::new("per-user", Quota::per_minute(REQUESTS_PER_MINUTE))
                .route("/v1/{*rest}")
                .key(KeySpec::subject()),
        )
        .build()?;

    // --- Validation: a JSON Schema per route, behind the JSON guard's limits. ------------------------------------
    let schemas = SchemaSet::builder()
        .route("POST /v1/orders", serde_json::from_str(ORDER_SCHEMA)?)
        .build()?;
    let limits = JsonLimits::default().max_body_bytes(16 * 1024).max_depth(8);

    // --- Audit: one record per request. A real service writes to a FileSink (hash chain, signed checkpoints). ---
    let sink = MemorySink::new();
    let audit_log = AuditLog::builder()
        .signer(CheckpointSigner::ephemeral()?)
        .start(sink.clone())?;

    // --- The stack around the hyper handler. -------------------------------------------------------------------
    let app = ServiceBuilder::new()
        .layer(AuditLayer::new(audit_log.clone()))
        .layer(FirewallLayer::strict())
        .layer(
            AuthnLayer::jwt(validator)
                .realm("hello")
                .route_mode(["GET /healthz"], AuthnMode::Skip)?,
        )
        .layer(AuthorizeLayer::new(policy))
        .layer(RateLimitLayer::new(per_user))
        .layer(JsonSchemaLayer::new(schemas).limits(limits))
        .service(msec::tls::from_hyper(service_fn(handle)));

    // Plain HTTP, served with hyper-util.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    serve_http(listener, app.clone());

    // The same stack over TLS, served by msec-tls (which also gives each request its ClientAddr).
    let ca = TestCa::new("example.org");
    let server_cert = ca.localhost();
    let tls = ServerTls::builder()
        .client_auth(ClientAuth::none())
        .certificate(CertSource::pem(
            server_cert.cert_pem.as_bytes(),
            server_cert.key_pem.as_bytes(),
        )?)
        .build()?;
    let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tls_base = format!("https://{}", tls_listener.local_addr()?);
    let tls_server = msec::tls::serve(tls_listener, tls, app).spawn()?;

    // --- The script. -------------------------------------------------------------------------------------------
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let alice = token(&key, &issuer, "alice", "hello:read orders:write");
    let alice_no_scope = token(&key, &issuer, "alice", "profile");
    let carol = token(&key, &issuer, "carol", "hello:read");
    let mut t = Table::default();
    let url = |path: &str| format!("{base}{path}");
    let json = "application/json";

    println!("msec hyper_service: a hyper service_fn behind the msec stack, on {base} and {tls_base}\n");

    let a = send(&client, request(Method::GET, &url("/healthz"), None, "", "")).await?;
    t.record("GET /healthz, no token", &a, (200, ""), String::new());
    let a = send(&client, request(Method::GET, &url("/v1/hello"), Some(&alice), "", "")).await?;
    t.record("GET /v1/hello as alice", &a, (200, ""), a.body.to_string());
    let a = send(&client, request(Method::GET, &url("/v1/hello"), None, "", "")).await?;
    let challenge = header(&a, "www-authenticate");
    t.record(
        "GET /v1/hello, no token",
        &a,
        (401, "missing_credentials"),
        format!("WWW-Authenticate: {challenge}"),
    );
    let a = send(
        &client,
        request(Method::GET, &url("/v1/hello"), Some(&alice_no_scope), "", ""),
    )
    .await?;
    let challenge = header(&a, "www-authenticate");
    t.record(
        "GET /v1/hello, token without hello:read",
        &a,
        (403, "insufficient_scope"),
        format!("WWW-Authenticate: {challenge}"),
    );
    let a = send(&client, request(Method::GET, &url("/v1/admin"), Some(&alice), "", "")).await?;
    t.record(
        "GET /v1/admin (no rule: deny by default)",
        &a,
        (403, "no_matching_rule"),
        String::new(),
    );

    let orders = url("/v1/orders");
    let a = send(
        &client,
        request(
            Method::POST,
            &orders,
            Some(&alice),
            json,
            r#"{"item": "tea", "quantity": 2}"#,
        ),
    )
    .await?;
    t.record("POST /v1/orders, valid body", &a, (201, ""), a.body.to_string());
    let a = send(
        &client,
        request(
            Method::POST,
            &orders,
            Some(&alice),
            json,
            r#"{"item": "", "quantity": 0, "coupon": "FREE"}"#,
        ),
    )
    .await?;
    let pointers: Vec<String> = a.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    // The pointer of the document itself is "" (here: a member that is not allowed).
                    let pointer = e["pointer"].as_str().filter(|p| !p.is_empty()).unwrap_or("(root)");
                    format!("{pointer} {}", e["code"].as_str().unwrap_or("?"))
                })
                .collect()
        })
        .unwrap_or_default();
    t.record(
        "POST /v1/orders, body breaks the schema",
        &a,
        (422, "schema_violation"),
        pointers.join(", "),
    );
    let a = send(
        &client,
        request(Method::POST, &orders, Some(&alice), "text/plain", "tea please"),
    )
    .await?;
    t.record(
        "POST /v1/orders, text/plain",
        &a,
        (415, "unsupported_media_type"),
        String::new(),
    );
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let a = send(&client, request(Method::POST, &orders, Some(&alice), json, &deep)).await?;
    t.record(
        "POST /v1/orders, 1000 nested arrays",
        &a,
        (400, "json_too_deep"),
        String::new(),
    );
    let a = send(
        &client,
        request(Method::GET, &url("/v1/%2e%2e/admin"), Some(&alice), "", ""),
    )
    .await?;
    t.record("GET /v1/%2e%2e/admin", &a, (400, "dot_segment"), String::new());

    // carol spends her quota; alice keeps hers.
    let mut passed = 0;
    for _ in 0..REQUESTS_PER_MINUTE {
        let a = send(&client, request(Method::GET, &url("/v1/hello"), Some(&carol), "", "")).await?;
        t.requests += 1;
        if a.status == 200 {
            passed += 1;
        }
    }
    t.note(
        &format!("GET /v1/hello ×{REQUESTS_PER_MINUTE} as carol"),
        &format!("200 ×{passed}"),
        passed == REQUESTS_PER_MINUTE,
    );
    let a = send(&client, request(Method::GET, &url("/v1/hello"), Some(&carol), "", "")).await?;
    let retry = format!("Retry-After: {}", header(&a, "retry-after"));
    t.record(
        &format!("GET /v1/hello as carol, request {}", REQUESTS_PER_MINUTE + 1),
        &a,
        (429, "rate_limited"),
        retry,
    );
    let a = send(&client, request(Method::GET, &url("/v1/hello"), Some(&alice), "", "")).await?;
    t.record(
        "GET /v1/hello as alice meanwhile (her own quota)",
        &a,
        (200, ""),
        a.body.to_string(),
    );

    // The same service over TLS: the client trusts the test CA only.
    let client_tls = ClientTls::builder()
        .server_auth(ServerAuth::dns(Trust::roots().cert(ca.cert()).build()?))
        .no_client_cert()
        .build()?;
    let tls_client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(client_tls.connector());
    let a = send(
        &tls_client,
        request(Method::GET, &format!("{tls_base}/v1/hello"), Some(&alice), "", ""),
    )
    .await?;
    t.record("GET /v1/hello as alice, over TLS", &a, (200, ""), a.body.to_string());

    // --- Shut down, then read the audit log back. ---------------------------------------------------------------
    drop((client, tls_client));
    tls_server.shutdown().await?;
    audit_log.shutdown().await?;
    let records: Vec<Value> = sink.values().into_iter().filter(|v| v["kind"] == "request").collect();
    t.note(
        &format!("audit: one record per request ({})", t.requests),
        &format!("{} records", records.len()),
        records.len() == t.requests,
    );

    let all_expected = t.print();
    println!("\naudit log, as `msec audit tail` shows it:");
    for v in &records {
        println!("  {}", msec::audit::tail::render(v));
    }
    if all_expected {
        println!("\nevery answer was the expected one.");
        Ok(())
    } else {
        Err("some answers were not the expected ones (marked above)".into())
    }
}

fn header(answer: &Answer, name: &str) -> String {
    answer
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned()
}
