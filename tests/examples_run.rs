//! The example services work as written: each compiled example runs to completion on loopback, exits 0, and
//! prints the answers its documentation promises (one table row per scripted call, then the audit log).
//!
//! The test builds the examples itself (`cargo build --example ..` with this test's profile and target directory), so
//! it never runs a stale binary.
#![cfg(all(
    feature = "tls",
    feature = "authn",
    feature = "ratelimit",
    feature = "validate",
    feature = "audit"
))]
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `target/<profile>/examples/<name>`, next to this test's `target/<profile>/deps/`, built (or brought up to
/// date) by the cargo running this test: `cargo test --test examples_run` alone does not build examples.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()).unwrap() {
        "debug" => "dev",
        other => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-v", "-p", "msec", "--example", name, "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir);
    // Cargo gives a test the variables of the package under test (CARGO_MANIFEST_DIR, ...). Some build scripts
    // track those (ring's does), so passing them on would make this build look dirty and rebuild half the tree.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_CRATE_")
            || key.starts_with("CARGO_BIN_")
            || matches!(
                &*key,
                "CARGO_TARGET_TMPDIR" | "CARGO_PRIMARY_PACKAGE" | "CARGO_RUSTC_CURRENT_DIR" | "OUT_DIR"
            )
        {
            build.env_remove(&*key);
        }
    }
    let build = build.status().unwrap();
    assert!(build.success(), "cargo build --example {name} failed");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Runs an example (killed after a minute), asserts it exits 0, and returns its stdout.
fn run(name: &str) -> String {
    let mut child = Command::new(example(name))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let mut err = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((out, err));
    });
    let Ok((out, err)) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        panic!("{name} did not finish within a minute");
    };
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{name} exited with {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("every answer was the expected one."), "{out}");
    assert!(!out.contains("UNEXPECTED"), "{out}");
    out
}

/// The table row that mentions `call` shows `expected` (status column, and optionally detail).
#[track_caller]
fn assert_row(out: &str, call: &str, expected: &[&str]) {
    let row = out
        .lines()
        .find(|l| l.contains(call))
        .unwrap_or_else(|| panic!("no row for {call:?} in:\n{out}"));
    for e in expected {
        assert!(row.contains(e), "row for {call:?} lacks {e:?}: {row}");
    }
}

#[test]
fn tonic_mtls_example() {
    let out = run("tonic_mtls");
    // Per-method allowlist of calling services, combined with the user's token.
    assert_row(
        &out,
        "Create ABC-1×2 for alice",
        &["Ok", "for alice (read by spiffe://example.org/ns/prod/sa/frontend)"],
    );
    assert_row(
        &out,
        "for bob",
        &["Ok", "read by spiffe://example.org/ns/batch/sa/reports"],
    );
    assert_row(&out, "Create for bob", &["PermissionDenied peer_not_allowed"]);
    assert_row(
        &out,
        "Get with alice's valid token",
        &["PermissionDenied peer_not_allowed"],
    );
    assert_row(
        &out,
        "Create without a user token",
        &["Unauthenticated missing_credentials"],
    );
    assert_row(&out, "expired an hour ago", &["Unauthenticated token_expired"]);
    assert_row(&out, "orders:read only", &["PermissionDenied insufficient_scope"]);
    // Message validation: field violations read back from google.rpc.BadRequest.
    assert_row(
        &out,
        "Create sku=\"\" quantity=0 email=not-an-email",
        &[
            "InvalidArgument validation_failed",
            "customer_email EMAIL, quantity RANGE, sku LENGTH",
        ],
    );
    // Rate limit per calling service.
    assert_row(&out, "Get ×8 more", &["Ok ×8"]);
    assert_row(&out, "call 11 this minute", &["ResourceExhausted rate_limited"]);
    assert_row(&out, "its own quota", &["Ok"]);
    // mTLS: an SVID from another CA never gets a connection.
    assert_row(&out, "SVID from another CA", &["TLS alert", "UnknownCA"]);
    // One audit record per call.
    assert_row(
        &out,
        "one record per call that reached the server (19)",
        &["19 records"],
    );
    // Audit lines read `<seq> <time>Z request <result> <method> <path> → ...`.
    let audited = out.lines().filter(|l| l.contains("Z request ")).count();
    assert_eq!(audited, 19, "{out}");
    assert_row(
        &out,
        "grpc=8 rate_limited",
        &["by spiffe://example.org/ns/batch/sa/reports"],
    );
}

#[test]
fn hyper_service_example() {
    let out = run("hyper_service");
    assert_row(&out, "GET /healthz, no token", &["200"]);
    assert_row(&out, "GET /v1/hello as alice", &["200", r#"{"hello":"alice"}"#]);
    assert_row(
        &out,
        "GET /v1/hello, no token",
        &["401 missing_credentials", r#"WWW-Authenticate: Bearer realm="hello""#],
    );
    assert_row(
        &out,
        "token without hello:read",
        &["403 insufficient_scope", r#"scope="hello:read""#],
    );
    assert_row(&out, "deny by default", &["403 no_matching_rule"]);
    assert_row(&out, "POST /v1/orders, valid body", &["201", r#""customer":"alice""#]);
    assert_row(
        &out,
        "body breaks the schema",
        &[
            "422 schema_violation",
            "/item minLength",
            "/quantity minimum",
            "(root) additionalProperties",
        ],
    );
    assert_row(&out, "text/plain", &["415 unsupported_media_type"]);
    assert_row(&out, "nested arrays", &["400 json_too_deep"]);
    assert_row(&out, "GET /v1/%2e%2e/admin", &["400 dot_segment"]);
    assert_row(&out, "×10 as carol", &["200 ×10"]);
    assert_row(&out, "as carol, request 11", &["429 rate_limited", "Retry-After: "]);
    assert_row(&out, "her own quota", &["200"]);
    assert_row(&out, "over TLS", &["200"]);
    assert_row(&out, "audit: one record per request (23)", &["23 records"]);
    let audited = out.lines().filter(|l| l.contains("Z request ")).count();
    assert_eq!(audited, 23, "{out}");
}
