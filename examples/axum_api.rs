//! `axum_api` — an "orders" REST service with the whole msec stack, configured only by environment variables.
//!
//! Point it at your own identity provider and run it:
//!
//! ```text
//! MSEC_ISSUER=https://id.example.com/realms/shop MSEC_OIDC_DISCOVERY=1 MSEC_AUDIENCE=orders-api \
//!     cargo run --example axum_api
//! curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:3000/v1/hello
//! ```
//!
//! # Environment
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `MSEC_ADDR` | listen address | `127.0.0.1:3000` |
//! | `MSEC_ISSUER` | the token issuer (`iss`) | required |
//! | `MSEC_JWKS_URL` | where the issuer's keys are (JWKS, HTTPS) | one of these two |
//! | `MSEC_OIDC_DISCOVERY` | `1`: find the keys through `{issuer}/.well-known/openid-configuration` (that URL, or the RFC 8414 one, is accepted too) | |
//! | `MSEC_AUDIENCE` | the audience (`aud`) tokens must carry | required |
//! | `MSEC_JWKS_CA` | PEM file of extra roots trusted when fetching keys | system roots only |
//! | `MSEC_INSECURE_HTTP_JWKS` | `1`: allow plain-HTTP key fetching, loopback addresses only (local IdPs, tests) | off |
//! | `MSEC_AUDIT_DIR` | the hash-chained audit log; `checkpoint.pub` (the checkpoint public key) is written there | `msec-data/audit` |
//! | `MSEC_AUDIT_SIGNING_KEY` | Ed25519 PKCS#8 PEM signing the checkpoints (`msec audit keygen`); created (0600) if absent | `$MSEC_AUDIT_DIR/checkpoint.key` |
//! | `MSEC_KEYRING` | the msec-crypto keyring file; a fresh one is made if absent | `msec-data/keyring.json` |
//! | `MSEC_KEYRING_MASTER_KEY` | the master key file that wraps the keyring; created (0600) if absent | `$MSEC_KEYRING.master-key` |
//! | `MSEC_ORDERS_FILE` | JSON-lines file the orders are kept in (the email column encrypted) | memory only |
//! | `MSEC_REDIS_URL` | share the per-principal quota between replicas through Redis | local quotas |
//! | `MSEC_RATE_PER_MINUTE` | per-principal quota on `/v1/*` | `600` |
//! | `MSEC_IP_RATE_PER_MINUTE` | per-client-IP flood guard, checked before token verification | 10 × the above |
//! | `MSEC_TLS_CERT` / `MSEC_TLS_KEY` | serve HTTPS with this certificate chain and key (PEM, reloaded when they change) | plain HTTP |
//! | `MSEC_TLS_CLIENT_CA` | mTLS: verify client certificates against this CA (PEM); `/v1/*` then needs one | no client certificates |
//! | `MSEC_API_KEYS` | file of API key records, one JSON object per line as `msec apikey new` prints them (re-read when it changes); API keys (`x-api-key`, or `Authorization: Bearer` with prefix `MSEC_API_KEY_PREFIXES`) are then accepted alongside JWTs | off |
//! | `MSEC_API_KEY_PREFIXES` | comma-separated key prefixes accepted | `sk_live` |
//! | `MSEC_API_KEY_PEPPER` | the pepper file the records were made with (`msec apikey new --pepper-file`) | none (SHA-256 records) |
//! | `RUST_LOG` | log filter (logs go to stderr); `info,msec=debug` adds each layer's span (`msec.authn`, `msec.authz`, ...) and decision events | `info` |
//!
//! # Routes
//!
//! | route | who | answer |
//! |---|---|---|
//! | `GET /healthz` | anyone | 200 `ok` (the process is up) |
//! | `GET /readyz` | anyone | 200 / 503 with `{"keys", "redis", "audit"}`: token keys loaded, Redis reachable, audit writer alive |
//! | `GET /metrics` | loopback clients | Prometheus text (`msec_*` counters, gauges, histograms) |
//! | `GET /bare/hello` | anyone | 200, **no msec layer at all** — the baseline for overhead measurements |
//! | `GET /v1/hello` | scope `hello:read` | 200 `{"hello": <subject>, "peer": <TLS peer or null>}` |
//! | `POST /v1/orders` | scope `orders:write` | 201 with `Location`; body `{"item": 1–64 chars, "quantity": 1–1000}`, nothing else |
//! | `GET /v1/orders/{id}` | scope `orders:read` | 200 with the customer email masked (`a***@example.org`) |
//!
//! Every other request goes through the full stack too, so it is audited and denied by default.
//!
//! # The stack, outermost first (every request but the four public routes above)
//!
//! | layer | crate | refuses with |
//! |---|---|---|
//! | TLS / mTLS serve loop (optional) | msec-tls | handshake failure |
//! | `AuditLayer` — one hash-chained record per request | msec-audit | — |
//! | `SecureHeadersLayer` | msec-core | — |
//! | `FirewallLayer` — encoded slashes, dot segments, control characters... | msec-validate | 400 |
//! | `ClientIpLayer` — the client address (trusted proxies: none) | msec-ratelimit | — |
//! | `RateLimitLayer` per client IP | msec-ratelimit | 429 |
//! | `AuthnLayer` — JWT bearer tokens (and API keys with `MSEC_API_KEYS`) | msec-authn | 401 / 400 / 503 |
//! | `AuthorizeLayer` — the route policy (scopes, mTLS peer) | msec-core | 401 / 403 |
//! | `RateLimitLayer` per principal | msec-ratelimit | 429 |
//! | `JsonSchemaLayer` — JSON guard + schema on `POST /v1/orders` | msec-validate | 400 / 413 / 415 / 422 |
//! | handler: the email stored with `Encrypted<String>` bound to its order | msec-crypto | — |
//!
//! # Keys this service keeps
//!
//! - **Keyring master key.** The keyring file holds the data keys wrapped by a master key; the master key is a
//!   local key file (`LocalKms`, the format `msec keyring --master-key` uses) at `MSEC_KEYRING_MASTER_KEY`. On
//!   first start both are created (the master key with mode 0600); later starts load them. If the keyring
//!   exists but its master key does not, the service refuses to start (it would not be able to decrypt).
//!   Anyone who holds both files can decrypt the orders' emails: in production mount the master key from a
//!   secret store (or implement `msec::crypto::Kms` over your cloud KMS) and keep it away from the data. Rotate
//!   with `msec keyring rotate / promote / rewrap --keyring .. --master-key ..`, then restart.
//! - **Audit checkpoint key.** Checkpoints in the log are signed with an Ed25519 key (`MSEC_AUDIT_SIGNING_KEY`,
//!   created if absent); its public half is written to `$MSEC_AUDIT_DIR/checkpoint.pub` on every start. Verify:
//!   `msec audit verify $MSEC_AUDIT_DIR --public-key $MSEC_AUDIT_DIR/checkpoint.pub`. Whoever can both rewrite
//!   the log and read the signing key can forge it: in production keep the key outside the log directory and
//!   copy `checkpoint.pub` and `audit.checkpoint` (the anchor) somewhere the service cannot write.
//!
//! SIGINT / SIGTERM: stop accepting, finish the requests in flight, write their audit records, seal the log
//! with a final checkpoint, exit 0.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use msec::audit::{AuditLayer, AuditLog, CheckpointSigner, Detectors, FileSink, Level, RequestAudit};
use msec::authn::apikey::{ApiKeyAuthenticator, KeyHasher, MemoryApiKeyStore};
use msec::authn::jwt::{Issuer, JwtValidator};
use msec::authn::keys::HttpConfig;
use msec::authn::{AuthnChain, AuthnLayer, ConfigError, JwtAuthenticator};
use msec::core::secret::SecretBytes;
use msec::crypto::{Algorithm, Context, Encrypted, Keyring, LocalKms, mask};
use msec::prelude::*;
use msec::ratelimit::redis::RedisBackendBuilder;
use msec::ratelimit::{
    ClientIpLayer, FailurePolicy, KeySpec, Quota, RateLimitLayer, RateLimiter, Rule, TrustedProxies,
};
use msec::tls::rustls::pki_types::CertificateDer;
use msec::tls::rustls::pki_types::pem::PemObject as _;
use msec::tls::{CertSource, ClientAuth, ReloadingCert, ServerTls, Trust, Watcher};
use msec::validate::guard::JsonLimits;
use msec::validate::{FirewallLayer, JsonSchemaLayer, SchemaSet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tower::ServiceBuilder;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MINUTE: Duration = Duration::from_secs(60);

/// The body `POST /v1/orders` accepts (checked against `ORDER_SCHEMA` before the handler runs).
const ORDER_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["item", "quantity"],
  "properties": {
    "item": {"type": "string", "minLength": 1, "maxLength": 64},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 1000}
  },
  "additionalProperties": false
}"#;

