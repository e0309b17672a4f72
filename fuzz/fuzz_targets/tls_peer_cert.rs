#![no_main]
//! Certificate → PeerIdentity parsing (msec-tls, x509-parser) never panics; fingerprints and SPIFFE IDs agree.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msec_tls::fuzzing::peer_cert(data));
