//! Where a token is read from: `Authorization: Bearer` (default), a custom header, a cookie, or — only through
//! an explicitly dangerous constructor — a query parameter.

use std::fmt;

use http::HeaderName;
use http::header::{AUTHORIZATION, COOKIE};

use crate::authenticator::RequestHead;
use crate::error::ConfigError;

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Bearer,
    Header { name: HeaderName, prefix: Option<String> },
    Cookie(String),
    Query(String),
}

/// A place a token may be found in a request. gRPC metadata are HTTP/2 headers, so the bearer source serves
/// tonic clients that send `authorization: Bearer ...` unchanged.
///
/// ```
/// use msec_authn::TokenSource;
/// let sources = [
///     TokenSource::bearer(),
///     TokenSource::header_with_prefix("x-upstream-token", "Token ")?,
///     TokenSource::cookie("access_token")?,
/// ];
/// # let _ = sources;
/// # Ok::<(), msec_authn::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSource(Kind);

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Bearer => f.write_str("Bearer"),
            Kind::Header { name, .. } => write!(f, "Header({name})"),
            Kind::Cookie(c) => write!(f, "Cookie({c})"),
            Kind::Query(q) => write!(f, "DangerQueryParameter({q})"),
        }
    }
}

/// What a source found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Extracted<'a> {
    /// Nothing there.
    None,
    /// A token.
    /// The raw token bytes (not yet checked for UTF-8: the cache is looked up before any other work).
    Found(&'a [u8]),
    /// Something there, but not usable (two values, an empty token, a bad header value).
    Malformed(&'static str),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl TokenSource {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1), scheme matched case-insensitively.
    pub fn bearer() -> Self {
        Self(Kind::Bearer)
    }

    /// The whole value of header `name`.
    pub fn header(name: &str) -> Result<Self, ConfigError> {
        let name =
            HeaderName::try_from(name).map_err(|_| ConfigError::InvalidSource(format!("header name {name:?}")))?;
        Ok(Self(Kind::Header { name, prefix: None }))
    }

    /// The value of header `name` after `prefix` (matched case-insensitively).
    pub fn header_with_prefix(name: &str, prefix: &str) -> Result<Self, ConfigError> {
        let Self(Kind::Header { name, .. }) = Self::header(name)? else {
            return Err(ConfigError::InvalidSource(name.to_owned()));
        };
        Ok(Self(Kind::Header {
            name,
            prefix: Some(prefix.to_owned()),
        }))
    }

    /// The cookie `name`.
    pub fn cookie(name: &str) -> Result<Self, ConfigError> {
        if !valid_name(name) {
            return Err(ConfigError::InvalidSource(format!("cookie name {name:?}")));
        }
        Ok(Self(Kind::Cookie(name.to_owned())))
    }

    /// **Dangerous**: the query parameter `name` (RFC 6750 §2.3). Tokens in URLs end up in access logs, proxies,
    /// browser history and `Referer` headers; use only where a client cannot send headers (e.g. WebSocket
    /// upgrades from browsers), with short-lived tokens.
    pub fn danger_query_parameter(name: &str) -> Result<Self, ConfigError> {
        if !valid_name(name) {
            return Err(ConfigError::InvalidSource(format!("query parameter name {name:?}")));
        }
        Ok(Self(Kind::Query(name.to_owned())))
    }

    pub(crate) fn extract<'a>(&self, head: &RequestHead<'a>) -> Extracted<'a> {
        match &self.0 {
            Kind::Bearer => bearer(head),
            Kind::Header { name, prefix } => custom_header(head, name, prefix.as_deref()),
            Kind::Cookie(name) => cookie(head, name),
            Kind::Query(name) => query(head, name),
        }
    }
}

fn bearer<'a>(head: &RequestHead<'a>) -> Extracted<'a> {
    let mut values = head.headers.get_all(AUTHORIZATION).iter();
    let Some(v) = values.next() else {
        return Extracted::None;
    };
    let bytes = v.as_bytes();
    let is_bearer =
        bytes.len() >= 6 && bytes[..6].eq_ignore_ascii_case(b"bearer") && bytes.get(6).is_none_or(|b| *b == b' ');
    if !is_bearer {
        // Another scheme (Basic, DPoP, ...): not ours.
        return Extracted::None;
    }
    if values.next().is_some() {
        return Extracted::Malformed("more than one Authorization header");
    }
    // The token's alphabet (and so UTF-8) is checked by whoever parses it, after the cache lookup; spaces inside
    // the token too (a JWT has none). Scanning here would cost every request, cached or not.
    let token = bytes[6..].trim_ascii();
    if token.is_empty() {
        return Extracted::Malformed("empty bearer token");
    }
    Extracted::Found(token)
}

