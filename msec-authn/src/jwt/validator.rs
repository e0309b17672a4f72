//! [`JwtValidator`]: verifies a compact JWS access token end to end.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use msec_core::clock::{Clock, SharedClock, SystemClock};
use serde_json::Value;

use super::claims::ClaimRules;
use super::compact;
use super::issuer::{Issuer, KeySpec};
use super::mapping::ClaimMapping;
use crate::authenticator::{Authenticated, AuthnFuture, AuthnResult};
use crate::cache::{self, Digest, Entry, TokenCache};
use crate::error::{AuthnError, AuthnErrorKind, ConfigError};
use crate::keys::store::{KeyStore, RemoteSource, oidc_discovery_url, rfc8414_url};
use crate::keys::{self, HttpConfig, JwkRules, KeyFetchError, KeySet, KeyStatus, RefreshConfig, alg_name};
use crate::util::sanitize;

struct IssuerState {
    name: Arc<str>,
    algorithms: Vec<Algorithm>,
    rules: ClaimRules,
    mapping: ClaimMapping,
    keys: Arc<KeyStore>,
}

struct Inner {
    issuers: Vec<IssuerState>,
    by_iss: HashMap<Box<str>, u32>,
    max_token_bytes: usize,
    cache: Option<Arc<TokenCache>>,
    clock: SharedClock,
    // Registered once (a metrics recorder must be installed before the validator is built).
    hits: metrics::Counter,
    misses: metrics::Counter,
}

/// Verifies JWT access tokens: strict compact parsing, issuer routing by `iss`, a key bound to the header `alg`,
/// the signature (ring), then the claims; maps the claims to a [`Principal`](msec_core::Principal). Cheap to
/// clone (shared).
///
/// Verification is synchronous except when keys must be fetched (first use, an unknown `kid`): then
/// [`validate`](Self::validate) returns a pending future that waits for the one single-flight fetch.
///
/// ```
/// use jsonwebtoken::Algorithm;
/// use msec_authn::jwt::{Issuer, JwtValidator};
/// use msec_test_support::TestKey;
///
/// let key = TestKey::es256();
/// let validator = JwtValidator::builder()
///     .issuer(Issuer::new("https://id.example.com").audience("orders").jwk_set(msec_test_support::keys::jwks(&[&key])))
///     .build()?;
/// let token = key.token().iss("https://id.example.com").aud("orders").sub("alice").scope("orders:read").sign();
/// let auth = validator.validate(&token).into_ready().expect("static keys: synchronous")?;
/// assert_eq!(auth.principal.subject, "alice");
/// assert!(auth.principal.has_scope("orders:read"));
///
/// let other = key.token().iss("https://id.example.com").aud("billing").sub("alice").sign();
/// let err = validator.validate(&other).into_ready().unwrap().unwrap_err();
/// assert_eq!(err.code().as_str(), "audience_mismatch");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JwtValidator {
    inner: Arc<Inner>,
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field(
                "issuers",
                &self.inner.issuers.iter().map(|i| &*i.name).collect::<Vec<_>>(),
            )
            .field("max_token_bytes", &self.inner.max_token_bytes)
            .field("cache", &self.inner.cache)
            .finish()
    }
}

/// Why a validator could not start (see [`JwtValidatorBuilder::build_and_fetch`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An issuer's keys could not be fetched.
    #[error("keys of issuer `{issuer}`: {error}")]
    Keys {
        /// The issuer.
        issuer: String,
        /// Why the fetch failed.
        error: KeyFetchError,
    },
}

/// Builds a [`JwtValidator`].
#[must_use]
pub struct JwtValidatorBuilder {
    issuers: Vec<Issuer>,
    max_token_bytes: usize,
    cache_capacity: usize,
    clock: SharedClock,
    http: HttpConfig,
    refresh: RefreshConfig,
}

impl fmt::Debug for JwtValidatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidatorBuilder")
            .field("issuers", &self.issuers)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("cache_capacity", &self.cache_capacity)
            .field("http", &self.http)
            .field("refresh", &self.refresh)
            .finish()
    }
}

/// The result of a cache lookup.
pub(crate) enum Lookup {
    /// A cached verification.
    Hit(Authenticated),
    /// Not cached (the digest is `Some` when a cache is configured).
    Miss(Option<Digest>),
    /// Refused before any lookup (too large).
    Refused(AuthnError),
}

