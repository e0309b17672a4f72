//! Route matching shared by the policy, rate limiting and audit: HTTP method + path template
//! (`/v1/orders/{id}`, `/files/{*rest}`) or gRPC `/pkg.Service/Method`, and a whole gRPC service.
//!
//! Templates use axum's syntax and semantics, and match the raw (still percent-encoded) request path exactly as
//! axum's router does, so a policy and the router agree on which route a request is:
//!
//! - a literal segment matches itself exactly (case-sensitive; a trailing slash is significant);
//! - `{name}` matches one non-empty segment;
//! - `{*name}` (last segment only) matches the non-empty rest of the path;
//! - `*` alone matches every request.
//!
//! [`RouteTable`] is a segment trie, not a list of regexes: a lookup costs about the depth of the path, whatever
//! the number of routes, and it reports *every* matching route from the most specific (static beats parameter
//! beats catch-all, left to right) to the least, so a DENY rule on `/admin/{*rest}` also covers `/admin/users`
//! when that has rules of its own.
//!
//! ```
//! use msec_core::route::{RouteSpec, RouteTable};
//!
//! let mut t = RouteTable::new();
//! t.insert("GET /v1/orders/{id}".parse::<RouteSpec>()?, "read");
//! t.insert("/v1/{*rest}".parse::<RouteSpec>()?, "v1");
//! t.insert("grpc /shop.Orders".parse::<RouteSpec>()?, "grpc");
//!
//! let hits: Vec<_> = t.matches(&http::Method::GET, "/v1/orders/7").map(|e| e.value).collect();
//! assert_eq!(hits, ["read", "v1"]);
//! let hits: Vec<_> = t.matches(&http::Method::POST, "/v1/orders/7").map(|e| e.value).collect();
//! assert_eq!(hits, ["v1"]);
//! assert_eq!(t.best_match(&http::Method::POST, "/shop.Orders/Get").unwrap().value, "grpc");
//! # Ok::<(), msec_core::route::RouteError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::Method;

/// Why a route spec or template is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route `{spec}`: {reason}")]
pub struct RouteError {
    spec: String,
    reason: &'static str,
}

impl RouteError {
    fn new(spec: &str, reason: &'static str) -> Self {
        Self {
            spec: spec.chars().take(200).collect(),
            reason,
        }
    }
    /// The offending spec.
    pub fn spec(&self) -> &str {
        &self.spec
    }
    /// What is wrong with it.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Which requests a rule applies to: an optional method and a path template, or every route.
///
/// Parsed from strings:
///
/// | spec                         | matches                                         |
/// |------------------------------|-------------------------------------------------|
/// | `*`                          | every request                                   |
/// | `GET *`                      | every GET request                               |
/// | `/healthz`                   | `/healthz`, any method                          |
/// | `GET /v1/orders/{id}`        | GET on one order                                |
/// | `/files/{*rest}`             | everything below `/files/`                      |
/// | `grpc /shop.Orders/Get`      | one gRPC method (`pkg.Service/Method` also ok)  |
/// | `grpc /shop.Orders`          | every method of a gRPC service                  |
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    method: Option<Method>,
    template: Option<Arc<str>>,
    source: Arc<str>,
}

impl RouteSpec {
    /// Every request, any method.
    pub fn any() -> Self {
        Self {
            method: None,
            template: None,
            source: Arc::from("*"),
        }
    }

