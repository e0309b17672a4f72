//! Round trips for every value type, both algorithms, and plaintext sizes from 0 to 1 MiB.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::LazyLock;

use msec_crypto::{Algorithm, Ciphertext, Context, Encrypted, FieldValue, Json, Keyring};
use proptest::prelude::*;

static AES: LazyLock<Keyring> = LazyLock::new(|| Keyring::generate(Algorithm::Aes256Gcm).unwrap());
static CHACHA: LazyLock<Keyring> = LazyLock::new(|| Keyring::generate(Algorithm::ChaCha20Poly1305).unwrap());

fn keyrings() -> [&'static Keyring; 2] {
    [&AES, &CHACHA]
}

/// Seals `v`, goes through the text form and serde, opens, and compares with `eq`.
fn round_trip<T: FieldValue + std::fmt::Debug>(v: &T, eq: impl Fn(&T, &T) -> bool) {
    for k in keyrings() {
        let ctx = Context::new("t", "c", "r");
        let e = Encrypted::<T>::seal(k, v, &ctx).unwrap();
        let text = e.to_text();
        let back: Encrypted<T> = Encrypted::from_text(&text).unwrap();
        let json = serde_json::to_string(&back).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        let back: Encrypted<T> = serde_json::from_str(&json).unwrap();
        let out = back.open(k, &ctx).unwrap();
        assert!(eq(v, &out), "{v:?} != {out:?}");
        let binary = Ciphertext::from_bytes(e.ciphertext().as_bytes().to_vec()).unwrap();
        assert_eq!(&binary, e.ciphertext());
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Address {
    street: String,
    zip: Option<u32>,
    tags: Vec<String>,
}

fn address() -> impl Strategy<Value = Address> {
    (
        any::<String>(),
        any::<Option<u32>>(),
        proptest::collection::vec(any::<String>(), 0..4),
    )
        .prop_map(|(street, zip, tags)| Address { street, zip, tags })
}

/// Deterministic filler so large plaintexts are cheap to generate.
fn bytes_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn strings(v in any::<String>()) { round_trip(&v, |a, b| a == b); }

    #[test]
    fn byte_vectors(v in proptest::collection::vec(any::<u8>(), 0..512)) { round_trip(&v, |a, b| a == b); }

    #[test]
    fn integers(a in any::<i16>(), b in any::<i32>(), c in any::<i64>(), d in any::<u16>(), e in any::<u32>(), f in any::<u64>()) {
        round_trip(&a, |x, y| x == y);
        round_trip(&b, |x, y| x == y);
        round_trip(&c, |x, y| x == y);
        round_trip(&d, |x, y| x == y);
        round_trip(&e, |x, y| x == y);
        round_trip(&f, |x, y| x == y);
    }

    #[test]
    fn floats_and_bools(a in any::<f32>(), b in any::<f64>(), c in any::<bool>()) {
        round_trip(&a, |x, y| x.to_bits() == y.to_bits());
        round_trip(&b, |x, y| x.to_bits() == y.to_bits());
        round_trip(&c, |x, y| x == y);
    }

    #[test]
    fn json_values(v in address()) { round_trip(&Json(v), |a, b| a == b); }

    #[test]
    fn raw_bytes_sizes_up_to_1_mib(
        // Mostly small and medium sizes, some large ones, and the exact bounds.
        len in prop_oneof![6 => 0usize..4096, 2 => 4096usize..65_536, 1 => 65_536usize..=1 << 20, 1 => Just(1usize << 20), 1 => Just(0usize)],
        seed in any::<u64>(),
        record in any::<String>(),
    ) {
        let pt = bytes_of(len, seed);
        for k in keyrings() {
            let ctx = Context::new("blobs", "data", &record);
            let ct = k.encrypt(&pt, &ctx).unwrap();
            prop_assert_eq!(ct.plaintext_len(), len);
            prop_assert_eq!(ct.as_bytes().len(), len + 82);
            let parsed: Ciphertext = ct.to_text().parse().unwrap();
            prop_assert_eq!(&*k.decrypt(&parsed, &ctx).unwrap(), &pt[..]);
        }
    }
}

#[test]
fn exact_size_bounds() {
    for len in [0usize, 1, 15, 16, 17, 1023, 1024, 65_536, 1 << 20] {
        let pt = bytes_of(len, len as u64);
        for k in keyrings() {
            let ctx = Context::new("t", "c", "r");
            let ct = k.encrypt(&pt, &ctx).unwrap();
            assert_eq!(&*k.decrypt(&ct, &ctx).unwrap(), &pt[..], "len {len}");
            assert_eq!(ct.as_bytes().len(), 82 + len);
            assert_eq!(
                ct.to_text().len(),
                17 + (4 * (82 + len)).div_ceil(3),
                "documented text overhead"
            );
        }
    }
}

#[test]
fn two_encryptions_of_one_value_differ() {
    let ctx = Context::new("t", "c", "r");
    let a = AES.encrypt(b"same", &ctx).unwrap();
    let b = AES.encrypt(b"same", &ctx).unwrap();
    assert_ne!(a, b);
}

#[test]
fn wrong_value_type_is_a_value_error_not_a_panic() {
    let ctx = Context::new("t", "c", "r");
    let e = Encrypted::<String>::seal(&AES, &"not a number".to_string(), &ctx).unwrap();
    let as_int: Encrypted<i64> = Encrypted::from_ciphertext(e.into_ciphertext());
    assert_eq!(as_int.open(&AES, &ctx).unwrap_err().code(), "value_encoding");
}
