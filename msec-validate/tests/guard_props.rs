//! Property tests of the JSON guard: it accepts a document exactly when a reference measure over
//! `serde_json::Value` is within the limits, and the cargo-fuzz body holds over generated inputs.
#![allow(clippy::unwrap_used, missing_docs)]

use msec_validate::guard::{JsonLimits, JsonScanner, check_json};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// The reference: the shape of a parsed `Value`.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    depth: usize,
    nodes: usize,
    keys: usize,
    items: usize,
    string: usize,
}

fn shape(v: &Value) -> Shape {
    match v {
        Value::String(s) => Shape {
            nodes: 1,
            string: s.chars().count(),
            ..Shape::default()
        },
        Value::Array(a) => {
            let mut s = Shape {
                depth: 1,
                nodes: 1,
                items: a.len(),
                ..Shape::default()
            };
            for c in a {
                let c = shape(c);
                s.depth = s.depth.max(c.depth + 1);
                s.nodes += c.nodes;
                s.keys = s.keys.max(c.keys);
                s.items = s.items.max(c.items);
                s.string = s.string.max(c.string);
            }
            s
        }
        Value::Object(o) => {
            let mut s = Shape {
                depth: 1,
                nodes: 1,
                keys: o.len(),
                ..Shape::default()
            };
            for (k, c) in o {
                let c = shape(c);
                s.depth = s.depth.max(c.depth + 1);
                s.nodes += c.nodes;
                s.keys = s.keys.max(c.keys);
                s.items = s.items.max(c.items);
                s.string = s.string.max(c.string).max(k.chars().count());
            }
            s
        }
        _ => Shape {
            nodes: 1,
            ..Shape::default()
        },
    }
}

/// Serialises with every non-ASCII character as a `\u` escape (surrogate pairs above the BMP), so the
/// guard's escape handling is exercised as much as raw UTF-8.
fn to_ascii_json(v: &Value, out: &mut String) {
    fn string(s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                ' '..='~' => out.push(c),
                _ => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
        }
        out.push('"');
    }
    match v {
        Value::String(s) => string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, c) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(" , ");
                }
                to_ascii_json(c, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push_str("{ ");
            for (i, (k, c)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push_str(" :\n");
                to_ascii_json(c, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        "[\"\\\\/\u{0}-\u{1f}é😀a-z]{0,6}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn encode(v: &Value, how: u8) -> Vec<u8> {
    match how % 3 {
        0 => serde_json::to_vec(v).unwrap(),
        1 => serde_json::to_vec_pretty(v).unwrap(),
        _ => {
            let mut s = String::new();
            to_ascii_json(v, &mut s);
            s.into_bytes()
        }
    }
}

/// A limit near `measure`: one below, exactly at, one above, or unlimited.
fn near(measure: usize, pick: u8) -> usize {
    match pick % 4 {
        0 => measure.saturating_sub(1),
        1 => measure,
        2 => measure + 1,
        _ => usize::MAX,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The guard accepts exactly when the reference measure over `serde_json::Value` is within the limits.
    #[test]
    fn accepts_exactly_within_limits(v in value(), how in any::<u8>(), picks in any::<[u8; 6]>()) {
        let doc = encode(&v, how);
        let reparsed: Value = serde_json::from_slice(&doc).unwrap();
        let s = shape(&reparsed);
        let limits = JsonLimits::unlimited()
            .max_body_bytes(near(doc.len(), picks[0]))
            .max_depth(near(s.depth, picks[1]))
            .max_nodes(near(s.nodes, picks[2]))
            .max_object_keys(near(s.keys, picks[3]))
            .max_array_len(near(s.items, picks[4]))
            .max_string_len(near(s.string, picks[5]));
        let within = doc.len() <= limits.max_body_bytes
            && s.depth <= limits.max_depth
            && s.nodes <= limits.max_nodes
            && s.keys <= limits.max_object_keys
            && s.items <= limits.max_array_len
            && s.string <= limits.max_string_len;
        let got = check_json(&doc, &limits);
        prop_assert_eq!(got.is_ok(), within, "{:?} for {}", got, String::from_utf8_lossy(&doc));
        if let Ok(summary) = got {
            prop_assert_eq!((summary.nodes, summary.depth), (s.nodes, s.depth));
        }
    }

    /// Feeding a document in arbitrary chunks gives the same answer as feeding it whole.
    #[test]
    fn chunking_is_invisible(v in value(), how in any::<u8>(), cuts in proptest::collection::vec(any::<usize>(), 0..6), depth in 0usize..8) {
        let doc = encode(&v, how);
        let limits = JsonLimits::default().max_depth(depth);
        let whole = check_json(&doc, &limits);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (doc.len() + 1)).collect();
        cuts.sort_unstable();
        let mut s = JsonScanner::new(&limits);
        let mut prev = 0;
        let mut r = Ok(());
        for c in cuts.into_iter().chain([doc.len()]) {
            r = r.and_then(|()| s.feed(&doc[prev..c]));
            prev = c;
        }
        prop_assert_eq!(r.and_then(|()| s.finish()), whole);
    }

    /// The fuzz target's body over arbitrary bytes.
    #[test]
    fn fuzz_body_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..48)) {
        msec_validate::fuzz::json_guard(&data);
    }

    /// The fuzz target's body over bytes drawn from JSON's alphabet.
    #[test]
    fn fuzz_body_on_json_alphabet(data in "[\\[\\]{}:,\" \\\\u0-9a-fetrnl.+\\-EÿéX\u{1}]{0,40}") {
        msec_validate::fuzz::json_guard(data.as_bytes());
    }

    /// The fuzz target's body over valid documents with one mutation (a changed, inserted or removed byte, or a
    /// truncation).
    #[test]
    fn fuzz_body_on_mutated_json(v in value(), how in any::<u8>(), at in any::<usize>(), op in 0u8..4, byte in any::<u8>()) {
        let mut doc = encode(&v, how);
        msec_validate::fuzz::json_guard(&doc);
        let i = at % (doc.len() + 1);
        match op {
            0 if i < doc.len() => doc[i] = byte,
            1 => doc.insert(i, byte),
            2 if i < doc.len() => { doc.remove(i); }
            _ => doc.truncate(i),
        }
        msec_validate::fuzz::json_guard(&doc);
    }
}

#[test]
fn invalid_utf8_offset_matches_std() {
    let mut doc = br#"{"name": "caf"#.to_vec();
    doc.extend_from_slice(&[0xC3, 0x28]);
    doc.extend_from_slice(br#""}"#);
    let e = check_json(&doc, &JsonLimits::default()).unwrap_err();
    assert_eq!(e.offset(), std::str::from_utf8(&doc).unwrap_err().valid_up_to());
    assert_eq!(e.offset(), 13);
}

/// Found by cargo-fuzz: 81 `[` then a truncated number. serde_json calls it a syntax error (its own recursion
/// limit is 128); the guard stops earlier, at its depth limit. Both refuse.
#[test]
fn fuzz_regression_deep_then_invalid() {
    let mut doc = vec![b'['; 81];
    doc.extend_from_slice(b"9E+");
    msec_validate::fuzz::json_guard(&doc);
}
