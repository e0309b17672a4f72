//! [`ResponseFuture`]: the future of a layer that either calls its inner service or answers at once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

pin_project! {
    /// The future of an msec service that may short-circuit: either the inner service's future, whose body is
    /// wrapped in [`ResponseBody`], or a ready response (a rejection).
    ///
    /// Layers of every msec crate use it, so their futures are nameable and allocation-free.
    #[project = ResponseFutureProj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F, B> {
        /// Waiting for the inner service, inside the layer's tracing span.
        Inner {
            #[pin]
            future: F,
            span: tracing::Span,
        },
        /// Answered without calling the inner service.
        Ready {
            response: Option<Response<ResponseBody<B>>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    /// Wraps the inner service's future.
    pub fn inner(future: F) -> Self {
        Self::Inner {
            future,
            span: tracing::Span::none(),
        }
    }

    /// Wraps the inner service's future, polled inside `span` (the layer's span: inner layers' spans nest in
    /// it).
    pub fn inner_in(future: F, span: tracing::Span) -> Self {
        Self::Inner { future, span }
    }

    /// A response that is ready now.
    pub fn ready(response: Response<ResponseBody<B>>) -> Self {
        Self::Ready {
            response: Some(response),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { future, span } => match span.in_scope(|| future.poll(cx)) {
                Poll::Ready(Ok(resp)) => Poll::Ready(Ok(resp.map(ResponseBody::new))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            ResponseFutureProj::Ready { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled after completion: a contract violation by the caller; answer with an empty 500 rather
                // than panicking inside a request path.
                None => {
                    let mut r = Response::new(ResponseBody::empty());
                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    Poll::Ready(Ok(r))
                }
            },
        }
    }
}
