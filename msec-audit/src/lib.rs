//! # msec-audit
//!
//! Tamper-evident audit logging that never loses a record silently, plus threat detection.
//!
//! - **Events** ([`event`]): a versioned schema — who (principal, API key, TLS peer, client address), what
//!   (method + route template, or gRPC service/method), outcome (allowed / denied / error, status, reason code),
//!   every [`Decision`](msec_core::Decision) of the request, request and trace ids, duration, redacted
//!   attributes. The JSON Schema is [`RECORD_SCHEMA`]. Application code records data access with
//!   [`DataAccess`].
//! - **[`AuditLayer`]**: one event per request, levels per route, bounded redacted body capture, headers by
//!   allowlist only. The outermost msec layer.
//! - **Integrity** ([`chain`]): a SHA-256 hash chain across files and restarts, with Ed25519-signed
//!   checkpoints; [`Verifier`] finds the first bad record (modified, deleted, reordered, truncated).
//! - **[`AuditLog`]**: a bounded queue drained by a dedicated writer thread in batches, an fsync policy, and an
//!   explicit [`Overflow`] policy: block, drop-and-count (a `gap` record carries the exact count), or fail
//!   closed (503). [`AuditLog::flush`] and [`AuditLog::shutdown`] wait for durability, with no fixed timeout.
//! - **Sinks** ([`sink`]): rotating JSON-lines files, stdout, `tracing`, PostgreSQL (feature `postgres`), or
//!   your own [`Sink`].
//! - **Health and metrics**: [`AuditLog::is_healthy`] for readiness probes; `msec_audit_queue_depth`,
//!   `msec_audit_dropped_total`, `msec_audit_refused_total`, `msec_audit_sink_errors_total{sink}` (all present
//!   from the start), `msec_audit_records_written_total`, `msec_audit_batch_write_seconds` (write + fsync time
//!   of a batch), `msec_audit_requests_total{result}`, `msec_audit_alerts_total{detector}`.
//! - **Threat detection** ([`detect`]): brute force, credential stuffing, token replay, scanning,
//!   authorization probing and rate-limit storms, as `alert` records in the same chain and calls to your hooks.
//!
//! ```
//! use msec_audit::{AuditLayer, AuditLog, CheckpointSigner, Detectors, FileSink, Overflow};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! let log = AuditLog::builder()
//!     .signer(CheckpointSigner::ephemeral()?) // in production: CheckpointSigner::from_pkcs8_pem(..)
//!     .overflow(Overflow::Block)
//!     .detectors(Detectors::default())
//!     .on_alert(|a: &msec_audit::detect::Alert| eprintln!("alert: {:?} {}", a.detector, a.key))
//!     .start(FileSink::new(dir.path())?)?;
//!
//! // Outermost: audit, then rate limiting, authentication, authorization...
//! let stack = ServiceBuilder::new().layer(AuditLayer::new(log.clone()));
//! # let _ = stack;
//! rt.block_on(log.shutdown())?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod chain;
pub mod detect;
pub mod event;
pub mod layer;
pub mod log;
pub mod redact;
pub mod sink;
pub mod tail;
mod util;
pub mod verify;

pub use chain::{CheckpointSigner, KeyError, PublicKey, Record, RecordKind};
pub use detect::{Alert, AlertHook, Detectors};
pub use event::{AccessOperation, Actor, DataAccess, IntoEvent};
pub use layer::{
    AUDIT_UNAVAILABLE, Audit, AuditConfigError, AuditLayer, AuditLayerBuilder, CaptureLayer, Level, RequestAudit,
};
pub use log::{AuditError, AuditLog, AuditLogBuilder, EmitError, FsyncPolicy, Overflow, Stats};
pub use redact::Redactor;
pub use sink::{FileSink, MemorySink, Sink, SinkError, StdoutSink, TracingSink};
pub use util::{EventId, Timestamp};
pub use verify::{FailureKind, Report, Verifier, VerifyError};

/// The JSON Schema (draft 2020-12) of a record, version 1: `schema/audit-record.v1.json`.
pub const RECORD_SCHEMA: &str = include_str!("../schema/audit-record.v1.json");
