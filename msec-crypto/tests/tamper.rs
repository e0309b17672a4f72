//! Tampering with any byte of a ciphertext (binary or text), its key id, or its context fails; missing keys give
//! `UnknownKey`; rotation keeps every old ciphertext readable until its key is disabled.
#![allow(clippy::unwrap_used, missing_docs)]

use msec_crypto::{Algorithm, Ciphertext, Context, Error, KeyId, KeyStatus, Keyring};

fn ctx() -> Context {
    Context::new("users", "email", "42")
}

fn decrypt_bytes(k: &Keyring, bytes: Vec<u8>, ctx: &Context) -> Result<Vec<u8>, Error> {
    let ct = Ciphertext::from_bytes(bytes)?;
    k.decrypt(&ct, ctx).map(|p| p.to_vec())
}

#[test]
fn every_byte_and_bit_of_the_binary_form_is_authenticated() {
    for alg in [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305] {
        let k = Keyring::generate(alg).unwrap();
        let ct = k.encrypt(b"alice@example.org", &ctx()).unwrap();
        let bytes = ct.as_bytes().to_vec();
        assert_eq!(decrypt_bytes(&k, bytes.clone(), &ctx()).unwrap(), b"alice@example.org");
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
                let mut t = bytes.clone();
                t[i] ^= mask;
                let r = decrypt_bytes(&k, t, &ctx());
                assert!(r.is_err(), "{alg}: byte {i} ^ {mask:#x} still decrypts");
                if (2..6).contains(&i) {
                    assert!(matches!(r, Err(Error::UnknownKey(_))), "key id change: {r:?}");
                }
                if i >= 6 {
                    assert!(matches!(r, Err(Error::Decrypt)), "byte {i}: {r:?}");
                }
            }
        }
        // Truncation and extension at every length.
        for len in 0..bytes.len() {
            assert!(
                decrypt_bytes(&k, bytes[..len].to_vec(), &ctx()).is_err(),
                "truncated to {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decrypt_bytes(&k, longer, &ctx()), Err(Error::Decrypt)));
    }
}

#[test]
fn every_character_of_the_text_form_is_checked() {
    let k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let text = k.encrypt(b"4111111111111111", &ctx()).unwrap().to_text();
    assert!(text.starts_with("msec:v1:"));
    for i in 0..text.len() {
        for replacement in ['A', 'z', '0', '-', '_', ':', '9'] {
            if text.as_bytes()[i] == replacement as u8 {
                continue;
            }
            let mut t = text.clone().into_bytes();
            t[i] = replacement as u8;
            let t = String::from_utf8(t).unwrap();
            assert!(
                k.decrypt_text(&t, &ctx()).is_err(),
                "char {i} -> {replacement} still decrypts: {t}"
            );
        }
    }
}

#[test]
fn a_key_id_pointing_at_another_key_of_the_keyring_fails() {
    let mut k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let first = k.primary().unwrap();
    let second = k.add_key(Algorithm::Aes256Gcm).unwrap();
    let ct = k.encrypt(b"secret", &ctx()).unwrap();
    assert_eq!(ct.key_id(), Some(first));
    let mut bytes = ct.as_bytes().to_vec();
    bytes[2..6].copy_from_slice(&second.0.to_be_bytes());
    assert!(matches!(decrypt_bytes(&k, bytes.clone(), &ctx()), Err(Error::Decrypt)));
    // Rewriting the text's key id alone is rejected as malformed.
    let text = ct.to_text().replace(&first.to_string(), &second.to_string());
    assert!(matches!(k.decrypt_text(&text, &ctx()), Err(Error::Malformed(_))));
    // Changing the suite byte to the other algorithm fails too.
    let mut bytes = ct.as_bytes().to_vec();
    bytes[1] = 0x02;
    assert!(matches!(decrypt_bytes(&k, bytes, &ctx()), Err(Error::Decrypt)));
}

