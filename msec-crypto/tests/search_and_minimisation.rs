//! Blind indexes, pseudonyms and masking.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::IpAddr;

use msec_core::secret::SecretBytes;
use msec_crypto::{Algorithm, BlindIndex, BlindIndexOptions, Keyring, Pseudonymizer, mask};
use proptest::prelude::*;

fn key(b: u8) -> SecretBytes {
    SecretBytes::new(vec![b; 32])
}

#[test]
fn normalisation_options() {
    let o = BlindIndexOptions::new("d").trim().lowercase().collapse_whitespace();
    assert_eq!(o.normalize("  Alice   B.\tSMITH "), "alice b. smith");
    let o = BlindIndexOptions::new("d").digits_only();
    assert_eq!(o.normalize("+44 (20) 7946-0958"), "442079460958");
    let raw = BlindIndexOptions::new("d");
    assert_eq!(raw.normalize(" A "), " A ");
}

#[test]
fn equal_after_normalisation_means_equal_index() {
    let idx = BlindIndex::new(&key(1), BlindIndexOptions::new("users.email").trim().lowercase()).unwrap();
    assert_eq!(idx.compute(" Alice@Example.ORG"), idx.compute("alice@example.org"));
    assert_ne!(idx.compute("alice@example.org"), idx.compute("bob@example.org"));
}

#[test]
fn domains_and_keys_separate_indexes() {
    let a = BlindIndex::new(&key(1), BlindIndexOptions::new("users.email").bits(256).unwrap()).unwrap();
    let b = BlindIndex::new(&key(1), BlindIndexOptions::new("users.backup_email").bits(256).unwrap()).unwrap();
    let c = BlindIndex::new(&key(2), BlindIndexOptions::new("users.email").bits(256).unwrap()).unwrap();
    let v = "alice@example.org";
    assert_ne!(a.compute(v), b.compute(v));
    assert_ne!(a.compute(v), c.compute(v));
}

#[test]
fn bits_bounds() {
    assert!(BlindIndexOptions::new("d").bits(0).is_err());
    assert!(BlindIndexOptions::new("d").bits(257).is_err());
    assert!(BlindIndex::new(&SecretBytes::new(vec![0; 16]), BlindIndexOptions::new("d")).is_err());
}

#[test]
fn to_i64_packs_the_significant_bits() {
    let full = BlindIndex::new(&key(3), BlindIndexOptions::new("d").bits(64).unwrap()).unwrap();
    let twelve = BlindIndex::new(&key(3), BlindIndexOptions::new("d").bits(12).unwrap()).unwrap();
    let v64 = full.compute("x").to_i64().unwrap() as u64;
    let v12 = twelve.compute("x").to_i64().unwrap();
    assert_eq!(v12 as u64, v64 >> 52, "a truncated index is a prefix of the longer one");
    assert!((0..4096).contains(&v12));
    let wide = BlindIndex::new(&key(3), BlindIndexOptions::new("d").bits(65).unwrap()).unwrap();
    assert_eq!(wide.compute("x").to_i64(), None);
    assert_eq!(
        serde_json::to_string(&twelve.compute("x")).unwrap(),
        format!("\"{}\"", twelve.compute("x").to_hex())
    );
}

