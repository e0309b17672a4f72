//! The authentication layer: statuses, challenges, problem+json, decisions, modes, hooks, chains, gRPC through a
//! real tonic client, axum over real HTTP.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{anonymous, bearer, call};
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use msec_authn::jwt::{ClaimMapping, Issuer, JwtValidator};
use msec_authn::{
    Attempt, Authenticated, Authenticator, AuthnChain, AuthnError, AuthnErrorKind, AuthnFuture, AuthnLayer, AuthnMode,
    JwtAuthenticator, PostVerify, RequestHead, TokenSource, post_verify_fn,
};
use msec_core::{AuthMethod, Outcome, Principal, PrincipalKind};
use msec_test_support::TestKey;
use serde_json::json;

const ISS: &str = "https://id.example.com";

fn validator() -> JwtValidator {
    JwtValidator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("api")
                .jwk_set(msec_test_support::keys::jwks(&[&TestKey::rs256(), &TestKey::es256()]))
                .claims(ClaimMapping::new().roles_claims(["realm_access.roles"])),
        )
        .build()
        .unwrap()
}

fn token(sub: &str) -> String {
    TestKey::es256()
        .token()
        .iss(ISS)
        .aud("api")
        .sub(sub)
        .scope("orders:read")
        .sign()
}

#[tokio::test]
async fn valid_token_reaches_the_service_with_a_principal_and_a_decision() {
    let layer = AuthnLayer::jwt(validator()).realm("api");
    let t = TestKey::rs256()
        .token()
        .iss(ISS)
        .aud("api")
        .sub("alice")
        .scope("orders:read orders:write")
        .claim("realm_access", json!({"roles": ["admin"]}))
        .jti("j-1")
        .sign();
    let a = call(&layer, bearer(&t)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "alice");
    let p = a.principal.clone().expect("the context learned the principal");
    assert_eq!(p.subject, "alice");
    assert!(p.has_scope("orders:write") && p.has_role("admin"));
    assert_eq!(p.kind, PrincipalKind::User);
    assert_eq!(p.token_id.as_deref(), Some("j-1"));
    assert_eq!(
        p.auth,
        AuthMethod::Jwt {
            alg: "RS256".into(),
            kid: Some("rsa-1".into())
        }
    );
    let d = a.authn_decision();
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Allow, "authenticated"));
    assert_eq!(d.get_detail("alg"), Some("RS256"));
    assert_eq!(d.get_detail("kid"), Some("rsa-1"));
    assert_eq!(d.get_detail("issuer"), Some(ISS));
    assert_eq!(d.get_detail("cached"), None);

    // The same token again: a cache hit, said so in the decision.
    let a = call(&layer, bearer(&t)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.authn_decision().get_detail("cached"), Some("true"));
}

