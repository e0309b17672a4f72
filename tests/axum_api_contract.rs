//! The `axum_api` example as a black box: the compiled binary is started with environment variables against a
//! loopback issuer, and its whole contract is driven over real HTTP(S) — routes, rejections, quotas, metrics,
//! readiness, the audit log (counted and verified) and the keyring across restarts.
//!
//! The binary is `target/<profile>/examples/axum_api`; `cargo build --example axum_api` is run first (a no-op
//! when it is fresh), since `cargo test --test axum_api_contract` alone does not build examples.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

use std::collections::HashMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msec::audit::sink::file::{anchor_path, log_files};
use msec::audit::{PublicKey, Verifier};
use msec::tls::{CertSource, ClientAuth, ClientTls, ServerAuth, ServerTls, TlsConnector, Trust};
use msec_test_support::{TestCa, TestCert, TestKey};
use serde_json::{Value, json};

const AUDIENCE: &str = "orders-api";

// =============================================================================================================
// The binary
// =============================================================================================================

/// Builds the example (once per test process) and returns its path.
fn example_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/axum_api_contract-<hash>
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()).unwrap() {
            "debug" => "dev".to_owned(),
            other => other.to_owned(),
        };
        let out = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "axum_api", "--profile", &profile])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo build --example axum_api failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir
            .join("examples")
            .join(format!("axum_api{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}

/// A running `axum_api`; killed when dropped, so a failing test never leaks a server.
struct Service {
    child: Option<Child>,
    addr: SocketAddr,
    https: bool,
    stderr: PathBuf,
}

impl Service {
    /// Starts the binary with exactly `env` (the parent's environment is not inherited) and waits for its
    /// startup line.
    async fn start(env: &HashMap<&str, String>, log_dir: &Path) -> Self {
        let stderr = log_dir.join(format!("stderr-{}.log", uuid::Uuid::new_v4()));
        let mut cmd = Command::new(example_binary());
        cmd.env_clear()
            .envs(env)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
            }),
        )
        .await
        .expect("no startup line within 30 s")
        .unwrap()
        .unwrap();
        let log = std::fs::read_to_string(&stderr).unwrap_or_default();
        let url = line
            .trim()
            .strip_prefix("axum_api listening on ")
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}; stderr:\n{log}"));
        let (https, addr) = match url.split_once("://") {
            Some(("https", a)) => (true, a),
            Some(("http", a)) => (false, a),
            _ => panic!("unexpected URL {url:?}"),
        };
        Self {
            child: Some(child),
            addr: addr.parse().unwrap(),
            https,
            stderr,
        }
    }

    /// Runs the binary with `env` and returns its exit status and stderr (for configurations it must refuse).
    fn refuse(env: &HashMap<&str, String>) -> (bool, String) {
        let out = Command::new(example_binary())
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://localhost:{}{path}", self.addr.port())
    }

    /// SIGTERM, then waits for a clean exit (requests drained, audit log sealed).
    async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(exit.success(), "exit status {exit} after SIGTERM; stderr:\n{log}");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// =============================================================================================================
// A loopback issuer: OIDC discovery + JWKS, over HTTP or HTTPS
// =============================================================================================================

struct Idp {
    issuer: String,
    key: TestKey,
}

#[derive(Clone)]
struct IdpDoc {
    issuer: String,
    jwks: Value,
}

impl Idp {
    fn router(issuer: &str, key: &TestKey) -> Router {
        Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(d): State<IdpDoc>| async move {
                    Json(json!({"issuer": d.issuer, "jwks_uri": format!("{}/jwks", d.issuer)}))
                }),
            )
            .route("/jwks", get(|State(d): State<IdpDoc>| async move { Json(d.jwks) }))
            .with_state(IdpDoc {
                issuer: issuer.to_owned(),
                jwks: msec_test_support::keys::jwks(&[key]),
            })
    }

    async fn http() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let key = TestKey::rs256();
        let app = Self::router(&issuer, &key);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { issuer, key }
    }

    /// An issuer at `https://localhost:<port>` whose certificate `ca` signed.
    async fn https(ca: &TestCa) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("https://localhost:{}", listener.local_addr().unwrap().port());
        let key = TestKey::es256();
        let cert = ca.localhost();
        let tls = ServerTls::builder()
            .client_auth(ClientAuth::none())
            .certificate(CertSource::pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let app = Self::router(&issuer, &key);
        // Dropping the handle detaches the server: it runs until the test's runtime ends.
        drop(msec::tls::serve(listener, tls, app).spawn().unwrap());
        Self { issuer, key }
    }

    /// An access token for `sub` with `scope` (and an `email` claim).
    fn token(&self, sub: &str, scope: &str) -> String {
        self.key
            .token()
            .iss(&self.issuer)
            .aud(AUDIENCE)
            .sub(sub)
            .scope(scope)
            .claim("email", format!("{sub}@example.org"))
            .sign()
    }
}

