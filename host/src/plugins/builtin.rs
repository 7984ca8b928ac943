//! Built-in components, registered through the same contract as `.so` plugins.

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RResult, RStr};
use colloquy_plugin_api::sdk::memory::{InMemoryLockStore, InMemoryTrackerStore};
use colloquy_plugin_api::sdk::{self, parse_config};
use colloquy_plugin_api::{
    EventBrokerBox, HostApiBox, LockStoreBox, ModelSourceBox, PluginError, PluginMod, PluginModRef,
    TrackerStoreBox,
};

use crate::brokers::file::FileBroker;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

extern "C" fn in_memory_name() -> RStr<'static> {
    RStr::from_str("in_memory")
}
extern "C" fn local_name() -> RStr<'static> {
    RStr::from_str("local")
}
extern "C" fn file_name() -> RStr<'static> {
    RStr::from_str("file")
}
extern "C" fn version() -> RStr<'static> {
    RStr::from_str(env!("CARGO_PKG_VERSION"))
}

fn result<T>(r: Result<T, PluginError>) -> RResult<T, PluginError> {
    match r {
        Ok(v) => RResult::ROk(v),
        Err(e) => RResult::RErr(e),
    }
}

// Built-ins share the host's tokio, so their futures need no runtime entered (`None`).
extern "C" fn new_in_memory_tracker_store(
    config: RStr<'_>,
    _host: HostApiBox,
) -> RResult<TrackerStoreBox, PluginError> {
    result(
        parse_config::<NoConfig>(config.as_str())
            .map(|_| sdk::tracker_store_box(InMemoryTrackerStore::default(), None)),
    )
}

extern "C" fn new_in_memory_lock_store(
    config: RStr<'_>,
    _host: HostApiBox,
) -> RResult<LockStoreBox, PluginError> {
    result(
        parse_config::<NoConfig>(config.as_str())
            .map(|_| sdk::lock_store_box(InMemoryLockStore::default(), None)),
    )
}

extern "C" fn new_file_broker(
    config: RStr<'_>,
    _host: HostApiBox,
) -> RResult<EventBrokerBox, PluginError> {
    result(FileBroker::from_config(config.as_str()).map(|b| sdk::event_broker_box(b, None)))
}

extern "C" fn new_local_model_source(
    config: RStr<'_>,
    _host: HostApiBox,
) -> RResult<ModelSourceBox, PluginError> {
    result(
        super::local_models::LocalModelSource::from_config(config.as_str())
            .map(|s| sdk::model_source_box(s, None)),
    )
}

/// The built-in modules, in lookup order.
pub fn modules() -> Vec<PluginModRef> {
    vec![
        PluginMod {
            name: in_memory_name,
            plugin_version: version,
            new_tracker_store: Some(new_in_memory_tracker_store),
            new_lock_store: Some(new_in_memory_lock_store),
            new_event_broker: None,
            new_nlu_connector: None,
            new_model_source: None,
        }
        .leak_into_prefix(),
        PluginMod {
            name: file_name,
            plugin_version: version,
            new_tracker_store: None,
            new_lock_store: None,
            new_event_broker: Some(new_file_broker),
            new_nlu_connector: None,
            new_model_source: None,
        }
        .leak_into_prefix(),
        PluginMod {
            name: local_name,
            plugin_version: version,
            new_tracker_store: None,
            new_lock_store: None,
            new_event_broker: None,
            new_nlu_connector: None,
            new_model_source: Some(new_local_model_source),
        }
        .leak_into_prefix(),
    ]
}
