//! Input channels: where user messages arrive and bot messages go.

pub mod rest;
