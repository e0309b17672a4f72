//! Strict JWS compact serialization (RFC 7515 §7.1) as RFC 8725 asks: the size cap first, then exactly three
//! base64url segments without padding or whitespace (canonical encodings only), UTF-8 JSON objects, no
//! duplicate header parameters or claims, no `crit`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{AuthnError, AuthnErrorKind};
use crate::keys::{MAX_KID_LEN, parse_alg};

fn malformed(detail: &'static str) -> AuthnError {
    AuthnError::new(AuthnErrorKind::MalformedToken, detail)
}

/// The protected header fields msec looks at.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
}

/// A token split into its parts, header parsed.
#[derive(Debug)]
pub(crate) struct Compact<'t> {
    /// `base64url(header) . base64url(payload)`: what the signature covers.
    pub(crate) signing_input: &'t str,
    pub(crate) header: Header,
    pub(crate) payload: &'t str,
    pub(crate) signature: &'t str,
}

/// Marks a header parameter as present whatever its value (even `null`).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Present,
    /// JWE marker: a JWE is never accepted as a JWS.
    #[serde(default)]
    enc: Present,
}

/// Byte classes: 1 = base64url symbol, 2 = `.`, 0 = anything else.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            1
        } else if b == b'.' {
            2
        } else {
            0
        };
        i += 1;
    }
    t
};

#[inline]
fn is_b64url(b: u8) -> bool {
    CLASS[usize::from(b)] == 1
}

/// True when `token` has the shape of a compact JWS: three base64url segments. Used to decide whether a bearer
/// credential is "ours" before any decoding.
pub(crate) fn looks_like_jws(token: &str) -> bool {
    let mut dots = 0usize;
    let mut bad = false;
    for &b in token.as_bytes() {
        let c = CLASS[usize::from(b)];
        dots += usize::from(c == 2);
        bad |= c == 0;
    }
    !bad && dots == 2
}

/// Splits and checks the compact form and parses the header. `max_len` is checked before anything else.
pub(crate) fn split(token: &str, max_len: usize) -> Result<Compact<'_>, AuthnError> {
    if token.len() > max_len {
        return Err(AuthnError::new(
            AuthnErrorKind::TokenTooLarge,
            format!("{} bytes, limit {max_len}", token.len()),
        ));
    }
    let bytes = token.as_bytes();
    let mut dots = [0usize; 2];
    let mut n = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'.' {
            if n == 2 {
                return Err(malformed("more than three segments"));
            }
            dots[n] = i;
            n += 1;
        } else if !is_b64url(b) {
            return Err(malformed(
                "a character outside base64url (padding, whitespace, non-ASCII?)",
            ));
        }
    }
    if n != 2 {
        return Err(malformed("not three segments"));
    }
    let (h, p, s) = (&token[..dots[0]], &token[dots[0] + 1..dots[1]], &token[dots[1] + 1..]);
    if h.is_empty() || p.is_empty() {
        return Err(malformed("empty header or payload segment"));
    }
    let header_json = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| malformed("header is not canonical base64url"))?;
    let raw: RawHeader = serde_json::from_slice(&header_json).map_err(|_| malformed("header is not a JSON object"))?;
    if raw.enc.0 {
        return Err(malformed("a JWE header (`enc`) in a JWS"));
    }
    let alg_name = raw.alg.ok_or_else(|| malformed("header has no `alg`"))?;
    let Some(alg) = parse_alg(&alg_name) else {
        let detail = if alg_name.eq_ignore_ascii_case("none") {
            "alg `none`".to_owned()
        } else {
            format!("unsupported alg {:?}", crate::util::sanitize(&alg_name))
        };
        return Err(AuthnError::new(AuthnErrorKind::AlgNotAllowed, detail));
    };
    if raw.crit.0 {
        return Err(AuthnError::new(
            AuthnErrorKind::UnsupportedCrit,
            "header lists `crit` parameters",
        ));
    }
    let kid = match raw.kid {
        Some(k) if k.is_empty() || k.len() > MAX_KID_LEN => {
            return Err(AuthnError::new(
                AuthnErrorKind::UnknownKid,
                format!("kid of {} bytes", k.len()),
            ));
        }
        k => k,
    };
    Ok(Compact {
        signing_input: &token[..dots[1]],
        header: Header { alg, kid, typ: raw.typ },
        payload: p,
        signature: s,
    })
}

/// A JSON object whose top-level member names are unique.
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<StrictObject, A::Error> {
                let mut m = Map::new();
                while let Some(k) = a.next_key::<String>()? {
                    let v: Value = a.next_value()?;
                    if m.insert(k, v).is_some() {
                        return Err(de::Error::custom("duplicate member"));
                    }
                }
                Ok(StrictObject(m))
            }
        }
        d.deserialize_map(V)
    }
}

/// Decodes and parses the payload: a JSON object with unique member names.
pub(crate) fn claims(payload: &str) -> Result<Map<String, Value>, AuthnError> {
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| malformed("payload is not canonical base64url"))?;
    serde_json::from_slice::<StrictObject>(&json)
        .map(|o| o.0)
        .map_err(|_| malformed("payload is not a JSON object with unique member names"))
}

