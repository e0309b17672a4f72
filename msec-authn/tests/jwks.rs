//! The key store against a real JWKS / OIDC server on loopback that the test controls: rotation, IdP down,
//! a flood of random `kid`s, `Cache-Control`, `ETag`, discovery, size caps, HTTPS with a private CA.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Idp, loopback_http, quick_refresh};
use msec_authn::jwt::{Issuer, JwtValidator, StartError};
use msec_authn::keys::{HttpConfig, KeyFetchError};
use msec_authn::{AuthnErrorKind, ConfigError};
use msec_test_support::{FakeClock, TestKey};

fn validator(idp: &Idp, clock: &FakeClock) -> JwtValidator {
    JwtValidator::builder()
        .issuer(Issuer::new(idp.issuer()).audience("api").jwks_url(idp.jwks_url()))
        .http(loopback_http())
        .refresh(quick_refresh())
        .clock(clock.clone())
        .build()
        .unwrap()
}

async fn kind(v: &JwtValidator, token: &str) -> Result<String, AuthnErrorKind> {
    v.validate(token)
        .await
        .map(|a| a.principal.subject.clone())
        .map_err(|e| e.kind())
}

#[tokio::test]
async fn first_request_fetches_then_keys_are_served_from_memory() {
    let key = TestKey::rs256();
    let idp = Idp::start(vec![key.clone()]).await;
    let clock = FakeClock::starting_now();
    let v = validator(&idp, &clock);
    assert!(!v.key_status()[0].available);
    let t = idp.token(&key, "alice");
    assert!(!v.validate(&t).is_ready(), "the first request waits for the fetch");
    assert_eq!(kind(&v, &t).await, Ok("alice".into()));
    assert_eq!(idp.jwks_hits(), 1);
    for i in 0..20 {
        let t = idp.token(&key, &format!("user{i}"));
        assert!(v.validate(&t).is_ready(), "known keys: synchronous");
        assert_eq!(kind(&v, &t).await, Ok(format!("user{i}")));
    }
    assert_eq!(idp.jwks_hits(), 1);
    let st = &v.key_status()[0];
    assert!(st.available && st.fresh);
    assert_eq!(st.kids, ["rsa-1"]);
}

#[tokio::test]
async fn rotation_new_kid_is_accepted_after_exactly_one_refetch() {
    let old = TestKey::rs256();
    let new = TestKey::rs256_second();
    let idp = Idp::start(vec![old.clone()]).await;
    let clock = FakeClock::starting_now();
    let v = validator(&idp, &clock);
    v.fetch_keys().await.unwrap();
    assert_eq!(idp.jwks_hits(), 1);
    assert_eq!(kind(&v, &idp.token(&old, "a")).await, Ok("a".into()));

    // The IdP rotates; some time later a token signed with the new key arrives.
    idp.set_keys(vec![old.clone(), new.clone()]);
    clock.advance(Duration::from_secs(31));
    let t = idp.token(&new, "b");
    assert_eq!(kind(&v, &t).await, Ok("b".into()));
    assert_eq!(idp.jwks_hits(), 2, "exactly one refetch");
    assert_eq!(kind(&v, &idp.token(&new, "c")).await, Ok("c".into()));
    assert_eq!(kind(&v, &idp.token(&old, "d")).await, Ok("d".into()));
    assert_eq!(idp.jwks_hits(), 2);
    assert_eq!(v.key_status()[0].generation, 2);

    // The old key is retired: the next refetch (unknown kid, after the cooldown) drops it, and its cached tokens
    // stop working.
    let cached_old = idp.token(&old, "e");
    assert_eq!(kind(&v, &cached_old).await, Ok("e".into()));
    idp.set_keys(vec![new.clone()]);
    clock.advance(Duration::from_secs(31));
    let other = TestKey::es256();
    assert_eq!(kind(&v, &idp.token(&other, "f")).await, Err(AuthnErrorKind::UnknownKid));
    assert_eq!(idp.jwks_hits(), 3);
    assert_eq!(kind(&v, &cached_old).await, Err(AuthnErrorKind::UnknownKid));
}

