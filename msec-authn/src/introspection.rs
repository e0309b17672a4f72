//! Opaque access tokens checked with OAuth 2.0 Token Introspection (RFC 7662): [`IntrospectionAuthenticator`].
//!
//! - **Client authentication** to the introspection endpoint with `client_secret_basic` (default, RFC 6749
//!   §2.3.1) or `client_secret_post`. The secret is a [`ClientSecret`]: zeroized on drop, `[REDACTED]` in `Debug`.
//! - **HTTPS only** ([`HttpConfig`] rules: webpki roots plus added roots; plain HTTP only to loopback behind
//!   [`HttpConfig::danger_allow_http_for_loopback`]). Redirects are refused: a POST carrying client credentials is
//!   never re-sent elsewhere.
//! - **A bounded cache** (quick_cache) keyed by a keyed 128-bit digest of the token (SipHash-2-4 under a random
//!   per-process key) — the cache never holds a token. A positive
//!   entry lives at most [`max_ttl`](IntrospectionBuilder::max_ttl) and never past the token's `exp`; `active:
//!   false` (and an active token this service does not accept: wrong `iss` / `aud`) is cached for the short
//!   [`negative_ttl`](IntrospectionBuilder::negative_ttl). Expiry reads the injected [`Clock`].
//! - **Single-flight**: concurrent requests with the same uncached token wait for one call, and share its outcome
//!   (including a failure: one slow endpoint does not queue N calls).
//! - **Failures**: endpoint down, timeout, a non-200 answer (including 401/403: the endpoint refused *our* client
//!   credentials, which says nothing about the caller's token), or a body that is not an RFC 7662 response →
//!   503 `introspection_unavailable` with `Retry-After`, never cached. `active: false` → 401 `token_inactive`
//!   (`error="invalid_token"`). Opt-in, [`serve_stale_on_outage`](IntrospectionBuilder::serve_stale_on_outage)
//!   bridges an outage with a token's last active answer for a bounded time (never past its `exp`).
//!
//! The response becomes a [`Principal`]: `sub` (or `client_id` when there is no `sub`) as the subject, `iss`,
//! `scope` (space-separated, or a JSON array), `client_id`, `jti`, `exp`, every member as a claim, and
//! [`AuthMethod::Introspection`]. The kind is [`PrincipalKind::Service`] when the subject is the client itself
//! (no `sub`, or `sub == client_id`), else [`PrincipalKind::User`].
//!
//! ```
//! use std::time::Duration;
//! use msec_authn::{AuthnChain, AuthnLayer, introspection::IntrospectionAuthenticator};
//!
//! let opaque = IntrospectionAuthenticator::builder("https://as.example.com/oauth2/introspect")
//!     .client_secret_basic("orders-api", "s3cr3t-from-the-vault")
//!     .issuer("https://as.example.com")
//!     .audience("orders-api")
//!     .max_ttl(Duration::from_secs(60))
//!     .build()?;
//! // JWTs go to a JwtAuthenticator earlier in the chain; opaque tokens come here.
//! let layer = AuthnLayer::new(AuthnChain::new().with(opaque));
//! # let _ = layer;
//! # Ok::<(), msec_authn::ConfigError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::BytesMut;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use msec_core::clock::{Clock, SharedClock, SystemClock};
use msec_core::{AuthMethod, Principal, PrincipalKind};
use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use crate::authenticator::{Attempt, Authenticated, Authenticator, AuthnFuture, AuthnResult, RequestHead};
use crate::cache::{Digest, digest};
use crate::error::{AuthnError, AuthnErrorKind, ConfigError};
use crate::keys::HttpConfig;
use crate::keys::http::{Fetcher, error_chain};
use crate::source::{Extracted, TokenSource};
use crate::util::sanitize;