/// The most orders the in-memory store keeps (memory stays bounded whatever clients send).
const MAX_ORDERS: usize = 100_000;

fn main() -> ExitCode {
    // Logs to stderr; `RUST_LOG=debug` shows every msec decision.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("axum_api: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_api: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    // ---------------------------------------------------------------------------------------------------------
    // Metrics first: msec layers register their counters when they are built.
    // ---------------------------------------------------------------------------------------------------------
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });

    let cfg = Config::from_env()?;

    // ---------------------------------------------------------------------------------------------------------
    // Authentication: JWT access tokens from MSEC_ISSUER, keys fetched over HTTPS (JWKS or OIDC discovery).
    // ---------------------------------------------------------------------------------------------------------
    let mut http = HttpConfig::new();
    if cfg.insecure_http_jwks {
        http = http.danger_allow_http_for_loopback();
    }
    if let Some(ca) = &cfg.jwks_ca {
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("MSEC_JWKS_CA {}: {e}", ca.display()))? {
            http = http.add_root_certificate(cert.map_err(|e| format!("MSEC_JWKS_CA {}: {e}", ca.display()))?);
        }
    }
    let issuer = Issuer::new(&cfg.issuer).audience(&cfg.audience);
    let issuer = match &cfg.keys {
        KeySource::JwksUrl(url) => issuer.jwks_url(url),
        KeySource::OidcDiscovery => issuer.oidc_discovery(),
        KeySource::Rfc8414Discovery => issuer.rfc8414_discovery(),
    };
    let validator = JwtValidator::builder()
        .issuer(issuer)
        .http(http)
        .build()
        .map_err(|e| match e {
            ConfigError::InsecureUrl(url) => {
                format!("{url} is not an https:// URL (for an IdP on this machine, set MSEC_INSECURE_HTTP_JWKS=1)")
            }
            other => format!("token validation: {other}"),
        })?;
    // Start at once and fetch the keys in the background: /readyz says 503 until they are in, and requests
    // that arrive first wait for the same (single-flight) fetch. The refresh task keeps an idle service's keys
    // fresh and retries an unreachable IdP.
    let first_fetch = validator.clone();
    tokio::spawn(async move {
        if let Err(e) = first_fetch.fetch_keys().await {
            tracing::warn!(error = %e, "token keys not loaded yet; /readyz answers 503 until they are");
        }
    });
    let _refresh = validator.spawn_refresh_task(Duration::from_secs(30));
    let authn = match &cfg.api_keys {
        None => AuthnLayer::jwt(validator.clone()),
        Some(file) => AuthnLayer::new(api_key_authenticator(&cfg, &validator, file)?),
    }
    .realm("orders");

    // ---------------------------------------------------------------------------------------------------------
    // Authorization: which scope each route needs. Deny by default: anything not listed is refused.
    // ---------------------------------------------------------------------------------------------------------
    let mut policy = Policy::builder()
        .allow("say hello", ["GET /v1/hello"], Requirement::scope("hello:read"))
        .allow("create orders", ["POST /v1/orders"], Requirement::scope("orders:write"))
        .allow(
            "read orders",
            ["GET /v1/orders/{id}"],
            Requirement::scope("orders:read"),
        );
    if cfg.tls_client_ca.is_some() {
        // With mTLS the handshake asks for a client certificate without requiring one (so health probes work
        // without); the API requires it here.
        policy = policy.deny(
            "client certificate required",
            ["/v1/{*rest}"],
            Requirement::custom("no_client_certificate", |facts| facts.peer.is_none()),
        );
    }
    let policy = policy.build()?;

    // ---------------------------------------------------------------------------------------------------------
    // Rate limits: a generous per-IP guard before token verification, the real quota per principal after it.
    // ---------------------------------------------------------------------------------------------------------
    let per_ip = RateLimiter::builder()
        .rule(Rule::new(
            "per-ip",
            Quota::try_new(cfg.ip_rate_per_minute.get(), MINUTE)?,
        ))
        .build()?;
    let mut per_principal = RateLimiter::builder()
        .rule(Rule::new("per-principal", Quota::try_new(cfg.rate_per_minute.get(), MINUTE)?).key(KeySpec::subject()));
    if let Some(url) = &cfg.redis_url {
        // Shared by every replica; if Redis does not answer in time, each replica limits on its own meanwhile.
        per_principal = per_principal.redis(
            RedisBackendBuilder::new(url).prefix("msec-orders"),
            FailurePolicy::FallbackLocal,
        );
    }
    let per_principal = per_principal.build()?;

    // ---------------------------------------------------------------------------------------------------------
    // Input validation: the request firewall, and the JSON guard + schema of POST /v1/orders.
    // ---------------------------------------------------------------------------------------------------------
    let schemas = SchemaSet::builder()
        .route("POST /v1/orders", serde_json::from_str(ORDER_SCHEMA)?)
        .build()?;
    let validation = JsonSchemaLayer::new(schemas).limits(JsonLimits::default().max_body_bytes(16 * 1024).max_depth(8));

    // ---------------------------------------------------------------------------------------------------------
    // Audit: one record per request in a hash-chained, signed log (checkpoint public key written beside it).
    // ---------------------------------------------------------------------------------------------------------
    std::fs::create_dir_all(&cfg.audit_dir).map_err(|e| format!("MSEC_AUDIT_DIR {}: {e}", cfg.audit_dir.display()))?;
    let signer = checkpoint_signer(&cfg.audit_signing_key, &cfg.audit_dir)?;
    let audit_log = AuditLog::builder()
        .signer(signer)
        .detectors(Detectors::default())
        .on_alert(|a: &msec::audit::Alert| {
            tracing::warn!(detector = a.detector.as_str(), key = %a.key, "audit alert");
        })
        .start(FileSink::new(&cfg.audit_dir)?)?;
    let audit = AuditLayer::builder(audit_log.clone())
        // The order body (item and quantity) goes into the record too, redacted by the log's redactor.
        .rule("POST /v1/orders", Level::Request)
        .build()?;

    // ---------------------------------------------------------------------------------------------------------
    // Field encryption: the keyring (and its master key), and the orders store.
    // ---------------------------------------------------------------------------------------------------------
    let keyring = open_keyring(&cfg.keyring, &cfg.keyring_master_key).await?;
    let orders = OrderStore::open(cfg.orders_file.as_deref()).await?;
    let app = AppState {
        keyring: Arc::new(keyring),
        orders: Arc::new(orders),
    };

    // ---------------------------------------------------------------------------------------------------------
    // Routes. The /v1 API sits behind the whole stack; so does every path not listed as public below.
    // ---------------------------------------------------------------------------------------------------------
    let api = Router::new()
        .route("/v1/hello", get(hello))
        .route("/v1/orders", post(create_order))
        .route("/v1/orders/{id}", get(get_order))
        .with_state(app);
    let secured = ServiceBuilder::new()
        .layer(audit.clone())
        .layer(SecureHeadersLayer::api())
        .layer(FirewallLayer::strict())
        .layer(ClientIpLayer::new(TrustedProxies::none())) // behind a load balancer: its CIDRs here
        .layer(RateLimitLayer::new(per_ip))
        .layer(authn)
        .layer(AuthorizeLayer::new(policy).realm("orders"))
        .layer(RateLimitLayer::new(per_principal.clone()))
        .layer(validation)
        .layer(audit.capture_layer())
        .service(api);

    let health = Health {
        prometheus,
        validator,
        limiter: per_principal,
        redis: cfg.redis_url.is_some(),
        audit: audit_log.clone(),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/bare/hello", get(bare_hello))
        .with_state(health)
        .fallback_service(secured);

    // ---------------------------------------------------------------------------------------------------------
    // Serve: HTTPS (and mTLS) through msec-tls's serve loop, or plain HTTP; stop gracefully on SIGINT/SIGTERM.
    // ---------------------------------------------------------------------------------------------------------
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| format!("MSEC_ADDR {}: {e}", cfg.addr))?;
    let addr = listener.local_addr()?;
    match server_tls(&cfg)? {
        Some((tls, _watcher)) => {
            println!("axum_api listening on https://{addr}");
            msec::tls::serve(listener, tls, app)
                .shutdown_timeout(Duration::from_secs(30))
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
        None => {
            println!("axum_api listening on http://{addr}");
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
    }
    // Every request has finished and queued its record: write them, seal the log with a final checkpoint.
    audit_log.shutdown().await?;
    tracing::info!("audit log sealed; bye");
    Ok(())
}

// =============================================================================================================
// Configuration
// =============================================================================================================

/// Where the token keys come from.
enum KeySource {
    JwksUrl(String),
    OidcDiscovery,
    Rfc8414Discovery,
}

/// Everything read from the environment (see the table at the top).
struct Config {
    addr: SocketAddr,
    issuer: String,
    keys: KeySource,
    audience: String,
    jwks_ca: Option<PathBuf>,
    insecure_http_jwks: bool,
    audit_dir: PathBuf,
    audit_signing_key: PathBuf,
    keyring: PathBuf,
    keyring_master_key: PathBuf,
    orders_file: Option<PathBuf>,
    redis_url: Option<String>,
    rate_per_minute: NonZeroU32,
    ip_rate_per_minute: NonZeroU32,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    api_keys: Option<PathBuf>,
    api_key_prefixes: Vec<String>,
    api_key_pepper: Option<PathBuf>,
}

/// An environment variable, unset when empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str) -> Result<String, String> {
    var(name).ok_or_else(|| format!("{name} is required (see the table at the top of examples/axum_api.rs)"))
}

