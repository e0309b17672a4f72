use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{Evaluation, Policy, RequestFacts};
use crate::body::ResponseBody;
use crate::context::{self, Outcome, ReasonCode, SecurityContext};
use crate::future::ResponseFuture;

/// Enforces a [`Policy`] on every request.
///
/// It reads `Arc<Principal>`, `Arc<PeerIdentity>` and [`ClientAddr`](crate::ClientAddr) from the request
/// extensions (put there by the authentication layer, the TLS serve loop and the client-IP resolver), records an
/// `authz` [`Decision`](crate::Decision) for the request, and answers refused requests itself: problem+json with
/// an RFC 6750 challenge for HTTP, a trailers-only status for gRPC.
///
/// Clones share the policy.
///
/// ```
/// use msec_core::policy::{AuthorizeLayer, Policy, Requirement};
/// use tower::ServiceBuilder;
///
/// let policy = Policy::builder()
///     .allow("hello", ["GET /hello"], Requirement::scope("hello:read"))
///     .build()?;
/// let svc = ServiceBuilder::new()
///     .layer(AuthorizeLayer::new(policy).realm("example"))
///     .service_fn(|_req: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
///     });
/// # let _ = svc;
/// # Ok::<(), msec_core::policy::PolicyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    policy: Policy,
    realm: Option<Arc<str>>,
}

impl AuthorizeLayer {
    /// A layer enforcing `policy`.
    pub fn new(policy: Policy) -> Self {
        Self { policy, realm: None }
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenges.
    #[must_use]
    pub fn realm(mut self, realm: impl Into<Arc<str>>) -> Self {
        self.realm = Some(realm.into());
        self
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            policy: self.policy.clone(),
            realm: self.realm.clone(),
        }
    }
}

/// The service of [`AuthorizeLayer`].
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    policy: Policy,
    realm: Option<Arc<str>>,
}

impl<S> Authorize<S> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: Policy) -> Self {
        Self {
            inner,
            policy,
            realm: None,
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

fn record(ext: &http::Extensions, eval: &Evaluation) {
    for name in &eval.shadow_denials {
        context::record_with(ext, "authz", Outcome::ShadowDeny, ReasonCode::POLICY_DENIED, |d| {
            d.detail("rule", name);
        });
    }
    context::record_with(ext, "authz", eval.outcome, eval.code, |d| {
        if let Some(rule) = &eval.rule {
            d.detail("rule", rule);
        }
        if let Some(route) = &eval.route {
            d.detail("route", route);
        }
        if !eval.missing_scopes.is_empty() {
            d.detail("required_scopes", eval.missing_scopes.join(" "));
        }
    });
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = crate::layer_span!("msec.authz");
        let _entered = span.enter();
        let eval = self.policy.evaluate(&RequestFacts::from_request(&req));
        if let (Some(ctx), Some(route)) = (SecurityContext::get(req.extensions()), &eval.route) {
            ctx.set_route(route.clone());
        }
        record(req.extensions(), &eval);
        match eval.rejection() {
            None => ResponseFuture::inner_in(self.inner.call(req), span.clone()),
            Some(mut rejection) => {
                if let Some(realm) = &self.realm {
                    rejection = rejection.with_realm(Cow::Owned(realm.to_string()));
                }
                ResponseFuture::ready(rejection.into_response(req.headers()))
            }
        }
    }
}
