//! The extension points: [`Authenticator`], [`AuthnChain`], [`PostVerify`], [`AuthnFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, HeaderMap, Method, Request, Uri};
use msec_core::Principal;

use crate::error::AuthnError;

/// A borrowed view of a request's head: what authenticators and hooks may look at.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers (gRPC metadata are headers too).
    pub headers: &'a HeaderMap,
    /// The extensions (`Arc<PeerIdentity>` from the TLS layer, `ClientAddr`, ...).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `req`.
    pub fn from_request<B>(req: &'a Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }

    /// The head of request parts.
    pub fn from_parts(parts: &'a http::request::Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

/// A successful authentication.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Authenticated {
    /// Who the request acts for.
    pub principal: Arc<Principal>,
    /// True when the result came from a cache of earlier verifications.
    pub cached: bool,
    /// True when the result is an answer kept past its freshness because the authority that gives fresh ones
    /// could not be reached (introspection's `serve_stale_on_outage`). The audit record's authn decision says
    /// `"stale":"true"`.
    pub stale: bool,
}

impl Authenticated {
    /// A fresh (uncached) authentication of `principal`.
    pub fn new(principal: Arc<Principal>) -> Self {
        Self {
            principal,
            cached: false,
            stale: false,
        }
    }

    /// `principal` from an answer kept past its freshness (see [`stale`](Self::stale)).
    pub fn stale(principal: Arc<Principal>) -> Self {
        Self {
            principal,
            cached: true,
            stale: true,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A future that may be ready at once. Await it, or take the value synchronously with
/// [`into_ready`](Self::into_ready) when it is.
///
/// ```
/// use msec_authn::AuthnFuture;
/// let f = AuthnFuture::ready(7);
/// assert_eq!(f.into_ready().ok(), Some(7));
/// let g = AuthnFuture::pending(async { 8 });
/// assert!(g.into_ready().is_err());
/// ```
pub struct AuthnFuture<T> {
    repr: Repr<T>,
}

enum Repr<T> {
    Ready(Option<T>),
    Pending(BoxFuture<T>),
}

// `T` is never pinned: it is moved out of an `Option` when ready.
impl<T> Unpin for AuthnFuture<T> {}

impl<T> fmt::Debug for AuthnFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.repr {
            Repr::Ready(_) => "AuthnFuture::Ready",
            Repr::Pending(_) => "AuthnFuture::Pending",
        })
    }
}

impl<T> AuthnFuture<T> {
    /// A future that is ready with `value`.
    pub fn ready(value: T) -> Self {
        Self {
            repr: Repr::Ready(Some(value)),
        }
    }

    /// A future that must be awaited.
    pub fn pending(fut: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            repr: Repr::Pending(Box::pin(fut)),
        }
    }

    /// The value if it is ready, else the future back.
    pub fn into_ready(self) -> Result<T, Self> {
        match self.repr {
            Repr::Ready(Some(v)) => Ok(v),
            repr => Err(Self { repr }),
        }
    }

    /// True when [`into_ready`](Self::into_ready) would succeed.
    pub fn is_ready(&self) -> bool {
        matches!(self.repr, Repr::Ready(Some(_)))
    }
}

