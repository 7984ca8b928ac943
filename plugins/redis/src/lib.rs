//! Redis tracker store and lock store for Colloquy (`type: redis`).
//!
//! * [`tracker::RedisTrackerStore`]: an append-only Redis list per conversation (O(1) per
//!   appended event, where Rasa rewrites the whole tracker each turn), epochs for replaced
//!   logs, and transparent reading/conversion of trackers written by Rasa 3.x.
//! * [`lock::RedisLockStore`]: FIFO ticket locks with leases, atomic Lua steps and push
//!   wake-ups (no polling), so several hosts sharing one Redis serialise each conversation.
//!
//! Both connect lazily and reconnect by themselves: Redis being down at start-up does not stop
//! the host, and requests fail with `CONNECTION` (HTTP 503) until it is back. See README.md for
//! configuration and the key layout.

// The host's allocator: faster than glibc's on the small, short-lived strings of every
// event. Whatever crosses the ABI is an abi_stable type, freed by the side that allocated it.
#[global_allocator]
static ALLOCATOR: colloquy_plugin_api::sdk::allocator::MiMalloc =
    colloquy_plugin_api::sdk::allocator::MiMalloc;

pub mod config;
pub mod conn;
pub mod lock;
pub mod tracker;

use colloquy_plugin_api::{export_plugin, sdk::PluginContext, PluginError};

pub use config::{Kind, RedisConfig};
pub use lock::RedisLockStore;
pub use tracker::RedisTrackerStore;

/// Tracker store constructor: parses the config and builds the client, without connecting.
pub fn new_tracker_store(
    config: &str,
    _ctx: &PluginContext,
) -> Result<RedisTrackerStore, PluginError> {
    RedisTrackerStore::new(&RedisConfig::parse(Kind::TrackerStore, config)?)
}

/// Lock store constructor: parses the config and builds the client, without connecting.
pub fn new_lock_store(config: &str, _ctx: &PluginContext) -> Result<RedisLockStore, PluginError> {
    RedisLockStore::new(&RedisConfig::parse(Kind::LockStore, config)?)
}

export_plugin! {
    name: "redis",
    version: env!("CARGO_PKG_VERSION"),
    tracker_store: new_tracker_store,
    lock_store: new_lock_store,
}
