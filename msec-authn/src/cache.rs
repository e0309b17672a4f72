//! The verified-token cache: a bounded concurrent cache (quick_cache, S3-FIFO) from a keyed digest of the token
//! to the principal it verified to.
//!
//! - Only successful verifications are cached (a flood of bad tokens cannot fill it).
//! - An entry is used only while `now < exp` (it never outlives the token), and only while the key that verified
//!   it is still in its issuer's usable key set; entries whose key left the JWKS are also purged eagerly when the
//!   set changes.
//! - The key is a digest, so the cache holds no bearer tokens: SipHash-2-4 with a 128-bit output under a random
//!   128-bit key drawn once per process (a pseudorandom function of the token; without the key nobody can
//!   compute, let alone collide, another token's entry), about half of SHA-256's time on a typical JWT (the
//!   `jwt/overheads` bench). If the system RNG cannot give the key, the digest is SHA-256 truncated to 128 bits
//!   instead.

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

pub(crate) type Digest = [u8; 16];

/// The per-process SipHash key, `None` if the system RNG failed.
fn key() -> Option<&'static [u8; 16]> {
    static KEY: std::sync::OnceLock<Option<[u8; 16]>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
            .ok()
            .map(|()| k)
    })
    .as_ref()
}

/// The cache key of `token` (see the module docs).
pub(crate) fn digest(token: &[u8]) -> Digest {
    let mut d = Digester::new();
    d.update(token);
    d.finish()
}

/// A keyed digest fed in parts (the module docs' function): for cache keys made of several fields, which the
/// caller length-prefixes. Local to this process: never for keys other processes must compute (Redis).
pub(crate) enum Digester {
    Keyed(siphasher::sip128::SipHasher24),
    Fallback(ring::digest::Context),
}

impl Digester {
    pub(crate) fn new() -> Self {
        match key() {
            Some(k) => Self::Keyed(siphasher::sip128::SipHasher24::new_with_key(k)),
            None => Self::Fallback(ring::digest::Context::new(&ring::digest::SHA256)),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Keyed(h) => std::hash::Hasher::write(h, bytes),
            Self::Fallback(c) => c.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> Digest {
        match self {
            Self::Keyed(h) => u128::from(siphasher::sip128::Hasher128::finish128(&h)).to_le_bytes(),
            Self::Fallback(c) => {
                let d = c.finish();
                let mut out = [0; 16];
                out.copy_from_slice(&d.as_ref()[..16]);
                out
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_keyed_and_distinct() {
        let a = digest(b"header.payload.signature");
        assert_eq!(a, digest(b"header.payload.signature"), "stable within the process");
        assert_ne!(a, digest(b"header.payload.signaturf"));
        assert_ne!(a, digest(b"header.payload.signature "));
        assert_ne!(digest(b""), digest(b"\0"));
        // Keyed: not the unkeyed SipHash-2-4 (key 0) nor a prefix of SHA-256 of the token.
        let mut unkeyed = siphasher::sip128::SipHasher24::new_with_key(&[0; 16]);
        std::hash::Hasher::write(&mut unkeyed, b"header.payload.signature");
        let unkeyed = u128::from(siphasher::sip128::Hasher128::finish128(&unkeyed)).to_le_bytes();
        assert_ne!(a, unkeyed);
        let sha = ring::digest::digest(&ring::digest::SHA256, b"header.payload.signature");
        assert_ne!(&a[..], &sha.as_ref()[..16]);
    }
}
