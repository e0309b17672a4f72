//! msec-crypto against bare ring, side by side in each group.
//!
//! - `crypto_seal/<size>`: `ring` (AES-256-GCM, one fixed key, counter nonce), `ring_random_nonce` (the same with a
//!   12-byte nonce from `SystemRandom`, what a plain field encryptor would do), `ring_hkdf` (28 random bytes,
//!   two HKDF-SHA256-Expand calls (per-message key, commitment), a fresh AES key schedule, seal: msec's crypto without
//!   its framing), `msec` (`Keyring::encrypt`), `msec_chacha` (the same with ChaCha20-Poly1305).
//! - `crypto_open/<size>`: `ring`, `ring_hkdf`, `msec` (`Keyring::decrypt`).
//! - `crypto_blind_index`: bare ring HMAC-SHA256 of the value vs `BlindIndex::compute` (normalise + domain + truncate).
//!
//! Run: `cargo bench -p msec-crypto --bench crypto -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use msec_crypto::{Algorithm, BlindIndexOptions, Context, Keyring};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

const SIZES: [usize; 3] = [64, 1024, 64 * 1024];
/// msec's HKDF label and the 6 header bytes before the salt: the same info length msec hashes.
const INFO_PREFIX: &[u8] = b"msec/v1 msg key\x01\x01\x00\x00\x00\x01";
const COMMIT_PREFIX: &[u8] = b"msec/v1 msg cmt\x01\x01\x00\x00\x00\x01";

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn counter_nonce(c: &AtomicU64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&c.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// msec's two expansions: message key (32 bytes) and commitment (32 bytes), each over msec's info length.
fn derive(prk: &hkdf::Prk, random: &[u8], okm: &mut [u8; 64]) {
    let (key, commit) = okm.split_at_mut(32);
    prk.expand(&[INFO_PREFIX, random], Len(32)).unwrap().fill(key).unwrap();
    prk.expand(&[COMMIT_PREFIX, random], Len(32))
        .unwrap()
        .fill(commit)
        .unwrap();
}

/// msec's per-message crypto without its framing: random salt + nonce, two HKDF-Expand calls, key schedule, seal.
fn ring_hkdf_seal(rng: &SystemRandom, prk: &hkdf::Prk, aad: &[u8], pt: &[u8]) -> Vec<u8> {
    let mut random = [0u8; 28];
    rng.fill(&mut random).unwrap();
    let mut okm = [0u8; 64];
    derive(prk, &random, &mut okm);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &okm[..32]).unwrap());
    let mut buf = Vec::with_capacity(pt.len() + 60 + 16);
    buf.extend_from_slice(&random);
    buf.extend_from_slice(&okm[32..]);
    buf.extend_from_slice(pt);
    let nonce = Nonce::try_assume_unique_for_key(&random[16..]).unwrap();
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut buf[60..])
        .unwrap();
    buf.extend_from_slice(tag.as_ref());
    buf
}

fn ring_hkdf_open(prk: &hkdf::Prk, aad: &[u8], ct: &[u8]) -> Vec<u8> {
    let mut okm = [0u8; 64];
    derive(prk, &ct[..28], &mut okm);
    assert!(msec_core::secret::ct_eq(&okm[32..], &ct[28..60]));
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &okm[..32]).unwrap());
    let mut buf = ct[60..].to_vec();
    let nonce = Nonce::try_assume_unique_for_key(&ct[16..28]).unwrap();
    let n = key.open_in_place(nonce, Aad::from(aad), &mut buf).unwrap().len();
    buf.truncate(n);
    buf
}

fn seal(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let key_bytes = [7u8; 32];
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key_bytes).unwrap());
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &key_bytes);
    let aes = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let chacha = Keyring::generate(Algorithm::ChaCha20Poly1305).unwrap();
    let ctx = Context::new("users", "email", "1042");
    let counter = AtomicU64::new(0);

    let mut g = c.benchmark_group("crypto_seal");
    for size in SIZES {
        let pt = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("ring", size), &pt, |b, pt| {
            b.iter(|| {
                let mut buf = pt.clone();
                key.seal_in_place_append_tag(counter_nonce(&counter), Aad::from(ctx.aad()), &mut buf)
                    .unwrap();
                black_box(buf)
            });
        });
        g.bench_with_input(BenchmarkId::new("ring_random_nonce", size), &pt, |b, pt| {
            b.iter(|| {
                let mut n = [0u8; 12];
                rng.fill(&mut n).unwrap();
                let mut buf = pt.clone();
                key.seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::from(ctx.aad()), &mut buf)
                    .unwrap();
                black_box(buf)
            });
        });
        g.bench_with_input(BenchmarkId::new("ring_hkdf", size), &pt, |b, pt| {
            b.iter(|| black_box(ring_hkdf_seal(&rng, &prk, ctx.aad(), pt)));
        });
        g.bench_with_input(BenchmarkId::new("msec", size), &pt, |b, pt| {
            b.iter(|| black_box(aes.encrypt(pt, &ctx).unwrap()));
        });
        g.bench_with_input(BenchmarkId::new("msec_chacha", size), &pt, |b, pt| {
            b.iter(|| black_box(chacha.encrypt(pt, &ctx).unwrap()));
        });
    }
    g.finish();
}

fn open(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let key_bytes = [7u8; 32];
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key_bytes).unwrap());
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &key_bytes);
    let aes = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let ctx = Context::new("users", "email", "1042");

    let mut g = c.benchmark_group("crypto_open");
    for size in SIZES {
        let pt = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        let nonce = [9u8; 12];
        let mut ring_ct = pt.clone();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(ctx.aad()), &mut ring_ct)
            .unwrap();
        g.bench_with_input(BenchmarkId::new("ring", size), &ring_ct, |b, ct| {
            b.iter(|| {
                let mut buf = ct.clone();
                let n = key
                    .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(ctx.aad()), &mut buf)
                    .unwrap()
                    .len();
                buf.truncate(n);
                black_box(buf)
            });
        });
        let hkdf_ct = ring_hkdf_seal(&rng, &prk, ctx.aad(), &pt);
        g.bench_with_input(BenchmarkId::new("ring_hkdf", size), &hkdf_ct, |b, ct| {
            b.iter(|| black_box(ring_hkdf_open(&prk, ctx.aad(), ct)));
        });
        let msec_ct = aes.encrypt(&pt, &ctx).unwrap();
        g.bench_with_input(BenchmarkId::new("msec", size), &msec_ct, |b, ct| {
            b.iter(|| black_box(aes.decrypt(ct, &ctx).unwrap()));
        });
    }
    g.finish();
}

fn blind_index(c: &mut Criterion) {
    let mut keyring = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let id = keyring.add_key(Algorithm::HmacSha256).unwrap();
    let idx = keyring
        .blind_index(
            id,
            BlindIndexOptions::new("users.email")
                .bits(32)
                .unwrap()
                .trim()
                .lowercase(),
        )
        .unwrap();
    let raw_key = hmac::Key::new(hmac::HMAC_SHA256, &[3u8; 32]);
    let value = "Alice.Example@Example.org";

    let mut g = c.benchmark_group("crypto_blind_index");
    g.bench_function("ring_hmac_sha256", |b| {
        b.iter(|| black_box(hmac::sign(&raw_key, value.as_bytes())));
    });
    g.bench_function("msec_compute", |b| b.iter(|| black_box(idx.compute(value))));
    g.bench_function("msec_compute_bytes", |b| {
        b.iter(|| black_box(idx.compute_bytes(value.as_bytes())));
    });
    g.finish();
}

criterion_group!(benches, seal, open, blind_index);
criterion_main!(benches);
