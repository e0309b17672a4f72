//! [`GuardedBody`]: the request body the inner service receives behind the JSON guard.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The request body behind [`JsonGuard`](crate::guard::JsonGuard): the checked JSON document, already
    /// read in full, or the original body of a request the guard let through untouched (no body, or a route it
    /// does not cover).
    pub struct GuardedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Checked { data: Option<Bytes> },
        Passthrough { #[pin] body: B },
    }
}

impl<B> GuardedBody<B> {
    /// A body of checked bytes.
    pub fn checked(data: Bytes) -> Self {
        Self {
            kind: Kind::Checked {
                data: if data.is_empty() { None } else { Some(data) },
            },
        }
    }

    /// The original body, untouched.
    pub fn passthrough(body: B) -> Self {
        Self {
            kind: Kind::Passthrough { body },
        }
    }

    /// True when the guard read and checked this body.
    pub fn is_checked(&self) -> bool {
        matches!(self.kind, Kind::Checked { .. })
    }
}

impl<B> fmt::Debug for GuardedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Checked { data } => write!(f, "GuardedBody::Checked({} bytes)", data.as_ref().map_or(0, Bytes::len)),
            Kind::Passthrough { .. } => f.write_str("GuardedBody::Passthrough"),
        }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Checked { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Passthrough { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Checked { data } => data.is_none(),
            Kind::Passthrough { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Checked { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Passthrough { body } => body.size_hint(),
        }
    }
}
