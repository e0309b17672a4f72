//! The authentication layer: [`AuthnLayer`], [`Authn`], [`ResponseFuture`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use msec_core::context::{self, Decision, Outcome};
use msec_core::route::{RouteSpec, RouteTable};
use msec_core::{AuthMethod, ResponseBody, SecurityContext};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticator::{Attempt, Authenticated, Authenticator, AuthnFuture, AuthnResult, PostVerify, RequestHead};
use crate::error::{AuthnError, ConfigError, codes};
use crate::jwt::{JwtAuthenticator, JwtValidator};

/// Whether a request must carry credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AuthnMode {
    /// Credentials are required: none → 401.
    #[default]
    Required,
    /// No credentials → the request passes without a principal (an `anonymous` decision); bad credentials → 401.
    Optional,
    /// The layer does nothing (health checks, public assets): credentials are not even looked at.
    Skip,
}

#[derive(Clone)]
struct Shared {
    authenticator: Arc<dyn Authenticator>,
    hooks: Vec<Arc<dyn PostVerify>>,
    mode: AuthnMode,
    routes: Option<RouteTable<AuthnMode>>,
    realm: Option<Arc<str>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthnLayer")
            .field("authenticator", &self.authenticator.name())
            .field("hooks", &self.hooks.len())
            .field("mode", &self.mode)
            .field("route_modes", &self.routes.as_ref().map_or(0, RouteTable::len))
            .field("realm", &self.realm)
            .finish()
    }
}

