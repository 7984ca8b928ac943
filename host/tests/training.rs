//! `colloquy train` against the shared Rasa example projects (read in place).

use std::path::{Path, PathBuf};

use colloquy::domain::Domain;
use colloquy::model::Model;
use colloquy::policy::{StoryEvent, ACTION_LISTEN};
use colloquy::training::{read_sources, train, train_from_yaml_document, TrainError, TrainOptions};
use serde_json::{json, Value};

const RASA3: &str = "/work/shared/rasa/rasa-3.6.4/examples";
const CORE012: &str = "/work/shared/rasa/rasa_core-0.12.0/examples";

fn rasa3(bot: &str, out: &Path) -> TrainOptions {
    let d = Path::new(RASA3).join(bot);
    TrainOptions {
        domain: d.join("domain.yml"),
        data: vec![d.join("data")],
        config: d.join("config.yml"),
        out: out.to_path_buf(),
        fixed_model_name: None,
        force: false,
    }
}

fn core012(bot: &str, out: &Path) -> TrainOptions {
    let d = Path::new(CORE012).join(bot);
    let domain = if d.join("domain.yml").exists() {
        d.join("domain.yml")
    } else {
        d.join("restaurant_domain.yml")
    };
    TrainOptions {
        domain,
        data: vec![d.join("data")],
        config: d.join("no-config.yml"),
        out: out.to_path_buf(),
        fixed_model_name: None,
        force: false,
    }
}

fn quiet() -> impl FnMut(&str) {
    |_m: &str| {}
}

fn user(intent: &str) -> StoryEvent {
    StoryEvent::User {
        intent: Some(intent.into()),
        entities: vec![],
        text: Some(intent.into()),
    }
}

fn act(a: &str) -> StoryEvent {
    StoryEvent::Action(a.into())
}

fn session_start() -> Vec<StoryEvent> {
    vec![
        act("action_session_start"),
        StoryEvent::SessionStarted,
        act(ACTION_LISTEN),
    ]
}

fn trained(opts: &TrainOptions) -> Model {
    let out = train(opts, &mut quiet())
        .unwrap_or_else(|e| panic!("training {} failed: {e}", opts.domain.display()));
    Model::load(&out.path).expect("model loads")
}

#[test]
fn every_rasa3_example_trains() {
    for bot in ["moodbot", "formbot", "concertbot", "reminderbot"] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Vec::new();
        let out = train(&rasa3(bot, dir.path()), &mut |m: &str| {
            log.push(m.to_string())
        })
        .unwrap_or_else(|e| panic!("{bot}: {e}"));
        assert!(!out.skipped);
        assert!(out.path.to_string_lossy().ends_with(".tar.gz"));
        let m = Model::load(dir.path()).unwrap();
        assert_eq!(m.fingerprint, out.fingerprint);
        assert_eq!(m.id.len(), 32);
        assert!(
            log.iter()
                .any(|l| l.contains("TEDPolicy") || bot == "reminderbot"),
            "{bot}: {log:?}"
        );
    }
}

#[test]
fn every_rasa_core_012_example_trains() {
    for bot in ["moodbot", "formbot", "concertbot", "restaurantbot"] {
        let dir = tempfile::tempdir().unwrap();
        let m = trained(&core012(bot, dir.path()));
        assert!(m.domain.legacy, "{bot}");
        assert!(!m.policies.policies.is_empty());
    }
}

#[test]
fn fingerprint_is_stable_and_tracks_every_input() {
    let dir = tempfile::tempdir().unwrap();
    let opts = rasa3("moodbot", dir.path());
    let a = read_sources(&opts).unwrap();
    let b = read_sources(&opts).unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    let base = a.fingerprint();
    let mut c = a.clone();
    c.domain[0].text.push_str("\n# changed\n");
    assert_ne!(c.fingerprint(), base);
    let mut c = a.clone();
    c.config.as_mut().unwrap().text.push(' ');
    assert_ne!(c.fingerprint(), base);
    let mut c = a.clone();
    c.data.last_mut().unwrap().text.push(' ');
    assert_ne!(c.fingerprint(), base);
}

#[test]
fn unchanged_project_skips_training_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = rasa3("moodbot", dir.path());
    let first = train(&opts, &mut quiet()).unwrap();
    let second = train(&opts, &mut quiet()).unwrap();
    assert!(second.skipped);
    assert_eq!(second.path, first.path);
    opts.force = true;
    opts.fixed_model_name = Some("forced".into());
    let third = train(&opts, &mut quiet()).unwrap();
    assert!(!third.skipped);
    assert!(third.path.ends_with("forced.tar.gz"));
    assert_eq!(third.fingerprint, first.fingerprint);
}