#[test]
fn every_part_of_the_context_is_bound() {
    let k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let ct = k.encrypt(b"secret", &Context::new("users", "email", "42")).unwrap();
    for other in [
        Context::new("users", "email", "43"),
        Context::new("users", "phone", "42"),
        Context::new("admins", "email", "42"),
        Context::new("users", "email", ""),
        Context::new("users", "email4", "2"),
        Context::new("user", "semail", "42"),
        Context::new("users", "email", "42 "),
        Context::column("users", "email"),
    ] {
        assert!(
            matches!(k.decrypt(&ct, &other), Err(Error::Decrypt)),
            "{other} decrypts"
        );
    }
    assert_eq!(
        &*k.decrypt(&ct, &Context::new("users", "email", "42")).unwrap(),
        b"secret"
    );
}

#[test]
fn missing_keys_give_unknown_key_never_a_panic() {
    let k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let ct = k.encrypt(b"secret", &ctx()).unwrap();
    let other = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    match other.decrypt(&ct, &ctx()) {
        Err(Error::UnknownKey(id)) => assert_eq!(Some(id), ct.key_id()),
        r => panic!("expected UnknownKey, got {r:?}"),
    }
    let empty = Keyring::new();
    assert!(matches!(empty.decrypt(&ct, &ctx()), Err(Error::UnknownKey(_))));
    assert!(matches!(empty.encrypt(b"x", &ctx()), Err(Error::NoPrimary)));
    assert_eq!(empty.decrypt(&ct, &ctx()).unwrap_err().code(), "unknown_key");
}

#[test]
fn unknown_versions_and_suites_are_errors() {
    let k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let mut bytes = k.encrypt(b"x", &ctx()).unwrap().into_bytes();
    bytes[0] = 2;
    assert!(matches!(
        Ciphertext::from_bytes(bytes.clone()),
        Err(Error::UnsupportedVersion(2))
    ));
    bytes[0] = 1;
    bytes[1] = 0x7f;
    assert!(matches!(
        Ciphertext::from_bytes(bytes),
        Err(Error::UnsupportedSuite(0x7f))
    ));
    assert!(matches!(
        Ciphertext::from_text("msec:v2:00000001:AQ"),
        Err(Error::UnsupportedVersion(2))
    ));
    for bad in [
        "",
        "msec",
        "msec:v1",
        "msec:v1:00000001",
        "msec:v1:00000001:!!",
        "vault:v1:abc",
        "msec:vx:1:AA",
    ] {
        assert!(Ciphertext::from_text(bad).is_err(), "{bad}");
    }
}

