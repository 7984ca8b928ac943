//! The domain: what the bot knows (intents, entities, slots, responses, actions, forms).
//!
//! `parse` reads Rasa 3 domains (one file or a `domain/` folder, merged as Rasa does) and
//! rasa_core 0.x domains (`templates:`, slot `type:` only, `forms:` as a list). `to_json`
//! gives the 3.6 `GET /domain` shape, which is also what a Colloquy model stores.

pub mod parse;
pub mod responses;
pub mod slots;

use serde_json::{json, Map, Value};

pub use parse::{DomainError, Source};
pub use slots::{MappingCondition, Slot, SlotKind, SlotMapping};

/// Rasa 3.6's default actions, in the order Rasa lists them in prediction scores.
pub const DEFAULT_ACTIONS: &[&str] = &[
    "action_listen",
    "action_restart",
    "action_session_start",
    "action_default_fallback",
    "action_deactivate_loop",
    "action_revert_fallback_events",
    "action_default_ask_affirmation",
    "action_default_ask_rephrase",
    "action_two_stage_fallback",
    "action_unlikely_intent",
    "action_back",
    "...",
    "action_extract_slots",
];

/// Intents every domain understands implicitly (`/restart`, `/back`, `/session_start`).
pub const DEFAULT_INTENTS: &[&str] = &[
    "restart",
    "back",
    "out_of_scope",
    "session_start",
    "nlu_fallback",
];

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

