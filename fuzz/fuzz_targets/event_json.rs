//! Event JSON (`POST …/tracker/events`, tracker stores): parsing never panics, and an event
//! that parses serialises to JSON that parses back to the same JSON.
#![no_main]

use colloquy::engine::event::Event;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn round_trip(e: &Event) {
    let json = e.to_json();
    let text = e.to_json_string();
    let reparsed: Value = serde_json::from_str(&text).expect("to_json_string is valid JSON");
    assert_eq!(reparsed, json, "to_json and to_json_string disagree");
    let again = Event::from_json(&json)
        .unwrap_or_else(|err| panic!("re-parsing {json} failed: {err}"))
        .expect("a serialised event is never the ignored `topic`");
    assert_eq!(again.to_json(), json, "serialisation is not stable");
    let _ = e.user_parse_data();
    let _ = e.intent_name();
    let _ = e.type_name();
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match &value {
        Value::Array(items) => {
            if let Ok(events) = Event::list_from_json(items) {
                events.iter().for_each(round_trip);
            }
        }
        other => {
            if let Ok(Some(e)) = Event::from_json(other) {
                round_trip(&e);
            }
        }
    }
});
