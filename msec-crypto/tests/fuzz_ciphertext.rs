//! Runs the cargo-fuzz body (`fuzz/fuzz_targets/crypto_ciphertext.rs`) over proptest inputs: random bytes, mutated
//! real ciphertexts (binary and text) and text with the msec prefix.
#![allow(clippy::unwrap_used, missing_docs)]

use msec_crypto::{Algorithm, Context, KeyId, KeyStatus, Keyring};
use proptest::prelude::*;

fn real_ciphertext(pt: &[u8], chacha: bool) -> Vec<u8> {
    let mut k = Keyring::new();
    let (id, alg) = if chacha {
        (KeyId(2), Algorithm::ChaCha20Poly1305)
    } else {
        (KeyId(1), Algorithm::Aes256Gcm)
    };
    k.danger_import_key(id, alg, &[id.0 as u8; 32], KeyStatus::Enabled)
        .unwrap();
    k.encrypt(pt, &Context::new("t", "c", "x")).unwrap().into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        msec_crypto::fuzzing::ciphertext(&data);
    }

    #[test]
    fn mutated_ciphertexts(pt in proptest::collection::vec(any::<u8>(), 0..64), chacha in any::<bool>(),
                           edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut ct = real_ciphertext(&pt, chacha);
        for (i, b) in &edits {
            let i = i.index(ct.len());
            ct[i] ^= b | 1;
        }
        msec_crypto::fuzzing::ciphertext(&ct);
    }

    #[test]
    fn mutated_text(pt in proptest::collection::vec(any::<u8>(), 0..64), cut in any::<prop::sample::Index>(), junk in "[A-Za-z0-9:_-]{0,8}") {
        let text = msec_crypto::Ciphertext::from_bytes(real_ciphertext(&pt, false)).unwrap().to_text();
        let at = cut.index(text.len());
        let mutated = format!("{}{}{}", &text[..at], junk, &text[at..]);
        msec_crypto::fuzzing::ciphertext(mutated.as_bytes());
        msec_crypto::fuzzing::ciphertext(&text.as_bytes()[..at]);
    }

    #[test]
    fn prefixed_text(s in "msec:v[0-9]:[0-9a-fA-F]{0,9}:[A-Za-z0-9_-]{0,120}") {
        msec_crypto::fuzzing::ciphertext(s.as_bytes());
    }
}
