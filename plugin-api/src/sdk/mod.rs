//! The plugin author's side: plain Rust async traits, the runtime, panic guards, config and
//! logging helpers. None of this is part of the ABI; it is compiled into each plugin.

mod adapters;
#[cfg(feature = "mimalloc")]
pub mod allocator;
mod config;
mod guard;
mod logging;
pub mod memory;
mod runtime;
pub mod testkit;
pub mod text_log;
mod traits;

pub use adapters::{
    event_broker_box, lock_store_box, model_source_box, nlu_connector_box, tracker_store_box,
};
pub use config::{parse_config, take_worker_threads};
pub use guard::guard;
pub use logging::install_host_logger;
pub use runtime::{runtime, runtime_handle_if_started};
/// The hasher for maps keyed by text a client chooses (conversation ids, words of a message):
/// foldhash's keyed hash, with a random key per map, so keys cannot be made to collide
/// without knowing it; several times faster than SipHash on short keys, which every request
/// hashes several times.
pub type KeyedHasher = foldhash::quality::RandomState;

pub use traits::{
    EventBrokerPlugin, LockStorePlugin, ModelSourcePlugin, NluConnectorPlugin, TrackerStorePlugin,
};

/// An error's text followed by the texts of its causes (`a: b: c`), each cause only when the
/// text so far does not already say it. Clients such as reqwest put the useful part ("connection
/// refused") in a cause and only "error sending request" in the error itself.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RResult, RStr};

use crate::{
    EventBrokerBox, HostApiBox, LockStoreBox, ModelSourceBox, NluConnectorBox, PluginError,
    TrackerStoreBox,
};

/// What a constructor receives besides its config.
pub struct PluginContext {
    /// The host's services (logging).
    pub host: HostApiBox,
    /// The plugin's own tokio runtime: spawn background tasks here.
    pub runtime: tokio::runtime::Handle,
}

/// Runs a plugin constructor inside the plugin's runtime, with its panics caught, and boxes
/// the component. Used by [`crate::export_plugin!`]; not usually called directly.
fn construct<T, B>(
    config: RStr<'_>,
    host: HostApiBox,
    ctor: impl FnOnce(&str, &PluginContext) -> Result<T, PluginError>,
    boxer: impl FnOnce(T, Option<tokio::runtime::Handle>) -> B,
) -> RResult<B, PluginError> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        install_host_logger(host.clone());
        let (config, threads) = take_worker_threads(config.as_str())?;
        let rt = runtime(threads);
        let ctx = PluginContext {
            host,
            runtime: rt.clone(),
        };
        let _entered = rt.enter();
        let component = ctor(&config, &ctx)?;
        Ok(boxer(component, Some(rt)))
    }));
    match outcome {
        Ok(Ok(b)) => RResult::ROk(b),
        Ok(Err(e)) => RResult::RErr(e),
        Err(panic) => RResult::RErr(PluginError::from_panic(panic)),
    }
}

macro_rules! constructor_fn {
    ($fn_name:ident, $plugin_trait:ident, $boxed:ty, $boxer:ident) => {
        #[doc = concat!("Constructs a boxed component for [`", stringify!($plugin_trait), "`]; used by `export_plugin!`.")]
        pub fn $fn_name<T: $plugin_trait>(
            config: RStr<'_>,
            host: HostApiBox,
            ctor: impl FnOnce(&str, &PluginContext) -> Result<T, PluginError>,
        ) -> RResult<$boxed, PluginError> {
            construct(config, host, ctor, $boxer)
        }
    };
}

constructor_fn!(
    new_tracker_store,
    TrackerStorePlugin,
    TrackerStoreBox,
    tracker_store_box
);
constructor_fn!(
    new_lock_store,
    LockStorePlugin,
    LockStoreBox,
    lock_store_box
);
constructor_fn!(
    new_event_broker,
    EventBrokerPlugin,
    EventBrokerBox,
    event_broker_box
);
constructor_fn!(
    new_nlu_connector,
    NluConnectorPlugin,
    NluConnectorBox,
    nlu_connector_box
);
constructor_fn!(
    new_model_source,
    ModelSourcePlugin,
    ModelSourceBox,
    model_source_box
);

/// Exports a plugin library: its name (the `type:` users write), its version, and one
/// constructor per kind it provides. A constructor is any `fn(&str, &PluginContext) ->
/// Result<impl KindPlugin, PluginError>` (a function path or a closure).
///
/// The kinds, in this order, each optional: `tracker_store`, `lock_store`, `event_broker`,
/// `nlu_connector`, `model_source`.
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr
        $(, tracker_store: $ts:expr)?
        $(, lock_store: $ls:expr)?
        $(, event_broker: $eb:expr)?
        $(, nlu_connector: $nc:expr)?
        $(, model_source: $ms:expr)?
        $(,)?
    ) => {
        // What abi_stable's `#[export_root_module]` generates, spelled with `$crate` paths so
        // that plugin crates need no direct dependency on abi_stable. The symbol name is the
        // one abi_stable's loader looks up (`mangled_root_module_loader_name()`).
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi_stable::library::LibHeader = {
            extern "C" fn __colloquy_erased_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(colloquy_plugin_root_module)
            }
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::PluginModRef>(
                    __colloquy_erased_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };

        pub fn colloquy_plugin_root_module() -> $crate::PluginModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            extern "C" fn __colloquy_name() -> $crate::abi_stable::std_types::RStr<'static> {
                $crate::abi_stable::std_types::RStr::from_str($name)
            }
            extern "C" fn __colloquy_version() -> $crate::abi_stable::std_types::RStr<'static> {
                $crate::abi_stable::std_types::RStr::from_str($version)
            }
            $crate::PluginMod {
                name: __colloquy_name,
                plugin_version: __colloquy_version,
                new_tracker_store: $crate::__colloquy_ctor!(new_tracker_store, TrackerStoreBox $(, $ts)?),
                new_lock_store: $crate::__colloquy_ctor!(new_lock_store, LockStoreBox $(, $ls)?),
                new_event_broker: $crate::__colloquy_ctor!(new_event_broker, EventBrokerBox $(, $eb)?),
                new_nlu_connector: $crate::__colloquy_ctor!(new_nlu_connector, NluConnectorBox $(, $nc)?),
                new_model_source: $crate::__colloquy_ctor!(new_model_source, ModelSourceBox $(, $ms)?),
            }
            .leak_into_prefix()
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __colloquy_ctor {
    ($sdk_fn:ident, $boxed:ident) => {
        ::core::option::Option::None
    };
    ($sdk_fn:ident, $boxed:ident, $ctor:expr) => {{
        extern "C" fn __colloquy_construct(
            config: $crate::abi_stable::std_types::RStr<'_>,
            host: $crate::HostApiBox,
        ) -> $crate::abi_stable::std_types::RResult<$crate::$boxed, $crate::PluginError> {
            $crate::sdk::$sdk_fn(config, host, $ctor)
        }
        ::core::option::Option::Some(__colloquy_construct as $crate::Constructor<$crate::$boxed>)
    }};
}
