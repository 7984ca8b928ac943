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
        if k > 0 {
            f.fold(&d, &ev[k - 1]);
        }
        let session = session_events(&ev[..k]);
        let (past, cur, tracker) = states_with_actions(&d, session);
        let past: Vec<State> = past.into_iter().map(|(s, _)| s).collect();
        assert_eq!(f.past, past, "past states after {k} events");
        assert_eq!(f.tracker.state(&d), cur, "current state after {k} events");
        assert_eq!(f.tracker.followup, tracker.followup, "after {k} events");
        // Starting over at any point gives the same as having followed along.
        let mut fresh = Featurised::default();
        fresh.fold_all(&d, &ev[..k]);
        assert_eq!(fresh.past, f.past);
    }
}

/// A policy ensemble trained from inline project files.
fn ensemble(config: &str, data: &str) -> (Domain, PolicyEnsemble) {
    let source = |name: &str, text: &str| crate::domain::Source {
        name: name.into(),
        text: text.into(),
    };
    let project = crate::training::ProjectSources {
        domain: vec![source(
            "domain.yml",
            "version: \"3.1\"\nintents: [greet, ask, thank, chat, bye]\nresponses:\n  utter_first: [{text: a}]\n  utter_greet: [{text: b}]\n  utter_answer: [{text: c}]\n  utter_welcome: [{text: d}]\n  utter_chat: [{text: e}]\n  utter_bye: [{text: f}]\n",
        )],
        config: Some(source("config.yml", config)),
        data: vec![source("data.yml", data)],
    };
    let c = crate::training::compile(&project, &mut |_| ()).expect("the project trains");
    (c.domain, c.policies)
}

#[test]
fn trimmed_past_states_predict_as_the_whole_session() {
    let (d, ens) = ensemble(
        "policies:\n  - name: MemoizationPolicy\n    max_history: 3\n  - name: AugmentedMemoizationPolicy\n    max_history: 4\n  - name: RulePolicy\n    restrict_rules: false\n",
        r#"version: "3.1"
stories:
- story: chat then ask
  steps:
  - intent: chat
  - action: utter_chat
  - intent: ask
  - action: utter_answer
  - intent: thank
  - action: utter_welcome
- story: greet after chat
  steps:
  - intent: chat
  - action: utter_chat
  - intent: greet
  - action: utter_greet
rules:
- rule: a greeting that opens the conversation
  conversation_start: true
  steps:
  - intent: greet
  - action: utter_first
- rule: goodbye
  steps:
  - intent: bye
  - action: utter_bye
- rule: thanks after an answer
  steps:
  - intent: ask
  - action: utter_answer
  - intent: thank
  - action: utter_welcome
"#,
    );
    let needed = ens.states_needed();
    assert!(
        needed >= 4,
        "max_history 4 and a rule of 3 states: {needed}"
    );
    let intents = ["greet", "ask", "thank", "chat", "bye"];
    let user = |i: &str| StoryEvent::User {
        intent: Some(i.into()),
        entities: vec![],
        text: None,
    };
    // Followed along and trimmed, as a conversation's turns do; and the whole session.
    let mut trimmed = Featurised::default();
    let mut whole = Featurised::default();
    let fold = |e: StoryEvent, trimmed: &mut Featurised, whole: &mut Featurised| {
        trimmed.fold(&d, &e);
        whole.fold(&d, &e);
    };
    fold(
        StoryEvent::Action(ACTION_LISTEN.into()),
        &mut trimmed,
        &mut whole,
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut x: u64 = 7;
    for turn in 0..400 {
        // A fixed pseudo-random sequence of intents, with runs that follow the stories.
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let intent = match turn {
            // The conversation opens with a greeting (the conversation_start rule).
            0 => "greet",
            _ => intents[((x >> 33) % intents.len() as u64) as usize],
        };
        fold(user(intent), &mut trimmed, &mut whole);
        for _ in 0..10 {
            let got = ens.predict_featurised(&d, &mut trimmed);
            let mut states = whole.past.clone();
            states.push(whole.tracker.state(&d));
            let want = ens.choose(&d, &states, &whole.tracker);
            assert_eq!(got, want, "turn {turn}, after {intent}");
            seen.insert(got.action.clone());
            fold(
                StoryEvent::Action(got.action.clone()),
                &mut trimmed,
                &mut whole,
            );
            if got.action == ACTION_LISTEN {
                break;
            }
        }
        assert!(trimmed.past.len() < needed + TRIM_SLACK + 2);
    }
    assert!(
        whole.past.len() >= 800,
        "the whole session: {}",
        whole.past.len()
    );
    // The conversation went through the rules and the stories, not only fallbacks.
    for a in [
        "utter_first",
        "utter_greet",
        "utter_bye",
        "utter_answer",
        "utter_welcome",
    ] {
        assert!(seen.contains(a), "{a} never predicted: {seen:?}");
    }
}
