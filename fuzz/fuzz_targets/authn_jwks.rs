#![no_main]
//! Arbitrary bytes as a JWK set and as `Cache-Control` values (msec-authn): never panics; every key taken is
//! bound to an allowed algorithm.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msec_authn::fuzzing::jwks(data));
