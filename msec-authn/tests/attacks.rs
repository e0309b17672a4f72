//! The attack suite: every classic JWT attack is rejected with its expected code (and the matching status through
//! the layer), and nothing panics.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, SystemTime};

use jsonwebtoken::Algorithm;
use msec_authn::AuthnLayer;
use msec_authn::jwt::{Issuer, JwtValidator};
use msec_core::secret::SecretBytes;
use msec_test_support::keys::{b64url, sign_compact};
use msec_test_support::{Alg, TestKey};
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;
use serde_json::{Value, json};

const ISS: &str = "https://id.example.com";

fn ours() -> Vec<TestKey> {
    vec![TestKey::rs256(), TestKey::es256(), TestKey::eddsa()]
}

fn validator() -> JwtValidator {
    JwtValidator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("api")
                .jwk_set(msec_test_support::keys::jwks(&ours().iter().collect::<Vec<_>>())),
        )
        .build()
        .unwrap()
}

/// An ES256 key that is not ours.
fn attacker_es256(kid: &str) -> TestKey {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    TestKey {
        alg: Alg::ES256,
        kid: kid.into(),
        private_der: pkcs8.as_ref().to_vec(),
        private_pem: String::new(),
        public_pem: String::new(),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn good_claims() -> Value {
    json!({"iss": ISS, "aud": "api", "sub": "alice", "iat": now(), "exp": now() + 3600})
}

fn unsigned(header: &Value, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64url(&serde_json::to_vec(header).unwrap()),
        b64url(&serde_json::to_vec(claims).unwrap())
    )
}

fn hmac(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(header).unwrap()),
        b64url(&serde_json::to_vec(claims).unwrap())
    );
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

