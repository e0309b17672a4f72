//! The layer over real loopback HTTP (and gRPC): statuses, problem+json, RateLimit headers, shadow mode,
//! closest-rule reporting, the penalty box, trusted-proxy resolution feeding the limiter, decisions.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{client, get, ok_service, serve};
use http::{Request, Response};
use http_body_util::Full;
use msec_core::clock::ManualClock;
use msec_core::context::Outcome;
use msec_core::{ClientAddr, ClientAddrSource, Principal, ReasonCode, SecurityContext};
use msec_ratelimit::{
    ClientIpLayer, KeySpec, PenaltyBox, Quota, RateLimitLayer, RateLimiter, Rule, TrustedProxies, codes,
};
use tower::{Layer, ServiceBuilder, ServiceExt};

fn clock() -> (ManualClock, Arc<ManualClock>) {
    let c = ManualClock::starting_now();
    (c.clone(), Arc::new(c))
}

#[tokio::test]
async fn over_quota_gets_429_with_truthful_headers() {
    let (fake, shared) = clock();
    let limiter = RateLimiter::builder()
        .rule(Rule::new("per-ip", Quota::per_minute(60).burst(3)))
        .clock(shared)
        .build()
        .unwrap();
    let addr = serve(RateLimitLayer::new(limiter).layer(ok_service())).await;
    let c = client();
    let url = format!("http://{addr}/x");

    let a = get(&c, &url, &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("ratelimit-policy"), Some("\"per-ip\";q=3;w=3"));
    assert_eq!(a.header("ratelimit"), Some("\"per-ip\";r=2;t=1"));
    let a = get(&c, &url, &[]).await;
    assert_eq!(a.header("ratelimit"), Some("\"per-ip\";r=1;t=2"));
    let a = get(&c, &url, &[]).await;
    assert_eq!(a.header("ratelimit"), Some("\"per-ip\";r=0;t=3"));

    let a = get(&c, &url, &[]).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.code(), "rate_limited");
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(a.header("ratelimit"), Some("\"per-ip\";r=0;t=3"));
    assert_eq!(a.body["type"], "urn:msec:problem:rate_limited");
    assert_eq!(a.body["status"], 429);

    // One unit comes back per second.
    fake.advance(Duration::from_millis(999));
    assert_eq!(get(&c, &url, &[]).await.status, 429);
    fake.advance(Duration::from_millis(1));
    let a = get(&c, &url, &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("ratelimit"), Some("\"per-ip\";r=0;t=3"));
}

#[tokio::test]
async fn headers_can_be_hidden() {
    let limiter = RateLimiter::builder()
        .rule(Rule::new("r", Quota::per_hour(1)))
        .build()
        .unwrap();
    let addr = serve(RateLimitLayer::new(limiter).hide_headers().layer(ok_service())).await;
    let c = client();
    let url = format!("http://{addr}/");
    let a = get(&c, &url, &[]).await;
    assert_eq!(a.status, 200);
    assert!(a.header("ratelimit").is_none() && a.header("ratelimit-policy").is_none());
    let a = get(&c, &url, &[]).await;
    assert_eq!(a.status, 429);
    assert!(a.header("ratelimit").is_none());
    assert_eq!(a.header("retry-after"), Some("3600"));
}

type Body = Full<Bytes>;

fn req(path: &str, ctx: &Arc<SecurityContext>) -> Request<Body> {
    let mut r = Request::get(path).body(Full::new(Bytes::new())).unwrap();
    r.extensions_mut().insert(ctx.clone());
    r.extensions_mut()
        .insert(ClientAddr::from_socket("203.0.113.5:1000".parse().unwrap()));
    r
}

fn inner() -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|_r: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

