//! # Colloquy plugin API
//!
//! The contract between the Colloquy host and its plugins — tracker stores, lock stores, event
//! brokers, NLU connectors and model sources — and the SDK a plugin author uses to implement it.
//! This is the only crate a plugin depends on.
//!
//! ## Writing a plugin
//!
//! 1. Create a library crate with `crate-type = ["cdylib"]` that depends on this crate (and
//!    keeps `panic = "unwind"`, the default).
//! 2. Implement one SDK trait per kind you provide, e.g. [`sdk::TrackerStorePlugin`].
//! 3. Call [`export_plugin!`] once with the name users will write as `type:` in their
//!    endpoints YAML and a constructor per kind.
//!
//! `colloquy new-plugin <kind> <name>` generates such a crate, with a working in-memory
//! implementation of the kind and the contract suite as a unit test. Each kind's trait has an
//! example: [`sdk::TrackerStorePlugin`] (below), [`sdk::LockStorePlugin`],
//! [`sdk::EventBrokerPlugin`], [`sdk::NluConnectorPlugin`], [`sdk::ModelSourcePlugin`].
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//! use colloquy_plugin_api::{export_plugin, sdk, EventLog, LogPosition, PluginError};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { #[serde(default)] greeting: Option<String> }
//!
//! #[derive(Default)]
//! struct Store { logs: Mutex<HashMap<String, (u64, Vec<String>)>> }
//!
//! impl sdk::TrackerStorePlugin for Store {
//!     async fn load(&self, id: String, from: u64) -> Result<Option<EventLog>, PluginError> {
//!         let logs = self.logs.lock().unwrap();
//!         Ok(logs.get(&id).map(|(epoch, events)| EventLog::from_vec(*epoch, events.len() as u64,
//!             events.iter().skip(from as usize).cloned().collect())))
//!     }
//!     async fn append(&self, id: String, events: Vec<String>) -> Result<LogPosition, PluginError> {
//!         let mut logs = self.logs.lock().unwrap();
//!         let (epoch, log) = logs.entry(id).or_default();
//!         log.extend(events);
//!         Ok(LogPosition { epoch: *epoch, length: log.len() as u64 })
//!     }
//!     async fn replace(&self, id: String, events: Vec<String>) -> Result<LogPosition, PluginError> {
//!         let mut logs = self.logs.lock().unwrap();
//!         let entry = logs.entry(id).or_default();
//!         entry.0 += 1;
//!         entry.1 = events;
//!         Ok(LogPosition { epoch: entry.0, length: entry.1.len() as u64 })
//!     }
//!     async fn keys(&self) -> Result<Vec<String>, PluginError> {
//!         Ok(self.logs.lock().unwrap().keys().cloned().collect())
//!     }
//!     async fn delete(&self, id: String) -> Result<bool, PluginError> {
//!         Ok(self.logs.lock().unwrap().remove(&id).is_some())
//!     }
//! }
//!
//! fn new_store(config: &str, _ctx: &sdk::PluginContext) -> Result<Store, PluginError> {
//!     let _config: Config = sdk::parse_config(config)?;
//!     Ok(Store::default())
//! }
//!
//! export_plugin! {
//!     name: "my_store",
//!     version: env!("CARGO_PKG_VERSION"),
//!     tracker_store: new_store,
//! }
//! ```
//!
//! What the SDK guarantees, so that no plugin author has to:
//! - a panic inside a plugin call becomes a [`PluginError`] of kind [`ErrorKind::PANIC`] for
//!   that call; the host keeps serving;
//! - every future is polled inside the plugin's own multi-thread tokio runtime, so tokio-based
//!   client libraries work (the host's runtime is a different copy of tokio);
//! - `tracing` events of the plugin reach the host's log;
//! - the config arrives as JSON; [`sdk::parse_config`] names the offending key on errors.

pub mod abi;
pub mod error;
pub mod sdk;

pub use abi::*;
pub use error::{ErrorKind, PluginError};

/// Re-exported so that [`export_plugin!`] works in crates that only depend on this one.
pub use abi_stable;
pub use async_ffi;

/// The contract version this crate defines. Plugins whose major.minor differs are refused.
pub const CONTRACT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Operations of the reserved `call(op, payload)` method that the host uses. A plugin that
/// does not know an op answers [`ErrorKind::UNSUPPORTED`] (the SDK's default), and the host
/// then assumes the conservative answer. Adding an op here changes no ABI.
pub mod ops {
    /// Tracker stores: what the host may assume about the store, asked once at start-up.
    /// Payload `""`; answer a JSON object of [`StoreCapabilities`](super::StoreCapabilities).
    pub const CAPABILITIES: &str = "capabilities";
}

/// A tracker store's answer to [`ops::CAPABILITIES`]. Every field defaults to the
/// conservative `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StoreCapabilities {
    /// Only this host process ever writes the store's conversations (an in-process store, not
    /// a shared database), so a conversation the host has cached cannot have changed behind
    /// its back: the host answers from its cache without asking the store for new events.
    /// Wrongly claimed, the host would miss other writers' events; a shared store must not.
    pub sole_writer: bool,
    /// `load` answers on its first poll, never waiting on anything (the conversations are in
    /// this process's memory). Together with `sole_writer`, the host then keeps no copy of
    /// the events' texts of its own: it asks the store for them when a request needs them,
    /// from code that cannot wait, and a `load` that is not ready at once fails that request
    /// with UNAVAILABLE.
    pub immediate_reads: bool,
}

/// Log levels used by [`HostApi::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl EventLog {
    pub fn from_vec(epoch: u64, length: u64, events: Vec<String>) -> Self {
        EventLog {
            epoch,
            length,
            events: events.into_iter().map(Into::into).collect(),
        }
    }
}