#[tokio::test]
async fn a_thousand_random_kids_cost_one_fetch_per_cooldown() {
    let key = TestKey::es256();
    let idp = Idp::start(vec![key.clone()]).await;
    let clock = FakeClock::starting_now();
    let v = validator(&idp, &clock);
    v.fetch_keys().await.unwrap();
    clock.advance(Duration::from_secs(31));
    let attacker = TestKey::es256();
    let tokens: Vec<String> = (0..1000)
        .map(|i| {
            attacker
                .token()
                .header("kid", format!("random-{i}-{}", i * 7919))
                .iss(&idp.issuer())
                .aud("api")
                .sub("mallory")
                .sign()
        })
        .collect();
    let results = futures_util::future::join_all(tokens.iter().map(|t| v.validate(t))).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().err().map(|e| e.kind()) == Some(AuthnErrorKind::UnknownKid))
    );
    assert_eq!(idp.jwks_hits(), 2, "1 initial + at most 1 per cooldown");

    // Within the same cooldown: no fetch at all.
    clock.advance(Duration::from_secs(10));
    for t in tokens.iter().take(200) {
        assert_eq!(kind(&v, t).await, Err(AuthnErrorKind::UnknownKid));
    }
    assert_eq!(idp.jwks_hits(), 2);
    // Next cooldown period: one more.
    clock.advance(Duration::from_secs(25));
    for t in tokens.iter().take(200) {
        assert_eq!(kind(&v, t).await, Err(AuthnErrorKind::UnknownKid));
    }
    assert_eq!(idp.jwks_hits(), 3);
    // Legitimate tokens were never disturbed.
    assert_eq!(kind(&v, &idp.token(&key, "ok")).await, Ok("ok".into()));
}

#[tokio::test]
async fn idp_down_cached_keys_work_until_max_staleness_then_503() {
    let key = TestKey::eddsa();
    let idp = Idp::start(vec![key.clone()]).await;
    idp.set_cache_control("max-age=120");
    let clock = FakeClock::starting_now();
    let v = validator(&idp, &clock);
    v.fetch_keys().await.unwrap();
    idp.set_down(true);

    // Past the TTL: the request is served with the last good keys; a background refresh fails.
    clock.advance(Duration::from_secs(130));
    assert_eq!(kind(&v, &idp.token(&key, "a")).await, Ok("a".into()));
    idp.wait_for_jwks_hits(2).await;
    assert!(!v.key_status()[0].fresh);
    // Still within ttl + max_staleness (120 + 600 s).
    clock.advance(Duration::from_secs(500));
    assert_eq!(kind(&v, &idp.token(&key, "b")).await, Ok("b".into()));
    v.refresh_due_keys().await;
    idp.wait_for_jwks_hits(3).await;

    // Beyond: 503 keys_unavailable (one retry per cooldown, failing).
    clock.advance(Duration::from_secs(100));
    assert_eq!(
        kind(&v, &idp.token(&key, "c")).await,
        Err(AuthnErrorKind::KeysUnavailable)
    );
    let hits = idp.jwks_hits();
    assert_eq!(
        kind(&v, &idp.token(&key, "d")).await,
        Err(AuthnErrorKind::KeysUnavailable)
    );
    assert_eq!(idp.jwks_hits(), hits, "no retry within the cooldown");
    assert!(!v.key_status()[0].available);

    // The IdP comes back: the next attempt after the cooldown recovers.
    idp.set_down(false);
    clock.advance(Duration::from_secs(31));
    assert_eq!(kind(&v, &idp.token(&key, "e")).await, Ok("e".into()));
    assert!(v.key_status()[0].available);
}

