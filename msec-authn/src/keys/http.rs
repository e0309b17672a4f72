//! Fetching key documents over HTTPS: reqwest with a rustls client configuration built on ring and the
//! webpki roots (plus optional extra CA roots), a size cap, connect and total timeouts, `ETag` revalidation and
//! `Cache-Control` parsing.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::Url;
use rustls_pki_types::CertificateDer;

use super::store::KeyFetchError;
use crate::error::ConfigError;

/// How msec fetches JWKS and discovery documents.
///
/// HTTPS only, verified against the Mozilla roots (webpki-roots) plus any roots you add. Redirects are followed
/// (at most 3) only to URLs that satisfy the same rule. Plain HTTP is accepted only for loopback hosts, and only
/// after [`danger_allow_http_for_loopback`](Self::danger_allow_http_for_loopback) — for tests.
///
/// ```
/// use std::time::Duration;
/// use msec_authn::keys::HttpConfig;
/// let http = HttpConfig::new().timeout(Duration::from_secs(5)).max_response_bytes(256 * 1024);
/// # let _ = http;
/// ```
#[derive(Clone)]
#[must_use]
pub struct HttpConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_response_bytes: usize,
    extra_roots: Vec<CertificateDer<'static>>,
    webpki_roots: bool,
    pub(crate) allow_http_loopback: bool,
    env_proxy: bool,
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("extra_roots", &self.extra_roots.len())
            .field("webpki_roots", &self.webpki_roots)
            .field("danger_allow_http_for_loopback", &self.allow_http_loopback)
            .finish()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpConfig {
    /// Defaults: connect timeout 5 s, total timeout 10 s, responses up to 512 KiB, webpki roots, HTTPS only,
    /// proxies from the environment honoured.
    pub fn new() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_response_bytes: 512 * 1024,
            extra_roots: Vec::new(),
            webpki_roots: true,
            allow_http_loopback: false,
            env_proxy: true,
        }
    }

    /// Sets the TCP + TLS connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets the timeout of a whole fetch (connect, request, body).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Sets the largest document accepted, in bytes. Larger responses fail the fetch (the last good keys stay).
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }

    /// Trusts an extra CA certificate (DER), e.g. a private PKI's root.
    pub fn add_root_certificate(mut self, der: CertificateDer<'static>) -> Self {
        self.extra_roots.push(der);
        self
    }

    /// Trusts only the roots added with [`add_root_certificate`](Self::add_root_certificate), not the webpki
    /// (Mozilla) roots.
    pub fn only_added_roots(mut self) -> Self {
        self.webpki_roots = false;
        self
    }

    /// Ignores `HTTP(S)_PROXY` environment variables.
    pub fn no_proxy(mut self) -> Self {
        self.env_proxy = false;
        self
    }

    /// **Dangerous**: accepts `http://` key URLs whose host is a loopback address (`127.0.0.0/8`, `::1`,
    /// `localhost`). For tests against a local issuer; never use it in production. Other hosts still need HTTPS.
    pub fn danger_allow_http_for_loopback(mut self) -> Self {
        self.allow_http_loopback = true;
        self
    }

    /// Checks that `url` may be fetched under this configuration.
    pub(crate) fn check_url(&self, url: &str) -> Result<Url, ConfigError> {
        let parsed = Url::parse(url).map_err(|e| ConfigError::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if url_allowed(&parsed, self.allow_http_loopback) {
            Ok(parsed)
        } else {
            Err(ConfigError::InsecureUrl(url.to_owned()))
        }
    }

    pub(crate) fn build(&self) -> Result<Fetcher, ConfigError> {
        self.build_with_redirects(true)
    }

    /// Like `build`; with `follow_redirects` false every 3xx is returned as is (for POSTs that carry client
    /// credentials: introspection).
    pub(crate) fn build_with_redirects(&self, follow_redirects: bool) -> Result<Fetcher, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for der in &self.extra_roots {
            roots
                .add(der.clone())
                .map_err(|e| ConfigError::Http(format!("extra root certificate: {e}")))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Http(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let allow_http = self.allow_http_loopback;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if !follow_redirects {
                attempt.stop()
            } else if attempt.previous().len() >= 3 {
                attempt.error("too many redirects")
            } else if url_allowed(attempt.url(), allow_http) {
                attempt.follow()
            } else {
                attempt.error("redirect to a URL that is not HTTPS")
            }
        });
        let mut b = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .redirect(redirect)
            .user_agent(concat!("msec-authn/", env!("CARGO_PKG_VERSION")));
        if !self.env_proxy {
            b = b.no_proxy();
        }
        let client = b.build().map_err(|e| ConfigError::Http(e.to_string()))?;
        Ok(Fetcher {
            client,
            max_bytes: self.max_response_bytes,
            allow_http_loopback: self.allow_http_loopback,
        })
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

fn url_allowed(url: &Url, allow_http_loopback: bool) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => allow_http_loopback && is_loopback(url),
        _ => false,
    }
}

