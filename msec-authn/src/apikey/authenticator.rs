//! [`ApiKeyAuthenticator`]: finds an API key in a request and checks it against an [`ApiKeyStore`].

use std::fmt;
use std::sync::Arc;

use msec_core::clock::{SharedClock, SystemClock};
use msec_core::{AuthMethod, Principal, PrincipalKind};

use super::ApiKeyError;
use super::digest::{KeyDigest, KeyHasher};
use super::format::{MAX_KEY_LEN, parse_key, valid_prefix};
use super::record::ApiKeyRecord;
use super::store::{ApiKeyStore, StoreError};
use crate::authenticator::{Attempt, Authenticated, Authenticator, AuthnFuture, AuthnResult, RequestHead};
use crate::error::{AuthnError, AuthnErrorKind};
use crate::source::{Extracted, TokenSource};

/// The default header API keys are read from.
pub const DEFAULT_HEADER: &str = "x-api-key";

struct Inner {
    store: Arc<dyn ApiKeyStore>,
    hasher: KeyHasher,
    header: Option<TokenSource>,
    bearer: bool,
    prefixes: Vec<String>,
    clock: SharedClock,
}

/// Checks API keys from a header (default `x-api-key`) and from `Authorization: Bearer` values that start with
/// an accepted prefix, so JWTs in the same header still reach a [`JwtAuthenticator`](crate::JwtAuthenticator)
/// in an [`AuthnChain`](crate::AuthnChain).
///
/// Per request: the checksum is checked (a typo or a made-up key never reaches the store), the key is digested,
/// the record is looked up by key id and the digests compared in constant time; then revocation and expiry.
/// Clients see `invalid_api_key` for every kind of wrong key (the audit detail says which), `api_key_revoked`,
/// `api_key_expired`, or 503 `credential_store_unavailable` when the store fails.
///
/// The principal has kind [`PrincipalKind::ApiKey`], the record's subject, scopes and tenant,
/// `auth = AuthMethod::ApiKey { key_id }` and `token_id = key_id`, so the audit log names the key.
///
/// Clones share the store and settings.
///
/// ```
/// use msec_authn::{AuthnChain, AuthnLayer, JwtAuthenticator};
/// use msec_authn::apikey::{ApiKeyAuthenticator, KeyHasher, MemoryApiKeyStore};
/// # let validator = msec_authn::jwt::JwtValidator::builder()
/// #     .issuer(msec_authn::jwt::Issuer::new("https://id.example.com").audience("api")
/// #         .pem_key(Some("k"), jsonwebtoken::Algorithm::ES256, msec_test_support::TestKey::es256().public_pem.as_bytes()))
/// #     .build()?;
/// let keys = ApiKeyAuthenticator::new(MemoryApiKeyStore::new(), KeyHasher::sha256()).prefixes(["sk_live"])?;
/// let layer = AuthnLayer::new(AuthnChain::new().with(JwtAuthenticator::new(validator)).with(keys));
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ApiKeyAuthenticator {
    inner: Arc<Inner>,
}

impl fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("store", &self.inner.store.name())
            .field("hasher", &self.inner.hasher)
            .field("header", &self.inner.header)
            .field("bearer", &self.inner.bearer)
            .field("prefixes", &self.inner.prefixes)
            .finish()
    }
}

fn invalid(detail: &'static str) -> AuthnError {
    AuthnError::new(AuthnErrorKind::InvalidApiKey, detail)
}

impl ApiKeyAuthenticator {
    /// Checks keys against `store` with `hasher`, reading header `x-api-key` and `Authorization: Bearer`, any
    /// prefix.
    pub fn new(store: impl ApiKeyStore, hasher: KeyHasher) -> Self {
        Self::shared(Arc::new(store), hasher)
    }

