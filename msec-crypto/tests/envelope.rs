//! Envelope encryption: data keys wrapped by a KMS, cached with count and age bounds.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use msec_core::clock::ManualClock;
use msec_core::secret::SecretBytes;
use msec_crypto::{
    Algorithm, Context, DataKeyPolicy, EnvelopeAead, Error, KeyRef, Keyring, Kms, KmsError, KmsFuture, LocalKms,
};

/// A KMS that counts calls and can be switched off.
#[derive(Debug)]
struct CountingKms {
    inner: LocalKms,
    wraps: AtomicU64,
    unwraps: AtomicU64,
    down: std::sync::atomic::AtomicBool,
}

impl CountingKms {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: LocalKms::generate().unwrap(),
            wraps: AtomicU64::new(0),
            unwraps: AtomicU64::new(0),
            down: false.into(),
        })
    }
}

impl Kms for CountingKms {
    fn key_uri(&self) -> String {
        self.inner.key_uri()
    }
    fn wrap_key<'a>(&'a self, key: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, Vec<u8>> {
        self.wraps.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err(KmsError::Unavailable("down".into())) });
        }
        self.inner.wrap_key(key, aad)
    }
    fn unwrap_key<'a>(&'a self, wrapped: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, SecretBytes> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err(KmsError::Unavailable("down".into())) });
        }
        self.inner.unwrap_key(wrapped, aad)
    }
}

fn ctx(i: u32) -> Context {
    Context::new("docs", "body", i.to_string())
}

#[tokio::test]
async fn a_bulk_job_does_not_call_the_kms_per_record() {
    let kms = CountingKms::new();
    let env = EnvelopeAead::new(kms.clone(), Algorithm::Aes256Gcm);
    let mut cts = Vec::new();
    for i in 0..1000 {
        cts.push(env.encrypt(format!("doc {i}").as_bytes(), &ctx(i)).await.unwrap());
    }
    assert_eq!(kms.wraps.load(Ordering::SeqCst), 1);
    // A fresh reader (another replica) unwraps the data key once for all 1000 records.
    let reader = EnvelopeAead::new(kms.clone(), Algorithm::Aes256Gcm);
    for (i, ct) in cts.iter().enumerate() {
        assert_eq!(
            &*reader.decrypt(ct, &ctx(i as u32)).await.unwrap(),
            format!("doc {i}").as_bytes()
        );
    }
    assert_eq!(kms.unwraps.load(Ordering::SeqCst), 1);
    assert_eq!(reader.stats().cache_hits, 999);
}

