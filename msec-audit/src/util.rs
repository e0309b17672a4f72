//! Small helpers: timestamps, event ids, hex, bounded strings.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// A UTC timestamp, serialised as RFC 3339 with microseconds (`2025-01-31T12:34:56.123456Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// Microseconds since the Unix epoch (0 before it).
    pub fn unix_micros(self) -> u64 {
        self.0
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// The RFC 3339 form.
    pub fn to_rfc3339(self) -> String {
        let mut s = String::with_capacity(27);
        push_rfc3339(self.0, &mut s);
        s
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match rfc3339_bytes(self.0) {
            // Always ASCII digits and separators.
            Some(b) => s.serialize_str(std::str::from_utf8(&b).unwrap_or_default()),
            None => s.serialize_str(&self.to_rfc3339()),
        }
    }
}

/// Appends `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC; times before 1970 print as the epoch).
pub(crate) fn push_rfc3339(t: SystemTime, out: &mut String) {
    if let Some(b) = rfc3339_bytes(t) {
        out.push_str(std::str::from_utf8(&b).unwrap_or_default());
        return;
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let micros = d.subsec_micros();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, dd) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
}

/// `t` in the RFC 3339 form of [`push_rfc3339`], without formatting machinery or allocation; `None` past the
/// year 9999.
fn rfc3339_bytes(t: SystemTime) -> Option<[u8; 27]> {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, dd) = civil_from_days((secs / 86_400) as i64);
    let y = u32::try_from(y).ok().filter(|&y| y <= 9999)?;
    let rem = (secs % 86_400) as u32;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, dd);
    put(11, 2, rem / 3600);
    put(14, 2, (rem / 60) % 60);
    put(17, 2, rem % 60);
    put(20, 6, d.subsec_micros());
    Some(b)
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A unique event id: a UUIDv7 (millisecond time, then a per-process random base plus a counter, so ids never
/// repeat within a process and collide across processes only with negligible probability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId([u8; 16]);

struct IdGen {
    base: [u8; 10],
    counter: AtomicU64,
}

fn id_gen() -> &'static IdGen {
    static GEN: OnceLock<IdGen> = OnceLock::new();
    GEN.get_or_init(|| {
        let mut base = [0u8; 10];
        // A failing system RNG leaves a zero base: ids stay unique within the process (the counter), only
        // cross-process uniqueness would suffer.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut base);
        IdGen {
            base,
            counter: AtomicU64::new(0),
        }
    })
}

impl EventId {
    /// A new id for an event at `t`.
    pub fn new(t: SystemTime) -> Self {
        let g = id_gen();
        let n = g.counter.fetch_add(1, Ordering::Relaxed);
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        b[6..].copy_from_slice(&g.base);
        let tail = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]).wrapping_add(n);
        b[8..].copy_from_slice(&tail.to_be_bytes());
        b[6] = (b[6] & 0x0f) | 0x70; // version 7
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        Self(b)
    }

    /// The canonical hyphenated lowercase form.
    pub fn to_hyphenated(&self) -> String {
        self.hyphenated_str().to_owned()
    }

    /// The hyphenated form in a stack buffer.
    fn hyphenated(&self) -> [u8; 36] {
        let mut out = [b'-'; 36];
        let mut j = 0;
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                j += 1;
            }
            out[j] = HEX[(b >> 4) as usize];
            out[j + 1] = HEX[(b & 0xf) as usize];
            j += 2;
        }
        out
    }

    fn hyphenated_str(&self) -> HyphenatedId {
        HyphenatedId(self.hyphenated())
    }
}

/// An event id's text, borrowed as `&str` without allocating.
struct HyphenatedId([u8; 36]);

impl std::ops::Deref for HyphenatedId {
    type Target = str;
    fn deref(&self) -> &str {
        // Hex digits and hyphens only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hyphenated_str())
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hyphenated_str())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

/// Writes the lowercase hex of `bytes` into `out` (`out.len() == 2 * bytes.len()`).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (b, o) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        o[0] = HEX[(b >> 4) as usize];
        o[1] = HEX[(b & 0xf) as usize];
    }
}

/// Parses exactly 64 lowercase hex digits.
pub(crate) fn parse_hash(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = unhex(pair[0])?;
        let lo = unhex(pair[1])?;
        out[i] = (hi << 4) | lo;
    }
    Some(out)
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` appended when cut.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 3);
    out.push_str(&s[..end]);
    out.push('…');
    out
}

/// Bytes as text (invalid UTF-8 replaced), cut to `max` bytes.
pub(crate) fn bounded_lossy(b: &[u8], max: usize) -> String {
    let cut = &b[..b.len().min(max)];
    let s = String::from_utf8_lossy(cut);
    if b.len() > max {
        format!("{s}…")
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(Timestamp(t).to_rfc3339(), "2023-11-14T22:13:20.123456Z");
        assert_eq!(Timestamp(UNIX_EPOCH).to_rfc3339(), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(Timestamp(leap).to_rfc3339(), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn ids_unique_and_v7() {
        let t = SystemTime::now();
        let a = EventId::new(t).to_hyphenated();
        let b = EventId::new(t).to_hyphenated();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    /// The reference forms: `format!` over `civil_from_days` and `hex`.
    fn slow_rfc3339(t: SystemTime) -> String {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let rem = secs % 86_400;
        let (y, m, dd) = civil_from_days((secs / 86_400) as i64);
        format!(
            "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            d.subsec_micros()
        )
    }

    proptest::proptest! {
        #[test]
        fn fast_forms_match_the_reference(micros in 0u64..400_000_000_000_000_000, id in proptest::array::uniform16(0u8..)) {
            let t = UNIX_EPOCH + Duration::from_micros(micros);
            let expect = slow_rfc3339(t);
            proptest::prop_assert_eq!(Timestamp(t).to_rfc3339(), expect.clone());
            proptest::prop_assert_eq!(serde_json::to_string(&Timestamp(t)).unwrap(), format!("\"{expect}\""));
            let h = hex(&id);
            let want = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
            let e = EventId(id);
            proptest::prop_assert_eq!(e.to_hyphenated(), want.clone());
            proptest::prop_assert_eq!(e.to_string(), want.clone());
            proptest::prop_assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{want}\""));
        }
    }

    #[test]
    fn bounding() {
        assert_eq!(bounded("héllo", 2), "h…");
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded_lossy(b"ab\xffcd", 3), "ab\u{fffd}…");
    }
}
