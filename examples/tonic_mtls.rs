//! A gRPC service and its callers over mTLS, identified by SPIFFE IDs — the msec stack on tonic.
//!
//! The `shop.v1.Orders` service (`msec-test-support/proto/orders.proto`) is called by two workloads of the trust
//! domain `example.org`: the web frontend and a nightly batch job. Each call carries two identities:
//!
//! - the **calling service**, proven by its X.509-SVID in the mTLS handshake (msec-tls's serve loop puts an
//!   `Arc<PeerIdentity>` with its SPIFFE ID on every request);
//! - the **end user** the call is made for, an access token in the `authorization: Bearer ...` metadata, checked
//!   by msec-authn's `AuthnLayer` against the issuer's JWKS.
//!
//! The server stack, outermost first:
//!
//! | layer | what it does here |
//! |---|---|
//! | `msec_tls::serve` | mTLS handshake (SPIFFE bundle), `Arc<PeerIdentity>` on every request |
//! | `AuditLayer` | one audit record per call: caller, user, method, gRPC status, every decision |
//! | `RateLimitLayer` | a quota per **calling service** (key: its SPIFFE ID) → `RESOURCE_EXHAUSTED` |
//! | `AuthnLayer` | the user's JWT → `Arc<Principal>`, or `UNAUTHENTICATED` |
//! | `AuthorizeLayer` | a per-method allowlist of calling services, combined with the user's scopes → `PERMISSION_DENIED` |
//! | handler | `request.validated()?` (msec-validate) → `INVALID_ARGUMENT` with `google.rpc.BadRequest` |
//!
//! Self-contained: it makes a CA, SVIDs and a signing key, starts a JWKS endpoint and the service on 127.0.0.1,
//! makes scripted calls, prints what happened and the audit log, and exits 0 when every answer is the expected
//! one.
//!
//! Run: `cargo run --example tonic_mtls`
#![allow(clippy::print_stdout, missing_docs, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use msec::audit::{AuditLayer, AuditLog, CheckpointSigner, MemorySink};
use msec::authn::AuthnLayer;
use msec::authn::jwt::{Issuer, JwtValidator};
use msec::authn::keys::HttpConfig;
use msec::prelude::*;
use msec::ratelimit::{Key, KeySpec, Quota, RateLimitLayer, RateLimiter, RequestInfo, Rule};
use msec::tls::{CertSource, ClientAuth, ClientTls, ServerAuth, ServerTls, SpiffeId, Trust};
use msec::validate::grpc::ValidateRequest;
use msec_test_support::shop::orders_client::OrdersClient;
use msec_test_support::shop::orders_server::{Orders, OrdersServer};
use msec_test_support::shop::{CreateOrderRequest, GetOrderRequest, Order};
use msec_test_support::{LeafSpec, TestCa, TestCert, TestKey};
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use tower::ServiceBuilder;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TRUST_DOMAIN: &str = "example.org";
const ORDERS: &str = "spiffe://example.org/ns/prod/sa/orders";
const FRONTEND: &str = "spiffe://example.org/ns/prod/sa/frontend";
const BATCH: &str = "spiffe://example.org/ns/batch/sa/reports";
const PAYMENTS: &str = "spiffe://example.org/ns/prod/sa/payments";
/// Calls per minute each calling service may make.
const CALLS_PER_MINUTE: u32 = 10;

// ---------------------------------------------------------------------------------------------------------------
// The service: plain tonic. msec has already checked the caller, the user and the quota; the handler validates
// the message and reads both identities from the request extensions.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Default)]
struct OrdersService {
    orders: Mutex<HashMap<String, Order>>,
    next_id: AtomicU64,
}

/// The end user (from the JWT) and the calling service (from the SVID) of a request.
fn identities<T>(request: &tonic::Request<T>) -> (String, String) {
    let user = request
        .extensions()
        .get::<Arc<Principal>>()
        .map(|p| p.subject.clone())
        .unwrap_or_default();
    let caller = request
        .extensions()
        .get::<Arc<PeerIdentity>>()
        .and_then(|p| p.spiffe_id.as_ref())
        .map(|id| id.to_string())
        .unwrap_or_default();
    (user, caller)
}

