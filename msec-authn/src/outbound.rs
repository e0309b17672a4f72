//! Outbound service-to-service tokens: [`ClientCredentials`], an OAuth 2.0 client-credentials token source
//! (RFC 6749 §4.4), and [`BearerTokenLayer`], the tower layer that puts its token on outgoing requests.
//!
//! ```no_run
//! use msec_authn::outbound::{BearerTokenLayer, ClientCredentials};
//! use tower::ServiceBuilder;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tokens = ClientCredentials::builder("https://id.example.com/oauth2/token")
//!     .client_secret_basic("billing", std::env::var("BILLING_CLIENT_SECRET")?)
//!     .scope("orders:read")
//!     .audience("orders-api")
//!     .build()?;
//! let channel = tonic::transport::Channel::from_static("http://orders:50051").connect().await?;
//! let authed = ServiceBuilder::new().layer(BearerTokenLayer::new(tokens)).service(channel);
//! // let mut client = OrdersClient::new(authed);
//! # let _ = authed;
//! # Ok(()) }
//! ```
//!
//! ## Token lifecycle
//!
//! - The first caller fetches; the token is cached until `expires_in` minus a [skew](ClientCredentialsBuilder::refresh_skew)
//!   (30 s by default, at most half the lifetime), measured on an injectable [`Clock`]'s monotonic time.
//! - Refreshes are **single-flight**: one request to the token endpoint at a time, whatever the number of
//!   callers. While it is in flight, callers holding a still-valid token keep using it; callers without one wait
//!   for the result.
//! - Failures **back off** exponentially (1 s, 2 s, 4 s, ... up to 60 s by default, each wait jittered to between
//!   half and all of that so replicas do not retry in step): until the next attempt is
//!   due, callers get the last error at once, with [`retry_in`](TokenError::retry_in), and no request is made.
//!   A token that is due for refresh but not yet expired is still handed out while the endpoint is failing.
//! - [`invalidate`](ClientCredentials::invalidate) drops the cached token (after a 401 from the callee).
//!
//! ## Security
//!
//! - The token endpoint must be `https://` (plain HTTP only for loopback hosts, behind
//!   [`HttpConfig::danger_allow_http_for_loopback`]); redirects are not followed, so the client credentials go
//!   to that URL only.
//! - The client secret is zeroized on drop and printed as `[REDACTED]`; the `Authorization` values (Basic to the
//!   endpoint, Bearer to the callee) are marked sensitive, so hyper's HPACK never indexes them and `Debug`
//!   prints `Sensitive`.
//! - Error details never contain the secret or the token.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use bytes::BytesMut;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request};
use msec_core::clock::{Clock, SharedClock, SystemClock};
use msec_core::secret::SecretString;
use pin_project_lite::pin_project;
use reqwest::Url;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use zeroize::Zeroizing;

use crate::error::ConfigError;
use crate::keys::HttpConfig;
use crate::keys::http::error_chain;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded client id and secret (the RFC's preferred way).
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// What kind of failure a [`TokenError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenErrorKind {
    /// The token endpoint could not be reached: connection refused, TLS failure, timeout.
    Unreachable,
    /// The endpoint answered with a server error (5xx) or `429`.
    ServerError,
    /// The endpoint refused the request (4xx: `invalid_client`, `invalid_scope`, `unauthorized_client`, ...).
    /// Usually a configuration problem; retried with the same back-off.
    Rejected,
    /// The answer is not a usable token response (not JSON, no `access_token`, `token_type` not `Bearer`,
    /// characters not allowed in a header, a redirect, too large).
    InvalidResponse,
}

impl TokenErrorKind {
    /// A short stable name (`unreachable`, `server_error`, `rejected`, `invalid_response`), for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::ServerError => "server_error",
            Self::Rejected => "rejected",
            Self::InvalidResponse => "invalid_response",
        }
    }
}

/// Why no access token could be obtained. Free of secrets: safe to log.
///
/// [`BearerToken`] fails calls with this error (boxed); find it with `downcast_ref::<TokenError>()` on the error
/// or, through tonic, on `Status::source()`.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenError {
    kind: TokenErrorKind,
    detail: Cow<'static, str>,
    oauth_error: Option<String>,
    retry_in: Option<Duration>,
}

