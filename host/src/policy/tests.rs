use serde_json::json;

use super::*;
use crate::domain::Domain;

#[test]
fn session_events_start_after_the_last_session_start() {
    let ev = [
        StoryEvent::Action("x".into()),
        StoryEvent::Action("action_session_start".into()),
        StoryEvent::SessionStarted,
        StoryEvent::Action("action_session_start".into()),
        StoryEvent::Action(ACTION_LISTEN.into()),
    ];
    assert_eq!(session_events(&ev), &ev[4..]);
}

#[test]
fn states_featurise_influencing_slots_only() {
    let d = Domain::from_yaml(
        "intents: [a]\nentities: [e]\nslots:\n  b:\n    type: bool\n    mappings: []\n  t:\n    type: text\n    influence_conversation: false\n    mappings: []\n",
        "d.yml",
    )
    .unwrap();
    let ev = [
        StoryEvent::Action(ACTION_LISTEN.into()),
        StoryEvent::User {
            intent: Some("a".into()),
            entities: vec![("e".into(), json!("v"))],
            text: None,
        },
        StoryEvent::Slot {
            name: "b".into(),
            value: json!(false),
        },
        StoryEvent::Slot {
            name: "t".into(),
            value: json!("x"),
        },
    ];
    let (_, cur, _) = states_with_actions(&d, &ev);
    assert_eq!(cur.intent.as_deref(), Some("a"));
    assert_eq!(cur.entities, ["e"]);
    assert_eq!(cur.slots.get("b").map(String::as_str), Some("false"));
    assert!(!cur.slots.contains_key("t"));
}

#[test]
fn nlu_fallback_rewrites_low_confidence_intents() {
    let ens = PolicyEnsemble {
        nlu_fallback_threshold: Some(0.4),
        ..PolicyEnsemble::default()
    };
    let mut low = json!({"intent": {"name": "greet", "confidence": 0.2}, "intent_ranking": [{"name": "greet", "confidence": 0.2}]});
    assert!(ens.apply_nlu_fallback(&mut low));
    assert_eq!(low["intent"]["name"], "nlu_fallback");
    let mut high = json!({"intent": {"name": "greet", "confidence": 0.9}});
    assert!(!ens.apply_nlu_fallback(&mut high));
}

#[test]
fn incremental_featurisation_equals_featurising_the_session_at_every_step() {
    let d = Domain::from_yaml(
        "intents: [a, b]\nentities: [e]\nslots:\n  s:\n    type: bool\n    mappings: []\n",
        "d.yml",
    )
    .unwrap();
    let user = |i: &str| StoryEvent::User {
        intent: Some(i.into()),
        entities: vec![("e".into(), json!("v"))],
        text: None,
    };
    let act = |a: &str| StoryEvent::Action(a.into());
    let ev = [
        act("action_session_start"),
        act("action_session_start"),
        act(ACTION_LISTEN),
        user("a"),
        act("utter_x"),
        StoryEvent::Slot {
            name: "s".into(),
            value: json!(true),
        },
        act(ACTION_LISTEN),
        user("b"),
        StoryEvent::Restart,
        act("action_session_start"),
        act(ACTION_LISTEN),
        user("a"),
        act("utter_y"),
        StoryEvent::SessionStarted,
        act(ACTION_LISTEN),
        user("b"),
        act("utter_z"),
        StoryEvent::Followup("utter_x".into()),
    ];
    let mut f = Featurised::default();
    for k in 0..=ev.len() {
        f.update(&d, &ev[..k]);
        let session = session_events(&ev[..k]);
        let (past, cur, tracker) = states_with_actions(&d, session);
        let past: Vec<State> = past.into_iter().map(|(s, _)| s).collect();
        assert_eq!(f.past, past, "past states after {k} events");
        assert_eq!(f.tracker.state(&d), cur, "current state after {k} events");
        assert_eq!(f.tracker.followup, tracker.followup, "after {k} events");
        assert_eq!(&ev[f.session_begin..k], session, "session after {k} events");
        // Starting over at any point gives the same as having followed along.
        let mut fresh = Featurised::default();
        fresh.update(&d, &ev[..k]);
        assert_eq!(fresh.past, f.past);
    }
}