fn project(dir: &Path, domain: &str, stories: &str, config: &str) -> TrainOptions {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("domain.yml"), domain).unwrap();
    std::fs::write(dir.join("data/stories.yml"), stories).unwrap();
    std::fs::write(dir.join("config.yml"), config).unwrap();
    TrainOptions {
        domain: dir.join("domain.yml"),
        data: vec![dir.join("data")],
        config: dir.join("config.yml"),
        out: dir.join("models"),
        fixed_model_name: None,
        force: false,
    }
}

const DOMAIN: &str = "version: \"3.1\"\nintents:\n  - greet\n  - bye\nresponses:\n  utter_greet:\n  - text: hi\n  utter_bye:\n  - text: bye\n";
const CONFIG: &str = "policies:\n  - name: MemoizationPolicy\n  - name: RulePolicy\n";

#[test]
fn broken_domain_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "version: \"3.1\"\nintents:\n  - greet\nslots:\n  mood:\n    type: colour\n    mappings: []\n";
    let opts = project(dir.path(), bad, "version: \"3.1\"\nstories: []\n", CONFIG);
    let e = train(&opts, &mut quiet()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TrainError::Domain(_)), "{msg}");
    assert!(
        msg.contains("domain.yml:5") && msg.contains("colour"),
        "{msg}"
    );
    // YAML syntax errors carry the parser's position.
    let opts = project(
        dir.path(),
        "intents:\n  - greet\n  bad: [\n",
        "stories: []\n",
        CONFIG,
    );
    let msg = train(&opts, &mut quiet()).unwrap_err().to_string();
    assert!(msg.contains("domain.yml:"), "{msg}");
}

#[test]
fn broken_story_and_rule_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let stories = "version: \"3.1\"\nstories:\n- story: one\n  steps:\n  - intent: greet\n  - action: utter_greet\n- story: two\n  steps:\n  - intent: greet\n  - action: utter_nope\n";
    let opts = project(dir.path(), DOMAIN, stories, CONFIG);
    let msg = train(&opts, &mut quiet()).unwrap_err().to_string();
    assert!(
        msg.contains("stories.yml:10") && msg.contains("utter_nope"),
        "{msg}"
    );

    let rules = "version: \"3.1\"\nrules:\n- rule: r\n  steps:\n  - intent: greet\n  - acton: utter_greet\n";
    let opts = project(dir.path(), DOMAIN, rules, CONFIG);
    let msg = train(&opts, &mut quiet()).unwrap_err().to_string();
    assert!(
        msg.contains("stories.yml:6") && msg.contains("acton"),
        "{msg}"
    );

    std::fs::remove_file(dir.path().join("data/stories.yml")).unwrap();
    std::fs::write(
        dir.path().join("data/stories.md"),
        "## s\n* greet\n    - utter_greet\n* bye{oops}\n",
    )
    .unwrap();
    let msg = train(&opts, &mut quiet()).unwrap_err().to_string();
    assert!(msg.contains("stories.md:4"), "{msg}");
}

#[test]
fn rule_contradictions_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = "version: \"3.1\"\nrules:\n- rule: greet back\n  steps:\n  - intent: greet\n  - action: utter_greet\nstories:\n- story: rude\n  steps:\n  - intent: greet\n  - action: utter_bye\n";
    let opts = project(dir.path(), DOMAIN, data, CONFIG);
    let e = train(&opts, &mut quiet()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TrainError::RuleContradictions(_)), "{msg}");
    assert!(
        msg.contains("utter_bye") && msg.contains("greet back") && msg.contains("stories.yml:11"),
        "{msg}"
    );
    // Disabled on request.
    std::fs::write(
        dir.path().join("config.yml"),
        "policies:\n  - name: RulePolicy\n    check_for_contradictions: false\n",
    )
    .unwrap();
    train(&opts, &mut quiet()).unwrap();
}

