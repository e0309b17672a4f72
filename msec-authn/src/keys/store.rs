//! The key store of one issuer: an immutable [`Snapshot`] swapped atomically (readers never lock), and for remote
//! sources the refresh machinery.
//!
//! - **Reads** are an `arc-swap` load: no lock, no contention with a refresh in progress.
//! - **Refresh** honours `Cache-Control: max-age`, clamped to [`RefreshConfig::ttl_bounds`], revalidates with
//!   `If-None-Match`, and runs in the background (a spawned task) when a request finds the keys due, while the
//!   request goes on with the current keys.
//! - **Unknown `kid`**: one single-flight refetch; concurrent requests wait for that one fetch instead of starting
//!   their own. Fetch attempts of every kind are at least [`RefreshConfig::unknown_kid_cooldown`] apart, so a flood of
//!   random `kid`s (or a down IdP) costs at most one fetch per cooldown.
//! - **Failure**: the last good keys stay in use until `ttl + max_staleness` after the last successful fetch; then
//!   the issuer's tokens get `503 keys_unavailable` until a fetch succeeds.
//!
//! Every time decision uses the injected [`Clock`](msec_core::clock::Clock)'s monotonic time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use msec_core::clock::SharedClock;
use reqwest::Url;
use serde_json::Value;

use super::http::{Fetched, Fetcher};
use super::{JwkRules, KeySet};

/// How keys of remote sources are refreshed.
///
/// ```
/// use std::time::Duration;
/// use msec_authn::keys::RefreshConfig;
/// let r = RefreshConfig::new()
///     .default_ttl(Duration::from_secs(600))
///     .ttl_bounds(Duration::from_secs(60), Duration::from_secs(86_400))
///     .unknown_kid_cooldown(Duration::from_secs(30))
///     .max_staleness(Duration::from_secs(86_400));
/// # let _ = r;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct RefreshConfig {
    pub(crate) default_ttl: Duration,
    pub(crate) min_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) max_staleness: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl RefreshConfig {
    /// Defaults: TTL 10 minutes when the response has no `max-age`, `max-age` clamped to 1 minute .. 24 hours,
    /// 30 s between fetch attempts, keys usable for 24 hours past their TTL while the IdP is unreachable.
    pub fn new() -> Self {
        Self {
            default_ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(86_400),
            cooldown: Duration::from_secs(30),
            max_staleness: Duration::from_secs(86_400),
        }
    }

    /// How long keys are fresh when the response has no `Cache-Control: max-age` (clamped to the bounds too).
    pub fn default_ttl(mut self, d: Duration) -> Self {
        self.default_ttl = d;
        self
    }

    /// Clamps `max-age` (and the default TTL) to `min ..= max`. `no-cache` / `no-store` mean `min`.
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_ttl = min;
        self.max_ttl = max.max(min);
        self
    }

    /// The least time between two fetch attempts: an unknown `kid` causes at most one refetch per cooldown, and
    /// a failing IdP is retried at most once per cooldown.
    pub fn unknown_kid_cooldown(mut self, d: Duration) -> Self {
        self.cooldown = d;
        self
    }

    /// How long past their TTL the last good keys stay usable while refreshes fail.
    pub fn max_staleness(mut self, d: Duration) -> Self {
        self.max_staleness = d;
        self
    }

    fn ttl(&self, max_age: Option<u64>, no_cache: bool) -> Duration {
        if no_cache {
            return self.min_ttl;
        }
        max_age
            .map_or(self.default_ttl, Duration::from_secs)
            .clamp(self.min_ttl, self.max_ttl)
    }
}

/// Why a key fetch failed. The last good keys stay in use (up to the maximum staleness).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFetchError {
    /// Connecting, TLS, timeout, or reading the body failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// The server answered with a status other than 200 (or 304 to a revalidation).
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// The document exceeds the size cap.
    #[error("document larger than {0} bytes")]
    TooLarge(usize),
    /// The document is not the JSON expected.
    #[error("invalid document: {0}")]
    Invalid(String),
    /// The JWK set has no usable signing key.
    #[error("the JWK set has no usable signing key")]
    NoUsableKeys,
    /// The discovery document names another issuer.
    #[error("discovery document issuer {found:?} is not the configured issuer {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// What the document says.
        found: String,
    },
    /// A URL (from discovery or a redirect) is not HTTPS.
    #[error("refusing non-HTTPS URL {0}")]
    Insecure(String),
    /// A fetch was attempted less than the cooldown ago.
    #[error("a fetch was attempted less than the cooldown ago")]
    Cooldown,
    /// The issuer has static keys only.
    #[error("the issuer has static keys only")]
    Static,
}

