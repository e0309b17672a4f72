//! The verified-token cache: a bounded concurrent cache (quick_cache, S3-FIFO) from SHA-256(token) to the
//! principal it verified to.
//!
//! - Only successful verifications are cached (a flood of bad tokens cannot fill it).
//! - An entry is used only while `now < exp` (it never outlives the token), and only while the key that verified
//!   it is still in its issuer's usable key set; entries whose key left the JWKS are also purged eagerly when the
//!   set changes.
//! - The key is a hash, so the cache holds no bearer tokens.

use std::sync::Arc;

use msec_core::Principal;

/// A cached verification.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) principal: Arc<Principal>,
    /// `exp` in Unix seconds (`i64::MAX` when the token has none).
    pub(crate) exp: i64,
    pub(crate) key_id: u64,
    pub(crate) issuer: u32,
}

pub(crate) type Digest = [u8; 32];

/// SHA-256 of the token.
pub(crate) fn digest(token: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub(crate) struct TokenCache {
    cache: quick_cache::sync::Cache<Digest, Entry>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.cache.len())
            .field("capacity", &self.cache.capacity())
            .finish()
    }
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(capacity),
        }
    }

    pub(crate) fn get(&self, key: &Digest) -> Option<Entry> {
        self.cache.get(key)
    }

    pub(crate) fn insert(&self, key: Digest, entry: Entry) {
        self.cache.insert(key, entry);
    }

    pub(crate) fn remove(&self, key: &Digest) {
        self.cache.remove(key);
    }

    /// Drops every entry verified by one of `key_ids`.
    pub(crate) fn purge_keys(&self, key_ids: &[u64]) {
        self.cache.retain(|_, e| !key_ids.contains(&e.key_id));
    }

    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}