#[tokio::test]
async fn cache_control_max_age_is_honoured_and_clamped() {
    let key = TestKey::rs256();
    let idp = Idp::start(vec![key.clone()]).await;
    idp.set_cache_control("public, max-age=120");
    let clock = FakeClock::starting_now();
    let v = validator(&idp, &clock);
    v.fetch_keys().await.unwrap();

    clock.advance(Duration::from_secs(100));
    assert_eq!(v.refresh_due_keys().await, 0, "fresh for 120 s");
    assert_eq!(kind(&v, &idp.token(&key, "a")).await, Ok("a".into()));
    assert_eq!(idp.jwks_hits(), 1);

    clock.advance(Duration::from_secs(25));
    // A request past the TTL triggers a background refresh and is served meanwhile.
    assert_eq!(kind(&v, &idp.token(&key, "b")).await, Ok("b".into()));
    idp.wait_for_jwks_hits(2).await;

    // A huge max-age is clamped to the configured maximum (3600 s here).
    idp.set_cache_control("max-age=31536000");
    clock.advance(Duration::from_secs(200));
    assert_eq!(v.refresh_due_keys().await, 1);
    assert_eq!(idp.jwks_hits(), 3);
    clock.advance(Duration::from_secs(3590));
    assert_eq!(v.refresh_due_keys().await, 0);
    clock.advance(Duration::from_secs(20));
    assert_eq!(v.refresh_due_keys().await, 1);
    assert_eq!(idp.jwks_hits(), 4);

    // no-store means the minimum TTL (60 s).
    idp.set_cache_control("no-store");
    clock.advance(Duration::from_secs(4000));
    assert_eq!(v.refresh_due_keys().await, 1);
    clock.advance(Duration::from_secs(61));
    assert_eq!(v.refresh_due_keys().await, 1);
    assert_eq!(idp.jwks_hits(), 6);
}

#[tokio::test]
async fn etag_revalidation_keeps_keys_and_cached_tokens() {
    let key = TestKey::rs256();
    let idp = Idp::start(vec![key.clone()]).await;
    idp.state.etag.store(true, std::sync::atomic::Ordering::SeqCst);
    idp.set_cache_control("max-age=60");
    let clock = FakeClock::starting_now();
    let v = validator(&idp, &clock);
    v.fetch_keys().await.unwrap();
    let t = idp.token(&key, "a");
    assert_eq!(kind(&v, &t).await, Ok("a".into()));
    assert_eq!(v.cached_tokens(), 1);
    let etag = v.key_status()[0].etag.clone().unwrap();

    clock.advance(Duration::from_secs(61));
    assert_eq!(v.refresh_due_keys().await, 1);
    assert_eq!(
        idp.state.not_modified.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "If-None-Match sent, 304 back"
    );
    let st = &v.key_status()[0];
    assert_eq!(
        (st.generation, st.etag.as_deref(), st.fresh),
        (1, Some(etag.as_str()), true)
    );
    let a = v.validate(&t).await.unwrap();
    assert!(a.cached, "a 304 keeps the cached verification");
}

