//! The plugin host: built-in components and `.so` plugins behind one contract.
//!
//! Invariant: the rest of the host never knows whether a component is built in or loaded
//! from a file; both are `PluginModRef`s whose constructors return the same ABI objects.

pub mod builtin;
pub mod handles;
pub mod host_api;
pub mod loader;
pub mod local_models;
pub mod registry;

pub use handles::{
    BrokerHandle, LockStoreHandle, ModelSourceHandle, NluHandle, PluginCallError,
    TrackerStoreHandle,
};
pub use registry::{Kind, Registry, RegistryError};
