//! [`SecureHeadersLayer`]: security response headers for APIs.
//!
//! The [`api`](SecureHeadersLayer::api) preset sets, when the response does not already carry them:
//!
//! | header | value |
//! |---|---|
//! | `Strict-Transport-Security` | `max-age=63072000; includeSubDomains` — only on requests that came over TLS |
//! | `X-Content-Type-Options` | `nosniff` |
//! | `X-Frame-Options` | `DENY` |
//! | `Referrer-Policy` | `no-referrer` |
//! | `Content-Security-Policy` | `default-src 'none'; frame-ancestors 'none'` |
//! | `Cache-Control` | `no-store` — on responses to requests that carried credentials |
//!
//! A request "came over TLS" when it has the [`SecureTransport`] extension (the msec-tls serve loop adds it) or
//! an `https` URI scheme (HTTP/2 `:scheme`). Behind a TLS-terminating proxy, use
//! [`hsts_always`](SecureHeadersLayer::hsts_always). A request "carried credentials" when it has an
//! `Authorization`, `Cookie` or `X-Api-Key` header (the list is configurable).
//!
//! ```
//! use msec_core::SecureHeadersLayer;
//! use http::{HeaderName, HeaderValue};
//!
//! let layer = SecureHeadersLayer::api()
//!     .header(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("SAMEORIGIN"))
//!     .without(&HeaderName::from_static("referrer-policy"));
//! # let _ = layer;
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// A request extension marking a request that arrived over TLS on this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecureTransport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hsts {
    WhenTls,
    Always,
    Never,
}

#[derive(Debug, Clone)]
struct Config {
    headers: Vec<(HeaderName, HeaderValue)>,
    hsts_value: HeaderValue,
    hsts: Hsts,
    no_store: Option<HeaderValue>,
    credential_headers: Vec<HeaderName>,
}

/// Adds security response headers. See the [module docs](self). Clones share the configuration.
#[derive(Debug, Clone)]
pub struct SecureHeadersLayer {
    cfg: Arc<Config>,
}

impl Default for SecureHeadersLayer {
    fn default() -> Self {
        Self::api()
    }
}

impl SecureHeadersLayer {
    /// The API preset.
    pub fn api() -> Self {
        Self {
            cfg: Arc::new(Config {
                headers: vec![
                    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
                    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
                    (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
                    ),
                ],
                hsts_value: HeaderValue::from_static("max-age=63072000; includeSubDomains"),
                hsts: Hsts::WhenTls,
                no_store: Some(HeaderValue::from_static("no-store")),
                credential_headers: vec![
                    header::AUTHORIZATION,
                    header::COOKIE,
                    HeaderName::from_static("x-api-key"),
                ],
            }),
        }
    }

    fn cfg(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.cfg)
    }

    /// Sets (or replaces) a header of the preset.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        let c = self.cfg();
        c.headers.retain(|(n, _)| *n != name);
        c.headers.push((name, value));
        self
    }

    /// Removes a header from the preset.
    #[must_use]
    pub fn without(mut self, name: &HeaderName) -> Self {
        let c = self.cfg();
        if name == header::STRICT_TRANSPORT_SECURITY {
            c.hsts = Hsts::Never;
        } else if name == header::CACHE_CONTROL {
            c.no_store = None;
        }
        c.headers.retain(|(n, _)| n != name);
        self
    }

    /// Sets the `Strict-Transport-Security` value.
    #[must_use]
    pub fn hsts(mut self, value: HeaderValue) -> Self {
        self.cfg().hsts_value = value;
        self
    }

    /// Sends HSTS on every response, for services behind a TLS-terminating proxy.
    #[must_use]
    pub fn hsts_always(mut self) -> Self {
        self.cfg().hsts = Hsts::Always;
        self
    }

    /// Sets which request headers count as credentials for `Cache-Control: no-store`.
    #[must_use]
    pub fn credential_headers(mut self, names: Vec<HeaderName>) -> Self {
        self.cfg().credential_headers = names;
        self
    }
}

impl<S> Layer<S> for SecureHeadersLayer {
    type Service = SecureHeaders<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SecureHeaders {
            inner,
            cfg: self.cfg.clone(),
        }
    }
}

/// The service of [`SecureHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecureHeaders<S> {
    inner: S,
    cfg: Arc<Config>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecureHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SecureHeadersFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let tls = match self.cfg.hsts {
            Hsts::Always => true,
            Hsts::Never => false,
            Hsts::WhenTls => {
                req.extensions().get::<SecureTransport>().is_some()
                    || req.uri().scheme() == Some(&http::uri::Scheme::HTTPS)
            }
        };
        let credentials = self
            .cfg
            .credential_headers
            .iter()
            .any(|h| req.headers().contains_key(h));
        SecureHeadersFuture {
            inner: self.inner.call(req),
            cfg: self.cfg.clone(),
            tls,
            credentials,
        }
    }
}

pin_project! {
    /// The future of [`SecureHeaders`].
    pub struct SecureHeadersFuture<F> {
        #[pin]
        inner: F,
        cfg: Arc<Config>,
        tls: bool,
        credentials: bool,
    }
}

impl<F, B, E> Future for SecureHeadersFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = match this.inner.poll(cx) {
            Poll::Ready(Ok(r)) => r,
            other => return other,
        };
        let h = resp.headers_mut();
        for (name, value) in &this.cfg.headers {
            if !h.contains_key(name) {
                h.insert(name.clone(), value.clone());
            }
        }
        if *this.tls && !h.contains_key(header::STRICT_TRANSPORT_SECURITY) {
            h.insert(header::STRICT_TRANSPORT_SECURITY, this.cfg.hsts_value.clone());
        }
        if let (true, Some(v)) = (*this.credentials, &this.cfg.no_store)
            && !h.contains_key(header::CACHE_CONTROL)
        {
            h.insert(header::CACHE_CONTROL, v.clone());
        }
        Poll::Ready(Ok(resp))
    }
}