fn flag(name: &str) -> Result<bool, String> {
    match var(name).as_deref() {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(format!("{name}={other:?}: expected 1 or 0")),
    }
}

fn per_minute(name: &str, default: NonZeroU32) -> Result<NonZeroU32, String> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?}: expected a positive number of requests per minute")),
    }
}

impl Config {
    fn from_env() -> Result<Self, String> {
        let addr = var("MSEC_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
        let addr = addr
            .parse()
            .map_err(|_| format!("MSEC_ADDR={addr:?}: expected an address like 127.0.0.1:3000"))?;
        let issuer = required("MSEC_ISSUER")?;
        let keys = match (var("MSEC_JWKS_URL"), var("MSEC_OIDC_DISCOVERY")) {
            (Some(url), None) => KeySource::JwksUrl(url),
            (None, Some(d)) => discovery(&issuer, &d)?,
            (Some(_), Some(_)) => return Err("set MSEC_JWKS_URL or MSEC_OIDC_DISCOVERY, not both".into()),
            (None, None) => return Err("set MSEC_JWKS_URL, or MSEC_OIDC_DISCOVERY=1 to discover the keys".into()),
        };
        let audit_dir = PathBuf::from(var("MSEC_AUDIT_DIR").unwrap_or_else(|| "msec-data/audit".into()));
        let keyring = PathBuf::from(var("MSEC_KEYRING").unwrap_or_else(|| "msec-data/keyring.json".into()));
        let rate_per_minute = per_minute("MSEC_RATE_PER_MINUTE", NonZeroU32::new(600).unwrap_or(NonZeroU32::MIN))?;
        let tls_cert = var("MSEC_TLS_CERT").map(PathBuf::from);
        let tls_key = var("MSEC_TLS_KEY").map(PathBuf::from);
        let tls_client_ca = var("MSEC_TLS_CLIENT_CA").map(PathBuf::from);
        if tls_cert.is_some() != tls_key.is_some() {
            return Err("set both MSEC_TLS_CERT and MSEC_TLS_KEY, or neither".into());
        }
        if tls_client_ca.is_some() && tls_cert.is_none() {
            return Err("MSEC_TLS_CLIENT_CA needs MSEC_TLS_CERT and MSEC_TLS_KEY".into());
        }
        Ok(Self {
            addr,
            keys,
            audience: required("MSEC_AUDIENCE")?,
            jwks_ca: var("MSEC_JWKS_CA").map(PathBuf::from),
            insecure_http_jwks: flag("MSEC_INSECURE_HTTP_JWKS")?,
            audit_signing_key: var("MSEC_AUDIT_SIGNING_KEY")
                .map_or_else(|| audit_dir.join("checkpoint.key"), PathBuf::from),
            audit_dir,
            keyring_master_key: var("MSEC_KEYRING_MASTER_KEY").map_or_else(
                || PathBuf::from(format!("{}.master-key", keyring.display())),
                PathBuf::from,
            ),
            keyring,
            orders_file: var("MSEC_ORDERS_FILE").map(PathBuf::from),
            redis_url: var("MSEC_REDIS_URL"),
            rate_per_minute,
            ip_rate_per_minute: per_minute(
                "MSEC_IP_RATE_PER_MINUTE",
                rate_per_minute.saturating_mul(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN)),
            )?,
            tls_cert,
            tls_key,
            tls_client_ca,
            api_keys: var("MSEC_API_KEYS").map(PathBuf::from),
            api_key_prefixes: var("MSEC_API_KEY_PREFIXES").map_or_else(
                || vec!["sk_live".to_owned()],
                |v| {
                    v.split(',')
                        .map(|p| p.trim().to_owned())
                        .filter(|p| !p.is_empty())
                        .collect()
                },
            ),
            api_key_pepper: var("MSEC_API_KEY_PEPPER").map(PathBuf::from),
            issuer,
        })
    }
}

