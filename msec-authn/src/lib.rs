//! # msec-authn
//!
//! Token validation for msec: JWT / OAuth 2.0 / OIDC (JWKS, discovery), API keys, introspection, and the authentication layer.
//!
//! This crate is being built; see the project's issues for its scope. It exposes no API yet.
#![forbid(unsafe_code)]
