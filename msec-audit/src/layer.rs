//! [`AuditLayer`]: one audit event per request.
//!
//! The layer is the outermost msec layer (only the TLS serve loop is outside it). For every request it puts a
//! fresh `Arc<SecurityContext>` and an `Arc<`[`RequestAudit`]`>` in the extensions; inner layers record their
//! decisions and set the principal, client address and route on the context; the handler may add attributes.
//!
//! **When the event is written.** When the response body ends — its last frame, an error, or the body being
//! dropped (the client went away: `"aborted": true`) — not when the headers are sent. So the duration covers the
//! whole response, gRPC statuses sent in trailers are seen, and response bodies can be captured. A long-lived
//! stream (SSE, gRPC streaming) is audited when it ends, and holds its queue slot until then. A response whose
//! body is empty at the headers is written at once.
//!
//! **Request bodies** are captured by a second layer, [`CaptureLayer`] ([`AuditLayer::capture_layer`]), placed
//! innermost: it changes the request body type, which the audit layer itself does not, so that axum `from_fn`
//! middleware and every other layer in between see the usual body.
//!
//! **Levels** per route (first matching rule in declaration order, routes as in
//! [`RouteSpec`]): [`Level::None`] writes nothing — unless a layer denied the
//! request (security decisions are always audited, at metadata level, if the queue has room); [`Level::Metadata`]
//! the event without bodies; [`Level::Request`] adds the request body; [`Level::RequestResponse`] both bodies.
//! Bodies are captured as they stream through (never buffered ahead), up to a limit; JSON and form bodies are
//! redacted by the log's [`Redactor`](crate::Redactor); a body cut at the limit is not logged (it could not be
//! redacted reliably), only its size.
//!
//! **Headers** are logged by allowlist only, each value cut to 256 bytes; `Authorization`, cookies, API keys and
//! anything named like a token, secret, password or session can never be allowlisted (a config error).
//!
//! **Queue slots and overflow.** Under [`Overflow::Block`] the service reserves a queue slot in `poll_ready`
//! (backpressure before the request runs). Under [`Overflow::FailClosed`] a request that finds no slot is
//! answered `503 audit_unavailable` without running; under [`Overflow::DropAndCount`] it runs and its event is
//! counted in the next `gap` record.
//!
//! ```
//! use msec_audit::{AuditLayer, AuditLog, CheckpointSigner, Level, MemorySink};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = AuditLog::builder().signer(CheckpointSigner::ephemeral()?).start(MemorySink::new())?;
//! let audit = AuditLayer::builder(log)
//!     .rule("GET /healthz", Level::None)
//!     .rule("POST /v1/payments", Level::RequestResponse)
//!     .log_request_headers(["user-agent", "content-type"])
//!     .build()?;
//! let stack = ServiceBuilder::new()
//!     .layer(audit.clone())
//!     // ... rate limiting, authentication, authorization ...
//!     .layer(audit.capture_layer()); // innermost
//! # let _ = stack;
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use msec_core::context::{Decision, Outcome, SecurityContext};
use msec_core::identity::{ClientAddr, PeerIdentity, Principal};
use msec_core::route::{RouteError, RouteSpec, RouteTable};
use msec_core::{ReasonCode, Rejection, ResponseBody};
use pin_project_lite::pin_project;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::PollSemaphore;
use tower_layer::Layer;
use tower_service::Service;

use crate::chain::RecordKind;
use crate::detect::Observation;
use crate::event::{ActorView, Pending};
use crate::log::{AuditLog, Overflow};
use crate::util::{EventId, Timestamp, bounded, bounded_lossy};

/// The request was refused because the audit log cannot keep up (policy [`Overflow::FailClosed`]).
pub const AUDIT_UNAVAILABLE: ReasonCode = ReasonCode::new("audit_unavailable");

/// How much of a request the audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// No event (denied requests are still audited at metadata level).
    None,
    /// Who, what, when, where, outcome, decisions, allowlisted headers.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata and both bodies.
    RequestResponse,
}