/// `MSEC_OIDC_DISCOVERY`: `1`, or the issuer's OIDC (or RFC 8414) metadata URL.
fn discovery(issuer: &str, value: &str) -> Result<KeySource, String> {
    let base = issuer.trim_end_matches('/');
    if matches!(value, "1" | "true") || value == format!("{base}/.well-known/openid-configuration") {
        return Ok(KeySource::OidcDiscovery);
    }
    // RFC 8414: https://host/.well-known/oauth-authorization-server/{issuer path}
    if let Some((scheme_host, path)) = base.split_once("://").map(|(s, rest)| {
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        (format!("{s}://{host}"), path)
    }) {
        let rfc8414 = format!("{scheme_host}/.well-known/oauth-authorization-server");
        let rfc8414 = if path.is_empty() {
            rfc8414
        } else {
            format!("{rfc8414}/{path}")
        };
        if value == rfc8414 {
            return Ok(KeySource::Rfc8414Discovery);
        }
    }
    Err(format!(
        "MSEC_OIDC_DISCOVERY={value:?}: use 1 (discovery at {base}/.well-known/openid-configuration), \
         or set MSEC_JWKS_URL to the issuer's JWKS URL"
    ))
}

// =============================================================================================================
// API keys (MSEC_API_KEYS)
// =============================================================================================================

