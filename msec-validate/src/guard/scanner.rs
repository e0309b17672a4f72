//! The streaming JSON scanner: one pass over the bytes, resumable at any chunk boundary, no tree built.

use std::fmt;

use super::limits::JsonLimits;

/// What is wrong with a document, as found by [`JsonScanner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GuardErrorKind {
    /// The bytes are not JSON (RFC 8259), or the document is empty or truncated.
    Syntax,
    /// A string holds bytes that are not UTF-8.
    InvalidUtf8,
    /// Containers are nested deeper than [`JsonLimits::max_depth`].
    TooDeep,
    /// An object has more members than [`JsonLimits::max_object_keys`].
    TooManyKeys,
    /// An array has more elements than [`JsonLimits::max_array_len`].
    ArrayTooLong,
    /// A string (or member name) is longer than [`JsonLimits::max_string_len`] characters.
    StringTooLong,
    /// The document has more values than [`JsonLimits::max_nodes`].
    TooManyNodes,
    /// The document is larger than [`JsonLimits::max_body_bytes`].
    TooLarge,
}

impl GuardErrorKind {
    /// A short description, free of any document content.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "the request body is not valid JSON",
            Self::InvalidUtf8 => "the request body is not valid UTF-8",
            Self::TooDeep => "the JSON document is nested too deeply",
            Self::TooManyKeys => "a JSON object has too many members",
            Self::ArrayTooLong => "a JSON array has too many elements",
            Self::StringTooLong => "a JSON string is too long",
            Self::TooManyNodes => "the JSON document has too many values",
            Self::TooLarge => "the request body is too large",
        }
    }
}

/// Why the guard refused a document, and at which byte offset (0-based, from the start of the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuardError {
    kind: GuardErrorKind,
    offset: usize,
}

impl GuardError {
    pub(crate) fn new(kind: GuardErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }
    /// What is wrong.
    pub fn kind(&self) -> GuardErrorKind {
        self.kind
    }
    /// The byte offset where the problem was found: the offending byte, the first byte of an invalid UTF-8
    /// sequence (like [`std::str::Utf8Error::valid_up_to`]), the byte that exceeded a limit, or the length of
    /// the body when it ended too early.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.kind.as_str(), self.offset)
    }
}

impl std::error::Error for GuardError {}

/// What a successful scan saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct JsonSummary {
    /// Length of the document in bytes.
    pub bytes: usize,
    /// Number of values (containers and scalars; member names are not values).
    pub nodes: usize,
    /// Deepest container nesting (a scalar document has depth 0, `[]` depth 1).
    pub depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value must start here (document start, after `:`, after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `{`: a member name or `}`.
    ObjectFirst,
    /// After `,` in an object: a member name.
    Key,
    /// After a member name: `:`.
    Colon,
    /// After a complete value.
    After,
    /// Inside a string.
    Str,
    /// After `\` in a string.
    Escape,
    /// Reading the 4 hex digits of `\u`.
    Hex,
    /// After a high surrogate escape: `\` must follow.
    LowBackslash,
    /// After a high surrogate escape and `\`: `u` must follow.
    LowU,
    /// Inside a multi-byte UTF-8 sequence.
    Utf8,
    /// Inside `true`, `false` or `null`.
    Literal,
    /// Inside a number.
    Number(Num),
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    object: bool,
    count: usize,
}

/// Bytes that may appear in a string without further checks: printable ASCII other than `"` and `\`.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x20;
    while i < 0x80 {
        t[i] = i != b'"' as usize && i != b'\\' as usize;
        i += 1;
    }
    t
};

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The number of continuation bytes and the range of the first one, for a UTF-8 lead byte (RFC 3629).
#[inline]
fn utf8_lead(b: u8) -> Option<(u8, u8, u8)> {
    Some(match b {
        0xC2..=0xDF => (1, 0x80, 0xBF),
        0xE0 => (2, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
        0xED => (2, 0x80, 0x9F),
        0xF0 => (3, 0x90, 0xBF),
        0xF1..=0xF3 => (3, 0x80, 0xBF),
        0xF4 => (3, 0x80, 0x8F),
        _ => return None,
    })
}

#[inline]
fn hex(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some(u16::from(b - b'0')),
        b'a'..=b'f' => Some(u16::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u16::from(b - b'A' + 10)),
        _ => None,
    }
}

