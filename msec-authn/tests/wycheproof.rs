//! Wycheproof vectors (ECDSA P-256 / P-384 in IEEE P1363 form, Ed25519, RSA PKCS#1 v1.5 and PSS) through the
//! verifiers of msec's ring-backed jsonwebtoken `CryptoProvider` — built by the provider's `verifier_factory`,
//! exactly as jsonwebtoken calls it.
//!
//! The vectors live in `shared/data/wycheproof` beside the repository (override with `WYCHEPROOF_DIR`). Without
//! them the test prints a notice and skips, or fails under `MSEC_REQUIRE_SERVICES=1`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey};
use msec_authn::crypto::RING_PROVIDER;
use serde_json::Value;

fn dir() -> Option<PathBuf> {
    let d = std::env::var_os("WYCHEPROOF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/wycheproof"));
    if d.join("ed25519_test.json").is_file() {
        Some(d)
    } else {
        msec_test_support::services::unavailable("Wycheproof vectors", &format!("{} not found", d.display()));
        None
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable_accepted: usize,
    acceptable_refused: usize,
}

/// Runs every test of `file`, building the key of each group with `key`.
type KeyOf = dyn Fn(&Value) -> Vec<DecodingKey>;

fn run(dir: &Path, file: &str, alg: Algorithm, sha: &str, key: &KeyOf) -> Tally {
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
    let mut t = Tally::default();
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        if let Some(s) = group.get("sha").and_then(Value::as_str) {
            assert_eq!(s, sha, "{file}: group hash");
        }
        for dk in key(group) {
            let verifier = (RING_PROVIDER.verifier_factory)(&alg, &dk).unwrap();
            assert_eq!(verifier.algorithm(), alg);
            for test in group["tests"].as_array().unwrap() {
                let msg = hex(test["msg"].as_str().unwrap());
                let sig = hex(test["sig"].as_str().unwrap());
                let ok = verifier.verify(&msg, &sig).is_ok();
                let id = test["tcId"].as_u64().unwrap();
                match (test["result"].as_str().unwrap(), ok) {
                    ("valid", true) => t.valid += 1,
                    ("invalid", false) => t.invalid += 1,
                    ("acceptable", true) => t.acceptable_accepted += 1,
                    ("acceptable", false) => t.acceptable_refused += 1,
                    (r, _) => failures.push(format!("{file} #{id} ({r}): {}", test["comment"])),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(t.valid > 0 && t.invalid > 0, "{file}: {t:?}");
    t
}

fn ec_key(group: &Value) -> Vec<DecodingKey> {
    let point = hex(group["publicKey"]["uncompressed"].as_str().unwrap());
    let mut keys = vec![DecodingKey::from_ec_der(&point)];
    // Some groups (keys with coordinates of unusual length) carry no JWK.
    let jwk = &group["publicKeyJwk"];
    if let (Some(x), Some(y)) = (jwk["x"].as_str(), jwk["y"].as_str()) {
        keys.push(DecodingKey::from_ec_components(x, y).unwrap());
    }
    keys
}

fn ed_key(group: &Value) -> Vec<DecodingKey> {
    vec![
        DecodingKey::from_ed_der(&hex(group["publicKey"]["pk"].as_str().unwrap())),
        DecodingKey::from_ed_pem(group["publicKeyPem"].as_str().unwrap().as_bytes()).unwrap(),
    ]
}

fn rsa_key(group: &Value) -> Vec<DecodingKey> {
    let pk = &group["publicKey"];
    let n = hex(pk["modulus"].as_str().unwrap());
    let e = hex(pk["publicExponent"].as_str().unwrap());
    vec![
        // As a PEM / DER key (RSAPublicKey DER), and as JWK components.
        DecodingKey::from_rsa_der(&hex(group["publicKeyAsn"].as_str().unwrap())),
        DecodingKey::from_rsa_pem(group["publicKeyPem"].as_str().unwrap().as_bytes()).unwrap(),
        DecodingKey::from_rsa_raw_components(&n, &e),
    ]
}

#[test]
fn wycheproof_vectors_through_the_ring_provider() {
    let Some(d) = dir() else { return };
    let cases: [(&str, Algorithm, &str, &KeyOf); 10] = [
        (
            "ecdsa_secp256r1_sha256_p1363_test.json",
            Algorithm::ES256,
            "SHA-256",
            &ec_key,
        ),
        (
            "ecdsa_secp384r1_sha384_p1363_test.json",
            Algorithm::ES384,
            "SHA-384",
            &ec_key,
        ),
        ("ed25519_test.json", Algorithm::EdDSA, "", &ed_key),
        (
            "rsa_signature_2048_sha256_test.json",
            Algorithm::RS256,
            "SHA-256",
            &rsa_key,
        ),
        (
            "rsa_signature_2048_sha384_test.json",
            Algorithm::RS384,
            "SHA-384",
            &rsa_key,
        ),
        (
            "rsa_signature_2048_sha512_test.json",
            Algorithm::RS512,
            "SHA-512",
            &rsa_key,
        ),
        (
            "rsa_signature_3072_sha256_test.json",
            Algorithm::RS256,
            "SHA-256",
            &rsa_key,
        ),
        (
            "rsa_signature_4096_sha256_test.json",
            Algorithm::RS256,
            "SHA-256",
            &rsa_key,
        ),
        (
            "rsa_pss_2048_sha256_mgf1_32_test.json",
            Algorithm::PS256,
            "SHA-256",
            &rsa_key,
        ),
        (
            "rsa_pss_2048_sha384_mgf1_48_test.json",
            Algorithm::PS384,
            "SHA-384",
            &rsa_key,
        ),
    ];
    let mut total = 0;
    for (file, alg, sha, key) in cases {
        let t = run(&d, file, alg, sha, key);
        total += t.valid + t.invalid + t.acceptable_accepted + t.acceptable_refused;
        println!("{file}: {t:?}");
    }
    let t = run(
        &d,
        "rsa_pss_4096_sha512_mgf1_64_test.json",
        Algorithm::PS512,
        "SHA-512",
        &rsa_key,
    );
    total += t.valid + t.invalid;
    assert!(total > 3000, "{total} vector checks");
}