/// The authenticator chain the `AuthnLayer` gets when `MSEC_API_KEYS` is set: bearer JWTs first, then API keys
/// (`x-api-key`, or a bearer value starting with an accepted prefix) checked against the records in the file.
///
/// The file holds one record per line as `msec apikey new` prints them (digests only, never keys):
///
/// ```text
/// msec apikey new --prefix sk_live --scopes orders:read,orders:write --subject billing-bot --expires-in 90d \
///     >> api-keys.jsonl
/// ```
///
/// Records made with `--pepper-file` need the same file in `MSEC_API_KEY_PEPPER`; a mismatch refuses to start.
/// The file is re-read every 2 s when it changes (`MemoryApiKeyStore::watch_file`): keys appended with `msec
/// apikey new >> file` start working and keys marked with `msec apikey revoke --file` stop, without a restart; a
/// file that does not parse is logged and the previous records stay. (A PostgreSQL store, `PgApiKeyStore`,
/// serves changes at once to every replica.) API-key principals meet the same policy (give their records the scopes
/// above) and the per-principal quota (keyed by subject).
fn api_key_authenticator(cfg: &Config, validator: &JwtValidator, file: &Path) -> Result<AuthnChain, BoxError> {
    let store = MemoryApiKeyStore::from_file(file).map_err(|e| format!("MSEC_API_KEYS: {e}"))?;
    let hasher = match &cfg.api_key_pepper {
        None => KeyHasher::sha256(),
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("MSEC_API_KEY_PEPPER {}: {e}", path.display()))?;
            KeyHasher::hmac_sha256(&SecretBytes::new(bytes)).map_err(|e| format!("MSEC_API_KEY_PEPPER: {e}"))?
        }
    };
    if let Some(r) = store.records().iter().find(|r| r.digest_alg != hasher.alg()) {
        return Err(format!(
            "MSEC_API_KEYS {}: key {} was made with {} but this service uses {} (set MSEC_API_KEY_PEPPER to the \
             pepper file the keys were made with, or unset it)",
            file.display(),
            r.key_id,
            r.digest_alg.as_str(),
            hasher.alg().as_str()
        )
        .into());
    }
    let keys = ApiKeyAuthenticator::new(store.clone(), hasher)
        .prefixes(cfg.api_key_prefixes.iter().map(String::as_str))
        .map_err(|e| format!("MSEC_API_KEY_PREFIXES: {e}"))?;
    tracing::info!(keys = store.len(), file = %file.display(), "API keys loaded");
    // Runs for the life of the process (the handle is not kept to abort it).
    drop(store.watch_file(file, Duration::from_secs(2)));
    Ok(AuthnChain::new()
        .with(JwtAuthenticator::new(validator.clone()))
        .with(keys))
}

