//! The services the host gives plugins: today, a log that ends up in the host's `tracing`.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RStr, RString};
use colloquy_plugin_api::{HostApi, HostApiBox, HostApi_TO, PluginError};

#[derive(Clone)]
struct Host {
    plugin: String,
}

impl HostApi for Host {
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>) {
        let (plugin, target, message) = (self.plugin.as_str(), target.as_str(), message.as_str());
        match level {
            1 => tracing::error!(target: "colloquy::plugin", plugin, target, "{message}"),
            2 => tracing::warn!(target: "colloquy::plugin", plugin, target, "{message}"),
            3 => tracing::info!(target: "colloquy::plugin", plugin, target, "{message}"),
            4 => tracing::debug!(target: "colloquy::plugin", plugin, target, "{message}"),
            _ => tracing::trace!(target: "colloquy::plugin", plugin, target, "{message}"),
        }
    }

    fn call(&self, op: RStr<'_>, _payload: RStr<'_>) -> RResult<RString, PluginError> {
        RResult::RErr(PluginError::unsupported(op.as_str()))
    }
}

/// The host services handed to one plugin's constructors; its name tags its log lines.
pub fn host_api_for(plugin: &str) -> HostApiBox {
    HostApi_TO::from_ptr(
        RArc::new(Host {
            plugin: plugin.to_string(),
        }),
        TD_Opaque,
    )
}
