//! [`ApiKeyStore`]: where records live; [`MemoryApiKeyStore`]: in process, loadable from JSON lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

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
    map: Arc<RwLock<RecordMap>>,
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
        Ok(Self {
            map: Arc::new(RwLock::new(map_of(records)?)),
        })
    }

    /// A store from JSON lines, one [`ApiKeyRecord`] per line (as `msec apikey new` prints them). Blank lines
    /// and lines starting with `#` are skipped.
    pub fn from_json_lines(text: &str) -> Result<Self, ApiKeyError> {
        Self::from_records(parse_lines(text)?)
    }

    /// A store from a file of JSON lines (see [`from_json_lines`](Self::from_json_lines)). To follow later
    /// changes of the file, see [`watch_file`](Self::watch_file).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ApiKeyError> {
        let path = path.as_ref();
        let text = read_records_file(path)?;
        Self::from_json_lines(&text).map_err(|e| in_file(path, e))
    }

    /// Replaces every record with those of `text` (JSON lines, as [`from_json_lines`](Self::from_json_lines)
    /// reads them) in one swap, and returns how many there are now. The text is checked as a whole first: on any
    /// error the store keeps the records it had, so a half-written file never locks every key out.
    ///
    /// The text is the source of truth: a revocation made only through [`ApiKeyStore::revoke`] on this store is
    /// undone by a reload whose text does not mark the key revoked (`msec apikey revoke --file` does).
    ///
    /// ```
    /// use msec_authn::apikey::{ApiKeySpec, KeyHasher, MemoryApiKeyStore};
    /// use std::time::SystemTime;
    ///
    /// let h = KeyHasher::sha256();
    /// let a = ApiKeySpec::new("sk_live").subject("a").issue(&h, SystemTime::now())?;
    /// let b = ApiKeySpec::new("sk_live").subject("b").issue(&h, SystemTime::now())?;
    /// let store = MemoryApiKeyStore::from_json_lines(&a.record.to_json_line())?;
    /// let both = format!("{}\n{}\n", a.record.to_json_line(), b.record.to_json_line());
    /// assert_eq!(store.replace_from_json_lines(&both)?, 2);
    /// // A broken text changes nothing.
    /// assert!(store.replace_from_json_lines("{not json").is_err());
    /// assert_eq!(store.len(), 2);
    /// # Ok::<(), msec_authn::apikey::ApiKeyError>(())
    /// ```
    pub fn replace_from_json_lines(&self, text: &str) -> Result<usize, ApiKeyError> {
        let map = map_of(parse_lines(text)?)?;
        let n = map.len();
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = map;
        Ok(n)
    }

    /// Re-reads `path` (see [`replace_from_json_lines`](Self::replace_from_json_lines)): on any error the store
    /// keeps the records it had.
    pub fn reload_from_file(&self, path: impl AsRef<Path>) -> Result<usize, ApiKeyError> {
        let path = path.as_ref();
        let text = read_records_file(path)?;
        self.replace_from_json_lines(&text).map_err(|e| in_file(path, e))
    }

    /// Keeps the store in step with `path`: a Tokio task re-reads the file every `every` and, when its bytes
    /// changed, swaps in its records ([`reload_from_file`](Self::reload_from_file) rules: a file that does not
    /// parse, or cannot be read, leaves the records as they were and is logged and counted in
    /// `msec_authn_apikey_reloads_total{result="failed"}`). A key added with `msec apikey new >> file`, or
    /// revoked with `msec apikey revoke --file`, takes effect within `every` on every replica that reads the
    /// file (a Kubernetes Secret or ConfigMap volume, say). Abort the returned handle to stop watching.
    ///
    /// Must be called inside a Tokio runtime; `every` is at least 100 ms.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), msec_authn::apikey::ApiKeyError> {
    /// use msec_authn::apikey::MemoryApiKeyStore;
    /// use std::time::Duration;
    ///
    /// let store = MemoryApiKeyStore::from_file("/etc/msec/api-keys.jsonl")?;
    /// let _watch = store.watch_file("/etc/msec/api-keys.jsonl", Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn watch_file(&self, path: impl Into<std::path::PathBuf>, every: Duration) -> tokio::task::JoinHandle<()> {
        let path = path.into();
        let store = self.clone();
        let every = every.max(Duration::from_millis(100));
        // The bytes already loaded are not known here; the first pass reloads once, which is harmless.
        tokio::spawn(async move {
            let mut last: Option<ring::digest::Digest> = None;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let text = match read_records_file(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        reload_failed(&path, &e);
                        continue;
                    }
                };
                let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
                if last.as_ref().is_some_and(|d| d.as_ref() == digest.as_ref()) {
                    continue;
                }
                match store.replace_from_json_lines(&text) {
                    Ok(n) => {
                        last = Some(digest);
                        metrics::counter!("msec_authn_apikey_reloads_total", "result" => "loaded").increment(1);
                        tracing::info!(file = %path.display(), keys = n, "msec-authn: API key records reloaded");
                    }
                    Err(e) => reload_failed(&path, &in_file(&path, e)),
                }
            }
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

/// The most bytes a records file may hold (a million keys' records fit well within it).
const MAX_RECORDS_FILE: u64 = 256 * 1024 * 1024;

type RecordMap = HashMap<String, Arc<ApiKeyRecord>>;

/// Validated records by key id; a repeated key id is refused.
fn map_of<I: IntoIterator<Item = ApiKeyRecord>>(records: I) -> Result<RecordMap, ApiKeyError> {
    let mut map = HashMap::new();
    for r in records {
        r.validate()?;
        if map.contains_key(&r.key_id) {
            return Err(ApiKeyError::InvalidRecord(format!("key id {} appears twice", r.key_id)));
        }
        map.insert(r.key_id.clone(), Arc::new(r));
    }
    Ok(map)
}

/// One record per line; blank lines and `#` comments skipped.
fn parse_lines(text: &str) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
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
    Ok(records)
}

fn read_records_file(path: &Path) -> Result<String, ApiKeyError> {
    let io = |e: std::io::Error| ApiKeyError::Io(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_RECORDS_FILE {
        return Err(ApiKeyError::Io(format!(
            "{}: {len} bytes is more than a records file may hold ({MAX_RECORDS_FILE})",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(io)
}

fn in_file(path: &Path, e: ApiKeyError) -> ApiKeyError {
    match e {
        ApiKeyError::InvalidRecord(m) => ApiKeyError::InvalidRecord(format!("{}: {m}", path.display())),
        other => other,
    }
}

fn reload_failed(path: &Path, e: &ApiKeyError) {
    metrics::counter!("msec_authn_apikey_reloads_total", "result" => "failed").increment(1);
    tracing::warn!(file = %path.display(), error = %e, "msec-authn: API key records not reloaded; the previous ones stay");
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