/// Why an audit layer configuration is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditConfigError {
    /// A rule's route is invalid.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A header that carries credentials cannot be logged.
    #[error("header `{0}` carries credentials and is never logged")]
    SensitiveHeader(String),
    /// Not a valid header name.
    #[error("invalid header name `{0}`")]
    HeaderName(String),
}

/// True for header names that carry credentials or session state.
pub fn is_sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-xsrf-token"
    ) || [
        "token",
        "secret",
        "password",
        "passwd",
        "api-key",
        "apikey",
        "api_key",
        "session",
        "cookie",
        "credential",
        "signature",
    ]
    .iter()
    .any(|s| n.contains(s))
}

const MAX_HEADER_VALUE: usize = 256;
const MAX_PATH: usize = 512;
const MAX_DECISIONS: usize = 32;
const MAX_DETAIL: usize = 512;

struct Config {
    log: AuditLog,
    rules: RouteTable<usize>,
    levels: Vec<Level>,
    default_level: Level,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
    body_limit: usize,
    request_id_header: HeaderName,
}

/// Builder for [`AuditLayer`].
#[must_use]
pub struct AuditLayerBuilder {
    log: AuditLog,
    rules: Vec<(String, Level)>,
    default_level: Level,
    request_headers: Vec<String>,
    response_headers: Vec<String>,
    body_limit: usize,
    request_id_header: String,
}

impl fmt::Debug for AuditLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayerBuilder")
            .field("rules", &self.rules)
            .field("default_level", &self.default_level)
            .finish_non_exhaustive()
    }
}

impl AuditLayerBuilder {
    /// Adds a rule: requests matching `route` (e.g. `GET /healthz`, `/v1/{*rest}`, `grpc /shop.Orders`) are
    /// audited at `level`. The first matching rule, in the order added, wins.
    pub fn rule(mut self, route: &str, level: Level) -> Self {
        self.rules.push((route.to_owned(), level));
        self
    }

    /// The level of requests no rule matches (default [`Level::Metadata`]).
    pub fn default_level(mut self, level: Level) -> Self {
        self.default_level = level;
        self
    }

    /// The request headers to log (default `user-agent`, `content-type`, `content-length`, `x-request-id`,
    /// `traceparent`). Credentials can never be listed.
    pub fn log_request_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.request_headers = names.into_iter().map(Into::into).collect();
        self
    }

    /// The response headers to log (default `content-type`, `content-length`, `location`, `retry-after`).
    pub fn log_response_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.response_headers = names.into_iter().map(Into::into).collect();
        self
    }

    /// How many bytes of a body are captured at most (default 8 KiB).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The header carrying the request id (default `x-request-id`).
    pub fn request_id_header(mut self, name: &str) -> Self {
        self.request_id_header = name.to_owned();
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<AuditLayer, AuditConfigError> {
        let mut rules = RouteTable::new();
        let mut levels = Vec::new();
        for (i, (route, level)) in self.rules.iter().enumerate() {
            rules.insert(RouteSpec::parse(route)?, i);
            levels.push(*level);
        }
        let names = |list: &[String]| -> Result<Vec<HeaderName>, AuditConfigError> {
            list.iter()
                .map(|n| {
                    if is_sensitive_header(n) {
                        return Err(AuditConfigError::SensitiveHeader(n.clone()));
                    }
                    HeaderName::from_bytes(n.as_bytes()).map_err(|_| AuditConfigError::HeaderName(n.clone()))
                })
                .collect()
        };
        let request_id_header = HeaderName::from_bytes(self.request_id_header.as_bytes())
            .map_err(|_| AuditConfigError::HeaderName(self.request_id_header.clone()))?;
        Ok(AuditLayer {
            config: Arc::new(Config {
                log: self.log,
                rules,
                levels,
                default_level: self.default_level,
                request_headers: names(&self.request_headers)?,
                response_headers: names(&self.response_headers)?,
                body_limit: self.body_limit,
                request_id_header,
            }),
        })
    }
}

