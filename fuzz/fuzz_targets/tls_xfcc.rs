#![no_main]
//! Envoy `x-forwarded-client-cert` parsing (msec-tls) never panics, and every element it accepts yields an
//! identity or a typed error.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msec_tls::fuzzing::xfcc(data));
