//! [`RequirePeerLayer`]: the one-line peer allowlist, built on msec-core's policy evaluation.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use msec_core::context::{self, Outcome, ReasonCode};
use msec_core::future::ResponseFuture;
use msec_core::policy::{Policy, PolicyError, PolicyMode, RequestFacts, Requirement};
use msec_core::spiffe::{SpiffeId, TrustDomain};
use msec_core::{PeerIdentity, Rejection, ResponseBody};
use tower_layer::Layer;
use tower_service::Service;

/// The reason code recorded when a peer satisfies a [`RequirePeerLayer`].
pub const PEER_ALLOWED: ReasonCode = ReasonCode::new("peer_allowed");

#[derive(Debug, Clone)]
enum Check {
    /// A one-rule policy (`*` → the requirement), evaluated by msec-core.
    Policy(Policy),
    /// Construction failed (cannot happen for the typed constructors): refuse everything.
    DenyAll,
}

/// Requires the TLS peer to match a SPIFFE allowlist on every request that reaches it; refuses the others with
/// 403 (problem+json) or `PERMISSION_DENIED` (gRPC) and a stable code:
///
/// - `missing_peer_identity` — the request has no `Arc<PeerIdentity>` (no client certificate);
/// - `peer_not_allowed` — the peer's SPIFFE ID is not allowed (or the certificate has no SPIFFE ID).
///
/// It is msec-core's [`Requirement`] evaluated by a one-rule [`Policy`] — the same matcher as
/// [`AuthorizeLayer`](msec_core::policy::AuthorizeLayer), so a route allowlist can move into a policy file
/// unchanged. Use it on one route (axum `route_layer`, a single tonic service) or on a whole service; for
/// per-route or per-gRPC-method lists in one place, use a Policy with `PeerSpiffeId` / `PeerSpiffePrefix` /
/// `PeerTrustDomain` requirements instead. Each decision is recorded as a `tls` [`Decision`](msec_core::Decision).
///
/// ```
/// use msec_tls::RequirePeerLayer;
/// let only_orders = RequirePeerLayer::spiffe_id("spiffe://example.org/ns/prod/sa/orders".parse()?);
/// let prod = RequirePeerLayer::spiffe_prefix("example.org".parse()?, "/ns/prod");
/// let partner = RequirePeerLayer::trust_domain("partner.example".parse()?);
/// # let _ = (only_orders, prod, partner);
/// # Ok::<(), msec_core::spiffe::SpiffeIdError>(())
/// ```
///
/// Clones share the allowlist.
#[derive(Debug, Clone)]
pub struct RequirePeerLayer {
    check: Check,
    requirement: Arc<Requirement>,
}

impl RequirePeerLayer {
    /// Requires `requirement` (typically a peer requirement, or `any` / `all` of them).
    pub fn new(requirement: Requirement) -> Result<Self, PolicyError> {
        Self::with_mode(requirement, PolicyMode::Enforce)
    }

    fn with_mode(requirement: Requirement, mode: PolicyMode) -> Result<Self, PolicyError> {
        let policy = Policy::builder()
            .allow("require peer", ["*"], requirement.clone())
            .mode(mode)
            .build()?;
        Ok(Self {
            check: Check::Policy(policy),
            requirement: Arc::new(requirement),
        })
    }

    fn infallible(requirement: Requirement) -> Self {
        match Self::new(requirement.clone()) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "RequirePeerLayer: invalid requirement; refusing every request");
                Self {
                    check: Check::DenyAll,
                    requirement: Arc::new(requirement),
                }
            }
        }
    }

    /// Allows exactly this SPIFFE ID.
    pub fn spiffe_id(id: SpiffeId) -> Self {
        Self::infallible(Requirement::peer_spiffe_id(id))
    }

    /// Allows any of these SPIFFE IDs (an empty list is an error).
    pub fn spiffe_ids(ids: impl IntoIterator<Item = SpiffeId>) -> Result<Self, PolicyError> {
        Self::new(Requirement::PeerSpiffeId(ids.into_iter().collect()))
    }

    /// Allows IDs of `trust_domain` whose path is `path` or lies below it, segment-wise (`/ns/prod` covers
    /// `/ns/prod/sa/web`, not `/ns/production`).
    pub fn spiffe_prefix(trust_domain: TrustDomain, path: &str) -> Self {
        Self::infallible(Requirement::peer_spiffe_prefix(trust_domain, path))
    }

    /// Allows any workload of `trust_domain`.
    pub fn trust_domain(trust_domain: TrustDomain) -> Self {
        Self::infallible(Requirement::peer_trust_domain(trust_domain))
    }

    /// Records what would be refused (`shadow_deny`) without refusing anything.
    #[must_use]
    pub fn shadow(self) -> Self {
        match Self::with_mode(Requirement::clone(&self.requirement), PolicyMode::Shadow) {
            Ok(l) => l,
            Err(_) => self,
        }
    }

    /// The requirement enforced.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }
}

impl<S> Layer<S> for RequirePeerLayer {
    type Service = RequirePeer<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequirePeer {
            inner,
            check: self.check.clone(),
        }
    }
}

/// The service of [`RequirePeerLayer`].
#[derive(Debug, Clone)]
pub struct RequirePeer<S> {
    inner: S,
    check: Check,
}

impl<S> RequirePeer<S> {
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

fn peer_detail(d: &mut msec_core::Decision, peer: Option<&PeerIdentity>) {
    match peer.and_then(|p| p.spiffe_id.as_ref()) {
        Some(id) => {
            d.detail("peer", id.as_str().to_owned());
        }
        None if peer.is_some() => {
            d.detail("peer", "certificate without SPIFFE ID");
        }
        None => {
            d.detail("peer", "none");
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePeer<S>
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
        let span = msec_core::layer_span!("msec.peer");
        let _entered = span.enter();
        let facts = RequestFacts::from_request(&req);
        let peer = facts.peer;
        let (outcome, code, rejection) = match &self.check {
            Check::Policy(policy) => {
                let eval = policy.evaluate(&facts);
                let code = if eval.outcome == Outcome::Allow {
                    PEER_ALLOWED
                } else {
                    eval.code
                };
                (eval.outcome, code, eval.rejection())
            }
            Check::DenyAll => (
                Outcome::Deny,
                ReasonCode::PEER_NOT_ALLOWED,
                Some(Rejection::forbidden(
                    ReasonCode::PEER_NOT_ALLOWED,
                    "the calling service is not allowed to access this resource",
                )),
            ),
        };
        context::record_with(req.extensions(), "tls", outcome, code, |d| peer_detail(d, peer));
        match rejection {
            None => ResponseFuture::inner_in(self.inner.call(req), span.clone()),
            Some(r) => ResponseFuture::ready(r.into_response(req.headers())),
        }
    }
}