/// What the store knows about its keys, for health checks and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStatus {
    /// The issuer.
    pub issuer: String,
    /// `kid`s of the usable keys.
    pub kids: Vec<String>,
    /// Bumped on every change of the key set (0: never fetched).
    pub generation: u64,
    /// Tokens of this issuer can be verified now.
    pub available: bool,
    /// The keys are within their TTL (always true for static keys).
    pub fresh: bool,
    /// The `ETag` of the current JWK set, if any.
    pub etag: Option<String>,
}

/// An immutable view of the keys.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) keys: Arc<KeySet>,
    pub(crate) generation: u64,
    /// Monotonic time until which the keys are fresh; `None` for static keys.
    fresh_until: Option<Duration>,
    /// Monotonic time until which the keys may be used; `None` for static keys.
    usable_until: Option<Duration>,
    etag: Option<String>,
}

impl Snapshot {
    pub(crate) fn usable(&self, now: Duration) -> bool {
        self.usable_until.is_none_or(|u| now < u)
    }

    fn due(&self, now: Duration) -> bool {
        self.fresh_until.is_some_and(|f| now >= f)
    }
}

/// Where remote keys come from.
#[derive(Debug, Clone)]
pub(crate) enum RemoteSource {
    /// A JWKS URL.
    Jwks(Url),
    /// A discovery document (OIDC or RFC 8414) naming the JWKS URL.
    Discovery(Url),
}

struct Remote {
    source: RemoteSource,
    fetcher: Fetcher,
    rules: JwkRules,
    refresh: RefreshConfig,
    /// Single flight: held for the duration of one fetch. Holds the JWKS URL found by discovery.
    lock: tokio::sync::Mutex<Option<Url>>,
    /// Monotonic nanos of the last fetch attempt, plus one (0: never).
    last_attempt: AtomicU64,
    background: AtomicBool,
}

/// Called with the ids of keys that left the set (to purge cached tokens).
pub(crate) type RemovedHook = Arc<dyn Fn(&[u64]) + Send + Sync>;

/// The keys of one issuer.
pub(crate) struct KeyStore {
    issuer: Arc<str>,
    snapshot: ArcSwap<Snapshot>,
    remote: Option<Remote>,
    clock: SharedClock,
    on_removed: Option<RemovedHook>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("issuer", &self.issuer)
            .field("keys", &self.snapshot.load().keys.len())
            .field("remote", &self.remote.as_ref().map(|r| &r.source))
            .finish()
    }
}

/// The result of a fetch the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refetch {
    /// This call fetched (successfully or not; see the snapshot).
    Fetched,
    /// Another caller's fetch finished while this one waited.
    Concurrent,
    /// Too soon after the last attempt.
    Cooldown,
    /// Static keys.
    Static,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

impl KeyStore {
    /// A store of fixed keys.
    pub(crate) fn fixed(issuer: Arc<str>, keys: KeySet, clock: SharedClock) -> Self {
        Self {
            issuer,
            snapshot: ArcSwap::from_pointee(Snapshot {
                keys: Arc::new(keys),
                generation: 1,
                fresh_until: None,
                usable_until: None,
                etag: None,
            }),
            remote: None,
            clock,
            on_removed: None,
        }
    }

    /// A store fed from `source`, empty until the first fetch.
    pub(crate) fn remote(
        issuer: Arc<str>,
        source: RemoteSource,
        fetcher: Fetcher,
        rules: JwkRules,
        refresh: RefreshConfig,
        clock: SharedClock,
    ) -> Self {
        Self {
            issuer,
            snapshot: ArcSwap::from_pointee(Snapshot {
                keys: Arc::new(KeySet::default()),
                generation: 0,
                fresh_until: Some(Duration::ZERO),
                usable_until: Some(Duration::ZERO),
                etag: None,
            }),
            remote: Some(Remote {
                source,
                fetcher,
                rules,
                refresh,
                lock: tokio::sync::Mutex::new(None),
                last_attempt: AtomicU64::new(0),
                background: AtomicBool::new(false),
            }),
            clock,
            on_removed: None,
        }
    }

    pub(crate) fn set_removed_hook(&mut self, hook: RemovedHook) {
        self.on_removed = Some(hook);
    }

    /// The current snapshot (lock-free).
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub(crate) fn now(&self) -> Duration {
        self.clock.monotonic()
    }

