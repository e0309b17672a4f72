//! Introspection and revocation benches (being written).
#![allow(missing_docs)]
fn main() {}