#[test]
fn moodbot_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let m = trained(&rasa3("moodbot", dir.path()));
    let d = &m.domain;
    let mut ev = session_start();
    ev.push(user("greet"));
    let p = m.policies.predict(d, &ev);
    assert_eq!(p.action, "utter_greet");
    assert!(
        p.policy == "MemoizationPolicy" || p.policy == "RulePolicy",
        "{}",
        p.policy
    );
    assert_eq!(p.confidence, 1.0);
    assert_eq!(p.scores(d).len(), d.action_names().len());
    ev.push(act("utter_greet"));
    assert_eq!(m.policies.predict(d, &ev).action, ACTION_LISTEN);
    ev.extend([act(ACTION_LISTEN), user("mood_unhappy")]);
    assert_eq!(m.policies.predict(d, &ev).action, "utter_cheer_up");
    ev.push(act("utter_cheer_up"));
    assert_eq!(m.policies.predict(d, &ev).action, "utter_did_that_help");
    ev.push(act("utter_did_that_help"));
    assert_eq!(m.policies.predict(d, &ev).action, ACTION_LISTEN);
    ev.extend([act(ACTION_LISTEN), user("deny")]);
    assert_eq!(m.policies.predict(d, &ev).action, "utter_goodbye");
    // Rules apply anywhere: bot_challenge mid-conversation.
    ev.extend([
        act("utter_goodbye"),
        act(ACTION_LISTEN),
        user("bot_challenge"),
    ]);
    let p = m.policies.predict(d, &ev);
    assert_eq!(
        (p.action.as_str(), p.policy.as_str()),
        ("utter_iamabot", "RulePolicy")
    );
    // Nothing known: RulePolicy's core fallback at its threshold.
    let p = m.policies.predict(d, &[act(ACTION_LISTEN), user("affirm")]);
    assert_eq!(
        (p.action.as_str(), p.confidence),
        ("action_default_fallback", 0.3)
    );
    // Followups win, and /restart is a default rule.
    let p = m.policies.predict(
        d,
        &[
            act(ACTION_LISTEN),
            user("greet"),
            StoryEvent::Followup("utter_happy".into()),
        ],
    );
    assert_eq!(
        (p.action.as_str(), p.policy.as_str()),
        ("utter_happy", "followup_action")
    );
    assert_eq!(
        m.policies
            .predict(d, &[act(ACTION_LISTEN), user("restart")])
            .action,
        "action_restart"
    );
}

#[test]
fn archive_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let opts = rasa3("formbot", dir.path());
    let sources = read_sources(&opts).unwrap();
    let compiled = colloquy::training::compile(&sources, &mut quiet()).unwrap();
    let m = trained(&opts);
    assert_eq!(m.domain.to_json(), compiled.domain.to_json());
    assert_eq!(m.domain.action_names(), compiled.domain.action_names());
    assert_eq!(m.policies, compiled.policies);
    assert_eq!(m.nlu_data, compiled.nlu);
    let ev = [act(ACTION_LISTEN), user("request_restaurant")];
    assert_eq!(
        m.policies.predict(&m.domain, &ev),
        compiled.policies.predict(&compiled.domain, &ev)
    );
    // A corrupted archive is refused.
    let mut bytes = std::fs::read(
        Model::load(dir.path())
            .map(|_| colloquy::model::archive::newest_archive(dir.path()).unwrap())
            .unwrap(),
    )
    .unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    assert!(Model::from_bytes(&bytes, "x.tar.gz").is_err());
}

#[test]
fn formbot_rules_activate_and_submit_the_form() {
    let dir = tempfile::tempdir().unwrap();
    let m = trained(&rasa3("formbot", dir.path()));
    let d = &m.domain;
    assert!(d.slot("requested_slot").is_some());
    assert_eq!(d.form("restaurant_form").unwrap().required_slots.len(), 5);
    let mut ev = session_start();
    ev.push(user("request_restaurant"));
    let p = m.policies.predict(d, &ev);
    assert_eq!(
        (p.action.as_str(), p.policy.as_str()),
        ("restaurant_form", "RulePolicy")
    );
    ev.extend([
        act("restaurant_form"),
        StoryEvent::ActiveLoop(Some("restaurant_form".into())),
    ]);
    assert_eq!(m.policies.predict(d, &ev).action, ACTION_LISTEN);
    ev.extend([act(ACTION_LISTEN), user("inform")]);
    assert_eq!(m.policies.predict(d, &ev).action, "restaurant_form");
    ev.extend([act("restaurant_form"), StoryEvent::ActiveLoop(None)]);
    assert_eq!(m.policies.predict(d, &ev).action, "utter_submit");
    ev.push(act("utter_submit"));
    assert_eq!(m.policies.predict(d, &ev).action, "utter_slots_values");
    ev.push(act("utter_slots_values"));
    assert_eq!(m.policies.predict(d, &ev).action, ACTION_LISTEN);
    // Unhappy path from the stories: the form rejected `stop`.
    let mut ev = session_start();
    ev.extend([
        user("request_restaurant"),
        act("restaurant_form"),
        StoryEvent::ActiveLoop(Some("restaurant_form".into())),
    ]);
    ev.extend([
        act(ACTION_LISTEN),
        user("stop"),
        StoryEvent::ActionExecutionRejected("restaurant_form".into()),
    ]);
    assert_eq!(m.policies.predict(d, &ev).action, "utter_ask_continue");
}

