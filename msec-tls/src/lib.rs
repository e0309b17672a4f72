//! # msec-tls
//!
//! mTLS for msec: rustls configs with safe defaults, SPIFFE identities, hot reload, and a serve loop that gives every request its peer identity.
//!
//! This crate is being built; see the project's issues for its scope. It exposes no API yet.
#![forbid(unsafe_code)]