enum Stop {
    Fail(AuthnError),
    Fetch { issuer: u32, seen: u64 },
}

impl From<AuthnError> for Stop {
    fn from(e: AuthnError) -> Self {
        Self::Fail(e)
    }
}

fn fail(kind: AuthnErrorKind, detail: impl Into<std::borrow::Cow<'static, str>>) -> Stop {
    Stop::Fail(AuthnError::new(kind, detail))
}

impl JwtValidatorBuilder {
    /// Adds a trusted issuer.
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// The largest token accepted, checked before any parsing (default 8 KiB).
    pub fn max_token_bytes(mut self, n: usize) -> Self {
        self.max_token_bytes = n;
        self
    }

    /// How many verified tokens to remember (default 10,000; 0 disables the cache).
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }

    /// Disables the verified-token cache.
    pub fn no_cache(self) -> Self {
        self.cache_capacity(0)
    }

    /// The clock for `exp` / `nbf` / `iat` and key freshness (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A shared clock.
    pub fn shared_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How JWKS and discovery documents are fetched.
    pub fn http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// How remote keys are refreshed.
    pub fn refresh(mut self, refresh: RefreshConfig) -> Self {
        self.refresh = refresh;
        self
    }

    /// Validates the configuration and builds the validator. Static keys are ready; remote keys are fetched on
    /// first use (requests wait for that one fetch, and get `503 keys_unavailable` if it fails) — or call
    /// [`JwtValidator::fetch_keys`], or use [`build_and_fetch`](Self::build_and_fetch) to fail start instead.
    pub fn build(self) -> Result<JwtValidator, ConfigError> {
        if self.issuers.is_empty() {
            return Err(ConfigError::NoIssuer);
        }
        if self.max_token_bytes < 64 {
            return Err(ConfigError::InvalidSetting("max_token_bytes", "at least 64 bytes"));
        }
        let cache = (self.cache_capacity > 0).then(|| Arc::new(TokenCache::new(self.cache_capacity)));
        let needs_http = self.issuers.iter().any(|i| i.keys.iter().any(KeySpec::is_remote));
        let fetcher = if needs_http { Some(self.http.build()?) } else { None };
        let mut issuers = Vec::with_capacity(self.issuers.len());
        let mut by_iss = HashMap::new();
        for (idx, iss) in self.issuers.into_iter().enumerate() {
            if iss.issuer.is_empty() {
                return Err(ConfigError::EmptyIssuer);
            }
            let index = u32::try_from(idx).map_err(|_| ConfigError::InvalidSetting("issuers", "too many"))?;
            if by_iss.insert(iss.issuer.clone().into_boxed_str(), index).is_some() {
                return Err(ConfigError::DuplicateIssuer(iss.issuer));
            }
            if iss.audiences.is_empty() && !iss.any_audience {
                return Err(ConfigError::NoAudience(iss.issuer));
            }
            let algorithms = iss.allowed_algorithms();
            if algorithms.is_empty() {
                return Err(ConfigError::NoAlgorithm(iss.issuer));
            }
            let name: Arc<str> = Arc::from(iss.issuer.as_str());
            let rules = JwkRules {
                allowed: algorithms.clone(),
                rsa_default_alg: iss.rsa_default_alg,
                max_keys: iss.max_keys.max(1),
            };
            let mut store = key_store(
                &iss,
                &name,
                rules,
                fetcher.as_ref(),
                &self.http,
                self.refresh,
                &self.clock,
            )?;
            if let Some(c) = &cache {
                let c = Arc::clone(c);
                store.set_removed_hook(Arc::new(move |ids: &[u64]| c.purge_keys(ids)));
            }
            let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            issuers.push(IssuerState {
                name,
                algorithms,
                rules: ClaimRules {
                    audiences: iss.audiences,
                    any_audience: iss.any_audience,
                    leeway: secs(iss.leeway),
                    max_lifetime: iss.max_lifetime.map(secs),
                    require_exp: iss.require_exp,
                    required: iss.required,
                    typ: iss.typ,
                },
                mapping: iss.mapping,
                keys: Arc::new(store),
            });
        }
        Ok(JwtValidator {
            inner: Arc::new(Inner {
                issuers,
                by_iss,
                max_token_bytes: self.max_token_bytes,
                cache,
                clock: self.clock,
                hits: metrics::counter!("msec_authn_token_cache_total", "result" => "hit"),
                misses: metrics::counter!("msec_authn_token_cache_total", "result" => "miss"),
            }),
        })
    }

    /// [`build`](Self::build), then fetches every remote issuer's keys, failing if any fetch fails ("fail
    /// start"). The alternative — start and answer 503 until keys arrive — is plain [`build`](Self::build).
    pub async fn build_and_fetch(self) -> Result<JwtValidator, StartError> {
        let v = self.build()?;
        v.fetch_keys().await?;
        Ok(v)
    }
}