/// An OAuth client secret: zeroized when dropped, `[REDACTED]` in `Debug`, read only through
/// [`expose_secret`](Self::expose_secret).
///
/// ```
/// use msec_authn::introspection::ClientSecret;
/// let s = ClientSecret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "ClientSecret([REDACTED])");
/// assert_eq!(s.expose_secret(), "hunter2");
/// ```
#[derive(Clone)]
pub struct ClientSecret(Zeroizing<String>);

impl ClientSecret {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The secret itself. Greppable on purpose.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([REDACTED])")
    }
}

impl From<String> for ClientSecret {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for ClientSecret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// How the resource server authenticates to the introspection endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

#[derive(Debug, Clone)]
struct ClientAuth {
    method: ClientAuthMethod,
    client_id: String,
    secret: ClientSecret,
}

/// Which bearer tokens the [`IntrospectionAuthenticator`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenSelection {
    /// Only tokens that are not shaped like a compact JWS (three base64url segments): those are
    /// [declined](Attempt::Declined) and left to a [`JwtAuthenticator`](crate::JwtAuthenticator) in the same
    /// [`AuthnChain`](crate::AuthnChain), in either order. The default.
    #[default]
    Opaque,
    /// Every bearer token, JWT-shaped or not (an authorization server whose access tokens are JWTs this service
    /// cannot verify locally).
    All,
}

/// Builder for [`IntrospectionAuthenticator`]; see [`IntrospectionAuthenticator::builder`].
#[must_use]
pub struct IntrospectionBuilder {
    endpoint: String,
    client: Option<ClientAuth>,
    http: HttpConfig,
    issuer: Option<String>,
    audiences: Vec<String>,
    cache_capacity: usize,
    max_ttl: Duration,
    negative_ttl: Duration,
    stale_on_outage: Duration,
    leeway: Duration,
    tokens: TokenSelection,
    sources: Vec<TokenSource>,
    clock: SharedClock,
    max_token_bytes: usize,
}

/// The longest [`IntrospectionBuilder::serve_stale_on_outage`] accepts.
pub const MAX_STALE_ON_OUTAGE: Duration = Duration::from_secs(3600);

