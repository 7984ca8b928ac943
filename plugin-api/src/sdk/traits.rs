//! The traits a plugin author implements: plain Rust, async, owned arguments.
//!
//! Each method returns a `Send` future; write them as `async fn`. Defaults exist for the
//! optional operations (`health`, `close`, `call`).

use std::future::Future;

use serde_json::{json, Value};

use crate::{EventLog, LogPosition, PluginError};

/// A tracker store: one append-only event log per conversation. Events are JSON objects as
/// strings, stored and returned verbatim.
///
/// The log's length is its version; its epoch must change whenever the log is replaced or
/// deleted (never on append), so that the host can tell a cached prefix from a rewritten log.
/// The [crate-level documentation](crate) has a complete in-memory example,
/// `colloquy new-plugin tracker-store <name>` generates one as a crate, and
/// [`testkit::tracker_store_suite`](crate::sdk::testkit::tracker_store_suite) is the contract
/// it must pass.
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
///
/// `acquire` waits at most `wait_ms` (then fails with [`PluginError::timeout`]) and returns a
/// ticket; a holder that does not release within its lifetime (`lifetime_ms`, 0 = the store's
/// default) loses the lock to the next waiter. The contract is
/// [`testkit::lock_store_suite`](crate::sdk::testkit::lock_store_suite);
/// `colloquy new-plugin lock-store <name>` generates a FIFO implementation.
///
/// A short lock store: a one-permit [`tokio::sync::Semaphore`] per conversation, which
/// serves its waiters in FIFO order. For brevity it leaves out the lease (a holder that never
/// releases keeps the lock), which the contract suite checks; the generated crate has it.
///
/// ```no_run
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use colloquy_plugin_api::{export_plugin, sdk, PluginError};
/// use tokio::sync::{OwnedSemaphorePermit, Semaphore};
///
/// #[derive(Default)]
/// struct Locks {
///     locks: Mutex<HashMap<String, Arc<Semaphore>>>,
///     held: Mutex<HashMap<String, OwnedSemaphorePermit>>,
/// }
///
/// impl sdk::LockStorePlugin for Locks {
///     async fn acquire(&self, id: String, _lifetime_ms: u64, wait_ms: u64) -> Result<String, PluginError> {
///         let lock = self.locks.lock().unwrap().entry(id.clone())
///             .or_insert_with(|| Arc::new(Semaphore::new(1))).clone();
///         let permit = tokio::time::timeout(Duration::from_millis(wait_ms), lock.acquire_owned())
///             .await
///             .map_err(|_| PluginError::timeout(format!("lock {id} not acquired in {wait_ms} ms")))?
///             .map_err(|e| PluginError::backend(e.to_string()))?;
///         self.held.lock().unwrap().insert(id.clone(), permit);
///         Ok(id) // the ticket
///     }
///     async fn release(&self, id: String, _ticket: String) -> Result<(), PluginError> {
///         self.held.lock().unwrap().remove(&id); // dropping the permit wakes the next waiter
///         Ok(())
///     }
/// }
///
/// export_plugin! {
///     name: "my_locks",
///     version: env!("CARGO_PKG_VERSION"),
///     lock_store: |config: &str, _ctx: &sdk::PluginContext| {
///         #[derive(serde::Deserialize)]
///         #[serde(deny_unknown_fields)]
///         struct NoConfig {}
///         let _: NoConfig = sdk::parse_config(config)?;
///         Ok(Locks::default())
///     },
/// }
/// ```
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
///
/// The host publishes only events the tracker store accepted, in order per conversation.
/// Each event is a JSON object as the host serialised it (compact, UTF-8), without
/// `sender_id`; Rasa's brokers add it to each message. Report counters
/// in `health` (they appear in `/status`), and deliver what is queued in `flush`, which the
/// host calls at shutdown.
///
/// A broker that writes one JSON line per event to stdout, with its own config key:
///
/// ```no_run
/// use std::io::Write;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use colloquy_plugin_api::{export_plugin, sdk, PluginError};
/// use serde_json::{json, Value};
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config {
///     #[serde(default)]
///     prefix: String,
/// }
///
/// struct StdoutBroker { prefix: String, published: AtomicU64 }
///
/// impl sdk::EventBrokerPlugin for StdoutBroker {
///     async fn publish(&self, id: String, events: Vec<String>) -> Result<(), PluginError> {
///         let mut out = std::io::stdout().lock();
///         for text in events {
///             let mut event: Value = serde_json::from_str(&text)
///                 .map_err(|e| PluginError::invalid_input(e.to_string()))?;
///             event["sender_id"] = Value::String(id.clone());
///             writeln!(out, "{}{event}", self.prefix)
///                 .map_err(|e| PluginError::backend(e.to_string()))?;
///             self.published.fetch_add(1, Ordering::Relaxed);
///         }
///         Ok(())
///     }
///     async fn health(&self) -> Result<Value, PluginError> {
///         Ok(json!({"ok": true, "published": self.published.load(Ordering::Relaxed)}))
///     }
/// }
///
/// fn new_broker(config: &str, _ctx: &sdk::PluginContext) -> Result<StdoutBroker, PluginError> {
///     let config: Config = sdk::parse_config(config)?;
///     Ok(StdoutBroker { prefix: config.prefix, published: AtomicU64::new(0) })
/// }
///
/// export_plugin! {
///     name: "stdout",
///     version: env!("CARGO_PKG_VERSION"),
///     event_broker: new_broker,
/// }
/// ```
pub trait EventBrokerPlugin: Send + Sync + 'static {
    fn publish(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> impl Future<Output = Result<(), PluginError>> + Send;

    /// What the host calls: [`Self::publish`] with the events lent for the call. By default
    /// it copies them and calls `publish`; a broker that copies them into a buffer of its own
    /// anyway implements this too and saves a copy of every event (the Kafka plugin does).
    fn publish_borrowed<'a>(
        &'a self,
        conversation_id: &'a str,
        events: &'a [&'a str],
    ) -> impl Future<Output = Result<(), PluginError>> + Send + 'a {
        async move {
            let events = events.iter().map(|e| e.to_string()).collect();
            self.publish(conversation_id.to_string(), events).await
        }
    }

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
///
/// The request is `{"text", "message_id", "sender_id", "model"?}`; the answer is Rasa's parse
/// data (`text`, `intent` with `name` and `confidence`, `entities`, `intent_ranking`). A
/// request the connector cannot handle is a [`PluginError::invalid_input`] (400); an
/// unreachable NLU service is [`PluginError::connection`] (503).
///
/// A connector that calls every message a greeting when it says hello:
///
/// ```no_run
/// use colloquy_plugin_api::{export_plugin, sdk, PluginError};
/// use serde_json::{json, Value};
///
/// struct HelloNlu;
///
/// impl sdk::NluConnectorPlugin for HelloNlu {
///     async fn parse(&self, request: Value) -> Result<Value, PluginError> {
///         let text = request["text"].as_str()
///             .ok_or_else(|| PluginError::invalid_input("no `text` in the request"))?;
///         let intent = if text.to_lowercase().contains("hello") {
///             json!({"name": "greet", "confidence": 1.0})
///         } else {
///             json!({"name": "nlu_fallback", "confidence": 1.0})
///         };
///         Ok(json!({"text": text, "intent": intent, "entities": [], "intent_ranking": [intent]}))
///     }
/// }
///
/// export_plugin! {
///     name: "hello_nlu",
///     version: env!("CARGO_PKG_VERSION"),
///     nlu_connector: |_config: &str, _ctx: &sdk::PluginContext| Ok(HelloNlu),
/// }
/// ```
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
///
/// The request is `{"current_fingerprint": str|null, "dest_dir": str}`; the answer is
/// `{"status": "unchanged"}` or `{"status": "new", "path": str, "fingerprint": str|null}`,
/// optionally with `"next_poll_ms"` (`null`: do not poll again). Downloads and file I/O
/// block: run them with `tokio::task::spawn_blocking` (the plugin's runtime is entered in
/// every call), or use an async client.
///
/// A source serving one local archive, copied once:
///
/// ```no_run
/// use std::path::PathBuf;
/// use colloquy_plugin_api::{export_plugin, sdk, PluginError};
/// use serde_json::{json, Value};
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config { archive: PathBuf }
///
/// struct LocalModel { archive: PathBuf }
///
/// impl sdk::ModelSourcePlugin for LocalModel {
///     async fn fetch(&self, request: Value) -> Result<Value, PluginError> {
///         if request["current_fingerprint"] == "v1" {
///             return Ok(json!({"status": "unchanged", "next_poll_ms": null}));
///         }
///         let dest = PathBuf::from(request["dest_dir"].as_str()
///             .ok_or_else(|| PluginError::invalid_input("no `dest_dir`"))?)
///             .join("model.tar.gz");
///         let (from, to) = (self.archive.clone(), dest.clone());
///         tokio::task::spawn_blocking(move || std::fs::copy(from, to))
///             .await
///             .map_err(|e| PluginError::backend(e.to_string()))?
///             .map_err(|e| PluginError::unavailable(e.to_string()))?;
///         Ok(json!({"status": "new", "path": dest, "fingerprint": "v1", "next_poll_ms": null}))
///     }
/// }
///
/// fn new_source(config: &str, _ctx: &sdk::PluginContext) -> Result<LocalModel, PluginError> {
///     let config: Config = sdk::parse_config(config)?;
///     Ok(LocalModel { archive: config.archive })
/// }
///
/// export_plugin! {
///     name: "local_model",
///     version: env!("CARGO_PKG_VERSION"),
///     model_source: new_source,
/// }
/// ```
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