/// Audits every request into an [`AuditLog`]. See the [module docs](self). Clones share the configuration.
#[derive(Clone)]
pub struct AuditLayer {
    config: Arc<Config>,
}

impl fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayer")
            .field("log", &self.config.log)
            .field("default_level", &self.config.default_level)
            .finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// A layer with the defaults: every request at [`Level::Metadata`].
    pub fn new(log: AuditLog) -> Self {
        // The default configuration has no rules and only valid, non-sensitive header names.
        match Self::builder(log.clone()).build() {
            Ok(l) => l,
            Err(_) => Self {
                config: Arc::new(Config {
                    log,
                    rules: RouteTable::new(),
                    levels: Vec::new(),
                    default_level: Level::Metadata,
                    request_headers: Vec::new(),
                    response_headers: Vec::new(),
                    body_limit: 8192,
                    request_id_header: HeaderName::from_static("x-request-id"),
                }),
            },
        }
    }

    /// A builder.
    pub fn builder(log: AuditLog) -> AuditLayerBuilder {
        AuditLayerBuilder {
            log,
            rules: Vec::new(),
            default_level: Level::Metadata,
            request_headers: [
                "user-agent",
                "content-type",
                "content-length",
                "x-request-id",
                "traceparent",
            ]
            .map(String::from)
            .to_vec(),
            response_headers: ["content-type", "content-length", "location", "retry-after"]
                .map(String::from)
                .to_vec(),
            body_limit: 8192,
            request_id_header: "x-request-id".into(),
        }
    }

    /// The log.
    pub fn log(&self) -> &AuditLog {
        &self.config.log
    }

    /// The layer that captures request bodies; place it innermost (see [`CaptureLayer`]).
    pub fn capture_layer(&self) -> CaptureLayer {
        CaptureLayer
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            config: self.config.clone(),
            permit: None,
            poll_sem: None,
        }
    }
}

/// The service of [`AuditLayer`].
pub struct Audit<S> {
    inner: S,
    config: Arc<Config>,
    permit: Option<OwnedSemaphorePermit>,
    poll_sem: Option<PollSemaphore>,
}

impl<S: Clone> Clone for Audit<S> {
    fn clone(&self) -> Self {
        // A reserved queue slot belongs to the instance that reserved it.
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            permit: None,
            poll_sem: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Audit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Audit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: &AuditLayer) -> Self {
        layer.layer(inner)
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

/// Per-request audit state the handler can reach through the request extensions: the request id and
/// attributes to add to the event.
///
/// ```
/// # fn handler(req: http::Request<()>) {
/// if let Some(audit) = msec_audit::RequestAudit::get(req.extensions()) {
///     audit.set_attribute("order_id", 42);
/// }
/// # }
/// ```
#[derive(Debug, Default)]
pub struct RequestAudit {
    request_id: Option<String>,
    attributes: Mutex<Map<String, Value>>,
    capture: Option<Arc<Mutex<Captured>>>,
}

impl RequestAudit {
    /// The audit state of a request, when an audit layer is in front.
    pub fn get(ext: &http::Extensions) -> Option<&Arc<Self>> {
        ext.get::<Arc<Self>>()
    }

    /// The request id (from the request id header, when valid).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Adds an attribute to the request's event (redacted by name; at most 64, names cut to 128 bytes).
    pub fn set_attribute(&self, name: impl Into<String>, value: impl Into<Value>) {
        let mut g = self.attributes.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() < 64 {
            g.insert(bounded(&name.into(), 128), value.into());
        }
    }
}

/// A body capture shared between a body wrapper and the event.
#[derive(Debug, Default)]
struct Captured {
    buf: Vec<u8>,
    limit: usize,
    total: u64,
    truncated: bool,
    attached: bool,
}

impl Captured {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.limit.saturating_sub(self.buf.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// Captures request bodies for the audit events of [`Level::Request`] routes and above. Get it from
/// [`AuditLayer::capture_layer`] and place it **innermost** — right above the router or handler — because it
/// changes the request body type to [`CaptureBody<B>`] (the audit layer itself keeps the body type, so axum
/// `from_fn` middleware and other layers between the two see the usual body). Without it, such events record
/// `"body_omitted": "not_captured"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaptureLayer;

impl<S> Layer<S> for CaptureLayer {
    type Service = CaptureRequestBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CaptureRequestBody { inner }
    }
}

/// The service of [`CaptureLayer`].
#[derive(Debug, Clone)]
pub struct CaptureRequestBody<S> {
    inner: S,
}

impl<S> CaptureRequestBody<S> {
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

impl<S, B> Service<Request<B>> for CaptureRequestBody<S>
where
    S: Service<Request<CaptureBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let capture = RequestAudit::get(req.extensions()).and_then(|a| a.capture.clone());
        if let Some(c) = &capture {
            c.lock().unwrap_or_else(|e| e.into_inner()).attached = true;
        }
        self.inner.call(req.map(|inner| CaptureBody { inner, capture }))
    }
}

pin_project! {
    /// The request body below a [`CaptureLayer`]: the original, teed into the audit capture at
    /// [`Level::Request`] and above.
    pub struct CaptureBody<B> {
        #[pin]
        inner: B,
        capture: Option<Arc<Mutex<Captured>>>,
    }
}

impl<B> fmt::Debug for CaptureBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureBody")
            .field("capturing", &self.capture.is_some())
            .finish()
    }
}