impl<T> Future for AuthnFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().repr {
            Repr::Ready(v) => match v.take() {
                Some(v) => Poll::Ready(v),
                // Polled after completion: a caller bug. Never completing is the only answer that does not
                // panic or invent a value.
                None => Poll::Pending,
            },
            Repr::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// The result of an authentication attempt.
pub type AuthnResult = Result<Authenticated, AuthnError>;

/// What an authenticator found in a request.
#[derive(Debug)]
pub enum Attempt {
    /// No credential of this authenticator's kind: the next one in the chain may look.
    Absent,
    /// A credential where this authenticator looks, but not in its format (e.g. a bearer value that is not a
    /// JWT): a later authenticator may claim it; if none does, this error is the answer.
    Declined(AuthnError),
    /// The credential is this authenticator's: its verdict decides the request.
    Claimed(AuthnFuture<AuthnResult>),
}

/// One kind of credential: JWT bearer tokens, API keys, introspected opaque tokens, ...
///
/// The pluggable part of authentication: an [`Authenticator`] finds its kind of credential in a request and
/// turns it into a principal; an [`AuthnChain`] tries several in order; [`PostVerify`] hooks run after any of
/// them succeeded (revocation lists, certificate-bound tokens, ...).
///
/// Verification is often synchronous (a cached token, a known key): [`AuthnFuture`] is a future that may already
/// be ready, so the layer answers those requests without boxing or spawning, and only awaits when an
/// authenticator must (a key refetch, an introspection call, a revocation lookup).
///
/// ```
/// use msec_authn::{Attempt, Authenticated, AuthnError, AuthnErrorKind, AuthnFuture, Authenticator, RequestHead};
/// use msec_core::Principal;
/// use std::sync::Arc;
///
/// /// Accepts `X-Demo-User: <name>` — a toy.
/// struct DemoHeader;
///
/// impl Authenticator for DemoHeader {
///     fn name(&self) -> &'static str { "demo" }
///     fn authenticate(&self, head: &RequestHead<'_>) -> Attempt {
///         let Some(v) = head.headers.get("x-demo-user") else { return Attempt::Absent };
///         match v.to_str() {
///             Ok(user) if !user.is_empty() => {
///                 let p = Principal::builder(user).build();
///                 Attempt::Claimed(AuthnFuture::ready(Ok(Authenticated::new(Arc::new(p)))))
///             }
///             _ => Attempt::Declined(AuthnError::new(AuthnErrorKind::MalformedToken, "bad demo header")),
///         }
///     }
/// }
/// # let _ = DemoHeader;
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// A short name for logs and decisions (`jwt`, `api_key`).
    fn name(&self) -> &'static str;

    /// Looks for the credential in `head` and, when present, verifies it.
    fn authenticate(&self, head: &RequestHead<'_>) -> Attempt;
}

impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn authenticate(&self, head: &RequestHead<'_>) -> Attempt {
        (**self).authenticate(head)
    }
}

/// Tries authenticators in order. The first that [claims](Attempt::Claimed) the request decides it (a bad token
/// never falls through to the next source). If none claims it, the first [`Attempt::Declined`] error is the
/// answer; if every one is [`Attempt::Absent`], so is the chain.
///
/// ```
/// use msec_authn::{AuthnChain, JwtAuthenticator, jwt::{Issuer, JwtValidator}};
/// # let validator = JwtValidator::builder()
/// #     .issuer(Issuer::new("https://id.example.com").audience("api")
/// #         .pem_key(Some("k"), jsonwebtoken::Algorithm::ES256, msec_test_support::TestKey::es256().public_pem.as_bytes()))
/// #     .build()?;
/// let chain = AuthnChain::new()
///     .with(JwtAuthenticator::new(validator.clone()))
///     .with(JwtAuthenticator::new(validator).cookie("session")?);
/// # let _ = chain;
/// # Ok::<(), msec_authn::ConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct AuthnChain {
    links: Vec<Arc<dyn Authenticator>>,
}

impl fmt::Debug for AuthnChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.links.iter().map(|a| a.name())).finish()
    }
}

impl AuthnChain {
    /// An empty chain (everything is [`Attempt::Absent`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an authenticator.
    #[must_use]
    pub fn with(mut self, a: impl Authenticator) -> Self {
        self.links.push(Arc::new(a));
        self
    }

    /// Appends a shared authenticator.
    #[must_use]
    pub fn with_shared(mut self, a: Arc<dyn Authenticator>) -> Self {
        self.links.push(a);
        self
    }
}