impl TokenError {
    fn new(kind: TokenErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            oauth_error: None,
            retry_in: None,
        }
    }

    /// The kind.
    pub fn kind(&self) -> TokenErrorKind {
        self.kind
    }

    /// What went wrong, for logs.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The OAuth `error` code the endpoint sent (`invalid_client`, ...), sanitized, if any.
    pub fn oauth_error(&self) -> Option<&str> {
        self.oauth_error.as_deref()
    }

    /// When the source is backing off: how long until it tries the endpoint again. `None` on the error of the
    /// attempt itself.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }
}

impl fmt::Debug for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenError")
            .field("kind", &self.kind)
            .field("detail", &self.detail)
            .field("oauth_error", &self.oauth_error)
            .field("retry_in", &self.retry_in)
            .finish()
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no access token from the token endpoint ({}): {}",
            self.kind.as_str(),
            self.detail
        )?;
        if let Some(e) = &self.oauth_error {
            write!(f, " (error={e})")?;
        }
        if let Some(r) = self.retry_in {
            write!(f, "; next attempt in {} ms", r.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for TokenError {}

/// An access token from a [`ClientCredentials`] source. Cheap to clone; `Debug` shows no token.
#[derive(Clone)]
pub struct AccessToken(Arc<Cached>);

struct Cached {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    scope: Option<String>,
    /// Monotonic times (the source's clock).
    refresh_at: Duration,
    expires_at: Duration,
}

impl AccessToken {
    /// The `Authorization` header value, `Bearer <token>`, marked sensitive.
    pub fn header_value(&self) -> HeaderValue {
        self.0.header.clone()
    }

    /// The token itself. Greppable on purpose.
    pub fn expose_secret(&self) -> &str {
        // The header was built from "Bearer " + a visible-ASCII token.
        std::str::from_utf8(&self.0.header.as_bytes()[BEARER.len()..]).unwrap_or_default()
    }

    /// The granted scope, when the endpoint said (`scope` of the token response).
    pub fn scope(&self) -> Option<&str> {
        self.0.scope.as_deref()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[REDACTED]")
            .field("scope", &self.0.scope)
            .finish()
    }
}

const BEARER: &str = "Bearer ";

/// Builder for [`ClientCredentials`]; see [`ClientCredentials::builder`].
#[must_use]
pub struct ClientCredentialsBuilder {
    token_url: String,
    client: Option<(ClientAuthMethod, String, SecretString)>,
    scope: Option<String>,
    audience: Option<String>,
    resources: Vec<String>,
    refresh_skew: Duration,
    default_lifetime: Duration,
    max_lifetime: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    backoff_jitter: bool,
    http: HttpConfig,
    clock: SharedClock,
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("token_url", &self.token_url)
            .field("client", &self.client.as_ref().map(|(m, id, _)| (m, id, "[REDACTED]")))
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

impl ClientCredentialsBuilder {
    /// Authenticates with `client_secret_basic` (HTTP Basic).
    pub fn client_secret_basic(mut self, client_id: impl Into<String>, secret: impl Into<SecretString>) -> Self {
        self.client = Some((ClientAuthMethod::ClientSecretBasic, client_id.into(), secret.into()));
        self
    }

    /// Authenticates with `client_secret_post` (credentials in the form body).
    pub fn client_secret_post(mut self, client_id: impl Into<String>, secret: impl Into<SecretString>) -> Self {
        self.client = Some((ClientAuthMethod::ClientSecretPost, client_id.into(), secret.into()));
        self
    }

    /// Requests `scope` (space-separated scopes, sent as the `scope` parameter).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sends an `audience` parameter (Auth0, Okta and others select the API this way).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Adds a `resource` parameter (RFC 8707 resource indicators; may be repeated).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Refreshes this long before the token expires (default 30 s; capped at half the token's lifetime).
    pub fn refresh_skew(mut self, skew: Duration) -> Self {
        self.refresh_skew = skew;
        self
    }

    /// The lifetime assumed when the response has no `expires_in` (default 5 minutes).
    pub fn default_lifetime(mut self, d: Duration) -> Self {
        self.default_lifetime = d;
        self
    }

    /// The longest a token is cached, whatever `expires_in` says (default 24 hours).
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = d;
        self
    }

    /// Back-off after failed fetches: `initial`, doubled after each further failure, at most `max` (defaults
    /// 1 s and 60 s). Each wait is jittered to between half and all of that ("equal jitter"), so replicas that
    /// failed together do not retry together; [`exact_backoff`](Self::exact_backoff) turns that off.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    /// Waits exactly the back-off delays, without jitter (for tests with a manual clock, or a single client).
    pub fn exact_backoff(mut self) -> Self {
        self.backoff_jitter = false;
        self
    }

    /// The HTTP client settings (timeouts, extra roots, size cap; HTTPS only unless
    /// [`danger_allow_http_for_loopback`](HttpConfig::danger_allow_http_for_loopback)).
    pub fn http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// The clock for expiry and back-off (tests use msec-core's `ManualClock`).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the source. Makes no request.
    pub fn build(self) -> Result<ClientCredentials, ConfigError> {
        let url = self.http.check_url(&self.token_url)?;
        let Some((method, client_id, secret)) = self.client else {
            return Err(ConfigError::InvalidSetting(
                "client credentials",
                "call client_secret_basic(..) or client_secret_post(..)",
            ));
        };
        if client_id.is_empty() {
            return Err(ConfigError::InvalidSetting("client_id", "must not be empty"));
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return Err(ConfigError::InvalidSetting(
                "backoff",
                "initial must be positive and at most max",
            ));
        }
        if self.default_lifetime.is_zero() || self.max_lifetime.is_zero() {
            return Err(ConfigError::InvalidSetting("lifetime", "must be positive"));
        }
        // Basic credentials are checked here so that a secret that cannot go in a header fails at start-up.
        if method == ClientAuthMethod::ClientSecretBasic {
            basic_header(&client_id, &secret)?;
        }
        let fetcher = self.http.build_with_redirects(false)?;
        let mut params: Vec<(&'static str, String)> = vec![("grant_type", "client_credentials".into())];
        if let Some(s) = self.scope {
            params.push(("scope", s));
        }
        if let Some(a) = self.audience {
            params.push(("audience", a));
        }
        params.extend(self.resources.into_iter().map(|r| ("resource", r)));
        Ok(ClientCredentials {
            shared: Arc::new(Shared {
                url,
                method,
                client_id,
                secret,
                params,
                refresh_skew: self.refresh_skew,
                default_lifetime: self.default_lifetime,
                max_lifetime: self.max_lifetime,
                backoff_initial: self.backoff_initial,
                backoff_max: self.backoff_max,
                backoff_jitter: self.backoff_jitter,
                client: fetcher.client().clone(),
                max_bytes: fetcher.max_bytes(),
                clock: self.clock,
                cache: ArcSwapOption::empty(),
                flight: tokio::sync::Mutex::new(Failures::default()),
            }),
        })
    }
}

fn basic_header(client_id: &str, secret: &SecretString) -> Result<HeaderValue, ConfigError> {
    let raw = Zeroizing::new(format!(
        "{}:{}",
        form_encode(client_id),
        form_encode(secret.expose_secret())
    ));
    let value = Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
    ));
    let mut v = HeaderValue::from_str(&value)
        .map_err(|_| ConfigError::InvalidSetting("client credentials", "not usable in a header"))?;
    v.set_sensitive(true);
    Ok(v)
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The consecutive failures, guarded by the single-flight lock.
#[derive(Default)]
struct Failures {
    count: u32,
    /// Monotonic time before which no request is made.
    retry_at: Duration,
    last: Option<TokenError>,
}

struct Shared {
    url: Url,
    method: ClientAuthMethod,
    client_id: String,
    secret: SecretString,
    params: Vec<(&'static str, String)>,
    refresh_skew: Duration,
    default_lifetime: Duration,
    max_lifetime: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    backoff_jitter: bool,
    client: reqwest::Client,
    max_bytes: usize,
    clock: SharedClock,
    cache: ArcSwapOption<Cached>,
    /// Single flight: held while a request to the endpoint is in flight.
    flight: tokio::sync::Mutex<Failures>,
}

/// An OAuth 2.0 client-credentials token source: fetches, caches, refreshes single-flight and backs off (see
/// the [module docs](self)).
///
/// Clones share the cache, the single-flight lock and the back-off state.
///
/// ```
/// use std::time::Duration;
/// use msec_authn::outbound::ClientCredentials;
/// let tokens = ClientCredentials::builder("https://id.example.com/oauth2/token")
///     .client_secret_post("billing", "s3cr3t-from-the-vault")
///     .resource("https://orders.example.com")
///     .refresh_skew(Duration::from_secs(60))
///     .build()?;
/// assert!(!format!("{tokens:?}").contains("s3cr3t"));
/// # Ok::<(), msec_authn::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    shared: Arc<Shared>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("ClientCredentials")
            .field("token_url", &s.url.as_str())
            .field("client_id", &s.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("method", &s.method)
            .field("params", &s.params)
            .field("refresh_skew", &s.refresh_skew)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Starts a source for the token endpoint at `token_url`.
    pub fn builder(token_url: impl Into<String>) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            token_url: token_url.into(),
            client: None,
            scope: None,
            audience: None,
            resources: Vec::new(),
            refresh_skew: Duration::from_secs(30),
            default_lifetime: Duration::from_secs(300),
            max_lifetime: Duration::from_secs(24 * 3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_jitter: true,
            http: HttpConfig::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The cached token if it is not yet due for refresh: no waiting, no request.
    pub fn cached(&self) -> Option<AccessToken> {
        let now = self.shared.clock.monotonic();
        self.shared
            .cache
            .load_full()
            .filter(|c| now < c.refresh_at)
            .map(AccessToken)
    }

    /// The header value of the cached token, if it is not due for refresh (the layer's fast path).
    fn cached_header(&self) -> Option<HeaderValue> {
        let now = self.shared.clock.monotonic();
        let guard = self.shared.cache.load();
        guard.as_ref().filter(|c| now < c.refresh_at).map(|c| c.header.clone())
    }

    fn unexpired(&self, now: Duration) -> Option<AccessToken> {
        self.shared
            .cache
            .load_full()
            .filter(|c| now < c.expires_at)
            .map(AccessToken)
    }

    /// Drops the cached token: the next call fetches a new one (e.g. after the callee answered 401). Does not
    /// reset the back-off.
    pub fn invalidate(&self) {
        self.shared.cache.store(None);
    }

    /// A valid access token: the cached one, or a new one from the endpoint (one request at a time, across all
    /// clones), or the last error while backing off.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let now = self.shared.clock.monotonic();
        let mut failures = match self.shared.flight.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // Someone is already fetching. A still-valid token does not need to wait for it.
                if let Some(t) = self.unexpired(now) {
                    return Ok(t);
                }
                self.shared.flight.lock().await
            }
        };
        // The fetch we waited for may have succeeded.
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let now = self.shared.clock.monotonic();
        if now < failures.retry_at {
            if let Some(t) = self.unexpired(now) {
                return Ok(t);
            }
            let mut e = failures
                .last
                .clone()
                .unwrap_or_else(|| TokenError::new(TokenErrorKind::Unreachable, "backing off"));
            e.retry_in = Some(failures.retry_at - now);
            return Err(e);
        }
        match self.fetch(now).await {
            Ok(cached) => {
                metrics::counter!("msec_authn_outbound_token_fetches_total", "result" => "ok").increment(1);
                let cached = Arc::new(cached);
                self.shared.cache.store(Some(Arc::clone(&cached)));
                *failures = Failures::default();
                Ok(AccessToken(cached))
            }
            Err(e) => {
                metrics::counter!("msec_authn_outbound_token_fetches_total", "result" => e.kind.as_str()).increment(1);
                failures.count = failures.count.saturating_add(1);
                let mut delay = backoff_delay(self.shared.backoff_initial, self.shared.backoff_max, failures.count);
                if self.shared.backoff_jitter {
                    delay = equal_jitter(delay, random_u64());
                }
                failures.retry_at = now.saturating_add(delay);
                failures.last = Some(e.clone());
                tracing::warn!(
                    kind = e.kind.as_str(),
                    detail = %e.detail,
                    failures = failures.count,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "msec-authn: client-credentials token fetch failed"
                );
                match self.unexpired(now) {
                    Some(t) => Ok(t),
                    None => Err(e),
                }
            }
        }
    }

    async fn fetch(&self, started: Duration) -> Result<Cached, TokenError> {
        let s = &*self.shared;
        // Sized so that the body (which may hold the secret) is written once, and zeroized after the call.
        let mut body = Zeroizing::new(String::with_capacity(1024 + s.secret.expose_secret().len() * 3));
        {
            let mut form = form_urlencoded::Serializer::new(&mut *body);
            for (k, v) in &s.params {
                form.append_pair(k, v);
            }
            if s.method == ClientAuthMethod::ClientSecretPost {
                form.append_pair("client_id", &s.client_id);
                form.append_pair("client_secret", s.secret.expose_secret());
            }
            form.finish();
        }
        let mut req = s
            .client
            .post(s.url.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if s.method == ClientAuthMethod::ClientSecretBasic {
            let h = basic_header(&s.client_id, &s.secret)
                .map_err(|_| TokenError::new(TokenErrorKind::Rejected, "client credentials not usable in a header"))?;
            req = req.header(AUTHORIZATION, h);
        }
        let mut resp = req
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| TokenError::new(TokenErrorKind::Unreachable, error_chain(&e)))?;
        let status = resp.status();
        let mut bytes = BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TokenError::new(TokenErrorKind::Unreachable, error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > s.max_bytes {
                return Err(TokenError::new(
                    TokenErrorKind::InvalidResponse,
                    format!("response larger than {} bytes", s.max_bytes),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let kind = if status.is_server_error() || status.as_u16() == 429 {
                TokenErrorKind::ServerError
            } else if status.is_redirection() {
                TokenErrorKind::InvalidResponse
            } else {
                TokenErrorKind::Rejected
            };
            let mut e = TokenError::new(kind, format!("HTTP {}", status.as_u16()));
            e.oauth_error = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(oauth_code));
            return Err(e);
        }
        self.parse(&bytes, started)
    }

    fn parse(&self, bytes: &[u8], started: Duration) -> Result<Cached, TokenError> {
        let invalid = |why: &'static str| TokenError::new(TokenErrorKind::InvalidResponse, why);
        let v: Value = serde_json::from_slice(bytes).map_err(|_| invalid("the response is not JSON"))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("no access_token in the response"))?;
        let token_type = v.get("token_type").and_then(Value::as_str).unwrap_or_default();
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(invalid("token_type is not Bearer"));
        }
        // RFC 6750 b64token: what may follow "Bearer " on the wire.
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
        {
            return Err(invalid("access_token has characters not allowed in a bearer header"));
        }
        let lifetime = match v.get("expires_in") {
            None | Some(Value::Null) => self.shared.default_lifetime,
            Some(e) => {
                // A number, or (some providers) a numeric string.
                let secs = e
                    .as_u64()
                    .or_else(|| e.as_str().and_then(|s| s.trim().parse::<u64>().ok()))
                    .filter(|s| *s > 0)
                    .ok_or_else(|| invalid("expires_in is not a positive integer"))?;
                Duration::from_secs(secs)
            }
        }
        .min(self.shared.max_lifetime);
        let skew = self.shared.refresh_skew.min(lifetime / 2);
        let mut header = HeaderValue::from_str(&format!("{BEARER}{token}"))
            .map_err(|_| invalid("access_token is not usable in a header"))?;
        header.set_sensitive(true);
        Ok(Cached {
            header,
            scope: v.get("scope").and_then(Value::as_str).map(str::to_owned),
            // Counted from when the request was sent: the token cannot have been issued earlier.
            refresh_at: started.saturating_add(lifetime - skew),
            expires_at: started.saturating_add(lifetime),
        })
    }
}

/// Half of `delay` plus a share of the other half given by `r` (uniform over `u64`): between `delay / 2` and
/// `delay`.
fn equal_jitter(delay: Duration, r: u64) -> Duration {
    let half = delay / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let extra = (u128::from(nanos) * u128::from(r) / u128::from(u64::MAX)) as u64;
    half + Duration::from_nanos(extra)
}

/// A random `u64` from the system RNG (0 should it fail: the delay is then its lower bound, never shorter).
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b)
}

