//! Tokens minted by an independent JOSE implementation (PyJWT + cryptography, see
//! `msec-test-support/fixtures/mint.py`), with the JWK set that library wrote, are accepted for every supported
//! algorithm — and its refused tokens are refused with the right codes. The fixtures are committed; no Python is
//! needed to run this test.
#![allow(clippy::unwrap_used, missing_docs)]

use jsonwebtoken::Algorithm;
use msec_authn::jwt::{Issuer, JwtValidator};
use msec_core::secret::SecretBytes;
use msec_test_support::TestKey;
use serde_json::Value;

const FIXTURES: &str = include_str!("../../msec-test-support/fixtures/pyjwt-tokens.json");

#[tokio::test]
async fn pyjwt_tokens_for_every_algorithm() {
    let doc: Value = serde_json::from_str(FIXTURES).unwrap();
    let secret = SecretBytes::new(TestKey::hs256().private_der);
    let mut issuer = Issuer::new(doc["issuer"].as_str().unwrap())
        .audience(doc["audience"].as_str().unwrap())
        .jwk_set(doc["jwks"].clone());
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        issuer = issuer.hmac_secret(Some("hs256"), alg, secret.clone());
    }
    let all = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];
    let v = JwtValidator::builder()
        .issuer(issuer.algorithms(all))
        .no_cache()
        .build()
        .unwrap();

    let mut accepted = Vec::new();
    for t in doc["tokens"].as_array().unwrap() {
        let alg = t["alg"].as_str().unwrap();
        let token = t["token"].as_str().unwrap();
        let expect = t["expect"].as_str().unwrap();
        match (expect, v.validate(token).await) {
            ("accept", Ok(a)) => {
                let p = &a.principal;
                assert_eq!(p.subject, format!("pyjwt-{}", alg.to_lowercase()));
                assert!(p.has_scope("orders:read") && p.has_scope("orders:write"));
                assert_eq!(p.token_id.as_deref(), Some(format!("pyjwt-{alg}").as_str()));
                accepted.push(alg.to_owned());
            }
            ("accept", Err(e)) => panic!("{alg}: {e}"),
            (code, Err(e)) => assert_eq!(e.code().as_str(), code, "{alg}"),
            (code, Ok(_)) => panic!("{alg}: accepted, expected {code}"),
        }
    }
    assert_eq!(
        accepted,
        [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"
        ]
    );
}

/// The independent library's public JWKs and msec's own fixture JWKs describe the same keys.
#[test]
fn pyjwt_jwks_match_the_fixture_keys() {
    let doc: Value = serde_json::from_str(FIXTURES).unwrap();
    for jwk in doc["jwks"]["keys"].as_array().unwrap() {
        let alg: msec_test_support::Alg = match jwk["alg"].as_str().unwrap() {
            "RS256" => msec_test_support::Alg::RS256,
            "RS384" => msec_test_support::Alg::RS384,
            "RS512" => msec_test_support::Alg::RS512,
            "PS256" => msec_test_support::Alg::PS256,
            "PS384" => msec_test_support::Alg::PS384,
            "PS512" => msec_test_support::Alg::PS512,
            "ES256" => msec_test_support::Alg::ES256,
            "ES384" => msec_test_support::Alg::ES384,
            _ => msec_test_support::Alg::EdDSA,
        };
        let ours = TestKey::for_alg(alg).public_jwk();
        for member in ["kty", "n", "e", "crv", "x", "y", "kid"] {
            assert_eq!(jwk.get(member), ours.get(member), "{alg:?} {member}");
        }
    }
}
