//! Paired ratio measurement: msec against bare ring, interleaved in short alternating rounds so that machine load
//! (a shared 2-core box) hits both sides equally. Prints the median ratio per size and its interquartile range.
//! Complements the criterion bench (`crypto`), whose absolute times drift with load.
//!
//! Run: `cargo bench -p msec-crypto --bench ratio`
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use msec_crypto::{Algorithm, Context, Keyring};
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// A row: baseline name, msec algorithm, baseline call, msec call.
type Row<'a> = (&'static str, &'static str, Box<dyn FnMut() + 'a>, Box<dyn FnMut() + 'a>);

const PER_ROUND: u32 = 200;

fn time(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..PER_ROUND {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(PER_ROUND)
}

/// A named step to time.
type Step<'a> = (&'static str, Box<dyn FnMut() + 'a>);

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Median time per call of each per-message step msec adds, measured the same way.
fn components(rounds: usize) {
    let rng = SystemRandom::new();
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &[7u8; 32]);
    let info = [0u8; 49]; // label (15) + keyring header up to the nonce (34)
    let steps: [Step<'_>; 4] = [
        (
            "SystemRandom::fill, 28 bytes",
            Box::new(|| {
                let mut b = [0u8; 28];
                rng.fill(&mut b).unwrap();
                black_box(b);
            }),
        ),
        (
            "HKDF-SHA256-Expand, 32 bytes (msec does two)",
            Box::new(|| {
                let mut o = [0u8; 32];
                prk.expand(&[&info], Len(32)).unwrap().fill(&mut o).unwrap();
                black_box(o);
            }),
        ),
        (
            "AES-256-GCM key setup",
            Box::new(|| {
                black_box(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[1u8; 32]).unwrap()));
            }),
        ),
        (
            "ChaCha20-Poly1305 key setup",
            Box::new(|| {
                black_box(LessSafeKey::new(
                    UnboundKey::new(&CHACHA20_POLY1305, &[1u8; 32]).unwrap(),
                ));
            }),
        ),
    ];
    println!("\nper-message step                                median ns");
    for (name, mut f) in steps {
        let (_, med, _) = quartiles((0..rounds).map(|_| time(&mut f)).collect());
        println!("{name:<46}  {med:>9.0}");
    }
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 4], v[v.len() / 2], v[3 * v.len() / 4])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list here.
    }
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` run a 3-round smoke test only.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        301
    } else {
        3
    };
    let rng = SystemRandom::new();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let chacha_key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).unwrap());
    let aes = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let chacha = Keyring::generate(Algorithm::ChaCha20Poly1305).unwrap();
    let ctx = Context::new("users", "email", "1042");
    let mut counter = 0u64;
    println!("size      baseline                 msec   median ratio (IQR)        baseline ns  msec ns");
    for size in [64usize, 1024, 65536] {
        let pt = vec![0x5au8; size];
        let mut ring_counter = || {
            counter += 1;
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&counter.to_be_bytes());
            let mut buf = pt.clone();
            key.seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::from(ctx.aad()), &mut buf)
                .unwrap();
            black_box(buf);
        };
        let ring_random = || {
            let mut n = [0u8; 12];
            rng.fill(&mut n).unwrap();
            let mut buf = pt.clone();
            key.seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::from(ctx.aad()), &mut buf)
                .unwrap();
            black_box(buf);
        };
        let rows: [Row<'_>; 3] = [
            (
                "ring (counter nonce)",
                "aes",
                Box::new(&mut ring_counter),
                Box::new(|| drop(black_box(aes.encrypt(&pt, &ctx).unwrap()))),
            ),
            (
                "ring (random nonce)",
                "aes",
                Box::new(ring_random),
                Box::new(|| drop(black_box(aes.encrypt(&pt, &ctx).unwrap()))),
            ),
            (
                "ring (counter nonce)",
                "chacha",
                Box::new(|| {
                    let mut buf = pt.clone();
                    let n = Nonce::assume_unique_for_key([0; 12]); // timing only: nothing is sent
                    chacha_key
                        .seal_in_place_append_tag(n, Aad::from(ctx.aad()), &mut buf)
                        .unwrap();
                    black_box(buf);
                }),
                Box::new(|| drop(black_box(chacha.encrypt(&pt, &ctx).unwrap()))),
            ),
        ];
        for (name, alg, mut base, mut msec) in rows {
            let (mut ratios, mut bases, mut msecs) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                // Alternate which side goes first.
                let (b, m) = if round % 2 == 0 {
                    let b = time(&mut base);
                    (b, time(&mut msec))
                } else {
                    let m = time(&mut msec);
                    (time(&mut base), m)
                };
                ratios.push(m / b);
                bases.push(b);
                msecs.push(m);
            }
            let (q1, med, q3) = quartiles(ratios);
            let (_, b, _) = quartiles(bases);
            let (_, m, _) = quartiles(msecs);
            println!("{size:<8}  {name:<22} {alg:<6} {med:.2}x ({q1:.2}-{q3:.2})          {b:>10.0}  {m:>7.0}");
        }
    }
    components(rounds);
}