impl fmt::Debug for IntrospectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionBuilder")
            .field("endpoint", &self.endpoint)
            .field("client_auth", &self.client.as_ref().map(|c| (c.method, &c.client_id)))
            .field("http", &self.http)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("cache_capacity", &self.cache_capacity)
            .field("max_ttl", &self.max_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("stale_on_outage", &self.stale_on_outage)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl IntrospectionBuilder {
    /// Authenticates with `client_secret_basic` (HTTP Basic).
    pub fn client_secret_basic(mut self, client_id: impl Into<String>, secret: impl Into<ClientSecret>) -> Self {
        self.client = Some(ClientAuth {
            method: ClientAuthMethod::ClientSecretBasic,
            client_id: client_id.into(),
            secret: secret.into(),
        });
        self
    }

    /// Authenticates with `client_secret_post` (credentials in the form body).
    pub fn client_secret_post(mut self, client_id: impl Into<String>, secret: impl Into<ClientSecret>) -> Self {
        self.client = Some(ClientAuth {
            method: ClientAuthMethod::ClientSecretPost,
            client_id: client_id.into(),
            secret: secret.into(),
        });
        self
    }

    /// The HTTP client settings (timeouts, extra roots, the loopback danger switch). Defaults: connect timeout
    /// 2 s, total timeout 3 s, responses up to 64 KiB, HTTPS only.
    pub fn http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// Requires the response's `iss` to be `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Accepts tokens whose `aud` (a string or an array) contains `audience`. Once one audience is set, a response
    /// without a matching `aud` is refused (`audience_mismatch`). None set: `aud` is not checked.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The most tokens the cache holds (default 10 000).
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }

    /// The longest an active answer is reused (default 60 s; never past the token's `exp`). A token revoked at
    /// the authorization server stays usable here for at most this long. Zero disables positive caching.
    pub fn max_ttl(mut self, d: Duration) -> Self {
        self.max_ttl = d;
        self
    }

    /// How long an `active: false` answer (or a refused `iss` / `aud`) is reused (default 5 s). Zero disables
    /// negative caching.
    pub fn negative_ttl(mut self, d: Duration) -> Self {
        self.negative_ttl = d;
        self
    }

    /// While the endpoint is failing (down, timing out, a non-200 or unreadable answer), keeps accepting a
    /// token whose *active* answer expired from the cache at most `max_stale` ago — never past the token's
    /// `exp` — instead of answering 503. Off (zero) by default; at most [`MAX_STALE_ON_OUTAGE`] (1 hour).
    ///
    /// This is RFC 5861's `stale-if-error` for introspection: an outage of the authorization server no longer
    /// locks out users who were already working, at a price: **a token revoked at the authorization server
    /// stays usable for up to `max_ttl + max_stale` while the endpoint is down**. Tokens never seen (or seen
    /// inactive) still get 503. Each stale answer is logged at `warn` and counted in
    /// `msec_authn_introspection_calls_total{result="stale"}`. Needs positive caching (`max_ttl` above zero).
    ///
    /// ```
    /// use std::time::Duration;
    /// use msec_authn::introspection::IntrospectionAuthenticator;
    ///
    /// let opaque = IntrospectionAuthenticator::builder("https://as.example.com/oauth2/introspect")
    ///     .client_secret_basic("orders-api", "s3cr3t-from-the-vault")
    ///     .max_ttl(Duration::from_secs(60))
    ///     .serve_stale_on_outage(Duration::from_secs(300))
    ///     .build()?;
    /// # let _ = opaque;
    /// # Ok::<(), msec_authn::ConfigError>(())
    /// ```
    pub fn serve_stale_on_outage(mut self, max_stale: Duration) -> Self {
        self.stale_on_outage = max_stale;
        self
    }

    /// Clock skew tolerated when checking `exp` / `nbf` of the response (default 30 s).
    pub fn leeway(mut self, d: Duration) -> Self {
        self.leeway = d;
        self
    }

    /// Which tokens to take (default [`TokenSelection::Opaque`]).
    pub fn tokens(mut self, tokens: TokenSelection) -> Self {
        self.tokens = tokens;
        self
    }

    /// Replaces where tokens are read from (default `Authorization: Bearer`).
    pub fn sources<I: IntoIterator<Item = TokenSource>>(mut self, sources: I) -> Self {
        self.sources = sources.into_iter().collect();
        self
    }

    /// The largest token accepted, in bytes (default 4 KiB); larger ones are refused before hashing.
    pub fn max_token_bytes(mut self, n: usize) -> Self {
        self.max_token_bytes = n;
        self
    }

    /// The clock for cache expiry and the `exp` / `nbf` checks (default the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the authenticator (no network call).
    pub fn build(self) -> Result<IntrospectionAuthenticator, ConfigError> {
        let endpoint = self.http.check_url(&self.endpoint)?;
        let client = self.client.ok_or(ConfigError::InvalidSetting(
            "introspection client authentication",
            "call client_secret_basic or client_secret_post (RFC 7662 §2.1 requires it)",
        ))?;
        if client.client_id.is_empty() || client.secret.expose_secret().is_empty() {
            return Err(ConfigError::InvalidSetting(
                "introspection client authentication",
                "client id and secret must not be empty",
            ));
        }
        if self.cache_capacity == 0 {
            return Err(ConfigError::InvalidSetting("cache_capacity", "must be at least 1"));
        }
        if self.max_token_bytes == 0 {
            return Err(ConfigError::InvalidSetting("max_token_bytes", "must be at least 1"));
        }
        if self.stale_on_outage > MAX_STALE_ON_OUTAGE {
            return Err(ConfigError::InvalidSetting(
                "serve_stale_on_outage",
                "must be at most 1 hour",
            ));
        }
        if self.sources.is_empty() {
            return Err(ConfigError::InvalidSource("no token source".into()));
        }
        let basic = match client.method {
            ClientAuthMethod::ClientSecretBasic => {
                let raw = Zeroizing::new(format!(
                    "{}:{}",
                    form_encode(&client.client_id),
                    form_encode(client.secret.expose_secret())
                ));
                let b64 = Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
                ));
                let mut v = HeaderValue::from_str(&b64).map_err(|_| {
                    ConfigError::InvalidSetting("introspection client authentication", "invalid credentials")
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            ClientAuthMethod::ClientSecretPost => None,
        };
        let fetcher = self.http.build_with_redirects(false)?;
        Ok(IntrospectionAuthenticator {
            inner: Arc::new(Inner {
                endpoint,
                fetcher,
                client,
                basic,
                issuer: self.issuer,
                audiences: self.audiences,
                cache: quick_cache::sync::Cache::new(self.cache_capacity),
                inflight: Mutex::new(HashMap::new()),
                max_ttl: self.max_ttl,
                negative_ttl: self.negative_ttl,
                stale_on_outage: self.stale_on_outage,
                leeway: self.leeway,
                tokens: self.tokens,
                sources: self.sources,
                clock: self.clock,
                max_token_bytes: self.max_token_bytes,
            }),
        })
    }
}

/// Accepts opaque bearer tokens by asking the authorization server's introspection endpoint (RFC 7662). See
/// the [module docs](self) for the cache, single-flight and failure rules.
///
/// Clones share the cache and the HTTP client.
#[derive(Clone)]
pub struct IntrospectionAuthenticator {
    inner: Arc<Inner>,
}

#[derive(Clone)]
enum Cached {
    Active {
        principal: Arc<Principal>,
        /// Monotonic deadline: min(max TTL, `exp` - now) from the time of the answer, so one clock read per hit.
        until: Duration,
        /// Monotonic deadline for serving it while the endpoint fails: min(max TTL + max stale, `exp` - now);
        /// equal to `until` when stale answers are off.
        stale_until: Duration,
    },
    Refused {
        kind: AuthnErrorKind,
        until: Duration,
    },
}

type Outcome = Result<Authenticated, AuthnError>;

struct Inner {
    endpoint: Url,
    fetcher: Fetcher,
    client: ClientAuth,
    basic: Option<HeaderValue>,
    issuer: Option<String>,
    audiences: Vec<String>,
    cache: quick_cache::sync::Cache<Digest, Cached>,
    inflight: Mutex<HashMap<Digest, Arc<OnceCell<Outcome>>>>,
    max_ttl: Duration,
    negative_ttl: Duration,
    stale_on_outage: Duration,
    leeway: Duration,
    tokens: TokenSelection,
    sources: Vec<TokenSource>,
    clock: SharedClock,
    max_token_bytes: usize,
}

impl fmt::Debug for IntrospectionAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("IntrospectionAuthenticator")
            .field("endpoint", &i.endpoint.as_str())
            .field("client_auth", &i.client.method)
            .field("client_id", &i.client.client_id)
            .field("issuer", &i.issuer)
            .field("audiences", &i.audiences)
            .field("cached", &i.cache.len())
            .field("max_ttl", &i.max_ttl)
            .field("negative_ttl", &i.negative_ttl)
            .field("tokens", &i.tokens)
            .finish_non_exhaustive()
    }
}