fn key_store(
    iss: &Issuer,
    name: &Arc<str>,
    rules: JwkRules,
    fetcher: Option<&keys::http::Fetcher>,
    http: &HttpConfig,
    refresh: RefreshConfig,
    clock: &SharedClock,
) -> Result<KeyStore, ConfigError> {
    let remote: Vec<&KeySpec> = iss.keys.iter().filter(|k| k.is_remote()).collect();
    if iss.keys.is_empty() {
        return Err(ConfigError::NoKeySource(iss.issuer.clone()));
    }
    if !remote.is_empty() {
        if iss.keys.len() > 1 {
            return Err(ConfigError::ConflictingKeySources(iss.issuer.clone()));
        }
        let source = match remote[0] {
            KeySpec::JwksUrl(u) => RemoteSource::Jwks(http.check_url(u)?),
            KeySpec::OidcDiscovery => RemoteSource::Discovery(http.check_url(&oidc_discovery_url(&iss.issuer))?),
            _ => RemoteSource::Discovery(rfc8414_url(&http.check_url(&iss.issuer)?)),
        };
        let fetcher = fetcher
            .cloned()
            .ok_or_else(|| ConfigError::Http("no HTTP client".into()))?;
        return Ok(KeyStore::remote(
            Arc::clone(name),
            source,
            fetcher,
            rules,
            refresh,
            Arc::clone(clock),
        ));
    }
    let mut list = Vec::new();
    let invalid = |kid: Option<&str>, reason: String| ConfigError::InvalidKey {
        kid: kid.map(str::to_owned),
        reason,
    };
    for spec in &iss.keys {
        match spec {
            KeySpec::JwkSet(doc) => {
                let (set, _) = KeySet::from_jwks(doc, &rules, None).map_err(|r| invalid(None, r))?;
                list.extend(set.keys().iter().cloned());
            }
            KeySpec::JwkSetJson(text) => {
                let doc: Value = serde_json::from_str(text).map_err(|e| invalid(None, e.to_string()))?;
                let (set, _) = KeySet::from_jwks(&doc, &rules, None).map_err(|r| invalid(None, r))?;
                list.extend(set.keys().iter().cloned());
            }
            KeySpec::Pem { kid, alg, pem } => {
                if !rules.allowed.contains(alg) {
                    return Err(invalid(
                        kid.as_deref(),
                        format!("{} is not an allowed algorithm", alg_name(*alg)),
                    ));
                }
                let k = keys::pem_key(kid.as_deref(), *alg, pem).map_err(|r| invalid(kid.as_deref(), r))?;
                list.push(Arc::new(k));
            }
            KeySpec::Hmac { kid, alg, secret } => {
                let k = keys::hmac_key(kid.as_deref(), *alg, secret.expose_secret())
                    .map_err(|r| ConfigError::InvalidHmacKey(kid.clone().unwrap_or_default(), r))?;
                if !rules.allowed.contains(alg) {
                    return Err(ConfigError::InvalidHmacKey(
                        kid.clone().unwrap_or_default(),
                        "the algorithm is not in the issuer's allowlist",
                    ));
                }
                list.push(Arc::new(k));
            }
            _ => {}
        }
    }
    if list.is_empty() {
        return Err(ConfigError::NoUsableKeys(iss.issuer.clone()));
    }
    Ok(KeyStore::fixed(Arc::clone(name), KeySet::new(list), Arc::clone(clock)))
}