#[tonic::async_trait]
impl Orders for OrdersService {
    async fn create(&self, request: tonic::Request<CreateOrderRequest>) -> Result<tonic::Response<Order>, Status> {
        // INVALID_ARGUMENT with one field violation per broken rule (rules: msec-test-support/build.rs).
        let request = request.validated()?;
        let (customer, caller) = identities(&request);
        let message = request.into_inner();
        let id = format!("ord-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let order = Order {
            id: id.clone(),
            sku: message.sku,
            quantity: message.quantity,
            customer,
            caller,
        };
        self.orders
            .lock()
            .map_err(|_| Status::internal("internal error"))?
            .insert(id, order.clone());
        Ok(tonic::Response::new(order))
    }

    async fn get(&self, request: tonic::Request<GetOrderRequest>) -> Result<tonic::Response<Order>, Status> {
        let request = request.validated()?;
        let (_, caller) = identities(&request);
        let orders = self.orders.lock().map_err(|_| Status::internal("internal error"))?;
        match orders.get(&request.get_ref().id) {
            // Say who is reading (the order itself names who created it).
            Some(order) => Ok(tonic::Response::new(Order {
                caller,
                ..order.clone()
            })),
            None => Err(Status::not_found("no such order")),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The rate-limit key: the calling service's SPIFFE ID, from the peer identity the TLS serve loop attached.
// A request without one gets no key, so this rule does not apply to it (here every peer has one: mTLS is required).
// ---------------------------------------------------------------------------------------------------------------

fn calling_service(request: &RequestInfo<'_>) -> Option<Key> {
    let peer = request.extensions.get::<Arc<PeerIdentity>>()?;
    let id = peer.spiffe_id.as_ref()?;
    Some(Key::text("spiffe", id.as_str().as_bytes()))
}

// ---------------------------------------------------------------------------------------------------------------
// The identity provider: a JWKS endpoint over HTTPS on loopback (a hyper `service_fn` on msec-tls's serve loop),
// and the tokens it would issue.
// ---------------------------------------------------------------------------------------------------------------

struct Idp {
    issuer: String,
    key: TestKey,
    _server: msec::tls::Running,
}

async fn start_idp(ca: &TestCa) -> Result<Idp, BoxError> {
    let key = TestKey::es256();
    let jwks = Bytes::from(serde_json::to_vec(&msec_test_support::keys::jwks(&[&key]))?);
    let tls = ServerTls::builder()
        .client_auth(ClientAuth::none())
        .certificate(cert_source(&ca.localhost())?)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    let app = service_fn(move |_request: http::Request<hyper::body::Incoming>| {
        let jwks = jwks.clone();
        async move {
            http::Response::builder()
                .header("content-type", "application/json")
                .header("cache-control", "max-age=300")
                .body(Full::new(jwks))
        }
    });
    let server = msec::tls::serve(listener, tls, msec::tls::from_hyper(app)).spawn()?;
    Ok(Idp {
        issuer,
        key,
        _server: server,
    })
}

impl Idp {
    /// An access token for the `orders` API, for `user` with `scope`, valid for `lifetime` from `issued`.
    fn token(&self, user: &str, scope: &str, issued: SystemTime, lifetime: Duration) -> String {
        self.key
            .token()
            .iss(&self.issuer)
            .aud("orders")
            .sub(user)
            .scope(scope)
            .issued_at(issued)
            .expires_at(issued + lifetime)
            .sign()
    }
}

fn cert_source(cert: &TestCert) -> Result<CertSource, BoxError> {
    Ok(CertSource::pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())?)
}

// ---------------------------------------------------------------------------------------------------------------
// The clients: each workload connects with its own SVID and accepts the server only as the orders service's
// SPIFFE ID (not a DNS name). The user's token travels in the `authorization` metadata of each call.
// ---------------------------------------------------------------------------------------------------------------

/// A workload's TLS client: its SVID, and the orders service's SPIFFE ID as the only acceptable server.
fn client_tls(ca: &TestCa, svid: &TestCert) -> Result<ClientTls, BoxError> {
    let trust = Trust::spiffe().bundle(TRUST_DOMAIN.parse()?, [ca.cert()]).build()?;
    Ok(ClientTls::builder()
        .server_auth(ServerAuth::spiffe_id(trust, ORDERS.parse()?))
        .client_cert(cert_source(svid)?)
        .build()?)
}

async fn connect(ca: &TestCa, port: u16, svid: &TestCert) -> Result<OrdersClient<Channel>, BoxError> {
    // `http://`: tonic itself does no TLS here, msec-tls's connector does.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://localhost:{port}"))?
        .connect_with_connector(client_tls(ca, svid)?.connector())
        .await?;
    Ok(OrdersClient::new(channel))
}

/// A request carrying the end user's access token.
fn as_user<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn create(sku: &str, quantity: u32, email: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        sku: sku.into(),
        quantity,
        customer_email: email.into(),
    }
}

fn get(id: &str) -> GetOrderRequest {
    GetOrderRequest { id: id.into() }
}

// ---------------------------------------------------------------------------------------------------------------
// The printed table.
// ---------------------------------------------------------------------------------------------------------------

struct Row {
    caller: &'static str,
    call: String,
    status: String,
    detail: String,
    ok: bool,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    /// Calls that reached the server (each must leave one audit record).
    calls: usize,
}

impl Table {
    /// Records one call's answer against the expected gRPC code and msec reason code (`""` for none).
    fn record(&mut self, caller: &'static str, call: &str, answer: &Result<Order, Status>, expected: (Code, &str)) {
        self.calls += 1;
        let (code, reason, detail) = match answer {
            Ok(order) => (
                Code::Ok,
                String::new(),
                format!(
                    "{} {}×{} for {} (read by {})",
                    order.id, order.sku, order.quantity, order.customer, order.caller
                ),
            ),
            Err(status) => {
                // msec's rejections read `<stable code>: <client-safe sentence>`.
                let reason = status.message().split(':').next().unwrap_or_default().to_owned();
                let detail = match status.get_details_bad_request() {
                    Some(bad) => bad
                        .field_violations
                        .iter()
                        .map(|v| format!("{} {}", v.field, v.reason))
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => status.message().split(": ").nth(1).unwrap_or_default().to_owned(),
                };
                (status.code(), reason, detail)
            }
        };
        self.rows.push(Row {
            caller,
            call: call.to_owned(),
            status: format!("{code:?} {reason}").trim_end().to_owned(),
            detail,
            ok: code == expected.0 && reason == expected.1,
        });
    }