/// A configured HTTPS client.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    max_bytes: usize,
    allow_http_loopback: bool,
}

/// A fetched document.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// 304: the cached document is still current.
    NotModified { cache: CacheDirectives },
    /// 200 with a body.
    Document {
        body: Bytes,
        etag: Option<String>,
        cache: CacheDirectives,
    },
}

/// What `Cache-Control` said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheDirectives {
    pub(crate) max_age: Option<u64>,
    pub(crate) no_cache: bool,
}

/// Parses `Cache-Control` (`max-age=N`, `no-cache`, `no-store`; names case-insensitive, other directives
/// ignored, an unparsable `max-age` ignored).
pub(crate) fn parse_cache_control<'a>(values: impl Iterator<Item = &'a [u8]>) -> CacheDirectives {
    let mut out = CacheDirectives::default();
    for v in values {
        let Ok(s) = std::str::from_utf8(v) else { continue };
        for d in s.split(',') {
            let d = d.trim();
            let (name, arg) = match d.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (d, None),
            };
            if name.eq_ignore_ascii_case("max-age") {
                if let Some(n) = arg.and_then(|a| a.parse::<u64>().ok()) {
                    out.max_age = Some(out.max_age.map_or(n, |m| m.min(n)));
                }
            } else if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                out.no_cache = true;
            }
        }
    }
    out
}

impl Fetcher {
    /// The configured client (timeouts, TLS roots, redirect rule).
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The largest response body accepted, in bytes.
    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub(crate) fn allows(&self, url: &Url) -> bool {
        url_allowed(url, self.allow_http_loopback)
    }

    /// GETs `url`, with `If-None-Match: etag` when given. Enforces the size cap while reading.
    pub(crate) async fn get(&self, url: &Url, etag: Option<&str>) -> Result<Fetched, KeyFetchError> {
        if !self.allows(url) {
            return Err(KeyFetchError::Insecure(url.to_string()));
        }
        let mut req = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json");
        if let Some(tag) = etag {
            req = req.header(IF_NONE_MATCH, tag);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| KeyFetchError::Transport(error_chain(&e)))?;
        let cache = parse_cache_control(resp.headers().get_all(CACHE_CONTROL).iter().map(|v| v.as_bytes()));
        match resp.status() {
            StatusCode::NOT_MODIFIED if etag.is_some() => return Ok(Fetched::NotModified { cache }),
            StatusCode::OK => {}
            s => return Err(KeyFetchError::Status(s.as_u16())),
        }
        if resp.content_length().is_some_and(|n| n > self.max_bytes as u64) {
            return Err(KeyFetchError::TooLarge(self.max_bytes));
        }
        let etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 256)
            .map(str::to_owned);
        let mut body = BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| KeyFetchError::Transport(error_chain(&e)))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(KeyFetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched::Document {
            body: body.freeze(),
            etag,
            cache,
        })
    }
}

/// An error and its sources, one line (reqwest's top-level message alone is often just "error sending request").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let p = |s: &str| parse_cache_control(std::iter::once(s.as_bytes()));
        assert_eq!(p("public, max-age=300").max_age, Some(300));
        assert_eq!(p("Max-Age=\"60\", must-revalidate").max_age, Some(60));
        assert_eq!(p("max-age=abc").max_age, None);
        assert!(p("no-store").no_cache);
        assert!(p("private, No-Cache").no_cache);
        let two = parse_cache_control(["max-age=600".as_bytes(), "max-age=60".as_bytes()].into_iter());
        assert_eq!(two.max_age, Some(60));
    }

    #[test]
    fn urls() {
        let strict = HttpConfig::new();
        assert!(strict.check_url("https://id.example.com/jwks").is_ok());
        assert!(matches!(
            strict.check_url("http://127.0.0.1:1/jwks"),
            Err(ConfigError::InsecureUrl(_))
        ));
        assert!(matches!(
            strict.check_url("ftp://x/y"),
            Err(ConfigError::InsecureUrl(_))
        ));
        assert!(matches!(
            strict.check_url("not a url"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        let dev = HttpConfig::new().danger_allow_http_for_loopback();
        assert!(dev.check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(dev.check_url("http://[::1]:8080/jwks").is_ok());
        assert!(dev.check_url("http://localhost/jwks").is_ok());
        assert!(dev.check_url("http://10.0.0.1/jwks").is_err());
        assert!(dev.check_url("http://example.com/jwks").is_err());
        assert!(dev.check_url("http://127.0.0.1.example.com/jwks").is_err());
    }

    #[test]
    fn builds_a_client() {
        HttpConfig::new().build().unwrap();
    }
}
