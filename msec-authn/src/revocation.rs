//! Revocation: a `jti` / subject denylist checked after verification, as a [`PostVerify`] hook.
//!
//! - [`MemoryDenylist`]: one process; bounded; entries expire when the token would have (injected clock).
//! - `RedisDenylist` (feature `redis`): shared by every replica; each entry is a Redis key whose TTL is the
//!   token's remaining lifetime, so Redis forgets it exactly when the token would have expired anyway. One `MGET`
//!   per request. When Redis cannot answer the policy decides: fail closed (503 `revocation_unavailable`, the
//!   default) or fail open (the request passes, a warning is logged).
//!
//! Two kinds of entries:
//!
//! - **a token** (`jti`): that one token is refused until its `exp`;
//! - **a subject**: every token of the subject *issued at or before the revocation* (`iat` ≤ revocation time, or
//!   no `iat`) is refused until `until` — set it to now + the issuer's longest token lifetime to catch every
//!   outstanding token. Tokens issued after the revocation (a fresh login) pass.
//!
//! An entry names an issuer, or `None` for any issuer (a `jti` is unique only per issuer, RFC 7519 §4.1.7).
//! A revoked token gets 401 `token_revoked` with `WWW-Authenticate: Bearer error="invalid_token"`.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use msec_authn::{AuthnLayer, revocation::MemoryDenylist};
//! # let validator = msec_authn::jwt::JwtValidator::builder()
//! #     .issuer(msec_authn::jwt::Issuer::new("https://id.example.com").audience("api")
//! #         .pem_key(Some("k"), jsonwebtoken::Algorithm::ES256, msec_test_support::TestKey::es256().public_pem.as_bytes()))
//! #     .build()?;
//!
//! let denylist = MemoryDenylist::new(100_000);
//! let layer = AuthnLayer::jwt(validator).hook(denylist.clone());
//! // Later, from an admin endpoint or a revocation event:
//! denylist.revoke_token(Some("https://id.example.com"), "token-id-42", SystemTime::now() + Duration::from_secs(600))?;
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use msec_core::Principal;
use msec_core::clock::{Clock, SharedClock, SystemClock};

use crate::authenticator::{Authenticated, AuthnFuture, PostVerify, RequestHead};
use crate::error::{AuthnError, AuthnErrorKind};

/// Why a revocation could not be recorded or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The in-memory denylist holds its capacity in live entries. Nothing was evicted: a bounded denylist that
    /// silently forgot revocations would be worse than one that says no.
    #[error("the denylist is full ({0} live entries)")]
    Full(usize),
    /// The principal has no token id (`jti`) to revoke.
    #[error("the token has no jti")]
    NoTokenId,
    /// The principal has no expiry, so the entry's lifetime is unknown (use `revoke_token` with an explicit time).
    #[error("the token has no exp")]
    NoExpiry,
    /// The backend (Redis) did not answer in time.
    #[error("the denylist backend timed out")]
    Timeout,
    /// The backend (Redis) failed.
    #[error("the denylist backend failed: {0}")]
    Backend(String),
}

