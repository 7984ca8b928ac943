//! Turning text into parse data inside the host: the `/intent@conf{…}` shortcut first, then
//! the model's embedded NLU.

use serde_json::{json, Map, Value};

use crate::domain::Domain;
use crate::engine::event::IntentRanking;
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

/// A parse result as a `user` event holds it: the parse data and, from the embedded NLU, its
/// intent ranking kept typed (see [`crate::engine::EventKind::User`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub data: Map<String, Value>,
    pub intent_ranking: Option<IntentRanking>,
}

impl Parsed {
    /// A parse result given as JSON: an object is kept as it is, anything else is empty.
    pub fn from_value(value: Value) -> Parsed {
        Parsed {
            data: match value {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            intent_ranking: None,
        }
    }

    /// The whole parse result as JSON (`/model/parse`).
    pub fn into_value(self) -> Value {
        let mut data = self.data;
        if let Some(ranking) = self.intent_ranking {
            // After `text`, where Rasa has it.
            let at = usize::from(data.contains_key("text"));
            data.shift_insert(at, "intent".into(), ranking.intent_value());
            data.insert("intent_ranking".into(), ranking.to_value());
        }
        Value::Object(data)
    }
}

/// The intents (the domain's and Rasa's default ones) and entities a `/intent{…}` shortcut may
/// name.
fn shortcut_names(domain: &Domain) -> (Vec<String>, Vec<String>) {
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
    (intents, entities)
}

/// The `/intent{…}` shortcut's parse of `text`, if it is one. The names it may use are listed
/// only for a text that starts like one (most messages do not).
fn shortcut(domain: &Domain, text: &str) -> Option<Value> {
    if !text.trim().starts_with('/') {
        return None;
    }
    let (intents, entities) = shortcut_names(domain);
    crate::nlu::parse_shortcut(text, Some(&intents), Some(&entities))
}

/// Parses `text`: the `/intent{…}` shortcut (default intents included), else the model's
/// embedded NLU (which applies its `FallbackClassifier` itself), else Rasa's empty result.
pub fn parse(model: &Model, domain: &Domain, text: &str) -> Parsed {
    if let Some(p) = shortcut(domain, text) {
        return Parsed::from_value(p);
    }
    let Some(nlu) = model.nlu.as_ref() else {
        return Parsed::from_value(empty_parse(text));
    };
    let (data, ranking) = nlu.parse_split(text);
    // No intent (a blank text, a model without intents): Rasa's empty result.
    if ranking.top().is_none() {
        return Parsed::from_value(empty_parse(text));
    }
    Parsed {
        data,
        intent_ranking: Some(ranking),
    }
}

/// Parses with the configured NLU connector (`nlu:` in the endpoints YAML) when there is one,
/// the shortcut first; otherwise as [`parse`]. A failing connector gives Rasa's empty result
/// (the connector plugins answer it themselves; a plugin error is turned into it here).
pub async fn parse_with_connector(
    connector: Option<&crate::plugins::NluHandle>,
    model: &Model,
    domain: &Domain,
    text: &str,
    sender_id: &str,
) -> Parsed {
    let Some(connector) = connector else {
        return parse(model, domain, text);
    };
    if let Some(p) = shortcut(domain, text) {
        return Parsed::from_value(p);
    }
    let request = json!({"text": text, "message_id": uuid::Uuid::new_v4().simple().to_string(), "sender_id": sender_id});
    Parsed::from_value(match connector.parse(&request).await {
        // Stored in the `user` event, so it must have the shape a stored event can be read
        // back with; an NLU server that answers otherwise counts as failing.
        Ok(Value::Object(p)) => match crate::engine::event::check_parse_data(&p) {
            Ok(()) => Value::Object(p),
            Err(e) => {
                tracing::warn!(
                    conversation = sender_id,
                    "NLU connector answered an invalid parse result ({e}), using an empty one"
                );
                empty_parse(text)
            }
        },
        Ok(_) => empty_parse(text),
        Err(e) => {
            tracing::warn!(
                conversation = sender_id,
                "NLU connector failed, using an empty parse result: {e}"
            );
            empty_parse(text)
        }
    })
}