/// A streaming, resumable JSON checker: feed it the body chunk by chunk as it arrives; it keeps O(depth) state,
/// never copies or decodes the document, and stops at the first problem — a limit exceeded, a syntax error or
/// invalid UTF-8 — with its byte offset.
///
/// It accepts exactly the documents `serde_json` accepts (RFC 8259: one value, optional surrounding whitespace,
/// strict number grammar, no lone surrogate escapes), except that it does not check whether a number fits an
/// `f64` (`1e400`), which the deserialiser reports later.
///
/// ```
/// use msec_validate::guard::{GuardErrorKind, JsonLimits, JsonScanner};
///
/// let limits = JsonLimits::default().max_depth(2);
/// let mut s = JsonScanner::new(&limits);
/// s.feed(br#"{"a": [1, "#)?;
/// s.feed(br#"2]}"#)?;
/// assert_eq!(s.finish()?.depth, 2);
///
/// let err = msec_validate::guard::check_json(b"[[[1]]]", &limits).unwrap_err();
/// assert_eq!((err.kind(), err.offset()), (GuardErrorKind::TooDeep, 2));
/// # Ok::<(), msec_validate::guard::GuardError>(())
/// ```
#[derive(Debug, Clone)]
pub struct JsonScanner {
    limits: JsonLimits,
    state: State,
    stack: Vec<Frame>,
    consumed: usize,
    nodes: usize,
    max_depth_seen: usize,
    in_key: bool,
    str_len: usize,
    utf8_need: u8,
    utf8_lo: u8,
    utf8_hi: u8,
    utf8_start: usize,
    hex_count: u8,
    hex_val: u16,
    hex_low: bool,
    lit: &'static [u8],
    lit_pos: usize,
    error: Option<GuardError>,
}

impl JsonScanner {
    /// A scanner enforcing `limits`.
    pub fn new(limits: &JsonLimits) -> Self {
        Self {
            limits: *limits,
            state: State::Value,
            stack: Vec::new(),
            consumed: 0,
            nodes: 0,
            max_depth_seen: 0,
            in_key: false,
            str_len: 0,
            utf8_need: 0,
            utf8_lo: 0,
            utf8_hi: 0,
            utf8_start: 0,
            hex_count: 0,
            hex_val: 0,
            hex_low: false,
            lit: b"",
            lit_pos: 0,
            error: None,
        }
    }

