//! Rasa's message format: one JSON object per event, `{"sender_id": <id>, <event keys>}`.

use std::sync::LazyLock;

use colloquy_plugin_api::PluginError;
use memchr::memmem::Finder;
use serde_json::{Map, Value};

// Built once: `memmem::find` builds its searcher on every call, which cost more than the
// search itself on an event's few hundred bytes (~450 instructions a call, callgrind).
static SENDER_ID: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"sender_id"));
static UNICODE_ESCAPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\\u"));

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
pub fn render(sender_id: &str, event_json: &str) -> Result<Vec<u8>, PluginError> {
    let mut body = Vec::with_capacity(event_json.len() + sender_id.len() + 24);
    render_into(&mut body, sender_id, event_json)?;
    Ok(body)
}

/// [`render`], appending the body to `out`. On error `out` may hold part of a body; the
/// caller truncates it.
pub fn render_into(
    out: &mut Vec<u8>,
    sender_id: &str,
    event_json: &str,
) -> Result<(), PluginError> {
    // The usual case (this runs once per event on the host's request path): the host's own
    // serialisation of an event, which has no `sender_id` (the plugin contract), so the body
    // is the event's text with `"sender_id":…,` put after its `{`. Without the words
    // `sender_id` or any `\u` escape (which could spell them) in the text, no key can be
    // `sender_id`, so the text is not parsed: only its framing as an object is checked.
    let trimmed = event_json.trim();
    let framed = trimmed.len() >= 2 && trimmed.starts_with('{') && trimmed.ends_with('}');
    let plain = framed
        && SENDER_ID.find(trimmed.as_bytes()).is_none()
        && UNICODE_ESCAPE.find(trimmed.as_bytes()).is_none();
    if plain
        || matches!(
            serde_json::from_str(event_json),
            Ok(TopLevelKeys { sender_id: false })
        )
    {
        let rest = trimmed[1..].trim_start(); // after `{`
        out.reserve(trimmed.len() + sender_id.len() + 16);
        out.extend_from_slice(b"{\"sender_id\":");
        serde_json::to_writer(&mut *out, sender_id).map_err(unwritable)?;
        if !rest.starts_with('}') {
            out.push(b',');
        }
        out.extend_from_slice(rest.as_bytes());
        return Ok(());
    }
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
    serde_json::to_writer(out, &Value::Object(body)).map_err(unwritable)
}

/// Serialising into memory fails only for values JSON cannot hold; reported, not unwrapped.
fn unwritable(e: serde_json::Error) -> PluginError {
    PluginError::invalid_input(format!("event cannot be written as JSON: {e}"))
}

/// Whether a JSON object has a top-level `sender_id` key; fails for anything but an object.
/// Neither keys nor values are built: keys are compared where they lie, values skipped.
struct TopLevelKeys {
    sender_id: bool,
}

impl<'de> serde::Deserialize<'de> for TopLevelKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = TopLevelKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TopLevelKeys, A::Error> {
                let mut sender_id = false;
                while let Some(IsSenderId(is)) = map.next_key()? {
                    sender_id |= is;
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(TopLevelKeys { sender_id })
            }
        }
        d.deserialize_map(Keys)
    }
}

/// A key compared with `sender_id` as it is read, escaped or not, without an allocation
/// (serde's `Cow<str>` would copy every key into a `String`).
struct IsSenderId(bool);

impl<'de> serde::Deserialize<'de> for IsSenderId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl serde::de::Visitor<'_> for Key {
            type Value = IsSenderId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<IsSenderId, E> {
                Ok(IsSenderId(key == "sender_id"))
            }
        }
        d.deserialize_str(Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: Result<Vec<u8>, PluginError>) -> String {
        String::from_utf8(body.unwrap()).unwrap()
    }

    #[test]
    fn sender_id_first_then_event_keys_in_order() {
        let body = text(render(
            "user-42",
            r#"{"event":"slot","timestamp":1700000001.3,"name":"city","value":"Oslo"}"#,
        ));
        assert_eq!(
            body,
            r#"{"sender_id":"user-42","event":"slot","timestamp":1700000001.3,"name":"city","value":"Oslo"}"#
        );
    }

    #[test]
    fn spliced_bodies_equal_rebuilt_ones() {
        // The fast path (splicing the id into the text) must give exactly what building the
        // object gives, whatever the spacing, nesting, escapes or emptiness of the event.
        let rebuilt = |id: &str, text: &str| {
            let event: Map<String, Value> = serde_json::from_str(text).unwrap();
            let mut body = Map::new();
            body.insert("sender_id".into(), Value::String(id.into()));
            body.extend(event);
            Value::Object(body).to_string()
        };
        for (id, text) in [
            ("a", r#"{"event":"slot","name":"x","value":1}"#),
            (
                "quote\"and\\slash ☕",
                r#"{"event":"bot","text":"hi","data":{"sender_id":1}}"#,
            ),
            (
                "b",
                "  {  \"event\" : \"user\", \"parse_data\": {\"intent\": {}} }  ",
            ),
            ("c", "{}"),
            ("d", " { } "),
            ("e", r#"{"event":"user","text":"a\u00e9\"b"}"#),
        ] {
            let fast = self::text(render(id, text));
            let slow = rebuilt(id, text);
            let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
            assert_eq!(v(&fast), v(&slow), "{text}");
            // Same key order, and the id first.
            let keys = |s: &str| {
                v(s).as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert_eq!(keys(&fast), keys(&slow), "{text}");
            assert!(fast.starts_with("{\"sender_id\":"), "{fast}");
        }
    }

    #[test]
    fn an_events_own_sender_id_keeps_the_first_position() {
        let body = text(render("a", r#"{"event": "x", "sender_id": "b"}"#));
        assert_eq!(body, r#"{"sender_id":"b","event":"x"}"#);
        // Spelt with an escape, it is the same key (read unescaped, not as it lies).
        let body = text(render("a", r#"{"event": "x", "sender\u005fid": "b"}"#));
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
