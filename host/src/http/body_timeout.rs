//! `--body-read-timeout`: a request body that sends nothing for that long fails (408 with
//! Rasa's error body, see `error::rasa_error_body`).
//!
//! Unlike tower-http's `RequestBodyTimeout`, which starts a timer for every body it polls,
//! the timer here starts only when the body has no data ready. A small body usually arrives
//! with its headers, so a request then costs no clock read and no timer registration
//! (both showed in the profile of every request). The bound is the same: the longest wait
//! for the next chunk, reset by every chunk that arrives.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;

/// The error a stalled body fails with. `rasa_error_body` recognises the words "timed out".
#[derive(Debug, thiserror::Error)]
#[error("request body timed out: no data within the designated timeout of {0:?}")]
pub struct BodyTimedOut(Duration);

impl BodyTimedOut {
    pub fn new(timeout: Duration) -> Self {
        BodyTimedOut(timeout)
    }
}

/// Wraps every request's body in a [`StallTimeoutBody`].
#[derive(Clone, Copy)]
pub struct BodyTimeoutLayer {
    timeout: Duration,
}

impl BodyTimeoutLayer {
    pub fn new(timeout: Duration) -> Self {
        BodyTimeoutLayer { timeout }
    }
}

impl<S> tower::Layer<S> for BodyTimeoutLayer {
    type Service = BodyTimeout<S>;
    fn layer(&self, inner: S) -> BodyTimeout<S> {
        BodyTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Clone)]
pub struct BodyTimeout<S> {
    inner: S,
    timeout: Duration,
}

/// Generic over the incoming body, so that the connection's body is wrapped once, here, and
/// boxed once (the router leaves an `axum::body::Body` as it is).
impl<S, B> tower::Service<Request<B>> for BodyTimeout<S>
where
    S: tower::Service<Request<Body>>,
    B: HttpBody<Data = axum::body::Bytes> + Unpin + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> S::Future {
        let timeout = self.timeout;
        self.inner.call(request.map(|body| {
            Body::new(StallTimeoutBody {
                inner: body,
                timeout,
                stall: None,
            })
        }))
    }
}

/// A body that fails when its next frame takes longer than `timeout` to arrive.
pub struct StallTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    /// Running only while the body is waiting for data.
    stall: Option<Pin<Box<Sleep>>>,
}

impl<B> HttpBody for StallTimeoutBody<B>
where
    B: HttpBody<Data = axum::body::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<axum::body::Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.stall = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let stall = this
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn wrapped(body: Body, timeout: Duration) -> StallTimeoutBody<Body> {
        StallTimeoutBody {
            inner: body,
            timeout,
            stall: None,
        }
    }

    #[tokio::test]
    async fn a_ready_body_is_read_without_a_timer() {
        let mut body = wrapped(Body::from("hello"), Duration::from_millis(10));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert!(body.stall.is_none());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_stalled_body_fails_and_every_chunk_resets_the_wait() {
        let (mut tx, rx) =
            futures::channel::mpsc::channel::<Result<Frame<axum::body::Bytes>, std::io::Error>>(1);
        let body = wrapped(
            Body::new(http_body_util::StreamBody::new(rx)),
            Duration::from_millis(300),
        );
        let reader = tokio::spawn(async move { body.collect().await.map(|c| c.to_bytes()) });
        use futures::SinkExt;
        // Chunks 150 ms apart (450 ms in all) stay within the 300 ms bound between chunks…
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            tx.send(Ok(Frame::data(axum::body::Bytes::from_static(b"x"))))
                .await
                .unwrap();
        }
        // …then nothing: the read fails with the timeout, not with the stream's end.
        let err = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("a stalled body never failed")
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        tx.close_channel();
    }
}
