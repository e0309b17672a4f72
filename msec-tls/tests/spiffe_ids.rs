//! SPIFFE ID parsing (msec-core's strict parser, re-exported by msec-tls): the 565 vectors of
//! ../shared/data/spiffe/ids.json, and property tests against an independent model of SPIFFE-ID §2.
#![allow(clippy::unwrap_used)]

use msec_tls::{SpiffeId, TrustDomain};
use proptest::prelude::*;
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/spiffe/ids.json");

#[test]
fn every_vector_is_classified_as_the_spec_says() {
    let text = std::fs::read_to_string(VECTORS).expect("the SPIFFE vectors at ../shared/data/spiffe/ids.json");
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 565);
    let mut wrong = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for c in &cases {
        let id = c["id"].as_str().unwrap();
        let want = c["valid"].as_bool().unwrap();
        let got = SpiffeId::parse(id);
        if want {
            valid += 1;
        } else {
            invalid += 1;
        }
        match (&got, want) {
            (Ok(parsed), true) => {
                // A valid ID round-trips and splits into its parts.
                assert_eq!(parsed.as_str(), id);
                assert_eq!(
                    format!("spiffe://{}{}", parsed.trust_domain_name(), parsed.path()),
                    id,
                    "parts of {id:?}"
                );
                assert!(TrustDomain::new(parsed.trust_domain_name()).is_ok());
            }
            (Err(_), false) => {}
            _ => wrong.push(format!("{id:?}: expected valid={want}, got {got:?} ({})", c["reason"])),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} vectors misclassified:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert!(valid > 0 && invalid > 0);
}

/// An independent model of SPIFFE-ID §2: scheme, trust domain `[a-z0-9._-]+` (≤ 255), path segments
/// `[a-zA-Z0-9._-]+` that are not `.` / `..`, no trailing slash, ≤ 2048 bytes.
fn model_valid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("spiffe://") else {
        return false;
    };
    if s.len() > 2048 {
        return false;
    }
    let (td, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let td_ok = !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !td_ok {
        return false;
    }
    if path.is_empty() {
        return true;
    }
    path[1..].split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    })
}

fn td_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

fn segment_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,20}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn well_formed_ids_parse_and_round_trip(td in td_strategy(), segs in prop::collection::vec(segment_strategy(), 0..6)) {
        let path: String = segs.iter().map(|s| format!("/{s}")).collect();
        let s = format!("spiffe://{td}{path}");
        let id = SpiffeId::parse(&s).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
        prop_assert_eq!(id.trust_domain_name(), td.as_str());
        prop_assert_eq!(id.path(), path.as_str());
        prop_assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id.clone());
        // Every ID lies below its own path and below its trust domain's root.
        prop_assert!(id.has_path_prefix(&td, &path));
        prop_assert!(id.has_path_prefix(&td, ""));
    }

    #[test]
    fn parser_agrees_with_the_model_on_near_misses(
        td in "[a-zA-Z0-9._:@%-]{0,12}",
        path in "(/[a-zA-Z0-9._%?#@ -]{0,6}){0,4}/?",
        scheme in prop::sample::select(vec!["spiffe://", "SPIFFE://", "spiffe:/", "http://", ""]),
    ) {
        let s = format!("{scheme}{td}{path}");
        prop_assert_eq!(SpiffeId::parse(&s).is_ok(), model_valid(&s), "{:?}", s);
    }

    #[test]
    fn arbitrary_strings_never_panic_and_agree_with_the_model(s in "\\PC{0,80}") {
        prop_assert_eq!(SpiffeId::parse(&s).is_ok(), model_valid(&s));
        let with_scheme = format!("spiffe://{s}");
        prop_assert_eq!(SpiffeId::parse(&with_scheme).is_ok(), model_valid(&with_scheme), "{:?}", with_scheme);
    }

    #[test]
    fn one_bad_character_anywhere_is_rejected(
        td in td_strategy(),
        seg in segment_strategy(),
        bad in prop::sample::select(vec!['A', ' ', '%', ':', '@', '?', '#', '\0', 'é', '/']),
        in_td in any::<bool>(),
        pos in 0usize..40,
    ) {
        let (mut td, mut seg) = (td, seg);
        let target = if in_td { &mut td } else { &mut seg };
        let at = pos.min(target.len());
        target.insert(at, bad);
        let s = format!("spiffe://{td}/{seg}");
        // Upper case is fine in a path, and '/' just splits a segment (fine unless it makes an empty one).
        prop_assert_eq!(SpiffeId::parse(&s).is_ok(), model_valid(&s), "{:?}", s);
        if in_td && bad != '/' {
            prop_assert!(SpiffeId::parse(&s).is_err());
        }
    }

    #[test]
    fn length_limits(td_len in 250usize..260, path_len in 2030usize..2060) {
        let td = "a".repeat(td_len);
        prop_assert_eq!(SpiffeId::parse(&format!("spiffe://{td}")).is_ok(), td_len <= 255);
        let s = format!("spiffe://x/{}", "p".repeat(path_len));
        prop_assert_eq!(SpiffeId::parse(&s).is_ok(), s.len() <= 2048);
    }
}
