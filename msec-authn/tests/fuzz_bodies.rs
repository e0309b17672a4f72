//! Property tests: arbitrary bytes as a token never panic and never validate; a valid token with any single
//! character changed, or truncated, never validates; arbitrary JWK sets never panic. These run the bodies of the
//! cargo-fuzz targets (`fuzz/fuzz_targets/authn_*.rs`), so CI exercises them without cargo-fuzz.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Once;

use msec_authn::fuzzing;
use msec_test_support::TestKey;
use proptest::prelude::*;

static INIT: Once = Once::new();

fn init() {
    INIT.call_once(|| {
        let keys = msec_test_support::keys::jwks(&[&TestKey::rs256(), &TestKey::es256(), &TestKey::eddsa()]);
        fuzzing::set_validator(fuzzing::validator(keys, &TestKey::hs256().private_der));
    });
}

fn valid_token(which: u8) -> String {
    static TOKENS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = TOKENS.get_or_init(|| {
        [
            TestKey::rs256(),
            TestKey::es256(),
            TestKey::eddsa(),
            TestKey::hs256().with_kid("hs"),
        ]
        .iter()
        .map(|k| k.token().iss(fuzzing::ISSUER).aud("api").sub("alice").sign())
        .collect()
    });
    all[usize::from(which % 4)].clone()
}

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn segment() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(B64URL), 0..200).prop_map(|v| String::from_utf8(v).unwrap())
}

#[test]
fn fixture_tokens_validate() {
    init();
    for i in 0..4 {
        assert!(fuzzing::jwt(valid_token(i).as_bytes()), "fixture {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_validate(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        init();
        prop_assert!(!fuzzing::jwt(&data));
    }

    #[test]
    fn arbitrary_compact_strings_never_validate(h in segment(), p in segment(), s in segment(), dots in 0usize..5) {
        init();
        let mut t = h;
        for (i, seg) in [p, s].into_iter().enumerate() {
            if i < dots {
                t.push('.');
            }
            t.push_str(&seg);
        }
        prop_assert!(!fuzzing::jwt(t.as_bytes()));
    }

    #[test]
    fn arbitrary_json_in_valid_base64_never_validates(
        header in "\\{(\"(alg|kid|typ|crit|jku|jwk|x5u)\":(\"[A-Za-z0-9+ ]{0,12}\"|[0-9]{1,5}|null|\\[\\]),?){0,5}\\}",
        payload in "\\{(\"(iss|aud|sub|exp|nbf|iat|scope)\":(\"[a-z:/.]{0,24}\"|-?[0-9]{1,12}|null|true),?){0,7}\\}",
        sig in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        init();
        let b = msec_test_support::keys::b64url;
        let t = format!("{}.{}.{}", b(header.as_bytes()), b(payload.as_bytes()), b(&sig));
        prop_assert!(!fuzzing::jwt(t.as_bytes()));
    }

    #[test]
    fn one_changed_character_never_validates(which in any::<u8>(), pos in any::<usize>(), with in proptest::sample::select(B64URL)) {
        init();
        let t = valid_token(which);
        let i = pos % t.len();
        prop_assume!(t.as_bytes()[i] != with && t.as_bytes()[i] != b'.');
        let mut m = t.into_bytes();
        m[i] = with;
        prop_assert!(!fuzzing::jwt(&m));
    }

    #[test]
    fn truncated_or_extended_tokens_never_validate(which in any::<u8>(), cut in any::<usize>(), extra in segment()) {
        init();
        let t = valid_token(which);
        let cut = cut % t.len();
        prop_assert!(!fuzzing::jwt(&t.as_bytes()[..cut]));
        prop_assume!(!extra.is_empty());
        let longer = format!("{t}{extra}");
        prop_assert!(!fuzzing::jwt(longer.as_bytes()));
    }

    #[test]
    fn arbitrary_jwk_sets_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        fuzzing::jwks(&data);
    }

    #[test]
    fn arbitrary_jwks_json_never_panics(
        kty in "(RSA|EC|OKP|oct|[A-Z]{0,3})",
        crv in "(P-256|P-384|P-521|Ed25519|X25519|[a-z]{0,4})",
        alg in "(RS256|PS512|ES256|ES384|EdDSA|HS256|none|[A-Z]{0,5})",
        x in segment(), y in segment(), n in segment(),
        use_ in "(sig|enc|)",
    ) {
        let doc = serde_json::json!({"keys": [
            {"kty": kty, "crv": crv, "alg": alg, "x": x, "y": y, "n": n, "e": "AQAB", "use": use_, "kid": "k"}
        ]});
        fuzzing::jwks(&serde_json::to_vec(&doc).unwrap());
    }
}
