//! Redaction and escaping: JSON fields by name or JSON pointer, and text made safe for a terminal.
//!
//! Log lines are JSON written by serde_json, which escapes every control character, quote and backslash, so a
//! value can never end a line or add members: a client cannot forge a record. What remains is display: a value
//! may hold ANSI escape sequences or bidirectional overrides that a terminal would obey when the string is
//! printed raw — [`for_terminal`] neutralises those for `msec audit tail`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The replacement for redacted values.
pub const REDACTED: &str = "[REDACTED]";

/// Field names redacted by default (compared case-insensitively, ignoring `-` and `_`).
pub const DEFAULT_REDACTED_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "clientsecret",
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "apikey",
    "authorization",
    "cookie",
    "setcookie",
    "privatekey",
    "creditcard",
    "cardnumber",
    "cvv",
    "cvc",
    "ssn",
    "pin",
    "otp",
];

/// Redacts JSON values by member name (anywhere in the document) or by JSON pointer.
///
/// ```
/// use msec_audit::Redactor;
/// use serde_json::json;
///
/// let r = Redactor::new().name("iban").pointer("/customer/birth_date");
/// let mut v = json!({"user": "ann", "Password": "hunter2", "iban": "DE89…",
///                    "customer": {"birth_date": "1990-01-01", "city": "Oslo"}});
/// r.redact(&mut v);
/// assert_eq!(v, json!({"user": "ann", "Password": "[REDACTED]", "iban": "[REDACTED]",
///                      "customer": {"birth_date": "[REDACTED]", "city": "Oslo"}}));
/// ```
#[derive(Debug, Clone)]
pub struct Redactor {
    names: HashSet<String>,
    pointers: Vec<Vec<String>>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

fn norm(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

impl Redactor {
    /// A redactor with the [default names](DEFAULT_REDACTED_NAMES).
    pub fn new() -> Self {
        Self {
            names: DEFAULT_REDACTED_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            pointers: Vec::new(),
        }
    }

    /// A redactor with no names at all: add your own.
    pub fn empty() -> Self {
        Self {
            names: HashSet::new(),
            pointers: Vec::new(),
        }
    }

    /// Also redacts members named `name`, at any depth (case-insensitive, ignoring `-` and `_`).
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        self.names.insert(norm(name));
        self
    }

    /// Also redacts the value at an RFC 6901 JSON pointer; a `*` segment matches every member or element.
    #[must_use]
    pub fn pointer(mut self, pointer: &str) -> Self {
        let segs = pointer
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        self.pointers.push(segs);
        self
    }

    /// True when a member called `name` is redacted.
    pub fn is_redacted_name(&self, name: &str) -> bool {
        self.names.contains(&norm(name))
    }

    /// Redacts `v` in place.
    pub fn redact(&self, v: &mut Value) {
        for p in &self.pointers {
            redact_pointer(v, p);
        }
        if !self.names.is_empty() {
            self.redact_names(v, 0);
        }
    }

    /// Redacts the members of a map in place.
    pub fn redact_map(&self, m: &mut Map<String, Value>) {
        if m.is_empty() {
            return;
        }
        let mut v = Value::Object(std::mem::take(m));
        self.redact(&mut v);
        if let Value::Object(o) = v {
            *m = o;
        }
    }

    fn redact_names(&self, v: &mut Value, depth: usize) {
        if depth > 64 {
            *v = Value::from(REDACTED);
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, val) in m.iter_mut() {
                    if self.is_redacted_name(k) {
                        *val = Value::from(REDACTED);
                    } else {
                        self.redact_names(val, depth + 1);
                    }
                }
            }
            Value::Array(a) => {
                for val in a {
                    self.redact_names(val, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// Redacts an `application/x-www-form-urlencoded` body into a JSON object of its fields.
    pub(crate) fn redact_form(&self, body: &[u8]) -> Value {
        let mut m = Map::new();
        for pair in body.split(|&b| b == b'&').take(256) {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let k = form_decode(k);
            let v = if self.is_redacted_name(&k) {
                REDACTED.to_owned()
            } else {
                form_decode(v)
            };
            m.insert(k, Value::from(v));
        }
        Value::Object(m)
    }
}

fn form_decode(b: &[u8]) -> String {
    let plus: Vec<u8> = b.iter().map(|&c| if c == b'+' { b' ' } else { c }).collect();
    percent_decode(&plus)
}

fn percent_decode(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = (b[i + 1] as char).to_digit(16);
            let l = (b[i + 2] as char).to_digit(16);
            if let (Some(h), Some(l)) = (h, l) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact_pointer(v: &mut Value, segs: &[String]) {
    let Some((first, rest)) = segs.split_first() else {
        *v = Value::from(REDACTED);
        return;
    };
    match v {
        Value::Object(m) => {
            if first == "*" {
                for val in m.values_mut() {
                    redact_pointer(val, rest);
                }
            } else if let Some(val) = m.get_mut(first.as_str()) {
                redact_pointer(val, rest);
            }
        }
        Value::Array(a) => {
            if first == "*" {
                for val in a.iter_mut() {
                    redact_pointer(val, rest);
                }
            } else if let Some(val) = first.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                redact_pointer(val, rest);
            }
        }
        _ => {}
    }
}

/// `s` with everything a terminal would interpret made visible: C0 and C1 control characters (ESC starts ANSI
/// sequences), DEL, and Unicode bidirectional controls (which reorder displayed text) become `\x1b`-style or
/// `\u{202e}`-style escapes. Newlines too, so one record stays one line.
///
/// ```
/// assert_eq!(msec_audit::redact::for_terminal("a\x1b[31mb\nc\u{202e}"), r"a\x1b[31mb\x0ac\u{202e}");
/// ```
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        c.is_control()
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
    };
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            if (c as u32) < 0x100 {
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_with_wildcards() {
        let r = Redactor::empty().pointer("/items/*/card").pointer("/a~1b");
        let mut v = json!({"items": [{"card": "1", "n": 1}, {"card": "2"}], "a/b": 3, "card": "top"});
        r.redact(&mut v);
        assert_eq!(
            v,
            json!({"items": [{"card": REDACTED, "n": 1}, {"card": REDACTED}], "a/b": REDACTED, "card": "top"})
        );
    }

    #[test]
    fn names_are_normalised() {
        let r = Redactor::new();
        let mut v = json!({"Access-Token": "x", "client_secret": "y", "nested": [{"API_KEY": "z"}], "user": "u"});
        r.redact(&mut v);
        assert_eq!(
            v,
            json!({"Access-Token": REDACTED, "client_secret": REDACTED, "nested": [{"API_KEY": REDACTED}], "user": "u"})
        );
    }

    #[test]
    fn forms() {
        let r = Redactor::new();
        let v = r.redact_form(b"user=ann+b&password=hunter2&x=%41%zz");
        assert_eq!(v, json!({"user": "ann b", "password": REDACTED, "x": "A%zz"}));
    }

    #[test]
    fn terminal() {
        assert_eq!(for_terminal("plain"), "plain");
        assert_eq!(for_terminal("\u{9b}2J"), "\\x9b2J");
    }
}