fn revoked(what: &'static str) -> AuthnError {
    AuthnError::new(AuthnErrorKind::TokenRevoked, what)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The token's `iat` in Unix seconds, if it has a numeric one.
fn issued_at(p: &Principal) -> Option<u64> {
    p.claims.get("iat").and_then(serde_json::Value::as_u64)
}

/// A subject entry applies to a token issued at or before the revocation (or without `iat`).
fn subject_applies(p: &Principal, revoked_at: u64) -> bool {
    issued_at(p).is_none_or(|iat| iat <= revoked_at)
}

struct JtiEntry {
    issuer: Option<String>,
    expires: SystemTime,
}

struct SubjectEntry {
    issuer: Option<String>,
    revoked_at: u64,
    expires: SystemTime,
}

#[derive(Default)]
struct State {
    jtis: HashMap<String, Vec<JtiEntry>>,
    subjects: HashMap<String, Vec<SubjectEntry>>,
    len: usize,
}

impl State {
    fn purge(&mut self, now: SystemTime) {
        let mut len = 0;
        self.jtis.retain(|_, v| {
            v.retain(|e| now < e.expires);
            len += v.len();
            !v.is_empty()
        });
        self.subjects.retain(|_, v| {
            v.retain(|e| now < e.expires);
            len += v.len();
            !v.is_empty()
        });
        self.len = len;
    }
}

struct MemInner {
    capacity: usize,
    clock: SharedClock,
    state: RwLock<State>,
}

/// An in-process denylist of token ids and subjects, bounded to `capacity` live entries. Cheap to check (a read
/// lock and one or two hash lookups); clones share the list, so keep one clone to revoke and give another to
/// [`AuthnLayer::hook`](crate::AuthnLayer::hook).
#[derive(Clone)]
pub struct MemoryDenylist {
    inner: Arc<MemInner>,
}

impl fmt::Debug for MemoryDenylist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDenylist")
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

impl MemoryDenylist {
    /// A denylist holding at most `capacity` live entries (at least 1), on the system clock.
    pub fn new(capacity: usize) -> Self {
        Self::with_shared_clock(capacity, Arc::new(SystemClock))
    }

    /// A denylist whose entries expire on `clock`.
    pub fn with_clock(capacity: usize, clock: impl Clock) -> Self {
        Self::with_shared_clock(capacity, Arc::new(clock))
    }

    /// A denylist whose entries expire on a shared clock.
    pub fn with_shared_clock(capacity: usize, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(MemInner {
                capacity: capacity.max(1),
                clock,
                state: RwLock::new(State::default()),
            }),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn make_room(&self, st: &mut State, now: SystemTime) -> Result<(), RevocationError> {
        if st.len >= self.inner.capacity {
            st.purge(now);
            if st.len >= self.inner.capacity {
                return Err(RevocationError::Full(st.len));
            }
        }
        Ok(())
    }

    /// Revokes the token `jti` of `issuer` (`None`: of any issuer) until `expires_at` (its `exp`). A time already
    /// past is a no-op.
    pub fn revoke_token(&self, issuer: Option<&str>, jti: &str, expires_at: SystemTime) -> Result<(), RevocationError> {
        let now = self.inner.clock.now();
        if expires_at <= now {
            return Ok(());
        }
        let mut st = self.write();
        let existing = st
            .jtis
            .get_mut(jti)
            .and_then(|v| v.iter_mut().find(|e| e.issuer.as_deref() == issuer));
        if let Some(e) = existing {
            e.expires = e.expires.max(expires_at);
            return Ok(());
        }
        self.make_room(&mut st, now)?;
        st.jtis.entry(jti.to_owned()).or_default().push(JtiEntry {
            issuer: issuer.map(str::to_owned),
            expires: expires_at,
        });
        st.len += 1;
        Ok(())
    }

    /// Revokes every token of `subject` (of `issuer`, or of any issuer for `None`) issued up to now, the entry
    /// living until `until`. A later call for the same subject and issuer replaces the entry.
    pub fn revoke_subject(
        &self,
        issuer: Option<&str>,
        subject: &str,
        until: SystemTime,
    ) -> Result<(), RevocationError> {
        let now = self.inner.clock.now();
        if until <= now {
            return Ok(());
        }
        let revoked_at = unix_secs(now);
        let mut st = self.write();
        let existing = st
            .subjects
            .get_mut(subject)
            .and_then(|v| v.iter_mut().find(|e| e.issuer.as_deref() == issuer));
        if let Some(e) = existing {
            e.revoked_at = revoked_at;
            e.expires = until;
            return Ok(());
        }
        self.make_room(&mut st, now)?;
        st.subjects.entry(subject.to_owned()).or_default().push(SubjectEntry {
            issuer: issuer.map(str::to_owned),
            revoked_at,
            expires: until,
        });
        st.len += 1;
        Ok(())
    }

    /// Revokes the token `principal` was authenticated with (its issuer, `jti` and `exp`).
    pub fn revoke_principal(&self, principal: &Principal) -> Result<(), RevocationError> {
        let jti = principal.token_id.as_deref().ok_or(RevocationError::NoTokenId)?;
        let exp = principal.expires_at.ok_or(RevocationError::NoExpiry)?;
        self.revoke_token(principal.issuer.as_deref(), jti, exp)
    }

    /// True when `principal`'s token or subject is revoked now.
    pub fn is_revoked(&self, principal: &Principal) -> bool {
        self.revocation(principal).is_some()
    }

    fn revocation(&self, p: &Principal) -> Option<&'static str> {
        let st = self.inner.state.read().unwrap_or_else(PoisonError::into_inner);
        if st.len == 0 {
            return None;
        }
        let issuer = p.issuer.as_deref();
        let applies = |e: &Option<String>| e.is_none() || e.as_deref() == issuer;
        if let Some(v) = p.token_id.as_deref().and_then(|j| st.jtis.get(j)) {
            let now = self.inner.clock.now();
            if v.iter().any(|e| applies(&e.issuer) && now < e.expires) {
                return Some("token id on the denylist");
            }
        }
        if let Some(v) = st.subjects.get(p.subject.as_str()) {
            let now = self.inner.clock.now();
            if v.iter()
                .any(|e| applies(&e.issuer) && now < e.expires && subject_applies(p, e.revoked_at))
            {
                return Some("subject on the denylist");
            }
        }
        None
    }

    /// Entries held, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.inner.state.read().unwrap_or_else(PoisonError::into_inner).len
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries now (they are otherwise dropped when room is needed); returns how many remain.
    pub fn purge_expired(&self) -> usize {
        let now = self.inner.clock.now();
        let mut st = self.write();
        st.purge(now);
        st.len
    }
}

impl PostVerify for MemoryDenylist {
    fn check(&self, auth: &Authenticated, _head: &RequestHead<'_>) -> AuthnFuture<Result<(), AuthnError>> {
        AuthnFuture::ready(match self.revocation(&auth.principal) {
            Some(why) => Err(revoked(why)),
            None => Ok(()),
        })
    }
}

/// What a denylist does when its backend cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Refuse the request: 503 `revocation_unavailable` (the default).
    #[default]
    Closed,
    /// Let the request pass (a revoked token may be accepted while the backend is down); logs a warning.
    Open,
}

