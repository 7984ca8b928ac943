//! Every request runs to its end, even when its client hangs up.
//!
//! hyper drops a request's future when the connection closes. Dropped midway, a turn would
//! keep the conversation's lock until its lease runs out (60 s: every later request to that
//! conversation waits or fails), and could stop between storing events and publishing them.
//! Rasa releases its lock in a `finally` block; Colloquy goes further and finishes the work:
//! the rest of a dropped request's future is spawned and runs to completion, its response
//! discarded. A turn is therefore either not started or done whole, whatever the client does.
//!
//! The cost on the normal path is one allocation per request (the future is pinned on the
//! heap so that it can be moved into a task once started). Shutdown waits for the spawned
//! remainders too ([`Abandoned::wait`], in `serve::serve`), so that they finish before the
//! stores and the event broker are closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;

/// The requests whose clients hung up and that are still running. One per server, never
/// freed: a request's future carries it as a plain reference.
#[derive(Clone, Copy, Debug)]
pub struct Abandoned {
    inner: &'static AbandonedInner,
}

impl Default for Abandoned {
    fn default() -> Abandoned {
        Abandoned {
            inner: Box::leak(Box::default()),
        }
    }
}

#[derive(Default, Debug)]
struct AbandonedInner {
    running: AtomicUsize,
    finished: Notify,
}

impl Abandoned {
    /// How many are running now.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::Acquire)
    }

    /// Resolves when none is running.
    pub async fn wait(&self) {
        loop {
            let finished = self.inner.finished.notified();
            if self.running() == 0 {
                return;
            }
            finished.await;
        }
    }

    /// Runs `future` to its end on the current runtime, counted until it is done. Without a
    /// runtime (the process is exiting) it is dropped.
    fn finish<F: Future + Send + 'static>(&self, future: Pin<Box<F>>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.inner.running.fetch_add(1, Ordering::AcqRel);
        let done = Done(self.inner);
        runtime.spawn(async move {
            let _done = done; // counted down even if the task is cancelled at shutdown
            future.await;
        });
    }
}

/// Counts a remainder as finished when dropped.
struct Done(&'static AbandonedInner);

impl Drop for Done {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.finished.notify_waiters();
        }
    }
}

/// The layer: wraps each request's future in [`Finishing`].
#[derive(Clone)]
pub struct FinishLayer {
    abandoned: Abandoned,
}

impl FinishLayer {
    pub fn new(abandoned: Abandoned) -> FinishLayer {
        FinishLayer { abandoned }
    }
}

impl<S> tower::Layer<S> for FinishLayer {
    type Service = Finish<S>;
    fn layer(&self, inner: S) -> Finish<S> {
        Finish {
            inner,
            abandoned: self.abandoned,
        }
    }
}

#[derive(Clone)]
pub struct Finish<S> {
    inner: S,
    abandoned: Abandoned,
}

impl<S, R> tower::Service<R> for Finish<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Finishing<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Finishing<S::Future> {
        Finishing {
            future: Some(Box::pin(self.inner.call(request))),
            abandoned: self.abandoned,
        }
    }
}

/// A request's future that, when dropped before it is done, hands the rest of its work to
/// a task of its own.
pub struct Finishing<F: Future + Send + 'static> {
    future: Option<Pin<Box<F>>>,
    abandoned: Abandoned,
}

impl<F: Future + Send + 'static> Future for Finishing<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // `Finishing` is `Unpin`: its future is pinned in its own box.
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else {
            panic!("`Finishing` polled after it completed");
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        this.future = None;
        Poll::Ready(output)
    }
}

impl<F: Future + Send + 'static> Drop for Finishing<F> {
    fn drop(&mut self) {
        if let Some(rest) = self.future.take() {
            tracing::debug!("the client hung up; the request runs to its end");
            self.abandoned.finish(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;
    use tower::{Layer, Service};

    /// A request that takes 50 ms and then records that it ran to its end.
    fn slow_service(
        done: Arc<AtomicBool>,
    ) -> impl tower::Service<(), Response = (), Error = std::convert::Infallible, Future: Send>
    {
        tower::service_fn(move |()| {
            let done = done.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                done.store(true, Ordering::Release);
                Ok::<_, std::convert::Infallible>(())
            }
        })
    }

    #[tokio::test]
    async fn a_dropped_request_runs_to_its_end_and_is_waited_for() {
        let abandoned = Abandoned::default();
        let done = Arc::new(AtomicBool::new(false));
        let mut service = FinishLayer::new(abandoned).layer(slow_service(done.clone()));
        let mut request = service.call(());
        // Started, then dropped as hyper drops it when the connection closes.
        assert!(futures::poll!(&mut request).is_pending());
        drop(request);
        assert_eq!(abandoned.running(), 1);
        assert!(!done.load(Ordering::Acquire));
        tokio::time::timeout(Duration::from_secs(5), abandoned.wait())
            .await
            .expect("the remainder finishes");
        assert!(done.load(Ordering::Acquire));
        assert_eq!(abandoned.running(), 0);
    }

    #[tokio::test]
    async fn a_completed_request_leaves_nothing_behind() {
        let abandoned = Abandoned::default();
        let done = Arc::new(AtomicBool::new(false));
        let mut service = FinishLayer::new(abandoned).layer(slow_service(done.clone()));
        service.call(()).await.unwrap();
        assert!(done.load(Ordering::Acquire));
        assert_eq!(abandoned.running(), 0);
        // Dropped before its first poll: the request never started, yet it still runs, as
        // hyper may drop a request whose handler was called but not polled.
        let done = Arc::new(AtomicBool::new(false));
        let mut service = FinishLayer::new(abandoned).layer(slow_service(done.clone()));
        drop(service.call(()));
        abandoned.wait().await;
        assert!(done.load(Ordering::Acquire));
    }
}