#[tokio::test]
async fn shadow_rules_never_reject_but_record() {
    let limiter = RateLimiter::builder()
        .rule(Rule::new("trial", Quota::per_hour(1)).shadow())
        .build()
        .unwrap();
    let svc = RateLimitLayer::new(limiter).layer(inner());
    for n in 0..3 {
        let ctx = SecurityContext::new();
        let resp = svc.clone().oneshot(req("/a", &ctx)).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers().get("ratelimit").is_none(),
            "shadow rules are not advertised"
        );
        let d = ctx.decisions();
        if n == 0 {
            assert!(d.is_empty(), "{d:?}");
        } else {
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].layer, "ratelimit");
            assert_eq!(d[0].outcome, Outcome::ShadowDeny);
            assert_eq!(d[0].code, ReasonCode::RATE_LIMITED);
            assert_eq!(d[0].get_detail("rule"), Some("trial"));
            assert_eq!(d[0].get_detail("key"), Some("ip:203.0.113.5"));
        }
    }
}

#[tokio::test]
async fn all_rules_checked_and_closest_reported() {
    let (_fake, shared) = clock();
    let limiter = RateLimiter::builder()
        .clock(shared)
        .rule(Rule::new("wide", Quota::per_minute(100)))
        .rule(
            Rule::new("orders", Quota::per_minute(10))
                .route("GET /orders/{id}")
                .key(KeySpec::route()),
        )
        .rule(
            Rule::new("heavy", Quota::per_minute(100).burst(50))
                .route("/orders/{*rest}")
                .cost(20),
        )
        .build()
        .unwrap();
    let svc = RateLimitLayer::new(limiter).layer(inner());
    let ctx = SecurityContext::new();
    let r = svc.clone().oneshot(req("/orders/1", &ctx)).await.unwrap();
    // wide: 99/100, orders: 9/10, heavy: 30/50 -> heavy is closest.
    assert_eq!(r.headers()["ratelimit"], "\"heavy\";r=30;t=12");
    let d = ctx.decisions();
    assert_eq!(d.last().unwrap().code, codes::WITHIN_LIMIT);
    assert_eq!(d.last().unwrap().get_detail("rule"), Some("heavy"));
    // Another order id shares the route key: "orders" counts per template, not per path.
    let _ = svc
        .clone()
        .oneshot(req("/orders/2", &SecurityContext::new()))
        .await
        .unwrap();
    let ctx = SecurityContext::new();
    let r = svc.clone().oneshot(req("/orders/3", &ctx)).await.unwrap();
    assert_eq!(r.status(), 429, "heavy: 50 - 3 x 20 < 0");
    assert_eq!(r.headers()["ratelimit"], "\"heavy\";r=0;t=24");
    let d = ctx.decisions();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].outcome, d[0].get_detail("rule")), (Outcome::Deny, Some("heavy")));
    // Unrelated paths only see the wide rule.
    let r = svc
        .clone()
        .oneshot(req("/other", &SecurityContext::new()))
        .await
        .unwrap();
    assert_eq!(r.headers()["ratelimit"], "\"wide\";r=97;t=2");
}

