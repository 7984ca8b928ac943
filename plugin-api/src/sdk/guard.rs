//! Wraps every plugin future: polled inside the plugin's runtime, panics caught.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use abi_stable::std_types::RResult;
use async_ffi::FutureExt as _;
use futures::FutureExt as _;
use tokio::runtime::Handle;

use crate::{PReply, PluginError};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A future polled (and dropped) with a runtime entered. The plugin's tokio is its own copy,
/// distinct from the host's: without this, a plugin future touching tokio would panic with
/// "no reactor running" when the host polls it.
struct Entered<T> {
    handle: Option<Handle>,
    inner: Option<BoxFuture<T>>,
}

impl<T> Future for Entered<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        let _guard = this.handle.as_ref().map(Handle::enter);
        let Some(fut) = this.inner.as_mut() else {
            return Poll::Pending;
        };
        let poll = fut.as_mut().poll(cx);
        if poll.is_ready() {
            // Dropped here, with the runtime entered, so that `drop` need not enter it again.
            drop_caught(this.inner.take());
        }
        poll
    }
}

impl<T> Drop for Entered<T> {
    fn drop(&mut self) {
        if self.inner.is_none() {
            return;
        }
        // A cancelled future (host-side timeout) is dropped on a host thread: its destructors
        // may deregister I/O from the plugin's reactor, so enter the runtime here too.
        let _guard = self.handle.as_ref().map(Handle::enter);
        drop_caught(self.inner.take());
    }
}

/// Drops `value`; a panicking destructor must not cross the FFI boundary.
fn drop_caught<V>(value: V) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
}

/// Turns a plugin future into the reply the host gets. A panic, whether while creating the
/// future (`make`) or while polling it, becomes a `PANIC` error for this call.
///
/// The future is polled once right away, inside the runtime entered for `make`: most calls
/// (an in-memory store, a broker's enqueue) finish without waiting, and the host then gets
/// [`PReply::Ready`], with no FFI future, no further runtime enter and no future kept. That
/// first poll has a no-op waker; a future that is not ready becomes [`PReply::Pending`],
/// polled again by the host with its own waker (a future registers the waker of its latest
/// poll).
pub fn guard<T, Fut>(handle: Option<Handle>, make: impl FnOnce() -> Fut) -> PReply<T>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, PluginError>> + Send + 'static,
{
    let caught = {
        let _entered = handle.as_ref().map(Handle::enter);
        let fut = match catch_unwind(AssertUnwindSafe(make)) {
            Ok(fut) => fut,
            Err(panic) => return PReply::Ready(RResult::RErr(PluginError::from_panic(panic))),
        };
        // Boxed before the first poll: a future that turns out not to be ready must not move
        // afterwards. One allocation either way.
        let mut caught: BoxFuture<RResult<T, PluginError>> = Box::pin(
            AssertUnwindSafe(fut)
                .catch_unwind()
                .map(|outcome| match outcome {
                    Ok(Ok(value)) => RResult::ROk(value),
                    Ok(Err(err)) => RResult::RErr(err),
                    Err(panic) => RResult::RErr(PluginError::from_panic(panic)),
                }),
        );
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(outcome) = caught.as_mut().poll(&mut cx) {
            drop_caught(caught);
            return PReply::Ready(outcome);
        }
        caught
    };
    // Not ready: the host polls it from now on (each poll enters the runtime again).
    PReply::Pending(
        Entered {
            handle,
            inner: Some(caught),
        }
        .into_ffi(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn block_on<F: std::future::IntoFuture>(fut: F) -> F::Output {
        futures::executor::block_on(fut.into_future())
    }

    #[test]
    fn a_ready_future_answers_at_once() {
        let reply = guard(None, || async { Ok::<_, PluginError>(7) });
        assert!(matches!(reply, PReply::Ready(RResult::ROk(7))), "{reply:?}");
    }

    #[test]
    fn a_future_not_ready_at_first_is_woken_through_the_hosts_waker() {
        // The first poll (no-op waker) sees nothing; the value arrives from another thread
        // afterwards and must wake the host's task, or this test hangs.
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        let fut = guard(None, move || async move {
            rx.await
                .map_err(|_| PluginError::unavailable("sender dropped"))
        });
        assert!(matches!(fut, PReply::Pending(_)), "{fut:?}");
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(5).unwrap();
        });
        assert!(matches!(block_on(fut), RResult::ROk(5)));
        sender.join().unwrap();
    }

    #[test]
    fn panics_in_make_and_in_the_first_poll_become_errors() {
        let in_make = guard(None, || -> std::future::Ready<Result<(), PluginError>> {
            panic!("in make")
        });
        let in_poll = guard(None, || async {
            if true {
                panic!("in poll");
            }
            Ok::<(), PluginError>(())
        });
        for reply in [in_make, in_poll] {
            match reply {
                PReply::Ready(RResult::RErr(e)) => assert_eq!(e.kind, ErrorKind::PANIC),
                other => panic!("a panic answered {other:?}"),
            }
        }
    }

    #[test]
    fn the_plugin_runtime_is_entered_for_the_first_poll_and_later_ones() {
        // A runtime of its own threads, which drive its timers, like a plugin's.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let fut = guard(Some(rt.handle().clone()), || async {
            // Both need the runtime's context: the first poll registers the timer.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Ok::<_, PluginError>(Handle::try_current().is_ok())
        });
        // Polled from a thread outside that runtime, like a host's worker.
        assert!(matches!(block_on(fut), RResult::ROk(true)));
    }
}
