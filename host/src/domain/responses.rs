//! Response templates (`responses:`, 0.x `templates:`): normalisation and validation.

use serde_json::{Map, Value};

/// Keys a response variation may carry; at least one content key must be present.
const CONTENT_KEYS: &[&str] = &[
    "text",
    "image",
    "custom",
    "buttons",
    "attachment",
    "quick_replies",
    "elements",
];

/// Normalises one variation: 0.x allowed bare strings (`- "hey there!"`), which are text.
pub fn normalise_variation(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) => Ok(Value::Object(Map::from_iter([(
            "text".to_string(),
            Value::String(s.clone()),
        )]))),
        Value::Object(m) => {
            if !m.keys().any(|k| CONTENT_KEYS.contains(&k.as_str())) {
                return Err(format!(
                    "a response variation needs one of {}; it has {}",
                    CONTENT_KEYS.join(", "),
                    m.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            if let Some(c) = m.get("condition") {
                let ok = c.as_array().is_some_and(|items| {
                    items.iter().all(|i| {
                        i.get("type").and_then(Value::as_str) == Some("slot")
                            && i.get("name").is_some()
                    })
                });
                if !ok {
                    return Err(
                        "a response `condition` must be a list of {type: slot, name, value}".into(),
                    );
                }
            }
            if let Some(b) = m.get("buttons") {
                if !b.is_array() {
                    return Err("response `buttons` must be a list".into());
                }
            }
            Ok(v.clone())
        }
        other => Err(format!(
            "a response variation must be a mapping or a string, not {other}"
        )),
    }
}