// =============================================================================================================
// TLS
// =============================================================================================================

/// The TLS configuration from MSEC_TLS_*, and the watcher that reloads the certificate when its files change.
fn server_tls(cfg: &Config) -> Result<Option<(ServerTls, msec::tls::WatcherHandle)>, BoxError> {
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let cert = ReloadingCert::from_pem_files(cert, key)?;
    let watcher = Watcher::new(Duration::from_secs(30)).watch(cert.clone()).spawn();
    let client_auth = match &cfg.tls_client_ca {
        // Verified when presented; the policy requires one on /v1/*.
        Some(ca) => ClientAuth::optional(Trust::roots().pem_file(ca).build()?),
        None => ClientAuth::none(),
    };
    let tls = ServerTls::builder()
        .client_auth(client_auth)
        .certificate(CertSource::reloading(&cert))
        .build()?;
    Ok(Some((tls, watcher)))
}

// =============================================================================================================
// Keys kept on disk: the keyring with its master key, and the audit checkpoint signing key
// =============================================================================================================

/// Loads the keyring file, or creates it (and its master key) when absent.
async fn open_keyring(path: &Path, master_path: &Path) -> Result<Keyring, BoxError> {
    let kms = if master_path.exists() {
        LocalKms::load(master_path)?
    } else if path.exists() {
        return Err(format!(
            "the keyring {} exists but its master key {} does not: set MSEC_KEYRING_MASTER_KEY",
            path.display(),
            master_path.display()
        )
        .into());
    } else {
        create_parent(master_path)?;
        let kms = LocalKms::generate()?;
        kms.save_new(master_path)?; // mode 0600, never overwrites
        tracing::info!(path = %master_path.display(), "created the keyring master key");
        kms
    };
    if path.exists() {
        let json = std::fs::read_to_string(path).map_err(|e| format!("MSEC_KEYRING {}: {e}", path.display()))?;
        return Ok(Keyring::from_json(&json, &kms).await?);
    }
    let keyring = Keyring::generate(Algorithm::Aes256Gcm)?;
    write_new_private_file(path, keyring.to_json(&kms).await?.as_bytes())?;
    tracing::info!(path = %path.display(), "created a new keyring");
    Ok(keyring)
}