#[tokio::test]
async fn missing_malformed_invalid_and_unavailable_answers() {
    let layer = AuthnLayer::jwt(validator()).realm("api");

    let a = call(&layer, anonymous("/v1/orders/7")).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.www_authenticate(),
        "Bearer realm=\"api\"",
        "no error attribute without credentials"
    );
    assert_eq!(a.headers["content-type"], "application/problem+json");
    let j = a.json();
    assert_eq!(j["code"], "missing_credentials");
    assert_eq!(j["type"], "urn:msec:problem:missing_credentials");
    assert_eq!(j["status"], 401);
    let d = a.authn_decision();
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "missing_credentials"));
    assert!(a.principal.is_none());

    let mut req = anonymous("/v1/orders/7");
    req.headers_mut().insert(
        "authorization",
        http::HeaderValue::from_bytes(b"Bearer e\xffJ.e30.c2ln").unwrap(),
    );
    assert_eq!(call(&layer, req).await.code(), "malformed_token", "non-UTF-8 bytes");
    let a = call(&layer, bearer("not-a-jwt")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "malformed_token"));
    assert_eq!(
        a.www_authenticate(),
        "Bearer realm=\"api\", error=\"invalid_request\", error_description=\"the access token is malformed\""
    );

    let expired = TestKey::es256()
        .token()
        .iss(ISS)
        .aud("api")
        .sub("x")
        .claim("exp", 1_000_000_000)
        .sign();
    let a = call(&layer, bearer(&expired)).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (401, "token_expired"));
    assert_eq!(
        a.www_authenticate(),
        "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the access token has expired\""
    );
    assert_eq!(a.json()["detail"], "the access token has expired");
    assert!(
        a.authn_decision().get_detail("detail").unwrap().contains("1000000000"),
        "details stay internal"
    );
    assert!(
        !String::from_utf8_lossy(&a.body).contains("1000000000"),
        "and never reach the client"
    );

    let a = call(
        &layer,
        bearer(&TestKey::es256().token().iss(ISS).aud("other").sub("x").sign()),
    )
    .await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (401, "audience_mismatch"));

    // Keys that cannot be fetched: 503 with Retry-After, no challenge.
    let down = JwtValidator::builder()
        .issuer(Issuer::new(ISS).audience("api").jwks_url("http://127.0.0.1:9/jwks"))
        .http(common::loopback_http().connect_timeout(Duration::from_millis(500)))
        .build()
        .unwrap();
    let a = call(&AuthnLayer::jwt(down), bearer(&token("x"))).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (503, "keys_unavailable"));
    assert_eq!(a.headers[RETRY_AFTER], "5");
    assert!(a.headers.get(WWW_AUTHENTICATE).is_none());
}

#[tokio::test]
async fn optional_mode_and_route_modes() {
    let layer = AuthnLayer::jwt(validator()).optional();
    let a = call(&layer, anonymous("/v1/orders/7")).await;
    assert_eq!((a.status.as_u16(), &a.body[..]), (200, &b"anonymous"[..]));
    let d = a.authn_decision();
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Allow, "anonymous"));
    let a = call(&layer, bearer(&token("bob"))).await;
    assert_eq!((a.status.as_u16(), &a.body[..]), (200, &b"bob"[..]));
    let a = call(&layer, bearer("garbage.garbage.garbage")).await;
    assert_eq!(a.status, 400, "a bad token is refused even in optional mode");
    let expired = TestKey::es256()
        .token()
        .iss(ISS)
        .aud("api")
        .sub("x")
        .claim("exp", 1)
        .sign();
    assert_eq!(call(&layer, bearer(&expired)).await.status, 401);

    let layer = AuthnLayer::jwt(validator())
        .route_mode(["GET /healthz"], AuthnMode::Skip)
        .unwrap()
        .route_mode(["/public/{*rest}"], AuthnMode::Optional)
        .unwrap();
    let mut req = anonymous("/healthz");
    req.headers_mut()
        .insert("authorization", "Bearer broken".parse().unwrap());
    let a = call(&layer, req).await;
    assert_eq!(a.status, 200, "skipped routes do not look at credentials");
    assert!(a.decisions.iter().all(|d| d.layer != "authn"));
    assert_eq!(call(&layer, anonymous("/public/logo.png")).await.status, 200);
    assert_eq!(call(&layer, anonymous("/v1/orders/7")).await.status, 401);
    assert_eq!(call(&layer, anonymous("/healthz/deep")).await.status, 401);
    assert!(
        AuthnLayer::jwt(validator())
            .route_mode(["GET no-slash"], AuthnMode::Skip)
            .is_err()
    );
}

struct Revoked(Arc<AtomicUsize>);

impl PostVerify for Revoked {
    fn check(&self, auth: &Authenticated, _head: &RequestHead<'_>) -> AuthnFuture<Result<(), AuthnError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let jti = auth.principal.token_id.clone();
        // An asynchronous check, like a Redis lookup.
        AuthnFuture::pending(async move {
            tokio::task::yield_now().await;
            if jti.as_deref() == Some("revoked") {
                Err(AuthnError::new(AuthnErrorKind::InvalidClaim, "jti is revoked"))
            } else {
                Ok(())
            }
        })
    }
}

