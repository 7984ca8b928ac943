//! Configuration read at start-up: the endpoints YAML with `${VAR}` expansion.

pub mod endpoints;
pub mod env;

pub use endpoints::{ComponentConfig, Endpoints, EndpointsError};