    pub(crate) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// True when a fetch attempt is allowed now (the cooldown since the last attempt has passed).
    pub(crate) fn may_fetch(&self, now: Duration) -> bool {
        match &self.remote {
            None => false,
            Some(r) => match r.last_attempt.load(Ordering::Acquire) {
                0 => true,
                last => now.saturating_sub(Duration::from_nanos(last - 1)) >= r.refresh.cooldown,
            },
        }
    }

    /// The status for health checks.
    pub(crate) fn status(&self) -> KeyStatus {
        let now = self.now();
        let s = self.load();
        KeyStatus {
            issuer: self.issuer.to_string(),
            kids: s.keys.kids(),
            generation: s.generation,
            available: s.usable(now) && s.keys.len() > 0,
            fresh: !s.due(now),
            etag: s.etag.clone(),
        }
    }

    /// When the keys are due for refresh and a fetch is allowed, refreshes them in a background task (if a
    /// tokio runtime is running). The caller goes on with the current keys.
    pub(crate) fn refresh_in_background_if_due(self: &Arc<Self>, snapshot: &Snapshot, now: Duration) {
        let Some(r) = &self.remote else { return };
        if !snapshot.due(now) || !self.may_fetch(now) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if r.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        handle.spawn(async move {
            let seen = this.load().generation;
            let _ = this.refetch(seen).await;
            if let Some(r) = &this.remote {
                r.background.store(false, Ordering::Release);
            }
        });
    }

    /// One single-flight fetch, subject to the cooldown. `seen_generation` is the generation the caller looked
    /// at: if another fetch changed it meanwhile, no new fetch is made.
    pub(crate) async fn refetch(&self, seen_generation: u64) -> Refetch {
        let Some(r) = &self.remote else {
            return Refetch::Static;
        };
        if !self.may_fetch(self.now()) {
            return Refetch::Cooldown;
        }
        let mut jwks_url = r.lock.lock().await;
        if self.load().generation != seen_generation {
            return Refetch::Concurrent;
        }
        if !self.may_fetch(self.now()) {
            return Refetch::Cooldown;
        }
        let _ = self.fetch_locked(r, &mut jwks_url).await;
        Refetch::Fetched
    }

    /// Fetches now, ignoring the cooldown (still single-flight).
    pub(crate) async fn fetch_now(&self) -> Result<(), KeyFetchError> {
        let Some(r) = &self.remote else {
            return Err(KeyFetchError::Static);
        };
        let mut jwks_url = r.lock.lock().await;
        self.fetch_locked(r, &mut jwks_url).await
    }

