//! The body of the `json_guard` cargo-fuzz target (`fuzz/fuzz_targets/json_guard.rs`), here so that the
//! crate's tests run it too. Not part of the public API.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::guard::{GuardErrorKind, JsonLimits, JsonScanner, check_json};

/// The shape of a document as serde_json sees it, measured without building a tree: a reference for the
/// guard's counters. Duplicate member names count each time, as in the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measure {
    /// Deepest container nesting.
    pub depth: usize,
    /// Values.
    pub nodes: usize,
    /// Most members in one object.
    pub max_keys: usize,
    /// Most elements in one array.
    pub max_items: usize,
    /// Longest string or member name, in characters.
    pub max_string: usize,
}

impl Measure {
    fn absorb(&mut self, child: Measure) {
        self.depth = self.depth.max(child.depth + 1);
        self.nodes += child.nodes;
        self.max_keys = self.max_keys.max(child.max_keys);
        self.max_items = self.max_items.max(child.max_items);
        self.max_string = self.max_string.max(child.max_string);
    }

    /// True when a document of this shape and `len` bytes is within `limits`.
    pub fn within(&self, limits: &JsonLimits, len: usize) -> bool {
        len <= limits.max_body_bytes
            && self.depth <= limits.max_depth
            && self.nodes <= limits.max_nodes
            && self.max_keys <= limits.max_object_keys
            && self.max_items <= limits.max_array_len
            && self.max_string <= limits.max_string_len
    }
}

struct MeasureVisitor;

