//! The domain: what the bot knows (intents, entities, slots, responses, actions, forms).
//!
//! This minimal version carries only what the tracker engine needs; `colloquy train` fills a
//! complete one from `domain.yml`.

use serde_json::{json, Map, Value};

/// A slot as the tracker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub name: String,
    /// The value after a reset (`initial_value`, null by default).
    pub initial_value: Value,
}

/// Session settings (`session_config` in the domain).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Minutes of inactivity after which a new session starts; 0 disables sessions.
    pub session_expiration_time: f64,
    pub carry_over_slots_to_new_session: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            session_expiration_time: 60.0,
            carry_over_slots_to_new_session: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Domain {
    pub slots: Vec<Slot>,
    pub session_config: SessionConfig,
}

impl Domain {
    /// The domain in force without a model: only the implicit slot every 3.6 domain has.
    pub fn empty() -> Domain {
        Domain {
            slots: vec![Slot {
                name: "session_started_metadata".into(),
                initial_value: Value::Null,
            }],
            session_config: SessionConfig::default(),
        }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// The 3.6 `GET /domain` JSON.
    pub fn to_json(&self) -> Value {
        let slots: Map<String, Value> = self
            .slots
            .iter()
            .map(|s| (s.name.clone(), json!({"type": "any", "initial_value": s.initial_value, "influence_conversation": false, "mappings": []})))
            .collect();
        json!({
            "version": "3.1",
            "config": {"store_entities_as_slots": true},
            "session_config": {
                "session_expiration_time": self.session_config.session_expiration_time,
                "carry_over_slots_to_new_session": self.session_config.carry_over_slots_to_new_session,
            },
            "intents": [],
            "entities": [],
            "slots": slots,
            "responses": {},
            "actions": [],
            "forms": {},
            "e2e_actions": [],
        })
    }

    /// The same content as YAML (`Accept: application/x-yaml`).
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(&self.to_json()).unwrap_or_default()
    }
}