    /// Bytes fed so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// Scans the next chunk. After an error, every call returns that error again.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), GuardError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let limit = self.limits.max_body_bytes;
        let res = if chunk.len() > limit.saturating_sub(self.consumed) {
            let allowed = limit.saturating_sub(self.consumed);
            // Scan what is allowed first, so an earlier problem is reported as such.
            self.run(&chunk[..allowed])
                .and(Err(GuardError::new(GuardErrorKind::TooLarge, limit)))
        } else {
            self.run(chunk)
        };
        self.consumed = self.consumed.saturating_add(chunk.len());
        if let Err(e) = res {
            self.error = Some(e);
        }
        res
    }

    /// Ends the document: succeeds when exactly one complete JSON value was fed.
    pub fn finish(&mut self) -> Result<JsonSummary, GuardError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let State::Number(Num::Zero | Num::Int | Num::Frac | Num::ExpDigits) = self.state {
            self.state = State::After;
        }
        if self.state == State::After && self.stack.is_empty() {
            Ok(JsonSummary {
                bytes: self.consumed,
                nodes: self.nodes,
                depth: self.max_depth_seen,
            })
        } else {
            let e = GuardError::new(GuardErrorKind::Syntax, self.consumed);
            self.error = Some(e);
            Err(e)
        }
    }

    #[inline]
    fn err(&self, kind: GuardErrorKind, i: usize) -> GuardError {
        GuardError::new(kind, self.consumed + i)
    }

    /// Adds `n` characters to the current string, the first of which starts at chunk index `at`.
    #[inline]
    fn add_chars(&mut self, n: usize, at: usize) -> Result<(), GuardError> {
        let max = self.limits.max_string_len;
        if self.str_len + n > max {
            return Err(self.err(GuardErrorKind::StringTooLong, at + (max - self.str_len)));
        }
        self.str_len += n;
        Ok(())
    }

    /// Starts a value with byte `b` at chunk index `i`; returns the index after it.
    #[inline]
    fn begin_value(&mut self, b: u8, i: usize) -> Result<usize, GuardError> {
        if self.nodes >= self.limits.max_nodes {
            return Err(self.err(GuardErrorKind::TooManyNodes, i));
        }
        self.nodes += 1;
        match b {
            b'{' | b'[' => {
                if self.stack.len() >= self.limits.max_depth {
                    return Err(self.err(GuardErrorKind::TooDeep, i));
                }
                let object = b == b'{';
                self.stack.push(Frame { object, count: 0 });
                self.max_depth_seen = self.max_depth_seen.max(self.stack.len());
                self.state = if object { State::ObjectFirst } else { State::ArrayFirst };
            }
            b'"' => {
                self.in_key = false;
                self.str_len = 0;
                self.state = State::Str;
            }
            b't' | b'f' | b'n' => {
                self.lit = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.lit_pos = 1;
                self.state = State::Literal;
            }
            b'-' => self.state = State::Number(Num::Minus),
            b'0' => self.state = State::Number(Num::Zero),
            b'1'..=b'9' => self.state = State::Number(Num::Int),
            _ => return Err(self.err(GuardErrorKind::Syntax, i)),
        }
        Ok(i + 1)
    }

    /// Counts one more element (array) or member (object) in the innermost container.
    #[inline]
    fn count_member(&mut self, i: usize) -> Result<(), GuardError> {
        let (max_keys, max_items) = (self.limits.max_object_keys, self.limits.max_array_len);
        let Some(top) = self.stack.last_mut() else {
            return Ok(());
        };
        let (max, kind) = if top.object {
            (max_keys, GuardErrorKind::TooManyKeys)
        } else {
            (max_items, GuardErrorKind::ArrayTooLong)
        };
        if top.count >= max {
            return Err(self.err(kind, i));
        }
        top.count += 1;
        Ok(())
    }

    #[inline]
    fn begin_key(&mut self) {
        self.in_key = true;
        self.str_len = 0;
        self.state = State::Str;
    }

    #[inline]
    fn end_string(&mut self) {
        self.state = if self.in_key { State::Colon } else { State::After };
    }

    fn run(&mut self, c: &[u8]) -> Result<(), GuardError> {
        let n = c.len();
        let mut i = 0;
        while i < n {
            match self.state {
                State::Str => {
                    let start = i;
                    while i < n && PLAIN[c[i] as usize] {
                        i += 1;
                    }
                    if i > start {
                        self.add_chars(i - start, start)?;
                    }
                    if i == n {
                        break;
                    }
                    let b = c[i];
                    match b {
                        b'"' => {
                            self.end_string();
                            i += 1;
                        }
                        b'\\' => {
                            self.state = State::Escape;
                            i += 1;
                        }
                        0..=0x1f => return Err(self.err(GuardErrorKind::Syntax, i)),
                        _ => {
                            let Some((need, lo, hi)) = utf8_lead(b) else {
                                return Err(self.err(GuardErrorKind::InvalidUtf8, i));
                            };
                            self.add_chars(1, i)?;
                            self.utf8_start = self.consumed + i;
                            i += 1;
                            // Fast path: the whole sequence is in this chunk.
                            let need = usize::from(need);
                            if i + need <= n
                                && (lo..=hi).contains(&c[i])
                                && c[i + 1..i + need].iter().all(|&x| (0x80..=0xBF).contains(&x))
                            {
                                i += need;
                            } else {
                                self.utf8_need = need as u8;
                                self.utf8_lo = lo;
                                self.utf8_hi = hi;
                                self.state = State::Utf8;
                            }
                        }
                    }
                }
                State::Utf8 => {
                    let b = c[i];
                    if b < self.utf8_lo || b > self.utf8_hi {
                        return Err(GuardError::new(GuardErrorKind::InvalidUtf8, self.utf8_start));
                    }
                    i += 1;
                    self.utf8_need -= 1;
                    self.utf8_lo = 0x80;
                    self.utf8_hi = 0xBF;
                    if self.utf8_need == 0 {
                        self.state = State::Str;
                    }
                }
                State::Escape => {
                    match c[i] {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            self.add_chars(1, i)?;
                            self.state = State::Str;
                        }
                        b'u' => {
                            self.hex_count = 0;
                            self.hex_val = 0;
                            self.hex_low = false;
                            self.state = State::Hex;
                        }
                        _ => return Err(self.err(GuardErrorKind::Syntax, i)),
                    }
                    i += 1;
                }
                State::Hex => {
                    let Some(d) = hex(c[i]) else {
                        return Err(self.err(GuardErrorKind::Syntax, i));
                    };
                    self.hex_val = (self.hex_val << 4) | d;
                    self.hex_count += 1;
                    if self.hex_count == 4 {
                        let v = self.hex_val;
                        if self.hex_low {
                            if !(0xDC00..=0xDFFF).contains(&v) {
                                return Err(self.err(GuardErrorKind::Syntax, i));
                            }
                            self.state = State::Str;
                        } else if (0xDC00..=0xDFFF).contains(&v) {
                            return Err(self.err(GuardErrorKind::Syntax, i));
                        } else {
                            self.add_chars(1, i)?;
                            self.state = if (0xD800..=0xDBFF).contains(&v) {
                                State::LowBackslash
                            } else {
                                State::Str
                            };
                        }
                    }
                    i += 1;
                }
                State::LowBackslash => {
                    if c[i] != b'\\' {
                        return Err(self.err(GuardErrorKind::Syntax, i));
                    }
                    self.state = State::LowU;
                    i += 1;
                }
                State::LowU => {
                    if c[i] != b'u' {
                        return Err(self.err(GuardErrorKind::Syntax, i));
                    }
                    self.hex_count = 0;
                    self.hex_val = 0;
                    self.hex_low = true;
                    self.state = State::Hex;
                    i += 1;
                }
                State::Value => {
                    let b = c[i];
                    if is_ws(b) {
                        i += 1;
                    } else {
                        i = self.begin_value(b, i)?;
                    }
                }
                State::ArrayFirst => {
                    let b = c[i];
                    if is_ws(b) {
                        i += 1;
                    } else if b == b']' {
                        self.stack.pop();
                        self.state = State::After;
                        i += 1;
                    } else {
                        self.count_member(i)?;
                        i = self.begin_value(b, i)?;
                    }
                }
                State::ObjectFirst | State::Key => {
                    let b = c[i];
                    if is_ws(b) {
                        i += 1;
                    } else if b == b'"' {
                        self.count_member(i)?;
                        self.begin_key();
                        i += 1;
                    } else if b == b'}' && self.state == State::ObjectFirst {
                        self.stack.pop();
                        self.state = State::After;
                        i += 1;
                    } else {
                        return Err(self.err(GuardErrorKind::Syntax, i));
                    }
                }
                State::Colon => {
                    let b = c[i];
                    if is_ws(b) {
                        i += 1;
                    } else if b == b':' {
                        self.state = State::Value;
                        i += 1;
                    } else {
                        return Err(self.err(GuardErrorKind::Syntax, i));
                    }
                }
                State::After => {
                    let b = c[i];
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    let Some(top) = self.stack.last() else {
                        return Err(self.err(GuardErrorKind::Syntax, i));
                    };
                    match (b, top.object) {
                        (b',', false) => {
                            self.count_member(i + 1)?;
                            self.state = State::Value;
                            i += 1;
                        }
                        (b',', true) => {
                            self.state = State::Key;
                            i += 1;
                        }
                        (b']', false) | (b'}', true) => {
                            self.stack.pop();
                            i += 1;
                        }
                        _ => return Err(self.err(GuardErrorKind::Syntax, i)),
                    }
                }
                State::Literal => {
                    if c[i] != self.lit[self.lit_pos] {
                        return Err(self.err(GuardErrorKind::Syntax, i));
                    }
                    self.lit_pos += 1;
                    i += 1;
                    if self.lit_pos == self.lit.len() {
                        self.state = State::After;
                    }
                }
                State::Number(num) => {
                    let b = c[i];
                    let next = match (num, b) {
                        (Num::Minus, b'0') => Num::Zero,
                        (Num::Minus, b'1'..=b'9') => Num::Int,
                        (Num::Int, b'0'..=b'9') => {
                            // Fast path over a run of digits.
                            i += 1;
                            while i < n && c[i].is_ascii_digit() {
                                i += 1;
                            }
                            continue;
                        }
                        (Num::Zero | Num::Int, b'.') => Num::Dot,
                        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
                        (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
                        (Num::Exp, b'+' | b'-') => Num::ExpSign,
                        (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Num::ExpDigits,
                        (Num::Zero | Num::Int | Num::Frac | Num::ExpDigits, _) => {
                            // The number ended; this byte belongs to what follows it.
                            self.state = State::After;
                            continue;
                        }
                        _ => return Err(self.err(GuardErrorKind::Syntax, i)),
                    };
                    self.state = State::Number(next);
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

/// Checks a complete document in one call: [`JsonScanner::feed`] + [`JsonScanner::finish`].
pub fn check_json(bytes: &[u8], limits: &JsonLimits) -> Result<JsonSummary, GuardError> {
    let mut s = JsonScanner::new(limits);
    s.feed(bytes)?;
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(doc: &[u8]) -> Result<JsonSummary, (GuardErrorKind, usize)> {
        check_json(doc, &JsonLimits::unlimited()).map_err(|e| (e.kind(), e.offset()))
    }

    #[test]
    fn accepts_json() {
        for doc in [
            &b"0"[..],
            b" -0.5e+10 ",
            b"[]",
            b"{}",
            b"[1, 2.5, -3e2, true, false, null, \"x\"]",
            br#"{"a": {"b": [{}, [], ""]}, "c\u00e9\n": "\ud83d\ude00"}"#,
            "\"caf\u{e9} \u{1F600}\"".as_bytes(),
            b"\t\r\n[ ]\n",
        ] {
            assert!(kind(doc).is_ok(), "{}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn refuses_with_offsets() {
        let cases: &[(&[u8], GuardErrorKind, usize)] = &[
            (b"", GuardErrorKind::Syntax, 0),
            (b"   ", GuardErrorKind::Syntax, 3),
            (b"[1,]", GuardErrorKind::Syntax, 3),
            (b"{\"a\":1,}", GuardErrorKind::Syntax, 7),
            (b"01", GuardErrorKind::Syntax, 1),
            (b"1.", GuardErrorKind::Syntax, 2),
            (b"-", GuardErrorKind::Syntax, 1),
            (b"[1 2]", GuardErrorKind::Syntax, 3),
            (b"tru", GuardErrorKind::Syntax, 3),
            (b"trux", GuardErrorKind::Syntax, 3),
            (b"{} {}", GuardErrorKind::Syntax, 3),
            (b"\"a\x01\"", GuardErrorKind::Syntax, 2),
            (b"\"\\x\"", GuardErrorKind::Syntax, 2),
            (b"\"\\udc00\"", GuardErrorKind::Syntax, 6),
            (b"\"\\ud800x\"", GuardErrorKind::Syntax, 7),
            (b"\"\\ud800\\u0041\"", GuardErrorKind::Syntax, 12),
            (b"\"ab\xffcd\"", GuardErrorKind::InvalidUtf8, 3),
            (b"\"ab\xc3\"", GuardErrorKind::InvalidUtf8, 3),
            (b"\"\xed\xa0\x80\"", GuardErrorKind::InvalidUtf8, 1),
            (b"\"\xe0\x80\x80\"", GuardErrorKind::InvalidUtf8, 1),
            (b"[\xff]", GuardErrorKind::Syntax, 1),
        ];
        for (doc, k, off) in cases {
            assert_eq!(
                kind(doc).map(|_| ()),
                Err((*k, *off)),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let l = JsonLimits::unlimited().max_string_len(3);
        assert!(check_json(br#""abc""#, &l).is_ok());
        assert!(check_json(br#""\u00e9\n\ud83d\ude00""#, &l).is_ok());
        let e = check_json(br#"["abcd"]"#, &l).unwrap_err();
        assert_eq!((e.kind(), e.offset()), (GuardErrorKind::StringTooLong, 5));
        let e = check_json(br#"{"abcd": 1}"#, &l).unwrap_err();
        assert_eq!(e.kind(), GuardErrorKind::StringTooLong);

        let l = JsonLimits::unlimited().max_array_len(2).max_object_keys(1);
        assert!(check_json(b"[1,[2,3]]", &l).is_ok());
        assert_eq!(
            check_json(b"[1,2,3]", &l).unwrap_err().kind(),
            GuardErrorKind::ArrayTooLong
        );
        assert_eq!(
            check_json(br#"{"a":1,"a":2}"#, &l).unwrap_err().kind(),
            GuardErrorKind::TooManyKeys
        );

        let l = JsonLimits::unlimited().max_nodes(3);
        assert!(check_json(b"[1,2]", &l).is_ok());
        assert_eq!(
            check_json(b"[1,2,3]", &l).unwrap_err().kind(),
            GuardErrorKind::TooManyNodes
        );

        let l = JsonLimits::unlimited().max_body_bytes(4);
        assert!(check_json(b"[12]", &l).is_ok());
        let e = check_json(b"[123]", &l).unwrap_err();
        assert_eq!((e.kind(), e.offset()), (GuardErrorKind::TooLarge, 4));
        // An earlier problem is reported as such.
        assert_eq!(check_json(b"[}   ", &l).unwrap_err().kind(), GuardErrorKind::Syntax);
    }

    #[test]
    fn errors_are_sticky_and_chunking_is_invisible() {
        let mut s = JsonScanner::new(&JsonLimits::default());
        assert!(s.feed(b"[x").is_err());
        assert!(s.feed(b"]").is_err());
        assert!(s.finish().is_err());

        let doc = "{\"k\u{e9}y\": [\"\\ud83d\\ude00 \u{1F600}\", -12.5e-3, true, null]}".as_bytes();
        let whole = check_json(doc, &JsonLimits::default()).unwrap();
        for cut in 0..=doc.len() {
            let mut s = JsonScanner::new(&JsonLimits::default());
            s.feed(&doc[..cut]).unwrap();
            s.feed(&doc[cut..]).unwrap();
            assert_eq!(s.finish().unwrap(), whole, "cut at {cut}");
        }
    }
}
