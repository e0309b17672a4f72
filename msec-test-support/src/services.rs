//! Probes for the real services tests use (Redis, PostgreSQL, Node, Python).
//!
//! On a newcomer's machine a missing service makes the test print a notice and skip (return early). With
//! `MSEC_REQUIRE_SERVICES=1` — set by `.ci/run` — a missing service fails the test instead.
//!
//! ```no_run
//! # async fn t() {
//! let Some(url) = msec_test_support::services::redis_url().await else { return };
//! # let _ = url;
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

/// True when `MSEC_REQUIRE_SERVICES=1`.
pub fn required() -> bool {
    std::env::var("MSEC_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (prints a notice, returns `false`) or fails (panics, when services are required) for `what`.
#[allow(clippy::print_stderr)]
pub fn unavailable(what: &str, why: &str) -> bool {
    assert!(
        !required(),
        "{what} is required (MSEC_REQUIRE_SERVICES=1) but unavailable: {why}"
    );
    eprintln!("NOTICE: skipping: {what} is unavailable ({why}); set MSEC_REQUIRE_SERVICES=1 to make this a failure");
    false
}

async fn reachable(addr: &str) -> Result<(), String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => Err(format!("timed out connecting to {addr}")),
    }
}

/// The Redis URL (`MSEC_REDIS_URL`, default `redis://127.0.0.1:6379`), or `None` (after a notice) when Redis
/// is not reachable.
pub async fn redis_url() -> Option<String> {
    let url = std::env::var("MSEC_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let hostport = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    match reachable(&hostport).await {
        Ok(()) => Some(url),
        Err(e) => {
            unavailable("Redis", &e);
            None
        }
    }
}

/// The PostgreSQL connection string (`MSEC_POSTGRES`, default
/// `host=127.0.0.1 port=5432 user=postgres dbname=test`), or `None` (after a notice) when unreachable.
pub async fn postgres_config() -> Option<String> {
    let cfg =
        std::env::var("MSEC_POSTGRES").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into());
    match reachable("127.0.0.1:5432").await {
        Ok(()) => Some(cfg),
        Err(e) => {
            unavailable("PostgreSQL", &e);
            None
        }
    }
}

/// True when `program --version` runs; otherwise a notice (or a failure when services are required).
pub fn program(program: &str) -> bool {
    match std::process::Command::new(program).arg("--version").output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => unavailable(program, &format!("`{program} --version` exited with {}", o.status)),
        Err(e) => unavailable(program, &e.to_string()),
    }
}

/// True when `program args..` runs successfully (for programs without `--version`, e.g. `openssl version`);
/// otherwise a notice (or a failure when services are required).
pub fn program_with_args(program: &str, args: &[&str]) -> bool {
    match std::process::Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => unavailable(
            program,
            &format!("`{program} {}` exited with {}", args.join(" "), o.status),
        ),
        Err(e) => unavailable(program, &e.to_string()),
    }
}
