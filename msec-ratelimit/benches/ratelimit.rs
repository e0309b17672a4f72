//! msec-ratelimit beside its raw primitives.
//!
//! - `check`: governor's own keyed limiter (`check_key`, default store) vs msec's `LocalLimiter::check` (same
//!   GCRA over the bounded, self-evicting store, key encoding included) vs formatting the RateLimit fields alone;
//!   the two clocks.
//! - `layer`: a bare tower service vs the same service behind a minimal governor layer that sends the same
//!   RateLimit fields (`baseline/mod.rs`) vs behind `RateLimitLayer` (one per-IP rule), with and without
//!   RateLimit headers.
//! - `redis` (feature `redis`, needs Redis on 127.0.0.1:6379): decisions per second from one process over one
//!   multiplexed connection, 1 and 64 in flight.
//!
//! Run: `cargo bench -p msec-ratelimit --features redis --bench ratelimit -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod baseline;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use msec_core::ClientAddr;
use msec_core::clock::SystemClock;
use msec_ratelimit::{Key, LocalLimiter, Quota, RateLimitLayer, RateLimiter, Rule};
use tower::{Layer, Service, ServiceExt, service_fn};

const KEYS: u32 = 1024;

fn ips() -> Vec<IpAddr> {
    (0..KEYS).map(|i| IpAddr::V4(Ipv4Addr::from(0xC633_6400 + i))).collect()
}

fn check(c: &mut Criterion) {
    let ips = ips();
    // Generous quotas so every call takes the "allowed" path, as most production calls do.
    let gov = governor::RateLimiter::keyed(governor::Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap()));
    // msec's limiter as `RateLimiter` builds it (default clock: `FastClock`), and with msec-core's `SystemClock`
    // injected.
    let local = LocalLimiter::with_default_clock(Quota::per_second(1_000_000_000), 100_000);
    let local_sys = LocalLimiter::new(Quota::per_second(1_000_000_000), 100_000, Arc::new(SystemClock));
    // The same governor limiter timed like msec's (msec-core's injected clock instead of quanta's TSC).
    let gov_std = governor::RateLimiter::hashmap_with_clock(
        governor::Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap()),
        msec_ratelimit::ClockBridge(Arc::new(SystemClock)),
    );
    let mut g = c.benchmark_group("check");
    let mut i = 0usize;
    g.bench_function("governor_check_key", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(gov.check_key(&ips[i]).is_ok())
        });
    });
    g.bench_function("governor_check_key_msec_clock", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(gov_std.check_key(&ips[i]).is_ok())
        });
    });
    g.bench_function("clock_read_msec_core_system_clock", |b| {
        let c: msec_core::clock::SharedClock = Arc::new(SystemClock);
        b.iter(|| black_box(c.monotonic()));
    });
    g.bench_function("clock_read_fast_clock", |b| {
        let c: msec_core::clock::SharedClock = Arc::new(msec_ratelimit::FastClock::new());
        b.iter(|| black_box(c.monotonic()));
    });
    g.bench_function("msec_local_check", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(local.check(&Key::ip(ips[i], 32, 64), NonZeroU32::MIN).allowed)
        });
    });
    g.bench_function("msec_local_check_system_clock", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(local_sys.check(&Key::ip(ips[i], 32, 64), NonZeroU32::MIN).allowed)
        });
    });
    // What the layer adds per response: one formatted `RateLimit` item and a clone of the precomputed policy.
    let policy = HeaderValue::from_static("\"per-ip\";q=100;w=60");
    g.bench_function("ratelimit_header_formatting", |b| {
        b.iter(|| {
            black_box((
                policy.clone(),
                baseline::format_item("\"per-ip\"", black_box(42u32), black_box(17u64)),
            ))
        });
    });
    g.finish();
}

