//! API keys over real HTTP on loopback: an axum service behind `AuthnLayer` with an `ApiKeyAuthenticator`
//! (in-memory and PostgreSQL stores), every failure path with its status, challenge and problem+json code, API
//! keys and JWTs in one `AuthnChain`, and property tests of the key parser.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msec_authn::apikey::{
    ApiKey, ApiKeyAuthenticator, ApiKeySpec, ApiKeyStore, IssuedApiKey, KeyFormatError, KeyHasher, MemoryApiKeyStore,
    StoreErrorKind, parse_key,
};
use msec_authn::jwt::{Issuer, JwtValidator};
use msec_authn::{Authenticator, AuthnChain, AuthnLayer, JwtAuthenticator};
use msec_core::Principal;
use msec_core::clock::ManualClock;
use msec_core::secret::SecretBytes;
use msec_test_support::TestKey;
use proptest::prelude::*;
use serde_json::Value;

const T0: u64 = 1_760_000_000;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0)
}

/// Serves `authn` in front of a handler that echoes the principal; returns the base URL.
async fn serve(authn: impl Authenticator) -> String {
    let app = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move { axum::Json(serde_json::to_value(&p).unwrap()) }),
        )
        .layer(AuthnLayer::new(authn).realm("keys"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/whoami", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("-")
    }
    fn challenge(&self) -> &str {
        self.headers.get("www-authenticate").map_or("", |v| v.to_str().unwrap())
    }
}

