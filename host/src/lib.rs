//! Colloquy: a conversation server that speaks Rasa's HTTP API.
//!
//! See `ARCHITECTURE.md` at the repository root for the map of this crate.

pub mod agent;
pub mod brokers;
pub mod channels;
pub mod cli;
pub mod config;
pub mod conversations;
pub mod dialogue;
pub mod domain;
pub mod engine;
pub mod http;
pub mod memory;
pub mod model;
pub mod models;
pub mod nlu;
pub mod plugins;
pub mod policy;
pub mod redact;
pub mod scaffold;
pub mod server;
pub mod shell;
pub mod slot_cache;
pub mod training;
