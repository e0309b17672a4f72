//! The keyring file: key material wrapped by a KMS, plaintext only through `danger_`, secrets never in Debug.
#![allow(clippy::unwrap_used, missing_docs)]

use msec_crypto::{Algorithm, Context, Error, KeyStatus, Keyring, Kms, LocalKms};

fn keyring() -> Keyring {
    let mut k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let c = k.add_key(Algorithm::ChaCha20Poly1305).unwrap();
    let h = k.add_key(Algorithm::HmacSha256).unwrap();
    let old = k.primary().unwrap();
    k.promote(c).unwrap();
    k.set_status(old, KeyStatus::DecryptOnly).unwrap();
    let _ = h;
    k
}

fn materials(plain_json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(plain_json).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["danger_plaintext"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn wrapped_file_round_trips_and_holds_no_key_material() {
    let kms = LocalKms::generate().unwrap();
    let k = keyring();
    let ctx = Context::new("t", "c", "1");
    let ct = k.encrypt(b"hello", &ctx).unwrap();

    let json = k.to_json(&kms).await.unwrap();
    for m in materials(&k.danger_to_plaintext_json()) {
        assert!(!json.contains(&m), "key material in the wrapped file");
    }
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["format"], "msec-keyring/v1");
    assert_eq!(v["kms"], kms.key_uri());
    assert_eq!(v["keys"].as_array().unwrap().len(), 3);

    let loaded = Keyring::from_json(&json, &kms).await.unwrap();
    assert_eq!(loaded.keys(), k.keys());
    assert_eq!(loaded.primary(), k.primary());
    assert_eq!(&*loaded.decrypt(&ct, &ctx).unwrap(), b"hello");
    let ct2 = loaded.encrypt(b"again", &ctx).unwrap();
    assert_eq!(&*k.decrypt(&ct2, &ctx).unwrap(), b"again");
}

#[tokio::test]
async fn another_master_key_cannot_load_the_file() {
    let json = keyring().to_json(&LocalKms::generate().unwrap()).await.unwrap();
    let err = Keyring::from_json(&json, &LocalKms::generate().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "kms_error");
}

#[tokio::test]
async fn wrapped_material_swapped_between_entries_does_not_load() {
    let kms = LocalKms::generate().unwrap();
    let mut k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    k.add_key(Algorithm::Aes256Gcm).unwrap();
    let json = k.to_json(&kms).await.unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let a = v["keys"][0]["wrapped"].clone();
    v["keys"][0]["wrapped"] = v["keys"][1]["wrapped"].clone();
    v["keys"][1]["wrapped"] = a;
    assert!(Keyring::from_json(&v.to_string(), &kms).await.is_err());
    // Changing an entry's algorithm breaks its wrap too.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["keys"][0]["algorithm"] = "chacha20-poly1305".into();
    assert!(Keyring::from_json(&v.to_string(), &kms).await.is_err());
}

#[tokio::test]
async fn plaintext_keyrings_load_only_through_danger() {
    let k = keyring();
    let plain = k.danger_to_plaintext_json();
    assert!(plain.contains("msec-keyring/v1+danger-plaintext"));
    let kms = LocalKms::generate().unwrap();
    assert!(matches!(
        Keyring::from_json(&plain, &kms).await,
        Err(Error::KeyringFile(_))
    ));
    let wrapped = k.to_json(&kms).await.unwrap();
    assert!(matches!(
        Keyring::danger_from_plaintext_json(&wrapped),
        Err(Error::KeyringFile(_))
    ));
    let loaded = Keyring::danger_from_plaintext_json(&plain).unwrap();
    assert_eq!(loaded.keys(), k.keys());
}

#[tokio::test]
async fn invalid_files_are_errors() {
    let kms = LocalKms::generate().unwrap();
    for bad in [
        "",
        "{}",
        "[]",
        r#"{"format":"msec-keyring/v1","primary":null,"keys":[],"extra":1}"#,
    ] {
        assert!(Keyring::from_json(bad, &kms).await.is_err(), "{bad}");
    }
    // A primary that is not in the file, or not an enabled AEAD key.
    let k = keyring();
    let json = k.to_json(&kms).await.unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["primary"] = "00000000".into();
    assert!(Keyring::from_json(&v.to_string(), &kms).await.is_err());
    let hmac = k
        .keys()
        .into_iter()
        .find(|i| i.algorithm == Algorithm::HmacSha256)
        .unwrap();
    v["primary"] = hmac.id.to_string().into();
    assert!(Keyring::from_json(&v.to_string(), &kms).await.is_err());
}

#[test]
fn secrets_never_appear_in_debug() {
    let k = keyring();
    let kms = LocalKms::from_json(&LocalKms::generate().unwrap().to_json()).unwrap();
    let hmac = k
        .keys()
        .into_iter()
        .find(|i| i.algorithm == Algorithm::HmacSha256)
        .unwrap()
        .id;
    let idx = k.blind_index(hmac, msec_crypto::BlindIndexOptions::new("x")).unwrap();
    let ps = k.pseudonymizer(hmac).unwrap();
    let debug = format!("{k:?} {kms:?} {idx:?} {ps:?}");
    for m in materials(&k.danger_to_plaintext_json())
        .into_iter()
        .chain(materials(&kms.to_json()))
    {
        assert!(!debug.contains(&m));
    }
    assert!(debug.contains("[REDACTED]"));
    assert!(!debug.to_lowercase().contains("danger_plaintext"));
}

#[test]
fn local_kms_file_is_owner_only_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.json");
    let kms = LocalKms::generate().unwrap();
    kms.save_new(&path).unwrap();
    assert!(kms.save_new(&path).is_err(), "never overwrites a master key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let back = LocalKms::load(&path).unwrap();
    assert_eq!(back.key_uri(), kms.key_uri());
}

#[tokio::test]
async fn master_key_rotation_keeps_files_loadable() {
    let mut kms = LocalKms::generate().unwrap();
    let k = keyring();
    let json_old = k.to_json(&kms).await.unwrap();
    let m2 = kms.master_keyring_mut().add_key(Algorithm::Aes256Gcm).unwrap();
    kms.master_keyring_mut().promote(m2).unwrap();
    let json_new = k.to_json(&kms).await.unwrap();
    assert!(json_new.contains(&format!("msec-local:{m2}")));
    assert_eq!(Keyring::from_json(&json_old, &kms).await.unwrap().keys(), k.keys());
    assert_eq!(Keyring::from_json(&json_new, &kms).await.unwrap().keys(), k.keys());
}
