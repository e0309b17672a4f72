//! [`RateLimitLayer`]: checks every request against a [`RateLimiter`] and tells the client where it stands.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use msec_core::context::{self, Outcome};
use msec_core::{ReasonCode, Rejection, ResponseBody};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::key::{Key, RequestInfo};
#[cfg(feature = "redis")]
use crate::limiter::Backend;
use crate::limiter::{Inner, RateLimiter, Verdict, retry_secs};
use crate::local::RuleOutcome;
use crate::penalty::{FailureInfo, PenaltyBox};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Applies a [`RateLimiter`] to every request.
///
/// - Over quota: 429 `rate_limited` (problem+json, or gRPC `RESOURCE_EXHAUSTED` trailers-only for gRPC
///   requests) with `Retry-After`.
/// - Banned by the [`PenaltyBox`]: 429 `banned` with `Retry-After`.
/// - Both allowed and rejected responses carry `RateLimit-Policy: "name";q=..;w=..` and
///   `RateLimit: "name";r=..;t=..` for the enforced rule closest to its limit (appended, so stacked layers each
///   add their item); [`hide_headers`](Self::hide_headers) turns them off.
/// - Every decision is recorded as a `ratelimit` [`Decision`](msec_core::Decision): `within_limit`,
///   `rate_limited` (deny or shadow deny, with rule and key), `banned`.
///
/// Place one outside authentication to limit per client IP (and let the penalty box see 401/403 answers), and
/// another inside it to limit per principal. Clones share the limiter.
///
/// With the `redis` feature the service needs `S: Clone + Send + 'static` (the Redis decision is awaited before
/// the inner service is called, with the clone that was made ready).
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
    headers: bool,
}

impl RateLimitLayer {
    /// A layer applying `limiter`, with RateLimit headers.
    pub fn new(limiter: RateLimiter) -> Self {
        Self { limiter, headers: true }
    }

    /// Sends no `RateLimit` / `RateLimit-Policy` fields (`Retry-After` on 429 stays).
    #[must_use]
    pub fn hide_headers(mut self) -> Self {
        self.headers = false;
        self
    }

    /// The limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            headers: self.headers,
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimiter,
    headers: bool,
}

impl<S> RateLimit<S> {
    /// Wraps `inner` with `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        Self {
            inner,
            limiter,
            headers: true,
        }
    }
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// The future of [`RateLimit`].
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner {
            #[pin]
            fut: F,
            headers: Option<(HeaderValue, HeaderValue)>,
            penalty: Option<(PenaltyBox, Key)>,
        },
        Boxed {
            fut: BoxedResponse<B, E>,
        },
        Ready {
            resp: Option<Response<ResponseBody<B>>>,
        },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    fn ready(resp: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Ready { resp: Some(resp) },
            span: tracing::Span::none(),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match this.kind.project() {
            KindProj::Inner { fut, headers, penalty } => {
                let mut resp = match fut.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(r)) => r,
                };
                if let Some((policy, value)) = headers.take() {
                    append_headers(resp.headers_mut(), policy, value);
                }
                if let Some((pb, key)) = penalty.take()
                    && is_failure(&pb, &resp)
                {
                    pb.local_failure(&key);
                }
                Poll::Ready(Ok(resp.map(ResponseBody::new)))
            }
            KindProj::Boxed { fut } => fut.as_mut().poll(cx),
            KindProj::Ready { resp } => match resp.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => {
                    let mut r = Response::new(ResponseBody::empty());
                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    Poll::Ready(Ok(r))
                }
            },
        }
    }
}

pub(crate) fn append_headers(h: &mut http::HeaderMap, policy: HeaderValue, value: HeaderValue) {
    h.append(RATELIMIT_POLICY, policy);
    h.append(RATELIMIT, value);
}

pub(crate) fn is_failure<B>(pb: &PenaltyBox, resp: &Response<B>) -> bool {
    // Our own rejections are not failures of the client's credentials.
    if let Some(r) = resp.extensions().get::<Rejection>()
        && (r.code() == ReasonCode::RATE_LIMITED || r.code() == ReasonCode::BANNED)
    {
        return false;
    }
    pb.is_failure(&FailureInfo {
        status: resp.status(),
        headers: resp.headers(),
        extensions: resp.extensions(),
    })
}

