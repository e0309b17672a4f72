//! The audit log verifier reads untrusted bytes (log files, anchors, database rows): it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msec_audit::{PublicKey, Verifier};

fuzz_target!(|data: &[u8]| {
    let key = PublicKey::from_raw(&[7u8; 32]).expect("32 bytes");
    let _ = Verifier::danger_chain_only().verify_bytes(data);
    let _ = Verifier::new([key.clone()]).verify_bytes(data);
    if let Ok(v) = Verifier::new([key]).with_anchor(data) {
        let _ = v.verify_bytes(data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicKey::parse(text);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
            let _ = msec_audit::tail::render(&v);
        }
    }
});
