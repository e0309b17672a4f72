//! Every msec layer runs a request inside its own `DEBUG` span (`msec_core::trace`): a real hyper server on
//! loopback with the whole stack, a subscriber that records spans, their parents and their fields, and one
//! allowed and two refused requests. One test in this file: it installs the process's global subscriber.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use msec::audit::{AuditLayer, AuditLog, CheckpointSigner, MemorySink};
use msec::authn::AuthnLayer;
use msec::authn::jwt::{Algorithm, Issuer, JwtValidator};
use msec::prelude::*;
use msec::ratelimit::{KeySpec, Quota, RateLimitLayer, RateLimiter, Rule};
use msec::validate::{FirewallLayer, GuardedBody, JsonSchemaLayer, SchemaSet};
use msec_test_support::TestKey;
use tower::{ServiceBuilder, ServiceExt};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

const ISS: &str = "https://id.example.com";

/// A revocation-style hook that answers only after yielding once: authentication takes its asynchronous path,
/// so the inner layers are called from the authn future's `poll`, which must run inside the authn span.
struct Later;

impl msec::authn::PostVerify for Later {
    fn check(
        &self,
        _: &msec::authn::Authenticated,
        _: &msec::authn::RequestHead<'_>,
    ) -> msec::authn::AuthnFuture<Result<(), msec::authn::AuthnError>> {
        msec::authn::AuthnFuture::pending(async {
            tokio::task::yield_now().await;
            Ok(())
        })
    }
}

/// One span as the subscriber saw it.
#[derive(Debug, Clone, Default)]
struct Seen {
    name: String,
    parent: Option<String>,
    fields: HashMap<String, String>,
}

#[derive(Default, Clone)]
struct Spans(
    Arc<Mutex<Vec<Seen>>>,
    Arc<Mutex<HashMap<u64, usize>>>,
    Arc<Mutex<Vec<String>>>,
);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx.span(id).and_then(|s| s.parent()).map(|p| p.name().to_owned());
        let mut seen = Seen {
            name: attrs.metadata().name().to_owned(),
            parent,
            fields: HashMap::new(),
        };
        attrs.record(&mut Fields(&mut seen.fields));
        let mut all = self.0.lock().unwrap();
        self.1.lock().unwrap().insert(id.into_u64(), all.len());
        all.push(seen);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let Some(&i) = self.1.lock().unwrap().get(&id.into_u64()) else {
            return;
        };
        values.record(&mut Fields(&mut self.0.lock().unwrap()[i].fields));
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() == "msec::decision" {
            let mut f = HashMap::new();
            event.record(&mut Fields(&mut f));
            self.2.lock().unwrap().push(format!(
                "{}:{}:{}",
                f.get("layer").map_or("", String::as_str),
                f.get("outcome").map_or("", String::as_str),
                f.get("code").map_or("", String::as_str)
            ));
        }
    }
}

impl Spans {
    fn take(&self) -> (Vec<Seen>, Vec<String>) {
        self.1.lock().unwrap().clear();
        (
            std::mem::take(&mut *self.0.lock().unwrap()),
            std::mem::take(&mut *self.2.lock().unwrap()),
        )
    }
}

fn find<'a>(spans: &'a [Seen], name: &str) -> Option<&'a Seen> {
    spans.iter().find(|s| s.name == name)
}