impl<B> CaptureBody<B> {
    /// The original body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body<Data = Bytes>> Body for CaptureBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(f)), Some(c)) = (&frame, this.capture.as_ref())
            && let Some(d) = f.data_ref()
        {
            c.lock().unwrap_or_else(|e| e.into_inner()).push(d);
        }
        Poll::Ready(frame)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the layer learned about a request before passing it on.
struct InFlight {
    config: Arc<Config>,
    ctx: Arc<SecurityContext>,
    audit: Arc<RequestAudit>,
    permit: Option<OwnedSemaphorePermit>,
    level: Level,
    time: SystemTime,
    started: Duration,
    method: Method,
    path: String,
    grpc: bool,
    matched: Option<Arc<str>>,
    trace_id: Option<String>,
    req_headers: Vec<(usize, String)>,
    peer: Option<Arc<PeerIdentity>>,
    principal: Option<Arc<Principal>>,
    client: Option<ClientAddr>,
    req_capture: Option<Arc<Mutex<Captured>>>,
    // Filled from the response.
    status: Option<u16>,
    grpc_status: Option<i32>,
    rejection: Option<(ReasonCode, u16)>,
    resp_headers: Vec<(usize, String)>,
    resp_content_type: Option<String>,
    resp_capture: Option<Captured>,
    error: bool,
}

/// Emits the event exactly once: when finished, or when dropped (the request or response was abandoned).
struct Finisher(Option<Box<InFlight>>);

impl Drop for Finisher {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            finalize(*f, true);
        }
    }
}

impl Finisher {
    fn finish(&mut self, aborted: bool) {
        if let Some(f) = self.0.take() {
            finalize(*f, aborted);
        }
    }
}

fn header_values(headers: &HeaderMap, names: &[HeaderName]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut vals = headers.get_all(n).iter();
        let Some(first) = vals.next() else { continue };
        let mut v = bounded_lossy(first.as_bytes(), MAX_HEADER_VALUE);
        for more in vals {
            if v.len() >= MAX_HEADER_VALUE {
                break;
            }
            v.push_str(", ");
            v.push_str(&bounded_lossy(
                more.as_bytes(),
                MAX_HEADER_VALUE - v.len().min(MAX_HEADER_VALUE),
            ));
        }
        out.push((i, v));
    }
    out
}

fn valid_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic())
}

