//! The JSON text of a conversation's events: what the host's cache keeps of a conversation
//! (P6 in docs/benchmarks.md), and what answering a tracker copies instead of serialising
//! each event (P8). Events are parsed back from it when a request needs them.
//!
//! The texts live in the plugin SDK's [`TextLog`]: bounded chunks, comma-separated within a
//! chunk, so that a run of consecutive events is a slice per chunk and a long conversation
//! never copies itself into a bigger buffer.

use colloquy_plugin_api::sdk::text_log::TextLog;

use super::{Event, EventError};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventTexts(TextLog);

impl EventTexts {
    /// The texts of `events`, serialised as 3.6 does (`Event`'s `Serialize`).
    pub fn of(events: &[Event]) -> EventTexts {
        let texts: Vec<String> = events.iter().map(Event::to_json_string).collect();
        EventTexts::from_texts(&texts)
    }

    /// `texts`, in a buffer of their size (a log built by pushing one text at a time would
    /// hold up to twice that).
    pub fn from_texts(texts: &[String]) -> EventTexts {
        EventTexts(TextLog::of(texts.iter().map(String::as_str)))
    }

    /// Texts already written by Colloquy (a store's copy of what the host wrote).
    pub fn from_strs<'a>(texts: impl IntoIterator<Item = &'a str> + Clone) -> EventTexts {
        EventTexts(TextLog::of(texts))
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

    /// Parses the events of `range` back. The texts are Colloquy's own serialisation, so this
    /// fails only if they were damaged: the error names the event.
    pub fn parse(&self, range: std::ops::Range<usize>) -> Result<Vec<Event>, EventError> {
        range.map(|i| parse_text(i, self.get(i))).collect()
    }

    /// The texts of events `range`, comma-separated: a slice per chunk, to be joined by `,`.
    pub fn slices(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &str> + '_ {
        self.0.slices(range)
    }
}

/// Parses `text`, the stored text of event `i`, back (the error names the event).
pub fn parse_text(i: usize, text: &str) -> Result<Event, EventError> {
    match Event::from_json_text(text) {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err(EventError(format!(
            "event {i} is of a kind that is not kept"
        ))),
        Err(e) => Err(EventError(format!("event {i}: {e}"))),
    }
}
