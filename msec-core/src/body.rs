//! [`ResponseBody`]: the inner service's body, or a body msec wrote itself (a rejection).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of every msec service: either the inner service's body, or a complete body written by
    /// msec (a problem+json rejection, or nothing for a gRPC trailers-only response).
    ///
    /// ```
    /// use http_body::Body;
    /// use msec_core::ResponseBody;
    ///
    /// let b: ResponseBody<http_body_util::Empty<bytes::Bytes>> = ResponseBody::full("hi".into());
    /// assert!(b.is_msec_body());
    /// assert_eq!(b.size_hint().exact(), Some(2));
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A complete body of `data`.
    pub fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: if data.is_empty() { None } else { Some(data) },
            },
        }
    }

    /// An empty body (ends immediately, so an HTTP/2 response carrying it is headers-only).
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }

    /// True when msec wrote this body (a rejection), false when it is the inner service's.
    pub fn is_msec_body(&self) -> bool {
        matches!(self.kind, Kind::Full { .. })
    }

    /// The inner body, if this is one.
    pub fn into_inner(self) -> Option<B> {
        match self.kind {
            Kind::Inner { body } => Some(body),
            Kind::Full { .. } => None,
        }
    }
}

impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Full { data } => write!(f, "ResponseBody::Full({} bytes)", data.as_ref().map_or(0, Bytes::len)),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