fn trace_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.as_bytes();
    // version "-" trace-id(32 hex) "-" parent-id(16 hex) "-" flags(2 hex)
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' {
        return None;
    }
    let t = &v[3..35];
    (t.iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) && t.iter().any(|&b| b != b'0'))
        .then(|| String::from_utf8_lossy(t).into_owned())
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Audit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<AuditBody<ResBody>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.config.log.overflow() == Overflow::Block && self.permit.is_none() {
            match self.config.log.try_permit() {
                Some(p) => self.permit = Some(p),
                None => {
                    let sem = self.config.log.semaphore().clone();
                    let ps = self.poll_sem.get_or_insert_with(|| PollSemaphore::new(sem));
                    // `None`: the log is shut down; the request proceeds and its event is counted as lost.
                    self.permit = ready!(ps.poll_acquire(cx));
                    if self.permit.is_none() {
                        self.poll_sem = None;
                    }
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = msec_core::layer_span!("msec.audit");
        let mut fut = span.in_scope(|| self.begin(req));
        fut.span = span;
        fut
    }
}

impl<S> Audit<S> {
    fn begin<ReqBody, ResBody>(&mut self, req: Request<ReqBody>) -> ResponseFuture<S::Future, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let config = &self.config;
        let log = &config.log;
        let (mut parts, body) = req.into_parts();
        let level = if config.levels.is_empty() {
            config.default_level
        } else {
            config
                .rules
                .matches(&parts.method, parts.uri.path())
                .map(|e| e.value)
                .min()
                .map_or(config.default_level, |i| config.levels[i])
        };
        let mut permit = self.permit.take();
        if level > Level::None && permit.is_none() && log.overflow() != Overflow::Block {
            permit = log.try_permit();
            if permit.is_none() && log.overflow() == Overflow::FailClosed {
                log.count_refused();
                let r = Rejection::unavailable(AUDIT_UNAVAILABLE, "the service cannot record this request right now");
                return ResponseFuture::ready(r.into_response(&parts.headers));
            }
        }
        if level == Level::None {
            permit = None;
        }
        let ctx = SecurityContext::new();
        parts.extensions.insert(ctx.clone());
        let request_id = parts
            .headers
            .get(&config.request_id_header)
            .map(|v| v.as_bytes())
            .filter(|v| valid_id(v))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let capture = (level >= Level::Request).then(|| {
            Arc::new(Mutex::new(Captured {
                limit: config.body_limit,
                ..Captured::default()
            }))
        });
        let audit = Arc::new(RequestAudit {
            request_id,
            attributes: Mutex::new(Map::new()),
            capture: capture.clone(),
        });
        parts.extensions.insert(audit.clone());
        #[cfg(feature = "axum")]
        let matched = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|m| Arc::<str>::from(m.as_str()));
        #[cfg(not(feature = "axum"))]
        let matched = None;
        let path = parts.uri.path();
        let inflight = InFlight {
            config: config.clone(),
            ctx,
            audit,
            permit,
            level,
            time: log.clock().now(),
            started: log.clock().monotonic(),
            method: parts.method.clone(),
            path: bounded(path, MAX_PATH),
            grpc: msec_core::grpc::is_grpc(&parts.headers),
            matched,
            trace_id: trace_id(&parts.headers),
            req_headers: if level > Level::None {
                header_values(&parts.headers, &config.request_headers)
            } else {
                Vec::new()
            },
            peer: parts.extensions.get::<Arc<PeerIdentity>>().cloned(),
            principal: parts.extensions.get::<Arc<Principal>>().cloned(),
            client: ClientAddr::from_extensions(&parts.extensions),
            req_capture: capture.clone(),
            status: None,
            grpc_status: None,
            rejection: None,
            resp_headers: Vec::new(),
            resp_content_type: None,
            resp_capture: None,
            error: false,
        };
        let req = Request::from_parts(parts, body);
        ResponseFuture {
            kind: Kind::Inner {
                future: self.inner.call(req),
                finisher: Finisher(Some(Box::new(inflight))),
            },
            span: tracing::Span::none(),
        }
    }
}

