//! The Redis backend against the real Redis on 127.0.0.1:6379 (skipped with a notice when it is not running,
//! a failure under `MSEC_REQUIRE_SERVICES=1`).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::TcpProxy;
use http::{Request, Response};
use http_body_util::Full;
use msec_core::clock::ManualClock;
use msec_core::context::Outcome;
use msec_core::{ClientAddr, ReasonCode, SecurityContext};
use msec_ratelimit::redis::RedisBackendBuilder;
use msec_ratelimit::{FailurePolicy, PenaltyBox, Quota, RateLimitLayer, RateLimiter, Rule, codes};
use tower::{Layer, ServiceExt};

type Body = Full<Bytes>;

fn prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "msec-test:{test}:{}:{t}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn inner() -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|r: Request<Body>| async move {
        let status = r
            .headers()
            .get("x-status")
            .map_or(200, |v| v.to_str().unwrap().parse().unwrap());
        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(resp)
    })
}

struct Replica {
    limiter: RateLimiter,
}

impl Replica {
    fn new(url: &str, prefix: &str, rules: Vec<Rule>, policy: FailurePolicy, clock: &ManualClock) -> Self {
        Self::with(url, prefix, rules, policy, clock, None)
    }

    fn with(
        url: &str,
        prefix: &str,
        rules: Vec<Rule>,
        policy: FailurePolicy,
        clock: &ManualClock,
        penalty: Option<msec_ratelimit::PenaltyBoxBuilder>,
    ) -> Self {
        let mut b = RateLimiter::builder()
            .rules(rules)
            .clock(Arc::new(clock.clone()))
            .redis(
                RedisBackendBuilder::new(url)
                    .prefix(prefix)
                    .timeout(Duration::from_millis(500)),
                policy,
            );
        if let Some(p) = penalty {
            b = b.penalty_box(p);
        }
        Self {
            limiter: b.build().unwrap(),
        }
    }

    async fn send(
        &self,
        ip: &str,
        status: u16,
    ) -> (u16, Response<msec_core::ResponseBody<Body>>, Arc<SecurityContext>) {
        let ctx = SecurityContext::new();
        let mut r = Request::get("/x")
            .header("x-status", status.to_string())
            .body(Full::new(Bytes::new()))
            .unwrap();
        r.extensions_mut()
            .insert(ClientAddr::from_socket(format!("{ip}:1000").parse().unwrap()));
        r.extensions_mut().insert(ctx.clone());
        let resp = RateLimitLayer::new(self.limiter.clone())
            .layer(inner())
            .oneshot(r)
            .await
            .unwrap();
        (resp.status().as_u16(), resp, ctx)
    }

    async fn status(&self, ip: &str) -> u16 {
        self.send(ip, 200).await.0
    }
}

async fn redis_addr() -> Option<(String, SocketAddr)> {
    let url = msec_test_support::services::redis_url().await?;
    let hostport = url.trim_start_matches("redis://").split('/').next().unwrap().to_owned();
    Some((url, hostport.parse().unwrap()))
}

#[tokio::test]
async fn two_replicas_share_one_quota_exactly() {
    let Some((url, _)) = redis_addr().await else { return };
    let p = prefix("share");
    let clock = ManualClock::starting_now();
    let rules = || vec![Rule::new("api", Quota::per_hour(10))];
    let a = Replica::new(&url, &p, rules(), FailurePolicy::FailClosed, &clock);
    let b = Replica::new(&url, &p, rules(), FailurePolicy::FailClosed, &clock);
    let mut allowed = 0;
    for i in 0..30 {
        let r = if i % 2 == 0 { &a } else { &b };
        if r.status("198.51.100.1").await == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "two replicas, one quota");
    // The headers tell the truth from either replica.
    clock.advance(Duration::from_secs(360));
    let (s, resp, _) = b.send("198.51.100.1", 200).await;
    assert_eq!(s, 200);
    assert_eq!(resp.headers()["ratelimit"], "\"api\";r=0;t=3600");
    assert_eq!(resp.headers()["ratelimit-policy"], "\"api\";q=10;w=3600");
    let (s, resp, ctx) = a.send("198.51.100.1", 200).await;
    assert_eq!(s, 429);
    assert_eq!(resp.headers()["retry-after"], "360");
    let d = ctx.decisions();
    assert_eq!((d[0].outcome, d[0].code), (Outcome::Deny, ReasonCode::RATE_LIMITED));
    // Another client is not affected.
    assert_eq!(a.status("198.51.100.2").await, 200);
}