#[cfg(feature = "redis")]
pub use self::redis_impl::{MAX_LOCAL_CACHE_TTL, RedisDenylist, RedisDenylistBuilder};

#[cfg(feature = "redis")]
mod redis_impl {
    use super::*;
    use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use std::time::Duration;

    use crate::error::ConfigError;

    /// Builder for [`RedisDenylist`]; see [`RedisDenylist::builder`].
    #[must_use]
    pub struct RedisDenylistBuilder {
        url: String,
        prefix: String,
        timeout: Duration,
        policy: FailurePolicy,
        clock: SharedClock,
        local_cache: Option<(Duration, usize)>,
    }

    impl fmt::Debug for RedisDenylistBuilder {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // The URL may carry a password.
            f.debug_struct("RedisDenylistBuilder")
                .field("prefix", &self.prefix)
                .field("timeout", &self.timeout)
                .field("policy", &self.policy)
                .field("local_cache", &self.local_cache)
                .finish_non_exhaustive()
        }
    }

    /// The longest [`RedisDenylistBuilder::local_cache`] lifetime accepted.
    pub const MAX_LOCAL_CACHE_TTL: Duration = Duration::from_secs(300);

    impl RedisDenylistBuilder {
        /// The key prefix (default `msec:revoked`).
        pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
            self.prefix = prefix.into();
            self
        }

        /// The longest a check or revocation waits for Redis (default 250 ms).
        pub fn timeout(mut self, d: Duration) -> Self {
            self.timeout = d;
            self
        }

        /// What requests get when Redis cannot answer (default [`FailurePolicy::Closed`]).
        pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
            self.policy = policy;
            self
        }

        /// Keeps each answer (revoked or not) for one token in this process for `ttl`, in a cache of at most
        /// `capacity` tokens, so that a token used many times costs one Redis round trip per `ttl` instead of
        /// one per request — and keeps being answered while Redis is briefly unreachable. Off by default.
        ///
        /// The price is staleness: **a revocation made by another replica takes up to `ttl` to reach this
        /// one** (one made through this denylist clears its own cache at once). Pick `ttl` against how fast a
        /// revocation must bite; it is refused above [`MAX_LOCAL_CACHE_TTL`] (5 minutes). Entries are keyed by
        /// the token caches' keyed digest (SipHash-2-4-128 under a per-process key) of the token's issuer, id,
        /// subject and issue time, and expire on the injected [`clock`](Self::clock).
        ///
        /// ```no_run
        /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
        /// use std::time::Duration;
        /// use msec_authn::revocation::RedisDenylist;
        /// // A revocation reaches every replica within a second; a hot token costs one Redis call a second.
        /// let denylist = RedisDenylist::builder("redis://127.0.0.1:6379")
        ///     .local_cache(Duration::from_secs(1), 100_000)
        ///     .build()?;
        /// # let _ = denylist; Ok(()) }
        /// ```
        pub fn local_cache(mut self, ttl: Duration, capacity: usize) -> Self {
            self.local_cache = Some((ttl, capacity));
            self
        }

        /// The clock used to compute entry TTLs (`exp - now`; default the system clock).
        pub fn clock(mut self, clock: impl Clock) -> Self {
            self.clock = Arc::new(clock);
            self
        }

        /// Builds the denylist. Connects lazily (Redis may be down at start); must run inside a Tokio runtime.
        pub fn build(self) -> Result<RedisDenylist, ConfigError> {
            if self.timeout.is_zero() {
                return Err(ConfigError::InvalidSetting("redis timeout", "must not be zero"));
            }
            let cache = match self.local_cache {
                None => None,
                Some((ttl, _)) if ttl.is_zero() || ttl > MAX_LOCAL_CACHE_TTL => {
                    return Err(ConfigError::InvalidSetting(
                        "revocation local_cache ttl",
                        "must be above zero and at most 5 minutes",
                    ));
                }
                Some((_, 0)) => {
                    return Err(ConfigError::InvalidSetting(
                        "revocation local_cache capacity",
                        "must be at least 1",
                    ));
                }
                Some((ttl, capacity)) => Some(LocalCache {
                    ttl,
                    answers: quick_cache::sync::Cache::new(capacity),
                    generation: std::sync::atomic::AtomicU64::new(0),
                }),
            };
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(ConfigError::InvalidSetting(
                    "redis denylist",
                    "must be built inside a Tokio runtime",
                ));
            }
            let client = ::redis::Client::open(self.url.as_str()).map_err(|e| ConfigError::InvalidUrl {
                url: "(redis URL)".into(),
                reason: e.to_string(),
            })?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100));
            let conn = client.get_connection_manager_lazy(config).map_err(|_| {
                ConfigError::InvalidSetting("redis denylist", "the connection manager could not be created")
            })?;
            Ok(RedisDenylist {
                inner: Arc::new(RedisInner {
                    conn,
                    prefix: self.prefix,
                    timeout: self.timeout,
                    policy: self.policy,
                    clock: self.clock,
                    cache,
                }),
            })
        }
    }

    struct RedisInner {
        conn: ConnectionManager,
        prefix: String,
        timeout: Duration,
        policy: FailurePolicy,
        clock: SharedClock,
        cache: Option<LocalCache>,
    }

    /// Answers per token: (revoked, valid until this monotonic instant).
    struct LocalCache {
        ttl: Duration,
        answers: quick_cache::sync::Cache<crate::cache::Digest, (bool, Duration)>,
        /// Bumped by every local revocation: an answer fetched before one is not cached after it.
        generation: std::sync::atomic::AtomicU64,
    }

    /// The cache key of `p`'s answer: everything `is_revoked` reads, length-prefixed.
    fn answer_key(p: &Principal) -> crate::cache::Digest {
        // The token caches' keyed digest: local to this process, so no one else can compute an entry's key.
        let mut d = crate::cache::Digester::new();
        for field in [p.issuer.as_deref(), p.token_id.as_deref(), Some(p.subject.as_str())] {
            match field {
                Some(v) => {
                    d.update(&[1]);
                    d.update(&(v.len() as u64).to_be_bytes());
                    d.update(v.as_bytes());
                }
                None => d.update(&[0]),
            }
        }
        match issued_at(p) {
            Some(iat) => {
                d.update(&[1]);
                d.update(&iat.to_be_bytes());
            }
            None => d.update(&[0]),
        }
        d.finish()
    }

    /// A denylist in Redis, shared by every replica. Keys are `<prefix>:jti:<hash>` and `<prefix>:sub:<hash>`
    /// (SHA-256 of the issuer and the id: fixed length, no user text in key names), each with a TTL equal to
    /// what is left of the token's (or the subject entry's) lifetime. Clones share the connection.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use msec_authn::revocation::{FailurePolicy, RedisDenylist};
    /// let denylist = RedisDenylist::builder("redis://127.0.0.1:6379")
    ///     .failure_policy(FailurePolicy::Closed)
    ///     .build()?;
    /// let layer = msec_authn::AuthnLayer::new(msec_authn::AuthnChain::new()).hook(denylist.clone());
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    #[derive(Clone)]
    pub struct RedisDenylist {
        inner: Arc<RedisInner>,
    }

    impl fmt::Debug for RedisDenylist {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RedisDenylist")
                .field("prefix", &self.inner.prefix)
                .field("timeout", &self.inner.timeout)
                .field("policy", &self.inner.policy)
                .finish_non_exhaustive()
        }
    }

    fn key(prefix: &str, kind: &str, issuer: Option<&str>, id: &str) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        // Length-prefixed fields: no two (issuer, id) pairs hash the same input.
        match issuer {
            Some(i) => {
                ctx.update(&[1]);
                ctx.update(&(i.len() as u64).to_be_bytes());
                ctx.update(i.as_bytes());
            }
            None => ctx.update(&[0]),
        }
        ctx.update(id.as_bytes());
        let d = ctx.finish();
        let mut out = String::with_capacity(prefix.len() + kind.len() + 34);
        out.push_str(prefix);
        out.push(':');
        out.push_str(kind);
        out.push(':');
        for b in &d.as_ref()[..16] {
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        out
    }

    fn backend(e: &::redis::RedisError) -> RevocationError {
        if e.is_timeout() {
            RevocationError::Timeout
        } else {
            RevocationError::Backend(e.to_string())
        }
    }

    impl RedisDenylist {
        /// Starts a builder for the Redis at `url` (`redis://[:password@]host:port[/db]`).
        pub fn builder(url: impl Into<String>) -> RedisDenylistBuilder {
            RedisDenylistBuilder {
                url: url.into(),
                prefix: "msec:revoked".into(),
                timeout: Duration::from_millis(250),
                policy: FailurePolicy::Closed,
                clock: Arc::new(SystemClock),
                local_cache: None,
            }
        }

        async fn bounded<T>(
            &self,
            f: impl std::future::Future<Output = Result<T, ::redis::RedisError>>,
        ) -> Result<T, RevocationError> {
            match tokio::time::timeout(self.inner.timeout, f).await {
                Err(_) => Err(RevocationError::Timeout),
                Ok(r) => r.map_err(|e| backend(&e)),
            }
        }

        async fn set(&self, key: String, value: u64, until: SystemTime) -> Result<(), RevocationError> {
            let Ok(ttl) = until.duration_since(self.inner.clock.now()) else {
                return Ok(());
            };
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let mut conn = self.inner.conn.clone();
            self.bounded(
                ::redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut conn),
            )
            .await?;
            // This replica sees its own revocations at once.
            if let Some(cache) = &self.inner.cache {
                cache.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                cache.answers.clear();
            }
            Ok(())
        }

        /// Revokes the token `jti` of `issuer` (`None`: any issuer) until `expires_at` (a past time is a no-op).
        pub async fn revoke_token(
            &self,
            issuer: Option<&str>,
            jti: &str,
            expires_at: SystemTime,
        ) -> Result<(), RevocationError> {
            self.set(key(&self.inner.prefix, "jti", issuer, jti), 1, expires_at)
                .await
        }

        /// Revokes every token of `subject` issued up to now, until `until` (the latest call wins).
        pub async fn revoke_subject(
            &self,
            issuer: Option<&str>,
            subject: &str,
            until: SystemTime,
        ) -> Result<(), RevocationError> {
            let now = unix_secs(self.inner.clock.now());
            self.set(key(&self.inner.prefix, "sub", issuer, subject), now, until)
                .await
        }

        /// Revokes the token `principal` was authenticated with.
        pub async fn revoke_principal(&self, principal: &Principal) -> Result<(), RevocationError> {
            let jti = principal.token_id.as_deref().ok_or(RevocationError::NoTokenId)?;
            let exp = principal.expires_at.ok_or(RevocationError::NoExpiry)?;
            self.revoke_token(principal.issuer.as_deref(), jti, exp).await
        }

        /// True when `principal`'s token or subject is revoked. One `MGET` of up to four keys.
        pub async fn is_revoked(&self, principal: &Principal) -> Result<bool, RevocationError> {
            let prefix = &self.inner.prefix;
            let issuer = principal.issuer.as_deref();
            let mut keys = Vec::with_capacity(4);
            let mut jti_keys = 0;
            if let Some(jti) = principal.token_id.as_deref() {
                keys.push(key(prefix, "jti", None, jti));
                if issuer.is_some() {
                    keys.push(key(prefix, "jti", issuer, jti));
                }
                jti_keys = keys.len();
            }
            keys.push(key(prefix, "sub", None, &principal.subject));
            if issuer.is_some() {
                keys.push(key(prefix, "sub", issuer, &principal.subject));
            }
            let mut conn = self.inner.conn.clone();
            let values: Vec<Option<String>> = self
                .bounded(::redis::cmd("MGET").arg(&keys).query_async(&mut conn))
                .await?;
            if values.len() != keys.len() {
                return Err(RevocationError::Backend(
                    "MGET answered the wrong number of values".into(),
                ));
            }
            if values[..jti_keys].iter().any(Option::is_some) {
                return Ok(true);
            }
            Ok(values[jti_keys..].iter().flatten().any(|v| {
                // An unreadable entry counts as a revocation of everything (fail safe).
                v.parse::<u64>().map_or(true, |at| subject_applies(principal, at))
            }))
        }

        /// One `PING`, bounded by the timeout (for readiness probes).
        pub async fn ping(&self) -> Result<(), RevocationError> {
            let mut conn = self.inner.conn.clone();
            let pong: String = self.bounded(::redis::cmd("PING").query_async(&mut conn)).await?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(RevocationError::Backend("unexpected PING answer".into()))
            }
        }
    }

    impl PostVerify for RedisDenylist {
        fn check(&self, auth: &Authenticated, _head: &RequestHead<'_>) -> AuthnFuture<Result<(), AuthnError>> {
            let cached = self.inner.cache.as_ref().map(|cache| {
                let key = answer_key(&auth.principal);
                let now = self.inner.clock.monotonic();
                let hit = cache.answers.get(&key).filter(|&(_, until)| now < until);
                (key, hit.map(|(revoked, _)| revoked))
            });
            let key = match cached {
                Some((_, Some(is_revoked))) => {
                    msec_core::metrics::increment("msec_authn_revocation_cache_total", [("result", "hit")]);
                    return AuthnFuture::ready(if is_revoked {
                        Err(revoked("on the Redis denylist (answer cached locally)"))
                    } else {
                        Ok(())
                    });
                }
                Some((key, None)) => {
                    msec_core::metrics::increment("msec_authn_revocation_cache_total", [("result", "miss")]);
                    let generation = self
                        .inner
                        .cache
                        .as_ref()
                        .map_or(0, |c| c.generation.load(std::sync::atomic::Ordering::SeqCst));
                    Some((key, generation))
                }
                None => None,
            };
            let this = self.clone();
            let principal = Arc::clone(&auth.principal);
            AuthnFuture::pending(async move {
                let answer = this.is_revoked(&principal).await;
                if let (Some((key, generation)), Ok(is_revoked), Some(cache)) = (key, &answer, &this.inner.cache) {
                    let until = this.inner.clock.monotonic().saturating_add(cache.ttl);
                    cache.answers.insert(key, (*is_revoked, until));
                    // A local revocation landed while Redis was answering: the answer may predate it.
                    if cache.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
                        cache.answers.remove(&key);
                    }
                }
                match answer {
                    Ok(false) => Ok(()),
                    Ok(true) => Err(revoked("on the Redis denylist")),
                    Err(e) => {
                        metrics::counter!("msec_authn_revocation_backend_failures_total").increment(1);
                        match this.inner.policy {
                            FailurePolicy::Open => {
                                tracing::warn!(error = %e, "msec-authn: revocation check failed; failing open");
                                Ok(())
                            }
                            FailurePolicy::Closed => {
                                tracing::warn!(error = %e, "msec-authn: revocation check failed; failing closed");
                                Err(AuthnError::new(AuthnErrorKind::RevocationUnavailable, e.to_string()))
                            }
                        }
                    }
                }
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keys_are_fixed_length_and_distinct() {
            let a = key("p", "jti", Some("ab"), "c");
            let b = key("p", "jti", Some("a"), "bc");
            let c = key("p", "jti", None, "abc");
            assert_ne!(a, b);
            assert_ne!(a, c);
            assert_eq!(a.len(), "p:jti:".len() + 32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msec_core::clock::ManualClock;
    use serde_json::json;
    use std::time::Duration;

    fn principal(jti: Option<&str>, iat: Option<u64>) -> Principal {
        let mut claims = serde_json::Map::new();
        if let Some(i) = iat {
            claims.insert("iat".into(), json!(i));
        }
        let mut b = Principal::builder("alice").issuer("https://id").claims(claims);
        if let Some(j) = jti {
            b = b.token_id(j);
        }
        b.build()
    }

    #[test]
    fn memory_entries_expire_and_bound() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let d = MemoryDenylist::with_clock(2, clock.clone());
        let now = clock.now();
        let p = principal(Some("t1"), Some(1_699_999_000));
        assert!(!d.is_revoked(&p));
        d.revoke_token(Some("https://id"), "t1", now + Duration::from_secs(60))
            .unwrap();
        assert!(d.is_revoked(&p));
        // Another issuer's token with the same jti is not affected.
        let mut other = p.clone();
        other.issuer = Some("https://other".into());
        assert!(!d.is_revoked(&other));
        // A past expiry is a no-op; the list is bounded.
        d.revoke_token(None, "old", now - Duration::from_secs(1)).unwrap();
        d.revoke_token(None, "t2", now + Duration::from_secs(600)).unwrap();
        assert_eq!(
            d.revoke_token(None, "t3", now + Duration::from_secs(600)),
            Err(RevocationError::Full(2))
        );
        clock.advance(Duration::from_secs(61));
        assert!(!d.is_revoked(&p));
        // The expired entry makes room.
        d.revoke_token(None, "t3", now + Duration::from_secs(600)).unwrap();
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn subject_entries_spare_later_tokens() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let d = MemoryDenylist::with_clock(10, clock.clone());
        d.revoke_subject(None, "alice", clock.now() + Duration::from_secs(3600))
            .unwrap();
        assert!(d.is_revoked(&principal(None, Some(1_699_999_999))));
        assert!(d.is_revoked(&principal(None, None)));
        assert!(!d.is_revoked(&principal(None, Some(1_700_000_001))));
        assert_eq!(
            d.revoke_principal(&principal(None, None)),
            Err(RevocationError::NoTokenId)
        );
    }
}
