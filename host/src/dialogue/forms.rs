//! Forms (Rasa 3 `FormAction`): activation, validation of the slots extracted from the
//! user's answer (with `validate_<form>` on the action server when the domain declares it),
//! asking for the next required slot, deactivation.

use serde_json::{Map, Value};

use super::actions::{custom, utter, ActionOutcome};
use super::{Processor, Turn};
use crate::engine::tracker::ACTION_LISTEN;
use crate::engine::{Event, EventKind};

const REQUESTED_SLOT: &str = "requested_slot";

fn slot_event(name: &str, value: Value) -> Event {
    Event::new(EventKind::Slot {
        name: name.into(),
        value,
    })
}

/// Calls the form's validation action with the slot candidates appended at the end of the
/// tracker's events: rasa_sdk's `slots_to_validate()` reads exactly that trailing run of
/// `slot` events, as Rasa's own `FormAction` sends them.
async fn validate_with(
    p: &Processor,
    turn: &mut Turn<'_>,
    validate: &str,
    candidates: Vec<(String, Value)>,
) -> Result<Vec<Event>, ActionOutcome> {
    let mark = turn.len();
    for (name, value) in candidates {
        turn.push(slot_event(&name, value));
    }
    let outcome = custom(p, turn, validate).await;
    turn.truncate(mark);
    outcome
}

/// Runs form `name`; returns its events or a rejection when the user's answer did not fill
/// the slot that was asked for.
pub async fn run(
    p: &Processor,
    turn: &mut Turn<'_>,
    name: &str,
) -> Result<Vec<Event>, ActionOutcome> {
    let domain = turn.agent.domain.clone();
    let form = domain.form(name).expect("checked by the caller").clone();
    let state = turn.state();
    let active = state.active_loop.as_ref().is_some_and(|l| l.name == name);
    let mut out: Vec<Event> = Vec::new();
    let start = turn.len();

    let validate = format!("validate_{name}");
    let has_validator = domain.actions.contains(&validate);
    if !active {
        turn.push(Event::new(EventKind::ActiveLoop {
            name: Some(name.into()),
        }));
        // Slots filled before activation are validated too.
        if has_validator {
            let filled: Vec<(String, Value)> = form
                .required_slots
                .iter()
                .filter_map(|s| {
                    state
                        .slot(s)
                        .filter(|v| !v.is_null())
                        .map(|v| (s.clone(), v.clone()))
                })
                .collect();
            if !filled.is_empty() {
                for e in validate_with(p, turn, &validate, filled).await? {
                    turn.push(e);
                }
            }
        }
    } else if state.latest_action_name() == Some(ACTION_LISTEN) {
        // The user answered: the requested slot must have been filled by this message.
        let requested = state
            .slot(REQUESTED_SLOT)
            .and_then(Value::as_str)
            .map(str::to_string);
        let last_user = turn
            .rposition(|e| matches!(e.kind, EventKind::User { .. }))
            .unwrap_or(0);
        let candidates: Vec<(String, Value)> = (last_user..turn.len())
            .filter_map(|i| turn.event(i))
            .filter_map(|e| match &e.kind {
                EventKind::Slot { name, value } if !value.is_null() && name != REQUESTED_SLOT => {
                    Some((name.clone(), value.clone()))
                }
                _ => None,
            })
            .collect();
        let filled_now: Vec<String> = candidates.iter().map(|(n, _)| n.clone()).collect();
        if has_validator {
            let events = validate_with(p, turn, &validate, candidates).await?;
            let validated: Vec<String> = events
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::Slot { name, value } if !value.is_null() => Some(name.clone()),
                    _ => None,
                })
                .collect();
            for e in events {
                turn.push(e);
            }
            if let Some(r) = &requested {
                let still_empty = turn.state().slot(r).is_none_or(Value::is_null);
                // A validator that answered (e.g. with a message) handled the turn itself.
                let validator_spoke = turn
                    .events_since(start)
                    .iter()
                    .any(|e| matches!(e.kind, EventKind::Bot { .. }));
                if !filled_now.contains(r)
                    && !validated.contains(r)
                    && still_empty
                    && !validator_spoke
                {
                    turn.truncate(start);
                    return Err(ActionOutcome::Rejected(format!(
                        "form '{name}' failed to extract requested slot '{r}'"
                    )));
                }
            }
        } else if let Some(r) = &requested {
            if !filled_now.contains(r) {
                return Err(ActionOutcome::Rejected(format!(
                    "form '{name}' failed to extract requested slot '{r}'"
                )));
            }
        }
    }

    // Ask for the next empty required slot, or finish.
    let state = turn.state();
    let next = form
        .required_slots
        .iter()
        .find(|s| state.slot(s).is_none_or(Value::is_null))
        .cloned();
    let mut tail: Vec<Event> = Vec::new();
    match next {
        Some(slot) => {
            turn.push(slot_event(REQUESTED_SLOT, Value::String(slot.clone())));
            let none = Map::new();
            let ask = utter(turn, &format!("utter_ask_{name}_{slot}"), &none)
                .or_else(|| utter(turn, &format!("utter_ask_{slot}"), &none));
            match ask {
                Some(bot) => tail.push(bot),
                None => {
                    let action = format!("action_ask_{slot}");
                    if domain.actions.contains(&action) {
                        tail.extend(custom(p, turn, &action).await?);
                    } else {
                        tracing::warn!(form = name, slot = %slot, "no utter_ask_{slot} response nor action_ask_{slot} action to ask for the slot");
                    }
                }
            }
        }
        None => {
            turn.push(Event::new(EventKind::ActiveLoop { name: None }));
            turn.push(slot_event(REQUESTED_SLOT, Value::Null));
        }
    }
    // Hand the events back to the caller, who logs them after the form's `action` event.
    out.extend(turn.drain_from(start));
    out.extend(tail);
    Ok(out)
}
