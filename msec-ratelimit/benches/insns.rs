//! A fixed-work driver for instruction counting with `valgrind --tool=callgrind` (wall-clock timing on the
//! shared, loaded machine is noisy; instruction counts are not).
//!
//! `insns <scenario> <n>` runs `n` operations of one scenario after a warm-up. `benches/callgrind.sh` counts
//! instructions only inside `measured` (the `n` operations: setup, warm-up and one-off calibration excluded)
//! and divides by `n`:
//!
//! ```text
//! cargo bench -p msec-ratelimit --bench insns --no-run
//! msec-ratelimit/benches/callgrind.sh <path to the insns binary> governor local layer ...
//! ```
//!
//! Scenarios (the same operations as the criterion bench `ratelimit`, cycling over 1024 IPv4 clients):
//! `governor` (keyed `check_key`, quanta clock), `governor_msec_clock` (same, msec-core's `SystemClock`),
//! `clock` (one `SystemClock::monotonic` read), `fast_clock` (one read of msec-ratelimit's default clock),
//! `local` (`LocalLimiter::check`, default clock), `local_injected` (same, `SystemClock` injected),
//! `headers` (formatting one `RateLimit` item + policy clone), `bare` (a bare tower service),
//! `layer` (the service behind `RateLimitLayer` with headers), `layer_hidden` (headers hidden),
//! `layer_injected` (with headers, `SystemClock` injected), `governor_layer` (the minimal governor + headers
//! service of `baseline/mod.rs`), `record_with` (msec-core's `record_with` without a context: its metrics
//! counter alone), `static_counter` (the same counter with compile-time labels).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod baseline;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use msec_core::ClientAddr;
use msec_core::clock::{Clock, SystemClock};
use msec_ratelimit::{Key, LocalLimiter, Quota, RateLimitLayer, RateLimiter, Rule};
use tower::{Layer, Service, ServiceExt, service_fn};

const KEYS: usize = 1024;
const WARMUP: usize = 4096;

fn ips() -> Vec<IpAddr> {
    (0..KEYS as u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xC633_6400 + i)))
        .collect()
}

fn run(n: usize, mut op: impl FnMut(usize)) {
    for i in 0..WARMUP {
        op(i);
    }
    measured(n, &mut op);
}

/// The counted region: `callgrind.sh` collects only while this function runs.
#[inline(never)]
fn measured(n: usize, op: &mut dyn FnMut(usize)) {
    for i in 0..n {
        op(WARMUP + i);
    }
}

fn request(ip: IpAddr) -> Request<()> {
    let mut r = Request::get("/v1/orders/42").body(()).unwrap();
    r.extensions_mut().insert(ClientAddr::from_socket((ip, 4000).into()));
    r
}

fn drive<S>(svc: &mut S, req: Request<()>)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
    S::Response: 'static,
{
    let resp = svc
        .ready()
        .now_or_never()
        .unwrap()
        .unwrap()
        .call(req)
        .now_or_never()
        .unwrap()
        .unwrap();
    black_box(resp);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let (Some(scenario), Some(n)) = (args.first(), args.get(1).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: insns <scenario> <n>  (see the source for scenarios); nothing to do");
        return;
    };
    let ips = ips();
    let ip = |i: usize| ips[i % KEYS];
    let big = 1_000_000_000;
    let inner = service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) });
    let layered = |headers: bool, injected: bool| {
        let mut b = RateLimiter::builder().rule(Rule::new("per-ip", Quota::per_second(big)));
        if injected {
            b = b.clock(Arc::new(SystemClock));
        }
        let mut layer = RateLimitLayer::new(b.build().unwrap());
        if !headers {
            layer = layer.hide_headers();
        }
        layer.layer(inner)
    };
    match scenario.as_str() {
        "governor" => {
            let gov = governor::RateLimiter::keyed(governor::Quota::per_second(NonZeroU32::new(big).unwrap()));
            run(n, |i| {
                black_box(gov.check_key(&ip(i)).is_ok());
            });
        }
        "governor_msec_clock" => {
            let gov = governor::RateLimiter::hashmap_with_clock(
                governor::Quota::per_second(NonZeroU32::new(big).unwrap()),
                msec_ratelimit::ClockBridge(Arc::new(SystemClock)),
            );
            run(n, |i| {
                black_box(gov.check_key(&ip(i)).is_ok());
            });
        }
        "clock" => {
            let c: Arc<dyn Clock> = Arc::new(SystemClock);
            run(n, |_| {
                black_box(c.monotonic());
            });
        }
        "fast_clock" => {
            let c: Arc<dyn Clock> = Arc::new(msec_ratelimit::FastClock::new());
            run(n, |_| {
                black_box(c.monotonic());
            });
        }
        "local" | "local_injected" => {
            let q = Quota::per_second(big);
            let local = if scenario == "local" {
                LocalLimiter::with_default_clock(q, 100_000)
            } else {
                LocalLimiter::new(q, 100_000, Arc::new(SystemClock))
            };
            run(n, |i| {
                black_box(local.check(&Key::ip(ip(i), 32, 64), NonZeroU32::MIN).allowed);
            });
        }
        "headers" => {
            let policy = HeaderValue::from_static("\"per-ip\";q=100;w=60");
            run(n, |_| {
                use std::fmt::Write as _;
                let mut s = String::with_capacity(32);
                s.push_str("\"per-ip\"");
                let _ = write!(s, ";r={};t={}", black_box(42u32), black_box(17u64));
                black_box((policy.clone(), HeaderValue::from_maybe_shared(Bytes::from(s)).unwrap()));
            });
        }
        "bare" => {
            let mut svc = inner;
            run(n, |i| drive(&mut svc, request(ip(i))));
        }
        "layer" => {
            let mut svc = layered(true, false);
            run(n, |i| drive(&mut svc, request(ip(i))));
        }
        "layer_hidden" => {
            let mut svc = layered(false, false);
            run(n, |i| drive(&mut svc, request(ip(i))));
        }
        "layer_injected" => {
            let mut svc = layered(true, true);
            run(n, |i| drive(&mut svc, request(ip(i))));
        }
        "governor_layer" => {
            let mut svc = baseline::GovernorHeaders::new(inner, big);
            run(n, |i| drive(&mut svc, request(ip(i))));
        }
        "record_with" => {
            let req = request(ip(0));
            run(n, |_| {
                msec_core::context::record_with(
                    black_box(req.extensions()),
                    "ratelimit",
                    msec_core::context::Outcome::Allow,
                    msec_ratelimit::codes::WITHIN_LIMIT,
                    |d| {
                        d.detail("rule", "per-ip");
                    },
                );
            });
        }
        "static_counter" => {
            run(n, |_| {
                metrics::counter!(
                    "msec_decisions_total",
                    "layer" => "ratelimit",
                    "outcome" => "allow",
                    "code" => "within_limit"
                )
                .increment(1);
            });
        }
        other => eprintln!("unknown scenario `{other}`"),
    }
}
