//! The built-in in-memory stores, loaded the way users' plugins are: from a `.so`.
//! It proves that a store behaves identically behind `dlopen`, and it measures the cost.

// The same allocator as the host's built-in stores, so that P4 compares the boundary alone.
// A plugin may choose its own: whatever crosses the ABI is an abi_stable type that is freed
// by the side that allocated it.
#[global_allocator]
static ALLOCATOR: colloquy_plugin_api::sdk::allocator::MiMalloc =
    colloquy_plugin_api::sdk::allocator::MiMalloc;

use colloquy_plugin_api::sdk::memory::{InMemoryLockStore, InMemoryTrackerStore};
use colloquy_plugin_api::{export_plugin, sdk, PluginError};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

fn tracker_store(
    config: &str,
    _ctx: &sdk::PluginContext,
) -> Result<InMemoryTrackerStore, PluginError> {
    let _: NoConfig = sdk::parse_config(config)?;
    Ok(InMemoryTrackerStore::default())
}

fn lock_store(config: &str, _ctx: &sdk::PluginContext) -> Result<InMemoryLockStore, PluginError> {
    let _: NoConfig = sdk::parse_config(config)?;
    Ok(InMemoryLockStore::default())
}

export_plugin! {
    name: "in_memory_plugin",
    version: env!("CARGO_PKG_VERSION"),
    tracker_store: tracker_store,
    lock_store: lock_store,
}
