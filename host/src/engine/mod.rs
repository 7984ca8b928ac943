//! The conversation engine's pure core: events in, state out. No I/O here.

pub mod event;
mod event_json;
pub mod story;
pub mod texts;
pub mod tracker;

pub use event::{Event, EventError, EventKind};
pub use texts::EventTexts;
pub use tracker::{tracker_json, EventVerbosity, TrackerState};