impl JwtValidator {
    /// Starts a builder: 8 KiB token cap, a 10,000-entry verified-token cache, the system clock, HTTPS-only
    /// fetching with default timeouts and refresh settings.
    pub fn builder() -> JwtValidatorBuilder {
        JwtValidatorBuilder {
            issuers: Vec::new(),
            max_token_bytes: 8 * 1024,
            cache_capacity: 10_000,
            clock: Arc::new(SystemClock),
            http: HttpConfig::new(),
            refresh: RefreshConfig::new(),
        }
    }

    /// Verifies `token`. Ready at once unless keys must be fetched first.
    pub fn validate(&self, token: &str) -> AuthnFuture<AuthnResult> {
        match self.inner.lookup(token.as_bytes()) {
            Lookup::Hit(a) => AuthnFuture::ready(Ok(a)),
            Lookup::Refused(e) => AuthnFuture::ready(Err(e)),
            Lookup::Miss(digest) => self.verify(token, digest),
        }
    }

    /// The cache lookup (after the size check): a hit, or the digest to store the verification under.
    pub(crate) fn lookup(&self, token: &[u8]) -> Lookup {
        self.inner.lookup(token)
    }

    /// Full verification of a token that missed the cache.
    pub(crate) fn verify(&self, token: &str, digest: Option<Digest>) -> AuthnFuture<AuthnResult> {
        match self.inner.run(token, true, digest) {
            Ok(a) => AuthnFuture::ready(Ok(a)),
            Err(Stop::Fail(e)) => AuthnFuture::ready(Err(e)),
            Err(Stop::Fetch { issuer, seen }) => {
                let inner = Arc::clone(&self.inner);
                let token = token.to_owned();
                AuthnFuture::pending(async move {
                    let keys = Arc::clone(&inner.issuers[issuer as usize].keys);
                    keys.refetch(seen).await;
                    match inner.run(&token, false, digest) {
                        Ok(a) => Ok(a),
                        Err(Stop::Fail(e)) => Err(e),
                        Err(Stop::Fetch { .. }) => Err(AuthnError::new(AuthnErrorKind::KeysUnavailable, "no keys")),
                    }
                })
            }
        }
    }

    /// Fetches the keys of every remote issuer now (ignoring the cooldown). Fails with the first issuer whose
    /// fetch failed; the others are still fetched.
    pub async fn fetch_keys(&self) -> Result<(), StartError> {
        let mut first = None;
        for i in &self.inner.issuers {
            if !i.keys.is_remote() {
                continue;
            }
            if let Err(error) = i.keys.fetch_now().await {
                first.get_or_insert(StartError::Keys {
                    issuer: i.name.to_string(),
                    error,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Refreshes the keys of every remote issuer whose keys are past their TTL (and whose last attempt is older
    /// than the cooldown). Returns how many issuers were fetched. Requests trigger this by themselves; call it
    /// from a timer to keep an idle service's keys fresh.
    pub async fn refresh_due_keys(&self) -> usize {
        let mut n = 0;
        for i in &self.inner.issuers {
            let now = i.keys.now();
            let seen = i.keys.load().generation;
            if i.keys.is_remote() && !i.keys.status().fresh && i.keys.may_fetch(now) {
                i.keys.refetch(seen).await;
                n += 1;
            }
        }
        n
    }

    /// Spawns a task that calls [`refresh_due_keys`](Self::refresh_due_keys) every `every` (must be called
    /// within a tokio runtime). The task ends when the returned handle is aborted or dropped with the runtime.
    pub fn spawn_refresh_task(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.refresh_due_keys().await;
            }
        })
    }

    /// The key status of every issuer.
    pub fn key_status(&self) -> Vec<KeyStatus> {
        self.inner.issuers.iter().map(|i| i.keys.status()).collect()
    }

    /// How many verified tokens are cached.
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, |c| c.len())
    }

    /// The token size cap.
    pub fn max_token_bytes(&self) -> usize {
        self.inner.max_token_bytes
    }
}

impl Inner {
    fn cached(&self, e: &Entry) -> bool {
        let now = i64::try_from(self.clock.unix_secs()).unwrap_or(i64::MAX);
        if now >= e.exp {
            return false;
        }
        let Some(issuer) = self.issuers.get(e.issuer as usize) else {
            return false;
        };
        let mono = issuer.keys.now();
        let snap = issuer.keys.load();
        if !snap.usable(mono) || !snap.keys.contains_id(e.key_id) {
            return false;
        }
        issuer.keys.refresh_in_background_if_due(&snap, mono);
        true
    }