// =============================================================================================================
// An HTTP(S) client that counts the /v1 requests it sends
// =============================================================================================================

enum Transport {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<TlsConnector, Full<Bytes>>),
}

struct Api {
    base: String,
    transport: Transport,
    v1_sent: usize,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("-").to_owned()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api {
    fn plain(svc: &Service) -> Self {
        Self {
            base: svc.url(""),
            transport: Transport::Plain(Client::builder(TokioExecutor::new()).build_http()),
            v1_sent: 0,
        }
    }

    fn tls(svc: &Service, tls: &ClientTls) -> Self {
        Self {
            base: svc.url(""),
            transport: Transport::Tls(Client::builder(TokioExecutor::new()).build(tls.connector())),
            v1_sent: 0,
        }
    }

    async fn send(&mut self, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        if path.starts_with("/v1/") {
            self.v1_sent += 1;
        }
        let mut b = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let resp = match &self.transport {
            Transport::Plain(c) => c.request(req).await.unwrap(),
            Transport::Tls(c) => c.request(req).await.unwrap(),
        };
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn get(&mut self, path: &str, token: Option<&str>) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.send(Method::GET, path, &headers, "").await
    }

    async fn post_json(&mut self, path: &str, token: &str, body: &str) -> Answer {
        let auth = format!("Bearer {token}");
        self.send(
            Method::POST,
            path,
            &[("authorization", &auth), ("content-type", "application/json")],
            body,
        )
        .await
    }

    /// Polls /readyz until it answers 200 (keys are fetched in the background at start).
    async fn wait_ready(&mut self) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let a = self.get("/readyz", None).await;
            if a.status == 200 {
                return a;
            }
            assert!(Instant::now() < deadline, "not ready within 20 s: {}", a.text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// =============================================================================================================
// The audit directory
// =============================================================================================================

/// Every record of the log in `dir`, oldest first.
fn audit_records(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for f in log_files(dir, "audit").unwrap() {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap());
        }
    }
    out
}

/// The request records of /v1 paths.
fn v1_records(dir: &Path) -> Vec<Value> {
    audit_records(dir)
        .into_iter()
        .filter(|r| r["kind"] == "request" && r["action"]["path"].as_str().is_some_and(|p| p.starts_with("/v1/")))
        .collect()
}

/// What `msec audit verify <dir> --public-key <dir>/checkpoint.pub` does: the files, the signatures with the
/// published key, and the anchor the file sink keeps.
fn verify_audit_dir(dir: &Path) -> msec::audit::Report {
    let public = PublicKey::parse(&std::fs::read_to_string(dir.join("checkpoint.pub")).unwrap()).unwrap();
    let files = log_files(dir, "audit").unwrap();
    assert!(!files.is_empty());
    let anchor = std::fs::read(anchor_path(dir, "audit")).unwrap();
    Verifier::new([public])
        .with_anchor(&anchor)
        .unwrap()
        .verify_files(&files)
        .unwrap_or_else(|e| panic!("audit log does not verify: {e}"))
}

/// The metric names (without labels) of a Prometheus text exposition, and the label sets of
/// `msec_decisions_total`.
fn metric_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect()
}

fn has_metric(text: &str, name: &str) -> bool {
    metric_lines(text).iter().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ') || rest.starts_with('_'))
    })
}

fn base_env(idp: &Idp, dir: &Path) -> HashMap<&'static str, String> {
    HashMap::from([
        ("MSEC_ADDR", "127.0.0.1:0".to_owned()),
        ("MSEC_ISSUER", idp.issuer.clone()),
        ("MSEC_AUDIENCE", AUDIENCE.to_owned()),
        ("MSEC_AUDIT_DIR", dir.join("audit").display().to_string()),
        ("MSEC_KEYRING", dir.join("keys/keyring.json").display().to_string()),
    ])
}

