//! [`Rejection`]: why msec refused a request, and how that is said on the wire.
//!
//! A rejection is a response, not an error. It carries a stable [`ReasonCode`], an HTTP status, a client-safe
//! detail, and optionally an RFC 6750 `WWW-Authenticate: Bearer` challenge, `Retry-After`, extra headers (rate
//! limit fields) and extra problem members (validation errors). It renders itself:
//!
//! - for HTTP as `application/problem+json` (RFC 9457) with `type`, `title`, `status`, `detail` and `code`;
//! - for gRPC requests (`content-type: application/grpc*`) as a trailers-only response: HTTP 200,
//!   `grpc-status` mapped from the HTTP status ([`GrpcCode::from_http`]) and a percent-encoded `grpc-message`.
//!
//! In both cases the typed `Rejection` is also put in the response extensions, so an outer audit layer learns
//! the reason even when a user customises the body. Clients never see internal error text: the detail is a
//! fixed, client-safe sentence chosen by the rejecting layer.
//!
//! ```
//! use msec_core::{Rejection, ResponseBody};
//! use http_body_util::Empty;
//! use bytes::Bytes;
//!
//! let r = Rejection::insufficient_scope(["orders:write"]).with_realm("orders");
//! let resp: http::Response<ResponseBody<Empty<Bytes>>> = r.into_http_response();
//! assert_eq!(resp.status(), 403);
//! assert_eq!(
//!     resp.headers()["www-authenticate"],
//!     r#"Bearer realm="orders", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:write""#
//! );
//! assert_eq!(resp.headers()["content-type"], "application/problem+json");
//! assert!(resp.extensions().get::<Rejection>().is_some());
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use crate::body::ResponseBody;
use crate::context::ReasonCode;
use crate::grpc::{self, GrpcCode};

/// The problem `type` URI prefix; the reason code follows it (`urn:msec:problem:token_expired`).
pub const PROBLEM_TYPE_PREFIX: &str = "urn:msec:problem:";

/// The `error` attribute of an RFC 6750 Bearer challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BearerError {
    /// `invalid_request`: the request is malformed (400).
    InvalidRequest,
    /// `invalid_token`: the token is expired, revoked, malformed or otherwise invalid (401).
    InvalidToken,
    /// `insufficient_scope`: the token lacks a scope the resource needs (403).
    InsufficientScope,
}

impl BearerError {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
        }
    }
}

/// An RFC 6750 `WWW-Authenticate: Bearer` challenge.
///
/// With no `error` it is the answer to a request that carried no credentials (RFC 6750 §3.1: "the resource
/// server SHOULD NOT include an error code or other error information").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BearerChallenge {
    /// `realm`.
    pub realm: Option<Cow<'static, str>>,
    /// `error`.
    pub error: Option<BearerError>,
    /// `error_description` (characters outside RFC 6750's set are replaced when rendered).
    pub description: Option<Cow<'static, str>>,
    /// `scope`: the scopes needed, space-separated.
    pub scope: Option<String>,
}

impl BearerChallenge {
    /// Renders the header value, e.g. `Bearer realm="api", error="invalid_token", error_description="..."`.
    pub fn to_header_value(&self) -> HeaderValue {
        let mut s = String::from("Bearer");
        let mut sep = " ";
        if let Some(realm) = &self.realm {
            s.push_str(sep);
            s.push_str("realm=\"");
            push_quoted(&mut s, realm);
            s.push('"');
            sep = ", ";
        }
        if let Some(err) = self.error {
            let _ = write!(s, "{sep}error=\"{}\"", err.as_str());
            sep = ", ";
            if let Some(d) = &self.description {
                s.push_str(sep);
                s.push_str("error_description=\"");
                // RFC 6750 §3: %x20-21 / %x23-5B / %x5D-7E.
                s.extend(d.chars().map(|c| match c {
                    '\x20'..='\x7e' if c != '"' && c != '\\' => c,
                    _ => '?',
                }));
                s.push('"');
            }
            if let Some(scope) = &self.scope {
                s.push_str(sep);
                s.push_str("scope=\"");
                // scope-token: %x21 / %x23-5B / %x5D-7E, separated by single spaces.
                s.extend(scope.chars().map(|c| match c {
                    '\x20'..='\x7e' if c != '"' && c != '\\' => c,
                    _ => '?',
                }));
                s.push('"');
            }
        }
        // Every character pushed above is visible ASCII or a space.
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

fn push_quoted(s: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\x20'..='\x7e' => s.push(c),
            _ => s.push('?'),
        }
    }
}

