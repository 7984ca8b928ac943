//! Colloquy: a conversation server that speaks Rasa's HTTP API.
//!
//! See `ARCHITECTURE.md` at the repository root for the map of this crate.

pub mod domain;
pub mod model;
pub mod nlu;
pub mod policy;
pub mod training;
