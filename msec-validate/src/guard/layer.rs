use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use msec_core::context::{self, Outcome};
use msec_core::route::{RouteSpec, RouteTable};
use msec_core::{Rejection, ResponseBody, SecurityContext};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{JsonChecked, JsonLimits, ReadJson, check_head, read_json};
use crate::ConfigError;
use crate::GuardedBody;
use crate::codes;
use crate::schema::{CompiledSchema, SchemaSet};

pub(crate) const LAYER: &str = "validate";

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) limits: JsonLimits,
    pub(crate) routes: Option<RouteTable<()>>,
    pub(crate) schemas: Option<SchemaSet>,
}

/// Guards JSON request bodies: see the [module docs](crate::guard).
///
/// By default every request that has a body is guarded; [`routes`](Self::routes) narrows that to some routes
/// (put gRPC and form endpoints outside them: their bodies are not JSON). Requests without a body pass
/// untouched. The inner service receives a [`GuardedBody`]: the checked bytes, already read. A `validate`
/// [`Decision`](msec_core::Decision) is recorded for every guarded request.
///
/// Clones share the configuration.
///
/// ```
/// use axum::{routing::post, Json, Router};
/// use msec_validate::guard::{JsonGuardLayer, JsonLimits};
///
/// let app: Router = Router::new()
///     .route("/v1/orders", post(|Json(v): Json<serde_json::Value>| async move { Json(v) }))
///     .layer(JsonGuardLayer::new(JsonLimits::default().max_depth(8)));
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct JsonGuardLayer {
    config: Arc<Config>,
}

impl Default for JsonGuardLayer {
    fn default() -> Self {
        Self::new(JsonLimits::default())
    }
}

impl JsonGuardLayer {
    /// A guard enforcing `limits` on every request with a body.
    pub fn new(limits: JsonLimits) -> Self {
        Self {
            config: Arc::new(Config {
                limits,
                routes: None,
                schemas: None,
            }),
        }
    }

    /// Guards only requests matching one of `routes` (msec-core [`RouteSpec`]s such as `POST /v1/{*rest}`).
    pub fn routes<I, S>(self, routes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut table = RouteTable::new();
        for r in routes {
            table.insert(RouteSpec::parse(r.as_ref())?, ());
        }
        Ok(Self {
            config: Arc::new(Config {
                limits: self.config.limits,
                routes: Some(table),
                schemas: None,
            }),
        })
    }

    pub(crate) fn from_config(config: Config) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &JsonLimits {
        &self.config.limits
    }
}

impl<S> Layer<S> for JsonGuardLayer {
    type Service = JsonGuard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        JsonGuard {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`JsonGuardLayer`] (and of [`JsonSchemaLayer`](crate::schema::JsonSchemaLayer)).
#[derive(Clone)]
pub struct JsonGuard<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for JsonGuard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonGuard")
            .field("inner", &self.inner)
            .field("limits", &self.config.limits)
            .finish_non_exhaustive()
    }
}

impl<S> JsonGuard<S> {
    /// Wraps `inner` with a guard enforcing `limits` on every request with a body.
    pub fn new(inner: S, limits: JsonLimits) -> Self {
        JsonGuardLayer::new(limits).layer(inner)
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

/// A request has a body unless its body says it is empty (`content-length: 0`, or none on a GET): hyper's
/// incoming body reports both through `is_end_stream` / an exact size hint of 0.
fn has_body<B: Body>(req: &Request<B>) -> bool {
    !(req.body().is_end_stream() || req.body().size_hint().exact() == Some(0))
}

fn deny(parts: &Parts, rejection: Rejection, route: Option<&str>) -> Rejection {
    context::record_with(&parts.extensions, LAYER, Outcome::Deny, rejection.code(), |d| {
        if let Some(off) = rejection.members().get("offset") {
            d.detail("offset", off.to_string());
        }
        if let Some(r) = route {
            d.detail("route", r.to_owned());
        }
    });
    metrics::counter!("msec_validate_body_rejections_total", "code" => rejection.code().as_str()).increment(1);
    tracing::debug!(code = %rejection.code(), "request body refused");
    rejection
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JsonGuard<S>
where
    S: Service<Request<GuardedBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = msec_core::layer_span!("msec.json_guard");
        let mut fut = span.in_scope(|| self.decide(req));
        fut.span = span;
        fut
    }
}

impl<S> JsonGuard<S> {
    fn decide<ReqBody, ResBody>(&mut self, req: Request<ReqBody>) -> ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<GuardedBody<ReqBody>>, Response = Response<ResBody>> + Clone,
        ReqBody: Body,
    {
        let cfg = &*self.config;
        let mut route: Option<Arc<str>> = None;
        let schema = match &cfg.schemas {
            Some(set) => match set.find(req.method(), req.uri().path()) {
                Some((spec, schema)) => {
                    route = spec.template().cloned();
                    Some(schema.clone())
                }
                None => return passthrough(&mut self.inner, req),
            },
            None => {
                if let Some(routes) = &cfg.routes {
                    match routes.best_match(req.method(), req.uri().path()) {
                        Some(e) => route = e.spec.template().cloned(),
                        None => return passthrough(&mut self.inner, req),
                    }
                }
                if !has_body(&req) {
                    return passthrough(&mut self.inner, req);
                }
                None
            }
        };
        if let (Some(ctx), Some(r)) = (SecurityContext::get(req.extensions()), &route) {
            ctx.set_route(r.clone());
        }
        let (parts, body) = req.into_parts();
        if let Err(r) = check_head(&parts.headers, &cfg.limits) {
            let r = deny(&parts, r, route.as_deref());
            return ResponseFuture::ready(r.into_response(&parts.headers));
        }
        // Drive the service that was made ready; keep a fresh clone for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Reading {
                read: read_json(body, &cfg.limits),
                parts: Some(parts),
                inner: Some(inner),
                schema,
                route,
            },
            span: tracing::Span::none(),
        }
    }
}

