#![no_main]
//! msec-crypto ciphertext parsing (binary and text) and decryption never panic, round-trip between the two forms,
//! and never authenticate fuzzed input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    msec_crypto::fuzzing::ciphertext(data);
});