    /// Parses a spec (see the table above).
    pub fn parse(spec: &str) -> Result<Self, RouteError> {
        let s = spec.trim();
        if s.is_empty() {
            return Err(RouteError::new(spec, "empty route"));
        }
        let (first, rest) = match s.split_once(char::is_whitespace) {
            Some((a, b)) => (a, Some(b.trim())),
            None => (s, None),
        };
        let (method, target, grpc) = match rest {
            None => (None, first, false),
            Some(target) if first.eq_ignore_ascii_case("grpc") => (Some(Method::POST), target, true),
            Some(_) if first == "ANY" || first == "*" => (None, rest.unwrap_or_default(), false),
            Some(target) => {
                if !first.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(RouteError::new(
                        spec,
                        "the method must be upper-case (GET, POST, ...), ANY, or `grpc`",
                    ));
                }
                let m = Method::from_bytes(first.as_bytes()).map_err(|_| RouteError::new(spec, "invalid method"))?;
                (Some(m), target, false)
            }
        };
        if target.contains(char::is_whitespace) {
            return Err(RouteError::new(spec, "unexpected whitespace in the path"));
        }
        let template = if grpc {
            let t = target.strip_prefix('/').unwrap_or(target);
            let valid =
                |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'));
            match t.split_once('/') {
                Some((svc, m)) if valid(svc) && valid(m) => format!("/{svc}/{m}"),
                None if valid(t) => format!("/{t}/{{*method}}"),
                _ => {
                    return Err(RouteError::new(
                        spec,
                        "a gRPC route is `grpc /package.Service` or `grpc /package.Service/Method`",
                    ));
                }
            }
        } else if target == "*" {
            return Ok(Self {
                method,
                template: None,
                source: Arc::from(s),
            });
        } else {
            validate_template(spec, target)?;
            target.to_owned()
        };
        Ok(Self {
            method,
            template: Some(Arc::from(template)),
            source: Arc::from(s),
        })
    }

    /// The method filter, `None` for any method.
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The path template, `None` for every route.
    pub fn template(&self) -> Option<&Arc<str>> {
        self.template.as_ref()
    }

    /// The spec as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RouteSpec({:?})", &*self.source)
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for RouteSpec {
    type Err = RouteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for RouteSpec {
    type Error = RouteError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

enum Seg<'a> {
    Static(&'a str),
    Param,
    CatchAll,
}

fn segments(template: &str) -> impl Iterator<Item = Seg<'_>> {
    template[1..].split('/').map(|s| {
        if s.starts_with("{*") {
            Seg::CatchAll
        } else if s.starts_with('{') {
            Seg::Param
        } else {
            Seg::Static(s)
        }
    })
}

fn validate_template(spec: &str, t: &str) -> Result<(), RouteError> {
    if !t.starts_with('/') {
        return Err(RouteError::new(spec, "a path template starts with `/`"));
    }
    let parts: Vec<&str> = t[1..].split('/').collect();
    for (i, seg) in parts.iter().enumerate() {
        let open = seg.contains('{');
        let close = seg.contains('}');
        if !open && !close {
            continue;
        }
        let inner = seg
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| RouteError::new(spec, "a parameter must be a whole segment: `{name}` or `{*name}`"))?;
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(RouteError::new(spec, "a parameter name is letters, digits and `_`"));
        }
        if catch_all && i + 1 != parts.len() {
            return Err(RouteError::new(spec, "a catch-all `{*name}` must be the last segment"));
        }
    }
    Ok(())
}

/// An entry of a [`RouteTable`].
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// The spec it was inserted with.
    pub spec: RouteSpec,
    /// The value.
    pub value: T,
}

#[derive(Debug, Default, Clone)]
struct Node {
    statics: HashMap<Box<str>, usize>,
    param: Option<usize>,
    here: Vec<usize>,
    catch_all: Vec<usize>,
}

