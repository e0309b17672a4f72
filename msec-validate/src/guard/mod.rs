//! The JSON guard: content type, body size and document-shape limits, checked in one streaming pass before
//! anything deserialises the body.
//!
//! A JSON parser that builds a tree spends memory and time in proportion to what the client sends, and
//! `serde_json` recurses per nesting level. The guard puts a bound on every dimension first:
//!
//! - the `content-type` must be `application/json` or `application/*+json` (else 415);
//! - the body may not exceed [`JsonLimits::max_body_bytes`] (413): a `content-length` over the limit is refused
//!   before a byte is read, and the stream is read through [`http_body_util::Limited`];
//! - nesting depth, members per object, elements per array, string length and total values are counted by
//!   [`JsonScanner`] as the bytes arrive; the first excess stops the read at once (400/413), so a bomb costs
//!   the server at most the bytes up to the violation;
//! - invalid JSON or UTF-8 is refused with 400 and the byte `offset` of the problem.
//!
//! Use [`JsonGuardLayer`] in front of handlers (it hands them a [`GuardedBody`](crate::GuardedBody) holding the
//! checked bytes and marks the request with [`JsonChecked`]), or [`read_json`] in a hand-written service. The
//! `Valid<Json<T>>` extractor runs the same checks itself when no guard layer ran.
//!
//! ```
//! use msec_validate::guard::{JsonGuardLayer, JsonLimits};
//!
//! let layer = JsonGuardLayer::new(JsonLimits::default().max_body_bytes(256 * 1024).max_depth(16))
//!     .routes(["POST /v1/{*rest}", "PUT /v1/{*rest}"])?;
//! # let _ = layer;
//! # Ok::<(), msec_validate::ConfigError>(())
//! ```

pub(crate) mod layer;
mod limits;
mod scanner;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body::Body;
use http_body_util::{LengthLimitError, Limited};
use msec_core::{ReasonCode, Rejection};
use pin_project_lite::pin_project;
use serde_json::Value;

pub use layer::{JsonGuard, JsonGuardLayer, ResponseFuture};
pub use limits::JsonLimits;
pub use scanner::{GuardError, GuardErrorKind, JsonScanner, JsonSummary, check_json};

use crate::codes;

/// Put in the request extensions by [`JsonGuardLayer`] when the body passed the guard, so that extractors do
/// not scan it twice.
#[derive(Debug, Clone, Copy)]
pub struct JsonChecked {
    /// What the scan saw.
    pub summary: JsonSummary,
}

/// True when `content-type` is `application/json` or `application/<anything>+json`, with any parameters.
///
/// ```
/// let mut h = http::HeaderMap::new();
/// h.insert("content-type", "application/merge-patch+json; charset=utf-8".parse().unwrap());
/// assert!(msec_validate::guard::is_json_content_type(&h));
/// h.insert("content-type", "text/plain".parse().unwrap());
/// assert!(!msec_validate::guard::is_json_content_type(&h));
/// ```
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = v.split(';').next().unwrap_or("").trim();
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    if !ty.eq_ignore_ascii_case("application") {
        return false;
    }
    let sub = sub.as_bytes();
    sub.eq_ignore_ascii_case(b"json")
        || (sub.len() > 5
            && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json")
            && sub[..sub.len() - 5].iter().all(|b| b.is_ascii_graphic()))
}

/// The reason code of a guard error.
pub fn error_code(kind: GuardErrorKind) -> ReasonCode {
    match kind {
        GuardErrorKind::Syntax => codes::JSON_SYNTAX,
        GuardErrorKind::InvalidUtf8 => codes::INVALID_UTF8,
        GuardErrorKind::TooDeep => codes::JSON_TOO_DEEP,
        GuardErrorKind::TooManyKeys => codes::JSON_TOO_MANY_KEYS,
        GuardErrorKind::ArrayTooLong => codes::JSON_ARRAY_TOO_LONG,
        GuardErrorKind::StringTooLong => codes::JSON_STRING_TOO_LONG,
        GuardErrorKind::TooManyNodes => codes::JSON_TOO_MANY_NODES,
        GuardErrorKind::TooLarge => codes::PAYLOAD_TOO_LARGE,
    }
}