pin_project! {
    /// The future of [`Audit`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F, finisher: Finisher },
        Ready { response: Option<Response<ResponseBody<AuditBody<B>>>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn ready(response: Response<ResponseBody<AuditBody<B>>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
            span: tracing::Span::none(),
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("audit::ResponseFuture")
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<AuditBody<B>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match this.kind.project() {
            KindProj::Ready { response } => Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                // Polled after completion: answer an empty 500 rather than panic on a request path.
                let mut r = Response::new(ResponseBody::empty());
                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                r
            }))),
            KindProj::Inner { future, finisher } => match ready!(future.poll(cx)) {
                Err(e) => {
                    if let Some(f) = finisher.0.as_mut() {
                        f.error = true;
                    }
                    finisher.finish(false);
                    Poll::Ready(Err(e))
                }
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let mut fin = Finisher(finisher.0.take());
                    if let Some(f) = fin.0.as_mut() {
                        observe_response(f, &parts);
                    }
                    let end = body.is_end_stream();
                    if end {
                        fin.finish(false);
                    }
                    Poll::Ready(Ok(Response::from_parts(
                        parts,
                        ResponseBody::new(AuditBody {
                            inner: body,
                            finisher: fin,
                        }),
                    )))
                }
            },
        }
    }
}

fn observe_response(f: &mut InFlight, parts: &http::response::Parts) {
    f.status = Some(parts.status.as_u16());
    if let Some(r) = parts.extensions.get::<Rejection>() {
        f.rejection = Some((r.code(), r.status().as_u16()));
    }
    if let Some(g) = parts.headers.get("grpc-status") {
        f.grpc_status = std::str::from_utf8(g.as_bytes()).ok().and_then(|s| s.parse().ok());
    }
    if f.level > Level::None {
        f.resp_headers = header_values(&parts.headers, &f.config.response_headers);
    }
    if f.level >= Level::RequestResponse {
        f.resp_content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| bounded(s, 128));
        f.resp_capture = Some(Captured {
            limit: f.config.body_limit,
            ..Captured::default()
        });
    }
}

pin_project! {
    /// The response body of [`Audit`]: the inner body, watched to the end so the event records the whole
    /// exchange (and, at [`Level::RequestResponse`], teed into the capture).
    pub struct AuditBody<B> {
        #[pin]
        inner: B,
        finisher: Finisher,
    }
}

impl<B> fmt::Debug for AuditBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditBody")
            .field("pending", &self.finisher.0.is_some())
            .finish()
    }
}

impl<B: Body<Data = Bytes>> Body for AuditBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(fr)) => {
                if let Some(f) = this.finisher.0.as_mut() {
                    if let (Some(d), Some(c)) = (fr.data_ref(), f.resp_capture.as_mut()) {
                        c.push(d);
                    }
                    if let Some(t) = fr.trailers_ref()
                        && let Some(g) = t.get("grpc-status")
                    {
                        f.grpc_status = std::str::from_utf8(g.as_bytes()).ok().and_then(|s| s.parse().ok());
                    }
                }
                if this.inner.is_end_stream() {
                    this.finisher.finish(false);
                }
            }
            Some(Err(_)) => {
                if let Some(f) = this.finisher.0.as_mut() {
                    f.error = true;
                }
                this.finisher.finish(false);
            }
            None => this.finisher.finish(false),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Serialize)]
struct RequestBody<'a> {
    kind: &'static str,
    id: EventId,
    time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    actor: &'a ActorView<'a>,
    action: ActionBody<'a>,
    outcome: OutcomeBody,
    #[serde(skip_serializing_if = "<[Decision]>::is_empty")]
    decisions: &'a [Decision],
    duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<CaptureBodyJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<CaptureBodyJson<'a>>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    attributes: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct ActionBody<'a> {
    protocol: &'static str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_method: Option<&'a str>,
}

#[derive(Serialize)]
struct OutcomeBody {
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    aborted: bool,
}

