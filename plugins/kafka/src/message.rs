//! Rasa's message format: one JSON object per event, `{"sender_id": <id>, <event keys>}`.

use colloquy_plugin_api::PluginError;
use serde_json::{Map, Value};

/// Kafka header carrying the deployment environment, as Rasa sends it.
pub const ENVIRONMENT_HEADER: &str = "RASA_ENVIRONMENT";
/// Rasa's value when the `RASA_ENVIRONMENT` variable is unset.
pub const ENVIRONMENT_NOT_SET: &str = "RASA_ENVIRONMENT_NOT_SET";

/// The `RASA_ENVIRONMENT` header value: the variable, or Rasa's placeholder when unset.
pub fn environment() -> String {
    std::env::var(ENVIRONMENT_HEADER).unwrap_or_else(|_| ENVIRONMENT_NOT_SET.to_string())
}

/// Builds the message body for one event. Mirrors Rasa's `body = {"sender_id": id};
/// body.update(event)`: `sender_id` comes first, then the event's keys in their order; an
/// event that carries its own `sender_id` overrides the value but not the position.
pub fn render(sender_id: &str, event_json: &str) -> Result<String, PluginError> {
    let event: Map<String, Value> = serde_json::from_str(event_json)
        .map_err(|e| PluginError::invalid_input(format!("event is not a JSON object: {e}")))?;
    let mut body = Map::with_capacity(event.len() + 1);
    body.insert(
        "sender_id".to_string(),
        Value::String(sender_id.to_string()),
    );
    for (key, value) in event {
        body.insert(key, value);
    }
    Ok(Value::Object(body).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_id_first_then_event_keys_in_order() {
        let body = render(
            "user-42",
            r#"{"event": "slot", "timestamp": 1700000001.3, "name": "city", "value": "Oslo"}"#,
        )
        .unwrap();
        assert_eq!(
            body,
            r#"{"sender_id":"user-42","event":"slot","timestamp":1700000001.3,"name":"city","value":"Oslo"}"#
        );
    }

    #[test]
    fn an_events_own_sender_id_keeps_the_first_position() {
        let body = render("a", r#"{"event": "x", "sender_id": "b"}"#).unwrap();
        assert_eq!(body, r#"{"sender_id":"b","event":"x"}"#);
    }

    #[test]
    fn non_objects_are_invalid_input() {
        for bad in ["[1]", "\"x\"", "{", ""] {
            let e = render("a", bad).unwrap_err();
            assert_eq!(
                e.kind,
                colloquy_plugin_api::ErrorKind::INVALID_INPUT,
                "{bad}"
            );
        }
    }
}