/// Authenticates requests: puts the `Arc<Principal>` in the request extensions, tells the
/// [`SecurityContext`], records an `authn` decision, and answers failures itself.
///
/// | request                                  | required mode                  | optional mode                 |
/// |------------------------------------------|--------------------------------|-------------------------------|
/// | no credentials                           | 401, `Bearer` without `error`  | passes, anonymous             |
/// | malformed / oversized credential         | 400 `invalid_request`          | 400 `invalid_request`         |
/// | invalid token (signature, expiry, ...)   | 401 `invalid_token`            | 401 `invalid_token`           |
/// | keys unavailable                         | 503 (`Retry-After`)            | 503                           |
/// | valid token                              | passes with `Arc<Principal>`   | passes with `Arc<Principal>`  |
///
/// gRPC requests (`content-type: application/grpc*`) get the same decisions as trailers-only responses
/// (`UNAUTHENTICATED`, `INVALID_ARGUMENT`, `UNAVAILABLE`).
///
/// Which issuers or audiences a *route* accepts is authorization: express it in msec-core's
/// [`Policy`](msec_core::policy::Policy) with `Requirement::AnyIssuer`, `AnyAudience` or `Kind` behind this layer.
/// This layer decides only whether a route needs a credential at all ([`AuthnMode`], per route with
/// [`AuthnLayer::route_mode`]).
///
/// Clones share the authenticator, hooks and settings.
///
/// ```
/// use msec_authn::{AuthnLayer, AuthnMode, jwt::{Issuer, JwtValidator}};
/// use msec_core::policy::{AuthorizeLayer, Policy, Requirement};
/// use tower::ServiceBuilder;
/// # let key = msec_test_support::TestKey::es256();
///
/// let validator = JwtValidator::builder()
///     .issuer(Issuer::new("https://id.example.com").audience("orders")
///         .pem_key(Some("k1"), jsonwebtoken::Algorithm::ES256, key.public_pem.as_bytes()))
///     .build()?;
/// let policy = Policy::builder()
///     .allow("health", ["GET /healthz"], Requirement::Public)
///     .allow("orders", ["GET /v1/orders/{id}"], Requirement::scope("orders:read"))
///     .build()?;
/// let stack = ServiceBuilder::new()
///     .layer(AuthnLayer::jwt(validator).realm("orders").route_mode(["GET /healthz"], AuthnMode::Skip)?)
///     .layer(AuthorizeLayer::new(policy));
/// # let _ = stack;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AuthnLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for AuthnLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl AuthnLayer {
    /// A layer requiring credentials that `authenticator` accepts.
    pub fn new(authenticator: impl Authenticator) -> Self {
        Self::shared(Arc::new(authenticator))
    }

    /// A layer around a shared authenticator.
    pub fn shared(authenticator: Arc<dyn Authenticator>) -> Self {
        Self {
            shared: Arc::new(Shared {
                authenticator,
                hooks: Vec::new(),
                mode: AuthnMode::Required,
                routes: None,
                realm: None,
            }),
        }
    }

    /// A layer requiring `Authorization: Bearer` JWTs that `validator` accepts.
    pub fn jwt(validator: JwtValidator) -> Self {
        Self::new(JwtAuthenticator::new(validator))
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    /// Sets the default mode (required unless set).
    #[must_use]
    pub fn mode(self, mode: AuthnMode) -> Self {
        self.edit(|s| s.mode = mode)
    }

    /// Shorthand for `mode(AuthnMode::Optional)`.
    #[must_use]
    pub fn optional(self) -> Self {
        self.mode(AuthnMode::Optional)
    }

    /// Uses `mode` on these routes (msec-core route specs: `GET /healthz`, `/public/{*rest}`,
    /// `grpc /grpc.health.v1.Health`). The most specific matching route wins; others use the default mode.
    pub fn route_mode<I, S>(self, routes: I, mode: AuthnMode) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let specs = routes
            .into_iter()
            .map(|r| RouteSpec::parse(r.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.edit(|s| {
            let table = s.routes.get_or_insert_with(RouteTable::new);
            for spec in specs {
                table.insert(spec, mode);
            }
        }))
    }

    /// Adds a check run after successful authentication (cached or not), in order.
    #[must_use]
    pub fn hook(self, hook: impl PostVerify) -> Self {
        self.edit(|s| s.hooks.push(Arc::new(hook)))
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenges.
    #[must_use]
    pub fn realm(self, realm: impl Into<Arc<str>>) -> Self {
        let realm = realm.into();
        self.edit(|s| s.realm = Some(realm))
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = Authn<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authn {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of [`AuthnLayer`].
#[derive(Clone)]
pub struct Authn<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Authn<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authn")
            .field("inner", &self.inner)
            .field("layer", &self.shared)
            .finish()
    }
}

impl<S> Authn<S> {
    /// Wraps `inner` with `layer`'s settings.
    pub fn new(inner: S, layer: &AuthnLayer) -> Self {
        layer.layer(inner)
    }

    /// A layer requiring credentials that `authenticator` accepts.
    pub fn layer(authenticator: impl Authenticator) -> AuthnLayer {
        AuthnLayer::new(authenticator)
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

fn details(d: &mut Decision, auth: &Authenticated) {
    let p = &auth.principal;
    match &p.auth {
        AuthMethod::Jwt { alg, kid } => {
            d.detail("method", "jwt");
            // The registered names are constants: no copy for them.
            const ALGS: [&str; 13] = [
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256",
                "HS384", "HS512",
            ];
            match ALGS.iter().find(|a| **a == alg.as_str()) {
                Some(a) => d.detail("alg", *a),
                None => d.detail("alg", alg.clone()),
            };
            if let Some(kid) = kid {
                d.detail("kid", crate::util::sanitize(kid));
            }
        }
        AuthMethod::ApiKey { key_id } => {
            d.detail("method", "api_key");
            d.detail("key_id", key_id.clone());
        }
        AuthMethod::Introspection => {
            d.detail("method", "introspection");
        }
        _ => {}
    }
    if let Some(iss) = &p.issuer {
        d.detail("issuer", iss.clone());
    }
    if auth.cached {
        d.detail("cached", "true");
    }
    if auth.stale {
        d.detail("stale", "true");
    }
}

impl Shared {
    fn mode_for<B>(&self, req: &Request<B>) -> AuthnMode {
        match &self.routes {
            None => self.mode,
            Some(t) => t
                .best_match(req.method(), req.uri().path())
                .map_or(self.mode, |e| e.value),
        }
    }

    fn accept<B>(&self, mut req: Request<B>, auth: Authenticated) -> Request<B> {
        if let Some(ctx) = SecurityContext::get(req.extensions()) {
            ctx.set_principal(Arc::clone(&auth.principal));
        }
        context::record_with(req.extensions(), "authn", Outcome::Allow, codes::AUTHENTICATED, |d| {
            details(d, &auth);
        });
        req.extensions_mut().insert(auth.principal);
        req
    }

    fn reject<B, RB>(&self, req: &Request<B>, e: &AuthnError) -> Response<ResponseBody<RB>> {
        context::record_with(req.extensions(), "authn", Outcome::Deny, e.code(), |d| {
            d.detail("detail", e.detail().to_owned());
        });
        tracing::debug!(code = %e.code(), detail = %e.detail(), "msec-authn: request not authenticated");
        let mut r = e.rejection();
        if let Some(realm) = &self.realm {
            r = r.with_realm(Cow::Owned(realm.to_string()));
        }
        r.into_response(req.headers())
    }
}

type Slow<ReqBody, ResBody> =
    Pin<Box<dyn Future<Output = Result<Request<ReqBody>, Response<ResponseBody<ResBody>>>> + Send + 'static>>;

pin_project! {
    /// The future of [`Authn`]: the inner service's future, an immediate answer, or (when an authenticator or
    /// hook must wait) the authentication followed by the inner service.
    pub struct ResponseFuture<F, S, ReqBody, ResBody> {
        #[pin]
        state: State<F, S, ReqBody, ResBody>,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, ReqBody, ResBody> {
        Inner { #[pin] fut: F },
        Ready { resp: Option<Response<ResponseBody<ResBody>>> },
        Authenticating { auth: Slow<ReqBody, ResBody>, inner: Option<S> },
    }
}

impl<F, S, ReqBody, ResBody> fmt::Debug for ResponseFuture<F, S, ReqBody, ResBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::Inner { .. } => "ResponseFuture::Inner",
            State::Ready { .. } => "ResponseFuture::Ready",
            State::Authenticating { .. } => "ResponseFuture::Authenticating",
        })
    }
}

fn internal_error<B>() -> Response<ResponseBody<B>> {
    let mut r = Response::new(ResponseBody::empty());
    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    r
}

impl<F, S, ReqBody, ResBody, E> Future for ResponseFuture<F, S, ReqBody, ResBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = E, Future = F>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { fut } => {
                    return fut.poll(cx).map(|r| r.map(|resp| resp.map(ResponseBody::new)));
                }
                StateProj::Ready { resp } => {
                    // Polled after completion would be a caller bug: answer 500 rather than panic.
                    return Poll::Ready(Ok(resp.take().unwrap_or_else(internal_error)));
                }
                StateProj::Authenticating { auth, inner } => match ready!(auth.as_mut().poll(cx)) {
                    Ok(req) => match inner.take() {
                        Some(mut svc) => {
                            let fut = svc.call(req);
                            this.state.set(State::Inner { fut });
                        }
                        None => this.state.set(State::Ready {
                            resp: Some(internal_error()),
                        }),
                    },
                    Err(resp) => this.state.set(State::Ready { resp: Some(resp) }),
                },
            }
        }
    }
}

