//! The tracker (state replay, tracker JSON, story export) over arbitrary event lists: never
//! panics, and replaying incrementally gives the same state as replaying at once.
#![no_main]

use std::sync::OnceLock;

use colloquy::domain::Domain;
use colloquy::engine::event::Event;
use colloquy::engine::story::{sessions, story_yaml};
use colloquy::engine::tracker::{
    starts_with_session_start, tracker_json, truncate_until, EventVerbosity, TrackerState,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const DOMAIN: &str = r#"
version: "3.1"
intents: [greet, inform, affirm, deny]
entities: [city, count]
slots:
  city: {type: text, mappings: [{type: from_entity, entity: city}]}
  count: {type: float, min_value: 0, max_value: 10, mappings: [{type: from_entity, entity: count}]}
  ok: {type: bool, influence_conversation: true, mappings: [{type: from_intent, intent: affirm, value: true}]}
  size: {type: categorical, values: [small, large], mappings: [{type: custom}]}
  items: {type: list, mappings: [{type: from_text}]}
  extra: {type: any, initial_value: 3, mappings: [{type: custom}]}
forms:
  city_form: {required_slots: [city, count]}
responses:
  utter_greet: [{text: "hi {city}"}]
actions: [action_custom]
session_config: {session_expiration_time: 60, carry_over_slots_to_new_session: true}
"#;

fn domain() -> &'static Domain {
    static D: OnceLock<Domain> = OnceLock::new();
    D.get_or_init(|| Domain::from_yaml(DOMAIN, "domain.yml").expect("the fuzz domain parses"))
}

fn state_eq(a: &TrackerState, b: &TrackerState) -> bool {
    a.slots == b.slots
        && a.latest_message == b.latest_message
        && a.latest_action == b.latest_action
        && a.followup_action == b.followup_action
        && a.paused == b.paused
        && a.active_loop == b.active_loop
        && a.latest_bot_utterance == b.latest_bot_utterance
        && a.applied == b.applied
        && a.latest_input_channel == b.latest_input_channel
}

fuzz_target!(|data: &[u8]| {
    // First byte: where to split for the incremental replay, and the options.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let Ok(events) = Event::list_from_json(&items) else {
        return;
    };
    let d = domain();
    let whole = TrackerState::compute(d, &events);
    let from = (split as usize & 0x3f).min(events.len());
    let mut part = TrackerState::compute(d, &events[..from]);
    part.extend(d, &events, from);
    assert!(
        state_eq(&whole, &part),
        "extend from {from} differs from compute:\n{whole:?}\n{part:?}"
    );
    for &i in &whole.applied {
        assert!(i < events.len(), "applied index {i} out of range");
    }
    let _ = whole.latest_action_name();
    let _ = whole.latest_message_json(&events);
    let verbosity = match split >> 6 {
        0 => EventVerbosity::None,
        1 => EventVerbosity::Applied,
        2 => EventVerbosity::AfterRestart,
        _ => EventVerbosity::All,
    };
    let json = tracker_json("fuzz", d, &events, verbosity);
    assert!(json.is_object(), "tracker JSON is an object");
    let until = events.get(from).map(|e| e.timestamp);
    let _ = truncate_until(&events, until);
    let _ = sessions(&events);
    let _ = starts_with_session_start(&events);
    let _ = story_yaml("fuzz", &events, split & 1 == 0, until);
});
