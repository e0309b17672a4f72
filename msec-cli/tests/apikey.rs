//! `msec apikey new` end to end on the built binary: the key comes once on stderr, the record on stdout; the
//! record loaded into a `MemoryApiKeyStore` accepts that key (and only it) through the `ApiKeyAuthenticator`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Output};

use msec_authn::apikey::{ApiKeyAuthenticator, ApiKeyRecord, KeyHasher, MemoryApiKeyStore, parse_key};
use msec_authn::{Attempt, Authenticator, AuthnResult, RequestHead};
use msec_core::secret::SecretBytes;

fn msec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msec")).args(args).output().unwrap()
}

/// Runs `msec apikey new ..`: (the key from stderr, the record line from stdout).
fn new_key(args: &[&str]) -> (String, String) {
    let mut all = vec!["apikey", "new"];
    all.extend_from_slice(args);
    let out = msec(&all);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "msec {all:?}: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "stdout is exactly the record: {stdout}");
    assert!(stderr.contains("shown only now"), "{stderr}");
    let keys: Vec<&str> = stderr.lines().filter(|l| parse_key(l.trim()).is_ok()).collect();
    assert_eq!(keys.len(), 1, "the key appears once: {stderr}");
    let key = keys[0].trim().to_owned();
    assert!(!stdout.contains(&key), "the record never holds the key");
    (key, stdout.trim().to_owned())
}

fn verify(authn: &ApiKeyAuthenticator, key: &str) -> AuthnResult {
    let req = http::Request::builder().header("x-api-key", key).body(()).unwrap();
    match authn.authenticate(&RequestHead::from_request(&req)) {
        Attempt::Claimed(f) => f.into_ready().unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn new_key_verifies_against_its_record() {
    let (key, line) = new_key(&[
        "--prefix",
        "sk_live",
        "--scopes",
        "orders:read,orders:write",
        "--subject",
        "billing-bot",
        "--tenant",
        "acme",
        "--expires-in",
        "90d",
    ]);
    assert!(key.starts_with("sk_live_"));
    let record: ApiKeyRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(record.subject, "billing-bot");
    assert_eq!(record.scopes, ["orders:read", "orders:write"]);
    assert_eq!(record.tenant.as_deref(), Some("acme"));
    assert_eq!(record.digest_alg.as_str(), "sha256");
    assert_eq!(record.expires_at, Some(record.created_at + 90 * 86_400));
    assert_eq!(record.key_id, parse_key(&key).unwrap().key_id());

    let store = MemoryApiKeyStore::from_json_lines(&line).unwrap();
    let authn = ApiKeyAuthenticator::new(store, KeyHasher::sha256());
    let p = verify(&authn, &key).unwrap().principal;
    assert_eq!((p.subject.as_str(), p.tenant.as_deref()), ("billing-bot", Some("acme")));
    assert!(p.has_scope("orders:write"));
    // Another key from the same command is not in this store.
    let (other, _) = new_key(&["--prefix", "sk_live"]);
    assert_eq!(verify(&authn, &other).unwrap_err().code().as_str(), "invalid_api_key");
}

#[test]
fn peppered_records_need_the_pepper() {
    let dir = tempfile::tempdir().unwrap();
    let pepper = dir.path().join("pepper");
    std::fs::write(&pepper, [5u8; 32]).unwrap();
    let (key, line) = new_key(&["--prefix", "sk_test", "--pepper-file", pepper.to_str().unwrap()]);
    let record: ApiKeyRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(record.digest_alg.as_str(), "hmac-sha256");
    assert_eq!(record.subject, record.key_id, "the subject defaults to the key id");
    let store = MemoryApiKeyStore::from_json_lines(&line).unwrap();
    let hasher = KeyHasher::hmac_sha256(&SecretBytes::new(vec![5; 32])).unwrap();
    assert!(verify(&ApiKeyAuthenticator::new(store.clone(), hasher), &key).is_ok());
    let plain = ApiKeyAuthenticator::new(store, KeyHasher::sha256());
    assert_eq!(verify(&plain, &key).unwrap_err().code().as_str(), "invalid_api_key");
}

#[test]
fn bad_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, b"too short").unwrap();
    for (args, expect) in [
        (vec!["--prefix", "SK"], "invalid API key prefix"),
        (vec!["--prefix", "sk", "--expires-in", "5y"], "--expires-in"),
        (
            vec!["--prefix", "sk", "--pepper-file", short.to_str().unwrap()],
            "at least 32",
        ),
        (
            vec!["--prefix", "sk", "--pepper-file", "/nonexistent/pepper"],
            "/nonexistent/pepper",
        ),
        (vec!["--prefix", "sk", "--scopes", "a b"], "invalid scope"),
    ] {
        let mut all = vec!["apikey", "new"];
        all.extend_from_slice(&args);
        let out = msec(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "no record on failure");
    }
}