#[tokio::test]
async fn data_keys_rotate_after_max_messages_and_max_age() {
    let kms = CountingKms::new();
    let clock = ManualClock::starting_now();
    let env = EnvelopeAead::new(kms.clone(), Algorithm::ChaCha20Poly1305)
        .with_clock(Arc::new(clock.clone()))
        .with_policy(DataKeyPolicy {
            max_messages_per_key: 3,
            max_key_age: Duration::from_secs(60),
            max_cached_keys: 100,
        });
    let mut wrapped = std::collections::HashSet::new();
    for i in 0..10 {
        let ct = env.encrypt(b"x", &ctx(i)).await.unwrap();
        let KeyRef::Envelope(w) = ct.key_ref() else { panic!() };
        wrapped.insert(w.to_vec());
    }
    assert_eq!(kms.wraps.load(Ordering::SeqCst), 4); // ceil(10 / 3)
    assert_eq!(wrapped.len(), 4);
    // Age: a key younger than 60 s is reused, an older one is not.
    clock.advance(Duration::from_secs(30));
    env.encrypt(b"x", &ctx(0)).await.unwrap();
    assert_eq!(kms.wraps.load(Ordering::SeqCst), 4);
    clock.advance(Duration::from_secs(31));
    env.encrypt(b"x", &ctx(0)).await.unwrap();
    assert_eq!(kms.wraps.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn the_decryption_cache_is_bounded_by_count_and_age() {
    let kms = CountingKms::new();
    let clock = ManualClock::starting_now();
    let policy = DataKeyPolicy {
        max_messages_per_key: 1,
        max_key_age: Duration::from_secs(60),
        max_cached_keys: 2,
    };
    let writer = EnvelopeAead::new(kms.clone(), Algorithm::Aes256Gcm).with_policy(policy.clone());
    let mut cts = Vec::new();
    for i in 0..3 {
        cts.push(writer.encrypt(b"v", &ctx(i)).await.unwrap()); // three data keys
    }
    let reader = EnvelopeAead::new(kms.clone(), Algorithm::Aes256Gcm)
        .with_policy(policy)
        .with_clock(Arc::new(clock.clone()));
    for (i, ct) in cts.iter().enumerate() {
        reader.decrypt(ct, &ctx(i as u32)).await.unwrap();
    }
    assert_eq!(reader.stats().kms_unwraps, 3);
    // Only the last two stayed cached.
    reader.decrypt(&cts[2], &ctx(2)).await.unwrap();
    reader.decrypt(&cts[1], &ctx(1)).await.unwrap();
    assert_eq!(reader.stats().kms_unwraps, 3);
    reader.decrypt(&cts[0], &ctx(0)).await.unwrap();
    assert_eq!(reader.stats().kms_unwraps, 4);
    // Age: after 60 s every cached key is stale.
    clock.advance(Duration::from_secs(61));
    reader.decrypt(&cts[0], &ctx(0)).await.unwrap();
    assert_eq!(reader.stats().kms_unwraps, 5);
}

#[tokio::test]
async fn tampered_wrapped_keys_and_contexts_fail() {
    let kms = CountingKms::new();
    let env = EnvelopeAead::new(kms.clone(), Algorithm::Aes256Gcm);
    let ct = env.encrypt(b"secret", &ctx(1)).await.unwrap();
    assert!(matches!(env.decrypt(&ct, &ctx(2)).await, Err(Error::Decrypt)));
    let bytes = ct.as_bytes().to_vec();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        let Ok(t) = msec_crypto::Ciphertext::from_bytes(t) else {
            continue;
        };
        let fresh = EnvelopeAead::new(kms.clone(), Algorithm::Aes256Gcm);
        assert!(fresh.decrypt(&t, &ctx(1)).await.is_err(), "byte {i}");
        assert!(env.decrypt(&t, &ctx(1)).await.is_err(), "byte {i} (cached key)");
    }
    // Keyring ciphertexts are not envelope ciphertexts, and vice versa.
    let k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let kct = k.encrypt(b"x", &ctx(1)).unwrap();
    assert!(matches!(env.decrypt(&kct, &ctx(1)).await, Err(Error::Malformed(_))));
    assert!(matches!(k.decrypt(&ct, &ctx(1)), Err(Error::Malformed(_))));
}

#[tokio::test]
async fn kms_outages_are_errors() {
    let kms = CountingKms::new();
    let env = EnvelopeAead::new(kms.clone(), Algorithm::Aes256Gcm);
    let ct = env.encrypt(b"x", &ctx(1)).await.unwrap();
    kms.down.store(true, Ordering::SeqCst);
    // Cached keys keep working through an outage.
    assert!(env.decrypt(&ct, &ctx(1)).await.is_ok());
    assert!(env.encrypt(b"y", &ctx(1)).await.is_ok());
    let fresh = EnvelopeAead::new(kms.clone(), Algorithm::Aes256Gcm);
    assert!(matches!(
        fresh.decrypt(&ct, &ctx(1)).await,
        Err(Error::Kms(KmsError::Unavailable(_)))
    ));
    assert!(matches!(fresh.encrypt(b"z", &ctx(1)).await, Err(Error::Kms(_))));
}

#[tokio::test]
async fn a_keyring_is_a_kms_and_rotating_it_keeps_envelopes_readable() {
    let mut k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let ct = EnvelopeAead::new(k.clone(), Algorithm::Aes256Gcm)
        .encrypt(b"doc", &ctx(1))
        .await
        .unwrap();
    let k2 = k.add_key(Algorithm::Aes256Gcm).unwrap();
    k.promote(k2).unwrap();
    let env = EnvelopeAead::new(k.clone(), Algorithm::Aes256Gcm);
    assert_eq!(&*env.decrypt(&ct, &ctx(1)).await.unwrap(), b"doc");
    let moved = env.rewrap(&ct, &ctx(1)).await.unwrap();
    assert_ne!(moved.key_ref(), ct.key_ref());
    let old = ct.key_ref();
    let KeyRef::Envelope(w) = old else { panic!() };
    // The wrapped data key is itself a keyring ciphertext under the old primary.
    let inner = msec_crypto::Ciphertext::from_bytes(w.to_vec()).unwrap();
    assert_ne!(inner.key_id(), Some(k2));
    k.set_status(inner.key_id().unwrap(), msec_crypto::KeyStatus::Disabled)
        .unwrap();
    let env = EnvelopeAead::new(k, Algorithm::Aes256Gcm);
    assert!(env.decrypt(&ct, &ctx(1)).await.is_err());
    assert_eq!(&*env.decrypt(&moved, &ctx(1)).await.unwrap(), b"doc");
}
