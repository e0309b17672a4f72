//! Runs the bodies of the cargo-fuzz targets (fuzz/fuzz_targets/tls_*.rs) over proptest inputs, so CI exercises
//! them without cargo-fuzz.
#![allow(clippy::unwrap_used)]

use msec_test_support::TestCa;
use proptest::prelude::*;

fn xfcc_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "By", "Hash", "Cert", "Chain", "Subject", "URI", "DNS", "hash", "X",
    ]);
    let value = prop_oneof![
        "[a-zA-Z0-9:/._%-]{0,40}",
        "\"[^\"]{0,30}\"",
        "\"[a-z\\\\\",;=]{0,12}\"",
        Just("0000000000000000000000000000000000000000000000000000000000000000".to_owned()),
        Just("spiffe://example.org/ns/a".to_owned()),
        Just("%2D%2D%2D%2D%2DBEGIN%20CERTIFICATE%2D%2D%2D%2D%2D%0Azz".to_owned()),
    ];
    let pair = (key, value).prop_map(|(k, v)| format!("{k}={v}"));
    let element = prop::collection::vec(pair, 0..6).prop_map(|v| v.join(";"));
    prop::collection::vec(element, 0..4).prop_map(|v| v.join(","))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn xfcc_body_on_structured_input(s in xfcc_like()) {
        msec_tls::fuzzing::xfcc(s.as_bytes());
    }

    #[test]
    fn xfcc_body_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..300)) {
        msec_tls::fuzzing::xfcc(&b);
    }

    #[test]
    fn peer_cert_body_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..300)) {
        msec_tls::fuzzing::peer_cert(&b);
    }
}

#[test]
fn peer_cert_body_on_mutated_certificates() {
    let ca = TestCa::new("example.org");
    let der = ca.svid("/ns/prod/sa/web").cert_der;
    msec_tls::fuzzing::peer_cert(&der);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(400));
    runner
        .run(
            &(prop::collection::vec((0..der.len(), any::<u8>()), 1..4), 0..=der.len()),
            |(flips, cut)| {
                let mut m = der.clone();
                for (i, v) in flips {
                    m[i] = v;
                }
                m.truncate(cut.max(1));
                msec_tls::fuzzing::peer_cert(&m);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn xfcc_with_a_real_certificate_round_trips_through_the_body() {
    let ca = TestCa::new("example.org");
    let svid = ca.svid("/ns/prod/sa/web");
    let cert: String =
        percent_encoding::utf8_percent_encode(&svid.cert_pem, percent_encoding::NON_ALPHANUMERIC).collect();
    let v = format!("By=spiffe://example.org/ns/prod/sa/api;Cert=\"{cert}\";URI=spiffe://example.org/ns/prod/sa/web");
    msec_tls::fuzzing::xfcc(v.as_bytes());
    let el = msec_tls::xfcc::parse(&v).unwrap().pop().unwrap();
    let peer = el.peer_identity().unwrap();
    assert_eq!(peer.spiffe_id.unwrap().as_str(), "spiffe://example.org/ns/prod/sa/web");
}
