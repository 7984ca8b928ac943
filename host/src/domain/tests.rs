use serde_json::json;

use super::*;

fn src(name: &str, text: &str) -> Source {
    Source {
        name: name.into(),
        text: text.into(),
    }
}

#[test]
fn empty_domain_keeps_only_session_started_metadata() {
    let d = Domain::empty();
    assert_eq!(d.slots().len(), 1);
    assert!(d.slot("session_started_metadata").is_some());
    let j = d.to_json();
    assert_eq!(j["slots"], json!({}));
    assert_eq!(j["session_config"]["session_expiration_time"], json!(60));
    assert!(d.to_yaml().contains("session_config"));
}

#[test]
fn split_domain_files_merge_like_rasa() {
    let a = src(
        "domain/a.yml",
        "intents: [greet]\nresponses:\n  utter_greet:\n  - text: hi\n",
    );
    let b = src(
        "domain/b.yml",
        "intents: [greet, bye]\nentities:\n  - city:\n      roles: [from, to]\nslots:\n  city:\n    type: categorical\n    values: [Rome, Paris]\n    mappings:\n    - type: from_entity\n      entity: city\n      role: from\nforms:\n  trip_form:\n    required_slots: [city]\n",
    );
    let d = Domain::from_sources(&[a, b]).unwrap();
    assert_eq!(d.intent_names(), ["greet", "bye"]);
    assert_eq!(d.entities[0].roles, ["from", "to"]);
    let city = d.slot("city").unwrap();
    assert_eq!(city.mappings[0].role.as_deref(), Some("from"));
    assert_eq!(city.feature(&json!("rome")).as_deref(), Some("rome"));
    assert_eq!(city.feature(&json!("Oslo")).as_deref(), Some("__other__"));
    // Forms add requested_slot, and the form is an action after the responses.
    assert!(d.slot("requested_slot").is_some());
    let names = d.action_names();
    assert_eq!(
        names[..13],
        DEFAULT_ACTIONS
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(
        names[13..],
        ["utter_greet".to_string(), "trip_form".to_string()]
    );
}

#[test]
fn legacy_domain_loads() {
    let text = "intents:\n  - greet:\n      triggers: utter_greet\n  - chitchat:\n      use_entities: false\nentities: [name]\nslots:\n  name:\n    type: text\n  other:\n    type: unfeaturized\ntemplates:\n  utter_greet:\n    - \"hey there!\"\nactions: [utter_greet]\nforms: [my_form]\n";
    let d = Domain::from_yaml(text, "domain.yml").unwrap();
    assert!(d.legacy);
    assert_eq!(
        d.intent("greet").unwrap().triggers.as_deref(),
        Some("utter_greet")
    );
    assert_eq!(
        d.intent("chitchat").unwrap().use_entities,
        EntityFilter::Only(vec![])
    );
    assert_eq!(
        d.response("utter_greet").unwrap()[0],
        json!({"text": "hey there!"})
    );
    // auto_fill becomes a from_entity mapping; unfeaturized becomes a non-influencing any.
    assert_eq!(
        d.slot("name").unwrap().mappings[0].entity.as_deref(),
        Some("name")
    );
    assert_eq!(d.slot("other").unwrap().kind, SlotKind::Any);
    assert!(!d.slot("other").unwrap().influence_conversation);
    assert!(d.form("my_form").is_some());
    // The stored (3.x) shape loads back to the same domain.
    let again = Domain::from_json(&d.to_json()).unwrap();
    assert_eq!(again.to_json(), d.to_json());
    assert_eq!(again.action_names(), d.action_names());
}

/// Fuzzing (fuzz/corpus/domain/legacy_explicit_mappings.yml): a 0.x domain whose slots have
/// explicit mappings was stored with only `type` and `entity` per mapping, so a `from_intent`
/// mapping lost its `value` and the model's domain no longer loaded; filters were lost too.
#[test]
fn legacy_domain_keeps_explicit_mappings() {
    let text = "intents: [affirm, deny]\nentities: [city]\ntemplates:\n  utter_x: [x]\nslots:\n  ok:\n    type: bool\n    mappings:\n    - {type: from_intent, intent: affirm, value: true}\n    - {type: from_trigger_intent, intent: deny, not_intent: [affirm], value: null}\n  city:\n    type: text\n    mappings:\n    - {type: from_entity, entity: city, role: to, group: g, conditions: [{active_loop: f, requested_slot: city}]}\n    - {type: custom, action: action_city}\n";
    let d = Domain::from_yaml(text, "domain.yml").unwrap();
    assert!(d.legacy);
    let again = Domain::from_json(&d.to_json()).unwrap();
    assert_eq!(again.to_json(), d.to_json());
    for name in ["ok", "city"] {
        assert_eq!(
            again.slot(name).unwrap().mappings,
            d.slot(name).unwrap().mappings
        );
    }
    let ok = &d.slot("ok").unwrap().mappings;
    assert_eq!(ok[0].value, Some(json!(true)));
    assert_eq!(ok[1].value, Some(serde_json::Value::Null));
}

#[test]
fn errors_name_file_and_line() {
    let e = Domain::from_yaml("intents: [a]\nslots:\n  n:\n    type: float\n    min_value: 5\n    max_value: 1\n    mappings: []\n", "d.yml").unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("d.yml", Some(3)));
    let e = Domain::from_yaml(
        "intents: [a]\nforms:\n  f:\n    required_slots: [missing]\n",
        "d.yml",
    )
    .unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    let e = Domain::from_yaml("intents: [a]\nslotz: {}\n", "d.yml").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = Domain::from_yaml("slots:\n  s:\n    type: text\n    mappings:\n    - type: from_entity\n      entity: nope\n", "d.yml").unwrap_err();
    assert!(e.message.contains("nope"), "{e}");
}