#[tokio::test]
async fn hooks_run_on_every_request_cached_or_not() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AuthnLayer::jwt(validator())
        .hook(post_verify_fn(|auth, head| {
            if head.headers.contains_key("x-deny") || auth.principal.subject == "mallory" {
                Err(AuthnError::new(AuthnErrorKind::InvalidClaim, "denied by hook"))
            } else {
                Ok(())
            }
        }))
        .hook(Revoked(calls.clone()));
    let ok = TestKey::es256().token().iss(ISS).aud("api").sub("a").jti("fine").sign();
    assert_eq!(call(&layer, bearer(&ok)).await.status, 200);
    let a = call(&layer, bearer(&ok)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.authn_decision().get_detail("cached"), Some("true"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let revoked = TestKey::es256()
        .token()
        .iss(ISS)
        .aud("api")
        .sub("a")
        .jti("revoked")
        .sign();
    for _ in 0..2 {
        let a = call(&layer, bearer(&revoked)).await;
        assert_eq!((a.status.as_u16(), a.code().as_str()), (401, "invalid_claim"));
        assert_eq!(a.authn_decision().get_detail("detail"), Some("jti is revoked"));
    }
    let a = call(&layer, bearer(&token("mallory"))).await;
    assert_eq!(a.status, 401);
    let mut req = bearer(&ok);
    req.headers_mut().insert("x-deny", "1".parse().unwrap());
    assert_eq!(call(&layer, req).await.status, 401);
}

/// A toy API-key authenticator, to prove credential kinds plug into a chain.
struct ApiKeys;

impl Authenticator for ApiKeys {
    fn name(&self) -> &'static str {
        "api_key"
    }
    fn authenticate(&self, head: &RequestHead<'_>) -> Attempt {
        let Some(v) = head.headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return Attempt::Absent;
        };
        let Some(key) = v.strip_prefix("Bearer msk_") else {
            return Attempt::Absent;
        };
        if key == "good" {
            let p = Principal::builder("svc-a")
                .kind(PrincipalKind::ApiKey)
                .auth(AuthMethod::ApiKey { key_id: "k1".into() })
                .build();
            Attempt::Claimed(AuthnFuture::ready(Ok(Authenticated::new(Arc::new(p)))))
        } else {
            Attempt::Claimed(AuthnFuture::ready(Err(AuthnError::new(
                AuthnErrorKind::BadSignature,
                "unknown key",
            ))))
        }
    }
}

#[tokio::test]
async fn a_chain_lets_other_credential_kinds_claim_what_jwt_declines() {
    let layer = AuthnLayer::new(AuthnChain::new().with(JwtAuthenticator::new(validator())).with(ApiKeys));
    let a = call(&layer, bearer("msk_good")).await;
    assert_eq!((a.status.as_u16(), &a.body[..]), (200, &b"svc-a"[..]));
    let d = a.authn_decision();
    assert_eq!(
        (d.get_detail("method"), d.get_detail("key_id")),
        (Some("api_key"), Some("k1"))
    );
    assert_eq!(call(&layer, bearer("msk_bad")).await.status, 401);
    assert_eq!(call(&layer, bearer(&token("jwt-user"))).await.body, "jwt-user");
    let a = call(&layer, bearer("neither")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "malformed_token"));
}