/// Loads the checkpoint signing key, or creates it when absent; writes its public key into the audit directory.
fn checkpoint_signer(key_path: &Path, audit_dir: &Path) -> Result<CheckpointSigner, BoxError> {
    let signer = if key_path.exists() {
        let pem = std::fs::read_to_string(key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
        CheckpointSigner::from_pkcs8_pem(&pem)?
    } else {
        let pem = CheckpointSigner::generate_pkcs8_pem()?;
        write_new_private_file(key_path, pem.expose_secret().as_bytes())?;
        CheckpointSigner::from_pkcs8_pem(pem.expose_secret())?
    };
    std::fs::write(audit_dir.join("checkpoint.pub"), signer.public_key().to_pem())?;
    Ok(signer)
}

fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

/// Creates `path` readable by its owner only (0600 on Unix); fails if it exists.
fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<(), BoxError> {
    use std::io::Write as _;
    create_parent(path)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

// =============================================================================================================
// The orders store: a map, optionally persisted as JSON lines. The customer email is only ever stored encrypted.
// =============================================================================================================

/// One stored order. `customer_email` is msec-crypto ciphertext text (`msec:v1:<key id>:...`) bound to the
/// order id, so a value copied into another order does not decrypt.
#[derive(Clone, Serialize, Deserialize)]
struct StoredOrder {
    id: String,
    item: String,
    quantity: u32,
    customer_email: String,
}

struct OrderStore {
    orders: RwLock<HashMap<String, StoredOrder>>,
    file: Option<tokio::sync::Mutex<tokio::fs::File>>,
}

impl OrderStore {
    async fn open(path: Option<&Path>) -> Result<Self, BoxError> {
        let mut orders = HashMap::new();
        let Some(path) = path else {
            return Ok(Self {
                orders: RwLock::new(orders),
                file: None,
            });
        };
        if let Ok(text) = tokio::fs::read_to_string(path).await {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let o: StoredOrder = serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
                orders.insert(o.id.clone(), o);
            }
        }
        create_parent(path)?;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| format!("MSEC_ORDERS_FILE {}: {e}", path.display()))?;
        Ok(Self {
            orders: RwLock::new(orders),
            file: Some(tokio::sync::Mutex::new(file)),
        })
    }

    fn get(&self, id: &str) -> Option<StoredOrder> {
        self.orders.read().ok()?.get(id).cloned()
    }

    async fn insert(&self, order: StoredOrder) -> Result<(), Rejection> {
        let full = || Rejection::unavailable(ReasonCode::SERVICE_UNAVAILABLE, "the order store is full");
        if self.orders.read().map_err(|_| full())?.len() >= MAX_ORDERS {
            return Err(full());
        }
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(&order).map_err(|_| internal())?;
            line.push(b'\n');
            let mut f = file.lock().await;
            f.write_all(&line).await.map_err(|_| internal())?;
            f.sync_data().await.map_err(|_| internal())?;
        }
        self.orders
            .write()
            .map_err(|_| internal())?
            .insert(order.id.clone(), order);
        Ok(())
    }
}

fn internal() -> Rejection {
    Rejection::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ReasonCode::new("internal_error"),
        "the request could not be completed",
    )
}

// =============================================================================================================
// Handlers
// =============================================================================================================

#[derive(Clone)]
struct AppState {
    keyring: Arc<Keyring>,
    orders: Arc<OrderStore>,
}

/// The encryption context of an order's email: table, column, row. Never stored; supplied again to decrypt.
fn email_context(order_id: &str) -> Context {
    Context::new("orders", "customer_email", order_id)
}

