//! The traits a plugin author implements: plain Rust, async, owned arguments.
//!
//! Each method returns a `Send` future; write them as `async fn`. Defaults exist for the
//! optional operations (`health`, `close`, `call`).

use std::future::Future;

use serde_json::{json, Value};

use crate::{EventLog, LogPosition, PluginError};

/// A tracker store: one append-only event log per conversation. Events are JSON objects as
/// strings, stored and returned verbatim.
pub trait TrackerStorePlugin: Send + Sync + 'static {
    /// The events from offset `from` on, or `None` when the conversation was never stored.
    fn load(
        &self,
        conversation_id: String,
        from: u64,
    ) -> impl Future<Output = Result<Option<EventLog>, PluginError>> + Send;

    /// Appends all events atomically and returns the log's new position.
    fn append(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> impl Future<Output = Result<LogPosition, PluginError>> + Send;

    /// Replaces the log (a new epoch) and returns its position.
    fn replace(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> impl Future<Output = Result<LogPosition, PluginError>> + Send;

    fn keys(&self) -> impl Future<Output = Result<Vec<String>, PluginError>> + Send;

    fn delete(
        &self,
        conversation_id: String,
    ) -> impl Future<Output = Result<bool, PluginError>> + Send;

    /// `{"ok": bool, …}`.
    fn health(&self) -> impl Future<Output = Result<Value, PluginError>> + Send {
        async { Ok(json!({"ok": true})) }
    }

    fn close(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    fn call(
        &self,
        op: String,
        _payload: String,
    ) -> impl Future<Output = Result<String, PluginError>> + Send {
        async move { Err(PluginError::unsupported(&op)) }
    }
}

/// A lock store: FIFO locks per conversation with a lease lifetime.
pub trait LockStorePlugin: Send + Sync + 'static {
    fn acquire(
        &self,
        conversation_id: String,
        lifetime_ms: u64,
        wait_ms: u64,
    ) -> impl Future<Output = Result<String, PluginError>> + Send;

    fn release(
        &self,
        conversation_id: String,
        ticket: String,
    ) -> impl Future<Output = Result<(), PluginError>> + Send;

    fn health(&self) -> impl Future<Output = Result<Value, PluginError>> + Send {
        async { Ok(json!({"ok": true})) }
    }

    fn close(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    fn call(
        &self,
        op: String,
        _payload: String,
    ) -> impl Future<Output = Result<String, PluginError>> + Send {
        async move { Err(PluginError::unsupported(&op)) }
    }
}

/// An event broker. `publish` takes ownership of the events (queued or delivered); the
/// broker is responsible for retrying and for counting what it could not deliver.
pub trait EventBrokerPlugin: Send + Sync + 'static {
    fn publish(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> impl Future<Output = Result<(), PluginError>> + Send;

    fn flush(&self, _timeout_ms: u64) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    fn health(&self) -> impl Future<Output = Result<Value, PluginError>> + Send {
        async { Ok(json!({"ok": true})) }
    }

    fn close(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    fn call(
        &self,
        op: String,
        _payload: String,
    ) -> impl Future<Output = Result<String, PluginError>> + Send {
        async move { Err(PluginError::unsupported(&op)) }
    }
}

/// An NLU connector: request JSON in, Rasa parse data out.
pub trait NluConnectorPlugin: Send + Sync + 'static {
    fn parse(&self, request: Value) -> impl Future<Output = Result<Value, PluginError>> + Send;

    fn health(&self) -> impl Future<Output = Result<Value, PluginError>> + Send {
        async { Ok(json!({"ok": true})) }
    }

    fn close(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    fn call(
        &self,
        op: String,
        _payload: String,
    ) -> impl Future<Output = Result<String, PluginError>> + Send {
        async move { Err(PluginError::unsupported(&op)) }
    }
}

/// A model source: fetches model archives into a directory the host chose.
pub trait ModelSourcePlugin: Send + Sync + 'static {
    fn fetch(&self, request: Value) -> impl Future<Output = Result<Value, PluginError>> + Send;

    fn health(&self) -> impl Future<Output = Result<Value, PluginError>> + Send {
        async { Ok(json!({"ok": true})) }
    }

    fn close(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    fn call(
        &self,
        op: String,
        _payload: String,
    ) -> impl Future<Output = Result<String, PluginError>> + Send {
        async move { Err(PluginError::unsupported(&op)) }
    }
}