impl<'de> Visitor<'de> for MeasureVisitor {
    type Value = Measure;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Measure, E> {
        Ok(Measure {
            nodes: 1,
            ..Measure::default()
        })
    }
    fn visit_i64<E>(self, _: i64) -> Result<Measure, E> {
        Ok(Measure {
            nodes: 1,
            ..Measure::default()
        })
    }
    fn visit_u64<E>(self, _: u64) -> Result<Measure, E> {
        Ok(Measure {
            nodes: 1,
            ..Measure::default()
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Measure, E> {
        Ok(Measure {
            nodes: 1,
            ..Measure::default()
        })
    }
    fn visit_unit<E>(self) -> Result<Measure, E> {
        Ok(Measure {
            nodes: 1,
            ..Measure::default()
        })
    }
    fn visit_str<E>(self, s: &str) -> Result<Measure, E> {
        Ok(Measure {
            nodes: 1,
            max_string: s.chars().count(),
            ..Measure::default()
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Measure, A::Error> {
        let mut m = Measure {
            depth: 1,
            nodes: 1,
            ..Measure::default()
        };
        let mut n = 0;
        while let Some(child) = seq.next_element::<Measure>()? {
            n += 1;
            m.absorb(child);
        }
        m.max_items = m.max_items.max(n);
        Ok(m)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Measure, A::Error> {
        let mut m = Measure {
            depth: 1,
            nodes: 1,
            ..Measure::default()
        };
        let mut n = 0;
        while let Some(KeyLen(k)) = map.next_key::<KeyLen>()? {
            n += 1;
            m.max_string = m.max_string.max(k);
            let child = map.next_value::<Measure>()?;
            m.absorb(child);
        }
        m.max_keys = m.max_keys.max(n);
        Ok(m)
    }
}

impl<'de> Deserialize<'de> for Measure {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MeasureVisitor)
    }
}

struct KeyLen(usize);

impl<'de> Deserialize<'de> for KeyLen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyLen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyLen, E> {
                Ok(KeyLen(s.chars().count()))
            }
        }
        d.deserialize_str(V)
    }
}

/// How serde_json judges `data`: its measure, or why it refused it.
pub enum Reference {
    /// Accepted, with this shape.
    Valid(Measure),
    /// Refused as not JSON.
    Invalid,
    /// Refused for a reason the guard leaves to the deserialiser (a number beyond `f64`) or its own recursion
    /// limit.
    Skip,
}

/// serde_json's judgement of `data`.
pub fn reference(data: &[u8]) -> Reference {
    match serde_json::from_slice::<Measure>(data) {
        Ok(m) => Reference::Valid(m),
        Err(e) => {
            let msg = e.to_string();
            if msg.starts_with("number out of range") || msg.starts_with("recursion limit exceeded") {
                Reference::Skip
            } else {
                Reference::Invalid
            }
        }
    }
}

const DEPTH: usize = 64;

/// The fuzz body: the guard never panics, gives the same answer however the bytes are chunked, agrees with
/// serde_json on what is JSON, counts exactly what serde_json sees, and enforces each limit exactly.
pub fn json_guard(data: &[u8]) {
    let limits = JsonLimits::unlimited().max_depth(DEPTH);
    let whole = check_json(data, &limits);
    for k in [1, 3, 16] {
        let mut s = JsonScanner::new(&limits);
        let mut r = Ok(());
        for c in data.chunks(k) {
            r = s.feed(c);
            if r.is_err() {
                break;
            }
        }
        let chunked = r.and_then(|()| s.finish());
        assert_eq!(chunked, whole, "chunks of {k}");
    }
    if let Err(e) = &whole {
        if e.kind() == GuardErrorKind::InvalidUtf8 {
            let valid_up_to = std::str::from_utf8(data).map_or(data.len(), |_| usize::MAX);
            let valid_up_to = std::str::from_utf8(data).err().map_or(valid_up_to, |u| u.valid_up_to());
            assert_eq!(valid_up_to, e.offset(), "invalid UTF-8 offset");
        }
        assert!(e.offset() <= data.len());
    }
    match reference(data) {
        Reference::Skip => {}
        Reference::Invalid => {
            let e = whole.expect_err("serde_json refused a document the guard accepted");
            // The guard reports the first problem in byte order: a document nested deeper than the depth limit
            // (the only limit in force here) before its syntax error is refused as too deep.
            assert!(
                matches!(
                    e.kind(),
                    GuardErrorKind::Syntax | GuardErrorKind::InvalidUtf8 | GuardErrorKind::TooDeep
                ),
                "{e:?}"
            );
        }
        Reference::Valid(m) if m.depth > DEPTH => {
            assert_eq!(whole.map_err(|e| e.kind()), Err(GuardErrorKind::TooDeep));
        }
        Reference::Valid(m) => {
            let summary = whole.expect("serde_json accepted a document the guard refused");
            assert_eq!(
                (summary.nodes, summary.depth, summary.bytes),
                (m.nodes, m.depth, data.len())
            );
            let exact = JsonLimits::unlimited()
                .max_body_bytes(data.len())
                .max_depth(m.depth)
                .max_nodes(m.nodes)
                .max_object_keys(m.max_keys)
                .max_array_len(m.max_items)
                .max_string_len(m.max_string);
            assert!(
                check_json(data, &exact).is_ok(),
                "limits equal to the measure must pass"
            );
            type Setter = fn(JsonLimits, usize) -> JsonLimits;
            let tighter: [(usize, Setter, GuardErrorKind); 6] = [
                (data.len(), JsonLimits::max_body_bytes, GuardErrorKind::TooLarge),
                (m.depth, JsonLimits::max_depth, GuardErrorKind::TooDeep),
                (m.nodes, JsonLimits::max_nodes, GuardErrorKind::TooManyNodes),
                (m.max_keys, JsonLimits::max_object_keys, GuardErrorKind::TooManyKeys),
                (m.max_items, JsonLimits::max_array_len, GuardErrorKind::ArrayTooLong),
                (m.max_string, JsonLimits::max_string_len, GuardErrorKind::StringTooLong),
            ];
            for (value, set, kind) in tighter {
                if value > 0 {
                    let l = set(JsonLimits::unlimited(), value - 1);
                    assert_eq!(check_json(data, &l).map_err(|e| e.kind()), Err(kind));
                }
            }
        }
    }
}
