//! Wraps every plugin future: polled inside the plugin's runtime, panics caught.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use abi_stable::std_types::RResult;
use async_ffi::{FfiFuture, FutureExt as _};
use futures::FutureExt as _;
use tokio::runtime::Handle;

use crate::PluginError;

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
        match this.inner.as_mut() {
            Some(fut) => fut.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for Entered<T> {
    fn drop(&mut self) {
        // A cancelled future (host-side timeout) is dropped on a host thread: its destructors
        // may deregister I/O from the plugin's reactor, so enter the runtime here too.
        let _guard = self.handle.as_ref().map(Handle::enter);
        let inner = self.inner.take();
        // A panicking destructor must not cross the FFI boundary.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
    }
}

/// Turns a plugin future into the FFI future the host awaits. A panic, whether while
/// creating the future (`make`) or while polling it, becomes a `PANIC` error for this call.
pub fn guard<T, Fut>(
    handle: Option<Handle>,
    make: impl FnOnce() -> Fut,
) -> FfiFuture<RResult<T, PluginError>>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, PluginError>> + Send + 'static,
{
    let fut = {
        let _entered = handle.as_ref().map(Handle::enter);
        match catch_unwind(AssertUnwindSafe(make)) {
            Ok(fut) => fut,
            Err(panic) => {
                let err = PluginError::from_panic(panic);
                return async move { RResult::RErr(err) }.into_ffi();
            }
        }
    };
    let caught = AssertUnwindSafe(fut)
        .catch_unwind()
        .map(|outcome| match outcome {
            Ok(Ok(value)) => RResult::ROk(value),
            Ok(Err(err)) => RResult::RErr(err),
            Err(panic) => RResult::RErr(PluginError::from_panic(panic)),
        });
    Entered {
        handle,
        inner: Some(Box::pin(caught)),
    }
    .into_ffi()
}