/// A set of route specs with values, matched by a segment trie. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    nodes: Vec<Node>,
    entries: Vec<Entry<T>>,
    any_route: Vec<usize>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            nodes: vec![Node::default()],
            entries: Vec::new(),
            any_route: Vec::new(),
        }
    }

    /// Adds a route; a spec may be inserted several times with different values.
    pub fn insert(&mut self, spec: RouteSpec, value: T) {
        let idx = self.entries.len();
        match spec.template.clone() {
            None => self.any_route.push(idx),
            Some(t) => {
                let mut node = 0;
                for seg in segments(&t) {
                    node = match seg {
                        Seg::Static(s) => match self.nodes[node].statics.get(s) {
                            Some(&n) => n,
                            None => {
                                let n = self.push_node();
                                self.nodes[node].statics.insert(s.into(), n);
                                n
                            }
                        },
                        Seg::Param => match self.nodes[node].param {
                            Some(n) => n,
                            None => {
                                let n = self.push_node();
                                self.nodes[node].param = Some(n);
                                n
                            }
                        },
                        Seg::CatchAll => {
                            self.nodes[node].catch_all.push(idx);
                            self.entries.push(Entry { spec, value });
                            return;
                        }
                    };
                }
                self.nodes[node].here.push(idx);
            }
        }
        self.entries.push(Entry { spec, value });
    }

    fn push_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, in insertion order.
    pub fn entries(&self) -> &[Entry<T>] {
        &self.entries
    }

    /// Every entry matching `method` and `path`, most specific first; `*` routes come last.
    pub fn matches<'a>(&'a self, method: &'a Method, path: &'a str) -> impl Iterator<Item = &'a Entry<T>> + 'a {
        let mut out: Vec<usize> = Vec::new();
        if let Some(rest) = path.strip_prefix('/') {
            self.walk(0, Some(rest), &mut out);
        }
        out.extend_from_slice(&self.any_route);
        out.into_iter()
            .map(|i| &self.entries[i])
            .filter(move |e| e.spec.method.as_ref().is_none_or(|m| m == method))
    }

    /// The most specific entry matching `method` and `path`.
    pub fn best_match<'a>(&'a self, method: &'a Method, path: &'a str) -> Option<&'a Entry<T>> {
        self.matches(method, path).next()
    }

    fn walk(&self, node: usize, rest: Option<&str>, out: &mut Vec<usize>) {
        let n = &self.nodes[node];
        let Some(r) = rest else {
            out.extend_from_slice(&n.here);
            return;
        };
        let (seg, next) = match r.find('/') {
            Some(i) => (&r[..i], Some(&r[i + 1..])),
            None => (r, None),
        };
        if let Some(&child) = n.statics.get(seg) {
            self.walk(child, next, out);
        }
        if let (false, Some(p)) = (seg.is_empty(), n.param) {
            self.walk(p, next, out);
        }
        if !r.is_empty() {
            out.extend_from_slice(&n.catch_all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(s: &str) -> RouteSpec {
        s.parse().unwrap()
    }

    #[test]
    fn spec_errors() {
        for bad in [
            "",
            "get /x",
            "GET x",
            "/a/{*rest}/b",
            "/a/x{id}",
            "/a/{}",
            "/a/{b-c}",
            "grpc /a/b/c",
            "GET /a b",
        ] {
            assert!(RouteSpec::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn semantics_match_axum() {
        let mut t = RouteTable::new();
        t.insert(spec("/"), "root");
        t.insert(spec("/a"), "a");
        t.insert(spec("/a/"), "a-slash");
        t.insert(spec("/a/{id}"), "a-id");
        t.insert(spec("/files/{*rest}"), "files");
        let m = |p: &str| t.best_match(&Method::GET, p).map(|e| e.value);
        assert_eq!(m("/"), Some("root"));
        assert_eq!(m("/a"), Some("a"));
        assert_eq!(m("/a/"), Some("a-slash"));
        assert_eq!(m("/a/1"), Some("a-id"));
        assert_eq!(m("/a/1/2"), None);
        assert_eq!(m("/files"), None);
        assert_eq!(m("/files/"), None);
        assert_eq!(m("/files/x/y"), Some("files"));
        assert_eq!(m("/A"), None);
        assert_eq!(m("*"), None);
    }

    #[test]
    fn all_matches_most_specific_first() {
        let mut t = RouteTable::new();
        t.insert(spec("*"), 0);
        t.insert(spec("/{*all}"), 1);
        t.insert(spec("/admin/{*rest}"), 2);
        t.insert(spec("/admin/{section}"), 3);
        t.insert(spec("/admin/users"), 4);
        t.insert(spec("DELETE /admin/users"), 5);
        let got: Vec<_> = t.matches(&Method::GET, "/admin/users").map(|e| e.value).collect();
        assert_eq!(got, [4, 3, 2, 1, 0]);
        let got: Vec<_> = t.matches(&Method::DELETE, "/admin/users").map(|e| e.value).collect();
        assert_eq!(got, [4, 5, 3, 2, 1, 0]);
    }

    /// A naive matcher to compare the trie against.
    fn naive(template: &str, path: &str) -> bool {
        let Some(p) = path.strip_prefix('/') else { return false };
        let ts: Vec<&str> = template[1..].split('/').collect();
        let ps: Vec<&str> = p.split('/').collect();
        for (i, t) in ts.iter().enumerate() {
            if t.starts_with("{*") {
                return ps.len() > i && !ps[i..].join("/").is_empty();
            }
            let Some(seg) = ps.get(i) else { return false };
            if t.starts_with('{') {
                if seg.is_empty() {
                    return false;
                }
            } else if t != seg {
                return false;
            }
        }
        ts.len() == ps.len()
    }

    fn seg_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("".to_string()),
            Just("{p}".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn trie_agrees_with_naive(
            templates in proptest::collection::vec((proptest::collection::vec(seg_strategy(), 0..4), any::<bool>()), 1..8),
            path in proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just(""), Just("c")], 0..5),
        ) {
            let mut t = RouteTable::new();
            let mut tmpls = Vec::new();
            for (segs, catch_all) in &templates {
                let mut s = format!("/{}", segs.join("/"));
                if *catch_all {
                    if !s.ends_with('/') { s.push('/'); }
                    s.push_str("{*rest}");
                }
                t.insert(RouteSpec::parse(&s).unwrap(), tmpls.len());
                tmpls.push(s);
            }
            let path = format!("/{}", path.join("/"));
            let mut got: Vec<usize> = t.matches(&Method::GET, &path).map(|e| e.value).collect();
            got.sort_unstable();
            let want: Vec<usize> = tmpls.iter().enumerate().filter(|(_, tm)| naive(tm, &path)).map(|(i, _)| i).collect();
            prop_assert_eq!(got, want);
        }
    }
}
