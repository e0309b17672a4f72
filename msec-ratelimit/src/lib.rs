//! # msec-ratelimit
//!
//! Rate limiting for msec: local (governor) and Redis GCRA limiters, trusted-proxy client IPs, RateLimit headers, bans.
//!
//! This crate is being built; see the project's issues for its scope. It exposes no API yet.
#![forbid(unsafe_code)]