impl Inner {
    pub(crate) fn header_pair(&self, v: &Verdict) -> Option<(HeaderValue, HeaderValue)> {
        let (i, o) = v.denied.as_ref().or(v.closest.as_ref())?;
        Some((self.rules[*i].policy_header.clone(), self.ratelimit_value(*i, o)))
    }

    pub(crate) fn deny_response<B>(
        &self,
        req_headers: &http::HeaderMap,
        i: usize,
        out: &RuleOutcome,
        headers: bool,
    ) -> Response<ResponseBody<B>> {
        let mut rej = Rejection::too_many_requests(ReasonCode::RATE_LIMITED, retry_secs(out.retry_after));
        if headers {
            rej = rej
                .with_header(RATELIMIT_POLICY, self.rules[i].policy_header.clone())
                .with_header(RATELIMIT, self.ratelimit_value(i, out));
        }
        rej.into_response(req_headers)
    }

    pub(crate) fn banned_response<B>(
        &self,
        ext: &http::Extensions,
        req_headers: &http::HeaderMap,
        key: &Key,
        left: std::time::Duration,
    ) -> Response<ResponseBody<B>> {
        context::record_with(ext, "ratelimit", Outcome::Deny, ReasonCode::BANNED, |d| {
            d.detail("key", key.to_string());
            d.detail("retry_after_ms", left.as_millis().to_string());
        });
        metrics::counter!("msec_ratelimit_banned_requests_total").increment(1);
        Rejection::too_many_requests(ReasonCode::BANNED, retry_secs(left))
            .with_detail("too many failed requests; try again later")
            .into_response(req_headers)
    }
}

impl<S> RateLimit<S> {
    /// The local-backend path: decide synchronously, then call the inner service or answer at once.
    fn call_local<ReqBody, ResBody>(&mut self, req: Request<ReqBody>) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let inner = &*self.limiter.inner;
        let penalty = match &inner.penalty {
            Some(pb) => match pb.key_spec().extract(&RequestInfo::new(&req, None)) {
                Some(k) => {
                    if let Some(left) = pb.local_banned_for(&k) {
                        return ResponseFuture::ready(inner.banned_response(req.extensions(), req.headers(), &k, left));
                    }
                    Some((pb.clone(), k))
                }
                None => None,
            },
            None => None,
        };
        let v = inner.check_local(&RequestInfo::new(&req, None));
        if let Some((i, out)) = &v.denied {
            return ResponseFuture::ready(inner.deny_response(req.headers(), *i, out, self.headers));
        }
        if v.closest.is_some() {
            inner.note_allow(req.extensions(), &v, None);
        }
        let headers = if self.headers { inner.header_pair(&v) } else { None };
        ResponseFuture {
            kind: Kind::Inner {
                fut: self.inner.call(req),
                headers,
                penalty,
            },
            span: tracing::Span::none(),
        }
    }
}

#[cfg(not(feature = "redis"))]
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = msec_core::layer_span!("msec.ratelimit");
        let mut fut = span.in_scope(|| self.call_local(req));
        fut.span = span;
        fut
    }
}

#[cfg(feature = "redis")]
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = msec_core::layer_span!("msec.ratelimit");
        let mut fut = span.in_scope(|| self.decide(req));
        fut.span = span;
        fut
    }
}

#[cfg(feature = "redis")]
impl<S> RateLimit<S> {
    fn decide<ReqBody, ResBody>(&mut self, req: Request<ReqBody>) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Send + 'static,
    {
        match &self.limiter.inner.backend {
            Backend::Local => self.call_local(req),
            Backend::Redis(redis) => {
                let redis = redis.clone();
                // Use the service that was made ready; leave a fresh clone in its place.
                let clone = self.inner.clone();
                let svc = std::mem::replace(&mut self.inner, clone);
                match crate::redis::prepare(&self.limiter, &redis, req, self.headers) {
                    crate::redis::Prepared::Answer(resp) => ResponseFuture::ready(resp),
                    crate::redis::Prepared::Ask(ask) => ResponseFuture {
                        kind: Kind::Boxed {
                            fut: Box::pin(ask.run(svc)),
                        },
                        span: tracing::Span::none(),
                    },
                }
            }
        }
    }
}
