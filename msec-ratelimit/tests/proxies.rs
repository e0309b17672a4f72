//! Trusted-proxy resolution table, and the fuzz body over proptest inputs.
#![allow(clippy::unwrap_used, missing_docs)]

use http::HeaderMap;
use msec_core::{ClientAddr, ClientAddrSource};
use msec_ratelimit::{ForwardedHeader, TrustedProxies};
use proptest::prelude::*;

fn headers(name: &str, values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

#[test]
fn resolution_table() {
    let proxies = TrustedProxies::new(["10.0.0.0/8", "192.168.1.1", "fd00::/8"]).unwrap();
    use ForwardedHeader::{Forwarded as F, XForwardedFor as X};
    // (peer, header kind, header values, expected client, expected source)
    let table: &[(&str, ForwardedHeader, &[&str], &str, ClientAddrSource)] = &[
        // Spoofed XFF from an untrusted peer: ignored.
        (
            "203.0.113.9:1",
            X,
            &["1.2.3.4"],
            "203.0.113.9",
            ClientAddrSource::Socket,
        ),
        (
            "203.0.113.9:1",
            F,
            &["for=1.2.3.4"],
            "203.0.113.9",
            ClientAddrSource::Socket,
        ),
        // One trusted proxy.
        (
            "10.0.0.1:1",
            X,
            &["198.51.100.7"],
            "198.51.100.7",
            ClientAddrSource::Forwarded,
        ),
        // The client prepended a fake hop: the rightmost untrusted entry wins.
        (
            "10.0.0.1:1",
            X,
            &["6.6.6.6, 198.51.100.7"],
            "198.51.100.7",
            ClientAddrSource::Forwarded,
        ),
        // A chain of trusted proxies is skipped.
        (
            "10.0.0.1:1",
            X,
            &["6.6.6.6, 198.51.100.7, 10.1.1.1, 192.168.1.1"],
            "198.51.100.7",
            ClientAddrSource::Forwarded,
        ),
        // Several field lines form one list.
        (
            "10.0.0.1:1",
            X,
            &["6.6.6.6, 198.51.100.7", "10.2.2.2"],
            "198.51.100.7",
            ClientAddrSource::Forwarded,
        ),
        // Every hop trusted: the leftmost.
        (
            "10.0.0.1:1",
            X,
            &["10.9.9.9, 10.1.1.1"],
            "10.9.9.9",
            ClientAddrSource::Forwarded,
        ),
        // No header from a trusted proxy: the proxy.
        ("10.0.0.1:1", X, &[], "10.0.0.1", ClientAddrSource::Socket),
        // IPv6 peers and clients, mapped addresses.
        (
            "[fd00::1]:1",
            X,
            &["2001:db8::7"],
            "2001:db8::7",
            ClientAddrSource::Forwarded,
        ),
        (
            "[::ffff:10.0.0.1]:1",
            X,
            &["[2001:db8::8]:5000"],
            "2001:db8::8",
            ClientAddrSource::Forwarded,
        ),
        (
            "10.0.0.1:1",
            X,
            &["::ffff:198.51.100.9"],
            "198.51.100.9",
            ClientAddrSource::Forwarded,
        ),
        // Garbage where we must read: the socket peer.
        (
            "10.0.0.1:1",
            X,
            &["198.51.100.7, garbage"],
            "10.0.0.1",
            ClientAddrSource::Socket,
        ),
        ("10.0.0.1:1", X, &["not-an-ip"], "10.0.0.1", ClientAddrSource::Socket),
        ("10.0.0.1:1", X, &[""], "10.0.0.1", ClientAddrSource::Socket),
        (
            "10.0.0.1:1",
            X,
            &["198.51.100.7,,10.1.1.1"],
            "10.0.0.1",
            ClientAddrSource::Socket,
        ),
        // Garbage left of the client does not matter.
        (
            "10.0.0.1:1",
            X,
            &["garbage, 198.51.100.7"],
            "198.51.100.7",
            ClientAddrSource::Forwarded,
        ),
        // RFC 7239.
        (
            "10.0.0.1:1",
            F,
            &["for=192.0.2.60;proto=http;by=203.0.113.43"],
            "192.0.2.60",
            ClientAddrSource::Forwarded,
        ),
        (
            "10.0.0.1:1",
            F,
            &["for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\", for=10.3.3.3"],
            "2001:db8:cafe::17",
            ClientAddrSource::Forwarded,
        ),
        ("10.0.0.1:1", F, &["for=unknown"], "10.0.0.1", ClientAddrSource::Socket),
        (
            "10.0.0.1:1",
            F,
            &["for=_hidden, for=10.3.3.3"],
            "10.0.0.1",
            ClientAddrSource::Socket,
        ),
        (
            "10.0.0.1:1",
            F,
            &["for=2001:db8::1"],
            "10.0.0.1",
            ClientAddrSource::Socket,
        ),
        (
            "10.0.0.1:1",
            F,
            &["for=\"1.2.3.4"],
            "10.0.0.1",
            ClientAddrSource::Socket,
        ),
        ("10.0.0.1:1", F, &["proto=https"], "10.0.0.1", ClientAddrSource::Socket),
        // Only the configured header is read.
        ("10.0.0.1:1", F, &[], "10.0.0.1", ClientAddrSource::Socket),
    ];
    for (peer, kind, values, want, source) in table {
        let name = if *kind == X { "x-forwarded-for" } else { "forwarded" };
        let mut h = headers(name, values);
        // A header of the other kind is always present and must never matter.
        if *kind == X {
            h.append("forwarded", "for=9.9.9.9".parse().unwrap());
        } else {
            h.append("x-forwarded-for", "9.9.9.9".parse().unwrap());
        }
        let peer = ClientAddr::from_socket(peer.parse().unwrap());
        let got = proxies.resolve(peer, &h, *kind);
        assert_eq!(got.ip().to_string(), *want, "{peer} {kind:?} {values:?}");
        assert_eq!(got.source(), *source, "{peer} {kind:?} {values:?}");
    }
}

#[test]
fn too_many_trusted_hops_fall_back() {
    let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    let chain = (0..40).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>().join(", ");
    let h = headers("x-forwarded-for", &[&format!("198.51.100.1, {chain}")]);
    let peer = ClientAddr::from_socket("10.0.0.1:1".parse().unwrap());
    assert_eq!(proxies.resolve(peer, &h, ForwardedHeader::XForwardedFor), peer);
}

#[test]
fn bad_cidrs_are_config_errors() {
    assert!(TrustedProxies::new(["10.0.0.0/33"]).is_err());
    assert!(TrustedProxies::new(["nope"]).is_err());
    assert!(
        TrustedProxies::new(["10.1.2.3/8"])
            .unwrap()
            .contains("10.200.0.1".parse().unwrap())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    /// The fuzz target's body (`fuzz/fuzz_targets/forwarded_header.rs`) over arbitrary bytes.
    #[test]
    fn fuzz_body_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        msec_ratelimit::client_ip::fuzz_forwarded(&data);
    }

    /// ... and over inputs shaped like real headers.
    #[test]
    fn fuzz_body_on_header_like_input(s in r#"((for|by|proto)=("?\[?[0-9a-f:.]{0,20}\]?(:[0-9]{1,5})?"?|unknown|_x)[;, ]{0,2}){0,6}"#) {
        msec_ratelimit::client_ip::fuzz_forwarded(s.as_bytes());
    }
}
