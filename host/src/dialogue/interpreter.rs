//! Turning text into parse data inside the host: the `/intent@conf{…}` shortcut first, then
//! the model's embedded NLU.

use serde_json::{json, Value};

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

/// Parses `text`: the `/intent{…}` shortcut (default intents included), else the model's
/// embedded NLU (which applies its `FallbackClassifier` itself), else Rasa's empty result.
pub fn parse(model: &Model, domain: &Domain, text: &str) -> Value {
    let mut intents: Vec<String> = domain.intent_names().into_iter().map(str::to_string).collect();
    intents.extend(DEFAULT_INTENTS.iter().map(|i| i.to_string()));
    let entities: Vec<String> = domain.entity_names().into_iter().map(str::to_string).collect();
    let mut parsed = crate::nlu::parse_message(model.nlu.as_ref(), text, Some(&intents), Some(&entities));
    if parsed.get("intent").and_then(|i| i.get("name")).is_none() {
        parsed = empty_parse(text);
    }
    parsed
}