#[tokio::test]
async fn oidc_and_rfc8414_discovery() {
    let key = TestKey::es384();
    let idp = Idp::start(vec![key.clone()]).await;
    let clock = FakeClock::starting_now();
    let oidc = JwtValidator::builder()
        .issuer(Issuer::new(idp.issuer()).audience("api").oidc_discovery())
        .http(loopback_http())
        .clock(clock.clone())
        .build_and_fetch()
        .await
        .unwrap();
    assert_eq!(idp.discovery_hits(), 1);
    assert_eq!(kind(&oidc, &idp.token(&key, "a")).await, Ok("a".into()));

    // RFC 8414 for an issuer with a path: /.well-known/oauth-authorization-server/tenant.
    let tenant = format!("{}/tenant", idp.issuer());
    *idp.state.discovery_issuer.lock().unwrap() = Some(tenant.clone());
    let as_meta = JwtValidator::builder()
        .issuer(Issuer::new(&tenant).audience("api").rfc8414_discovery())
        .http(loopback_http())
        .build_and_fetch()
        .await
        .unwrap();
    let t = key.token().iss(&tenant).aud("api").sub("t").sign();
    assert_eq!(kind(&as_meta, &t).await, Ok("t".into()));
    assert_eq!(idp.discovery_hits(), 2);
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer_and_an_allowed_jwks_uri() {
    let key = TestKey::es256();
    let idp = Idp::start(vec![key.clone()]).await;
    *idp.state.discovery_issuer.lock().unwrap() = Some("https://evil.example.com".into());
    let err = JwtValidator::builder()
        .issuer(Issuer::new(idp.issuer()).audience("api").oidc_discovery())
        .http(loopback_http())
        .build_and_fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Keys {
                error: KeyFetchError::IssuerMismatch { .. },
                ..
            }
        ),
        "{err}"
    );

    *idp.state.discovery_issuer.lock().unwrap() = None;
    *idp.state.discovery_jwks_uri.lock().unwrap() = Some("http://203.0.113.9/jwks".into());
    let err = JwtValidator::builder()
        .issuer(Issuer::new(idp.issuer()).audience("api").oidc_discovery())
        .http(loopback_http())
        .build_and_fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Keys {
                error: KeyFetchError::Insecure(_),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(idp.jwks_hits(), 0);
}

#[tokio::test]
async fn startup_fail_fast_or_serve_503_until_keys_arrive() {
    let key = TestKey::rs256();
    let idp = Idp::start(vec![key.clone()]).await;
    idp.set_down(true);
    let clock = FakeClock::starting_now();
    let err = JwtValidator::builder()
        .issuer(Issuer::new(idp.issuer()).audience("api").jwks_url(idp.jwks_url()))
        .http(loopback_http())
        .build_and_fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Keys {
                error: KeyFetchError::Status(503),
                ..
            }
        ),
        "{err}"
    );

    // Lazy start: 503 until the IdP answers.
    let v = validator(&idp, &clock);
    assert_eq!(
        kind(&v, &idp.token(&key, "a")).await,
        Err(AuthnErrorKind::KeysUnavailable)
    );
    idp.set_down(false);
    assert_eq!(
        kind(&v, &idp.token(&key, "a")).await,
        Err(AuthnErrorKind::KeysUnavailable),
        "cooldown"
    );
    clock.advance(Duration::from_secs(30));
    assert_eq!(kind(&v, &idp.token(&key, "a")).await, Ok("a".into()));
}