async fn call(url: &str, headers: &[(&str, &str)]) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client.request(b.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

fn issue(prefix: &str, subject: &str, hasher: &KeyHasher) -> IssuedApiKey {
    ApiKeySpec::new(prefix)
        .subject(subject)
        .scopes(["orders:write", "orders:read"])
        .tenant("acme")
        .expires_in(Duration::from_secs(3600))
        .issue(hasher, t0())
        .unwrap()
}

/// An independent CRC-32 and base62 checksum, to build keys with a valid checksum but a wrong secret.
fn with_checksum(signed: &str) -> String {
    let mut c = !0u32;
    for b in signed.bytes() {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    let mut v = !c;
    let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = alphabet[(v % 62) as usize];
        v /= 62;
    }
    format!("{signed}{}", std::str::from_utf8(&out).unwrap())
}

/// `key` with its secret's first character changed and a correct checksum: same key id, wrong secret.
fn wrong_secret(key: &ApiKey) -> String {
    let s = key.expose_secret();
    let at = key.prefix().len() + 1 + 11;
    let mut signed = s[..s.len() - 6].to_owned();
    let c = if &signed[at..=at] == "x" { "y" } else { "x" };
    signed.replace_range(at..=at, c);
    with_checksum(&signed)
}

#[tokio::test]
async fn in_memory_keys_over_http() {
    let hasher = KeyHasher::sha256();
    let clock = ManualClock::new(t0());
    let good = issue("sk_live", "billing-bot", &hasher);
    let rotated = issue("sk_live", "billing-bot", &hasher);
    let revoked = issue("sk_live", "billing-bot", &hasher);
    let test_env = issue("sk_test", "billing-bot", &hasher);
    let store = MemoryApiKeyStore::from_records([
        good.record.clone(),
        rotated.record.clone(),
        revoked.record.clone(),
        test_env.record.clone(),
    ])
    .unwrap();
    assert!(store.revoke(revoked.key.key_id()).into_ready().unwrap().unwrap());
    let authn = ApiKeyAuthenticator::new(store.clone(), hasher.clone())
        .prefixes(["sk_live"])
        .unwrap()
        .clock(Arc::new(clock.clone()));
    let url = serve(authn).await;

    // A valid key in x-api-key: the principal is the record's.
    let a = call(&url, &[("x-api-key", good.key.expose_secret())]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["subject"], "billing-bot");
    assert_eq!(a.body["kind"], "api_key");
    assert_eq!(a.body["scopes"], serde_json::json!(["orders:read", "orders:write"]));
    assert_eq!(a.body["tenant"], "acme");
    assert_eq!(a.body["token_id"], good.key.key_id());
    assert_eq!(a.body["auth"]["method"], "api_key");
    assert_eq!(a.body["auth"]["key_id"], good.key.key_id());
    assert_eq!(a.body["expires_at"], T0 + 3600);

    // The same principal's second key works too (rotation), and keys come in `Authorization: Bearer`.
    let bearer = format!("Bearer {}", rotated.key.expose_secret());
    let a = call(&url, &[("authorization", &bearer)]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["auth"]["key_id"], rotated.key.key_id());
    assert_eq!(store.keys_of("billing-bot").into_ready().unwrap().unwrap().len(), 4);

    let expect = |a: &Answer, status: u16, code: &str| {
        assert_eq!((a.status, a.code()), (status, code), "{}", a.body);
        assert_eq!(
            a.headers.get("content-type").unwrap(),
            "application/problem+json",
            "{code}"
        );
    };

    // Unknown key id: a well-formed key that is in no record.
    let stranger = ApiKey::generate("sk_live").unwrap();
    let a = call(&url, &[("x-api-key", stranger.expose_secret())]).await;
    expect(&a, 401, "invalid_api_key");
    assert!(a.challenge().contains("error=\"invalid_token\""), "{}", a.challenge());
    assert!(a.challenge().contains("realm=\"keys\""), "{}", a.challenge());

    // A typo: the checksum refuses it.
    let mut typo = good.key.expose_secret().to_owned();
    let ch = if typo.ends_with('a') { "b" } else { "a" };
    typo.replace_range(typo.len() - 1.., ch);
    assert_eq!(parse_key(&typo).unwrap_err(), KeyFormatError::BadChecksum);
    let a = call(&url, &[("x-api-key", &typo)]).await;
    expect(&a, 401, "invalid_api_key");
    assert!(a.challenge().contains("invalid_token"));

    // The right key id with another secret (and a valid checksum).
    let forged = wrong_secret(&good.key);
    assert!(parse_key(&forged).is_ok());
    let a = call(&url, &[("x-api-key", &forged)]).await;
    expect(&a, 401, "invalid_api_key");

    // Revoked, and a key of another environment.
    let a = call(&url, &[("x-api-key", revoked.key.expose_secret())]).await;
    expect(&a, 401, "api_key_revoked");
    assert!(a.challenge().contains("invalid_token"));
    let a = call(&url, &[("x-api-key", test_env.key.expose_secret())]).await;
    expect(&a, 401, "invalid_api_key");

    // Garbage in the API key header is an API key attempt too; two headers are a malformed request.
    let a = call(&url, &[("x-api-key", "hunter2")]).await;
    expect(&a, 401, "invalid_api_key");
    let a = call(
        &url,
        &[
            ("x-api-key", good.key.expose_secret()),
            ("x-api-key", good.key.expose_secret()),
        ],
    )
    .await;
    expect(&a, 400, "malformed_token");

    // No credentials at all.
    let a = call(&url, &[]).await;
    expect(&a, 401, "missing_credentials");

    // An hour later the keys have expired.
    clock.advance(Duration::from_secs(3600));
    let a = call(&url, &[("x-api-key", good.key.expose_secret())]).await;
    expect(&a, 401, "api_key_expired");
    assert!(a.challenge().contains("invalid_token"));
}

#[tokio::test]
async fn peppered_digests_and_mismatched_hashers() {
    let pepper = KeyHasher::hmac_sha256(&SecretBytes::new(vec![42; 32])).unwrap();
    let issued = issue("sk_live", "bot", &pepper);
    assert_eq!(issued.record.digest_alg.as_str(), "hmac-sha256");
    let store = MemoryApiKeyStore::from_records([issued.record.clone()]).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let url = serve(ApiKeyAuthenticator::new(store.clone(), pepper).clock(clock.clone())).await;
    assert_eq!(
        call(&url, &[("x-api-key", issued.key.expose_secret())]).await.status,
        200
    );

    // A service with another pepper, or none, refuses the key (and says why only in the audit detail).
    let other = KeyHasher::hmac_sha256(&SecretBytes::new(vec![43; 32])).unwrap();
    let url = serve(ApiKeyAuthenticator::new(store.clone(), other).clock(clock.clone())).await;
    let a = call(&url, &[("x-api-key", issued.key.expose_secret())]).await;
    assert_eq!((a.status, a.code()), (401, "invalid_api_key"));
    let url = serve(ApiKeyAuthenticator::new(store, KeyHasher::sha256()).clock(clock)).await;
    let a = call(&url, &[("x-api-key", issued.key.expose_secret())]).await;
    assert_eq!((a.status, a.code()), (401, "invalid_api_key"));
    assert!(KeyHasher::hmac_sha256(&SecretBytes::new(vec![1; 31])).is_err());
}

#[tokio::test]
async fn api_keys_and_jwts_in_one_chain() {
    const ISS: &str = "https://id.example.com";
    let key = TestKey::es256();
    let validator = JwtValidator::builder()
        .issuer(Issuer::new(ISS).audience("api").pem_key(
            Some(&key.kid),
            jsonwebtoken::Algorithm::ES256,
            key.public_pem.as_bytes(),
        ))
        .build()
        .unwrap();
    let hasher = KeyHasher::sha256();
    let issued = ApiKeySpec::new("sk_live")
        .subject("ci-bot")
        .issue(&hasher, SystemTime::now())
        .unwrap();
    let store = MemoryApiKeyStore::from_records([issued.record.clone()]).unwrap();
    for api_key_first in [false, true] {
        let keys = ApiKeyAuthenticator::new(store.clone(), hasher.clone())
            .prefixes(["sk_live"])
            .unwrap();
        let jwt = JwtAuthenticator::new(validator.clone());
        let chain = if api_key_first {
            AuthnChain::new().with(keys).with(jwt)
        } else {
            AuthnChain::new().with(jwt).with(keys)
        };
        let url = serve(chain).await;

        let token = key.token().iss(ISS).aud("api").sub("alice").sign();
        let a = call(&url, &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            (a.body["subject"].as_str(), a.body["kind"].as_str()),
            (Some("alice"), Some("user"))
        );
        assert_eq!(a.body["auth"]["method"], "jwt");

        let a = call(
            &url,
            &[("authorization", &format!("Bearer {}", issued.key.expose_secret()))],
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            (a.body["subject"].as_str(), a.body["kind"].as_str()),
            (Some("ci-bot"), Some("api_key"))
        );

        let a = call(&url, &[("x-api-key", issued.key.expose_secret())]).await;
        assert_eq!(a.status, 200);

        // A bearer value that is neither: the JWT authenticator's answer.
        let a = call(&url, &[("authorization", "Bearer not-a-token")]).await;
        assert_eq!((a.status, a.code()), (400, "malformed_token"));
        // A bad-checksum key in the bearer header is still an API key (its prefix says so).
        let mut typo = issued.key.expose_secret().to_owned();
        let ch = if typo.ends_with('a') { "b" } else { "a" };
        typo.replace_range(typo.len() - 1.., ch);
        let a = call(&url, &[("authorization", &format!("Bearer {typo}"))]).await;
        assert_eq!((a.status, a.code()), (401, "invalid_api_key"));
        // A tampered JWT (another payload under this signature) is still the JWT authenticator's.
        let other = key.token().iss(ISS).aud("api").sub("mallory").sign();
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2]);
        let a = call(&url, &[("authorization", &format!("Bearer {tampered}"))]).await;
        assert_eq!((a.status, a.code()), (401, "bad_signature"));
    }
}