impl IntrospectionAuthenticator {
    /// Starts a builder for the introspection endpoint `endpoint` (an `https://` URL).
    pub fn builder(endpoint: impl Into<String>) -> IntrospectionBuilder {
        IntrospectionBuilder {
            endpoint: endpoint.into(),
            client: None,
            http: HttpConfig::new()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(3))
                .max_response_bytes(64 * 1024),
            issuer: None,
            audiences: Vec::new(),
            cache_capacity: 10_000,
            max_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            stale_on_outage: Duration::ZERO,
            leeway: Duration::from_secs(30),
            tokens: TokenSelection::Opaque,
            sources: vec![TokenSource::bearer()],
            clock: Arc::new(SystemClock),
            max_token_bytes: 4096,
        }
    }

    /// The number of cached answers (positive and negative, including expired ones not yet evicted).
    pub fn cached_len(&self) -> usize {
        self.inner.cache.len()
    }

    /// Forgets every cached answer (e.g. after a revocation event from the authorization server).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// Introspects `token` directly (cache and single-flight included), outside a request.
    pub async fn introspect(&self, token: &str) -> AuthnResult {
        if token.len() > self.inner.max_token_bytes {
            return Err(too_large());
        }
        let d = digest(token.as_bytes());
        if let Some(hit) = self.inner.cached(&d) {
            return hit;
        }
        if !is_b64token(token.as_bytes()) {
            return Err(malformed());
        }
        Arc::clone(&self.inner)
            .introspect(d, Zeroizing::new(token.to_owned()))
            .await
    }
}