#[tokio::test]
async fn responses_over_the_size_cap_are_refused() {
    let idp = Idp::start(vec![TestKey::rs256()]).await;
    let err = JwtValidator::builder()
        .issuer(
            Issuer::new(idp.issuer())
                .audience("api")
                .jwks_url(format!("{}/big", idp.base)),
        )
        .http(loopback_http().max_response_bytes(64 * 1024))
        .build_and_fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Keys {
                error: KeyFetchError::TooLarge(65536),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn fetch_timeouts_apply() {
    // A listener that accepts and never answers.
    let (listener, addr) = msec_test_support::net::listener().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        }
    });
    let started = std::time::Instant::now();
    let err = JwtValidator::builder()
        .issuer(
            Issuer::new("https://id")
                .audience("api")
                .jwks_url(format!("http://{addr}/jwks")),
        )
        .http(loopback_http().timeout(Duration::from_millis(300)))
        .build_and_fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Keys {
                error: KeyFetchError::Transport(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn plain_http_needs_the_danger_option_and_loopback() {
    let b = |url: &str, http: HttpConfig| {
        JwtValidator::builder()
            .issuer(Issuer::new("https://id").audience("api").jwks_url(url))
            .http(http)
            .build()
            .map(|_| ())
    };
    assert!(matches!(
        b("http://127.0.0.1:1/jwks", HttpConfig::new()),
        Err(ConfigError::InsecureUrl(_))
    ));
    assert!(b("http://127.0.0.1:1/jwks", loopback_http()).is_ok());
    assert!(matches!(
        b("http://10.1.2.3/jwks", loopback_http()),
        Err(ConfigError::InsecureUrl(_))
    ));
    assert!(b("https://id.example.com/jwks", HttpConfig::new()).is_ok());
    // Discovery of a plain-HTTP issuer is refused the same way.
    let d = JwtValidator::builder()
        .issuer(Issuer::new("http://id.example.com").audience("api").oidc_discovery())
        .build();
    assert!(matches!(d, Err(ConfigError::InsecureUrl(_))));
}

/// JWKS over real HTTPS: a private CA (rcgen) added as an extra root; the same server is refused without it.
#[tokio::test]
async fn jwks_over_https_with_a_private_ca() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use std::sync::Arc;

    let key = TestKey::es256();
    let doc = serde_json::to_vec(&msec_test_support::keys::jwks(&[&key])).unwrap();
    let ca = msec_test_support::TestCa::new("example.org");
    let leaf = ca.localhost();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert()], leaf.key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let (listener, addr) = msec_test_support::net::listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let doc = doc.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |_req| {
                    let doc = doc.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(doc),
                        )))
                    }
                });
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let url = format!("https://localhost:{}/jwks", addr.port());
    let trusted = JwtValidator::builder()
        .issuer(Issuer::new("https://id").audience("api").jwks_url(&url))
        .http(HttpConfig::new().no_proxy().add_root_certificate(ca.cert()))
        .build_and_fetch()
        .await
        .unwrap();
    let t = key.token().iss("https://id").aud("api").sub("tls").sign();
    assert_eq!(kind(&trusted, &t).await, Ok("tls".into()));

    let untrusted = JwtValidator::builder()
        .issuer(Issuer::new("https://id").audience("api").jwks_url(&url))
        .http(HttpConfig::new().no_proxy())
        .build_and_fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(
            untrusted,
            StartError::Keys {
                error: KeyFetchError::Transport(_),
                ..
            }
        ),
        "{untrusted}"
    );
}

#[tokio::test]
async fn several_issuers_verify_only_with_their_own_keys() {
    let a_key = TestKey::rs256();
    let b_key = TestKey::es256();
    let a = Idp::start(vec![a_key.clone()]).await;
    let b = Idp::start(vec![b_key.clone()]).await;
    let v = JwtValidator::builder()
        .issuer(Issuer::new(a.issuer()).audience("api").jwks_url(a.jwks_url()))
        .issuer(
            Issuer::new(b.issuer())
                .audience("api")
                .jwks_url(b.jwks_url())
                .algorithms([jsonwebtoken::Algorithm::ES256]),
        )
        .http(loopback_http())
        .build_and_fetch()
        .await
        .unwrap();
    assert_eq!(kind(&v, &a.token(&a_key, "from-a")).await, Ok("from-a".into()));
    let p = v.validate(&b.token(&b_key, "from-b")).await.unwrap().principal;
    assert_eq!(p.issuer.as_deref(), Some(b.issuer().as_str()));
    // Issuer B's key signing a token that claims issuer A: A's keys do not know it.
    let forged = b_key.token().iss(&a.issuer()).aud("api").sub("x").sign();
    assert_eq!(kind(&v, &forged).await, Err(AuthnErrorKind::UnknownKid));
    // A's RS256 token claiming B: B allows only ES256.
    let cross = a_key.token().iss(&b.issuer()).aud("api").sub("x").sign();
    assert_eq!(kind(&v, &cross).await, Err(AuthnErrorKind::AlgNotAllowed));
    let unknown = a_key.token().iss("https://other").aud("api").sub("x").sign();
    assert_eq!(kind(&v, &unknown).await, Err(AuthnErrorKind::IssuerMismatch));
}