struct HeaderList<'a>(&'a [(usize, String)], &'a [HeaderName]);

impl Serialize for HeaderList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (i, v) in self.0 {
            if let Some(n) = self.1.get(*i) {
                m.serialize_entry(n.as_str(), v)?;
            }
        }
        m.end()
    }
}

#[derive(Serialize)]
struct CaptureBodyJson<'a> {
    #[serde(skip_serializing_if = "is_empty_headers")]
    headers: HeaderList<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_omitted: Option<&'static str>,
}

fn is_empty_headers(h: &HeaderList<'_>) -> bool {
    h.0.is_empty()
}

/// Turns a captured body into a redacted JSON value, or says why it was left out.
fn body_value(
    c: &Captured,
    content_type: Option<&str>,
    redactor: &crate::Redactor,
) -> (Option<Value>, Option<&'static str>) {
    if c.total == 0 {
        return (None, None);
    }
    if c.truncated {
        return (None, Some("truncated"));
    }
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") {
        match serde_json::from_slice::<Value>(&c.buf) {
            Ok(mut v) => {
                redactor.redact(&mut v);
                (Some(v), None)
            }
            Err(_) => (None, Some("invalid_json")),
        }
    } else if essence == "application/x-www-form-urlencoded" {
        (Some(redactor.redact_form(&c.buf)), None)
    } else if essence.starts_with("text/") {
        (Some(Value::from(String::from_utf8_lossy(&c.buf).into_owned())), None)
    } else {
        (None, Some("binary"))
    }
}

fn bounded_decisions(mut d: Vec<Decision>) -> Vec<Decision> {
    d.truncate(MAX_DECISIONS);
    for dec in &mut d {
        dec.details.truncate(16);
        for (_, v) in &mut dec.details {
            if v.len() > MAX_DETAIL {
                *v = bounded(v, MAX_DETAIL).into();
            }
        }
    }
    d
}

thread_local! {
    static RECORD_SIZE_HINT: Cell<usize> = const { Cell::new(1024) };
}

