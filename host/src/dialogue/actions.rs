//! Running one action: responses, Rasa's default actions, forms and custom actions.

use serde_json::{json, Map, Value};

use super::extract::{extract_slots, ExtractContext};
use super::output::bot_event;
use super::responses::render;
use super::{forms, Processor, Turn};
use crate::engine::tracker::ACTION_LISTEN;
use crate::engine::{Event, EventKind};

/// Why an action did not produce events.
#[derive(Debug)]
pub enum ActionOutcome {
    /// The action refused to run (a form whose slot was not filled, a 400 from the action
    /// server): `action_execution_rejected` is logged and the policies predict again.
    Rejected(String),
    /// It failed: logged, and the conversation goes on as if it ran without effects.
    Failed(String),
}

/// A bot message from a domain response, if the domain has it.
pub fn utter(turn: &Turn<'_>, name: &str, extra: &Map<String, Value>) -> Option<Event> {
    let state = turn.state();
    render(
        &turn.agent.domain,
        name,
        &state,
        turn.channel.as_deref(),
        extra,
    )
    .map(|m| bot_event(m, Some(name)))
}

/// `action_session_start`'s events (after its own `action` event): `session_started`, the
/// carried-over slots, the channel's metadata, `action_listen`.
pub fn session_start(turn: &Turn<'_>, metadata: Option<&Map<String, Value>>) -> Vec<Event> {
    let mut out = vec![Event::new(EventKind::SessionStarted)];
    if turn
        .agent
        .domain
        .session_config
        .carry_over_slots_to_new_session
    {
        let st = turn.state();
        for e in st.applied.iter().filter_map(|&i| turn.event(i)) {
            if let EventKind::Slot { name, value } = &e.kind {
                if name != "session_started_metadata" {
                    out.push(Event::new(EventKind::Slot {
                        name: name.clone(),
                        value: value.clone(),
                    }));
                }
            }
        }
    }
    if let Some(m) = metadata.filter(|m| !m.is_empty()) {
        out.push(Event::new(EventKind::Slot {
            name: "session_started_metadata".into(),
            value: Value::Object(m.clone()),
        }));
    }
    out.push(Event::action(ACTION_LISTEN));
    out
}

/// `action_extract_slots` after a user message.
pub fn extract_slots_events(turn: &Turn<'_>) -> Vec<Event> {
    let state = turn.state();
    let latest_user = state
        .latest_message
        .as_ref()
        .and_then(|(i, _)| turn.event(*i));
    extract_slots(&ExtractContext {
        domain: &turn.agent.domain,
        state: &state,
        latest_user,
    })
}

fn text_message(text: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("text".into(), json!(text));
    m
}