#[tokio::test]
async fn custom_header_and_cookie_sources() {
    let authn = JwtAuthenticator::new(validator())
        .sources([TokenSource::header_with_prefix("x-token", "JWT ").unwrap()])
        .cookie("at")
        .unwrap();
    let layer = AuthnLayer::new(authn);
    let mut req = anonymous("/x");
    req.headers_mut()
        .insert("x-token", format!("JWT {}", token("h")).parse().unwrap());
    assert_eq!(call(&layer, req).await.body, "h");
    let mut req = anonymous("/x");
    req.headers_mut()
        .insert("cookie", format!("theme=dark; at={}", token("c")).parse().unwrap());
    assert_eq!(call(&layer, req).await.body, "c");
    // Bearer is not among the sources any more.
    assert_eq!(call(&layer, bearer(&token("b"))).await.status, 401);
    let q = AuthnLayer::new(
        JwtAuthenticator::new(validator())
            .danger_query_parameter("access_token")
            .unwrap(),
    );
    let req = http::Request::get(format!("/ws?access_token={}", token("q")))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(call(&q, req).await.body, "q");
}

#[tokio::test]
async fn pending_verification_calls_the_service_that_was_made_ready() {
    let key = TestKey::rs256();
    let idp = common::Idp::start(vec![key.clone()]).await;
    let v = JwtValidator::builder()
        .issuer(Issuer::new(idp.issuer()).audience("api").jwks_url(idp.jwks_url()))
        .http(common::loopback_http())
        .build()
        .unwrap();
    let layer = AuthnLayer::jwt(v);
    // The first request must wait for the key fetch: the slow path.
    let a = call(&layer, bearer(&idp.token(&key, "first"))).await;
    assert_eq!((a.status.as_u16(), &a.body[..]), (200, &b"first"[..]));
    assert_eq!(a.authn_decision().code.as_str(), "authenticated");
    let a = call(&layer, bearer(&idp.token(&TestKey::rs256_second(), "x"))).await;
    assert_eq!(a.code(), "unknown_kid");
}

mod grpc {
    use super::*;
    use msec_test_support::pb::echo_client::EchoClient;
    use msec_test_support::pb::echo_server::{Echo, EchoServer};
    use msec_test_support::pb::{SayReply, SayRequest};

    struct EchoImpl;

    #[tonic::async_trait]
    impl Echo for EchoImpl {
        async fn say(&self, req: tonic::Request<SayRequest>) -> Result<tonic::Response<SayReply>, tonic::Status> {
            let subject = req
                .extensions()
                .get::<Arc<Principal>>()
                .map(|p| p.subject.clone())
                .unwrap_or_default();
            Ok(tonic::Response::new(SayReply {
                message: req.into_inner().message,
                subject,
                peer: String::new(),
            }))
        }
    }

    #[tokio::test]
    async fn tonic_clients_get_grpc_statuses() {
        let (incoming, addr) = msec_test_support::net::tonic_incoming().await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(AuthnLayer::jwt(validator()).realm("echo"))
                .add_service(EchoServer::new(EchoImpl))
                .serve_with_incoming(incoming),
        );
        let mut client = EchoClient::connect(format!("http://{addr}")).await.unwrap();
        let req = |auth: Option<String>| {
            let mut r = tonic::Request::new(SayRequest { message: "hi".into() });
            if let Some(a) = auth {
                r.metadata_mut().insert("authorization", a.parse().unwrap());
            }
            r
        };
        let reply = client
            .say(req(Some(format!("Bearer {}", token("grpc-user")))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((reply.message.as_str(), reply.subject.as_str()), ("hi", "grpc-user"));

        let st = client.say(req(None)).await.unwrap_err();
        assert_eq!(st.code(), tonic::Code::Unauthenticated);
        assert_eq!(st.message(), "missing_credentials: authentication is required");
        assert_eq!(st.metadata().get("www-authenticate").unwrap(), "Bearer realm=\"echo\"");

        let expired = TestKey::es256()
            .token()
            .iss(ISS)
            .aud("api")
            .sub("x")
            .claim("exp", 5)
            .sign();
        let st = client.say(req(Some(format!("bearer {expired}")))).await.unwrap_err();
        assert_eq!(st.code(), tonic::Code::Unauthenticated);
        assert_eq!(st.message(), "token_expired: the access token has expired");

        let st = client.say(req(Some("Bearer nope".into()))).await.unwrap_err();
        assert_eq!(st.code(), tonic::Code::InvalidArgument);

        // The connection keeps working after rejections.
        let reply = client
            .say(req(Some(format!("Bearer {}", token("again")))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.subject, "again");
    }
}

#[tokio::test]
async fn axum_over_real_http_with_the_principal_extractor() {
    use axum::Router;
    use axum::routing::get;
    use http_body_util::BodyExt;

    let app = Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { format!("{} {:?}", p.subject, p.scopes) }),
        )
        .layer(AuthnLayer::jwt(validator()).realm("axum"));
    let (listener, addr) = msec_test_support::net::listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let send = |auth: Option<String>| {
        let mut b = http::Request::get(format!("http://{addr}/me"));
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        client.request(b.body(http_body_util::Full::new(bytes::Bytes::new())).unwrap())
    };
    let resp = send(Some(format!("Bearer {}", token("web")))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "web [\"orders:read\"]");
    let resp = send(None).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer realm=\"axum\"");
}