#[test]
fn secrets_stay_out_of_debug() {
    let hasher = KeyHasher::hmac_sha256(&SecretBytes::new(vec![9; 32])).unwrap();
    let issued = issue("sk_live", "bot", &hasher);
    let secret = issued.key.expose_secret();
    let body = &secret["sk_live_".len() + 11..];
    for dbg in [
        format!("{issued:?}"),
        format!("{:?}", issued.key),
        format!("{:?}", parse_key(secret).unwrap()),
        format!("{hasher:?}"),
        format!(
            "{:?}",
            ApiKeyAuthenticator::new(MemoryApiKeyStore::new(), hasher.clone())
        ),
    ] {
        assert!(!dbg.contains(body), "{dbg}");
        assert!(!dbg.contains(secret), "{dbg}");
    }
    assert!(!issued.record.to_json_line().contains(body));
}

#[test]
fn records_load_from_json_lines() {
    let hasher = KeyHasher::sha256();
    let a = issue("sk_live", "a", &hasher);
    let b = issue("sk_live", "b", &hasher);
    let text = format!("# keys\n{}\n\n{}\n", a.record.to_json_line(), b.record.to_json_line());
    let store = MemoryApiKeyStore::from_json_lines(&text).unwrap();
    assert_eq!(store.len(), 2);
    let dup = format!("{}\n{}\n", a.record.to_json_line(), a.record.to_json_line());
    assert!(
        MemoryApiKeyStore::from_json_lines(&dup)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    let err = MemoryApiKeyStore::from_json_lines("{\"key_id\":1}\n").unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
    let dir = tempdir();
    let path = dir.join("keys.jsonl");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(MemoryApiKeyStore::from_file(&path).unwrap().len(), 2);
    assert!(MemoryApiKeyStore::from_file(dir.join("missing")).is_err());
    let _ = std::fs::remove_dir_all(dir);
    // Inserting a record twice is a conflict.
    let store = MemoryApiKeyStore::new();
    store.insert(a.record.clone()).into_ready().unwrap().unwrap();
    let e = store.insert(a.record).into_ready().unwrap().unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Conflict);
}