/// Which entities of a message an intent lets into the dialogue state.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum EntityFilter {
    #[default]
    All,
    Only(Vec<String>),
    Ignore(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    pub name: String,
    pub use_entities: EntityFilter,
    /// 0.x `triggers:` (MappingPolicy): the action this intent always triggers.
    pub triggers: Option<String>,
    /// The properties as written (re-emitted by `to_json`); empty for a plain name.
    pub properties: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub name: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub influence_conversation: bool,
    pub properties: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub name: String,
    pub required_slots: Vec<String>,
    pub ignored_intents: Vec<String>,
    pub definition: Map<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub struct Domain {
    pub version: String,
    pub intents: Vec<Intent>,
    pub entities: Vec<Entity>,
    pub slots: Vec<Slot>,
    /// Response name → variations (each a JSON object with `text`, `buttons`, `image`, …).
    pub responses: Vec<(String, Vec<Value>)>,
    /// Custom actions as declared under `actions:` (names only, declaration order).
    pub actions: Vec<String>,
    /// Actions declared with `send_domain: true`.
    pub send_domain_actions: Vec<String>,
    pub forms: Vec<Form>,
    pub e2e_actions: Vec<String>,
    pub session_config: SessionConfig,
    pub store_entities_as_slots: bool,
    /// Loaded from a rasa_core 0.x domain.
    pub legacy: bool,
}

impl Domain {
    /// The domain in force without a model: only the implicit slot every 3.6 domain has.
    pub fn empty() -> Domain {
        Domain {
            version: "3.1".into(),
            slots: vec![Slot::implicit("session_started_metadata", SlotKind::Any)],
            store_entities_as_slots: true,
            ..Domain::default()
        }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.name == name)
    }

    pub fn intent(&self, name: &str) -> Option<&Intent> {
        self.intents.iter().find(|i| i.name == name)
    }

    pub fn intent_names(&self) -> Vec<&str> {
        self.intents.iter().map(|i| i.name.as_str()).collect()
    }

    pub fn entity_names(&self) -> Vec<&str> {
        self.entities.iter().map(|e| e.name.as_str()).collect()
    }

    /// The variations of a response, if the domain has it.
    pub fn response(&self, name: &str) -> Option<&[Value]> {
        self.responses
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn form(&self, name: &str) -> Option<&Form> {
        self.forms.iter().find(|f| f.name == name)
    }

    pub fn form_names(&self) -> Vec<&str> {
        self.forms.iter().map(|f| f.name.as_str()).collect()
    }

    /// Slot name → its mappings (the input of `action_extract_slots`).
    pub fn slot_mappings(&self) -> Vec<(&str, &[SlotMapping])> {
        self.slots
            .iter()
            .map(|s| (s.name.as_str(), s.mappings.as_slice()))
            .collect()
    }

    /// Every action name, in Rasa's order: default actions, then custom actions, then
    /// `utter_` responses that are not declared as actions, then forms, then e2e texts.
    /// Rasa merges domains through a sorted union, so custom actions and responses are sorted.
    pub fn action_names(&self) -> Vec<String> {
        let mut out: Vec<String> = DEFAULT_ACTIONS.iter().map(|s| s.to_string()).collect();
        let mut custom: Vec<&str> = self.actions.iter().map(String::as_str).collect();
        custom.sort_unstable();
        let mut utters: Vec<&str> = self
            .responses
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.starts_with("utter_"))
            .collect();
        utters.sort_unstable();
        for name in custom
            .into_iter()
            .chain(utters)
            .chain(self.forms.iter().map(|f| f.name.as_str()))
        {
            if !out.iter().any(|a| a == name) {
                out.push(name.to_string());
            }
        }
        out.extend(self.e2e_actions.iter().cloned());
        out
    }

    /// Whether `name` is an action this domain can run.
    pub fn has_action(&self, name: &str) -> bool {
        DEFAULT_ACTIONS.contains(&name)
            || self.actions.iter().any(|a| a == name)
            || self.response(name).is_some()
            || self.form(name).is_some()
            || self.e2e_actions.iter().any(|a| a == name)
    }

    /// The entity types of a message that the intent lets into the dialogue state.
    pub fn used_entities<'a>(
        &self,
        intent: Option<&str>,
        entities: impl Iterator<Item = &'a str>,
    ) -> Vec<String> {
        let filter = intent.and_then(|i| self.intent(i)).map(|i| &i.use_entities);
        let mut out: Vec<String> = entities
            .filter(|e| match filter {
                None | Some(EntityFilter::All) => true,
                Some(EntityFilter::Only(list)) => list.iter().any(|x| x == e),
                Some(EntityFilter::Ignore(list)) => !list.iter().any(|x| x == e),
            })
            .filter(|e| {
                self.entities
                    .iter()
                    .find(|x| x.name == *e)
                    .is_none_or(|x| x.influence_conversation)
            })
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The 3.6 `GET /domain` JSON: the domain as written (merged), without the implicit
    /// slots and default actions, empty sections left out, as Rasa 3.6 returns it.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert(
            "version".into(),
            json!(if self.version.is_empty() {
                "3.1"
            } else {
                &self.version
            }),
        );
        let mut intents: Vec<&Intent> = self.intents.iter().collect();
        intents.sort_by(|a, b| a.name.cmp(&b.name));
        let intents: Vec<Value> = intents
            .into_iter()
            .map(|i| {
                if i.properties.is_empty() {
                    json!(i.name)
                } else {
                    json!({ &i.name: i.properties })
                }
            })
            .collect();
        out.insert("intents".into(), Value::Array(intents));
        if !self.entities.is_empty() {
            let mut ents: Vec<&Entity> = self.entities.iter().collect();
            ents.sort_by(|a, b| a.name.cmp(&b.name));
            let ents: Vec<Value> = ents
                .into_iter()
                .map(|e| {
                    if e.properties.is_empty() {
                        json!(e.name)
                    } else {
                        json!({ &e.name: e.properties })
                    }
                })
                .collect();
            out.insert("entities".into(), Value::Array(ents));
        }
        let responses: Map<String, Value> = self
            .responses
            .iter()
            .map(|(n, v)| (n.clone(), Value::Array(v.clone())))
            .collect();
        out.insert("responses".into(), Value::Object(responses));
        out.insert(
            "session_config".into(),
            json!({
                "session_expiration_time": number(self.session_config.session_expiration_time),
                "carry_over_slots_to_new_session": self.session_config.carry_over_slots_to_new_session,
            }),
        );
        let slots: Map<String, Value> = self
            .slots
            .iter()
            .filter_map(|s| {
                s.definition
                    .as_ref()
                    .map(|d| (s.name.clone(), Value::Object(d.clone())))
            })
            .collect();
        out.insert("slots".into(), Value::Object(slots));
        let mut actions: Vec<&String> = self.actions.iter().collect();
        actions.sort();
        let actions: Vec<Value> = actions
            .into_iter()
            .map(|a| {
                if self.send_domain_actions.contains(a) {
                    json!({ a: {"send_domain": true} })
                } else {
                    json!(a)
                }
            })
            .collect();
        out.insert("actions".into(), Value::Array(actions));
        if !self.forms.is_empty() {
            let forms: Map<String, Value> = self
                .forms
                .iter()
                .map(|f| (f.name.clone(), Value::Object(f.definition.clone())))
                .collect();
            out.insert("forms".into(), Value::Object(forms));
        }
        if !self.e2e_actions.is_empty() {
            out.insert("e2e_actions".into(), json!(self.e2e_actions));
        }
        if !self.store_entities_as_slots {
            out.insert("config".into(), json!({"store_entities_as_slots": false}));
        }
        Value::Object(out)
    }

    /// The same content as YAML (`Accept: application/x-yaml`).
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(&self.to_json()).unwrap_or_default()
    }
}

/// Rasa writes `60`, not `60.0`, for a whole number of minutes.
fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

#[cfg(test)]
mod tests;
