#![no_main]
//! SPIFFE ID parsing never panics, and whatever parses round-trips through its string form.
use libfuzzer_sys::fuzz_target;
use msec_core::spiffe::SpiffeId;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(id) = SpiffeId::parse(s) {
            assert_eq!(id.as_str(), s);
            assert!(s.starts_with("spiffe://"));
            let again = SpiffeId::parse(id.as_str()).expect("round trip");
            assert_eq!(again, id);
        }
    }
});