impl Authenticator for AuthnChain {
    fn name(&self) -> &'static str {
        "chain"
    }

    fn authenticate(&self, head: &RequestHead<'_>) -> Attempt {
        let mut declined = None;
        for a in &self.links {
            match a.authenticate(head) {
                Attempt::Absent => {}
                Attempt::Declined(e) => {
                    declined.get_or_insert(e);
                }
                claimed @ Attempt::Claimed(_) => return claimed,
            }
        }
        declined.map_or(Attempt::Absent, Attempt::Declined)
    }
}

/// A check run after an authenticator accepted a credential, on every request (cached or not): revocation
/// (`jti` deny lists), certificate-bound tokens (RFC 8705 `cnf.x5t#S256` against the TLS peer), tenant rules...
///
/// An error rejects the request with the error's kind.
pub trait PostVerify: Send + Sync + 'static {
    /// Checks `auth` for the request `head`.
    fn check(&self, auth: &Authenticated, head: &RequestHead<'_>) -> AuthnFuture<Result<(), AuthnError>>;
}

/// A synchronous [`PostVerify`] from a closure.
///
/// ```
/// use msec_authn::{post_verify_fn, AuthnError, AuthnErrorKind};
/// let no_test_tenant = post_verify_fn(|auth, _head| {
///     if auth.principal.tenant.as_deref() == Some("test") {
///         Err(AuthnError::new(AuthnErrorKind::InvalidClaim, "test tenant"))
///     } else {
///         Ok(())
///     }
/// });
/// # let _ = no_test_tenant;
/// ```
pub fn post_verify_fn<F>(f: F) -> PostVerifyFn<F>
where
    F: Fn(&Authenticated, &RequestHead<'_>) -> Result<(), AuthnError> + Send + Sync + 'static,
{
    PostVerifyFn(f)
}

/// See [`post_verify_fn`].
#[derive(Clone)]
pub struct PostVerifyFn<F>(F);

impl<F> fmt::Debug for PostVerifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostVerifyFn")
    }
}

impl<F> PostVerify for PostVerifyFn<F>
where
    F: Fn(&Authenticated, &RequestHead<'_>) -> Result<(), AuthnError> + Send + Sync + 'static,
{
    fn check(&self, auth: &Authenticated, head: &RequestHead<'_>) -> AuthnFuture<Result<(), AuthnError>> {
        AuthnFuture::ready((self.0)(auth, head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AuthnErrorKind;

    struct Fixed(&'static str, fn() -> Attempt);
    impl Authenticator for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn authenticate(&self, _: &RequestHead<'_>) -> Attempt {
            (self.1)()
        }
    }

    fn ok() -> Attempt {
        Attempt::Claimed(AuthnFuture::ready(Ok(Authenticated::new(Arc::new(
            Principal::builder("p").build(),
        )))))
    }
    fn declined() -> Attempt {
        Attempt::Declined(AuthnError::new(AuthnErrorKind::MalformedToken, "x"))
    }

    #[test]
    fn chain_order() {
        let req = Request::new(());
        let head = RequestHead::from_request(&req);
        let chain = AuthnChain::new()
            .with(Fixed("a", || Attempt::Absent))
            .with(Fixed("b", ok));
        assert!(matches!(chain.authenticate(&head), Attempt::Claimed(_)));
        let chain = AuthnChain::new().with(Fixed("a", declined)).with(Fixed("b", ok));
        assert!(matches!(chain.authenticate(&head), Attempt::Claimed(_)));
        let chain = AuthnChain::new()
            .with(Fixed("a", declined))
            .with(Fixed("b", || Attempt::Absent));
        assert!(matches!(chain.authenticate(&head), Attempt::Declined(_)));
        assert!(matches!(AuthnChain::new().authenticate(&head), Attempt::Absent));
        assert_eq!(format!("{:?}", AuthnChain::new().with(Fixed("a", ok))), "[\"a\"]");
    }

    #[test]
    fn future_ready_and_pending() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(AuthnFuture::ready(1)), 1);
        assert_eq!(rt.block_on(AuthnFuture::pending(async { 2 })), 2);
        assert!(AuthnFuture::ready(1).is_ready());
    }
}
