#![no_main]
//! Forwarding headers (`Forwarded`, `X-Forwarded-For`) never panic the parser or the trusted-proxy resolver,
//! which only ever answers the socket peer or an address a header named. The body lives in
//! `msec_ratelimit::client_ip::fuzz_forwarded`, which the test suite also runs over proptest inputs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    msec_ratelimit::client_ip::fuzz_forwarded(data);
});