fn cases() -> Vec<(&'static str, String, &'static str)> {
    let rsa = TestKey::rs256();
    let ec = TestKey::es256();
    let ed = TestKey::eddsa();
    let claims = good_claims();
    let good = rsa.token().iss(ISS).aud("api").sub("alice").sign();
    let parts: Vec<&str> = good.split('.').collect();
    let mut c: Vec<(&'static str, String, &'static str)> = Vec::new();

    for none in ["none", "None", "NONE", "nOnE"] {
        let h = json!({"alg": none, "typ": "JWT"});
        c.push((
            "alg none, empty signature",
            unsigned(&h, &claims, ""),
            "alg_not_allowed",
        ));
        c.push((
            "alg none, with a signature",
            unsigned(&h, &claims, parts[2]),
            "alg_not_allowed",
        ));
    }
    c.push((
        "alg missing",
        unsigned(&json!({"typ": "JWT"}), &claims, parts[2]),
        "malformed_token",
    ));
    c.push((
        "alg unknown",
        unsigned(&json!({"alg": "HS1"}), &claims, parts[2]),
        "alg_not_allowed",
    ));

    // Key confusion: HS256 "signed" with the RSA public key (PEM text, and DER).
    let pem = rsa.public_pem.as_bytes().to_vec();
    let der = msec_test_support::keys::pem_to_der(&rsa.public_pem);
    for (what, secret) in [("PEM", pem), ("DER", der)] {
        let _ = what;
        c.push((
            "HS256 signed with the RSA public key, kid of the RSA key",
            hmac(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims, &secret),
            "alg_not_allowed",
        ));
        c.push((
            "HS256 signed with the RSA public key, no kid",
            hmac(&json!({"alg": "HS256"}), &claims, &secret),
            "alg_not_allowed",
        ));
    }
    // A token whose header alg was switched to another RSA algorithm.
    let ps = format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"PS256","kid":"rsa-1"}"#),
        parts[1],
        parts[2]
    );
    c.push(("RS256 token relabelled PS256", ps, "alg_not_allowed"));
    let es_on_rsa = sign_compact(&ec, &json!({"alg": "ES256", "kid": "rsa-1"}), &claims);
    c.push(("ES256 header naming an RSA kid", es_on_rsa, "alg_not_allowed"));

    for kid in [
        "../../../../../../dev/null",
        "' OR '1'='1' --",
        "%00",
        "\u{0}",
        &"k".repeat(200),
    ] {
        c.push((
            "hostile kid",
            ec.token().header("kid", kid).iss(ISS).aud("api").sub("x").sign(),
            "unknown_kid",
        ));
    }
    c.push((
        "kid of 10k characters",
        ec.token()
            .header("kid", "k".repeat(10_000))
            .iss(ISS)
            .aud("api")
            .sub("x")
            .sign(),
        "token_too_large",
    ));
    c.push((
        "kid of 300 characters",
        ec.token()
            .header("kid", "k".repeat(300))
            .iss(ISS)
            .aud("api")
            .sub("x")
            .sign(),
        "unknown_kid",
    ));
    c.push((
        "kid not a string",
        ec.token().header("kid", 7).iss(ISS).aud("api").sub("x").sign(),
        "malformed_token",
    ));

    // Header-supplied keys are never used.
    let evil = attacker_es256("ec-p256");
    let evil_jwk = evil.public_jwk();
    c.push((
        "embedded jwk, our kid, attacker's signature",
        evil.token()
            .header("jwk", evil_jwk.clone())
            .iss(ISS)
            .aud("api")
            .sub("x")
            .sign(),
        "bad_signature",
    ));
    let evil2 = attacker_es256("attacker");
    c.push((
        "jku pointing at the attacker's JWKS",
        evil2
            .token()
            .header("jku", "https://evil.example.com/jwks")
            .iss(ISS)
            .aud("api")
            .sub("x")
            .sign(),
        "unknown_kid",
    ));
    c.push((
        "x5u pointing at the attacker's certificate",
        evil2
            .token()
            .header("x5u", "https://evil.example.com/cert.pem")
            .iss(ISS)
            .aud("api")
            .sub("x")
            .sign(),
        "unknown_kid",
    ));
    c.push((
        "embedded jwk without kid",
        evil.token()
            .without_header("kid")
            .header("jwk", evil_jwk)
            .iss(ISS)
            .aud("api")
            .sub("x")
            .sign(),
        "bad_signature",
    ));
    c.push((
        "x5c with the attacker's chain",
        evil.token()
            .header("x5c", json!(["MIIBattacker"]))
            .iss(ISS)
            .aud("api")
            .sub("x")
            .sign(),
        "bad_signature",
    ));

    // Psychic signatures (CVE-2022-21449): r = s = 0, and r = s = n.
    let es = ec.token().iss(ISS).aud("api").sub("x").sign();
    let es_input = es.rsplit_once('.').unwrap().0.to_owned();
    c.push((
        "ECDSA r=s=0",
        format!("{es_input}.{}", b64url(&[0u8; 64])),
        "bad_signature",
    ));
    let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    c.push((
        "ECDSA r=s=n",
        format!("{es_input}.{}", b64url(&[n.clone(), n].concat())),
        "bad_signature",
    ));
    c.push((
        "ECDSA DER-encoded signature",
        format!("{es_input}.{}", b64url(&der_sig(&es))),
        "bad_signature",
    ));
    let ed_tok = ed.token().iss(ISS).aud("api").sub("x").sign();
    let ed_input = ed_tok.rsplit_once('.').unwrap().0.to_owned();
    c.push((
        "Ed25519 all-zero signature",
        format!("{ed_input}.{}", b64url(&[0u8; 64])),
        "bad_signature",
    ));

    // Structure.
    c.push((
        "signature stripped",
        format!("{}.{}.", parts[0], parts[1]),
        "bad_signature",
    ));
    c.push((
        "signature segment missing",
        format!("{}.{}", parts[0], parts[1]),
        "malformed_token",
    ));
    c.push((
        "header and payload swapped",
        format!("{}.{}.{}", parts[1], parts[0], parts[2]),
        "malformed_token",
    ));
    c.push((
        "signature of another token",
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(br#"{"iss":"https://id.example.com","aud":"api","sub":"root","exp":99999999999}"#),
            parts[2]
        ),
        "bad_signature",
    ));
    c.push(("four segments", format!("{good}.e30"), "malformed_token"));
    c.push((
        "JWE (five segments)",
        "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d".into(),
        "malformed_token",
    ));
    c.push((
        "padding",
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        "malformed_token",
    ));
    c.push((
        "standard base64 alphabet",
        format!("{}.{}.{}+/", parts[0], parts[1], parts[2]),
        "malformed_token",
    ));
    c.push((
        "bad base64 characters",
        format!("{}.{}!.{}", parts[0], parts[1], parts[2]),
        "malformed_token",
    ));
    let mut sig1 = parts[2].to_owned();
    while sig1.len() % 4 != 1 {
        sig1.push('A');
    }
    c.push((
        "base64 of length 1 mod 4",
        format!("{}.{}.{sig1}", parts[0], parts[1]),
        "malformed_token",
    ));
    c.push((
        "payload not JSON",
        format!("{}.{}.{}", parts[0], b64url(b"not json"), parts[2]),
        "malformed_token",
    ));
    c.push((
        "payload a JSON array",
        format!("{}.{}.{}", parts[0], b64url(b"[1]"), parts[2]),
        "malformed_token",
    ));
    c.push((
        "duplicate claims",
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(br#"{"exp":99999999999,"exp":"x"}"#),
            parts[2]
        ),
        "malformed_token",
    ));
    c.push((
        "crit header",
        rsa.token()
            .header("crit", json!(["exp"]))
            .header("exp", 1)
            .iss(ISS)
            .aud("api")
            .sub("x")
            .sign(),
        "unsupported_crit",
    ));
    c.push((
        "oversized token",
        rsa.token()
            .iss(ISS)
            .aud("api")
            .sub("x")
            .claim("pad", "x".repeat(9000))
            .sign(),
        "token_too_large",
    ));
    c.push(("empty token parts", "..".into(), "malformed_token"));

    // Claims.
    let t = |f: &dyn Fn(msec_test_support::keys::TokenBuilder<'_>) -> msec_test_support::keys::TokenBuilder<'_>| {
        f(rsa.token().iss(ISS).aud("api").sub("alice")).sign()
    };
    c.push(("expired", t(&|b| b.claim("exp", now() - 3600)), "token_expired"));
    c.push((
        "not yet valid",
        t(&|b| b.claim("nbf", now() + 3600)),
        "token_not_yet_valid",
    ));
    c.push((
        "issued in the future",
        t(&|b| b.claim("iat", now() + 3600).claim("exp", now() + 7200)),
        "token_not_yet_valid",
    ));
    c.push((
        "wrong iss",
        rsa.token().iss("https://evil.example.com").aud("api").sub("x").sign(),
        "issuer_mismatch",
    ));
    c.push((
        "iss with a trailing slash",
        rsa.token().iss("https://id.example.com/").aud("api").sub("x").sign(),
        "issuer_mismatch",
    ));
    c.push(("iss missing", rsa.token().aud("api").sub("x").sign(), "missing_claim"));
    c.push((
        "iss not a string",
        rsa.token().claim("iss", json!([ISS])).aud("api").sub("x").sign(),
        "invalid_claim",
    ));
    c.push(("wrong aud", t(&|b| b.aud("billing")), "audience_mismatch"));
    c.push(("aud in another case", t(&|b| b.aud("API")), "audience_mismatch"));
    c.push(("aud missing", t(&|b| b.without_claim("aud")), "missing_claim"));
    c.push((
        "exp as a string",
        t(&|b| b.claim("exp", (now() + 3600).to_string())),
        "invalid_claim",
    ));
    c.push(("expired exp as a string", t(&|b| b.claim("exp", "1")), "invalid_claim"));
    c.push(("nbf as a string", t(&|b| b.claim("nbf", "0")), "invalid_claim"));
    c.push(("iat as a string", t(&|b| b.claim("iat", "0")), "invalid_claim"));
    c.push(("exp as a boolean", t(&|b| b.claim("exp", true)), "invalid_claim"));
    c.push(("exp missing", t(&|b| b.without_claim("exp")), "missing_claim"));
    c.push((
        "typ of a logout token",
        rsa.token()
            .header("typ", "logout+jwt")
            .iss(ISS)
            .aud("api")
            .sub("x")
            .sign(),
        "bad_typ",
    ));
    c.push(("sub not a string", t(&|b| b.claim("sub", 42)), "invalid_claim"));
    c
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The token's P1363 signature re-encoded as ASN.1 DER (as a naive signer would send it).
fn der_sig(token: &str) -> Vec<u8> {
    use base64::Engine;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.rsplit_once('.').unwrap().1)
        .unwrap();
    let int = |b: &[u8]| {
        let mut v = b.iter().skip_while(|x| **x == 0).copied().collect::<Vec<u8>>();
        if v.first().is_some_and(|x| x & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let body = [int(&sig[..32]), int(&sig[32..])].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[tokio::test]
async fn every_attack_is_rejected_with_its_code() {
    let v = validator();
    let layer = AuthnLayer::jwt(v.clone());
    // Sanity: the untampered token passes.
    let good = TestKey::rs256().token().iss(ISS).aud("api").sub("alice").sign();
    assert_eq!(v.validate(&good).await.unwrap().principal.subject, "alice");

    let mut failures = Vec::new();
    for (name, token, want) in cases() {
        let got = match v.validate(&token).await {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.code().as_str().to_owned(),
        };
        if got != want {
            failures.push(format!("{name}: validator said {got}, want {want}"));
            continue;
        }
        let answer = common::call(&layer, common::bearer(&token)).await;
        let status = if matches!(want, "malformed_token" | "token_too_large") {
            400
        } else {
            401
        };
        if answer.status != status || answer.code() != want {
            failures.push(format!(
                "{name}: layer said {} {}, want {status} {want}",
                answer.status,
                answer.code()
            ));
        }
        let challenge = answer.www_authenticate();
        let expected_error = if status == 400 {
            "invalid_request"
        } else {
            "invalid_token"
        };
        if !challenge.contains(&format!("error=\"{expected_error}\"")) {
            failures.push(format!("{name}: challenge {challenge:?}"));
        }
        let d = answer.authn_decision();
        if d.code.as_str() != want || d.outcome != msec_core::Outcome::Deny {
            failures.push(format!("{name}: decision {d:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn hmac_issuer_refuses_rsa_key_confusion_and_accepts_its_secret() {
    let rsa = TestKey::rs256();
    let secret = TestKey::hs256().private_der;
    let v = JwtValidator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("api")
                .jwk_set(msec_test_support::keys::jwks(&[&rsa]))
                .hmac_secret(Some("hs"), Algorithm::HS256, SecretBytes::new(secret.clone())),
        )
        .build()
        .unwrap();
    let claims = good_claims();
    let pem = rsa.public_pem.as_bytes();
    let forged = hmac(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims, pem);
    assert_eq!(
        v.validate(&forged).await.unwrap_err().code().as_str(),
        "alg_not_allowed"
    );
    let forged = hmac(&json!({"alg": "HS256"}), &claims, pem);
    assert_eq!(v.validate(&forged).await.unwrap_err().code().as_str(), "bad_signature");
    let forged = hmac(&json!({"alg": "HS256", "kid": "hs"}), &claims, pem);
    assert_eq!(v.validate(&forged).await.unwrap_err().code().as_str(), "bad_signature");
    let real = hmac(&json!({"alg": "HS256", "kid": "hs"}), &claims, &secret);
    assert_eq!(v.validate(&real).await.unwrap().principal.subject, "alice");
}

#[test]
fn hmac_needs_32_byte_secrets_and_never_comes_from_a_jwks() {
    let short = JwtValidator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("api")
                .hmac_secret(None, Algorithm::HS256, SecretBytes::new(vec![1; 31])),
        )
        .build();
    assert!(matches!(short, Err(msec_authn::ConfigError::InvalidHmacKey(..))));
    let oct_jwks = JwtValidator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("api")
                .jwk_set(msec_test_support::keys::jwks(&[&TestKey::hs256()])),
        )
        .build();
    assert!(matches!(oct_jwks, Err(msec_authn::ConfigError::NoUsableKeys(_))));
    let no_aud = JwtValidator::builder()
        .issuer(Issuer::new(ISS).jwk_set(msec_test_support::keys::jwks(&[&TestKey::rs256()])))
        .build();
    assert!(matches!(no_aud, Err(msec_authn::ConfigError::NoAudience(_))));
}

#[tokio::test]
async fn leeway_and_max_lifetime() {
    let clock = msec_test_support::FakeClock::starting_now();
    let rsa = TestKey::rs256();
    let v = JwtValidator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("api")
                .jwk_set(msec_test_support::keys::jwks(&[&rsa]))
                .leeway(Duration::from_secs(30))
                .max_lifetime(Duration::from_secs(3600)),
        )
        .clock(clock.clone())
        .no_cache()
        .build()
        .unwrap();
    let t = rsa
        .token()
        .iss(ISS)
        .aud("api")
        .sub("a")
        .expires_in(Duration::from_secs(60))
        .sign();
    assert!(v.validate(&t).await.is_ok());
    clock.advance(Duration::from_secs(85));
    assert!(v.validate(&t).await.is_ok(), "within the 30 s leeway");
    clock.advance(Duration::from_secs(10));
    assert_eq!(v.validate(&t).await.unwrap_err().code().as_str(), "token_expired");
    let long = rsa
        .token()
        .iss(ISS)
        .aud("api")
        .sub("a")
        .expires_in(Duration::from_secs(7200))
        .sign();
    assert_eq!(
        v.validate(&long).await.unwrap_err().code().as_str(),
        "token_lifetime_too_long"
    );
}