/// Where the slow path starts.
enum Resume {
    /// The authenticator's verdict is pending.
    Verdict(AuthnFuture<AuthnResult>),
    /// Hook `index` is pending for `auth`.
    Hook {
        auth: Authenticated,
        index: usize,
        fut: AuthnFuture<Result<(), AuthnError>>,
    },
}

async fn slow_path<ReqBody, ResBody>(
    shared: Arc<Shared>,
    req: Request<ReqBody>,
    resume: Resume,
) -> Result<Request<ReqBody>, Response<ResponseBody<ResBody>>> {
    let (auth, mut next) = match resume {
        Resume::Verdict(fut) => match fut.await {
            Ok(auth) => (auth, 0),
            Err(e) => return Err(shared.reject(&req, &e)),
        },
        Resume::Hook { auth, index, fut } => {
            if let Err(e) = fut.await {
                return Err(shared.reject(&req, &e));
            }
            (auth, index + 1)
        }
    };
    while let Some(hook) = shared.hooks.get(next) {
        let fut = hook.check(&auth, &RequestHead::from_request(&req));
        if let Err(e) = fut.await {
            return Err(shared.reject(&req, &e));
        }
        next += 1;
    }
    Ok(shared.accept(req, auth))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authn<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = msec_core::layer_span!("msec.authn");
        let mut fut = span.in_scope(|| self.decide(req));
        fut.span = span;
        fut
    }
}

impl<S> Authn<S> {
    fn decide<ReqBody, ResBody>(&mut self, req: Request<ReqBody>) -> ResponseFuture<S::Future, S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Send + 'static,
    {
        let shared = &*self.shared;
        let mode = shared.mode_for(&req);
        if mode == AuthnMode::Skip {
            return self.inner_now(req);
        }
        let attempt = shared.authenticator.authenticate(&RequestHead::from_request(&req));
        let verdict = match attempt {
            Attempt::Absent => {
                if mode == AuthnMode::Optional {
                    context::record_with(req.extensions(), "authn", Outcome::Allow, codes::ANONYMOUS, |_| {});
                    return self.inner_now(req);
                }
                return self.answer(shared.reject(&req, &AuthnError::missing()));
            }
            Attempt::Declined(e) => return self.answer(shared.reject(&req, &e)),
            Attempt::Claimed(v) => v,
        };
        let auth = match verdict.into_ready() {
            Ok(Ok(auth)) => auth,
            Ok(Err(e)) => return self.answer(shared.reject(&req, &e)),
            Err(pending) => return self.slow(req, Resume::Verdict(pending)),
        };
        for (index, hook) in shared.hooks.iter().enumerate() {
            match hook.check(&auth, &RequestHead::from_request(&req)).into_ready() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return self.answer(shared.reject(&req, &e)),
                Err(fut) => return self.slow(req, Resume::Hook { auth, index, fut }),
            }
        }
        let req = shared.accept(req, auth);
        self.inner_now(req)
    }
}

impl<S> Authn<S> {
    fn answer<F, ReqBody, ResBody>(
        &self,
        resp: Response<ResponseBody<ResBody>>,
    ) -> ResponseFuture<F, S, ReqBody, ResBody> {
        ResponseFuture {
            state: State::Ready { resp: Some(resp) },
            span: tracing::Span::none(),
        }
    }

    fn inner_now<ReqBody, ResBody>(&mut self, req: Request<ReqBody>) -> ResponseFuture<S::Future, S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        ResponseFuture {
            state: State::Inner {
                fut: self.inner.call(req),
            },
            span: tracing::Span::none(),
        }
    }

    fn slow<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
        resume: Resume,
    ) -> ResponseFuture<S::Future, S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
        ReqBody: Send + 'static,
        ResBody: Send + 'static,
    {
        // The service made ready by `poll_ready` goes into the future; a fresh clone stays (tower's rule for
        // services that are called later).
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Authenticating {
                auth: Box::pin(slow_path(Arc::clone(&self.shared), req, resume)),
                inner: Some(ready),
            },
            span: tracing::Span::none(),
        }
    }
}
