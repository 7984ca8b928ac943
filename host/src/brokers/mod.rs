//! Built-in event brokers.

pub mod file;

use serde_json::{Map, Value};

/// Rasa's broker message: `{"sender_id": …, <the event's keys>}`.
pub fn rasa_message(sender_id: &str, event_json: &str) -> Result<String, serde_json::Error> {
    let event: Map<String, Value> = serde_json::from_str(event_json)?;
    let mut m = Map::with_capacity(event.len() + 1);
    m.insert("sender_id".into(), Value::String(sender_id.into()));
    m.extend(event);
    Ok(Value::Object(m).to_string())
}
