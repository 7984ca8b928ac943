//! The plugin's own tokio runtime, created on first use and shared by all its components.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The plugin's runtime, created with `worker_threads` workers on the first call (1 when not
/// given: on a 2-core machine the host's own workers need the cores).
pub fn runtime(worker_threads: Option<usize>) -> Handle {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(worker_threads.unwrap_or(1).max(1))
                .thread_name("colloquy-plugin")
                .enable_all()
                .build()
                .expect("the plugin's tokio runtime could not be created")
        })
        .handle()
        .clone()
}

/// The runtime's handle if [`runtime`] was called before.
pub fn runtime_handle_if_started() -> Option<Handle> {
    RUNTIME.get().map(|rt| rt.handle().clone())
}