fn too_large() -> AuthnError {
    AuthnError::new(
        AuthnErrorKind::TokenTooLarge,
        "opaque token larger than max_token_bytes",
    )
}

fn malformed() -> AuthnError {
    AuthnError::new(
        AuthnErrorKind::MalformedToken,
        "bearer value is not an RFC 6750 b64token",
    )
}

impl Authenticator for IntrospectionAuthenticator {
    fn name(&self) -> &'static str {
        "introspection"
    }

    fn authenticate(&self, head: &RequestHead<'_>) -> Attempt {
        let inner = &*self.inner;
        for source in &inner.sources {
            let raw = match source.extract(head) {
                Extracted::None => continue,
                Extracted::Malformed(why) => {
                    return Attempt::Declined(AuthnError::new(AuthnErrorKind::MalformedToken, why));
                }
                Extracted::Found(raw) => raw,
            };
            if raw.len() > inner.max_token_bytes {
                return Attempt::Declined(too_large());
            }
            // The cache first: a JWT-shaped token is never cached under `Opaque`, so a hit is always ours.
            let d = digest(raw);
            if let Some(hit) = inner.cached(&d) {
                return Attempt::Claimed(AuthnFuture::ready(hit));
            }
            if inner.tokens == TokenSelection::Opaque && is_jws_shaped(raw) {
                return Attempt::Declined(AuthnError::new(
                    AuthnErrorKind::MalformedToken,
                    "a JWT, not an opaque token",
                ));
            }
            if !is_b64token(raw) {
                return Attempt::Declined(malformed());
            }
            // b64token is ASCII.
            let token = Zeroizing::new(String::from_utf8_lossy(raw).into_owned());
            let inner = Arc::clone(&self.inner);
            return Attempt::Claimed(AuthnFuture::pending(inner.introspect(d, token)));
        }
        Attempt::Absent
    }
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(raw: &[u8]) -> bool {
    let body = raw.iter().rposition(|&b| b != b'=').map_or(&raw[..0], |i| &raw[..=i]);
    !body.is_empty()
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// Three base64url segments separated by two dots (the shape of a compact JWS).
fn is_jws_shaped(raw: &[u8]) -> bool {
    let mut dots = 0usize;
    for &b in raw {
        match b {
            b'.' => dots += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            _ => return false,
        }
    }
    dots == 2
}

/// `application/x-www-form-urlencoded` for one value (unreserved characters kept, everything else `%XX`).
fn form_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// Why a call to the endpoint produced no RFC 7662 answer.
enum CallError {
    Transport(String),
    Timeout,
    Status(u16),
    TooLarge,
    Invalid(&'static str),
}

impl CallError {
    fn detail(&self) -> String {
        match self {
            Self::Transport(e) => format!("introspection endpoint unreachable: {e}"),
            Self::Timeout => "introspection endpoint timed out".into(),
            Self::Status(401 | 403) => "introspection endpoint refused our client credentials".into(),
            Self::Status(s) => format!("introspection endpoint answered HTTP {s}"),
            Self::TooLarge => "introspection response too large".into(),
            Self::Invalid(why) => format!("invalid introspection response: {why}"),
        }
    }

    fn metric(&self) -> &'static str {
        match self {
            Self::Transport(_) => "transport",
            Self::Timeout => "timeout",
            Self::Status(401 | 403) => "client_auth",
            Self::Status(_) => "status",
            Self::TooLarge | Self::Invalid(_) => "invalid",
        }
    }
}

/// Removes the single-flight cell once its last waiter is gone (done or cancelled).
struct FlightGuard<'a> {
    inner: &'a Inner,
    digest: Digest,
    cell: Arc<OnceCell<Outcome>>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.inner.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        // The map and this guard hold the last two references: nobody else waits on this flight.
        if map.get(&self.digest).is_some_and(|c| Arc::ptr_eq(c, &self.cell)) && Arc::strong_count(&self.cell) <= 2 {
            map.remove(&self.digest);
        }
    }
}

