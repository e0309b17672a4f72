//! Envelope encryption: data keys generated here, wrapped by a [`Kms`], carried inside each ciphertext.
//!
//! Calling the KMS for every record would make a bulk job as slow as the KMS and as expensive as its bill, so
//! data keys are cached with bounds, as in the AWS Encryption SDK's caching materials manager:
//!
//! - encryption reuses the current data key for at most [`DataKeyPolicy::max_messages_per_key`] messages and
//!   [`DataKeyPolicy::max_key_age`], then asks the KMS for a new one;
//! - decryption keeps at most [`DataKeyPolicy::max_cached_keys`] unwrapped data keys (oldest evicted first), each
//!   for at most `max_key_age`, keyed by the SHA-256 of the wrapped key.
//!
//! Every message still gets its own HKDF-derived key, so reusing a data key for many messages is as safe as
//! using a keyring key for them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msec_core::clock::{SharedClock, SystemClock};
use ring::digest;
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::context::Context;
use crate::error::{Error, KmsError};
use crate::format::{self, Ciphertext, KeyRef};
use crate::key::KeyMaterial;
use crate::kms::Kms;
use crate::primitive::{self, Algorithm};

/// Bounds on data-key reuse and caching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyPolicy {
    /// Messages encrypted under one data key before a new one is requested (default 1 000 000).
    pub max_messages_per_key: u64,
    /// Age after which a data key is neither used to encrypt nor kept for decryption (default 5 minutes).
    pub max_key_age: Duration,
    /// Unwrapped data keys kept for decryption (default 1 000).
    pub max_cached_keys: usize,
}

impl Default for DataKeyPolicy {
    fn default() -> Self {
        Self {
            max_messages_per_key: 1_000_000,
            max_key_age: Duration::from_secs(300),
            max_cached_keys: 1_000,
        }
    }
}

/// Counters of an [`EnvelopeAead`] (what the cache saved).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvelopeStats {
    /// KMS wrap calls (new data keys).
    pub kms_wraps: u64,
    /// KMS unwrap calls (decryption cache misses).
    pub kms_unwraps: u64,
    /// Decryptions served from the cache.
    pub cache_hits: u64,
}

struct Current {
    key: Arc<KeyMaterial>,
    wrapped: Arc<[u8]>,
    used: u64,
    created: Duration,
}

#[derive(Default)]
struct DecryptCache {
    map: HashMap<[u8; 32], (Arc<KeyMaterial>, Duration)>,
    order: VecDeque<[u8; 32]>,
}

/// Envelope encryption over a [`Kms`] (Tink's `KmsEnvelopeAead`, with a bounded data-key cache).
///
/// ```
/// # futures_util::FutureExt::now_or_never(async {
/// use msec_crypto::{Algorithm, Context, EnvelopeAead, LocalKms};
///
/// let env = EnvelopeAead::new(LocalKms::generate()?, Algorithm::Aes256Gcm);
/// let ctx = Context::new("docs", "body", "1");
/// let ct = env.encrypt(b"hello", &ctx).await?;
/// assert!(ct.to_text().starts_with("msec:v1:env:"));
/// assert_eq!(&*env.decrypt(&ct, &ctx).await?, b"hello");
/// assert_eq!(env.stats().kms_wraps, 1);
/// assert_eq!(env.stats().kms_unwraps, 0); // its own data key was cached
/// # Ok::<(), msec_crypto::Error>(())
/// # }).unwrap()?;
/// # Ok::<(), msec_crypto::Error>(())
/// ```
pub struct EnvelopeAead<K> {
    kms: K,
    algorithm: Algorithm,
    policy: DataKeyPolicy,
    clock: SharedClock,
    rng: SystemRandom,
    current: Mutex<Option<Current>>,
    cache: Mutex<DecryptCache>,
    kms_wraps: AtomicU64,
    kms_unwraps: AtomicU64,
    cache_hits: AtomicU64,
}

impl<K: fmt::Debug> fmt::Debug for EnvelopeAead<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvelopeAead")
            .field("kms", &self.kms)
            .field("algorithm", &self.algorithm)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn dek_aad(algorithm: Algorithm) -> Vec<u8> {
    let mut v = b"msec-envelope-dek/v1 ".to_vec();
    v.extend_from_slice(algorithm.name().as_bytes());
    v
}