/// Builds and queues the event of a finished request.
fn finalize(f: InFlight, aborted: bool) {
    let decisions = bounded_decisions(f.ctx.take_decisions());
    let denied_decision = decisions.iter().rev().find(|d| d.outcome == Outcome::Deny);
    let denied = f.rejection.is_some() || denied_decision.is_some();
    let log = &f.config.log;
    if f.level == Level::None && !denied {
        return;
    }
    let mut permit = f.permit;
    if permit.is_none() {
        // A denied request on a `None` route, or a request admitted while the queue was full.
        permit = log.try_permit();
    }
    let code = f.rejection.map(|r| r.0).or_else(|| denied_decision.map(|d| d.code));
    let error = f.error
        || f.status.is_some_and(|s| s >= 500)
        || f.grpc_status.is_some_and(|g| matches!(g, 2 | 4 | 13 | 14 | 15))
        || (f.status.is_none() && aborted);
    let result = if denied {
        "denied"
    } else if error {
        "error"
    } else {
        "allowed"
    };
    msec_core::metrics::increment("msec_audit_requests_total", [("result", result)]);
    let Some(permit) = permit else {
        log.count_dropped();
        return;
    };
    let principal = f.ctx.principal().or(f.principal);
    let actor = ActorView::new(
        principal.as_deref(),
        f.peer.as_deref(),
        f.ctx.client_addr().or(f.client),
    );
    let route = f.ctx.route().or(f.matched);
    let (grpc_service, grpc_method) = if f.grpc {
        let mut it = f.path.trim_start_matches('/').splitn(2, '/');
        (it.next(), it.next())
    } else {
        (None, None)
    };
    let redactor = log.redactor();
    let level = if f.level == Level::None {
        Level::Metadata
    } else {
        f.level
    };
    let req_ct = f
        .req_headers
        .iter()
        .find(|(i, _)| f.config.request_headers.get(*i).is_some_and(|n| n == CONTENT_TYPE))
        .map(|(_, v)| v.clone());
    let request = {
        let cap = f
            .req_capture
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()));
        let (body, omitted) = match (&cap, level >= Level::Request) {
            (Some(c), true) if !c.attached => (None, Some("not_captured")),
            (Some(c), true) => body_value(c, req_ct.as_deref(), redactor),
            _ => (None, None),
        };
        let bytes = cap.as_ref().map(|c| c.total).filter(|&t| t > 0);
        (!f.req_headers.is_empty() || body.is_some() || bytes.is_some() || omitted.is_some()).then(|| CaptureBodyJson {
            headers: HeaderList(&f.req_headers, &f.config.request_headers),
            body,
            body_bytes: bytes,
            body_omitted: omitted,
        })
    };
    let response = {
        let (body, omitted) = match &f.resp_capture {
            Some(c) => body_value(c, f.resp_content_type.as_deref(), redactor),
            None => (None, None),
        };
        let bytes = f.resp_capture.as_ref().map(|c| c.total).filter(|&t| t > 0);
        (!f.resp_headers.is_empty() || body.is_some() || bytes.is_some()).then(|| CaptureBodyJson {
            headers: HeaderList(&f.resp_headers, &f.config.response_headers),
            body,
            body_bytes: bytes,
            body_omitted: omitted,
        })
    };
    let mut attributes = std::mem::take(&mut *f.audit.attributes.lock().unwrap_or_else(|e| e.into_inner()));
    redactor.redact_map(&mut attributes);
    let duration = log.clock().monotonic().saturating_sub(f.started);
    let id = EventId::new(f.time);
    let body = RequestBody {
        kind: "request",
        id,
        time: Timestamp(f.time),
        request_id: f.audit.request_id(),
        trace_id: f.trace_id.as_deref(),
        actor: &actor,
        action: ActionBody {
            protocol: if f.grpc { "grpc" } else { "http" },
            method: f.method.as_str(),
            route: route.as_deref(),
            path: &f.path,
            grpc_service,
            grpc_method,
        },
        outcome: OutcomeBody {
            result,
            status: f.status,
            grpc_status: f.grpc_status,
            code: code.map(ReasonCode::as_str),
            aborted,
        },
        decisions: &decisions,
        duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
        request,
        response,
        attributes: &attributes,
    };
    // A recycled buffer, or one sized from the last record this thread wrote, so it is not regrown on the way
    // (a record is ~1 KiB).
    let mut bytes = log.buffer(RECORD_SIZE_HINT.with(Cell::get));
    if serde_json::to_writer(&mut bytes, &body).is_err() {
        bytes.clear();
    }
    RECORD_SIZE_HINT.with(|c| c.set((bytes.len() + 128).clamp(256, 16 * 1024)));
    let observation = log.detecting().then(|| {
        let authn_failure = f.status == Some(401)
            || decisions
                .iter()
                .any(|d| d.layer == "authn" && d.outcome == Outcome::Deny);
        // The detectors read the subject of authentication failures only.
        let attempted = authn_failure
            .then(|| actor.subject.as_deref().map(str::to_owned))
            .flatten()
            .or_else(|| {
                (!authn_failure).then_some(())?;
                decisions
                    .iter()
                    .filter(|d| d.layer == "authn")
                    .find_map(|d| {
                        ["subject", "username", "key_id", "client_id"]
                            .iter()
                            .find_map(|k| d.get_detail(k))
                    })
                    .map(|s| bounded(s, 256))
            });
        Box::new(Observation {
            time: f.time,
            client_ip: actor.client.map(|c| c.ip),
            subject: attempted,
            token_id: actor.token_id.as_deref().map(str::to_owned),
            status: f.status,
            code: code.map(|c| c.as_str().to_owned()),
            authn_failure,
            event_id: Some(id),
        })
    });
    let pending = Pending {
        kind: RecordKind::Request,
        time: f.time,
        body: bytes,
        observation,
    };
    let _ = log.send(pending, permit);
}