fn backoff_delay(initial: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// The OAuth `error` value, if it is a plausible code: printable ASCII, at most 64 bytes.
fn oauth_code(s: &str) -> String {
    crate::util::sanitize(s)
}

/// Puts `Authorization: Bearer <token>` from a [`ClientCredentials`] source on every outgoing request of a tower
/// client: a tonic `Channel`, a hyper-util `Client`, any `Service<http::Request<B>>`.
///
/// With a cached token the header is added synchronously and the inner service's future is returned as is. When
/// a token must be fetched, the call waits for it (single-flight) and fails with a [`TokenError`] (boxed) if none
/// can be obtained; the inner service is not called then. An existing `Authorization` header is replaced.
///
/// Clones share the token source.
///
/// ```no_run
/// use msec_authn::outbound::{BearerTokenLayer, ClientCredentials};
/// use http_body_util::Full;
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
/// use tower::{Layer, ServiceExt};
///
/// # async fn run(tokens: ClientCredentials) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
/// let svc = BearerTokenLayer::new(tokens).layer(client);
/// let resp = svc.oneshot(http::Request::get("http://orders/v1/orders").body(Full::default())?).await?;
/// # let _ = resp; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BearerTokenLayer {
    source: ClientCredentials,
}

impl BearerTokenLayer {
    /// A layer attaching tokens from `source`.
    pub fn new(source: ClientCredentials) -> Self {
        Self { source }
    }
}

