//! Slot types, slot mappings and how a slot value becomes a dialogue-state feature.

use serde_json::Value;

/// The slot types Rasa 3.6 knows (`unfeaturized` and `data` from 0.x become `Any`).
#[derive(Debug, Clone, PartialEq)]
pub enum SlotKind {
    Text,
    Bool,
    Categorical { values: Vec<String> },
    Float { min: f64, max: f64 },
    List,
    Any,
}

impl SlotKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SlotKind::Text => "text",
            SlotKind::Bool => "bool",
            SlotKind::Categorical { .. } => "categorical",
            SlotKind::Float { .. } => "float",
            SlotKind::List => "list",
            SlotKind::Any => "any",
        }
    }

    /// The state feature of a value, or `None` when the slot counts as unset.
    ///
    /// Rasa featurises text/list/any slots as "is set", bools by value, categoricals by the
    /// (lower-cased) value and floats by the value scaled into [min, max]. Memoization and
    /// rules only need a canonical string, so that is what this returns.
    pub fn feature(&self, value: &Value) -> Option<String> {
        if value.is_null() {
            return None;
        }
        Some(match self {
            SlotKind::Text | SlotKind::Any => "set".to_string(),
            SlotKind::List => match value {
                Value::Array(a) if a.is_empty() => return None,
                _ => "set".to_string(),
            },
            SlotKind::Bool => match value {
                Value::Bool(b) => b.to_string(),
                Value::String(s) => {
                    let l = s.to_lowercase();
                    (l == "true" || l == "1" || l == "yes").to_string()
                }
                Value::Number(n) => (n.as_f64().unwrap_or(0.0) != 0.0).to_string(),
                _ => "true".to_string(),
            },
            SlotKind::Categorical { values } => {
                let v = match value {
                    Value::String(s) => s.to_lowercase(),
                    other => other.to_string().to_lowercase(),
                };
                if values.iter().any(|c| c.to_lowercase() == v) {
                    v
                } else {
                    "__other__".to_string()
                }
            }
            SlotKind::Float { min, max } => {
                let f = match value {
                    Value::Number(n) => n.as_f64().unwrap_or(0.0),
                    Value::String(s) => s.parse().unwrap_or(0.0),
                    Value::Bool(b) => f64::from(u8::from(*b)),
                    _ => 0.0,
                };
                let clamped = f.clamp(*min, *max);
                let scaled = if max > min {
                    (clamped - min) / (max - min)
                } else {
                    1.0
                };
                format!("{scaled:.4}")
            }
        })
    }
}

/// A condition on a slot mapping: it applies only while this loop is active (and, optionally,
/// while it asks for this slot).
#[derive(Debug, Clone, PartialEq)]
pub struct MappingCondition {
    pub active_loop: Option<String>,
    pub requested_slot: Option<String>,
}

/// One entry of a slot's `mappings`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotMapping {
    /// `from_entity`, `from_text`, `from_intent`, `from_trigger_intent` or `custom`.
    pub mapping_type: String,
    pub entity: Option<String>,
    pub role: Option<String>,
    pub group: Option<String>,
    /// Intents the mapping is limited to (empty: any intent).
    pub intent: Vec<String>,
    pub not_intent: Vec<String>,
    /// The value set by `from_intent` / `from_trigger_intent`.
    pub value: Option<Value>,
    /// For `custom`: the action that fills the slot.
    pub action: Option<String>,
    pub conditions: Vec<MappingCondition>,
}

pub const MAPPING_TYPES: &[&str] = &[
    "from_entity",
    "from_text",
    "from_intent",
    "from_trigger_intent",
    "custom",
];

/// A slot as the tracker and the policies see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub name: String,
    /// The value after a reset (`initial_value`, null by default).
    pub initial_value: Value,
    pub kind: SlotKind,
    pub influence_conversation: bool,
    pub mappings: Vec<SlotMapping>,
    /// The definition as written (3.x shape), re-emitted by `Domain::to_json`; `None` for the
    /// implicit slots, which Rasa does not list in `GET /domain`.
    pub definition: Option<serde_json::Map<String, Value>>,
}

impl Slot {
    /// An implicit, non-featurised `any` slot such as `session_started_metadata`.
    pub fn implicit(name: &str, kind: SlotKind) -> Slot {
        Slot {
            name: name.to_string(),
            initial_value: Value::Null,
            kind,
            influence_conversation: false,
            mappings: Vec::new(),
            definition: None,
        }
    }

    /// The feature this slot contributes to a dialogue state, if it influences the conversation.
    pub fn feature(&self, value: &Value) -> Option<String> {
        if !self.influence_conversation {
            return None;
        }
        self.kind.feature(value)
    }
}
