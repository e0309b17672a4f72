//! Claim policies end to end: the RFC 9068 profile, `typ` policies, the verified-token cache and expiry, and the
//! principal mapping of user and client-credentials tokens.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use msec_authn::AuthnErrorKind;
use msec_authn::jwt::{ClaimMapping, Issuer, JwtValidator, TypPolicy};
use msec_core::PrincipalKind;
use msec_test_support::{FakeClock, TestKey};
use serde_json::json;

const ISS: &str = "https://as.example.com";

fn validator(issuer: Issuer, clock: &FakeClock) -> JwtValidator {
    JwtValidator::builder()
        .issuer(issuer.jwk_set(msec_test_support::keys::jwks(&[&TestKey::es256()])))
        .clock(clock.clone())
        .build()
        .unwrap()
}

async fn check(v: &JwtValidator, t: &str) -> Result<(), AuthnErrorKind> {
    v.validate(t).await.map(|_| ()).map_err(|e| e.kind())
}

#[tokio::test]
async fn rfc9068_profile() {
    let clock = FakeClock::starting_now();
    let v = validator(
        Issuer::new(ISS).audience("https://api.example.com").rfc9068_profile(),
        &clock,
    );
    let key = TestKey::es256();
    let full = || {
        key.token()
            .header("typ", "at+jwt")
            .iss(ISS)
            .aud("https://api.example.com")
            .sub("user-1")
            .claim("client_id", "web-app")
            .jti("a1")
    };
    assert_eq!(check(&v, &full().sign()).await, Ok(()));
    assert_eq!(
        check(&v, &full().header("typ", "application/at+jwt").sign()).await,
        Ok(())
    );
    assert_eq!(
        check(&v, &full().header("typ", "JWT").sign()).await,
        Err(AuthnErrorKind::BadTyp)
    );
    assert_eq!(
        check(&v, &full().without_header("typ").sign()).await,
        Err(AuthnErrorKind::BadTyp)
    );
    for claim in ["client_id", "jti", "iat", "sub"] {
        assert_eq!(
            check(&v, &full().without_claim(claim).sign()).await,
            Err(AuthnErrorKind::MissingClaim),
            "{claim}"
        );
    }
}

#[tokio::test]
async fn typ_policies() {
    let clock = FakeClock::starting_now();
    let key = TestKey::es256();
    let t = |typ: Option<&str>| {
        let b = key.token().iss(ISS).aud("api").sub("s");
        match typ {
            Some(x) => b.header("typ", x).sign(),
            None => b.without_header("typ").sign(),
        }
    };
    let default = validator(Issuer::new(ISS).audience("api"), &clock);
    assert_eq!(check(&default, &t(None)).await, Ok(()));
    assert_eq!(check(&default, &t(Some("jwt"))).await, Ok(()));
    assert_eq!(
        check(&default, &t(Some("secevent+jwt"))).await,
        Err(AuthnErrorKind::BadTyp)
    );
    let any = validator(Issuer::new(ISS).audience("api").typ(TypPolicy::Any), &clock);
    assert_eq!(check(&any, &t(Some("secevent+jwt"))).await, Ok(()));
    let custom = validator(
        Issuer::new(ISS).audience("api").typ(TypPolicy::OneOf {
            values: vec!["custom+jwt".into()],
            allow_absent: false,
        }),
        &clock,
    );
    assert_eq!(check(&custom, &t(Some("custom+jwt"))).await, Ok(()));
    assert_eq!(check(&custom, &t(None)).await, Err(AuthnErrorKind::BadTyp));
}

#[tokio::test]
async fn cached_verifications_never_outlive_exp() {
    let clock = FakeClock::starting_now();
    let v = validator(Issuer::new(ISS).audience("api").leeway(Duration::from_secs(60)), &clock);
    let t = TestKey::es256()
        .token()
        .iss(ISS)
        .aud("api")
        .sub("s")
        .expires_in(Duration::from_secs(120))
        .sign();
    assert!(!v.validate(&t).await.unwrap().cached);
    clock.advance(Duration::from_secs(110));
    assert!(v.validate(&t).await.unwrap().cached);
    // Past exp the cache entry is not used: the token is verified again (and passes on the leeway alone) ...
    clock.advance(Duration::from_secs(20));
    assert!(!v.validate(&t).await.unwrap().cached);
    // ... until the leeway is over.
    clock.advance(Duration::from_secs(60));
    assert_eq!(v.validate(&t).await.unwrap_err().kind(), AuthnErrorKind::TokenExpired);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let clock = FakeClock::starting_now();
    let v = JwtValidator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("api")
                .jwk_set(msec_test_support::keys::jwks(&[&TestKey::eddsa()])),
        )
        .clock(clock.clone())
        .cache_capacity(50)
        .build()
        .unwrap();
    for i in 0..500 {
        let t = TestKey::eddsa()
            .token()
            .iss(ISS)
            .aud("api")
            .sub(&format!("u{i}"))
            .sign();
        v.validate(&t).await.unwrap();
    }
    assert!(v.cached_tokens() <= 60, "{} cached", v.cached_tokens());
}

#[tokio::test]
async fn users_and_services() {
    let clock = FakeClock::starting_now();
    let v = validator(
        Issuer::new(ISS).audience("api").claims(
            ClaimMapping::new()
                .roles_claims(["groups"])
                .tenant_claim("tid")
                .service_when("idtyp", "app"),
        ),
        &clock,
    );
    let key = TestKey::es256();
    let user = key
        .token()
        .iss(ISS)
        .aud("api")
        .sub("u-1")
        .claim("azp", "spa")
        .claim("scp", json!(["orders:read", "profile"]))
        .claim("groups", json!(["support"]))
        .claim("tid", "t-9")
        .sign();
    let p = v.validate(&user).await.unwrap().principal;
    assert_eq!(p.kind, PrincipalKind::User);
    assert_eq!(
        (p.client_id.as_deref(), p.tenant.as_deref()),
        (Some("spa"), Some("t-9"))
    );
    assert!(p.has_scope("profile") && p.has_role("support"));
    assert_eq!(p.claim("tid"), Some(&json!("t-9")));

    let cc = key
        .token()
        .iss(ISS)
        .aud("api")
        .sub("billing-svc")
        .claim("client_id", "billing-svc")
        .sign();
    let p = v.validate(&cc).await.unwrap().principal;
    assert_eq!((p.kind, p.subject.as_str()), (PrincipalKind::Service, "billing-svc"));
    let app = key
        .token()
        .iss(ISS)
        .aud("api")
        .sub("obj-7")
        .claim("idtyp", "app")
        .sign();
    assert_eq!(v.validate(&app).await.unwrap().principal.kind, PrincipalKind::Service);
    let no_sub = key.token().iss(ISS).aud("api").claim("client_id", "cli").sign();
    assert_eq!(v.validate(&no_sub).await.unwrap().principal.subject, "cli");
}