    async fn fetch_locked(&self, r: &Remote, jwks_url: &mut Option<Url>) -> Result<(), KeyFetchError> {
        let started = self.now();
        r.last_attempt
            .store(nanos(started).saturating_add(1), Ordering::Release);
        let result = self.fetch_inner(r, jwks_url).await;
        let label = match &result {
            Ok(true) => "ok",
            Ok(false) => "not_modified",
            Err(_) => "error",
        };
        metrics::counter!("msec_authn_jwks_fetch_total", "issuer" => self.issuer.to_string(), "result" => label)
            .increment(1);
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(r.source, RemoteSource::Discovery(_)) {
                    // Discover again next time: the JWKS URL may have moved.
                    *jwks_url = None;
                }
                tracing::warn!(issuer = %self.issuer, error = %e, "msec-authn: key fetch failed; keeping the last good keys");
                Err(e)
            }
        }
    }

    /// Returns Ok(true) when a new document was loaded, Ok(false) on 304.
    async fn fetch_inner(&self, r: &Remote, jwks_url: &mut Option<Url>) -> Result<bool, KeyFetchError> {
        let url = match (&r.source, jwks_url.as_ref()) {
            (RemoteSource::Jwks(u), _) => u.clone(),
            (RemoteSource::Discovery(_), Some(u)) => u.clone(),
            (RemoteSource::Discovery(d), None) => {
                let u = self.discover(r, d).await?;
                *jwks_url = Some(u.clone());
                u
            }
        };
        let old = self.snapshot.load_full();
        let etag = old.etag.as_deref().filter(|_| old.generation > 0);
        let fetched = r.fetcher.get(&url, etag).await?;
        let now = self.now();
        let (keys, etag, cache, changed) = match fetched {
            Fetched::NotModified { cache } => (old.keys.clone(), old.etag.clone(), cache, false),
            Fetched::Document { body, etag, cache } => {
                let doc: Value = serde_json::from_slice(&body).map_err(|e| KeyFetchError::Invalid(e.to_string()))?;
                let (keys, skipped) =
                    KeySet::from_jwks(&doc, &r.rules, Some(&old.keys)).map_err(KeyFetchError::Invalid)?;
                if keys.len() == 0 {
                    return Err(KeyFetchError::NoUsableKeys);
                }
                if skipped > 0 {
                    tracing::debug!(issuer = %self.issuer, skipped, "msec-authn: some JWKs were not usable");
                }
                (Arc::new(keys), etag, cache, true)
            }
        };
        let ttl = r.refresh.ttl(cache.max_age, cache.no_cache);
        let same_keys = keys.len() == old.keys.len() && keys.keys().iter().all(|k| old.keys.contains_id(k.id));
        let next = Snapshot {
            keys,
            generation: if changed && !same_keys {
                old.generation + 1
            } else {
                old.generation
            },
            fresh_until: Some(now.saturating_add(ttl)),
            usable_until: Some(now.saturating_add(ttl).saturating_add(r.refresh.max_staleness)),
            etag,
        };
        let removed = if changed {
            old.keys.removed_ids(&next.keys)
        } else {
            Vec::new()
        };
        let count = next.keys.len();
        let added: Vec<String> = next
            .keys
            .keys()
            .iter()
            .filter(|k| !old.keys.contains_id(k.id))
            .filter_map(|k| k.kid.as_deref().map(crate::util::sanitize))
            .collect();
        self.snapshot.store(Arc::new(next));
        metrics::gauge!("msec_authn_jwks_keys", "issuer" => self.issuer.to_string()).set(count as f64);
        if changed && (!added.is_empty() || !removed.is_empty()) {
            tracing::info!(issuer = %self.issuer, keys = count, added = ?added, removed = removed.len(), ttl_secs = ttl.as_secs(), "msec-authn: signing keys updated");
        }
        if !removed.is_empty()
            && let Some(hook) = &self.on_removed
        {
            hook(&removed);
        }
        Ok(changed)
    }

    async fn discover(&self, r: &Remote, url: &Url) -> Result<Url, KeyFetchError> {
        let Fetched::Document { body, .. } = r.fetcher.get(url, None).await? else {
            return Err(KeyFetchError::Status(304));
        };
        let doc: Value = serde_json::from_slice(&body).map_err(|e| KeyFetchError::Invalid(e.to_string()))?;
        let issuer = doc
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| KeyFetchError::Invalid("discovery document has no `issuer`".into()))?;
        if issuer != &*self.issuer {
            return Err(KeyFetchError::IssuerMismatch {
                expected: self.issuer.to_string(),
                found: crate::util::sanitize(issuer),
            });
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| KeyFetchError::Invalid("discovery document has no `jwks_uri`".into()))?;
        let jwks = Url::parse(jwks).map_err(|e| KeyFetchError::Invalid(format!("jwks_uri: {e}")))?;
        if !r.fetcher.allows(&jwks) {
            return Err(KeyFetchError::Insecure(jwks.to_string()));
        }
        Ok(jwks)
    }
}

/// The OIDC discovery URL of `issuer` (`{issuer}/.well-known/openid-configuration`).
pub(crate) fn oidc_discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

/// The RFC 8414 metadata URL of `issuer` (`/.well-known/oauth-authorization-server` inserted before the path).
pub(crate) fn rfc8414_url(issuer: &Url) -> Url {
    let mut u = issuer.clone();
    let path = issuer.path().trim_end_matches('/').to_owned();
    u.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    u.set_query(None);
    u.set_fragment(None);
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_clamping() {
        let r = RefreshConfig::new().ttl_bounds(Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(r.ttl(Some(5), false), Duration::from_secs(60));
        assert_eq!(r.ttl(Some(120), false), Duration::from_secs(120));
        assert_eq!(r.ttl(Some(999_999), false), Duration::from_secs(3600));
        assert_eq!(r.ttl(None, false), Duration::from_secs(600));
        assert_eq!(r.ttl(Some(3000), true), Duration::from_secs(60));
    }

    #[test]
    fn discovery_urls() {
        assert_eq!(
            oidc_discovery_url("https://id.example.com/realms/a/"),
            "https://id.example.com/realms/a/.well-known/openid-configuration"
        );
        let u = Url::parse("https://as.example.com/tenant1").unwrap();
        assert_eq!(
            rfc8414_url(&u).as_str(),
            "https://as.example.com/.well-known/oauth-authorization-server/tenant1"
        );
        let root = Url::parse("https://as.example.com").unwrap();
        assert_eq!(
            rfc8414_url(&root).as_str(),
            "https://as.example.com/.well-known/oauth-authorization-server"
        );
    }
}
