//! # msec-audit
//!
//! Tamper-evident audit logging for msec: hash-chained, signed, non-lossy writer, sinks and threat detection.
//!
//! This crate is being built; see the project's issues for its scope. It exposes no API yet.
#![forbid(unsafe_code)]
