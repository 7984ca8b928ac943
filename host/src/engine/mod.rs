//! The conversation engine's pure core: events in, state out. No I/O here.

pub mod bot_data;
pub mod event;
mod event_json;
pub mod story;
pub mod texts;
pub mod tracker;

pub use bot_data::BotData;
pub use event::{Event, EventError, EventKind};
/// A JSON string as `serde_json` writes it, faster when nothing needs escaping.
pub(crate) use event_json::string as write_json_string;
pub use texts::EventTexts;
pub use tracker::{tracker_json, EventVerbosity, TrackerState};
