//! The raw-primitive baseline for the layer benchmarks: the least a tower layer over governor must do to send
//! the same RateLimit fields — `check_key` on the client IP (governor's keyed limiter, its default quanta clock,
//! `StateInformationMiddleware` for the remaining capacity), format the `RateLimit` item, and append it and a
//! precomputed `RateLimit-Policy` to the response. No key cap, no eviction, no decision record, no shadow rules,
//! no route matching: what msec adds is what the comparison shows.

use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use governor::middleware::StateInformationMiddleware;
use http::{HeaderValue, Request, Response, StatusCode};
use msec_core::ClientAddr;

type Gov = governor::RateLimiter<
    IpAddr,
    governor::state::keyed::DefaultKeyedStateStore<IpAddr>,
    governor::clock::DefaultClock,
    StateInformationMiddleware,
>;

/// `RateLimit` item formatting exactly as the criterion `ratelimit_header_formatting` baseline does it.
pub(crate) fn format_item(name: &str, remaining: u32, reset_secs: u64) -> HeaderValue {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(32);
    s.push_str(name);
    let _ = write!(s, ";r={remaining};t={reset_secs}");
    HeaderValue::from_maybe_shared(Bytes::from(s)).unwrap_or_else(|_| HeaderValue::from_static("\"?\";r=0"))
}

/// A minimal governor rate-limit service with RateLimit headers.
#[derive(Clone)]
pub(crate) struct GovernorHeaders<S> {
    inner: S,
    gov: Arc<Gov>,
    policy: HeaderValue,
    burst: u32,
    per_unit_secs: f64,
}

impl<S> GovernorHeaders<S> {
    pub(crate) fn new(inner: S, per_second: u32) -> Self {
        let q = governor::Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN));
        Self {
            inner,
            gov: Arc::new(governor::RateLimiter::keyed(q).with_middleware::<StateInformationMiddleware>()),
            policy: HeaderValue::from_static("\"per-ip\";q=1000000000;w=1"),
            burst: per_second,
            per_unit_secs: 1.0 / f64::from(per_second),
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct GovFuture<F> {
        #[pin]
        fut: Option<F>,
        headers: Option<(HeaderValue, HeaderValue)>,
    }
}

impl<F, B: Default, E> Future for GovFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(fut) = this.fut.as_pin_mut() else {
            let mut r = Response::new(B::default());
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            return Poll::Ready(Ok(r));
        };
        let mut resp = match fut.poll(cx) {
            Poll::Ready(Ok(r)) => r,
            other => return other,
        };
        if let Some((p, v)) = this.headers.take() {
            resp.headers_mut().append("ratelimit-policy", p);
            resp.headers_mut().append("ratelimit", v);
        }
        Poll::Ready(Ok(resp))
    }
}

impl<S, ReqB, ResB: Default> tower::Service<Request<ReqB>> for GovernorHeaders<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = GovFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let Some(ip) = req.extensions().get::<ClientAddr>().map(|a| a.ip()) else {
            return GovFuture {
                fut: Some(self.inner.call(req)),
                headers: None,
            };
        };
        match self.gov.check_key(&ip) {
            Ok(snap) => {
                let remaining = snap.remaining_burst_capacity();
                let reset = (f64::from(self.burst.saturating_sub(remaining)) * self.per_unit_secs).ceil() as u64;
                let value = format_item("\"per-ip\"", remaining, reset);
                GovFuture {
                    fut: Some(self.inner.call(req)),
                    headers: Some((self.policy.clone(), value)),
                }
            }
            Err(_) => GovFuture {
                fut: None,
                headers: None,
            },
        }
    }
}
