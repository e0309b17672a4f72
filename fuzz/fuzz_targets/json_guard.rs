#![no_main]
//! The JSON guard never panics, answers the same however the bytes are chunked, agrees with serde_json on
//! what is JSON, counts what serde_json sees, and enforces every limit exactly (see msec_validate::fuzz).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    msec_validate::fuzz::json_guard(data);
});