/// `GET /bare/hello`: no msec layer at all.
async fn bare_hello() -> Json<Value> {
    Json(json!({"hello": "world", "peer": null}))
}

/// `GET /v1/hello`: who is calling, by token and (with mTLS) by certificate.
async fn hello(
    Extension(principal): Extension<Arc<Principal>>,
    peer: Option<Extension<Arc<PeerIdentity>>>,
) -> Json<Value> {
    let peer = peer.map(|Extension(p)| {
        p.spiffe_id
            .as_ref()
            .map_or_else(|| p.subject.clone(), ToString::to_string)
    });
    Json(json!({"hello": principal.subject, "peer": peer}))
}

/// What `POST /v1/orders` accepts (the JSON Schema has already checked it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    item: String,
    quantity: u32,
}

/// `POST /v1/orders`: stores the order with the caller's email (the token's `email` claim, else its subject)
/// encrypted under the keyring's primary key.
async fn create_order(
    State(app): State<AppState>,
    Extension(principal): Extension<Arc<Principal>>,
    audit: Option<Extension<Arc<RequestAudit>>>,
    Json(new): Json<NewOrder>,
) -> Result<Response, Rejection> {
    let id = uuid::Uuid::new_v4().to_string();
    let email = principal
        .claim("email")
        .and_then(Value::as_str)
        .unwrap_or(&principal.subject)
        .to_owned();
    let sealed = Encrypted::seal(&app.keyring, &email, &email_context(&id)).map_err(|e| crypto_failure(&e))?;
    let order = StoredOrder {
        id: id.clone(),
        item: new.item,
        quantity: new.quantity,
        customer_email: sealed.to_text(),
    };
    let body = json!({"id": id, "item": order.item, "quantity": order.quantity});
    app.orders.insert(order).await?;
    if let Some(Extension(audit)) = audit {
        audit.set_attribute("order_id", id.clone());
    }
    let location = HeaderValue::try_from(format!("/v1/orders/{id}")).map_err(|_| internal())?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response())
}

/// `GET /v1/orders/{id}`: the order, with the customer email decrypted and masked.
async fn get_order(
    State(app): State<AppState>,
    UrlPath(id): UrlPath<String>,
    audit: Option<Extension<Arc<RequestAudit>>>,
) -> Result<Json<Value>, Rejection> {
    let order = app.orders.get(&id).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            ReasonCode::new("order_not_found"),
            "no such order",
        )
    })?;
    if let Some(Extension(audit)) = audit {
        audit.set_attribute("order_id", id.clone());
    }
    let email = Encrypted::<String>::from_text(&order.customer_email)
        .and_then(|e| e.open(&app.keyring, &email_context(&id)))
        .map_err(|e| crypto_failure(&e))?;
    Ok(Json(json!({
        "id": order.id,
        "item": order.item,
        "quantity": order.quantity,
        "customer_email": mask::email(&email),
    })))
}

/// A decryption or encryption failure: a stable code for the client, the details in the logs.
fn crypto_failure(e: &msec::crypto::Error) -> Rejection {
    tracing::error!(error = %e, "field encryption failed");
    Rejection::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        e.reason_code(),
        "the stored order could not be read",
    )
}

// =============================================================================================================
// Health, readiness and metrics
// =============================================================================================================

#[derive(Clone)]
struct Health {
    prometheus: PrometheusHandle,
    validator: JwtValidator,
    limiter: RateLimiter,
    redis: bool,
    audit: AuditLog,
}

/// `GET /readyz`: 200 when the token keys are loaded, Redis answers (when configured) and the audit writer is
/// alive; 503 otherwise.
async fn readyz(State(h): State<Health>) -> (StatusCode, Json<Value>) {
    let keys = h.validator.key_status().iter().all(|s| s.available);
    let redis = if h.redis {
        Some(h.limiter.ping_backend().await.is_ok())
    } else {
        None
    };
    let audit = h.audit.is_healthy();
    let ready = keys && audit && redis.unwrap_or(true);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "keys": keys, "redis": redis, "audit": audit})),
    )
}

/// `GET /metrics`: Prometheus text, to loopback clients only (a scraper on the same host or pod).
async fn metrics(State(h): State<Health>, client: Option<ClientAddr>) -> Response {
    match client {
        Some(c) if c.ip().is_loopback() => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.prometheus.render(),
        )
            .into_response(),
        _ => IntoResponse::into_response(Rejection::forbidden(
            ReasonCode::CLIENT_IP_NOT_ALLOWED,
            "metrics are served to loopback clients only",
        )),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing requests in flight, then sealing the audit log");
}