#[tokio::test]
async fn every_layer_has_a_span_with_its_decision() {
    let spans = Spans::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone())).unwrap();

    let key = TestKey::es256();
    let validator = JwtValidator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("api")
                .pem_key(Some(&key.kid), Algorithm::ES256, key.public_pem.as_bytes()),
        )
        .build()
        .unwrap();
    let policy = Policy::builder()
        .allow("hello", ["GET /v1/hello"], Requirement::scope("hello:read"))
        .build()
        .unwrap();
    let limiter = RateLimiter::builder()
        .rule(Rule::new("per-user", Quota::per_minute(100)).key(KeySpec::subject()))
        .build()
        .unwrap();
    let schemas = SchemaSet::builder()
        .route("POST /v1/orders", serde_json::json!({"type": "object"}))
        .build()
        .unwrap();
    let log = AuditLog::builder()
        .signer(CheckpointSigner::ephemeral().unwrap())
        .start(MemorySink::new())
        .unwrap();
    let handler = service_fn(|_req: Request<GuardedBody<Incoming>>| async {
        tracing::info_span!("handler").in_scope(|| {});
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    let app = ServiceBuilder::new()
        .layer(AuditLayer::new(log.clone()))
        .layer(FirewallLayer::strict())
        .layer(AuthnLayer::jwt(validator).hook(Later))
        .layer(AuthorizeLayer::new(policy))
        .layer(RateLimitLayer::new(limiter))
        .layer(JsonSchemaLayer::new(schemas))
        .service(msec::tls::from_hyper(handler));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, remote)) = listener.accept().await {
            let app = app.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(ClientAddr::from_socket(remote));
                    app.clone().oneshot(req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get = async |path: &str, token: Option<&str>| {
        let mut b = Request::get(format!("{base}{path}"));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let resp = client.request(b.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        resp.into_body().collect().await.unwrap();
        status
    };
    let token = |scope: &str| {
        key.token()
            .iss(ISS)
            .aud("api")
            .sub("alice")
            .scope(scope)
            .issued_at(SystemTime::now())
            .expires_in(Duration::from_secs(600))
            .sign()
    };

    // Allowed: every layer's span, nested in stack order, each with its decision; the handler inside.
    assert_eq!(get("/v1/hello", Some(&token("hello:read"))).await, 200);
    log.flush().await.unwrap();
    let (seen, decisions) = spans.take();
    let chain = [
        ("msec.audit", None),
        ("msec.firewall", Some("msec.audit")),
        ("msec.authn", Some("msec.firewall")),
        ("msec.authz", Some("msec.authn")),
        ("msec.ratelimit", Some("msec.authz")),
        ("msec.json_guard", Some("msec.ratelimit")),
        ("handler", Some("msec.json_guard")),
    ];
    for (name, parent) in chain {
        let s = find(&seen, name).unwrap_or_else(|| panic!("no span {name} in {seen:#?}"));
        assert_eq!(s.parent.as_deref(), parent, "{name}'s parent");
    }
    let field = |name: &str, f: &str| find(&seen, name).and_then(|s| s.fields.get(f).cloned());
    assert_eq!(field("msec.authn", "outcome").as_deref(), Some("allow"));
    assert_eq!(field("msec.authn", "code").as_deref(), Some("authenticated"));
    assert_eq!(field("msec.authz", "code").as_deref(), Some("policy_allowed"));
    assert_eq!(field("msec.firewall", "code").as_deref(), Some("request_clean"));
    assert_eq!(field("msec.ratelimit", "outcome").as_deref(), Some("allow"));
    assert!(
        decisions.contains(&"authn:allow:authenticated".to_owned()),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&"authz:allow:policy_allowed".to_owned()),
        "{decisions:?}"
    );

    // No token: authn refuses; its span says why, and no inner layer ran.
    assert_eq!(get("/v1/hello", None).await, 401);
    let (seen, decisions) = spans.take();
    assert_eq!(field_of(&seen, "msec.authn", "outcome").as_deref(), Some("deny"));
    assert_eq!(
        field_of(&seen, "msec.authn", "code").as_deref(),
        Some("missing_credentials")
    );
    assert!(
        find(&seen, "msec.authz").is_none() && find(&seen, "handler").is_none(),
        "{seen:#?}"
    );
    assert!(
        decisions.contains(&"authn:deny:missing_credentials".to_owned()),
        "{decisions:?}"
    );

    // The wrong scope: authz refuses.
    assert_eq!(get("/v1/hello", Some(&token("other"))).await, 403);
    let (seen, _) = spans.take();
    assert_eq!(field_of(&seen, "msec.authz", "outcome").as_deref(), Some("deny"));
    assert_eq!(
        field_of(&seen, "msec.authz", "code").as_deref(),
        Some("insufficient_scope")
    );
    assert!(find(&seen, "msec.ratelimit").is_none());
    log.shutdown().await.unwrap();
}

fn field_of(spans: &[Seen], name: &str, f: &str) -> Option<String> {
    find(spans, name).and_then(|s| s.fields.get(f).cloned())
}