/// Why msec refused a request; renders itself as problem+json or a gRPC trailers-only response.
///
/// One pointer wide (the fields are boxed), so `Result<_, Rejection>` stays small.
#[derive(Debug, Clone)]
pub struct Rejection(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    status: StatusCode,
    code: ReasonCode,
    detail: Cow<'static, str>,
    challenge: Option<BearerChallenge>,
    retry_after: Option<u64>,
    headers: HeaderMap,
    members: Map<String, Value>,
}

impl Rejection {
    /// A rejection with `status`, `code` and a client-safe `detail`.
    pub fn new(status: StatusCode, code: ReasonCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self(Box::new(Inner {
            status,
            code,
            detail: detail.into(),
            challenge: None,
            retry_after: None,
            headers: HeaderMap::new(),
            members: Map::new(),
        }))
    }

    /// 401 `missing_credentials`, with a Bearer challenge carrying no `error` attribute.
    pub fn missing_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ReasonCode::MISSING_CREDENTIALS,
            "authentication is required",
        )
        .with_challenge(BearerChallenge::default())
    }

    /// 401 with a Bearer challenge `error="invalid_token"` and `error_description=description`.
    pub fn invalid_token(code: ReasonCode, description: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, description).with_challenge(BearerChallenge {
            error: Some(BearerError::InvalidToken),
            description: Some(Cow::Borrowed(description)),
            ..BearerChallenge::default()
        })
    }

    /// 400 with a Bearer challenge `error="invalid_request"` (a malformed credential).
    pub fn invalid_request(code: ReasonCode, description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description).with_challenge(BearerChallenge {
            error: Some(BearerError::InvalidRequest),
            description: Some(Cow::Borrowed(description)),
            ..BearerChallenge::default()
        })
    }

    /// 403 `insufficient_scope` naming the needed scopes, in the challenge's `scope` and the problem's
    /// `required_scopes` member.
    pub fn insufficient_scope<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        let description = "the access token lacks a required scope";
        Self::new(StatusCode::FORBIDDEN, ReasonCode::INSUFFICIENT_SCOPE, description)
            .with_challenge(BearerChallenge {
                error: Some(BearerError::InsufficientScope),
                description: Some(Cow::Borrowed(description)),
                scope: Some(scopes.join(" ")),
                ..BearerChallenge::default()
            })
            .with_member("required_scopes", Value::from(scopes))
    }

    /// 403 with `code` and no challenge (the credentials are fine; the policy says no).
    pub fn forbidden(code: ReasonCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    /// 400 with `code`.
    pub fn bad_request(code: ReasonCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 413 with `code`.
    pub fn payload_too_large(code: ReasonCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, detail)
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ReasonCode::UNSUPPORTED_MEDIA_TYPE,
            detail,
        )
    }

    /// 422 with `code`.
    pub fn unprocessable(code: ReasonCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    /// 429 with `code` and `Retry-After: retry_after_secs`.
    pub fn too_many_requests(code: ReasonCode, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, "too many requests").with_retry_after(retry_after_secs)
    }

    /// 503 with `code`.
    pub fn unavailable(code: ReasonCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }

    /// Sets the Bearer challenge.
    #[must_use]
    pub fn with_challenge(mut self, challenge: BearerChallenge) -> Self {
        self.0.challenge = Some(challenge);
        self
    }

    /// Sets the challenge's realm (no-op without a challenge).
    #[must_use]
    pub fn with_realm(mut self, realm: impl Into<Cow<'static, str>>) -> Self {
        if let Some(c) = &mut self.0.challenge {
            c.realm = Some(realm.into());
        }
        self
    }

    /// Sets `Retry-After` in seconds.
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.0.retry_after = Some(secs);
        self
    }

    /// Adds a response header (appended; several values of one name are kept).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.append(name, value);
        self
    }

    /// Adds a member to the problem+json object. The standard members (`type`, `title`, `status`, `detail`,
    /// `code`) cannot be overridden; such names are ignored.
    #[must_use]
    pub fn with_member(mut self, name: impl Into<String>, value: Value) -> Self {
        let name = name.into();
        if !matches!(name.as_str(), "type" | "title" | "status" | "detail" | "code") {
            self.0.members.insert(name, value);
        }
        self
    }

    /// Replaces the client-safe detail.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.0.detail = detail.into();
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }
    /// The stable reason code.
    pub fn code(&self) -> ReasonCode {
        self.0.code
    }
    /// The client-safe detail.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }
    /// The Bearer challenge, if any.
    pub fn challenge(&self) -> Option<&BearerChallenge> {
        self.0.challenge.as_ref()
    }
    /// `Retry-After` in seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.0.retry_after
    }
    /// Extra response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }
    /// Extra problem+json members.
    pub fn members(&self) -> &Map<String, Value> {
        &self.0.members
    }
    /// The gRPC status code this rejection maps to.
    pub fn grpc_code(&self) -> GrpcCode {
        GrpcCode::from_http(self.0.status)
    }

    /// The problem+json document (RFC 9457).
    pub fn problem_json(&self) -> Bytes {
        let mut m = Map::with_capacity(5 + self.0.members.len());
        m.insert(
            "type".into(),
            Value::from(format!("{PROBLEM_TYPE_PREFIX}{}", self.0.code)),
        );
        m.insert(
            "title".into(),
            Value::from(self.0.status.canonical_reason().unwrap_or("Error")),
        );
        m.insert("status".into(), Value::from(self.0.status.as_u16()));
        m.insert("detail".into(), Value::from(&*self.0.detail));
        m.insert("code".into(), Value::from(self.0.code.as_str()));
        for (k, v) in &self.0.members {
            m.insert(k.clone(), v.clone());
        }
        Bytes::from(serde_json::to_vec(&Value::Object(m)).unwrap_or_default())
    }

    /// Renders for the request whose headers are `request_headers`: gRPC trailers-only when it is a gRPC
    /// request, problem+json otherwise.
    pub fn into_response<B>(self, request_headers: &HeaderMap) -> Response<ResponseBody<B>> {
        if grpc::is_grpc(request_headers) {
            self.into_grpc_response()
        } else {
            self.into_http_response()
        }
    }

    /// Renders as an HTTP `application/problem+json` response.
    pub fn into_http_response<B>(self) -> Response<ResponseBody<B>> {
        let mut resp = Response::new(ResponseBody::full(self.problem_json()));
        *resp.status_mut() = self.0.status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.common_headers(h);
        resp.extensions_mut().insert(self);
        resp
    }

    /// Renders as a gRPC trailers-only response (HTTP 200, `grpc-status`, `grpc-message`, no body).
    pub fn into_grpc_response<B>(self) -> Response<ResponseBody<B>> {
        let mut resp = Response::new(ResponseBody::empty());
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(
            HeaderName::from_static("grpc-status"),
            HeaderValue::from(self.grpc_code().as_i32()),
        );
        if let Ok(v) = HeaderValue::from_str(&grpc::encode_message(&format!("{}: {}", self.0.code, self.0.detail))) {
            h.insert(HeaderName::from_static("grpc-message"), v);
        }
        self.common_headers(h);
        resp.extensions_mut().insert(self);
        resp
    }

    fn common_headers(&self, h: &mut HeaderMap) {
        if let Some(c) = &self.0.challenge {
            h.insert(WWW_AUTHENTICATE, c.to_header_value());
        }
        if let Some(s) = self.0.retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from(s));
        }
        for (k, v) in &self.0.headers {
            h.append(k.clone(), v.clone());
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.0.status.as_u16(), self.0.code, self.0.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    type R = Response<ResponseBody<Empty<Bytes>>>;

    #[test]
    fn missing_credentials_has_no_error_attribute() {
        let resp: R = Rejection::missing_credentials().with_realm("api").into_http_response();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer realm=\"api\"");
        let bare: R = Rejection::missing_credentials().into_http_response();
        assert_eq!(bare.headers()[WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn invalid_token_form() {
        let resp: R = Rejection::invalid_token(ReasonCode::new("token_expired"), "the access token expired")
            .with_realm("api")
            .into_http_response();
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the access token expired\""
        );
    }

    #[test]
    fn realm_is_escaped_and_description_sanitised() {
        let c = BearerChallenge {
            realm: Some("a\"b\\c".into()),
            error: Some(BearerError::InvalidRequest),
            description: Some("bad \"quote\" é".into()),
            scope: None,
        };
        assert_eq!(
            c.to_header_value(),
            r#"Bearer realm="a\"b\\c", error="invalid_request", error_description="bad ?quote? ?""#
        );
    }

    #[test]
    fn problem_document() {
        let r = Rejection::unprocessable(ReasonCode::VALIDATION_FAILED, "the request body is invalid")
            .with_member("errors", serde_json::json!([{"pointer": "/a"}]))
            .with_member("status", Value::from(200));
        let v: Value = serde_json::from_slice(&r.problem_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "urn:msec:problem:validation_failed",
                "title": "Unprocessable Entity",
                "status": 422,
                "detail": "the request body is invalid",
                "code": "validation_failed",
                "errors": [{"pointer": "/a"}]
            })
        );
    }

    #[test]
    fn grpc_trailers_only() {
        let resp: R = Rejection::too_many_requests(ReasonCode::RATE_LIMITED, 3).into_grpc_response();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "8");
        assert_eq!(resp.headers()["grpc-message"], "rate_limited: too many requests");
        assert_eq!(resp.headers()[RETRY_AFTER], "3");
        assert!(http_body::Body::is_end_stream(resp.body()));
    }
}