#[test]
fn rotation_keeps_old_ciphertexts_readable_until_disabled() {
    let mut k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let mut written: Vec<(KeyId, Context, Ciphertext, Vec<u8>)> = Vec::new();
    for generation in 0..5u32 {
        for i in 0..20u32 {
            let ctx = Context::new("t", "c", format!("{generation}-{i}"));
            let pt = format!("value {generation} {i}").into_bytes();
            let ct = k.encrypt(&pt, &ctx).unwrap();
            written.push((k.primary().unwrap(), ctx, ct, pt));
        }
        let next = k
            .add_key(if generation % 2 == 0 {
                Algorithm::ChaCha20Poly1305
            } else {
                Algorithm::Aes256Gcm
            })
            .unwrap();
        // Phase 1: the key exists but does not encrypt yet.
        assert_ne!(k.encrypt(b"x", &ctx()).unwrap().key_id(), Some(next));
        k.promote(next).unwrap();
        // Every ciphertext ever written is still readable.
        for (_, ctx, ct, pt) in &written {
            assert_eq!(&*k.decrypt(ct, ctx).unwrap(), &pt[..]);
        }
    }
    let first = written[0].0;
    assert!(
        k.set_status(k.primary().unwrap(), KeyStatus::Disabled).is_err(),
        "the primary cannot be disabled"
    );
    k.set_status(first, KeyStatus::DecryptOnly).unwrap();
    assert!(k.promote(first).is_err(), "a decrypt-only key cannot be promoted");
    for (_, ctx, ct, pt) in &written {
        assert_eq!(&*k.decrypt(ct, ctx).unwrap(), &pt[..]);
    }
    k.set_status(first, KeyStatus::Disabled).unwrap();
    for (id, ctx, ct, pt) in &written {
        match k.decrypt(ct, ctx) {
            Err(Error::KeyDisabled(d)) => assert_eq!((*id, d), (first, first)),
            Ok(p) => {
                assert_ne!(*id, first);
                assert_eq!(&*p, &pt[..]);
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    // Disabling is reversible; removal is not.
    k.set_status(first, KeyStatus::DecryptOnly).unwrap();
    assert!(k.decrypt(&written[0].2, &written[0].1).is_ok());
    assert!(k.remove(first).is_err(), "only disabled keys can be removed");
    k.set_status(first, KeyStatus::Disabled).unwrap();
    k.remove(first).unwrap();
    assert!(matches!(
        k.decrypt(&written[0].2, &written[0].1),
        Err(Error::UnknownKey(_))
    ));
}

#[test]
fn rewrap_moves_to_the_primary_and_keeps_the_value() {
    let mut k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let old = k.encrypt(b"v", &ctx()).unwrap();
    assert!(!k.needs_rewrap(&old));
    let new = k.add_key(Algorithm::ChaCha20Poly1305).unwrap();
    k.promote(new).unwrap();
    assert!(k.needs_rewrap(&old));
    let moved = k.rewrap(&old, &ctx()).unwrap();
    assert_eq!(moved.key_id(), Some(new));
    assert_eq!(moved.algorithm(), Algorithm::ChaCha20Poly1305);
    assert_eq!(&*k.decrypt(&moved, &ctx()).unwrap(), b"v");
    // A rewrap needs the right context too: it is not a way around context binding.
    assert!(matches!(
        k.rewrap(&old, &Context::new("users", "email", "1")),
        Err(Error::Decrypt)
    ));
}

#[test]
fn hmac_keys_do_not_encrypt_and_aead_keys_do_not_index() {
    let mut k = Keyring::new();
    let h = k.add_key(Algorithm::HmacSha256).unwrap();
    assert_eq!(k.primary(), None);
    assert!(matches!(k.promote(h), Err(Error::WrongKeyKind(_))));
    let a = k.add_key(Algorithm::Aes256Gcm).unwrap();
    assert_eq!(k.primary(), Some(a));
    assert!(matches!(
        k.blind_index(a, msec_crypto::BlindIndexOptions::new("x")),
        Err(Error::WrongKeyKind(_))
    ));
    assert!(k.blind_index(h, msec_crypto::BlindIndexOptions::new("x")).is_ok());
}

#[test]
fn reason_codes_match_error_codes() {
    use msec_crypto::reason;
    let id = KeyId(1);
    for (e, r) in [
        (Error::UnknownKey(id), reason::UNKNOWN_KEY),
        (Error::KeyDisabled(id), reason::KEY_DISABLED),
        (Error::Decrypt, reason::DECRYPT_FAILED),
        (Error::Malformed("x"), reason::MALFORMED_CIPHERTEXT),
        (Error::UnsupportedVersion(9), reason::UNSUPPORTED_VERSION),
        (Error::UnsupportedSuite(9), reason::UNSUPPORTED_SUITE),
        (Error::NoPrimary, reason::NO_PRIMARY_KEY),
        (Error::WrongKeyKind(id), reason::WRONG_KEY_KIND),
        (Error::Keyring("x"), reason::KEYRING_INVALID),
        (Error::KeyringFile("x".into()), reason::KEYRING_FILE),
        (Error::Kms(msec_crypto::KmsError::Unwrap), reason::KMS_ERROR),
        (Error::Value("x".into()), reason::VALUE_ENCODING),
        (Error::Rng, reason::RNG_FAILURE),
    ] {
        assert_eq!(e.reason_code(), r);
        assert_eq!(e.code(), r.as_str());
    }
}