fn passthrough<S, ReqBody, ResBody>(inner: &mut S, req: Request<ReqBody>) -> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<GuardedBody<ReqBody>>, Response = Response<ResBody>>,
{
    ResponseFuture {
        state: State::Calling {
            future: inner.call(req.map(GuardedBody::passthrough)),
        },
        span: tracing::Span::none(),
    }
}

pin_project! {
    /// The response future of [`JsonGuard`].
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<GuardedBody<ReqBody>>>,
    {
        #[pin]
        state: State<S, ReqBody, ResBody>,
        span: tracing::Span,
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<GuardedBody<ReqBody>>>,
{
    fn ready(response: Response<ResponseBody<ResBody>>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
            span: tracing::Span::none(),
        }
    }
}

impl<S, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<GuardedBody<ReqBody>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, ResBody>
    where
        S: Service<Request<GuardedBody<ReqBody>>>,
    {
        Reading {
            #[pin]
            read: ReadJson<ReqBody>,
            parts: Option<Parts>,
            inner: Option<S>,
            schema: Option<Arc<CompiledSchema>>,
            route: Option<Arc<str>>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Ready {
            response: Option<Response<ResponseBody<ResBody>>>,
        },
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<GuardedBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reading {
                    read,
                    parts,
                    inner,
                    schema,
                    route,
                } => {
                    let res = ready!(read.poll(cx));
                    let (Some(mut parts), Some(mut inner)) = (parts.take(), inner.take()) else {
                        return Poll::Ready(Ok(internal_error()));
                    };
                    let checked = res.and_then(|(bytes, summary)| match schema {
                        Some(s) => s.check(&bytes).map(|()| (bytes, summary)),
                        None => Ok((bytes, summary)),
                    });
                    match checked {
                        Ok((bytes, summary)) => {
                            let code = if schema.is_some() {
                                codes::SCHEMA_VALID
                            } else {
                                codes::JSON_ACCEPTED
                            };
                            context::record_with(&parts.extensions, LAYER, Outcome::Allow, code, |d| {
                                d.detail("bytes", summary.bytes);
                                if let Some(r) = route.as_ref() {
                                    d.detail("route", r);
                                }
                            });
                            parts.extensions.insert(JsonChecked { summary });
                            let req = Request::from_parts(parts, GuardedBody::checked(bytes));
                            let future = inner.call(req);
                            this.state.set(State::Calling { future });
                        }
                        Err(rejection) => {
                            let r = deny(&parts, rejection, route.as_deref());
                            return Poll::Ready(Ok(r.into_response(&parts.headers)));
                        }
                    }
                }
                StateProj::Calling { future } => {
                    return future.poll(cx).map(|r| r.map(|resp| resp.map(ResponseBody::new)));
                }
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().unwrap_or_else(internal_error)));
                }
            }
        }
    }
}

/// Polled after completion: a contract violation by the caller; answer an empty 500 rather than panic.
fn internal_error<B>() -> Response<ResponseBody<B>> {
    let mut r = Response::new(ResponseBody::full(Bytes::new()));
    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    r
}
