//! `action_extract_slots`: slot events from the domain's slot mappings after a user message.

use serde_json::Value;

use crate::domain::{Domain, SlotKind, SlotMapping};
use crate::engine::{Event, EventKind, TrackerState};

/// What the mappings can see of the conversation.
pub struct ExtractContext<'a> {
    pub domain: &'a Domain,
    pub state: &'a TrackerState,
    /// The latest applied user event (`state.latest_message`'s).
    pub latest_user: Option<&'a Event>,
}

impl ExtractContext<'_> {
    fn latest_user(&self) -> Option<&Event> {
        self.latest_user
    }
    fn intent(&self) -> Option<&str> {
        self.latest_user().and_then(Event::intent_name)
    }
    fn entities(&self) -> &[Value] {
        self.state
            .latest_message
            .as_ref()
            .map(|(_, e)| e.as_slice())
            .unwrap_or(&[])
    }
    fn active_loop(&self) -> Option<&str> {
        self.state.active_loop.as_ref().map(|l| l.name.as_str())
    }
    fn requested_slot(&self) -> Option<&str> {
        self.state.slot("requested_slot").and_then(Value::as_str)
    }

    fn conditions_hold(&self, m: &SlotMapping) -> bool {
        if m.conditions.is_empty() || m.mapping_type == "from_trigger_intent" {
            return true;
        }
        m.conditions.iter().any(|c| {
            c.active_loop.as_deref() == self.active_loop()
                && c.requested_slot
                    .as_deref()
                    .is_none_or(|r| Some(r) == self.requested_slot())
        })
    }

    fn intent_is_desired(&self, m: &SlotMapping) -> bool {
        let intent = self.intent().unwrap_or("");
        (m.intent.is_empty() || m.intent.iter().any(|i| i == intent))
            && !m.not_intent.iter().any(|i| i == intent)
    }

    fn entity_values(&self, m: &SlotMapping) -> Vec<Value> {
        let Some(entity) = m.entity.as_deref() else {
            return Vec::new();
        };
        self.entities()
            .iter()
            .filter(|e| e.get("entity").and_then(Value::as_str) == Some(entity))
            .filter(|e| {
                m.role
                    .as_deref()
                    .is_none_or(|r| e.get("role").and_then(Value::as_str) == Some(r))
            })
            .filter(|e| {
                m.group
                    .as_deref()
                    .is_none_or(|g| e.get("group").and_then(Value::as_str) == Some(g))
            })
            .filter_map(|e| e.get("value").cloned())
            .collect()
    }

    /// The value one mapping extracts, if any.
    fn value(&self, m: &SlotMapping, kind: &SlotKind, slot: &str) -> Option<Value> {
        if !self.conditions_hold(m) || !self.intent_is_desired(m) {
            return None;
        }
        match m.mapping_type.as_str() {
            "from_entity" => {
                let values = self.entity_values(m);
                match kind {
                    SlotKind::List => (!values.is_empty()).then_some(Value::Array(values)),
                    _ => values.into_iter().next(),
                }
            }
            "from_text" => {
                // Inside a form, free text only goes to the slot being asked for.
                if self.active_loop().is_some()
                    && m.conditions.is_empty()
                    && self.requested_slot().is_some_and(|r| r != slot)
                {
                    return None;
                }
                match &self.latest_user()?.kind {
                    EventKind::User { text: Some(t), .. } => Some(Value::String(t.clone())),
                    _ => None,
                }
            }
            "from_intent" => m.value.clone(),
            "from_trigger_intent" => {
                // Only on the message that activates a form listed in the conditions.
                if self.active_loop().is_some() {
                    return None;
                }
                m.value.clone()
            }
            _ => None,
        }
    }
}

/// Slot events for every slot whose mappings extract a value different from its current one.
/// `custom` mappings are left to their actions.
pub fn extract_slots(ctx: &ExtractContext<'_>) -> Vec<Event> {
    let mut out = Vec::new();
    for slot in ctx.domain.slots() {
        let value = slot
            .mappings
            .iter()
            .find_map(|m| ctx.value(m, &slot.kind, &slot.name));
        if let Some(v) = value {
            if ctx.state.slot(&slot.name) != Some(&v) {
                out.push(Event::new(EventKind::Slot {
                    name: slot.name.clone(),
                    value: v,
                }));
            }
        }
    }
    out
}