fn custom_header<'a>(head: &RequestHead<'a>, name: &HeaderName, prefix: Option<&str>) -> Extracted<'a> {
    let mut values = head.headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Extracted::None;
    };
    if values.next().is_some() {
        return Extracted::Malformed("token header repeated");
    }
    let Ok(s) = v.to_str() else {
        return Extracted::Malformed("token header is not visible ASCII");
    };
    let s = s.trim();
    let token = match prefix {
        None => s,
        Some(p) => match s.get(..p.len()) {
            Some(head_part) if head_part.eq_ignore_ascii_case(p) => s[p.len()..].trim_start(),
            _ => return Extracted::None,
        },
    };
    if token.is_empty() {
        return Extracted::Malformed("empty token header");
    }
    Extracted::Found(token.as_bytes())
}

fn cookie<'a>(head: &RequestHead<'a>, name: &str) -> Extracted<'a> {
    let mut found: Option<&'a str> = None;
    for v in head.headers.get_all(COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for pair in s.split(';') {
            let Some((k, val)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() != name {
                continue;
            }
            if found.is_some() {
                // Two cookies of the same name (cookie tossing): refuse to guess.
                return Extracted::Malformed("token cookie repeated");
            }
            let val = val.trim();
            let val = val.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(val);
            found = Some(val);
        }
    }
    match found {
        None => Extracted::None,
        Some("") => Extracted::Malformed("empty token cookie"),
        Some(t) => Extracted::Found(t.as_bytes()),
    }
}

fn query<'a>(head: &RequestHead<'a>, name: &str) -> Extracted<'a> {
    let Some(q) = head.uri.query() else {
        return Extracted::None;
    };
    let mut found: Option<&'a str> = None;
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            continue;
        }
        if found.is_some() {
            return Extracted::Malformed("token query parameter repeated");
        }
        found = Some(v);
    }
    match found {
        None => Extracted::None,
        Some("") => Extracted::Malformed("empty token query parameter"),
        Some(t) => Extracted::Found(t.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn ext(src: &TokenSource, build: impl FnOnce(http::request::Builder) -> http::request::Builder) -> String {
        let req = build(Request::builder().uri("/p?x=1")).body(()).unwrap();
        match src.extract(&RequestHead::from_request(&req)) {
            Extracted::None => "none".into(),
            Extracted::Found(t) => format!("found:{}", String::from_utf8_lossy(t)),
            Extracted::Malformed(m) => format!("malformed:{m}"),
        }
    }

    #[test]
    fn bearer_forms() {
        let b = TokenSource::bearer();
        assert_eq!(ext(&b, |r| r.header("authorization", "Bearer abc")), "found:abc");
        assert_eq!(ext(&b, |r| r.header("authorization", "bEaReR   abc")), "found:abc");
        assert_eq!(ext(&b, |r| r.header("authorization", "Basic YTpi")), "none");
        assert_eq!(ext(&b, |r| r.header("authorization", "Bearerabc")), "none");
        assert_eq!(ext(&b, |r| r), "none");
        assert!(ext(&b, |r| r.header("authorization", "Bearer ")).starts_with("malformed"));
        assert!(ext(&b, |r| r.header("authorization", "Bearer")).starts_with("malformed"));
        assert_eq!(ext(&b, |r| r.header("authorization", "Bearer a b")), "found:a b");
        assert!(
            ext(&b, |r| r
                .header("authorization", "Bearer a")
                .header("authorization", "Bearer b"))
            .starts_with("malformed")
        );
        // Non-UTF-8 bytes are passed on: the token's parser refuses them (after the cache lookup).
        assert_eq!(
            ext(&b, |r| r.header(
                "authorization",
                http::HeaderValue::from_bytes(b"Bearer \xff").unwrap()
            )),
            "found:\u{fffd}"
        );
    }

    #[test]
    fn other_sources() {
        let h = TokenSource::header("x-token").unwrap();
        assert_eq!(ext(&h, |r| r.header("x-token", " abc ")), "found:abc");
        let hp = TokenSource::header_with_prefix("x-token", "Token ").unwrap();
        assert_eq!(ext(&hp, |r| r.header("x-token", "token abc")), "found:abc");
        assert_eq!(ext(&hp, |r| r.header("x-token", "abc")), "none");
        let c = TokenSource::cookie("at").unwrap();
        assert_eq!(ext(&c, |r| r.header("cookie", "a=1; at=tok; b=2")), "found:tok");
        assert_eq!(ext(&c, |r| r.header("cookie", "at=\"tok\"")), "found:tok");
        assert_eq!(ext(&c, |r| r.header("cookie", "xat=tok")), "none");
        assert!(ext(&c, |r| r.header("cookie", "at=1").header("cookie", "at=2")).starts_with("malformed"));
        let q = TokenSource::danger_query_parameter("access_token").unwrap();
        let req = Request::builder().uri("/ws?a=1&access_token=t0k").body(()).unwrap();
        assert_eq!(q.extract(&RequestHead::from_request(&req)), Extracted::Found(b"t0k"));
        let req = Request::builder()
            .uri("/ws?access_token=a&access_token=b")
            .body(())
            .unwrap();
        assert!(matches!(
            q.extract(&RequestHead::from_request(&req)),
            Extracted::Malformed(_)
        ));
        assert!(TokenSource::cookie("a b").is_err());
        assert!(TokenSource::header("bad header").is_err());
        assert_eq!(format!("{q:?}"), "DangerQueryParameter(access_token)");
    }
}
