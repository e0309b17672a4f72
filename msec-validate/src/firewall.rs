//! A request firewall in the manner of Spring Security's `StrictHttpFirewall`: it refuses request targets and
//! headers that no legitimate client sends but that attacks use to slip past route matching, path-based
//! authorization, proxies and file handling — encoded slashes, dot segments, matrix parameters, NUL and other
//! control characters, oversized targets and headers, unusual methods.
//!
//! Every rule has a stable code, answers 400 (problem+json, or trailers-only `INVALID_ARGUMENT` for gRPC) and
//! records a `validate` [`Decision`](msec_core::Decision); every rule is on by default and can be turned off
//! on its own. Put the firewall outermost (right inside the audit layer), so that nothing else parses what it
//! would refuse.
//!
//! | rule | code | refuses |
//! |---|---|---|
//! | [`Rule::EncodedSlash`] | `encoded_slash` | `%2F` in the path |
//! | [`Rule::Backslash`] | `backslash` | `\` or `%5C` in the path |
//! | [`Rule::DotSegment`] | `dot_segment` | a `.` or `..` path segment, raw or encoded in any mix (`%2e%2E`, `.%2e`) |
//! | [`Rule::Semicolon`] | `semicolon` | `;` or `%3B` in the path |
//! | [`Rule::EncodedPercent`] | `encoded_percent` | `%25` in the path (double encoding) |
//! | [`Rule::DoubleSlash`] | `double_slash` | an empty path segment (`//`) |
//! | [`Rule::NullByte`] | `null_byte` | NUL, raw or `%00`, in the path or query |
//! | [`Rule::ControlCharacter`] | `control_character` | other control characters (CR, LF, TAB, DEL, ...) in the path or query (raw or percent-encoded) and in header values |
//! | [`Rule::UriTooLong`] | `uri_too_long` | a request target longer than [`max_uri_len`](FirewallLayer::max_uri_len) (8 KiB) |
//! | [`Rule::TooManyHeaders`] | `too_many_headers` | more than [`max_headers`](FirewallLayer::max_headers) header fields (64) |
//! | [`Rule::HeaderTooLarge`] | `header_too_large` | a header field (name + value) over [`max_header_bytes`](FirewallLayer::max_header_bytes) (8 KiB) |
//! | [`Rule::HeadersTooLarge`] | `headers_too_large` | header fields over [`max_total_header_bytes`](FirewallLayer::max_total_header_bytes) together (32 KiB) |
//! | [`Rule::UnknownMethod`] | `unknown_method` | a method outside [`methods`](FirewallLayer::methods) (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS) |
//!
//! ```
//! use msec_validate::firewall::{FirewallLayer, Rule};
//!
//! let firewall = FirewallLayer::strict()
//!     .allow(Rule::Semicolon) // this service uses matrix parameters
//!     .max_headers(100);
//! # let _ = firewall;
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Method, Request, Response};
use msec_core::context::{self, Outcome};
use msec_core::future::ResponseFuture;
use msec_core::{ReasonCode, Rejection, ResponseBody};
use tower_layer::Layer;
use tower_service::Service;

use crate::codes;

