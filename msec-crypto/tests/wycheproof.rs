//! Wycheproof AES-GCM and ChaCha20-Poly1305 vectors through `msec_crypto::primitive`, the layer every keyring,
//! envelope and KMS operation uses.
//!
//! ring takes only 96-bit nonces and 128-bit tags and has no AES-192; vectors it cannot represent are skipped,
//! counted per reason, and the counts are asserted so a changed vector file or a silently growing skip list fails.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use msec_crypto::Algorithm;
use msec_crypto::primitive::{self, NONCE_LEN, TAG_LEN};
use ring::aead;
use serde_json::Value;

fn vectors(name: &str) -> Option<Value> {
    let dir = std::env::var_os("MSEC_WYCHEPROOF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/wycheproof"));
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(serde_json::from_str(&s).unwrap()),
        Err(e) => {
            msec_test_support::services::unavailable("Wycheproof vectors", &format!("{}: {e}", path.display()));
            None
        }
    }
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    valid_passed: usize,
    invalid_rejected: usize,
    skipped_aes192: usize,
    skipped_nonce_not_96_bits: usize,
    skipped_tag_not_128_bits: usize,
}

/// Runs every vector of `file`; `alg_for_key_len` maps a key length to the ring algorithm of the primitive layer.
fn run(file: &str, alg_for_key_len: impl Fn(usize) -> Option<&'static aead::Algorithm>) -> Option<Counts> {
    let doc = vectors(file)?;
    let mut c = Counts::default();
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        for t in group["tests"].as_array().unwrap() {
            let id = t["tcId"].as_u64().unwrap();
            let (key, iv, aad, msg, ct, tag) = (
                hex(&t["key"]),
                hex(&t["iv"]),
                hex(&t["aad"]),
                hex(&t["msg"]),
                hex(&t["ct"]),
                hex(&t["tag"]),
            );
            let valid = t["result"] == "valid";
            let Some(alg) = alg_for_key_len(key.len()) else {
                assert_eq!(key.len(), 24, "tc {id}: unexpected key length");
                c.skipped_aes192 += 1;
                continue;
            };
            if iv.len() != NONCE_LEN {
                c.skipped_nonce_not_96_bits += 1;
                continue;
            }
            if tag.len() != TAG_LEN {
                c.skipped_tag_not_128_bits += 1;
                continue;
            }
            let nonce: [u8; NONCE_LEN] = iv.try_into().unwrap();
            let tag: [u8; TAG_LEN] = tag.try_into().unwrap();

            // Decryption must accept exactly the valid vectors.
            let mut buf = ct.clone();
            let opened = primitive::open_with(alg, &key, nonce, &aad, &mut buf, &tag);
            match (valid, opened) {
                (true, Ok(())) if buf == msg => {}
                (true, r) => failures.push(format!("tc {id}: valid vector did not open to msg ({r:?})")),
                (false, Ok(())) => failures.push(format!("tc {id}: invalid vector opened")),
                (false, Err(msec_crypto::Error::Decrypt)) => {}
                (false, Err(e)) => failures.push(format!("tc {id}: invalid vector gave {e:?}, not Decrypt")),
            }
            // Encryption must reproduce the valid vectors bit for bit.
            if valid {
                let mut buf = msg.clone();
                let sealed = primitive::seal_with(alg, &key, nonce, &aad, &mut buf).unwrap();
                if buf != ct || sealed != tag {
                    failures.push(format!("tc {id}: seal does not reproduce ct || tag"));
                }
                c.valid_passed += 1;
            } else {
                c.invalid_rejected += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{file}: {failures:#?}");
    Some(c)
}

#[test]
fn aes_gcm_vectors() {
    let Some(c) = run("aes_gcm_test.json", |len| match len {
        16 => Some(&aead::AES_128_GCM),
        32 => primitive::ring_algorithm(Algorithm::Aes256Gcm),
        _ => None,
    }) else {
        return;
    };
    // 316 vectors: 79 valid + 54 invalid run; 103 use AES-192 (ring has none); 80 use nonces other than
    // 96 bits (0, 8, 16, 32, 48, 64, 80, 120, 128, 160, 256, 512, 1024, 2056 bits; ring accepts 96 only).
    assert_eq!(
        c,
        Counts {
            valid_passed: 79,
            invalid_rejected: 54,
            skipped_aes192: 103,
            skipped_nonce_not_96_bits: 80,
            skipped_tag_not_128_bits: 0,
        }
    );
}

#[test]
fn chacha20_poly1305_vectors() {
    let Some(c) = run("chacha20_poly1305_test.json", |len| {
        (len == 32)
            .then(|| primitive::ring_algorithm(Algorithm::ChaCha20Poly1305))
            .flatten()
    }) else {
        return;
    };
    // 325 vectors: 256 valid + 60 invalid run; 9 have nonces other than 96 bits (RFC 8439 allows only 96).
    assert_eq!(
        c,
        Counts {
            valid_passed: 256,
            invalid_rejected: 60,
            skipped_aes192: 0,
            skipped_nonce_not_96_bits: 9,
            skipped_tag_not_128_bits: 0,
        }
    );
}

#[test]
fn aes_256_primitive_is_the_keyring_algorithm() {
    // The AES-256 vectors above went through the same ring algorithm the keyring's Aes256Gcm keys use.
    assert!(std::ptr::eq(
        primitive::ring_algorithm(Algorithm::Aes256Gcm).unwrap(),
        &aead::AES_256_GCM
    ));
    assert!(std::ptr::eq(
        primitive::ring_algorithm(Algorithm::ChaCha20Poly1305).unwrap(),
        &aead::CHACHA20_POLY1305
    ));
    assert!(primitive::ring_algorithm(Algorithm::HmacSha256).is_none());
}