/// `watch_file` on Tokio's paused clock: a key appended to the file starts working, a line marked revoked stops
/// its key, and a half-written file changes nothing (the previous records stay) until it is whole again.
#[tokio::test(start_paused = true)]
async fn watched_file_follows_the_file() {
    let hasher = KeyHasher::sha256();
    let a = issue("sk_live", "a", &hasher);
    let b = issue("sk_live", "b", &hasher);
    let dir = tempdir();
    let path = dir.join("keys.jsonl");
    std::fs::write(&path, format!("{}\n", a.record.to_json_line())).unwrap();
    let store = MemoryApiKeyStore::from_file(&path).unwrap();
    let authn = ApiKeyAuthenticator::new(store.clone(), hasher.clone()).clock(Arc::new(ManualClock::new(t0())));
    let code = |r: msec_authn::AuthnResult| r.err().map(|e| e.code().as_str().to_owned());
    let watch = store.watch_file(&path, Duration::from_secs(2));
    assert_eq!(
        code(authn.verify(b.key.expose_secret().as_bytes()).await).as_deref(),
        Some("invalid_api_key")
    );

    // A key appended with `msec apikey new >> file` works from the next pass on.
    std::fs::write(
        &path,
        format!("{}\n{}\n", a.record.to_json_line(), b.record.to_json_line()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(store.len(), 2);
    assert_eq!(code(authn.verify(b.key.expose_secret().as_bytes()).await), None);

    // A torn write: the store keeps both keys.
    std::fs::write(&path, format!("{}\n{{\"key_id\":", a.record.to_json_line())).unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(store.len(), 2);
    assert_eq!(code(authn.verify(b.key.expose_secret().as_bytes()).await), None);

    // The file rewritten with `a` revoked (what `msec apikey revoke --file` writes).
    let mut revoked = a.record.clone();
    revoked.revoked = true;
    std::fs::write(
        &path,
        format!("{}\n{}\n", revoked.to_json_line(), b.record.to_json_line()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        code(authn.verify(a.key.expose_secret().as_bytes()).await).as_deref(),
        Some("api_key_revoked")
    );
    assert_eq!(code(authn.verify(b.key.expose_secret().as_bytes()).await), None);

    // A missing file: the records stay.
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(store.len(), 2);
    watch.abort();
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "msec-apikey-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use msec_authn::apikey::{ApiKeyRecord, PgApiKeyStore};

    fn unique_table() -> String {
        let n = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("msec_apikey_test_{}_{}", std::process::id(), n % 1_000_000_000)
    }

    #[tokio::test]
    async fn postgres_store_over_http() {
        let Some(cfg) = msec_test_support::services::postgres_config().await else {
            return;
        };
        let table = unique_table();
        let store = PgApiKeyStore::new(&cfg, &table).unwrap();
        store.migrate().await.unwrap();
        store.migrate().await.unwrap(); // idempotent
        assert!(store.ddl().contains("CREATE TABLE IF NOT EXISTS"));
        let hasher = KeyHasher::sha256();
        let clock = ManualClock::new(t0());
        let one = issue("sk_live", "billing-bot", &hasher);
        let two = issue("sk_live", "billing-bot", &hasher);
        let no_expiry = ApiKeySpec::new("sk_live").issue(&hasher, t0()).unwrap();
        for r in [&one.record, &two.record, &no_expiry.record] {
            store.insert(r.clone()).await.unwrap();
        }
        let dup = store.insert(one.record.clone()).await.unwrap_err();
        assert_eq!(dup.kind(), StoreErrorKind::Conflict);
        let back: Vec<ApiKeyRecord> = store.keys_of("billing-bot").await.unwrap();
        assert_eq!(back.len(), 2);
        assert!(back.contains(&one.record) && back.contains(&two.record));
        let got = store.get(no_expiry.key.key_id()).await.unwrap().unwrap();
        assert_eq!(*got, no_expiry.record);

        let authn = ApiKeyAuthenticator::new(store.clone(), hasher).clock(Arc::new(clock.clone()));
        let url = serve(authn).await;
        let a = call(&url, &[("x-api-key", one.key.expose_secret())]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["auth"]["key_id"], one.key.key_id());
        assert_eq!(a.body["tenant"], "acme");
        let a = call(&url, &[("x-api-key", &wrong_secret(&one.key))]).await;
        assert_eq!((a.status, a.code()), (401, "invalid_api_key"));
        let a = call(
            &url,
            &[("x-api-key", ApiKey::generate("sk_live").unwrap().expose_secret())],
        )
        .await;
        assert_eq!((a.status, a.code()), (401, "invalid_api_key"));

        assert!(store.revoke(one.key.key_id()).await.unwrap());
        assert!(!store.revoke("00000000000").await.unwrap());
        let a = call(&url, &[("x-api-key", one.key.expose_secret())]).await;
        assert_eq!((a.status, a.code()), (401, "api_key_revoked"));
        // Rotation: the other key still works.
        assert_eq!(call(&url, &[("x-api-key", two.key.expose_secret())]).await.status, 200);
        clock.advance(Duration::from_secs(3600));
        let a = call(&url, &[("x-api-key", two.key.expose_secret())]).await;
        assert_eq!((a.status, a.code()), (401, "api_key_expired"));
        assert_eq!(
            call(&url, &[("x-api-key", no_expiry.key.expose_secret())]).await.status,
            200
        );

        let (client, conn) = tokio_postgres::connect(&cfg, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
        // The table is gone: the store answers 503, not 500.
        let a = call(&url, &[("x-api-key", no_expiry.key.expose_secret())]).await;
        assert_eq!((a.status, a.code()), (503, "credential_store_unavailable"));
    }

    /// TLS to the local PostgreSQL (Debian's server offers TLS with its snakeoil certificate for `localhost`):
    /// the store works over TLS pinned to that certificate, and refuses — 503, never a plain connection — a
    /// certificate from another CA, a host name the certificate does not name, and `sslmode=require` against
    /// the public roots. Skipped with a notice when the server has no TLS.
    #[tokio::test]
    async fn tls_is_verified_and_never_downgraded() {
        use msec_core::postgres::{PgTls, connect};
        let Some(cfg) = msec_test_support::services::postgres_config().await else {
            return;
        };
        let (plain, conn) = tokio_postgres::connect(&cfg, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let show = |rows: Vec<tokio_postgres::SimpleQueryMessage>| {
            rows.into_iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let ssl = show(plain.simple_query("SHOW ssl").await.unwrap());
        let cert_file = show(plain.simple_query("SHOW ssl_cert_file").await.unwrap());
        let cert_pem = match std::fs::read(&cert_file) {
            Ok(pem) if ssl == "on" => pem,
            _ => {
                eprintln!("NOTICE: PostgreSQL offers no TLS (ssl={ssl}, cert {cert_file:?}); TLS test skipped");
                return;
            }
        };
        // The server's own certificate as the only root; the host it names.
        let pinned = PgTls::from_pem_roots(&cert_pem).unwrap();
        let localhost = cfg.replace("host=127.0.0.1", "host=localhost");
        let client = connect(&localhost.parse().unwrap(), Some(&pinned)).await.unwrap();
        let row = client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "the session is encrypted");

        let table = unique_table();
        let store = PgApiKeyStore::new(&localhost, &table).unwrap().tls(pinned.clone());
        assert!(format!("{store:?}").contains("tls: true"));
        store.migrate().await.unwrap();
        let hasher = KeyHasher::sha256();
        let one = issue("sk_live", "bot", &hasher);
        store.insert(one.record.clone()).await.unwrap();
        assert_eq!(*store.get(one.key.key_id()).await.unwrap().unwrap(), one.record);

        let refused = async |store: PgApiKeyStore| {
            let e = store.get(one.key.key_id()).await.unwrap_err();
            assert_eq!(e.kind(), StoreErrorKind::Unavailable);
            e.detail().to_owned()
        };
        // A CA that did not sign the server's certificate.
        let other = msec_test_support::TestCa::new("other.test");
        let wrong_ca = PgTls::from_pem_roots(other.cert_pem().as_bytes()).unwrap();
        let d = refused(PgApiKeyStore::new(&localhost, &table).unwrap().tls(wrong_ca)).await;
        assert!(d.contains("certificate"), "{d}");
        // The right root, but an address the certificate does not name.
        let d = refused(PgApiKeyStore::new(&cfg, &table).unwrap().tls(pinned.clone())).await;
        assert!(d.contains("certificate"), "{d}");
        // `sslmode=require` with no roots given: the public roots, which do not vouch for this server.
        let d = refused(PgApiKeyStore::new(&format!("{localhost} sslmode=require"), &table).unwrap()).await;
        assert!(d.contains("certificate"), "{d}");
        // `sslmode=disable` in the string does not turn configured TLS off.
        let disable = format!("{localhost} sslmode=disable");
        let client = connect(&disable.parse().unwrap(), Some(&pinned)).await.unwrap();
        let row = client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "configured TLS is used despite sslmode=disable");
        let forced = PgApiKeyStore::new(&disable, &table).unwrap().tls(pinned);
        assert!(forced.get(one.key.key_id()).await.unwrap().is_some());
        assert!(PgTls::from_pem_roots(b"no pem here").is_err());
        plain.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
    }

    #[tokio::test]
    async fn store_down_is_503() {
        // A port nothing listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let store = PgApiKeyStore::new(
            &format!("host=127.0.0.1 port={port} user=postgres dbname=test"),
            "msec_api_keys",
        )
        .unwrap()
        .timeout(Duration::from_millis(500));
        let hasher = KeyHasher::sha256();
        let issued = issue("sk_live", "bot", &hasher);
        let url = serve(ApiKeyAuthenticator::new(store.clone(), hasher)).await;
        let a = call(&url, &[("x-api-key", issued.key.expose_secret())]).await;
        assert_eq!(
            (a.status, a.code()),
            (503, "credential_store_unavailable"),
            "{}",
            a.body
        );
        assert_eq!(a.headers.get("retry-after").unwrap(), "5");
        assert!(a.headers.get("www-authenticate").is_none());
        // A bad checksum is refused without touching the store: 401, not 503.
        let mut typo = issued.key.expose_secret().to_owned();
        let ch = if typo.ends_with('a') { "b" } else { "a" };
        typo.replace_range(typo.len() - 1.., ch);
        let a = call(&url, &[("x-api-key", &typo)]).await;
        assert_eq!((a.status, a.code()), (401, "invalid_api_key"));
        assert!(store.migrate().await.is_err());
        assert!(!format!("{store:?}").contains("postgres"));
        assert!(PgApiKeyStore::new("host=127.0.0.1", "bad table").is_err());
        assert!(PgApiKeyStore::new("not a = connection = string", "t").is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parser_never_panics(s in "\\PC{0,120}") {
        let _ = parse_key(&s);
        msec_authn::fuzzing::apikey_parse(s.as_bytes());
    }

    #[test]
    fn parser_never_panics_on_key_shaped_input(prefix in "[a-z][a-z0-9_]{0,10}", body in "[0-9A-Za-z_.]{40,60}") {
        let s = format!("{prefix}_{body}");
        let _ = parse_key(&s);
        msec_authn::fuzzing::apikey_parse(s.as_bytes());
    }

    #[test]
    fn generated_keys_round_trip(prefix in "[a-z][a-z0-9_]{0,20}[a-z0-9]") {
        let key = ApiKey::generate(&prefix).unwrap();
        let parsed = parse_key(key.expose_secret()).unwrap();
        prop_assert_eq!(parsed.prefix(), prefix.as_str());
        prop_assert_eq!(parsed.key_id(), key.key_id());
        prop_assert_eq!(parsed.expose_secret(), key.expose_secret());
        let again = ApiKey::parse(key.expose_secret()).unwrap();
        prop_assert_eq!(again.key_id(), key.key_id());
    }

    #[test]
    fn every_single_character_change_is_refused(pos in any::<prop::sample::Index>(), c in "[0-9A-Za-z_]") {
        let key = ApiKey::generate("sk_live").unwrap();
        let s = key.expose_secret();
        let i = pos.index(s.len());
        prop_assume!(&s[i..=i] != c.as_str());
        let mut changed = s.to_owned();
        changed.replace_range(i..=i, &c);
        prop_assert!(parse_key(&changed).is_err(), "{} accepted", changed);
    }
}