fn layer(c: &mut Criterion) {
    let ips = ips();
    let inner = service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) });
    let limiter = RateLimiter::builder()
        .rule(Rule::new("per-ip", Quota::per_second(1_000_000_000)))
        .build()
        .unwrap();
    let req = |ip: IpAddr| {
        let mut r = Request::get("/v1/orders/42").body(()).unwrap();
        r.extensions_mut().insert(ClientAddr::from_socket((ip, 4000).into()));
        r
    };
    fn drive<S: Service<Request<()>>>(svc: &mut S, r: Request<()>) -> S::Response
    where
        S::Error: std::fmt::Debug,
    {
        svc.ready()
            .now_or_never()
            .unwrap()
            .unwrap()
            .call(r)
            .now_or_never()
            .unwrap()
            .unwrap()
    }
    let mut g = c.benchmark_group("layer");
    let mut i = 0usize;
    g.bench_function("bare_service", |b| {
        let mut svc = inner;
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(drive(&mut svc, req(ips[i])))
        });
    });
    g.bench_function("governor_minimal_layer_with_headers", |b| {
        let mut svc = baseline::GovernorHeaders::new(inner, 1_000_000_000);
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(drive(&mut svc, req(ips[i])))
        });
    });
    for (name, layer) in [
        ("ratelimit_layer_with_headers", RateLimitLayer::new(limiter.clone())),
        (
            "ratelimit_layer_hidden_headers",
            RateLimitLayer::new(limiter.clone()).hide_headers(),
        ),
    ] {
        let mut svc = layer.layer(inner);
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % ips.len();
                black_box(drive(&mut svc, req(ips[i])))
            });
        });
    }
    g.finish();
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    use std::time::{Duration, Instant};

    use futures_util::StreamExt;
    use msec_ratelimit::FailurePolicy;
    use msec_ratelimit::redis::RedisBackendBuilder;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let reachable = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect("127.0.0.1:6379"))
            .await
            .is_ok_and(|r| r.is_ok())
    });
    if !reachable {
        eprintln!("NOTICE: Redis is not reachable on 127.0.0.1:6379; skipping the redis group");
        return;
    }
    let prefix = format!("msec-bench:{}", std::process::id());
    let limiter = rt.block_on(async {
        RateLimiter::builder()
            .rule(Rule::new("per-ip", Quota::per_second(1_000_000_000)))
            .redis(
                RedisBackendBuilder::new("redis://127.0.0.1:6379")
                    .prefix(prefix)
                    .timeout(Duration::from_secs(2)),
                FailurePolicy::FailClosed,
            )
            .build()
            .unwrap()
    });
    let inner = service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) });
    let svc = RateLimitLayer::new(limiter).layer(inner);
    let ips = ips();
    let one = move |svc: msec_ratelimit::RateLimit<_>, ip: IpAddr| async move {
        let mut r = Request::get("/v1/orders/42").body(()).unwrap();
        r.extensions_mut().insert(ClientAddr::from_socket((ip, 4000).into()));
        let resp = svc.oneshot(r).await.unwrap();
        assert_eq!(resp.status(), 200);
    };
    let mut g = c.benchmark_group("redis");
    g.throughput(criterion::Throughput::Elements(1));
    for in_flight in [1usize, 64] {
        let (svc, ips) = (svc.clone(), ips.clone());
        g.bench_function(format!("decisions_{in_flight}_in_flight"), |b| {
            b.iter_custom(|iters| {
                let (svc, ips) = (svc.clone(), ips.clone());
                rt.block_on(async move {
                    let start = Instant::now();
                    futures_util::stream::iter(0..iters)
                        .map(|n| one(svc.clone(), ips[(n % u64::from(KEYS)) as usize]))
                        .buffer_unordered(in_flight)
                        .collect::<Vec<()>>()
                        .await;
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

#[cfg(not(feature = "redis"))]
fn redis(_c: &mut Criterion) {
    eprintln!("NOTICE: built without the `redis` feature; skipping the redis group");
}

criterion_group!(benches, check, layer, redis);
criterion_main!(benches);
