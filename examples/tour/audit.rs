//! Audit (msec-audit): every request of a small service lands in a hash-chained, signed JSON-lines log —
//! decisions, actor, outcome, redacted bodies — a brute-force burst raises an alert in the same chain, the log
//! verifies, and a tampered or truncated copy is caught at the right record.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::routing::{get, post};
use axum::{Json, Router};
use msec::audit::detect::Alert;
use msec::audit::sink::file::{anchor_path, log_files};
use msec::audit::{AuditLayer, AuditLog, CheckpointSigner, Detectors, FileSink, Level, Verifier};
use msec::prelude::*;
use tower::ServiceBuilder;

use crate::{BoxError, Tour};

const S: &str = "audit";

/// The tour's stand-in for authentication (as in the authz section): `x-demo-principal: <sub> <scopes>`.
/// `x-demo-login: <sub>` is a failed login that names the subject, as a real authn layer records it.
async fn demo_authn(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let login = req
        .headers()
        .get("x-demo-login")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(sub) = login {
        msec::core::context::record_with(
            req.extensions(),
            "authn",
            Outcome::Deny,
            ReasonCode::new("invalid_credentials"),
            |d| {
                d.detail("subject", sub);
            },
        );
        let r = Rejection::invalid_token(ReasonCode::new("invalid_credentials"), "the credentials are invalid");
        return r
            .into_response::<axum::body::Body>(req.headers())
            .map(axum::body::Body::new);
    }
    let principal = req
        .headers()
        .get("x-demo-principal")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(sub, scopes)| Arc::new(Principal::builder(sub).scopes(scopes.split(',')).build()));
    if let Some(p) = principal {
        if let Some(ctx) = SecurityContext::get(req.extensions()) {
            ctx.set_principal(p.clone());
        }
        msec::core::context::record(
            req.extensions(),
            Decision::new("authn", Outcome::Allow, ReasonCode::new("authenticated")),
        );
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

pub(crate) async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("msec-tour-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let signer = CheckpointSigner::ephemeral()?;
    let public = signer.public_key();
    let alerts: Arc<Mutex<Vec<Alert>>> = Arc::default();
    let seen = alerts.clone();
    let log = AuditLog::builder()
        .signer(signer)
        .detectors(Detectors::default())
        // Here a service would ban the client (msec-ratelimit's penalty box); the tour keeps the alerts.
        .on_alert(move |a: &Alert| seen.lock().unwrap().push(a.clone()))
        .start(FileSink::new(&dir)?)?;
    let audit = AuditLayer::builder(log.clone())
        .rule("GET /healthz", Level::None)
        .rule("POST /v1/payments", Level::RequestResponse)
        .build()?;
    let policy = Policy::builder()
        .allow("health", ["GET /healthz"], Requirement::Public)
        .allow("login", ["POST /login"], Requirement::Public)
        .allow(
            "read orders",
            ["GET /v1/orders/{id}"],
            Requirement::scope("orders:read"),
        )
        .allow("pay", ["POST /v1/payments"], Requirement::scope("pay"))
        .build()?;
    let capture = audit.capture_layer();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", post(|| async { "welcome" }))
        .route(
            "/v1/orders/{id}",
            get(|p: Principal| async move { format!("order for {}", p.subject) }),
        )
        .route(
            "/v1/payments",
            post(|Json(v): Json<serde_json::Value>| async move { Json(serde_json::json!({"paid": v["amount"]})) }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(audit)
                .layer(axum::middleware::from_fn(demo_authn))
                .layer(AuthorizeLayer::new(policy))
                .layer(capture),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await });

    let reader = [("x-demo-principal", "alice orders:read")];
    let a = tour.send(crate::get(&format!("{base}/healthz"), &[])).await?;
    tour.record(S, "GET /healthz (level None: not audited)", &a, (200, "-"));
    let a = tour.send(crate::get(&format!("{base}/v1/orders/7"), &reader)).await?;
    tour.record(S, "GET /v1/orders/7 as alice", &a, (200, "-"));
    let a = tour
        .send(crate::get(
            &format!("{base}/v1/orders/7"),
            &[("authorization", "Bearer s3cr3t")],
        ))
        .await?;
    tour.record(
        S,
        "GET /v1/orders/7, token never logged",
        &a,
        (401, "missing_credentials"),
    );
    let pay = [("x-demo-principal", "bob pay")];
    let a = tour
        .send(crate::post_json(
            &format!("{base}/v1/payments"),
            &pay,
            r#"{"amount":12,"card":{"cvv":"123"},"password":"hunter2"}"#,
        ))
        .await?;
    tour.record(S, "POST /v1/payments (body logged, redacted)", &a, (200, "-"));
    for i in 0..10 {
        let a = tour
            .send(crate::post_json(
                &format!("{base}/login"),
                &[("x-demo-login", "admin")],
                "{}",
            ))
            .await?;
        if i == 9 {
            tour.record(
                S,
                "10 failed logins as admin (brute force)",
                &a,
                (401, "invalid_credentials"),
            );
        }
    }
    log.shutdown().await?;

    println!("audit log ({}), as `msec audit tail` shows it:", dir.display());
    let files = log_files(&dir, "audit")?;
    for f in &files {
        for line in std::fs::read_to_string(f)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            println!("  {}", msec::audit::tail::render(&v));
        }
    }
    println!();
    let text = files
        .iter()
        .map(std::fs::read_to_string)
        .collect::<Result<String, _>>()?;
    let got = alerts.lock().unwrap().clone();
    let brute = got.iter().any(|a| a.detector.as_str() == "brute_force");
    tour.note(
        S,
        "alert hook called: brute_force on client 127.0.0.1",
        if brute { "alert" } else { "none" },
        "brute_force",
        brute,
    );
    let clean = !text.contains("s3cr3t") && !text.contains("hunter2") && text.contains("\"cvv\":\"[REDACTED]\"");
    tour.note(
        S,
        "log holds no token, password or CVV",
        if clean { "clean" } else { "LEAK" },
        "-",
        clean,
    );

    // Verify, with the anchor the file sink keeps beside the log.
    let anchor = std::fs::read(anchor_path(&dir, "audit"))?;
    let verifier = Verifier::new([public.clone()]).with_anchor(&anchor)?;
    match verifier.verify_files(&files) {
        Ok(r) => tour.note(
            S,
            &format!(
                "msec audit verify: {} records, {} checkpoints",
                r.records, r.checkpoints
            ),
            "OK",
            "-",
            true,
        ),
        Err(e) => tour.note(S, "msec audit verify", "FAILED", &e.to_string(), false),
    }

    // Tamper with a copy: alice's 200 becomes a 403.
    let lines: Vec<&str> = text.lines().collect();
    let target = lines
        .iter()
        .position(|l| l.contains("\"subject\":\"alice\""))
        .unwrap_or(1);
    let mut tampered: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    tampered[target] = tampered[target].replace("\"status\":200", "\"status\":403");
    let copy = tampered.join("\n") + "\n";
    let expected_seq = target as u64;
    match Verifier::new([public.clone()]).verify_bytes(copy.as_bytes()) {
        Err(e) => tour.note(
            S,
            "verify a copy with one record edited",
            &format!("FAILED at {}", e.seq.unwrap_or(0)),
            "modified",
            e.seq == Some(expected_seq),
        ),
        Ok(_) => tour.note(S, "verify a copy with one record edited", "passed", "-", false),
    }
    // Delete a record from another copy.
    let mut deleted: Vec<&str> = lines.clone();
    deleted.remove(target);
    match Verifier::new([public.clone()]).verify_bytes((deleted.join("\n") + "\n").as_bytes()) {
        Err(e) => tour.note(
            S,
            "verify a copy with one record deleted",
            &format!("FAILED at {}", e.seq.unwrap_or(0)),
            "wrong_sequence",
            e.seq == Some(expected_seq),
        ),
        Ok(_) => tour.note(S, "verify a copy with one record deleted", "passed", "-", false),
    }
    // Truncate a copy (drop the last 5 records, closing checkpoint included): the anchor catches it.
    let cut = lines[..lines.len() - 5].join("\n") + "\n";
    match Verifier::new([public])
        .with_anchor(&anchor)?
        .verify_bytes(cut.as_bytes())
    {
        Err(e) => tour.note(
            S,
            "verify a truncated copy against the anchor",
            &format!("FAILED at {}", e.seq.unwrap_or(0)),
            "truncated",
            e.seq == Some((lines.len() - 5) as u64),
        ),
        Ok(_) => tour.note(S, "verify a truncated copy against the anchor", "passed", "-", false),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