/// The rejection for a guard error: 400 for malformed or too deep documents, 413 for oversized ones, with the
/// byte `offset` as a problem member (not for `payload_too_large`).
pub fn rejection(e: &GuardError) -> Rejection {
    let code = error_code(e.kind());
    let detail = e.kind().as_str();
    match e.kind() {
        GuardErrorKind::TooLarge => Rejection::payload_too_large(code, detail),
        GuardErrorKind::Syntax | GuardErrorKind::InvalidUtf8 | GuardErrorKind::TooDeep => {
            Rejection::bad_request(code, detail).with_member("offset", Value::from(e.offset()))
        }
        _ => Rejection::payload_too_large(code, detail).with_member("offset", Value::from(e.offset())),
    }
}

pub(crate) fn unsupported_media_type() -> Rejection {
    Rejection::unsupported_media_type("the request body must be application/json")
}

pub(crate) fn too_large() -> Rejection {
    Rejection::payload_too_large(codes::PAYLOAD_TOO_LARGE, GuardErrorKind::TooLarge.as_str())
}

/// The declared `content-length`, if any and valid.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Checks the request head the way the guard does before reading: JSON content type (415) and a declared
/// length within the limit (413).
pub fn check_head(headers: &HeaderMap, limits: &JsonLimits) -> Result<(), Rejection> {
    if !is_json_content_type(headers) {
        return Err(unsupported_media_type());
    }
    if content_length(headers).is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    Ok(())
}

pin_project! {
    /// Reads a body through the guard: see [`read_json`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ReadJson<B> {
        #[pin]
        body: Limited<B>,
        scanner: JsonScanner,
        chunks: Vec<Bytes>,
    }
}

impl<B> std::fmt::Debug for ReadJson<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadJson")
            .field("consumed", &self.scanner.consumed())
            .finish()
    }
}

/// Reads `body` to the end, scanning every chunk as it arrives, and returns the checked document with what the
/// scan saw. Stops at the first problem, so no more than the bytes up to it are ever held. The body's content
/// type is not looked at: call [`check_head`] first.
///
/// ```
/// # async fn demo() {
/// use msec_validate::guard::{read_json, JsonLimits};
/// let body = http_body_util::Full::new(bytes::Bytes::from_static(br#"{"id": 7}"#));
/// let (bytes, summary) = read_json(body, &JsonLimits::default()).await.unwrap();
/// assert_eq!(summary.nodes, 2);
/// # let _ = bytes;
/// # }
/// ```
pub fn read_json<B>(body: B, limits: &JsonLimits) -> ReadJson<B> {
    ReadJson {
        body: Limited::new(body, limits.max_body_bytes),
        scanner: JsonScanner::new(limits),
        chunks: Vec::new(),
    }
}

impl<B> Future for ReadJson<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<(Bytes, JsonSummary), Rejection>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(mut data) = frame.into_data() else {
                        continue; // trailers: not part of the document
                    };
                    let data = data.copy_to_bytes(data.remaining());
                    if let Err(e) = this.scanner.feed(&data) {
                        this.chunks.clear();
                        return Poll::Ready(Err(rejection(&e)));
                    }
                    if !data.is_empty() {
                        this.chunks.push(data);
                    }
                }
                Some(Err(e)) => {
                    this.chunks.clear();
                    let r = if e.downcast_ref::<LengthLimitError>().is_some() {
                        too_large()
                    } else {
                        Rejection::bad_request(codes::BODY_READ_FAILED, "the request body could not be read")
                    };
                    return Poll::Ready(Err(r));
                }
                None => {
                    let summary = match this.scanner.finish() {
                        Ok(s) => s,
                        Err(e) => return Poll::Ready(Err(rejection(&e))),
                    };
                    let bytes = match this.chunks.len() {
                        0 => Bytes::new(),
                        1 => this.chunks.pop().unwrap_or_default(),
                        _ => {
                            let mut b = BytesMut::with_capacity(summary.bytes);
                            for c in this.chunks.drain(..) {
                                b.extend_from_slice(&c);
                            }
                            b.freeze()
                        }
                    };
                    return Poll::Ready(Ok((bytes, summary)));
                }
            }
        }
    }
}