#[test]
fn legacy_formbot_uses_form_and_memoization() {
    let dir = tempfile::tempdir().unwrap();
    let m = trained(&core012("formbot", dir.path()));
    let d = &m.domain;
    let mut ev = vec![act(ACTION_LISTEN), user("request_restaurant")];
    assert_eq!(m.policies.predict(d, &ev).action, "restaurant_form");
    ev.extend([
        act("restaurant_form"),
        StoryEvent::ActiveLoop(Some("restaurant_form".into())),
    ]);
    let p = m.policies.predict(d, &ev);
    assert_eq!(
        (p.action.as_str(), p.policy.as_str()),
        (ACTION_LISTEN, "FormPolicy")
    );
    ev.extend([act(ACTION_LISTEN), user("inform")]);
    assert_eq!(m.policies.predict(d, &ev).action, "restaurant_form");
}

#[test]
fn moodbot_domain_json_matches_rasa() {
    let captured: Value = serde_json::from_str(
        &std::fs::read_to_string("/work/shared/rasa/captured-3.6.21/domain.json").unwrap(),
    )
    .unwrap();
    let d = Domain::load(&PathBuf::from(RASA3).join("moodbot/domain.yml")).unwrap();
    let ours = d.to_json();
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(keys(&ours), keys(&captured));
    assert_eq!(ours["intents"], captured["intents"]);
    assert_eq!(ours["session_config"], captured["session_config"]);
    assert_eq!(ours["version"], captured["version"]);
    assert_eq!(keys(&ours["responses"]), keys(&captured["responses"]));
    // The captured server ran `rasa init`'s moodbot: same responses minus utter_greet's buttons.
    let mut greet = ours["responses"]["utter_greet"].clone();
    greet[0].as_object_mut().unwrap().remove("buttons");
    assert_eq!(greet, captured["responses"]["utter_greet"]);
    assert_eq!(
        ours["responses"]["utter_cheer_up"],
        captured["responses"]["utter_cheer_up"]
    );
    assert_eq!(ours["slots"], json!({}));
    assert_eq!(ours["actions"], json!([]));
    // The captured bench_slot, as a domain file would declare it, comes back unchanged.
    let with_slot = "intents: [greet]\nslots:\n  bench_slot:\n    type: text\n    influence_conversation: false\n    mappings:\n    - type: custom\nactions: [action_dump_tracker]\n";
    let d = Domain::from_yaml(with_slot, "d.yml").unwrap();
    assert_eq!(d.to_json()["slots"], captured["slots"]);
    assert_eq!(d.to_json()["actions"], captured["actions"]);
    // Prediction scores cover Rasa's 20 actions for that domain.
    let full = Domain::load(&PathBuf::from(RASA3).join("moodbot/domain.yml")).unwrap();
    assert_eq!(full.action_names().len() + 1, 20);
}

#[test]
fn model_train_endpoint_document() {
    let doc = format!(
        "{}{}\nnlu:\n- intent: greet\n  examples: |\n    - hi [Anna](name)\n    - hello [there]{{\"entity\": \"name\", \"value\": \"x\"}}\nstories:\n- story: s\n  steps:\n  - intent: greet\n  - action: utter_greet\n",
        DOMAIN, CONFIG
    );
    let dir = tempfile::tempdir().unwrap();
    let (name, bytes) = train_from_yaml_document(&doc, Some(dir.path())).unwrap();
    assert!(name.ends_with(".tar.gz"));
    assert!(dir.path().join(&name).exists());
    let m = Model::from_bytes(&bytes, &name).unwrap();
    assert_eq!(m.nlu_data.examples.len(), 2);
    assert_eq!(m.nlu_data.examples[0].text, "hi Anna");
    assert_eq!(m.nlu_data.examples[1].entities[0].value, "x");
    assert_eq!(
        m.policies
            .predict(&m.domain, &[act(ACTION_LISTEN), user("greet")])
            .action,
        "utter_greet"
    );
}

#[test]
fn moodbot_training_time() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = train(&rasa3("moodbot", dir.path()), &mut quiet()).unwrap();
    let took = started.elapsed();
    let started = std::time::Instant::now();
    let m = Model::load(&out.path).unwrap();
    eprintln!(
        "moodbot: train {took:?}, load {:?}, {} policies",
        started.elapsed(),
        m.policies.policies.len()
    );
}
