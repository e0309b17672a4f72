#![no_main]
//! Arbitrary bytes as an API key (msec-authn): the key parser and the API-key authenticator never panic, a key
//! the parser accepts fails on a changed checksum character, and nothing is accepted by an empty store.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    msec_authn::fuzzing::apikey_parse(data);
});