    /// Like [`new`](Self::new) with a shared store.
    pub fn shared(store: Arc<dyn ApiKeyStore>, hasher: KeyHasher) -> Self {
        let header = TokenSource::header(DEFAULT_HEADER).ok();
        Self {
            inner: Arc::new(Inner {
                store,
                hasher,
                header,
                bearer: true,
                prefixes: Vec::new(),
                clock: Arc::new(SystemClock),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                let mut inner = Inner {
                    store: Arc::clone(&self.inner.store),
                    hasher: self.inner.hasher.clone(),
                    header: self.inner.header.clone(),
                    bearer: self.inner.bearer,
                    prefixes: self.inner.prefixes.clone(),
                    clock: Arc::clone(&self.inner.clock),
                };
                f(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// Reads keys from header `name` instead of `x-api-key`.
    pub fn header(self, name: &str) -> Result<Self, ApiKeyError> {
        let src = TokenSource::header(name).map_err(|e| ApiKeyError::Config(e.to_string()))?;
        Ok(self.edit(|i| i.header = Some(src)))
    }

    /// Reads no dedicated header (only `Authorization: Bearer`, when enabled).
    #[must_use]
    pub fn no_header(self) -> Self {
        self.edit(|i| i.header = None)
    }

    /// Whether `Authorization: Bearer` values are looked at (default: yes). Only values that start with an
    /// accepted prefix followed by `_` are claimed; others (JWTs) are left to the next authenticator.
    #[must_use]
    pub fn bearer(self, on: bool) -> Self {
        self.edit(|i| i.bearer = on)
    }

    /// Accepts only keys with these prefixes (e.g. `sk_live` in production, so `sk_test` keys are refused
    /// without a lookup). Without this, any well-formed key is looked up.
    pub fn prefixes<I, S>(self, prefixes: I) -> Result<Self, ApiKeyError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let prefixes: Vec<String> = prefixes.into_iter().map(Into::into).collect();
        if let Some(p) = prefixes.iter().find(|p| !valid_prefix(p)) {
            return Err(ApiKeyError::InvalidPrefix(p.clone()));
        }
        Ok(self.edit(|i| i.prefixes = prefixes))
    }

    /// The clock expiry is checked against (tests use `ManualClock`).
    #[must_use]
    pub fn clock(self, clock: SharedClock) -> Self {
        self.edit(|i| i.clock = clock)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ApiKeyStore> {
        &self.inner.store
    }

    /// True when a bearer value is shaped like one of our keys: an accepted prefix and `_`, or (no prefixes
    /// configured) a `<prefix>_<body>` with no `.` (JWTs have two).
    fn claims_bearer(&self, raw: &[u8]) -> bool {
        if self.inner.prefixes.is_empty() {
            return raw.len() <= MAX_KEY_LEN && raw.contains(&b'_') && !raw.contains(&b'.');
        }
        self.inner
            .prefixes
            .iter()
            .any(|p| raw.len() > p.len() && raw.starts_with(p.as_bytes()) && raw[p.len()] == b'_')
    }

    /// Verifies a raw key: format and checksum, prefix, digest, lookup, constant-time compare, revocation,
    /// expiry.
    pub fn verify(&self, raw: &[u8]) -> AuthnFuture<AuthnResult> {
        if raw.len() > MAX_KEY_LEN {
            return AuthnFuture::ready(Err(invalid("too_long")));
        }
        let Ok(key) = std::str::from_utf8(raw) else {
            return AuthnFuture::ready(Err(invalid("bad_character")));
        };
        let parsed = match parse_key(key) {
            Ok(p) => p,
            Err(e) => return AuthnFuture::ready(Err(invalid(e.as_str()))),
        };
        let prefixes = &self.inner.prefixes;
        if !prefixes.is_empty() && !prefixes.iter().any(|p| p == parsed.prefix()) {
            return AuthnFuture::ready(Err(invalid("prefix_not_accepted")));
        }
        // Digest before the lookup: an unknown key id costs the same work, and the pending path needs no copy
        // of the secret.
        let digest = self.inner.hasher.digest(parsed.expose_secret());
        let key_id = parsed.key_id();
        match self.inner.store.get(key_id).into_ready() {
            Ok(found) => AuthnFuture::ready(self.inner.check(found, &digest, key_id)),
            Err(pending) => {
                let inner = Arc::clone(&self.inner);
                let key_id = key_id.to_owned();
                AuthnFuture::pending(async move { inner.check(pending.await, &digest, &key_id) })
            }
        }
    }
}

impl Inner {
    fn check(
        &self,
        found: Result<Option<Arc<ApiKeyRecord>>, StoreError>,
        digest: &KeyDigest,
        key_id: &str,
    ) -> AuthnResult {
        let record = match found {
            Ok(Some(r)) => r,
            Ok(None) => return Err(invalid("unknown_key_id")),
            Err(e) => {
                tracing::warn!(store = self.store.name(), error = %e, "msec-authn: API key store failed");
                return Err(AuthnError::new(
                    AuthnErrorKind::CredentialStoreUnavailable,
                    format!("{} store: {}", self.store.name(), e.detail()),
                ));
            }
        };
        if record.digest_alg != self.hasher.alg() {
            return Err(invalid("digest_alg_mismatch"));
        }
        if !record.digest.ct_eq(digest) || record.key_id != key_id {
            return Err(invalid("secret_mismatch"));
        }
        // Only a holder of the real key learns that it is revoked or expired.
        if record.revoked {
            return Err(AuthnError::new(
                AuthnErrorKind::ApiKeyRevoked,
                format!("key {key_id} revoked"),
            ));
        }
        let now = self.clock.now();
        if record.is_expired_at(now) {
            return Err(AuthnError::new(
                AuthnErrorKind::ApiKeyExpired,
                format!("key {key_id} expired"),
            ));
        }
        let mut b = Principal::builder(record.subject.as_str())
            .kind(PrincipalKind::ApiKey)
            .scopes(record.scopes.iter().map(String::as_str))
            .token_id(key_id)
            .auth(AuthMethod::ApiKey {
                key_id: key_id.to_owned(),
            });
        if let Some(t) = &record.tenant {
            b = b.tenant(t.as_str());
        }
        if let Some(e) = record.expires_at {
            b = b.expires_at(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(e));
        }
        Ok(Authenticated::new(Arc::new(b.build())))
    }
}

impl Authenticator for ApiKeyAuthenticator {
    fn name(&self) -> &'static str {
        "api_key"
    }

    fn authenticate(&self, head: &RequestHead<'_>) -> Attempt {
        if let Some(src) = &self.inner.header {
            match src.extract(head) {
                Extracted::None => {}
                Extracted::Malformed(why) => {
                    return Attempt::Declined(AuthnError::new(AuthnErrorKind::MalformedToken, why));
                }
                // Anything in the dedicated header is an API key attempt.
                Extracted::Found(raw) => return Attempt::Claimed(self.verify(raw)),
            }
        }
        if self.inner.bearer
            && let Extracted::Found(raw) = TokenSource::bearer().extract(head)
            && self.claims_bearer(raw)
        {
            return Attempt::Claimed(self.verify(raw));
        }
        Attempt::Absent
    }
}
