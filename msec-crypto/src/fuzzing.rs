//! Fuzz bodies shared by the cargo-fuzz target (`fuzz/fuzz_targets/crypto_ciphertext.rs`) and the proptest that
//! runs them in CI. Not part of the API.

use std::sync::LazyLock;

use crate::{Algorithm, Ciphertext, Context, KeyId, KeyStatus, Keyring};

static KEYRING: LazyLock<Option<Keyring>> = LazyLock::new(|| {
    let mut k = Keyring::new();
    k.danger_import_key(KeyId(1), Algorithm::Aes256Gcm, &[1; 32], KeyStatus::Enabled)
        .ok()?;
    k.danger_import_key(KeyId(2), Algorithm::ChaCha20Poly1305, &[2; 32], KeyStatus::Enabled)
        .ok()?;
    k.danger_import_key(KeyId(3), Algorithm::Aes256Gcm, &[3; 32], KeyStatus::Disabled)
        .ok()?;
    k.danger_import_key(KeyId(4), Algorithm::HmacSha256, &[4; 32], KeyStatus::Enabled)
        .ok()?;
    Some(k)
});

/// Parses `data` as a binary and as a text ciphertext and tries to decrypt it: must never panic; whatever parses
/// must survive a round trip through the other form.
pub fn ciphertext(data: &[u8]) {
    let Some(keyring) = KEYRING.as_ref() else { return };
    let ctx = Context::new("t", "c", data.get(..4).unwrap_or_default());
    if let Ok(ct) = Ciphertext::from_bytes(data.to_vec()) {
        assert_eq!(ct.as_bytes(), data);
        let again = Ciphertext::from_text(&ct.to_text()).expect("text round trip");
        assert_eq!(again, ct);
        let _ = ct.plaintext_len();
        let _ = format!("{ct:?}");
        if let Ok(pt) = keyring.decrypt(&ct, &ctx) {
            panic!("a fuzzed ciphertext authenticated ({} bytes)", pt.len());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ct) = Ciphertext::from_text(text) {
            assert_eq!(ct.to_text(), text, "the text form has one spelling");
            let again = Ciphertext::from_bytes(ct.as_bytes().to_vec()).expect("binary round trip");
            assert_eq!(again, ct);
            assert!(keyring.decrypt(&ct, &ctx).is_err());
        }
        // Context parts survive the length-prefixed encoding whatever they contain.
        let boundary = |s: &str, n: usize| (0..=n).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        let (table, rest) = text.split_at(boundary(text, text.len() / 3));
        let (column, record) = rest.split_at(boundary(rest, rest.len() / 2));
        let c = Context::new(table, column, record);
        assert_eq!(
            (c.table(), c.column_name(), c.record()),
            (table, column, record.as_bytes())
        );
    }
}
