//! SPIFFE IDs and trust domains, parsed strictly per the SPIFFE ID specification.
//!
//! A SPIFFE ID is `spiffe://<trust-domain>[/<path>]`:
//!
//! - the scheme is exactly `spiffe://` (lowercase);
//! - the trust domain is 1–255 bytes of `[a-z0-9._-]` — no port, no user info, no percent-encoding;
//! - the path is optional; when present it is one or more `/`-separated segments of `[a-zA-Z0-9._-]`, none
//!   empty, none `.` or `..`, and no trailing slash;
//! - no query, no fragment, and at most 2048 bytes in all.
//!
//! These types live in `msec-core` (not `msec-tls`) because the authorization [`Policy`](crate::policy::Policy)
//! reasons over trust domains and path prefixes; `msec-tls` parses certificates into them.
//!
//! ```
//! use msec_core::spiffe::SpiffeId;
//!
//! let id: SpiffeId = "spiffe://example.org/ns/prod/sa/orders".parse()?;
//! assert_eq!(id.trust_domain().as_str(), "example.org");
//! assert_eq!(id.path(), "/ns/prod/sa/orders");
//! assert!("spiffe://Example.org/x".parse::<SpiffeId>().is_err());
//! # Ok::<(), msec_core::spiffe::SpiffeIdError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest SPIFFE ID we accept, in bytes (SPIFFE-ID §2.3).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// The longest trust domain name we accept, in bytes (SPIFFE-ID §2.3).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a string is not a valid SPIFFE ID or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The input was empty.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The input does not start with `spiffe://`.
    #[error("scheme is missing or is not `spiffe://`")]
    BadScheme,
    /// The trust domain is empty.
    #[error("trust domain is missing")]
    MissingTrustDomain,
    /// The trust domain has a character outside `[a-z0-9._-]`.
    #[error("trust domain characters are limited to lowercase letters, digits, dots, dashes and underscores")]
    BadTrustDomainChar,
    /// The trust domain is longer than 255 bytes.
    #[error("trust domain is longer than 255 bytes")]
    TrustDomainTooLong,
    /// A path segment has a character outside `[a-zA-Z0-9._-]`.
    #[error("path segment characters are limited to letters, digits, dots, dashes and underscores")]
    BadPathChar,
    /// The path has an empty segment (`//`).
    #[error("path cannot contain empty segments")]
    EmptySegment,
    /// The path has a `.` or `..` segment.
    #[error("path cannot contain dot segments")]
    DotSegment,
    /// The path ends with `/`.
    #[error("path cannot have a trailing slash")]
    TrailingSlash,
    /// The whole ID is longer than 2048 bytes.
    #[error("SPIFFE ID is longer than 2048 bytes")]
    TooLong,
}

/// A SPIFFE trust domain, such as `example.org`.
///
/// ```
/// use msec_core::spiffe::TrustDomain;
/// let td = TrustDomain::new("prod.example.org")?;
/// assert_eq!(td.to_string(), "prod.example.org");
/// assert_eq!(td.id_string(), "spiffe://prod.example.org");
/// # Ok::<(), msec_core::spiffe::SpiffeIdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(Arc<str>);

impl TrustDomain {
    /// Parses a trust domain name (without the scheme). `spiffe://example.org` is accepted too.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        let name = name.strip_prefix(SCHEME).unwrap_or(name);
        validate_trust_domain(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// The trust domain name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>`.
    pub fn id_string(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TrustDomain").field(&&*self.0).finish()
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A SPIFFE ID, such as `spiffe://example.org/ns/prod/sa/orders`.
///
/// Cheap to clone (one reference-counted string). Compare with `==`; SPIFFE IDs are case-sensitive in their path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    full: Arc<str>,
    /// Byte offset where the path starts (== full.len() when there is no path).
    path_start: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID strictly.
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        if input.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if input.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = input.strip_prefix(SCHEME).ok_or(SpiffeIdError::BadScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(Self {
            full: Arc::from(input),
            path_start: SCHEME.len() + td.len(),
        })
    }

    /// Builds an ID from a trust domain and a path (`""` or starting with `/`).
    pub fn from_parts(trust_domain: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        Self::parse(&format!("{SCHEME}{}{path}", trust_domain.as_str()))
    }

    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The trust domain name.
    pub fn trust_domain_name(&self) -> &str {
        &self.full[SCHEME.len()..self.path_start]
    }

    /// The trust domain (allocates a new shared string).
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(Arc::from(self.trust_domain_name()))
    }

    /// The path, `""` when the ID has none, otherwise starting with `/`.
    pub fn path(&self) -> &str {
        &self.full[self.path_start..]
    }

    /// True when this ID is in `trust_domain` and its path is `prefix` or lies below it, segment-wise:
    /// `/ns/prod` covers `/ns/prod` and `/ns/prod/sa/x` but not `/ns/production`.
    pub fn has_path_prefix(&self, trust_domain: &str, prefix: &str) -> bool {
        if self.trust_domain_name() != trust_domain {
            return false;
        }
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        let path = self.path();
        match path.strip_prefix(prefix) {
            Some("") => true,
            Some(rest) => rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SpiffeId").field(&&*self.full).finish()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(SpiffeIdError::BadTrustDomainChar);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // `path` starts with '/', so the first split element is empty: skip it.
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        if seg.is_empty() {
            return Err(if segments.peek().is_none() {
                SpiffeIdError::TrailingSlash
            } else {
                SpiffeIdError::EmptySegment
            });
        }
        if seg == "." || seg == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(SpiffeIdError::BadPathChar);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web").unwrap();
        assert_eq!(id.trust_domain_name(), "example.org");
        assert_eq!(id.path(), "/ns/prod/sa/web");
        let bare = SpiffeId::parse("spiffe://example.org").unwrap();
        assert_eq!(bare.path(), "");
        assert_eq!(bare.trust_domain().as_str(), "example.org");
    }

    #[test]
    fn prefix_is_segment_wise() {
        let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web").unwrap();
        assert!(id.has_path_prefix("example.org", "/ns/prod"));
        assert!(id.has_path_prefix("example.org", "/ns/prod/"));
        assert!(id.has_path_prefix("example.org", ""));
        assert!(!id.has_path_prefix("example.org", "/ns/pro"));
        assert!(!id.has_path_prefix("other.org", "/ns/prod"));
        let p = SpiffeId::parse("spiffe://example.org/ns/production").unwrap();
        assert!(!p.has_path_prefix("example.org", "/ns/prod"));
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(SpiffeId::parse(""), Err(SpiffeIdError::Empty));
        assert_eq!(SpiffeId::parse("http://x"), Err(SpiffeIdError::BadScheme));
        assert_eq!(SpiffeId::parse("spiffe:///p"), Err(SpiffeIdError::MissingTrustDomain));
        assert_eq!(SpiffeId::parse("spiffe://td/a/"), Err(SpiffeIdError::TrailingSlash));
        assert_eq!(SpiffeId::parse("spiffe://td/a//b"), Err(SpiffeIdError::EmptySegment));
        assert_eq!(SpiffeId::parse("spiffe://td/a/../b"), Err(SpiffeIdError::DotSegment));
        assert_eq!(
            SpiffeId::parse("spiffe://td:443/a"),
            Err(SpiffeIdError::BadTrustDomainChar)
        );
        assert_eq!(SpiffeId::parse("spiffe://td/a?b"), Err(SpiffeIdError::BadPathChar));
    }
}