proptest! {
    #[test]
    fn truncation_keeps_exactly_the_requested_bits(bits in 1u16..=256, v in any::<String>()) {
        let idx = BlindIndex::new(&key(9), BlindIndexOptions::new("d").bits(bits).unwrap()).unwrap();
        let full = BlindIndex::new(&key(9), BlindIndexOptions::new("d").bits(256).unwrap()).unwrap();
        let out = idx.compute(&v);
        prop_assert_eq!(out.bits(), bits);
        prop_assert_eq!(out.as_bytes().len(), usize::from(bits).div_ceil(8));
        let spare = out.as_bytes().len() * 8 - usize::from(bits);
        prop_assert_eq!(out.as_bytes().last().unwrap() & ((1u16 << spare) - 1) as u8, 0);
        // A truncation of the full HMAC.
        let f = full.compute(&v);
        let n = out.as_bytes().len();
        prop_assert_eq!(&f.as_bytes()[..n - 1], &out.as_bytes()[..n - 1]);
    }

    #[test]
    fn pseudonyms_are_stable_and_keyed(v in any::<String>()) {
        let p = Pseudonymizer::new(&key(4)).unwrap();
        let q = Pseudonymizer::new(&key(5)).unwrap();
        prop_assert_eq!(p.pseudonym("user", &v), p.pseudonym("user", &v));
        prop_assert_ne!(p.pseudonym("user", &v), q.pseudonym("user", &v));
        prop_assert_ne!(p.pseudonym("user", &v), p.pseudonym("order", &v));
        prop_assert!(!p.pseudonym("user", &v).contains(&v) || v.is_empty() || v.len() < 3);
    }

    #[test]
    fn masks_never_panic_and_never_keep_more_than_allowed(v in any::<String>()) {
        let _ = mask::email(&v);
        let phone = mask::phone(&v);
        let card = mask::card(&v);
        prop_assert!(phone.chars().filter(char::is_ascii_digit).count() <= 2);
        prop_assert!(card.chars().filter(char::is_ascii_digit).count() <= 4);
        let _ = mask::ip_str(&v);
    }

    #[test]
    fn ipv4_masks_to_slash_24(a in any::<[u8; 4]>()) {
        let m = mask::ipv4(a.into());
        prop_assert_eq!(m.octets(), [a[0], a[1], a[2], 0]);
    }

    #[test]
    fn ipv6_masks_to_slash_48(a in any::<[u16; 8]>()) {
        let addr = std::net::Ipv6Addr::from(a);
        let m = mask::ipv6(addr);
        if addr.to_ipv4_mapped().is_none() {
            prop_assert_eq!(m.segments(), [a[0], a[1], a[2], 0, 0, 0, 0, 0]);
        }
    }
}

#[test]
fn masks() {
    assert_eq!(mask::email("alice@example.org"), "a***@example.org");
    assert_eq!(mask::email("a@b"), "a***@b");
    assert_eq!(mask::email("@example.org"), "***");
    assert_eq!(mask::email("not an email"), "***");
    assert_eq!(mask::email("élodie@exemple.fr"), "é***@exemple.fr");
    assert_eq!(mask::phone("+1 (555) 010-9999"), "+* (***) ***-**99");
    assert_eq!(mask::card("4111-1111-1111-1111"), "****-****-****-1111");
    assert_eq!(mask::card("411111"), "******");
    assert_eq!(mask::ip_str("203.0.113.200").unwrap(), "203.0.113.0");
    assert_eq!(mask::ip_str("2001:db8:1:2:3:4:5:6").unwrap(), "2001:db8:1::");
    assert_eq!(mask::ip_str("::ffff:198.51.100.7").unwrap(), "::ffff:198.51.100.0");
    assert_eq!(mask::ip_str("not an ip"), None);
    let v6: IpAddr = "fe80::1".parse().unwrap();
    assert_eq!(mask::ip(v6).to_string(), "fe80::");
}

#[test]
fn keyring_hmac_keys_drive_indexes_and_pseudonyms() {
    let mut k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let h = k.add_key(Algorithm::HmacSha256).unwrap();
    let idx = k
        .blind_index(h, BlindIndexOptions::new("users.email").lowercase())
        .unwrap();
    let reloaded = Keyring::danger_from_plaintext_json(&k.danger_to_plaintext_json()).unwrap();
    let idx2 = reloaded
        .blind_index(h, BlindIndexOptions::new("users.email").lowercase())
        .unwrap();
    assert_eq!(idx.compute("A@x.org"), idx2.compute("a@x.org"), "stable across reloads");
    assert_eq!(
        k.pseudonymizer(h).unwrap().pseudonym("u", "v"),
        reloaded.pseudonymizer(h).unwrap().pseudonym("u", "v")
    );
    // Rotating the encryption key does not change the index.
    let a = k.add_key(Algorithm::Aes256Gcm).unwrap();
    k.promote(a).unwrap();
    assert_eq!(
        k.blind_index(h, BlindIndexOptions::new("users.email").lowercase())
            .unwrap()
            .compute("a@x.org"),
        idx.compute("a@x.org")
    );
}