#[tokio::test]
async fn exact_under_concurrency_across_replicas() {
    let Some((url, _)) = redis_addr().await else { return };
    let p = prefix("conc");
    let clock = ManualClock::starting_now();
    let rules = || vec![Rule::new("hot", Quota::per_second(100).burst(10))];
    let replicas = Arc::new([
        Replica::new(&url, &p, rules(), FailurePolicy::FailClosed, &clock),
        Replica::new(&url, &p, rules(), FailurePolicy::FailClosed, &clock),
    ]);
    let allowed = Arc::new(AtomicU64::new(0));
    // 100 steps of 1 ms: a tenth of a virtual second.
    for _ in 0..100 {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (replicas, allowed) = (replicas.clone(), allowed.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..2 {
                    if replicas[t % 2].status("203.0.113.50").await == 200 {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        clock.advance(Duration::from_millis(1));
    }
    let got = allowed.load(Ordering::Relaxed);
    // burst + rate × (99 ms of advances) = 10 + 9.9
    assert!(
        (19..=20).contains(&got),
        "allowed {got}, want 19 or 20 (burst 10 + 100/s × 99 ms)"
    );
}

#[tokio::test]
async fn keys_expire_with_their_window_and_noscript_is_handled() {
    let Some((url, _)) = redis_addr().await else { return };
    let p = prefix("ttl");
    let clock = ManualClock::starting_now();
    let a = Replica::new(
        &url,
        &p,
        vec![Rule::new("api", Quota::per_minute(60).burst(3))],
        FailurePolicy::FailClosed,
        &clock,
    );
    // Scripts unknown to Redis (a restart, a failover): EVALSHA fails with NOSCRIPT, the script is loaded.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    assert_eq!(a.status("192.0.2.77").await, 200);
    assert_eq!(a.status("192.0.2.77").await, 200);
    let key = format!("{p}:rl:api:ip:192.0.2.77");
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
    // Two of three units spent: the bucket is full again in 2 s, and so the key lives 2 s.
    assert!((1_900..=2_000).contains(&ttl), "PTTL {ttl}");
}

#[tokio::test]
async fn unreachable_redis_follows_each_policy() {
    // A closed port: bind, note the address, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("redis://{closed}");
    let clock = ManualClock::starting_now();
    let rules = || vec![Rule::new("api", Quota::per_hour(2))];

    let open = Replica::new(&url, "x", rules(), FailurePolicy::FailOpen, &clock);
    for _ in 0..3 {
        let (s, _, ctx) = open.send("198.51.100.9", 200).await;
        assert_eq!(s, 200);
        let d = ctx.decisions();
        assert_eq!((d[0].outcome, d[0].code), (Outcome::Allow, codes::FAILED_OPEN));
    }

    let closed_policy = Replica::new(&url, "x", rules(), FailurePolicy::FailClosed, &clock);
    let (s, resp, ctx) = closed_policy.send("198.51.100.9", 200).await;
    assert_eq!(s, 503);
    assert_eq!(
        resp.extensions().get::<msec_core::Rejection>().unwrap().code(),
        ReasonCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(ctx.decisions()[0].code, codes::BACKEND_UNAVAILABLE);

    let local = Replica::new(&url, "x", rules(), FailurePolicy::FallbackLocal, &clock);
    let (s, _, ctx) = local.send("198.51.100.9", 200).await;
    assert_eq!(s, 200);
    assert_eq!(ctx.decisions()[0].get_detail("backend"), Some("local_fallback"));
    assert_eq!(local.status("198.51.100.9").await, 200);
    assert_eq!(local.status("198.51.100.9").await, 429, "the local quota holds");
}

#[tokio::test]
async fn redis_going_away_mid_test() {
    let Some((url, redis_addr)) = redis_addr().await else {
        return;
    };
    let p = prefix("away");
    let clock = ManualClock::starting_now();
    let rules = || vec![Rule::new("api", Quota::per_hour(3))];
    for policy in [
        FailurePolicy::FailOpen,
        FailurePolicy::FailClosed,
        FailurePolicy::FallbackLocal,
    ] {
        let p = format!("{p}:{}", policy.as_str());
        let proxy = TcpProxy::start(redis_addr).await;
        let via_proxy = Replica::new(&format!("redis://{}", proxy.addr), &p, rules(), policy, &clock);
        let direct = Replica::new(&url, &p, rules(), policy, &clock);
        // Redis up: the two replicas share the quota.
        assert_eq!(via_proxy.status("198.51.100.20").await, 200);
        assert_eq!(via_proxy.status("198.51.100.20").await, 200);
        assert_eq!(direct.status("198.51.100.20").await, 200);
        assert_eq!(direct.status("198.51.100.20").await, 429);
        // Redis goes away (for the first replica).
        proxy.kill();
        let (s, _, ctx) = via_proxy.send("198.51.100.20", 200).await;
        let d = ctx.decisions();
        match policy {
            FailurePolicy::FailOpen => {
                assert_eq!(s, 200);
                assert_eq!(d[0].code, codes::FAILED_OPEN);
            }
            FailurePolicy::FailClosed => {
                assert_eq!(s, 503);
                assert_eq!(d[0].code, codes::BACKEND_UNAVAILABLE);
            }
            FailurePolicy::FallbackLocal => {
                // The local limiter has its own (per-replica) state: a fresh quota of 3.
                assert_eq!(s, 200);
                assert_eq!(d[0].get_detail("backend"), Some("local_fallback"));
                assert_eq!(via_proxy.status("198.51.100.20").await, 200);
                assert_eq!(via_proxy.status("198.51.100.20").await, 200);
                assert_eq!(via_proxy.status("198.51.100.20").await, 429);
            }
        }
        // The other replica still reaches Redis and still enforces the shared quota.
        assert_eq!(direct.status("198.51.100.20").await, 429);
    }
}

#[tokio::test]
async fn deny_cache_answers_without_redis() {
    let Some((_, redis_addr)) = redis_addr().await else {
        return;
    };
    let p = prefix("denycache");
    let clock = ManualClock::starting_now();
    let proxy = TcpProxy::start(redis_addr).await;
    let r = Replica::new(
        &format!("redis://{}", proxy.addr),
        &p,
        vec![Rule::new("api", Quota::per_minute(1))],
        FailurePolicy::FailOpen,
        &clock,
    );
    assert_eq!(r.status("198.51.100.30").await, 200);
    assert_eq!(r.status("198.51.100.30").await, 429);
    proxy.kill();
    // Redis is gone and the policy is fail-open, yet the key is still refused: the deny was cached locally.
    let (s, resp, _) = r.send("198.51.100.30", 200).await;
    assert_eq!(s, 429);
    assert_eq!(resp.headers()["retry-after"], "60");
    clock.advance(Duration::from_secs(60));
    // The cached deny expired; Redis is unreachable; fail open.
    let (s, _, ctx) = r.send("198.51.100.30", 200).await;
    assert_eq!(s, 200);
    assert_eq!(ctx.decisions()[0].code, codes::FAILED_OPEN);
}

#[tokio::test]
async fn bans_are_shared_and_escalate() {
    let Some((url, _)) = redis_addr().await else { return };
    let p = prefix("bans");
    let clock = ManualClock::starting_now();
    let penalty = || {
        Some(
            PenaltyBox::builder()
                .threshold(2)
                .window(Duration::from_secs(60))
                .ban(Duration::from_secs(10))
                .escalate(3),
        )
    };
    let rules = || vec![Rule::new("api", Quota::per_second(100))];
    let a = Replica::with(&url, &p, rules(), FailurePolicy::FailClosed, &clock, penalty());
    let b = Replica::with(&url, &p, rules(), FailurePolicy::FailClosed, &clock, penalty());
    let ip = "198.51.100.40";
    // One failure on each replica: two within the window, counted in Redis.
    assert_eq!(a.send(ip, 401).await.0, 401);
    assert_eq!(b.send(ip, 403).await.0, 403);
    let (s, resp, ctx) = a.send(ip, 200).await;
    assert_eq!(s, 429);
    assert_eq!(
        resp.extensions().get::<msec_core::Rejection>().unwrap().code(),
        ReasonCode::BANNED
    );
    assert_eq!(resp.headers()["retry-after"], "10");
    assert_eq!(ctx.decisions()[0].code, ReasonCode::BANNED);
    assert_eq!(b.status(ip).await, 429);
    let pb = a.limiter.penalty_box().unwrap();
    let key = pb.key_for_ip(ip.parse().unwrap()).unwrap();
    assert_eq!(
        b.limiter.penalty_box().unwrap().banned_for(&key).await.unwrap(),
        Some(Duration::from_secs(10))
    );
    // The second ban of a remembered key is 3 times longer.
    clock.advance(Duration::from_secs(10));
    assert_eq!(a.send(ip, 401).await.0, 401);
    assert_eq!(a.send(ip, 401).await.0, 401);
    assert_eq!(pb.banned_for(&key).await.unwrap(), Some(Duration::from_secs(30)));
    // Unban on one replica; the other's local ban cache keeps answering for at most `ban_cache_max` (5 s).
    assert_eq!(b.status(ip).await, 429);
    pb.unban(&key).await.unwrap();
    assert_eq!(a.status(ip).await, 200);
    assert_eq!(b.status(ip).await, 429, "still in B's ban cache");
    clock.advance(Duration::from_secs(5));
    assert_eq!(b.status(ip).await, 200);
    // A manual ban through the API reaches both replicas.
    b.limiter
        .penalty_box()
        .unwrap()
        .ban(&key, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(a.status(ip).await, 429);
    assert_eq!(b.status(ip).await, 429);
}

#[tokio::test]
async fn ping_backend_tells_whether_redis_answers() {
    let clock = ManualClock::starting_now();
    let local = RateLimiter::builder()
        .rule(Rule::new("api", Quota::per_hour(2)))
        .build()
        .unwrap();
    local.ping_backend().await.unwrap();

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = Replica::new(
        &format!("redis://{closed}"),
        "x",
        vec![Rule::new("api", Quota::per_hour(2))],
        FailurePolicy::FallbackLocal,
        &clock,
    );
    assert!(down.limiter.ping_backend().await.is_err());

    let Some((url, _)) = redis_addr().await else { return };
    let up = Replica::new(
        &url,
        &prefix("ping"),
        vec![Rule::new("api", Quota::per_hour(2))],
        FailurePolicy::FallbackLocal,
        &clock,
    );
    up.limiter.ping_backend().await.unwrap();
}