impl<S> Layer<S> for BearerTokenLayer {
    type Service = BearerToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerToken {
            inner,
            source: self.source.clone(),
        }
    }
}

/// The service of [`BearerTokenLayer`].
#[derive(Debug, Clone)]
pub struct BearerToken<S> {
    inner: S,
    source: ClientCredentials,
}

impl<S> BearerToken<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, source: ClientCredentials) -> Self {
        Self { inner, source }
    }

    /// A layer attaching tokens from `source`.
    pub fn layer(source: ClientCredentials) -> BearerTokenLayer {
        BearerTokenLayer::new(source)
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

type Fetching<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send + 'static>>;

pin_project! {
    /// The future of [`BearerToken`]: the inner service's future, or a token fetch followed by the inner call.
    pub struct ResponseFuture<F, R> {
        #[pin]
        state: State<F, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        Inner { #[pin] fut: F },
        Fetching { fut: Fetching<R> },
    }
}

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::Inner { .. } => "ResponseFuture::Inner",
            State::Fetching { .. } => "ResponseFuture::Fetching",
        })
    }
}

impl<F, R, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            StateProj::Fetching { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// The error a call fails with when no token could be had: the [`TokenError`], boxed. For a gRPC request with
/// the `tonic` feature, a `tonic::Status` instead — UNAUTHENTICATED when the token endpoint refused the client,
/// UNAVAILABLE otherwise — whose `source()` is the `TokenError`, so tonic clients see a meaningful code rather
/// than UNKNOWN.
fn token_failure(e: TokenError, grpc: bool) -> BoxError {
    #[cfg(feature = "tonic")]
    if grpc {
        let code = match e.kind() {
            TokenErrorKind::Rejected => tonic::Code::Unauthenticated,
            _ => tonic::Code::Unavailable,
        };
        let mut status = tonic::Status::new(code, e.to_string());
        status.set_source(Arc::new(e));
        return Box::new(status);
    }
    let _ = grpc;
    Box::new(e)
}

impl<S, B> Service<Request<B>> for BearerToken<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(h) = self.source.cached_header() {
            req.headers_mut().insert(AUTHORIZATION, h);
            return ResponseFuture {
                state: State::Inner {
                    fut: self.inner.call(req),
                },
            };
        }
        // The service made ready by `poll_ready` goes into the future; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        let grpc = msec_core::grpc::is_grpc(req.headers());
        ResponseFuture {
            state: State::Fetching {
                fut: Box::pin(async move {
                    let token = source.token().await.map_err(|e| token_failure(e, grpc))?;
                    req.headers_mut().insert(AUTHORIZATION, token.header_value());
                    inner.call(req).await.map_err(Into::into)
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let d = |n| backoff_delay(s(1), s(60), n);
        assert_eq!(
            [d(1), d(2), d(3), d(6), d(7), d(100), d(u32::MAX)],
            [s(1), s(2), s(4), s(32), s(60), s(60), s(60)]
        );
    }

    #[test]
    fn equal_jitter_stays_between_half_and_all_of_the_delay() {
        let d = Duration::from_secs(8);
        assert_eq!(equal_jitter(d, 0), Duration::from_secs(4));
        assert_eq!(equal_jitter(d, u64::MAX), d);
        let mid = equal_jitter(d, u64::MAX / 2);
        assert!(
            mid > Duration::from_millis(5_999) && mid < Duration::from_millis(6_001),
            "{mid:?}"
        );
        assert_eq!(equal_jitter(Duration::ZERO, u64::MAX), Duration::ZERO);
        assert_eq!(
            equal_jitter(Duration::MAX, u64::MAX),
            Duration::MAX / 2 + Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn config_errors() {
        let b = || ClientCredentials::builder("https://id.example.com/token");
        assert!(matches!(
            ClientCredentials::builder("http://id.example.com/token")
                .client_secret_basic("a", "b")
                .build(),
            Err(ConfigError::InsecureUrl(_))
        ));
        assert!(matches!(
            ClientCredentials::builder("http://127.0.0.1:1/token")
                .client_secret_basic("a", "b")
                .build(),
            Err(ConfigError::InsecureUrl(_))
        ));
        assert!(
            ClientCredentials::builder("http://127.0.0.1:1/token")
                .client_secret_basic("a", "b")
                .http(HttpConfig::new().danger_allow_http_for_loopback())
                .build()
                .is_ok()
        );
        assert!(matches!(b().build(), Err(ConfigError::InvalidSetting(..))));
        assert!(matches!(
            b().client_secret_post("", "x").build(),
            Err(ConfigError::InvalidSetting("client_id", _))
        ));
        assert!(matches!(
            b().client_secret_post("a", "x")
                .backoff(Duration::ZERO, Duration::from_secs(1))
                .build(),
            Err(ConfigError::InvalidSetting("backoff", _))
        ));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let b = ClientCredentials::builder("https://id.example.com/token").client_secret_basic("svc", "hunter2-xyz");
        assert!(!format!("{b:?}").contains("hunter2"));
        let c = b.build().unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let h = basic_header("svc", &SecretString::from("hunter2-xyz")).unwrap();
        assert!(h.is_sensitive());
        assert_eq!(format!("{h:?}"), "Sensitive");
    }

    #[test]
    fn parses_token_responses() {
        let clock = msec_core::clock::ManualClock::starting_now();
        let c = ClientCredentials::builder("https://id.example.com/token")
            .client_secret_basic("svc", "x")
            .refresh_skew(Duration::from_secs(30))
            .clock(clock)
            .build()
            .unwrap();
        let p = |v: serde_json::Value| c.parse(v.to_string().as_bytes(), Duration::from_secs(100));
        let ok = p(
            serde_json::json!({"access_token": "abc.def-_~+/=", "token_type": "bearer", "expires_in": 600,
            "scope": "a b"}),
        )
        .unwrap();
        assert_eq!(
            (ok.refresh_at, ok.expires_at),
            (Duration::from_secs(670), Duration::from_secs(700))
        );
        assert!(ok.header.is_sensitive());
        let t = AccessToken(Arc::new(ok));
        assert_eq!(t.expose_secret(), "abc.def-_~+/=");
        assert_eq!(t.scope(), Some("a b"));
        assert!(!format!("{t:?}").contains("abc"));
        // Short lifetimes refresh at half-life; string expires_in is accepted; no expires_in → default.
        let short = p(serde_json::json!({"access_token": "x", "token_type": "Bearer", "expires_in": "20"})).unwrap();
        assert_eq!(short.refresh_at, Duration::from_secs(110));
        let dflt = p(serde_json::json!({"access_token": "x", "token_type": "Bearer"})).unwrap();
        assert_eq!(dflt.expires_at, Duration::from_secs(400));
        for bad in [
            serde_json::json!({"token_type": "Bearer"}),
            serde_json::json!({"access_token": "", "token_type": "Bearer"}),
            serde_json::json!({"access_token": "x", "token_type": "DPoP"}),
            serde_json::json!({"access_token": "x"}),
            serde_json::json!({"access_token": "a b", "token_type": "Bearer"}),
            serde_json::json!({"access_token": "a\r\nx: y", "token_type": "Bearer"}),
            serde_json::json!({"access_token": "x", "token_type": "Bearer", "expires_in": 0}),
            serde_json::json!({"access_token": "x", "token_type": "Bearer", "expires_in": -5}),
            serde_json::json!({"access_token": "x", "token_type": "Bearer", "expires_in": "soon"}),
        ] {
            assert_eq!(
                p(bad.clone()).err().map(|e| e.kind()),
                Some(TokenErrorKind::InvalidResponse),
                "{bad}"
            );
        }
        assert_eq!(
            c.parse(b"<html>", Duration::ZERO).err().map(|e| e.kind()),
            Some(TokenErrorKind::InvalidResponse)
        );
    }
}