#[tokio::test]
async fn per_principal_rules_skip_anonymous_requests() {
    let limiter = RateLimiter::builder()
        .rule(Rule::new("per-user", Quota::per_hour(1)).key(KeySpec::subject()))
        .build()
        .unwrap();
    let svc = RateLimitLayer::new(limiter).layer(inner());
    for _ in 0..3 {
        let r = svc.clone().oneshot(req("/a", &SecurityContext::new())).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let alice = Arc::new(Principal::builder("alice").build());
    let with = |ctx: &Arc<SecurityContext>| {
        let mut r = req("/a", ctx);
        r.extensions_mut().insert(alice.clone());
        r
    };
    assert_eq!(
        svc.clone()
            .oneshot(with(&SecurityContext::new()))
            .await
            .unwrap()
            .status(),
        200
    );
    let ctx = SecurityContext::new();
    assert_eq!(svc.clone().oneshot(with(&ctx)).await.unwrap().status(), 429);
    assert_eq!(ctx.decisions()[0].get_detail("key"), Some("sub:alice"));
}

#[tokio::test]
async fn penalty_box_bans_after_failures_and_can_be_lifted() {
    let (fake, shared) = clock();
    let limiter = RateLimiter::builder()
        .rule(Rule::new("per-ip", Quota::per_second(100)))
        .penalty_box(
            PenaltyBox::builder()
                .threshold(3)
                .window(Duration::from_secs(60))
                .ban(Duration::from_secs(120)),
        )
        .clock(shared)
        .build()
        .unwrap();
    let bans = limiter.penalty_box().unwrap().clone();
    let addr = serve(RateLimitLayer::new(limiter).layer(ok_service())).await;
    let c = client();
    let url = format!("http://{addr}/login");
    for _ in 0..3 {
        assert_eq!(get(&c, &url, &[("x-status", "401")]).await.status, 401);
    }
    let a = get(&c, &url, &[]).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.code(), "banned");
    assert_eq!(a.header("retry-after"), Some("120"));
    let key = bans.key_for_ip("127.0.0.1".parse().unwrap()).unwrap();
    assert_eq!(bans.banned_for(&key).await.unwrap(), Some(Duration::from_secs(120)));
    fake.advance(Duration::from_secs(60));
    assert_eq!(get(&c, &url, &[]).await.header("retry-after"), Some("60"));
    bans.unban(&key).await.unwrap();
    assert_eq!(get(&c, &url, &[]).await.status, 200);
    // A manual ban (what a threat detector calls).
    bans.ban(&key, Duration::from_secs(30)).await.unwrap();
    let a = get(&c, &url, &[]).await;
    assert_eq!((a.status, a.code()), (429, "banned"));
    fake.advance(Duration::from_secs(30));
    assert_eq!(get(&c, &url, &[]).await.status, 200);
}

#[tokio::test]
async fn decisions_for_allow_deny_and_ban() {
    let (_fake, shared) = clock();
    let limiter = RateLimiter::builder()
        .clock(shared)
        .rule(Rule::new("one", Quota::per_hour(1)))
        .penalty_box(PenaltyBox::builder().threshold(1))
        .build()
        .unwrap();
    let svc = RateLimitLayer::new(limiter.clone()).layer(inner());
    let ctx = SecurityContext::new();
    svc.clone().oneshot(req("/", &ctx)).await.unwrap();
    let d = ctx.decisions();
    assert_eq!((d[0].outcome, d[0].code), (Outcome::Allow, codes::WITHIN_LIMIT));
    assert_eq!(d[0].get_detail("remaining"), Some("0"));
    let ctx = SecurityContext::new();
    let r = svc.clone().oneshot(req("/", &ctx)).await.unwrap();
    assert_eq!(
        r.extensions().get::<msec_core::Rejection>().unwrap().code(),
        ReasonCode::RATE_LIMITED
    );
    let d = ctx.decisions();
    assert_eq!((d[0].outcome, d[0].code), (Outcome::Deny, ReasonCode::RATE_LIMITED));
    assert_eq!(d[0].get_detail("retry_after_ms"), Some("3600000"));
    let pb = limiter.penalty_box().unwrap();
    pb.ban(
        &pb.key_for_ip("203.0.113.5".parse().unwrap()).unwrap(),
        Duration::from_secs(9),
    )
    .await
    .unwrap();
    let ctx = SecurityContext::new();
    svc.clone().oneshot(req("/", &ctx)).await.unwrap();
    let d = ctx.decisions();
    assert_eq!((d[0].outcome, d[0].code), (Outcome::Deny, ReasonCode::BANNED));
}

