//! The `/intent@confidence{"entity": "value"}` shortcut (Rasa 3's `RegexMessageHandler`,
//! rasa-endpoints §6.3). It runs before the embedded NLU: a message that is a valid shortcut
//! for a known intent never reaches the classifier.
//!
//! The grammar is Rasa's regular expression, kept verbatim so that odd inputs behave the same:
//! `^/(?P<intent>[^{@]+)(?P<confidence>@[0-9.]+)?(?P<entities>\{.+\})?(?P<rest>.*)` over the
//! trimmed text. Offsets are character (not byte) positions in the trimmed text, as in Python.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{json, Map, Value};

/// The `extractor` of entities that come from a shortcut.
pub const EXTRACTOR: &str = "RegexMessageHandler";

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^/(?P<intent>[^{@]+)(?P<confidence>@[0-9.]+)?(?P<entities>\{.+\})?(?P<rest>.*)",
        )
        .expect("valid regex")
    })
}

/// Parses a shortcut message into Rasa's parse data (`text`, `intent`, `entities`,
/// `intent_ranking`), or `None` when the text is not a shortcut: it does not start with `/`
/// (after trimming), does not match the grammar, or names an intent outside `known_intents`
/// (when given). Entity types outside `known_entities` (when given) are dropped.
pub fn parse_shortcut(
    text: &str,
    known_intents: Option<&[String]>,
    known_entities: Option<&[String]>,
) -> Option<Value> {
    let user_text = text.trim();
    if !user_text.starts_with('/') {
        return None;
    }
    let Some(m) = pattern().captures(user_text) else {
        tracing::warn!("Failed to parse intent and entities from '{user_text}'");
        return None;
    };
    let intent = m.name("intent").map_or("", |g| g.as_str()).trim();
    if let Some(known) = known_intents {
        if !known.iter().any(|i| i == intent) {
            tracing::warn!("Failed to parse arguments from '{user_text}': the intent '{intent}' is not in the domain; the text is parsed as a normal message");
            return None;
        }
    }
    let confidence = confidence(m.name("confidence").map(|g| g.as_str()));
    let entities = match m.name("entities") {
        None => Vec::new(),
        Some(g) => {
            let start = user_text[..g.start()].chars().count();
            let end = start + g.as_str().chars().count();
            entities(g.as_str(), start, end, known_entities)
        }
    };
    if let Some(rest) = m.name("rest").filter(|r| !r.as_str().is_empty()) {
        tracing::warn!(
            "Failed to parse the end of '{user_text}': '{}' is ignored",
            rest.as_str()
        );
    }
    let intent = json!({"name": intent, "confidence": confidence});
    Some(json!({
        "text": text,
        "intent": intent,
        "entities": entities,
        "intent_ranking": [intent],
    }))
}

/// `@0.8` → 0.8; absent → 1.0; unparsable (`@1.2.3`) → 0.0; above 1 → 1.0.
fn confidence(raw: Option<&str>) -> f64 {
    let Some(raw) = raw else { return 1.0 };
    match raw.trim().trim_start_matches('@').parse::<f64>() {
        Ok(c) if c > 1.0 => {
            tracing::warn!("Confidence {c} of the intent shortcut is above 1: it is set to 1.0");
            1.0
        }
        Ok(c) => c,
        Err(_) => {
            tracing::warn!("Invalid confidence '{raw}' in the intent shortcut: it is set to 0.0");
            0.0
        }
    }
}

fn entities(blob: &str, start: usize, end: usize, known: Option<&[String]>) -> Vec<Value> {
    let parsed: Map<String, Value> = match serde_json::from_str(blob) {
        Ok(Value::Object(o)) => o,
        Ok(other) => {
            tracing::warn!("Entities of an intent shortcut must be a JSON object, got '{other}': they are ignored");
            return Vec::new();
        }
        Err(e) => {
            tracing::warn!(
                "Invalid JSON '{blob}' in an intent shortcut ({e}): entities are ignored"
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (entity, values) in parsed {
        if let Some(known) = known {
            if !known.contains(&entity) {
                tracing::warn!("The intent shortcut sets the entity '{entity}', which is not in the domain: it is ignored");
                continue;
            }
        }
        let values = match values {
            Value::Array(a) => a,
            v => vec![v],
        };
        for value in values {
            out.push(json!({"entity": entity, "start": start, "end": end, "value": value, "extractor": EXTRACTOR}));
        }
    }
    out
}
