//! The JSON text of a conversation's events, kept beside the parsed events so that answering
//! a tracker costs one copy per event instead of a serialisation (P8 in docs/benchmarks.md).
//!
//! The texts live in the plugin SDK's [`TextLog`]: bounded chunks, comma-separated within a
//! chunk, so that a run of consecutive events is a slice per chunk and a long conversation
//! never copies itself into a bigger buffer.

use colloquy_plugin_api::sdk::text_log::TextLog;

use super::Event;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventTexts(TextLog);

impl EventTexts {
    /// The texts of `events`, serialised as 3.6 does (`Event`'s `Serialize`).
    pub fn of(events: &[Event]) -> EventTexts {
        let mut texts = TextLog::default();
        for e in events {
            texts.push(&e.to_json_string());
        }
        EventTexts(texts)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends the text of one event. The caller keeps it in step with the parsed events.
    pub fn push(&mut self, json: &str) {
        self.0.push(json);
    }

    /// The text of event `i`.
    pub fn get(&self, i: usize) -> &str {
        self.0.get(i)
    }

    /// The texts of events `range`, comma-separated: a slice per chunk, to be joined by `,`.
    pub fn slices(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &str> + '_ {
        self.0.slices(range)
    }
}
