//! Another jsonwebtoken `CryptoProvider` installed first (by the application or another library) does not break
//! msec-authn, and msec's `install_default` reports it instead of panicking. A separate test binary: the provider
//! is process-global.
#![allow(clippy::unwrap_used, missing_docs)]

use jsonwebtoken::crypto::{CryptoProvider, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use msec_authn::crypto::{self, ProviderStatus};
use msec_authn::jwt::{Issuer, JwtValidator};
use msec_test_support::TestKey;

static REFUSING: CryptoProvider = CryptoProvider {
    signer_factory: |_, _| Err(ErrorKind::Provider("refusing provider".into()).into()),
    verifier_factory: |_, _| Err(ErrorKind::Provider("refusing provider".into()).into()),
    key_utils: KeyUtils::new_unimplemented(),
};

#[test]
fn msec_verifies_with_ring_whatever_provider_is_installed() {
    REFUSING.install_default().unwrap();
    assert_eq!(crypto::install_default(), ProviderStatus::OtherProviderInstalled);
    assert_eq!(crypto::install_default(), ProviderStatus::OtherProviderInstalled);

    let key = TestKey::es256();
    let v = JwtValidator::builder()
        .issuer(
            Issuer::new("https://id")
                .audience("api")
                .jwk_set(msec_test_support::keys::jwks(&[&key])),
        )
        .build()
        .unwrap();
    let t = key.token().iss("https://id").aud("api").sub("a").sign();
    let auth = v.validate(&t).into_ready().unwrap().unwrap();
    assert_eq!(auth.principal.subject, "a");

    // The application's own jsonwebtoken calls use the provider it installed.
    let err = jsonwebtoken::decode::<serde_json::Value>(
        &t,
        &jsonwebtoken::DecodingKey::from_ec_pem(key.public_pem.as_bytes()).unwrap(),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256),
    )
    .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Provider(_)));
}