#[tokio::test]
async fn resolved_client_ip_feeds_the_limiter_and_the_context() {
    // Behind a trusted proxy (loopback here), each forwarded client has its own quota.
    let limiter = RateLimiter::builder()
        .rule(Rule::new("per-ip", Quota::per_hour(1)))
        .build()
        .unwrap();
    type Seen = Vec<(String, ClientAddrSource, Option<String>)>;
    let seen: Arc<std::sync::Mutex<Seen>> = Arc::default();
    let seen2 = seen.clone();
    let app = ServiceBuilder::new()
        .map_request(|mut r: Request<hyper::body::Incoming>| {
            r.extensions_mut().insert(SecurityContext::new());
            r
        })
        .layer(ClientIpLayer::new(TrustedProxies::new(["127.0.0.0/8"]).unwrap()))
        .map_request(move |r: Request<hyper::body::Incoming>| {
            let a = ClientAddr::from_extensions(r.extensions()).unwrap();
            let ctx = SecurityContext::get(r.extensions())
                .unwrap()
                .client_addr()
                .map(|c| c.ip().to_string());
            seen2.lock().unwrap().push((a.ip().to_string(), a.source(), ctx));
            r
        })
        .layer(RateLimitLayer::new(limiter))
        .service(ok_service());
    let addr = serve(app).await;
    let c = client();
    let url = format!("http://{addr}/");
    let a1 = [("x-forwarded-for", "198.51.100.1")];
    let a2 = [("x-forwarded-for", "6.6.6.6, 198.51.100.2")];
    assert_eq!(get(&c, &url, &a1).await.status, 200);
    assert_eq!(get(&c, &url, &a2).await.status, 200);
    assert_eq!(get(&c, &url, &a1).await.status, 429);
    assert_eq!(get(&c, &url, &a2).await.status, 429);
    // No header: the proxy itself (the socket peer) is the client.
    assert_eq!(get(&c, &url, &[]).await.status, 200);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0],
        (
            "198.51.100.1".into(),
            ClientAddrSource::Forwarded,
            Some("198.51.100.1".into())
        )
    );
    assert_eq!(seen[1].0, "198.51.100.2", "the client-written 6.6.6.6 is ignored");
    assert_eq!(
        seen[4],
        ("127.0.0.1".into(), ClientAddrSource::Socket, Some("127.0.0.1".into()))
    );
}

#[tokio::test]
async fn untrusted_peer_cannot_spoof_its_way_around_the_limit() {
    let limiter = RateLimiter::builder()
        .rule(Rule::new("per-ip", Quota::per_hour(2)))
        .build()
        .unwrap();
    let app = ServiceBuilder::new()
        .layer(ClientIpLayer::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap()))
        .layer(RateLimitLayer::new(limiter))
        .service(ok_service());
    let addr = serve(app).await;
    let c = client();
    let url = format!("http://{addr}/");
    let mut statuses = Vec::new();
    for i in 0..4 {
        let xff = format!("198.51.100.{i}");
        statuses.push(get(&c, &url, &[("x-forwarded-for", &xff)]).await.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
}

mod grpc {
    use super::*;
    use msec_test_support::pb::echo_client::EchoClient;
    use msec_test_support::pb::echo_server::{Echo, EchoServer};
    use msec_test_support::pb::{SayReply, SayRequest};

    struct Svc;

    #[tonic::async_trait]
    impl Echo for Svc {
        async fn say(&self, req: tonic::Request<SayRequest>) -> Result<tonic::Response<SayReply>, tonic::Status> {
            Ok(tonic::Response::new(SayReply {
                message: req.into_inner().message,
                ..Default::default()
            }))
        }
    }

    #[tokio::test]
    async fn grpc_clients_get_resource_exhausted() {
        let limiter = RateLimiter::builder()
            .rule(
                Rule::new("echo", Quota::per_hour(2))
                    .route("grpc /msec.test.v1.Echo")
                    .key(KeySpec::global()),
            )
            .build()
            .unwrap();
        let (incoming, addr) = msec_test_support::net::tonic_incoming().await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(RateLimitLayer::new(limiter))
                .add_service(EchoServer::new(Svc))
                .serve_with_incoming(incoming),
        );
        let mut client = EchoClient::connect(format!("http://{addr}")).await.unwrap();
        for _ in 0..2 {
            let r = client.say(SayRequest { message: "hi".into() }).await.unwrap();
            assert_eq!(r.metadata().get("ratelimit-policy").unwrap(), "\"echo\";q=2;w=3600");
        }
        let err = client.say(SayRequest { message: "hi".into() }).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(err.message(), "rate_limited: too many requests");
        assert_eq!(err.metadata().get("retry-after").unwrap(), "1800");
    }
}
