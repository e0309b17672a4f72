//! [`ApiKeyStore`]: where records live; [`MemoryApiKeyStore`]: in process, loadable from JSON lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use super::ApiKeyError;
use super::record::ApiKeyRecord;
use crate::authenticator::AuthnFuture;

/// What went wrong in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store cannot be reached, timed out, or failed (the request gets 503
    /// `credential_store_unavailable`).
    Unavailable,
    /// A record with this key id exists already.
    Conflict,
    /// A stored record is not readable.
    Corrupt,
}

/// A store failure. The detail is for logs and the audit decision, never for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    detail: Cow<'static, str>,
}

impl StoreError {
    /// An error of `kind`.
    pub fn new(kind: StoreErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// `Unavailable` with `detail`.
    pub fn unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StoreErrorKind::Unavailable, detail)
    }

    /// The kind.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "API key store ({:?}): {}", self.kind, self.detail)
    }
}

impl std::error::Error for StoreError {}

/// The result of a store operation, possibly ready at once (in-memory stores answer without awaiting).
pub type StoreFuture<T> = AuthnFuture<Result<T, StoreError>>;

/// Where API key records live, looked up by key id.
///
/// Implementations answer with an [`AuthnFuture`]: an in-memory store returns a ready one, so the
/// authenticator verifies a key without boxing or awaiting; a database store returns a pending one.
pub trait ApiKeyStore: Send + Sync + 'static {
    /// A short name for logs (`memory`, `postgres`).
    fn name(&self) -> &'static str;

    /// The record of `key_id`, if any.
    fn get(&self, key_id: &str) -> StoreFuture<Option<Arc<ApiKeyRecord>>>;

    /// Adds a record (refused with [`StoreErrorKind::Conflict`] when its key id exists).
    fn insert(&self, record: ApiKeyRecord) -> StoreFuture<()>;

    /// Marks `key_id` revoked. `false` when there is no such key.
    fn revoke(&self, key_id: &str) -> StoreFuture<bool>;

    /// Every record of `subject` (active or not), e.g. to list a principal's keys while rotating.
    fn keys_of(&self, subject: &str) -> StoreFuture<Vec<ApiKeyRecord>>;
}

impl<T: ApiKeyStore + ?Sized> ApiKeyStore for Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn get(&self, key_id: &str) -> StoreFuture<Option<Arc<ApiKeyRecord>>> {
        (**self).get(key_id)
    }
    fn insert(&self, record: ApiKeyRecord) -> StoreFuture<()> {
        (**self).insert(record)
    }
    fn revoke(&self, key_id: &str) -> StoreFuture<bool> {
        (**self).revoke(key_id)
    }
    fn keys_of(&self, subject: &str) -> StoreFuture<Vec<ApiKeyRecord>> {
        (**self).keys_of(subject)
    }
}

/// Records in a `HashMap` behind a read-write lock. Clones share the map. Every operation is ready at once.
///
/// ```
/// use msec_authn::apikey::{ApiKeySpec, ApiKeyStore, KeyHasher, MemoryApiKeyStore};
/// use std::time::SystemTime;
///
/// let issued = ApiKeySpec::new("sk_live").subject("bot").issue(&KeyHasher::sha256(), SystemTime::now())?;
/// let store = MemoryApiKeyStore::from_json_lines(&issued.record.to_json_line())?;
/// assert_eq!(store.len(), 1);
/// let found = store.get(issued.key.key_id()).into_ready().ok().and_then(Result::ok).flatten();
/// assert_eq!(found.map(|r| r.subject.clone()).as_deref(), Some("bot"));
/// # Ok::<(), msec_authn::apikey::ApiKeyError>(())
/// ```
#[derive(Clone, Default)]
pub struct MemoryApiKeyStore {
    map: Arc<RwLock<HashMap<String, Arc<ApiKeyRecord>>>>,
}

impl fmt::Debug for MemoryApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryApiKeyStore").field("keys", &self.len()).finish()
    }
}

impl MemoryApiKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `records` (validated; duplicate key ids refused).
    pub fn from_records<I: IntoIterator<Item = ApiKeyRecord>>(records: I) -> Result<Self, ApiKeyError> {
        let mut map = HashMap::new();
        for r in records {
            r.validate()?;
            if map.contains_key(&r.key_id) {
                return Err(ApiKeyError::InvalidRecord(format!("key id {} appears twice", r.key_id)));
            }
            map.insert(r.key_id.clone(), Arc::new(r));
        }
        Ok(Self {
            map: Arc::new(RwLock::new(map)),
        })
    }

    /// A store from JSON lines, one [`ApiKeyRecord`] per line (as `msec apikey new` prints them). Blank lines
    /// and lines starting with `#` are skipped.
    pub fn from_json_lines(text: &str) -> Result<Self, ApiKeyError> {
        let mut records = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let r: ApiKeyRecord =
                serde_json::from_str(line).map_err(|e| ApiKeyError::InvalidRecord(format!("line {}: {e}", n + 1)))?;
            records.push(r);
        }
        Self::from_records(records)
    }

    /// A store from a file of JSON lines (see [`from_json_lines`](Self::from_json_lines)).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ApiKeyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ApiKeyError::Io(format!("{}: {e}", path.display())))?;
        Self::from_json_lines(&text).map_err(|e| match e {
            ApiKeyError::InvalidRecord(m) => ApiKeyError::InvalidRecord(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// How many records the store holds.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// True when the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every record.
    pub fn records(&self) -> Vec<ApiKeyRecord> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.values().map(|r| (**r).clone()).collect()
    }
}

impl ApiKeyStore for MemoryApiKeyStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get(&self, key_id: &str) -> StoreFuture<Option<Arc<ApiKeyRecord>>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        AuthnFuture::ready(Ok(map.get(key_id).cloned()))
    }

    fn insert(&self, record: ApiKeyRecord) -> StoreFuture<()> {
        if let Err(e) = record.validate() {
            return AuthnFuture::ready(Err(StoreError::new(StoreErrorKind::Corrupt, e.to_string())));
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&record.key_id) {
            return AuthnFuture::ready(Err(StoreError::new(StoreErrorKind::Conflict, "key id exists")));
        }
        map.insert(record.key_id.clone(), Arc::new(record));
        AuthnFuture::ready(Ok(()))
    }

    fn revoke(&self, key_id: &str) -> StoreFuture<bool> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let found = match map.get_mut(key_id) {
            Some(r) => {
                Arc::make_mut(r).revoked = true;
                true
            }
            None => false,
        };
        AuthnFuture::ready(Ok(found))
    }

    fn keys_of(&self, subject: &str) -> StoreFuture<Vec<ApiKeyRecord>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<ApiKeyRecord> = map
            .values()
            .filter(|r| r.subject == subject)
            .map(|r| (**r).clone())
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        AuthnFuture::ready(Ok(v))
    }
}