/// One firewall rule. See the [module docs](self) for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// `%2F` in the path.
    EncodedSlash,
    /// `\` or `%5C` in the path.
    Backslash,
    /// A `.` or `..` segment, raw or percent-encoded.
    DotSegment,
    /// `;` or `%3B` in the path.
    Semicolon,
    /// `%25` in the path.
    EncodedPercent,
    /// `//` in the path.
    DoubleSlash,
    /// NUL in the path or query.
    NullByte,
    /// Control characters other than NUL in the path, query or header values.
    ControlCharacter,
    /// A request target over the length limit.
    UriTooLong,
    /// More header fields than the limit.
    TooManyHeaders,
    /// A header field over the size limit.
    HeaderTooLarge,
    /// All header fields together over the size limit.
    HeadersTooLarge,
    /// A method outside the allowed set.
    UnknownMethod,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 13] = [
        Rule::EncodedSlash,
        Rule::Backslash,
        Rule::DotSegment,
        Rule::Semicolon,
        Rule::EncodedPercent,
        Rule::DoubleSlash,
        Rule::NullByte,
        Rule::ControlCharacter,
        Rule::UriTooLong,
        Rule::TooManyHeaders,
        Rule::HeaderTooLarge,
        Rule::HeadersTooLarge,
        Rule::UnknownMethod,
    ];

    /// The stable reason code.
    pub fn code(self) -> ReasonCode {
        match self {
            Rule::EncodedSlash => codes::ENCODED_SLASH,
            Rule::Backslash => codes::BACKSLASH,
            Rule::DotSegment => codes::DOT_SEGMENT,
            Rule::Semicolon => codes::SEMICOLON,
            Rule::EncodedPercent => codes::ENCODED_PERCENT,
            Rule::DoubleSlash => codes::DOUBLE_SLASH,
            Rule::NullByte => codes::NULL_BYTE,
            Rule::ControlCharacter => codes::CONTROL_CHARACTER,
            Rule::UriTooLong => codes::URI_TOO_LONG,
            Rule::TooManyHeaders => codes::TOO_MANY_HEADERS,
            Rule::HeaderTooLarge => codes::HEADER_TOO_LARGE,
            Rule::HeadersTooLarge => codes::HEADERS_TOO_LARGE,
            Rule::UnknownMethod => codes::UNKNOWN_METHOD,
        }
    }

    /// The client-safe sentence of the rejection.
    pub fn detail(self) -> &'static str {
        match self {
            Rule::EncodedSlash => "the request path contains an encoded slash",
            Rule::Backslash => "the request path contains a backslash",
            Rule::DotSegment => "the request path contains a dot segment",
            Rule::Semicolon => "the request path contains a semicolon",
            Rule::EncodedPercent => "the request path contains an encoded percent sign",
            Rule::DoubleSlash => "the request path contains an empty segment",
            Rule::NullByte => "the request target contains a NUL character",
            Rule::ControlCharacter => "the request contains a control character",
            Rule::UriTooLong => "the request target is too long",
            Rule::TooManyHeaders => "the request has too many header fields",
            Rule::HeaderTooLarge => "a request header field is too large",
            Rule::HeadersTooLarge => "the request header fields are too large",
            Rule::UnknownMethod => "the request method is not allowed",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Where a firewall violation was found (recorded in the decision, not sent to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// `method`, `target`, `path`, `query` or `header:<name>`.
    pub location: Cow<'static, str>,
}

impl Violation {
    fn new(rule: Rule, location: impl Into<Cow<'static, str>>) -> Self {
        Self {
            rule,
            location: location.into(),
        }
    }

    /// The rejection sent for it: 400 with the rule's code.
    pub fn rejection(&self) -> Rejection {
        Rejection::bad_request(self.rule.code(), self.rule.detail())
    }
}

#[derive(Debug, Clone)]
struct Config {
    enabled: u16,
    max_uri_len: usize,
    max_headers: usize,
    max_header_bytes: usize,
    max_total_header_bytes: usize,
    methods: Vec<Method>,
}

/// The request firewall layer. See the [module docs](self). Clones share the configuration.
#[derive(Debug, Clone)]
pub struct FirewallLayer {
    config: Arc<Config>,
}

impl Default for FirewallLayer {
    fn default() -> Self {
        Self::strict()
    }
}

impl FirewallLayer {
    /// Every rule on, with the default limits.
    pub fn strict() -> Self {
        Self {
            config: Arc::new(Config {
                enabled: Rule::ALL.iter().fold(0, |a, r| a | r.bit()),
                max_uri_len: 8 * 1024,
                max_headers: 64,
                max_header_bytes: 8 * 1024,
                max_total_header_bytes: 32 * 1024,
                methods: vec![
                    Method::GET,
                    Method::HEAD,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                    Method::OPTIONS,
                ],
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Turns `rule` off: requests it would refuse pass.
    #[must_use]
    pub fn allow(self, rule: Rule) -> Self {
        self.edit(|c| c.enabled &= !rule.bit())
    }

    /// Turns `rule` (back) on.
    #[must_use]
    pub fn deny(self, rule: Rule) -> Self {
        self.edit(|c| c.enabled |= rule.bit())
    }

    /// True when `rule` is on.
    pub fn is_enabled(&self, rule: Rule) -> bool {
        self.config.enabled & rule.bit() != 0
    }

    /// Longest request target in bytes (default 8 KiB).
    #[must_use]
    pub fn max_uri_len(self, n: usize) -> Self {
        self.edit(|c| c.max_uri_len = n)
    }

    /// Most header fields (default 64; hyper itself refuses more than 100 with 431).
    #[must_use]
    pub fn max_headers(self, n: usize) -> Self {
        self.edit(|c| c.max_headers = n)
    }

    /// Largest header field, name + value, in bytes (default 8 KiB).
    #[must_use]
    pub fn max_header_bytes(self, n: usize) -> Self {
        self.edit(|c| c.max_header_bytes = n)
    }

    /// Largest sum of header fields (names + values) in bytes (default 32 KiB).
    #[must_use]
    pub fn max_total_header_bytes(self, n: usize) -> Self {
        self.edit(|c| c.max_total_header_bytes = n)
    }

    /// The allowed methods (default GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS; gRPC uses POST).
    #[must_use]
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods: Vec<Method> = methods.into_iter().collect();
        self.edit(|c| c.methods = methods)
    }

    /// Checks a request against the rules: the first violation, if any.
    pub fn inspect<B>(&self, req: &Request<B>) -> Result<(), Violation> {
        self.config.inspect(req.method(), req.uri(), req.headers())
    }
}

impl Config {
    fn on(&self, rule: Rule) -> bool {
        self.enabled & rule.bit() != 0
    }

    fn inspect(&self, method: &Method, uri: &http::Uri, headers: &HeaderMap) -> Result<(), Violation> {
        if self.on(Rule::UnknownMethod) && !self.methods.contains(method) {
            return Err(Violation::new(Rule::UnknownMethod, "method"));
        }
        let pq = uri.path_and_query().map_or("", |pq| pq.as_str());
        let target_len = pq.len() + uri.authority().map_or(0, |a| a.as_str().len());
        if self.on(Rule::UriTooLong) && target_len > self.max_uri_len {
            return Err(Violation::new(Rule::UriTooLong, "target"));
        }
        self.inspect_headers(headers)?;
        self.inspect_path(uri.path())?;
        if let Some(q) = uri.query() {
            self.inspect_query(q)?;
        }
        Ok(())
    }

    fn inspect_headers(&self, headers: &HeaderMap) -> Result<(), Violation> {
        if self.on(Rule::TooManyHeaders) && headers.len() > self.max_headers {
            return Err(Violation::new(Rule::TooManyHeaders, "headers"));
        }
        let mut total = 0usize;
        for (name, value) in headers {
            let size = name.as_str().len() + value.len();
            let loc = || Cow::Owned(format!("header:{name}"));
            if self.on(Rule::HeaderTooLarge) && size > self.max_header_bytes {
                return Err(Violation::new(Rule::HeaderTooLarge, loc()));
            }
            total += size;
            if self.on(Rule::HeadersTooLarge) && total > self.max_total_header_bytes {
                return Err(Violation::new(Rule::HeadersTooLarge, "headers"));
            }
            if self.on(Rule::NullByte) && value.as_bytes().contains(&0) {
                return Err(Violation::new(Rule::NullByte, loc()));
            }
            if self.on(Rule::ControlCharacter) && value.as_bytes().iter().any(|&b| (1..0x20).contains(&b) || b == 0x7f)
            {
                return Err(Violation::new(Rule::ControlCharacter, loc()));
            }
        }
        Ok(())
    }

    fn inspect_path(&self, path: &str) -> Result<(), Violation> {
        let b = path.as_bytes();
        let v = |r: Rule| Err(Violation::new(r, "path"));
        if self.on(Rule::DoubleSlash) && path.contains("//") {
            return v(Rule::DoubleSlash);
        }
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let decoded = if c == b'%' {
                match (b.get(i + 1).and_then(|&h| hex(h)), b.get(i + 2).and_then(|&l| hex(l))) {
                    (Some(h), Some(l)) => {
                        let d = (h << 4) | l;
                        match d {
                            b'/' if self.on(Rule::EncodedSlash) => return v(Rule::EncodedSlash),
                            b'%' if self.on(Rule::EncodedPercent) => return v(Rule::EncodedPercent),
                            _ => {}
                        }
                        i += 2;
                        d
                    }
                    _ => c,
                }
            } else {
                c
            };
            match decoded {
                b'\\' if self.on(Rule::Backslash) => return v(Rule::Backslash),
                b';' if self.on(Rule::Semicolon) => return v(Rule::Semicolon),
                0 if self.on(Rule::NullByte) => return v(Rule::NullByte),
                1..=0x1f | 0x7f if self.on(Rule::ControlCharacter) => return v(Rule::ControlCharacter),
                _ => {}
            }
            i += 1;
        }
        if self.on(Rule::DotSegment) && path.split('/').any(is_dot_segment) {
            return v(Rule::DotSegment);
        }
        Ok(())
    }

    fn inspect_query(&self, query: &str) -> Result<(), Violation> {
        let b = query.as_bytes();
        let v = |r: Rule| Err(Violation::new(r, "query"));
        let mut i = 0;
        while i < b.len() {
            let mut c = b[i];
            if c == b'%'
                && let (Some(h), Some(l)) = (b.get(i + 1).and_then(|&h| hex(h)), b.get(i + 2).and_then(|&l| hex(l)))
            {
                c = (h << 4) | l;
                i += 2;
            }
            match c {
                0 if self.on(Rule::NullByte) => return v(Rule::NullByte),
                1..=0x1f | 0x7f if self.on(Rule::ControlCharacter) => return v(Rule::ControlCharacter),
                _ => {}
            }
            i += 1;
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True for `.` and `..`, each dot raw or `%2e` / `%2E`.
fn is_dot_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    let mut dots = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b[i] == b'%' && b.len() >= i + 3 && b[i + 1] == b'2' && (b[i + 2] == b'e' || b[i + 2] == b'E') {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

impl<S> Layer<S> for FirewallLayer {
    type Service = Firewall<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Firewall {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`FirewallLayer`].
#[derive(Clone)]
pub struct Firewall<S> {
    inner: S,
    layer: FirewallLayer,
}

impl<S: fmt::Debug> fmt::Debug for Firewall<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Firewall")
            .field("inner", &self.inner)
            .field("config", &self.layer.config)
            .finish()
    }
}

impl<S> Firewall<S> {
    /// Wraps `inner` with the strict firewall.
    pub fn new(inner: S) -> Self {
        FirewallLayer::strict().layer(inner)
    }
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Firewall<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = msec_core::layer_span!("msec.firewall");
        let _entered = span.enter();
        match self.layer.inspect(&req) {
            Ok(()) => {
                context::record_with(
                    req.extensions(),
                    "validate",
                    Outcome::Allow,
                    codes::REQUEST_CLEAN,
                    |_| {},
                );
                ResponseFuture::inner_in(self.inner.call(req), span.clone())
            }
            Err(violation) => {
                let code = violation.rule.code();
                context::record_with(req.extensions(), "validate", Outcome::Deny, code, |d| {
                    d.detail("location", violation.location.clone());
                });
                metrics::counter!("msec_validate_firewall_rejections_total", "code" => code.as_str()).increment(1);
                tracing::debug!(code = %code, location = %violation.location, "request refused by the firewall");
                ResponseFuture::ready(violation.rejection().into_response(req.headers()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments() {
        for s in [".", "..", "%2e", "%2E%2e", ".%2E", "%2e."] {
            assert!(is_dot_segment(s), "{s}");
        }
        for s in ["", "...", "a..", ".a", "%2e%2e%2e", "%2", "%2f"] {
            assert!(!is_dot_segment(s), "{s}");
        }
    }
}
