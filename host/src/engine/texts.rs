//! The JSON text of a conversation's events, kept beside the parsed events so that answering
//! a tracker costs one copy per event instead of a serialisation (P8 in docs/benchmarks.md).
//!
//! One buffer per conversation with an end offset per event: appends are amortised pushes and
//! no event costs a heap allocation of its own. Texts are stored comma-separated, so that a
//! run of consecutive events is one slice of the buffer, ready to go between `[` and `]`.

use super::Event;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventTexts {
    buf: String,
    ends: Vec<usize>,
}

impl EventTexts {
    /// The texts of `events`, serialised as 3.6 does (`Event`'s `Serialize`).
    pub fn of(events: &[Event]) -> EventTexts {
        let mut texts = EventTexts::default();
        for e in events {
            texts.push(&e.to_json_string());
        }
        texts
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends the text of one event. The caller keeps it in step with the parsed events.
    pub fn push(&mut self, json: &str) {
        if !self.ends.is_empty() {
            self.buf.push(',');
        }
        self.buf.push_str(json);
        self.ends.push(self.buf.len());
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] + 1
        }
    }

    /// The text of event `i`.
    pub fn get(&self, i: usize) -> &str {
        &self.buf[self.start(i)..self.ends[i]]
    }

    /// The texts of events `range`, comma-separated (empty for an empty range).
    pub fn joined(&self, range: std::ops::Range<usize>) -> &str {
        if range.is_empty() {
            return "";
        }
        &self.buf[self.start(range.start)..self.ends[range.end - 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_kept_per_event() {
        let mut t = EventTexts::default();
        assert!(t.is_empty());
        t.push(r#"{"event":"restart"}"#);
        t.push("");
        t.push(r#"{"event":"pause"}"#);
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(0), r#"{"event":"restart"}"#);
        assert_eq!(t.get(1), "");
        assert_eq!(t.get(2), r#"{"event":"pause"}"#);
        assert_eq!(t.joined(0..3), r#"{"event":"restart"},,{"event":"pause"}"#);
        assert_eq!(t.joined(1..3), r#",{"event":"pause"}"#);
        assert_eq!(t.joined(2..3), r#"{"event":"pause"}"#);
        assert_eq!(t.joined(2..2), "");
    }
}
