//! # msec-crypto
//!
//! Field-level encryption at rest for msec: keyrings, AEAD with per-message keys, envelope encryption, rotation, blind indexes.
//!
//! This crate is being built; see the project's issues for its scope. It exposes no API yet.
#![forbid(unsafe_code)]