/// Runs `name` and returns the events it produced (its own `action` event excluded).
pub async fn run(
    p: &Processor,
    turn: &mut Turn<'_>,
    name: &str,
) -> Result<Vec<Event>, ActionOutcome> {
    let none = Map::new();
    let domain = turn.agent.domain.clone();
    match name {
        ACTION_LISTEN | "action_unlikely_intent" => Ok(vec![]),
        "action_restart" => {
            let mut out: Vec<Event> = utter(turn, "utter_restart", &none).into_iter().collect();
            out.push(Event::new(EventKind::Restart));
            Ok(out)
        }
        "action_session_start" => Ok(session_start(turn, None)),
        "action_default_fallback" => {
            let mut out: Vec<Event> = utter(turn, "utter_default", &none).into_iter().collect();
            out.push(Event::new(EventKind::Rewind));
            Ok(out)
        }
        "action_deactivate_loop" => Ok(vec![
            Event::new(EventKind::ActiveLoop { name: None }),
            Event::new(EventKind::Slot {
                name: "requested_slot".into(),
                value: Value::Null,
            }),
        ]),
        "action_back" => {
            let mut out: Vec<Event> = utter(turn, "utter_back", &none).into_iter().collect();
            out.push(Event::new(EventKind::Rewind));
            out.push(Event::new(EventKind::Rewind));
            Ok(out)
        }
        "action_default_ask_rephrase" => Ok(vec![utter(turn, "utter_ask_rephrase", &none)
            .unwrap_or_else(|| {
                bot_event(
                    text_message("I'm sorry, I didn't quite understand that. Could you rephrase?"),
                    None,
                )
            })]),
        "action_default_ask_affirmation" | "action_two_stage_fallback" => {
            // Ask whether the most likely intent was meant, as Rasa's default does.
            let st = turn.state();
            let intent = st
                .latest_message
                .as_ref()
                .and_then(|(i, _)| {
                    let pd = turn.event(*i)?.user_parse_data()?;
                    let ranking = pd
                        .get("intent_ranking")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    ranking
                        .iter()
                        .filter_map(|r| r.get("name").and_then(Value::as_str))
                        .find(|n| *n != "nlu_fallback")
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "the last intent".into());
            let mut m = text_message(&format!("Did you mean '{intent}'?"));
            m.insert("buttons".into(), json!([{"title": "Yes", "payload": format!("/{intent}")}, {"title": "No", "payload": "/out_of_scope"}]));
            Ok(vec![bot_event(m, None)])
        }
        "action_revert_fallback_events" => Ok(vec![]),
        "action_extract_slots" => Ok(extract_slots_events(turn)),
        _ if domain.form(name).is_some() => forms::run(p, turn, name).await,
        _ if domain.response(name).is_some() && !domain.actions.iter().any(|a| a == name) => {
            Ok(utter(turn, name, &none).into_iter().collect())
        }
        _ => custom(p, turn, name).await,
    }
}

/// A custom action on the action server: its responses become `bot` events, followed by the
/// events it returned.
pub async fn custom(
    p: &Processor,
    turn: &mut Turn<'_>,
    name: &str,
) -> Result<Vec<Event>, ActionOutcome> {
    let Some(server) = &p.action_server else {
        return Err(ActionOutcome::Failed(format!(
            "no action_endpoint is configured, so custom action '{name}' cannot run"
        )));
    };
    // The action server gets the session's events: parsed once for the turn, then shared.
    turn.materialize();
    let tracker = turn.tracker_json();
    let domain_json = turn.agent.domain.to_json();
    let answer = match server.run(name, turn.sender_id, tracker, domain_json).await {
        Ok(a) => a,
        Err(super::action_server::ActionServerError::Rejected { message, .. }) => {
            return Err(ActionOutcome::Rejected(message))
        }
        Err(e) => return Err(ActionOutcome::Failed(e.to_string())),
    };
    let mut out = Vec::new();
    for response in &answer.responses {
        // `response` (0.x `template`) names a domain response, the other keys fill it in.
        let template = response
            .get("response")
            .or_else(|| response.get("template"))
            .and_then(Value::as_str);
        let message = match template {
            Some(t) => {
                let mut extra = response.clone();
                extra.remove("response");
                extra.remove("template");
                let state = turn.state();
                let Some(mut rendered) = render(
                    &turn.agent.domain,
                    t,
                    &state,
                    turn.channel.as_deref(),
                    &extra,
                ) else {
                    continue;
                };
                for (k, v) in response {
                    if k != "response"
                        && k != "template"
                        && !v.is_null()
                        && !(k == "buttons" && v.as_array().is_some_and(Vec::is_empty))
                    {
                        rendered.insert(k.clone(), v.clone());
                    }
                }
                out.push(bot_event(rendered, Some(t)));
                continue;
            }
            None => response.clone(),
        };
        out.push(bot_event(message, None));
    }
    for e in &answer.events {
        match Event::from_json(e) {
            Ok(Some(mut ev)) => {
                // Returned events are logged now, whatever time the action server gave them.
                ev.timestamp = crate::engine::event::now();
                out.push(ev);
            }
            Ok(None) => {}
            Err(err) => {
                return Err(ActionOutcome::Failed(format!(
                    "custom action '{name}' returned an invalid event: {err}"
                )))
            }
        }
    }
    Ok(out)
}
