#![no_main]
//! Arbitrary bytes as a bearer token (msec-authn): strict JWS parsing, header and claim checks and the
//! authenticator never panic, never need a key fetch with static keys, and never accept a forged token.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(!msec_authn::fuzzing::jwt(data));
});