impl<K: Kms> EnvelopeAead<K> {
    /// Envelope encryption with `algorithm` data keys wrapped by `kms`, the default [`DataKeyPolicy`] and the
    /// system clock.
    pub fn new(kms: K, algorithm: Algorithm) -> Self {
        Self {
            kms,
            algorithm,
            policy: DataKeyPolicy::default(),
            clock: Arc::new(SystemClock),
            rng: SystemRandom::new(),
            current: Mutex::new(None),
            cache: Mutex::new(DecryptCache::default()),
            kms_wraps: AtomicU64::new(0),
            kms_unwraps: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }

    /// Sets the data-key bounds.
    pub fn with_policy(mut self, policy: DataKeyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Uses `clock` for data-key ages.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The KMS.
    pub fn kms(&self) -> &K {
        &self.kms
    }

    /// Counters.
    pub fn stats(&self) -> EnvelopeStats {
        EnvelopeStats {
            kms_wraps: self.kms_wraps.load(Ordering::Relaxed),
            kms_unwraps: self.kms_unwraps.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    fn usable(&self, c: &Current, now: Duration) -> bool {
        c.used < self.policy.max_messages_per_key && now.saturating_sub(c.created) < self.policy.max_key_age
    }

    async fn data_key(&self) -> Result<(Arc<KeyMaterial>, Arc<[u8]>), Error> {
        {
            let now = self.clock.monotonic();
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cur.as_mut().filter(|c| self.usable(c, now)) {
                c.used += 1;
                return Ok((c.key.clone(), c.wrapped.clone()));
            }
        }
        let raw = primitive::random_key(&self.rng)?;
        self.kms_wraps.fetch_add(1, Ordering::Relaxed);
        let wrapped: Arc<[u8]> = self.kms.wrap_key(raw.as_ref(), &dek_aad(self.algorithm)).await?.into();
        let key = Arc::new(KeyMaterial::new(self.algorithm, raw));
        let now = self.clock.monotonic();
        self.remember(&wrapped, key.clone(), now);
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *cur = Some(Current {
            key: key.clone(),
            wrapped: wrapped.clone(),
            used: 1,
            created: now,
        });
        tracing::debug!("msec-crypto: new envelope data key");
        Ok((key, wrapped))
    }

    fn remember(&self, wrapped: &[u8], key: Arc<KeyMaterial>, now: Duration) {
        if self.policy.max_cached_keys == 0 {
            return;
        }
        let id = fingerprint(wrapped);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.map.insert(id, (key, now)).is_none() {
            cache.order.push_back(id);
        }
        while cache.map.len() > self.policy.max_cached_keys {
            match cache.order.pop_front() {
                Some(old) => {
                    cache.map.remove(&old);
                }
                None => break,
            }
        }
    }

    fn cached(&self, wrapped: &[u8], now: Duration) -> Option<Arc<KeyMaterial>> {
        let id = fingerprint(wrapped);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.map.get(&id) {
            Some((k, at)) if now.saturating_sub(*at) < self.policy.max_key_age => Some(k.clone()),
            Some(_) => {
                cache.map.remove(&id);
                cache.order.retain(|x| *x != id);
                None
            }
            None => None,
        }
    }

    /// Encrypts `plaintext` for `context` under the current data key.
    pub async fn encrypt(&self, plaintext: &[u8], context: &Context) -> Result<Ciphertext, Error> {
        let (key, wrapped) = self.data_key().await?;
        let prk = key.prk().ok_or(Error::Keyring("not an AEAD data key"))?;
        format::seal(
            &self.rng,
            prk,
            self.algorithm,
            KeyRef::Envelope(&wrapped),
            context.aad(),
            plaintext,
        )
    }

    /// Decrypts an envelope ciphertext; the data key comes from the cache or, on a miss, from the KMS.
    pub async fn decrypt(&self, ciphertext: &Ciphertext, context: &Context) -> Result<Zeroizing<Vec<u8>>, Error> {
        let KeyRef::Envelope(wrapped) = ciphertext.key_ref() else {
            return Err(Error::Malformed(
                "not an envelope ciphertext: decrypt it with the Keyring",
            ));
        };
        let algorithm = ciphertext.algorithm();
        let now = self.clock.monotonic();
        let key = match self.cached(wrapped, now) {
            Some(k) => {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("msec_crypto_data_key_cache_hits_total").increment(1);
                k
            }
            None => {
                self.kms_unwraps.fetch_add(1, Ordering::Relaxed);
                let raw = self
                    .kms
                    .unwrap_key(wrapped, &dek_aad(algorithm))
                    .await
                    .map_err(|e| match e {
                        KmsError::Unwrap => Error::Decrypt,
                        other => Error::Kms(other),
                    })?;
                let k = Arc::new(KeyMaterial::from_slice(algorithm, raw.expose_secret()).map_err(|_| Error::Decrypt)?);
                self.remember(wrapped, k.clone(), now);
                k
            }
        };
        let prk = key.prk().ok_or(Error::Decrypt)?;
        format::open(prk, ciphertext, context.aad())
    }

    /// Re-encrypts under the current data key (after the KMS master key rotated, say) without returning the
    /// plaintext.
    pub async fn rewrap(&self, ciphertext: &Ciphertext, context: &Context) -> Result<Ciphertext, Error> {
        let pt = self.decrypt(ciphertext, context).await?;
        self.encrypt(&pt, context).await
    }
}

fn fingerprint(wrapped: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, wrapped).as_ref());
    out
}