/// Decodes the signature. An empty signature is a bad signature, not a malformed token.
pub(crate) fn signature(sig: &str) -> Result<Vec<u8>, AuthnError> {
    if sig.is_empty() {
        return Err(AuthnError::new(AuthnErrorKind::BadSignature, "the signature is empty"));
    }
    URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| malformed("signature is not canonical base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use msec_test_support::keys::b64url;

    fn tok(header: &str, payload: &str, sig: &str) -> String {
        format!("{}.{}.{sig}", b64url(header.as_bytes()), b64url(payload.as_bytes()))
    }

    fn kind(r: Result<Compact<'_>, AuthnError>) -> AuthnErrorKind {
        r.err().map(|e| e.kind()).unwrap_or(AuthnErrorKind::MissingCredentials)
    }

    #[test]
    fn accepts_a_plain_header() {
        let t = tok(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT","x5t":"ignored"}"#,
            "{}",
            "c2ln",
        );
        let c = split(&t, 8192).unwrap();
        assert_eq!(c.header.alg, Algorithm::ES256);
        assert_eq!(c.header.kid.as_deref(), Some("k1"));
        assert_eq!(c.signature, "c2ln");
        assert!(looks_like_jws(&t));
    }

    #[test]
    fn refusals() {
        use AuthnErrorKind::*;
        let ok_payload = "{}";
        assert_eq!(
            kind(split(&tok(r#"{"alg":"none"}"#, ok_payload, ""), 8192)),
            AlgNotAllowed
        );
        assert_eq!(
            kind(split(&tok(r#"{"alg":"nOnE"}"#, ok_payload, ""), 8192)),
            AlgNotAllowed
        );
        assert_eq!(
            kind(split(&tok(r#"{"alg":"HS1"}"#, ok_payload, "x"), 8192)),
            AlgNotAllowed
        );
        assert_eq!(
            kind(split(&tok(r#"{"alg":"rs256"}"#, ok_payload, "x"), 8192)),
            AlgNotAllowed
        );
        assert_eq!(
            kind(split(&tok(r#"{"typ":"JWT"}"#, ok_payload, "x"), 8192)),
            MalformedToken
        );
        assert_eq!(kind(split(&tok(r#"{"alg":5}"#, ok_payload, "x"), 8192)), MalformedToken);
        assert_eq!(
            kind(split(&tok(r#"{"alg":"RS256","alg":"none"}"#, ok_payload, "x"), 8192)),
            MalformedToken
        );
        assert_eq!(
            kind(split(&tok(r#"{"alg":"RS256","crit":["exp"]}"#, ok_payload, "x"), 8192)),
            UnsupportedCrit
        );
        assert_eq!(
            kind(split(&tok(r#"{"alg":"RS256","crit":null}"#, ok_payload, "x"), 8192)),
            UnsupportedCrit
        );
        assert_eq!(
            kind(split(&tok(r#"{"alg":"RS256","enc":"A128GCM"}"#, ok_payload, "x"), 8192)),
            MalformedToken
        );
        assert_eq!(kind(split(&tok(r#"[1]"#, ok_payload, "x"), 8192)), MalformedToken);
        assert_eq!(
            kind(split(&tok(r#"{"alg":"RS256"}"#, ok_payload, "x"), 10)),
            TokenTooLarge
        );
        assert_eq!(kind(split("a.b", 8192)), MalformedToken);
        assert_eq!(kind(split("a.b.c.d", 8192)), MalformedToken);
        assert_eq!(kind(split(".b.c", 8192)), MalformedToken);
        assert_eq!(kind(split("a=.b.c", 8192)), MalformedToken);
        assert_eq!(kind(split("a .b.c", 8192)), MalformedToken);
        assert_eq!(kind(split("é.b.c", 8192)), MalformedToken);
        // Non-canonical base64url: 16 header bytes leave 2 unused bits in the last symbol; setting one must be
        // refused even though it decodes to the same bytes.
        let h = b64url(br#"{"alg":"RS256"} "#);
        assert_eq!(h.len(), 22);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = *h.as_bytes().last().unwrap();
        let v = alphabet.iter().position(|c| *c == last).unwrap();
        assert_eq!(v & 3, 0);
        let tweaked = format!("{}{}", &h[..21], alphabet[v + 1] as char);
        assert!(split(&format!("{h}.e30.x"), 8192).is_ok());
        assert_eq!(kind(split(&format!("{tweaked}.e30.x"), 8192)), MalformedToken);
        let long_kid = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(300));
        assert_eq!(kind(split(&tok(&long_kid, ok_payload, "x"), 8192)), UnknownKid);
    }

    #[test]
    fn claims_are_strict() {
        assert!(claims(&b64url(br#"{"exp":1,"sub":"a"}"#)).is_ok());
        assert!(claims(&b64url(br#"{"exp":1,"exp":"2"}"#)).is_err());
        assert!(claims(&b64url(br#"[1,2]"#)).is_err());
        assert!(claims(&b64url(b"{\"sub\":\"\xff\"}")).is_err());
        assert!(claims(&b64url(br#"{"a":1} trailing"#)).is_err());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(claims(&b64url(deep.as_bytes())).is_err());
        assert_eq!(signature("").unwrap_err().kind(), AuthnErrorKind::BadSignature);
    }
}
