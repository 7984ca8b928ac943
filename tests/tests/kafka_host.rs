//! The Kafka broker plugin (`type: kafka`) through the real binary, against a real
//! Kafka-compatible broker (tansu): switching from the file broker by configuration alone,
//! Rasa's message format, a broker outage, invalid configurations, flush at SIGTERM (issue 6).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use colloquy_blackbox_tests::services::{wait_for, Tansu};
use colloquy_blackbox_tests::{cargo_artifact, colloquy_bin, shared, Server};
use serde_json::{json, Map, Value};

const ENVIRONMENT: &str = "colloquy-blackbox";

/// The directory holding the freshly built Kafka plugin (built once per test process).
fn plugin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        cargo_artifact("colloquy-plugin-kafka", "cdylib")
            .parent()
            .unwrap()
            .to_path_buf()
    })
    .clone()
}

fn try_host(yaml: &str) -> Result<Server, String> {
    Server::builder()
        .arg("--plugin-dir")
        .arg(plugin_dir().to_str().unwrap())
        .env("RASA_ENVIRONMENT", ENVIRONMENT)
        .endpoints(yaml)
        .try_start()
}

fn host(yaml: &str) -> Server {
    try_host(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn kafka_yaml(tansu: &Tansu, topic: &str, extra: &str) -> String {
    format!(
        "event_broker:\n  type: kafka\n  url: {}\n  topic: {topic}\n  partition_by_sender: true\n{extra}",
        tansu.bootstrap()
    )
}

/// A scripted conversation: what a client posts, turn by turn (single events and lists).
fn script(sender: &str) -> Vec<Value> {
    vec![
        json!({"event": "user", "timestamp": 1700000001.0, "text": format!("hi from {sender}"),
               "parse_data": {"intent": {"name": "greet", "confidence": 0.98}, "entities": [], "text": "hi"},
               "input_channel": "rest", "message_id": "9f1c", "metadata": {}}),
        json!([
            {"event": "action", "timestamp": 1700000001.1, "name": "utter_greet", "policy": "RulePolicy", "confidence": 1.0},
            {"event": "bot", "timestamp": 1700000001.2, "text": "Hello!",
             "data": {"elements": null, "quick_replies": null, "buttons": null, "attachment": null, "image": null, "custom": null},
             "metadata": {"utter_action": "utter_greet"}},
            {"event": "action", "timestamp": 1700000001.3, "name": "action_listen", "policy": "RulePolicy", "confidence": 1.0}
        ]),
        json!({"event": "slot", "timestamp": 1700000002.0, "name": "city", "value": "Oslo"}),
        json!({"event": "slot", "timestamp": 1700000002.5, "name": "ünïcode", "value": {"nested": [1, 2.5, null]}}),
    ]
}

fn run_script(s: &Server, sender: &str) {
    for turn in script(sender) {
        let (st, body) = s.post(&format!("/conversations/{sender}/tracker/events"), &turn);
        assert_eq!(st, 200, "{body}");
    }
}

fn stored_events(s: &Server, sender: &str) -> Vec<Value> {
    let (st, t) = s.get(&format!(
        "/conversations/{sender}/tracker?include_events=ALL"
    ));
    assert_eq!(st, 200, "{t}");
    t["events"].as_array().unwrap().clone()
}

/// Rasa's broker message for an event: `{"sender_id": …, <the event's keys in order>}`.
fn message(sender: &str, event: &Value) -> Value {
    let mut m = Map::new();
    m.insert("sender_id".into(), json!(sender));
    m.extend(event.as_object().unwrap().clone());
    Value::Object(m)
}

fn payloads(records: &[colloquy_blackbox_tests::services::Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| serde_json::from_str(&r.payload).expect("a JSON message"))
        .collect()
}

/// Waits until the host's broker has nothing pending and everything stored was published.
fn wait_until_delivered(s: &Server, timeout: Duration) -> Value {
    wait_for("the broker to deliver everything", timeout, || {
        let (_, st) = s.get("/status");
        let h = &st["event_broker"]["health"];
        let ev = &st["events"];
        (h["pending"] == 0 && h["ok"] == true && ev["stored"] == ev["published"]).then_some(st)
    })
}

fn fingerprint(path: &Path) -> (u64, SystemTime) {
    let m = std::fs::metadata(path).unwrap();
    (m.len(), m.modified().unwrap())
}

#[test]
fn switching_from_the_file_broker_to_kafka_needs_only_the_yaml() {
    let bin = colloquy_bin();
    // Everything is built before the fingerprints are taken; nothing is built afterwards.
    let _ = colloquy_blackbox_tests::services::kafka_tool();
    let so = plugin_dir().join("libcolloquy_plugin_kafka.so");
    let (bin_before, so_before) = (fingerprint(&bin), fingerprint(&so));
    let tansu = Tansu::start();
    tansu.create_topic("rasa_core_events", 3);
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("events.log");

    // 1. The file broker.
    let file_yaml = format!("event_broker:\n  type: file\n  path: {}\n", log.display());
    let mut s = host(&file_yaml);
    run_script(&s, "alice");
    let file_expected: Vec<Value> = stored_events(&s, "alice")
        .iter()
        .map(|e| message("alice", e))
        .collect();
    assert_eq!(s.terminate().code(), Some(0));
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines, file_expected,
        "the file broker: every event once, in order"
    );
    drop(s);

    // 2. The same binary and plugins folder, only the YAML changed.
    let mut s = host(&kafka_yaml(&tansu, "rasa_core_events", ""));
    for sender in ["alice", "bob"] {
        run_script(&s, sender);
    }
    let status = wait_until_delivered(&s, Duration::from_secs(60));
    assert_eq!(status["event_broker"]["type"], "kafka");
    assert_eq!(status["events"]["publish_failures"], 0);
    let mut expected = Vec::new();
    let mut texts = Vec::new();
    for sender in ["alice", "bob"] {
        let events = stored_events(&s, sender);
        texts.push((sender, events.len()));
        expected.extend(events.iter().map(|e| (sender, message(sender, e))));
    }
    assert_eq!(s.terminate().code(), Some(0));
    let records = tansu.consume(
        "rasa_core_events",
        3,
        expected.len(),
        Duration::from_secs(30),
    );
    assert_eq!(
        records.len(),
        expected.len(),
        "every event exactly once: {records:#?}"
    );
    for sender in ["alice", "bob"] {
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(sender))
            .cloned()
            .collect();
        assert!(
            mine.iter().all(|r| r.partition == mine[0].partition),
            "{sender}: one partition"
        );
        let want: Vec<Value> = expected
            .iter()
            .filter(|(s, _)| *s == sender)
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(payloads(&mine), want, "{sender}: Rasa's JSON, in order");
        for r in &mine {
            assert!(
                r.payload
                    .starts_with(&format!(r#"{{"sender_id":"{sender}","event":"#)),
                "sender_id first, compact JSON: {}",
                r.payload
            );
            assert_eq!(
                r.headers,
                [("RASA_ENVIRONMENT".to_string(), ENVIRONMENT.to_string())]
            );
        }
    }
    // The same conversation produced the same kinds of messages with either broker.
    let kinds = |msgs: &[Value]| -> Vec<(String, String)> {
        msgs.iter()
            .map(|m| {
                (
                    m["event"].as_str().unwrap().to_string(),
                    m["name"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let alice_kafka: Vec<Value> = expected
        .iter()
        .filter(|(s, _)| *s == "alice")
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(kinds(&alice_kafka), kinds(&file_expected));
    assert_eq!(fingerprint(&bin), bin_before, "the binary was not rebuilt");
    assert_eq!(fingerprint(&so), so_before, "the plugin was not rebuilt");
}

#[test]
fn the_broker_down_for_ten_seconds_fails_no_request_and_loses_nothing() {
    let mut tansu = Tansu::start();
    let topic = "outage_events";
    tansu.create_topic(topic, 1);
    let s = host(&kafka_yaml(
        &tansu,
        topic,
        "  queue_size: 10000\n  stall_timeout_ms: 5000\n",
    ));
    let id = "outage";
    let path = format!("/conversations/{id}/tracker/events");
    let post = |i: i64| {
        let at = Instant::now();
        let (st, body) = s.post(&path, &json!({"event": "slot", "name": "n", "value": i}));
        assert_eq!(st, 200, "event {i}: {body}");
        assert!(
            at.elapsed() < Duration::from_secs(5),
            "event {i} took {:?} while the broker was away",
            at.elapsed()
        );
    };

    // Phase A: the broker is up.
    let mut i = 0;
    while i < 10 {
        post(i);
        i += 1;
    }
    wait_until_delivered(&s, Duration::from_secs(60));
    let stored_a = stored_events(&s, id).len();
    let phase_a = tansu.consume(topic, 1, stored_a, Duration::from_secs(30));
    assert_eq!(phase_a.len(), stored_a);

    // Phase B: the broker is stopped for 10 s while the conversation goes on; it comes back
    // empty (memory storage) and the topic is re-created.
    tansu.stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        post(i);
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, status) = s.get("/status");
    assert_eq!(status["event_broker"]["health"]["ok"], false, "{status}");
    assert!(
        status["event_broker"]["health"]["pending"]
            .as_u64()
            .unwrap()
            > 0,
        "{status}"
    );
    tansu.start_again();
    tansu.create_topic(topic, 1);
    for _ in 0..10 {
        post(i);
        i += 1;
    }
    let status = wait_until_delivered(&s, Duration::from_secs(90));
    assert_eq!(status["events"]["publish_failures"], 0, "{status}");
    assert_eq!(status["event_broker"]["health"]["dropped"], 0, "{status}");
    assert_eq!(status["event_broker"]["health"]["failed"], 0, "{status}");

    let events = stored_events(&s, id);
    let phase_b = tansu.consume(topic, 1, events.len() - stored_a, Duration::from_secs(30));
    let got: Vec<Value> = payloads(&phase_a)
        .into_iter()
        .chain(payloads(&phase_b))
        .collect();
    let want: Vec<Value> = events.iter().map(|e| message(id, e)).collect();
    assert_eq!(got.len(), want.len(), "nothing lost, nothing doubled");
    assert_eq!(got, want, "order kept");
    assert_eq!(i as usize + 3, events.len());
}

#[test]
fn invalid_broker_configurations_stop_start_up_naming_the_field() {
    let fixtures = shared("rasa/config-examples/rasa-3.x/test_endpoints/event_brokers");
    let cases = [
        ("kafka_invalid_security_protocol.yml", "security_protocol"),
        ("kafka_invalid_sasl_mechanism.yml", "sasl_mechanism"),
        ("kafka_sasl_plaintext_endpoint.yml", "partition_key"),
    ];
    for (file, field) in cases {
        let path = fixtures.join(file);
        assert!(path.is_file(), "{} is missing", path.display());
        let started = Server::builder()
            .arg("--plugin-dir")
            .arg(plugin_dir().to_str().unwrap())
            .arg("--endpoints")
            .arg(path.to_str().unwrap())
            .try_start();
        let err = match started {
            Ok(_) => panic!("started with {file}"),
            Err(e) => e,
        };
        assert!(err.contains(field), "{file}: `{field}` not in:\n{err}");
        assert!(err.contains("kafka"), "{file}: the plugin is named:\n{err}");
    }
    for (yaml, field) in [
        (
            "event_broker:\n  type: kafka\n  url: 127.0.0.1:9\n  queue_size: lots\n",
            "queue_size",
        ),
        (
            "event_broker:\n  type: kafka\n  url: 127.0.0.1:9\n  partition_by_sender: maybe\n",
            "partition_by_sender",
        ),
    ] {
        let err = match try_host(yaml) {
            Ok(_) => panic!("started with {yaml}"),
            Err(e) => e,
        };
        assert!(err.contains(field), "{yaml}: `{field}` not in:\n{err}");
    }
}

#[test]
fn sigterm_flushes_pending_events_before_exit() {
    let tansu = Tansu::start();
    let topic = "shutdown_events";
    tansu.create_topic(topic, 1);
    // linger.ms keeps the events in the producer's queue for 3 s: at SIGTERM they are pending.
    let mut s = host(&kafka_yaml(
        &tansu,
        topic,
        "  librdkafka:\n    linger.ms: 3000\n",
    ));
    let id = "bye";
    for i in 0..20 {
        let (st, body) = s.post(
            &format!("/conversations/{id}/tracker/events"),
            &json!({"event": "slot", "name": "n", "value": i}),
        );
        assert_eq!(st, 200, "{body}");
    }
    let events = stored_events(&s, id);
    let (_, status) = s.get("/status");
    assert!(
        status["event_broker"]["health"]["pending"]
            .as_u64()
            .unwrap()
            > 0,
        "events are still lingering: {status}"
    );
    let at = Instant::now();
    let code = s.terminate();
    eprintln!("exited after {:?}", at.elapsed());
    assert_eq!(code.code(), Some(0), "{}", s.stderr());
    let records = tansu.consume(topic, 1, events.len(), Duration::from_secs(30));
    let want: Vec<Value> = events.iter().map(|e| message(id, e)).collect();
    assert_eq!(payloads(&records), want, "flushed before exit, in order");
}

#[test]
fn sigterm_with_the_broker_unreachable_exits_after_the_flush_deadline() {
    // Nothing listens there: events stay pending.
    let port = colloquy_blackbox_tests::free_port();
    let mut s = host(&format!(
        "event_broker:\n  type: kafka\n  url: 127.0.0.1:{port}\n  close_timeout_ms: 1000\n"
    ));
    for i in 0..5 {
        let (st, body) = s.post(
            "/conversations/stuck/tracker/events",
            &json!({"event": "slot", "name": "n", "value": i}),
        );
        assert_eq!(st, 200, "{body}");
    }
    let at = Instant::now();
    let code = s.terminate();
    let took = at.elapsed();
    eprintln!("exited after {took:?}");
    assert_eq!(code.code(), Some(0), "{}", s.stderr());
    assert!(took < Duration::from_secs(20), "bounded shutdown: {took:?}");
    let log = s.stderr();
    assert!(
        log.contains("flush"),
        "the unflushed events are reported:\n{log}"
    );
}