    fn lookup(&self, token: &[u8]) -> Lookup {
        if token.len() > self.max_token_bytes {
            return Lookup::Refused(AuthnError::new(
                AuthnErrorKind::TokenTooLarge,
                format!("{} bytes, limit {}", token.len(), self.max_token_bytes),
            ));
        }
        let Some(c) = &self.cache else {
            return Lookup::Miss(None);
        };
        let d = cache::digest(token);
        if let Some(e) = c.get(&d) {
            if self.cached(&e) {
                self.hits.increment(1);
                return Lookup::Hit(Authenticated {
                    principal: e.principal,
                    cached: true,
                    stale: false,
                });
            }
            c.remove(&d);
        }
        self.misses.increment(1);
        Lookup::Miss(Some(d))
    }

    fn run(&self, token: &str, may_fetch: bool, digest: Option<Digest>) -> Result<Authenticated, Stop> {
        let parts = compact::split(token, self.max_token_bytes)?;
        let claims = compact::claims(parts.payload)?;
        let iss = match claims.get("iss") {
            None => return Err(fail(AuthnErrorKind::MissingClaim, "`iss` is missing")),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(fail(AuthnErrorKind::InvalidClaim, "`iss` is not a string")),
        };
        let Some(&idx) = self.by_iss.get(iss) else {
            return Err(fail(
                AuthnErrorKind::IssuerMismatch,
                format!("iss {:?} is not configured", sanitize(iss)),
            ));
        };
        let issuer = &self.issuers[idx as usize];
        let alg = parts.header.alg;
        if !issuer.algorithms.contains(&alg) {
            return Err(fail(
                AuthnErrorKind::AlgNotAllowed,
                format!("{} is not allowed for this issuer", alg_name(alg)),
            ));
        }
        let kid = parts.header.kid.as_deref();
        let mono = issuer.keys.now();
        let snap = issuer.keys.load();
        if !snap.usable(mono) || snap.keys.len() == 0 {
            if may_fetch && issuer.keys.may_fetch(mono) {
                return Err(Stop::Fetch {
                    issuer: idx,
                    seen: snap.generation,
                });
            }
            return Err(fail(AuthnErrorKind::KeysUnavailable, "no usable keys for this issuer"));
        }
        issuer.keys.refresh_in_background_if_due(&snap, mono);
        let (kid_known, candidates) = snap.keys.candidates(kid, alg);
        let mut candidates = candidates.peekable();
        if candidates.peek().is_none() {
            return Err(match (kid, kid_known) {
                (Some(_), false) if may_fetch && issuer.keys.may_fetch(mono) => Stop::Fetch {
                    issuer: idx,
                    seen: snap.generation,
                },
                (Some(k), false) => fail(AuthnErrorKind::UnknownKid, format!("kid {:?}", sanitize(k))),
                (Some(k), true) => fail(
                    AuthnErrorKind::AlgNotAllowed,
                    format!("key {:?} is not bound to {}", sanitize(k), alg_name(alg)),
                ),
                (None, _) => fail(
                    AuthnErrorKind::UnknownKid,
                    format!("no kid, and no {} key", alg_name(alg)),
                ),
            });
        }
        let signature = compact::signature(parts.signature)?;
        let input = parts.signing_input.as_bytes();
        let Some(key) = candidates.find(|k| k.verifier.verify_bytes(input, &signature).is_ok()) else {
            return Err(fail(AuthnErrorKind::BadSignature, "the signature does not verify"));
        };
        let key_id = key.id;
        let now = i64::try_from(self.clock.unix_secs()).unwrap_or(i64::MAX);
        let exp = issuer.rules.check(parts.header.typ.as_deref(), &claims, now)?;
        let principal = Arc::new(issuer.mapping.principal(&issuer.name, alg, kid, exp, claims)?);
        if let (Some(c), Some(d)) = (&self.cache, digest) {
            c.insert(
                d,
                Entry {
                    principal: Arc::clone(&principal),
                    exp: exp.unwrap_or(i64::MAX),
                    key_id,
                    issuer: idx,
                },
            );
        }
        Ok(Authenticated::new(principal))
    }
}