/// Which issuers and audiences a route accepts is authorization: msec-core's policy behind the authn layer.
#[tokio::test]
async fn per_route_issuers_and_audiences_through_the_policy() {
    use http_body_util::BodyExt;
    use msec_core::policy::{AuthorizeLayer, Policy, Requirement};
    use tower::{ServiceBuilder, ServiceExt};

    let staff = TestKey::rs256();
    let customers = TestKey::es256();
    let v = JwtValidator::builder()
        .issuer(
            Issuer::new("https://staff.example.com")
                .audience("api")
                .jwk_set(msec_test_support::keys::jwks(&[&staff])),
        )
        .issuer(
            Issuer::new("https://customers.example.com")
                .audiences(["api", "shop"])
                .jwk_set(msec_test_support::keys::jwks(&[&customers])),
        )
        .build()
        .unwrap();
    let policy = Policy::builder()
        .allow(
            "staff only",
            ["GET /admin/{*rest}"],
            Requirement::issuer("https://staff.example.com"),
        )
        .allow("shop audience", ["GET /shop/{*rest}"], Requirement::audience("shop"))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(AuthnLayer::jwt(v))
        .layer(AuthorizeLayer::new(policy))
        .service(common::echo());
    let send = |path: &str, token: String| {
        let svc = svc.clone();
        let req = http::Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        async move {
            let resp = svc.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".into());
            (status, code)
        }
    };
    let staff_token = staff
        .token()
        .iss("https://staff.example.com")
        .aud("api")
        .sub("ops")
        .sign();
    let customer_api = customers
        .token()
        .iss("https://customers.example.com")
        .aud("api")
        .sub("c")
        .sign();
    let customer_shop = customers
        .token()
        .iss("https://customers.example.com")
        .claim("aud", json!(["api", "shop"]))
        .sub("c")
        .sign();
    assert_eq!(send("/admin/users", staff_token.clone()).await, (200, "-".into()));
    assert_eq!(
        send("/admin/users", customer_api.clone()).await,
        (403, "issuer_not_allowed".into())
    );
    assert_eq!(send("/shop/cart", customer_shop).await, (200, "-".into()));
    assert_eq!(
        send("/shop/cart", customer_api).await,
        (403, "audience_not_allowed".into())
    );
    assert_eq!(
        send("/shop/cart", staff_token).await,
        (403, "audience_not_allowed".into())
    );
}

/// Without a SecurityContext (no audit layer) the layer still authenticates; nothing is recorded.
#[tokio::test]
async fn works_without_a_security_context() {
    use tower::{Layer, ServiceExt};
    let svc = AuthnLayer::jwt(validator()).layer(common::echo());
    let resp = svc.clone().oneshot(bearer(&token("solo"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = svc.oneshot(anonymous("/x")).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.extensions().get::<msec_core::Rejection>().is_some(),
        "the typed rejection travels with the response"
    );
}