impl Inner {
    /// A live cache entry for `d` (expired ones are removed).
    fn cached(&self, d: &Digest) -> Option<AuthnResult> {
        let entry = self.cache.get(d)?;
        let mono = self.clock.monotonic();
        match entry {
            Cached::Active {
                principal,
                until,
                stale_until,
            } => {
                if mono < until {
                    return Some(Ok(Authenticated {
                        principal,
                        cached: true,
                        stale: false,
                    }));
                }
                if mono < stale_until {
                    // Kept for an outage; a fresh answer is needed now.
                    return None;
                }
            }
            Cached::Refused { kind, until } => {
                if mono < until {
                    return Some(Err(AuthnError::new(kind, "cached introspection answer")));
                }
            }
        }
        self.cache.remove(d);
        None
    }

    async fn introspect(self: Arc<Self>, d: Digest, token: Zeroizing<String>) -> AuthnResult {
        let cell = {
            let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(d).or_insert_with(|| Arc::new(OnceCell::new())))
        };
        let guard = FlightGuard {
            inner: &self,
            digest: d,
            cell,
        };
        let outcome = guard
            .cell
            .get_or_init(|| async {
                // A flight that finished just before this one started may have filled the cache.
                if let Some(hit) = self.cached(&d) {
                    return hit;
                }
                self.call_and_cache(d, &token).await
            })
            .await
            .clone();
        drop(guard);
        outcome
    }

    /// The active answer kept for `d` past its freshness, if the endpoint's failure may be bridged with it.
    fn stale(&self, d: &Digest, failure: &str) -> Option<Authenticated> {
        if self.stale_on_outage.is_zero() {
            return None;
        }
        match self.cache.get(d)? {
            Cached::Active {
                principal, stale_until, ..
            } if self.clock.monotonic() < stale_until => {
                metrics::counter!("msec_authn_introspection_calls_total", "result" => "stale").increment(1);
                tracing::warn!(
                    endpoint = %self.endpoint,
                    error = %failure,
                    subject = %principal.subject,
                    "msec-authn: introspection failed; serving the last active answer (serve_stale_on_outage)"
                );
                Some(Authenticated::stale(principal))
            }
            _ => None,
        }
    }

    async fn call_and_cache(&self, d: Digest, token: &str) -> Outcome {
        let body = match self.call(token).await {
            Ok(body) => body,
            Err(e) => {
                metrics::counter!("msec_authn_introspection_calls_total", "result" => e.metric()).increment(1);
                let detail = e.detail();
                tracing::warn!(endpoint = %self.endpoint, error = %detail, "msec-authn: introspection failed");
                if let Some(p) = self.stale(&d, &detail) {
                    return Ok(p);
                }
                return Err(AuthnError::new(AuthnErrorKind::IntrospectionUnavailable, detail));
            }
        };
        let now = self.clock.now();
        let mono = self.clock.monotonic();
        match self.evaluate(body, now) {
            Ok((principal, exp)) => {
                metrics::counter!("msec_authn_introspection_calls_total", "result" => "active").increment(1);
                let left = exp.map(|e| e.duration_since(now).unwrap_or_default());
                let bound = |d: Duration| left.map_or(d, |l| d.min(l));
                let ttl = bound(self.max_ttl);
                if !ttl.is_zero() {
                    let stale = bound(self.max_ttl.saturating_add(self.stale_on_outage));
                    self.cache.insert(
                        d,
                        Cached::Active {
                            principal: Arc::clone(&principal),
                            until: mono.saturating_add(ttl),
                            stale_until: mono.saturating_add(stale),
                        },
                    );
                }
                Ok(Authenticated::new(principal))
            }
            Err(e) if e.kind() == AuthnErrorKind::IntrospectionUnavailable => {
                metrics::counter!("msec_authn_introspection_calls_total", "result" => "invalid").increment(1);
                tracing::warn!(endpoint = %self.endpoint, error = %e.detail(), "msec-authn: introspection failed");
                match self.stale(&d, e.detail()) {
                    Some(p) => Ok(p),
                    None => Err(e),
                }
            }
            Err(e) => {
                let result = if e.kind() == AuthnErrorKind::TokenInactive {
                    "inactive"
                } else {
                    "refused"
                };
                metrics::counter!("msec_authn_introspection_calls_total", "result" => result).increment(1);
                if !self.negative_ttl.is_zero() {
                    self.cache.insert(
                        d,
                        Cached::Refused {
                            kind: e.kind(),
                            until: mono.saturating_add(self.negative_ttl),
                        },
                    );
                }
                Err(e)
            }
        }
    }

    /// One POST to the endpoint; the parsed JSON object of a 200 answer.
    async fn call(&self, token: &str) -> Result<Map<String, Value>, CallError> {
        let mut form = Zeroizing::new(String::with_capacity(token.len() + 64));
        form.push_str("token=");
        form.push_str(&form_encode(token));
        form.push_str("&token_type_hint=access_token");
        if self.client.method == ClientAuthMethod::ClientSecretPost {
            form.push_str("&client_id=");
            form.push_str(&form_encode(&self.client.client_id));
            form.push_str("&client_secret=");
            form.push_str(&Zeroizing::new(form_encode(self.client.secret.expose_secret())));
        }
        let mut req = self
            .fetcher
            .client()
            .post(self.endpoint.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.as_bytes().to_vec());
        if let Some(basic) = &self.basic {
            req = req.header(AUTHORIZATION, basic.clone());
        }
        let map_err = |e: reqwest::Error| {
            if e.is_timeout() {
                CallError::Timeout
            } else {
                CallError::Transport(error_chain(&e))
            }
        };
        let mut resp = req.send().await.map_err(map_err)?;
        if resp.status() != StatusCode::OK {
            return Err(CallError::Status(resp.status().as_u16()));
        }
        let max = self.fetcher.max_bytes();
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(CallError::TooLarge);
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_err)? {
            if body.len() + chunk.len() > max {
                return Err(CallError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(CallError::Invalid("not a JSON object")),
            Err(_) => Err(CallError::Invalid("not JSON")),
        }
    }

    /// Turns an RFC 7662 response into a principal, or the reason it is refused.
    fn evaluate(
        &self,
        m: Map<String, Value>,
        now: SystemTime,
    ) -> Result<(Arc<Principal>, Option<SystemTime>), AuthnError> {
        let err = |kind, detail: &'static str| AuthnError::new(kind, detail);
        match m.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                return Err(err(AuthnErrorKind::TokenInactive, "introspection: active is false"));
            }
            _ => {
                return Err(err(
                    AuthnErrorKind::IntrospectionUnavailable,
                    "invalid introspection response: `active` is not a boolean",
                ));
            }
        }
        let time = |name: &'static str| -> Result<Option<SystemTime>, AuthnError> {
            match m.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
                    .map(Some)
                    .ok_or_else(|| {
                        AuthnError::new(AuthnErrorKind::InvalidClaim, format!("{name} is not a valid time"))
                    }),
            }
        };
        let exp = time("exp")?;
        if exp.is_some_and(|e| e.checked_add(self.leeway).is_some_and(|e| e <= now)) {
            return Err(err(AuthnErrorKind::TokenExpired, "introspection: exp is in the past"));
        }
        if time("nbf")?.is_some_and(|n| now.checked_add(self.leeway).is_some_and(|late| n > late)) {
            return Err(err(
                AuthnErrorKind::TokenNotYetValid,
                "introspection: nbf is in the future",
            ));
        }
        let string = |name: &'static str| -> Result<Option<&str>, AuthnError> {
            match m.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(AuthnError::new(
                    AuthnErrorKind::InvalidClaim,
                    format!("{name} is not a string"),
                )),
            }
        };
        let iss = string("iss")?;
        if let Some(want) = &self.issuer
            && iss != Some(want.as_str())
        {
            return Err(AuthnError::new(
                AuthnErrorKind::IssuerMismatch,
                format!("introspection: iss {:?}", iss.map(sanitize)),
            ));
        }
        if !self.audiences.is_empty() {
            let ok = match m.get("aud") {
                Some(Value::String(a)) => self.audiences.iter().any(|w| w == a),
                Some(Value::Array(v)) => v
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.audiences.iter().any(|w| w == a)),
                _ => false,
            };
            if !ok {
                return Err(err(
                    AuthnErrorKind::AudienceMismatch,
                    "introspection: aud has no accepted audience",
                ));
            }
        }
        let sub = string("sub")?;
        let client_id = string("client_id")?;
        let jti = string("jti")?;
        let (subject, kind) = match (sub, client_id) {
            (Some(s), Some(c)) if s == c => (s, PrincipalKind::Service),
            (Some(s), _) if !s.is_empty() => (s, PrincipalKind::User),
            (None, Some(c)) if !c.is_empty() => (c, PrincipalKind::Service),
            _ => {
                return Err(err(
                    AuthnErrorKind::MissingClaim,
                    "introspection: neither sub nor client_id",
                ));
            }
        };
        let scopes: Vec<String> = match m.get("scope") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(v)) => v.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(_) => {
                return Err(err(
                    AuthnErrorKind::InvalidClaim,
                    "introspection: scope is not a string",
                ));
            }
        };
        let mut b = Principal::builder(subject)
            .kind(kind)
            .scopes(scopes)
            .auth(AuthMethod::Introspection);
        if let Some(i) = iss {
            b = b.issuer(i);
        }
        if let Some(c) = client_id {
            b = b.client_id(c);
        }
        if let Some(j) = jti {
            b = b.token_id(j);
        }
        if let Some(e) = exp {
            b = b.expires_at(e);
        }
        Ok((Arc::new(b.claims(m).build()), exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_b64token(b"abc-._~+/=="));
        assert!(!is_b64token(b"=="));
        assert!(!is_b64token(b"a=b"));
        assert!(!is_b64token(b"a b"));
        assert!(is_jws_shaped(b"eyJ.eyJ.sig"));
        assert!(!is_jws_shaped(b"opaque-token"));
        assert!(!is_jws_shaped(b"a.b.c.d"));
        assert_eq!(form_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn config_errors() {
        let b = || IntrospectionAuthenticator::builder("https://as.example.com/introspect");
        assert!(matches!(b().build(), Err(ConfigError::InvalidSetting(..))));
        assert!(b().client_secret_basic("a", "b").build().is_ok());
        assert!(matches!(
            IntrospectionAuthenticator::builder("http://as.example.com/introspect")
                .client_secret_basic("a", "b")
                .build(),
            Err(ConfigError::InsecureUrl(_))
        ));
        assert!(matches!(
            b().client_secret_post("a", "b").cache_capacity(0).build(),
            Err(ConfigError::InvalidSetting(..))
        ));
        let a = b().client_secret_post("rs", "top-secret").build().unwrap();
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("top-secret"), "{dbg}");
    }
}