    /// Records a line that is not a call answered by the server.
    fn note(&mut self, caller: &'static str, call: &str, status: &str, detail: &str, ok: bool) {
        self.rows.push(Row {
            caller,
            call: call.to_owned(),
            status: status.to_owned(),
            detail: detail.to_owned(),
            ok,
        });
    }

    fn print(&self) -> bool {
        let w0 = self.rows.iter().map(|r| r.caller.len()).max().unwrap_or(0).max(6);
        let w1 = self
            .rows
            .iter()
            .map(|r| r.call.chars().count())
            .max()
            .unwrap_or(0)
            .max(4);
        let w2 = self.rows.iter().map(|r| r.status.len()).max().unwrap_or(0).max(6);
        println!("{:w0$}  {:w1$}  {:w2$}  detail", "caller", "call", "status");
        println!("{}", "-".repeat(w0 + w1 + w2 + 40));
        for r in &self.rows {
            let mark = if r.ok { "" } else { "   <-- UNEXPECTED" };
            println!("{:w0$}  {:w1$}  {:w2$}  {}{mark}", r.caller, r.call, r.status, r.detail);
        }
        self.rows.iter().all(|r| r.ok)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // --- PKI: one CA for the trust domain, an SVID per workload (SPIRE would issue and rotate these). --------------
    let ca = TestCa::new(TRUST_DOMAIN);
    let idp = start_idp(&ca).await?;

    // --- Authentication: the issuer's keys, fetched over HTTPS (trusting only our CA) before serving. -------------
    let validator = JwtValidator::builder()
        .issuer(
            Issuer::new(&idp.issuer)
                .audience("orders")
                .jwks_url(format!("{}/jwks", idp.issuer)),
        )
        .http(
            HttpConfig::new()
                .add_root_certificate(ca.cert())
                .only_added_roots()
                .no_proxy(),
        )
        .build_and_fetch()
        .await?;

    // --- Authorization: which calling service may call which method, and with which user scope. -----------------
    let frontend: SpiffeId = FRONTEND.parse()?;
    let batch: SpiffeId = BATCH.parse()?;
    let policy = Policy::builder()
        .allow(
            "frontend places orders for its users",
            ["grpc /shop.v1.Orders/Create"],
            Requirement::all([
                Requirement::peer_spiffe_id(frontend.clone()),
                Requirement::scope("orders:write"),
            ]),
        )
        .allow(
            "frontend and batch read orders",
            ["grpc /shop.v1.Orders/Get"],
            Requirement::all([
                Requirement::any([
                    Requirement::peer_spiffe_id(frontend),
                    Requirement::peer_spiffe_id(batch),
                ]),
                Requirement::scope("orders:read"),
            ]),
        )
        .build()?;

    // --- Rate limiting: a quota per calling service. -----------------------------------------------------------
    let limiter = RateLimiter::builder()
        .rule(
            Rule::new("per-calling-service", Quota::per_minute(CALLS_PER_MINUTE))
                .route("grpc /shop.v1.Orders")
                .key(KeySpec::custom(calling_service)),
        )
        .build()?;

    // --- Audit: one record per call. A real service writes to a FileSink (hash-chained, signed checkpoints). ------
    let sink = MemorySink::new();
    let audit_log = AuditLog::builder()
        .signer(CheckpointSigner::ephemeral()?)
        .start(sink.clone())?;

    // --- The server: the stack around the generated tonic service, served over mTLS. --------------------------
    let service = ServiceBuilder::new()
        .layer(AuditLayer::new(audit_log.clone()))
        .layer(RateLimitLayer::new(limiter))
        .layer(AuthnLayer::jwt(validator).realm("orders"))
        .layer(AuthorizeLayer::new(policy))
        .service(OrdersServer::new(OrdersService::default()));
    let trust = Trust::spiffe().bundle(TRUST_DOMAIN.parse()?, [ca.cert()]).build()?;
    let tls = ServerTls::builder()
        .client_auth(ClientAuth::required(trust))
        .certificate(cert_source(&ca.svid("/ns/prod/sa/orders"))?)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = msec::tls::serve(listener, tls, service).spawn()?;

    // --- The script. -------------------------------------------------------------------------------------------
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let alice = idp.token("alice", "orders:read orders:write", now, hour);
    let alice_read_only = idp.token("alice", "orders:read", now, hour);
    let alice_expired = idp.token("alice", "orders:read orders:write", now - 2 * hour, hour);
    let bob = idp.token("bob", "orders:read orders:write", now, hour);
    let mut t = Table::default();

    println!("msec tonic_mtls: gRPC over mTLS on 127.0.0.1; the server is {ORDERS}");
    println!("  frontend = {FRONTEND}\n  batch    = {BATCH}\n  payments = {PAYMENTS}\n");

    let mut fe = connect(&ca, port, &ca.svid("/ns/prod/sa/frontend")).await?;
    let a = fe
        .create(as_user(create("ABC-1", 2, "alice@example.com"), Some(&alice)))
        .await
        .map(tonic::Response::into_inner);
    let order_id = a.as_ref().map(|o| o.id.clone()).unwrap_or_default();
    t.record("frontend", "Create ABC-1×2 for alice", &a, (Code::Ok, ""));
    let a = fe
        .get(as_user(get(&order_id), Some(&alice)))
        .await
        .map(tonic::Response::into_inner);
    t.record("frontend", &format!("Get {order_id} for alice"), &a, (Code::Ok, ""));
    let a = fe
        .create(as_user(create("", 0, "not-an-email"), Some(&alice)))
        .await
        .map(tonic::Response::into_inner);
    t.record(
        "frontend",
        "Create sku=\"\" quantity=0 email=not-an-email",
        &a,
        (Code::InvalidArgument, "validation_failed"),
    );
    let a = fe
        .create(as_user(create("ABC-1", 1, "alice@example.com"), None))
        .await
        .map(tonic::Response::into_inner);
    t.record(
        "frontend",
        "Create without a user token",
        &a,
        (Code::Unauthenticated, "missing_credentials"),
    );
    let a = fe
        .create(as_user(create("ABC-1", 1, "alice@example.com"), Some(&alice_expired)))
        .await
        .map(tonic::Response::into_inner);
    t.record(
        "frontend",
        "Create with alice's token, expired an hour ago",
        &a,
        (Code::Unauthenticated, "token_expired"),
    );
    let a = fe
        .create(as_user(create("ABC-1", 1, "alice@example.com"), Some(&alice_read_only)))
        .await
        .map(tonic::Response::into_inner);
    t.record(
        "frontend",
        "Create with a token scoped orders:read only",
        &a,
        (Code::PermissionDenied, "insufficient_scope"),
    );

    // The batch job may read but not create, whatever its user's token allows; and it has its own quota.
    let mut jobs = connect(&ca, port, &ca.svid("/ns/batch/sa/reports")).await?;
    let a = jobs
        .get(as_user(get(&order_id), Some(&bob)))
        .await
        .map(tonic::Response::into_inner);
    t.record("batch", &format!("Get {order_id} for bob"), &a, (Code::Ok, ""));
    let a = jobs
        .create(as_user(create("XYZ-9", 1, "bob@example.com"), Some(&bob)))
        .await
        .map(tonic::Response::into_inner);
    t.record(
        "batch",
        "Create for bob (token has orders:write)",
        &a,
        (Code::PermissionDenied, "peer_not_allowed"),
    );
    // Calls 3..=10 of this minute pass; the 11th is over the batch job's quota.
    let mut passed = 0;
    for _ in 3..=CALLS_PER_MINUTE {
        t.calls += 1;
        if jobs.get(as_user(get(&order_id), Some(&bob))).await.is_ok() {
            passed += 1;
        }
    }
    t.note(
        "batch",
        &format!(
            "Get ×{} more (calls 3-{CALLS_PER_MINUTE} this minute)",
            CALLS_PER_MINUTE - 2
        ),
        &format!("Ok ×{passed}"),
        "",
        passed == CALLS_PER_MINUTE - 2,
    );
    let a = jobs
        .get(as_user(get(&order_id), Some(&bob)))
        .await
        .map(tonic::Response::into_inner);
    t.record(
        "batch",
        &format!("Get, call {} this minute", CALLS_PER_MINUTE + 1),
        &a,
        (Code::ResourceExhausted, "rate_limited"),
    );
    let a = fe
        .get(as_user(get(&order_id), Some(&alice)))
        .await
        .map(tonic::Response::into_inner);
    t.record("frontend", "Get meanwhile (its own quota)", &a, (Code::Ok, ""));

    // A workload of the trust domain that is on no allowlist.
    let mut payments = connect(&ca, port, &ca.svid("/ns/prod/sa/payments")).await?;
    let a = payments
        .get(as_user(get(&order_id), Some(&alice)))
        .await
        .map(tonic::Response::into_inner);
    t.record(
        "payments",
        "Get with alice's valid token",
        &a,
        (Code::PermissionDenied, "peer_not_allowed"),
    );

    // Another CA mints the frontend's SPIFFE ID: the server refuses the handshake, nothing reaches the service.
    // (Over TLS 1.3 the client learns it on its first read, so this one is a bare TLS connection that reads.)
    let rogue = TestCa::new("rogue.example");
    let forged = rogue.issue(&LeafSpec::new("forged").uri(FRONTEND));
    let mut stream = client_tls(&ca, &forged)?
        .connect(("127.0.0.1", port), "localhost")
        .await?;
    let refused = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut [0u8; 64])).await {
        Ok(Err(e)) => tls_alert(&e),
        _ => "accepted".to_owned(),
    };
    t.note(
        "forged",
        "TLS connection, frontend's ID on an SVID from another CA",
        "TLS alert",
        &refused,
        refused == "UnknownCA",
    );

    // --- Shut down, then read the audit log back. ---------------------------------------------------------------
    drop((fe, jobs, payments));
    server.shutdown().await?;
    audit_log.shutdown().await?;
    let records: Vec<serde_json::Value> = sink.values().into_iter().filter(|v| v["kind"] == "request").collect();
    t.note(
        "audit",
        &format!("one record per call that reached the server ({})", t.calls),
        &format!("{} records", records.len()),
        "",
        records.len() == t.calls,
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

/// The TLS alert in an error chain (hyper reports it as text inside an I/O error), or the whole chain.
fn tls_alert(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    // The innermost error says it plainly: `received fatal alert: UnknownCA`.
    match chain
        .iter()
        .rev()
        .find_map(|m| m.split("received fatal alert: ").nth(1))
    {
        Some(alert) => alert.to_owned(),
        None => chain.join(": "),
    }
}
