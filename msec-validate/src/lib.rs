//! # msec-validate
//!
//! Input validation for msec: validated extractors, JSON Schema, a streaming JSON guard and a request firewall.
//!
//! This crate is being built; see the project's issues for its scope. It exposes no API yet.
#![forbid(unsafe_code)]
