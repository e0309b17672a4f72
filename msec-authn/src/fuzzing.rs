//! Bodies of the cargo-fuzz targets in `fuzz/` (`authn_jwt`, `authn_jwks`, `apikey_parse`), also run over
//! proptest inputs by this crate's tests. Not part of the API.

use std::sync::OnceLock;

use jsonwebtoken::Algorithm;
use msec_core::secret::SecretBytes;

use crate::authenticator::{Attempt, Authenticator, RequestHead};
use crate::jwt::{Issuer, JwtAuthenticator, JwtValidator};
use crate::keys::{ASYMMETRIC, JwkRules, KeySet};

/// The issuer the fuzz validator trusts.
pub const ISSUER: &str = "https://fuzz.example.com";

/// A validator with static keys (so verification is always synchronous) for `ISSUER`, audience `api`. `keys` is
/// a JWK set; `hmac` an HS256 secret (kid `hs`).
pub fn validator(keys: serde_json::Value, hmac: &[u8]) -> JwtValidator {
    match JwtValidator::builder()
        .issuer(Issuer::new(ISSUER).audience("api").jwk_set(keys).hmac_secret(
            Some("hs"),
            Algorithm::HS256,
            SecretBytes::new(hmac.to_vec()),
        ))
        .build()
    {
        Ok(v) => v,
        Err(e) => panic!("fuzz validator: {e}"),
    }
}

static FUZZ: OnceLock<JwtValidator> = OnceLock::new();

/// Installs the validator [`jwt`] uses (the first call wins). Without one, a validator trusting an HMAC key of 32
/// zero bytes only is used.
pub fn set_validator(v: JwtValidator) {
    let _ = FUZZ.set(v);
}

/// Arbitrary bytes as a token: never panics, never pending with static keys, and never validates unless the
/// input is a real token signed by a trusted key (which a fuzzer cannot produce).
pub fn jwt(data: &[u8]) -> bool {
    let v = FUZZ.get_or_init(|| validator(serde_json::json!({"keys": []}), &[0; 32]));
    let Ok(s) = std::str::from_utf8(data) else {
        return false;
    };
    let verdict = match v.validate(s).into_ready() {
        Ok(r) => r,
        Err(_) => panic!("static keys never need a fetch"),
    };
    // The same input as a bearer header through the authenticator.
    if let Ok(value) = http::HeaderValue::from_bytes([b"Bearer ".as_slice(), data].concat().as_slice()) {
        let mut req = http::Request::new(());
        req.headers_mut().insert(http::header::AUTHORIZATION, value);
        let attempt = JwtAuthenticator::new(v.clone()).authenticate(&RequestHead::from_request(&req));
        if let Attempt::Claimed(f) = attempt {
            let again = f.into_ready().unwrap_or_else(|_| panic!("synchronous"));
            assert_eq!(again.is_ok(), verdict.is_ok());
        }
    }
    verdict.is_ok()
}

/// Arbitrary bytes as a JWK set document and as `Cache-Control` values: never panics; every key taken is bound
/// to an allowed algorithm.
pub fn jwks(data: &[u8]) {
    let _ = crate::keys::http::parse_cache_control(std::iter::once(data));
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let rules = JwkRules {
        allowed: ASYMMETRIC.to_vec(),
        rsa_default_alg: Algorithm::RS256,
        max_keys: 100,
    };
    if let Ok((set, _)) = KeySet::from_jwks(&doc, &rules, None) {
        assert!(set.len() <= 100);
        for k in set.keys() {
            assert!(rules.allowed.contains(&k.alg));
        }
    }
}

/// Arbitrary bytes as an API key (`apikey_parse`): the parser never panics; what it accepts re-parses to the same
/// prefix and key id and fails on any single changed character; and the authenticator (an empty in-memory store)
/// never accepts it.
pub fn apikey_parse(data: &[u8]) {
    use crate::apikey::{ApiKeyAuthenticator, KeyHasher, MemoryApiKeyStore, parse_key};
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = parse_key(s) {
        assert!(s.starts_with(k.prefix()) && s.contains(k.key_id()));
        let mut b = s.as_bytes().to_vec();
        let last = b.len() - 1;
        b[last] = if b[last] == b'0' { b'1' } else { b'0' };
        if let Ok(changed) = std::str::from_utf8(&b) {
            assert!(
                parse_key(changed).is_err(),
                "a changed checksum character must be refused"
            );
        }
    }
    let authn = ApiKeyAuthenticator::new(MemoryApiKeyStore::new(), KeyHasher::sha256());
    let verdict = authn
        .verify(data)
        .into_ready()
        .unwrap_or_else(|_| panic!("the in-memory store answers synchronously"));
    assert!(verdict.is_err());
}