// =============================================================================================================
// The contract over plain HTTP, and the keyring across two runs
// =============================================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_over_http_and_across_restarts() {
    let idp = Idp::http().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&idp, dir.path());
    env.insert("MSEC_JWKS_URL", format!("{}/jwks", idp.issuer));
    env.insert("MSEC_INSECURE_HTTP_JWKS", "1".into());
    // Each principal below sends fewer requests than this, except the one that goes over it.
    env.insert("MSEC_RATE_PER_MINUTE", "20".into());
    // The flood guard is per client IP and every request of this test comes from 127.0.0.1.
    env.insert("MSEC_IP_RATE_PER_MINUTE", "100000".into());
    env.insert(
        "MSEC_ORDERS_FILE",
        dir.path().join("orders.jsonl").display().to_string(),
    );
    let keyring = dir.path().join("keys/keyring.json");
    let master = dir.path().join("keys/keyring.json.master-key");
    let audit_dir = dir.path().join("audit");
    assert!(!keyring.exists());

    // ---- first run ----
    let svc = Service::start(&env, dir.path()).await;
    let mut api = Api::plain(&svc);
    let ready = api.wait_ready().await;
    assert_eq!(
        ready.json(),
        json!({"ready": true, "keys": true, "redis": null, "audit": true})
    );
    assert!(
        keyring.exists() && master.exists(),
        "keyring and master key created on first start"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&master).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the master key is readable by its owner only");
    }
    let keyring_bytes = std::fs::read(&keyring).unwrap();

    // Public routes.
    let a = api.get("/healthz", None).await;
    assert_eq!((a.status, a.text().as_str()), (200, "ok"));
    let a = api.get("/bare/hello", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["hello"], "world");
    assert!(
        a.headers.get("x-content-type-options").is_none() && a.headers.get("ratelimit").is_none(),
        "the baseline route has no msec layer: {:?}",
        a.headers
    );

    // GET /v1/hello.
    let hello = idp.token("alice", "hello:read");
    let a = api.get("/v1/hello", None).await;
    assert_eq!((a.status, a.code().as_str()), (401, "missing_credentials"));
    assert!(a.header("www-authenticate").starts_with("Bearer"), "{:?}", a.headers);
    assert!(
        !a.header("www-authenticate").contains("error="),
        "no error attribute without credentials"
    );
    assert_eq!(a.header("content-type"), "application/problem+json");
    let a = api.get("/v1/hello", Some(&hello)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json(), json!({"hello": "alice", "peer": null}));
    assert_eq!(a.header("x-content-type-options"), "nosniff");
    assert!(
        a.header("ratelimit-policy").contains("\"per-principal\";q=20;w=60"),
        "{:?}",
        a.headers
    );
    let reader = idp.token("bob", "orders:read");
    let a = api.get("/v1/hello", Some(&reader)).await;
    assert_eq!((a.status, a.code().as_str()), (403, "insufficient_scope"));
    assert!(a.header("www-authenticate").contains("error=\"insufficient_scope\""));
    assert!(a.header("www-authenticate").contains("scope=\"hello:read\""));
    let other_aud = idp.key.token().iss(&idp.issuer).aud("billing").sub("alice").sign();
    let a = api.get("/v1/hello", Some(&other_aud)).await;
    assert_eq!((a.status, a.code().as_str()), (401, "audience_mismatch"));
    assert!(a.header("www-authenticate").contains("error=\"invalid_token\""));
    let a = api.get("/v1/hello", Some("not-a-jwt")).await;
    assert_eq!((a.status, a.code().as_str()), (400, "malformed_token"));

    // POST /v1/orders.
    let writer = idp.token("carol", "orders:write");
    let a = api
        .post_json("/v1/orders", &reader, r#"{"item":"widget","quantity":3}"#)
        .await;
    assert_eq!((a.status, a.code().as_str()), (403, "insufficient_scope"));
    let a = api
        .post_json("/v1/orders", &writer, r#"{"item":"widget","quantity":3}"#)
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let id = a.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(a.header("location"), format!("/v1/orders/{id}"));
    assert_eq!(a.json(), json!({"id": id, "item": "widget", "quantity": 3}));
    let a = api
        .post_json("/v1/orders", &writer, r#"{"item":"","quantity":0}"#)
        .await;
    assert_eq!((a.status, a.code().as_str()), (422, "schema_violation"));
    let pointers: Vec<String> = a.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        pointers.contains(&"/item".into()) && pointers.contains(&"/quantity".into()),
        "{pointers:?}"
    );
    let a = api
        .post_json("/v1/orders", &writer, r#"{"item":"x","quantity":1001}"#)
        .await;
    assert_eq!((a.status, a.code().as_str()), (422, "schema_violation"));
    let a = api.post_json("/v1/orders", &writer, r#"{"quantity":2}"#).await;
    assert_eq!((a.status, a.code().as_str()), (422, "schema_violation"));
    let a = api
        .post_json(
            "/v1/orders",
            &writer,
            r#"{"item":"x","quantity":1,"card":"4111 1111 1111 1111"}"#,
        )
        .await;
    assert_eq!((a.status, a.code().as_str()), (422, "schema_violation"));
    assert_eq!(a.json()["errors"][0]["code"], "additionalProperties", "{}", a.text());
    assert!(!a.text().contains("4111"), "rejected values are never echoed");
    let big = format!(r#"{{"item":"{}","quantity":1}}"#, "x".repeat(20 * 1024));
    let a = api.post_json("/v1/orders", &writer, &big).await;
    assert_eq!((a.status, a.code().as_str()), (413, "payload_too_large"));
    let deep = format!("{}{}", "[".repeat(64), "]".repeat(64));
    let a = api.post_json("/v1/orders", &writer, &deep).await;
    assert_eq!((a.status, a.code().as_str()), (400, "json_too_deep"));
    let auth = format!("Bearer {writer}");
    let a = api
        .send(
            Method::POST,
            "/v1/orders",
            &[("authorization", &auth), ("content-type", "text/plain")],
            "item=x",
        )
        .await;
    assert_eq!(a.status, 415, "{}", a.text());

    // GET /v1/orders/{id}: the email comes back masked, and is stored only encrypted.
    let a = api.get(&format!("/v1/orders/{id}"), Some(&writer)).await;
    assert_eq!((a.status, a.code().as_str()), (403, "insufficient_scope"));
    let a = api.get(&format!("/v1/orders/{id}"), Some(&reader)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json(),
        json!({"id": id, "item": "widget", "quantity": 3, "customer_email": "c***@example.org"})
    );
    let stored = std::fs::read_to_string(dir.path().join("orders.jsonl")).unwrap();
    assert!(
        stored.contains("\"customer_email\":\"msec:v1:") && !stored.contains("carol@"),
        "{stored}"
    );
    let a = api
        .get(&format!("/v1/orders/{}", uuid::Uuid::new_v4()), Some(&reader))
        .await;
    assert_eq!((a.status, a.code().as_str()), (404, "order_not_found"));

    // Path traversal and other firewall cases, before any token is looked at.
    let a = api.get("/v1/orders/..%2f..%2fetc%2fpasswd", Some(&reader)).await;
    assert_eq!((a.status, a.code().as_str()), (400, "encoded_slash"));
    let a = api.get("/v1/orders/%2e%2e/%2e%2e/etc/passwd", None).await;
    assert_eq!((a.status, a.code().as_str()), (400, "dot_segment"));
    let a = api.get("/v1/orders/1;jsessionid=x", None).await;
    assert_eq!((a.status, a.code().as_str()), (400, "semicolon"));

    // Deny by default: a route no rule allows.
    let a = api.get("/v1/admin", Some(&hello)).await;
    assert_eq!((a.status, a.code().as_str()), (403, "no_matching_rule"));

    // The per-principal quota: 20 a minute for dave, while alice is unaffected.
    let dave = idp.token("dave", "hello:read");
    for n in 1..=20 {
        let a = api.get("/v1/hello", Some(&dave)).await;
        assert_eq!(a.status, 200, "request {n}");
    }
    let a = api.get("/v1/hello", Some(&dave)).await;
    assert_eq!((a.status, a.code().as_str()), (429, "rate_limited"));
    assert!(a.header("retry-after").parse::<u64>().unwrap() >= 1);
    assert!(
        a.header("ratelimit-policy").contains("\"per-principal\";q=20;w=60"),
        "{:?}",
        a.headers
    );
    assert!(
        a.header("ratelimit").contains("\"per-principal\";r=0"),
        "{:?}",
        a.headers
    );
    let a = api.get("/v1/hello", Some(&hello)).await;
    assert_eq!(a.status, 200, "another principal has its own quota");

    // /metrics, from loopback: the msec series of every layer.
    let a = api.get("/metrics", None).await;
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").starts_with("text/plain"));
    let text = a.text();
    assert_observability(&text);

    let a = api.get("/readyz", None).await;
    assert_eq!(a.status, 200);

    let sent = api.v1_sent;
    svc.stop().await;

    // One audit record per /v1 request, none for the public routes; the log verifies and is sealed.
    let records = v1_records(&audit_dir);
    assert_eq!(records.len(), sent, "one audit record per /v1 request");
    let all = audit_records(&audit_dir);
    assert!(
        !all.iter()
            .any(|r| r["action"]["path"].as_str().is_some_and(|p| !p.starts_with("/v1/"))),
        "public routes are not audited"
    );
    assert_eq!(all.last().unwrap()["reason"], "close", "the log is sealed on SIGTERM");
    let created = records
        .iter()
        .find(|r| r["action"]["method"] == "POST" && r["outcome"]["status"] == 201)
        .unwrap();
    assert_eq!(created["actor"]["subject"], "carol");
    assert_eq!(created["action"]["route"], "/v1/orders");
    let throttled = records.iter().find(|r| r["outcome"]["status"] == 429).unwrap();
    assert_eq!(throttled["outcome"]["code"], "rate_limited");
    let text = std::fs::read_to_string(log_files(&audit_dir, "audit").unwrap()[0].clone()).unwrap();
    assert!(!text.contains(&hello), "tokens never reach the audit log");
    let report = verify_audit_dir(&audit_dir);
    assert!(report.records >= sent as u64);

    // ---- second run: same keyring (reused, not replaced), same orders file, same audit log ----
    let svc = Service::start(&env, dir.path()).await;
    let mut api = Api::plain(&svc);
    api.wait_ready().await;
    assert_eq!(
        std::fs::read(&keyring).unwrap(),
        keyring_bytes,
        "the keyring file is reused"
    );
    let a = api.get(&format!("/v1/orders/{id}"), Some(&reader)).await;
    assert_eq!(
        a.status,
        200,
        "an order written in the first run is readable: {}",
        a.text()
    );
    assert_eq!(a.json()["customer_email"], "c***@example.org");
    let sent_again = api.v1_sent;
    svc.stop().await;
    assert_eq!(v1_records(&audit_dir).len(), sent + sent_again);
    verify_audit_dir(&audit_dir);
}

/// The series issue 10 asks for, after traffic: decisions per layer and reason code, key fetches, rate-limit
/// rejections, and the audit queue, drops and flush latency.
fn assert_observability(text: &str) {
    for layer in ["authn", "authz", "ratelimit", "validate"] {
        assert!(
            metric_lines(text)
                .iter()
                .any(|l| l.starts_with("msec_decisions_total{") && l.contains(&format!("layer=\"{layer}\""))),
            "msec_decisions_total has layer {layer}:\n{text}"
        );
    }
    assert!(
        metric_lines(text)
            .iter()
            .any(|l| l.starts_with("msec_decisions_total{") && l.contains("code=\"insufficient_scope\"")),
        "decisions are counted per reason code"
    );
    for name in [
        "msec_authn_jwks_fetch_total",
        "msec_authn_jwks_keys",
        "msec_authn_token_cache_total",
        "msec_ratelimit_over_limit_total",
        "msec_validate_firewall_rejections_total",
        "msec_validate_body_rejections_total",
        "msec_audit_queue_depth",
        "msec_audit_dropped_total",
        "msec_audit_refused_total",
        "msec_audit_sink_errors_total",
        "msec_audit_records_written_total",
        "msec_audit_batch_write_seconds",
        "msec_audit_requests_total",
    ] {
        assert!(has_metric(text, name), "{name} missing from /metrics:\n{text}");
    }
}

// =============================================================================================================
// HTTPS with mTLS; keys fetched over HTTPS through OIDC discovery with MSEC_JWKS_CA
// =============================================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_mtls_peer_identity() {
    let idp_ca = TestCa::new("idp.test");
    let idp = Idp::https(&idp_ca).await;
    let ca = TestCa::new("example.org");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let server: TestCert = ca.localhost();
    let mut env = base_env(&idp, dir.path());
    env.insert("MSEC_OIDC_DISCOVERY", "1".into());
    env.insert("MSEC_JWKS_CA", write("idp-ca.pem", idp_ca.cert_pem()));
    env.insert("MSEC_TLS_CERT", write("server.crt", &server.cert_pem));
    env.insert("MSEC_TLS_KEY", write("server.key", &server.key_pem));
    env.insert("MSEC_TLS_CLIENT_CA", write("client-ca.pem", ca.cert_pem()));

    let svc = Service::start(&env, dir.path()).await;
    assert!(svc.https);
    let trust = || Trust::roots().cert(ca.cert()).build().unwrap();
    let web = ca.svid("/ns/prod/sa/web");
    let with_cert = ClientTls::builder()
        .server_auth(ServerAuth::dns(trust()))
        .client_cert(CertSource::pem(web.cert_pem.as_bytes(), web.key_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let without_cert = ClientTls::builder()
        .server_auth(ServerAuth::dns(trust()))
        .no_client_cert()
        .build()
        .unwrap();

    // Probes work without a client certificate; the API needs one.
    let mut anon = Api::tls(&svc, &without_cert);
    let ready = anon.wait_ready().await;
    assert_eq!(ready.json()["keys"], true, "keys fetched over HTTPS with MSEC_JWKS_CA");
    assert_eq!(anon.get("/healthz", None).await.status, 200);
    let token = idp.token("erin", "hello:read");
    let a = anon.get("/v1/hello", Some(&token)).await;
    assert_eq!((a.status, a.code().as_str()), (403, "policy_denied"), "{}", a.text());

    let mut api = Api::tls(&svc, &with_cert);
    let a = api.get("/v1/hello", Some(&token)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json(),
        json!({"hello": "erin", "peer": "spiffe://example.org/ns/prod/sa/web"})
    );
    assert!(
        a.header("strict-transport-security").starts_with("max-age="),
        "{:?}",
        a.headers
    );
    let a = api.get("/v1/hello", None).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (401, "missing_credentials"),
        "the token is still required"
    );

    let sent = anon.v1_sent + api.v1_sent;
    svc.stop().await;
    let audit_dir = dir.path().join("audit");
    let records = v1_records(&audit_dir);
    assert_eq!(records.len(), sent);
    let ok = records.iter().find(|r| r["outcome"]["status"] == 200).unwrap();
    assert_eq!(ok["actor"]["peer"]["spiffe_id"], "spiffe://example.org/ns/prod/sa/web");
    assert_eq!(ok["actor"]["subject"], "erin");
    verify_audit_dir(&audit_dir);
}

// =============================================================================================================
// Redis-backed quotas shared by two replicas
// =============================================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_quota_is_shared_by_replicas() {
    let Some(redis) = msec_test_support::services::redis_url().await else {
        return;
    };
    let idp = Idp::http().await;
    let dir = tempfile::tempdir().unwrap();
    let replica = |n: usize| {
        let mut env = base_env(&idp, &dir.path().join(format!("replica-{n}")));
        env.insert("MSEC_JWKS_URL", format!("{}/jwks", idp.issuer));
        env.insert("MSEC_INSECURE_HTTP_JWKS", "1".into());
        env.insert("MSEC_REDIS_URL", redis.clone());
        env.insert("MSEC_RATE_PER_MINUTE", "3".into());
        env
    };
    let a = Service::start(&replica(1), dir.path()).await;
    let b = Service::start(&replica(2), dir.path()).await;
    let mut api_a = Api::plain(&a);
    let mut api_b = Api::plain(&b);
    let ready = api_a.wait_ready().await;
    assert_eq!(ready.json()["redis"], true);
    api_b.wait_ready().await;

    // A subject no other run uses: the quota lives in Redis across runs for a minute.
    let token = idp.token(&format!("redis-{}", uuid::Uuid::new_v4()), "hello:read");
    assert_eq!(api_a.get("/v1/hello", Some(&token)).await.status, 200);
    assert_eq!(api_b.get("/v1/hello", Some(&token)).await.status, 200);
    assert_eq!(api_a.get("/v1/hello", Some(&token)).await.status, 200);
    let r = api_b.get("/v1/hello", Some(&token)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (429, "rate_limited"),
        "the quota is shared"
    );

    let text = api_a.get("/metrics", None).await.text();
    assert!(has_metric(&text, "msec_ratelimit_backend_failures_total"), "{text}");
    assert!(has_metric(&text, "msec_ratelimit_redis_seconds"), "{text}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_not_ready_but_still_limits_locally() {
    let idp = Idp::http().await;
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut env = base_env(&idp, dir.path());
    env.insert("MSEC_JWKS_URL", format!("{}/jwks", idp.issuer));
    env.insert("MSEC_INSECURE_HTTP_JWKS", "1".into());
    env.insert("MSEC_REDIS_URL", format!("redis://{closed}"));
    env.insert("MSEC_RATE_PER_MINUTE", "2".into());
    let svc = Service::start(&env, dir.path()).await;
    let mut api = Api::plain(&svc);
    let token = idp.token("frank", "hello:read");
    // The first request also waits for the keys.
    assert_eq!(api.get("/v1/hello", Some(&token)).await.status, 200);
    let r = api.get("/readyz", None).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        json!({"ready": false, "keys": true, "redis": false, "audit": true})
    );
    assert_eq!(api.get("/v1/hello", Some(&token)).await.status, 200);
    let r = api.get("/v1/hello", Some(&token)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (429, "rate_limited"),
        "the local fallback still limits"
    );
    let text = api.get("/metrics", None).await.text();
    assert!(
        metric_lines(&text)
            .iter()
            .any(|l| l.starts_with("msec_ratelimit_backend_failures_total{") && !l.ends_with(" 0")),
        "{text}"
    );
    svc.stop().await;
}

// =============================================================================================================
// /metrics is for loopback clients only
// =============================================================================================================

/// A non-loopback address of this host, if it has one (no packet is sent: UDP connect only picks a route).
fn host_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `MSEC_API_KEYS` as an operator uses it: keys from `msec apikey new` lines work beside JWTs, a key appended to
/// the running service's file starts working and a line marked revoked stops its key, without a restart; a
/// broken file leaves the keys as they were. Each change is polled for (the file is re-read every 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_follow_their_file() {
    use msec::authn::apikey::{ApiKeySpec, KeyHasher};
    let idp = Idp::http().await;
    let dir = tempfile::tempdir().unwrap();
    let hasher = KeyHasher::sha256();
    let issue = |subject: &str| {
        ApiKeySpec::new("sk_live")
            .subject(subject)
            .scopes(["hello:read"])
            .issue(&hasher, std::time::SystemTime::now())
            .unwrap()
    };
    let (a, b) = (issue("billing-bot"), issue("report-bot"));
    let keys = dir.path().join("api-keys.jsonl");
    std::fs::write(
        &keys,
        format!("# made by msec apikey new\n{}\n", a.record.to_json_line()),
    )
    .unwrap();
    let mut env = base_env(&idp, dir.path());
    env.insert("MSEC_JWKS_URL", format!("{}/jwks", idp.issuer));
    env.insert("MSEC_INSECURE_HTTP_JWKS", "1".into());
    env.insert("MSEC_API_KEYS", keys.display().to_string());
    let svc = Service::start(&env, dir.path()).await;
    let mut api = Api::plain(&svc);
    api.wait_ready().await;

    let hello = async |api: &mut Api, key: &str| {
        let r = api.send(Method::GET, "/v1/hello", &[("x-api-key", key)], "").await;
        (r.status, r.code())
    };
    assert_eq!(hello(&mut api, a.key.expose_secret()).await.0, 200);
    let token = idp.token("alice", "hello:read");
    assert_eq!(api.get("/v1/hello", Some(&token)).await.status, 200, "JWTs still work");
    assert_eq!(
        hello(&mut api, b.key.expose_secret()).await,
        (401, "invalid_api_key".to_owned())
    );

    // Polls until `key` gets `want` (each change is picked up within the 2 s re-read).
    async fn until(api: &mut Api, key: &str, want: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = api.send(Method::GET, "/v1/hello", &[("x-api-key", key)], "").await;
            if r.status == want {
                return r.code();
            }
            assert!(
                Instant::now() < deadline,
                "still {} ({}) after 15 s",
                r.status,
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Appended while running.
    let mut f = std::fs::OpenOptions::new().append(true).open(&keys).unwrap();
    std::io::Write::write_all(&mut f, format!("{}\n", b.record.to_json_line()).as_bytes()).unwrap();
    drop(f);
    until(&mut api, b.key.expose_secret(), 200).await;

    // A broken file: both keys keep working through the next reads.
    let before = std::fs::read_to_string(&keys).unwrap();
    std::fs::write(&keys, format!("{before}{{\"key_id\":")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&svc.stderr)
        .unwrap_or_default()
        .contains("not reloaded")
    {
        assert!(
            Instant::now() < deadline,
            "the broken file was not reported within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hello(&mut api, a.key.expose_secret()).await.0, 200);
    assert_eq!(hello(&mut api, b.key.expose_secret()).await.0, 200);

    // `a` marked revoked.
    let mut revoked = a.record.clone();
    revoked.revoked = true;
    std::fs::write(
        &keys,
        format!("{}\n{}\n", revoked.to_json_line(), b.record.to_json_line()),
    )
    .unwrap();
    assert_eq!(until(&mut api, a.key.expose_secret(), 401).await, "api_key_revoked");
    assert_eq!(hello(&mut api, b.key.expose_secret()).await.0, 200);
    let stderr = svc.stderr.clone();
    svc.stop().await;
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        !log.contains(a.key.expose_secret()) && !log.contains(b.key.expose_secret()),
        "no key in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_refused_to_other_clients() {
    let Some(ip) = host_address() else {
        eprintln!("NOTICE: skipping: this host has no non-loopback address");
        return;
    };
    let idp = Idp::http().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&idp, dir.path());
    env.insert("MSEC_ADDR", SocketAddr::new(ip, 0).to_string());
    env.insert("MSEC_JWKS_URL", format!("{}/jwks", idp.issuer));
    env.insert("MSEC_INSECURE_HTTP_JWKS", "1".into());
    let svc = Service::start(&env, dir.path()).await;
    let mut api = Api::plain(&svc);
    api.base = format!("http://{}", svc.addr);
    let a = api.get("/metrics", None).await;
    assert_eq!((a.status, a.code().as_str()), (403, "client_ip_not_allowed"));
    assert_eq!(api.get("/healthz", None).await.status, 200);
    svc.stop().await;
}

// =============================================================================================================
// Configurations the service refuses to start with
// =============================================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_refuse_to_start() {
    let idp = Idp::http().await;
    let dir = tempfile::tempdir().unwrap();
    let good = {
        let mut env = base_env(&idp, dir.path());
        env.insert("MSEC_JWKS_URL", format!("{}/jwks", idp.issuer));
        env.insert("MSEC_INSECURE_HTTP_JWKS", "1".into());
        env
    };
    let refuse = |edit: &dyn Fn(&mut HashMap<&'static str, String>), expect: &str| {
        let mut env = good.clone();
        edit(&mut env);
        let (ok, stderr) = Service::refuse(&env);
        assert!(!ok, "started although {expect}");
        assert!(stderr.contains(expect), "stderr should mention {expect:?}: {stderr}");
    };
    refuse(&|e| drop(e.remove("MSEC_ISSUER")), "MSEC_ISSUER is required");
    refuse(&|e| drop(e.remove("MSEC_AUDIENCE")), "MSEC_AUDIENCE is required");
    refuse(&|e| drop(e.remove("MSEC_JWKS_URL")), "MSEC_OIDC_DISCOVERY");
    refuse(
        &|e| drop(e.remove("MSEC_INSECURE_HTTP_JWKS")),
        "MSEC_INSECURE_HTTP_JWKS=1",
    );
    refuse(
        &|e| drop(e.insert("MSEC_JWKS_URL", "http://idp.example.com/jwks".into())),
        "is not an https:// URL",
    );
    refuse(
        &|e| drop(e.insert("MSEC_RATE_PER_MINUTE", "0".into())),
        "MSEC_RATE_PER_MINUTE",
    );
    refuse(&|e| drop(e.insert("MSEC_TLS_CERT", "x.pem".into())), "MSEC_TLS_KEY");
    refuse(
        &|e| drop(e.insert("MSEC_API_KEYS", dir.path().join("keys.toml").display().to_string())),
        "MSEC_API_KEYS",
    );
    // A keyring whose master key is missing is not silently replaced.
    std::fs::create_dir_all(dir.path().join("orphan")).unwrap();
    std::fs::write(dir.path().join("orphan/keyring.json"), "{}").unwrap();
    refuse(
        &|e| {
            drop(e.insert(
                "MSEC_KEYRING",
                dir.path().join("orphan/keyring.json").display().to_string(),
            ));
        },
        "master key",
    );
}
