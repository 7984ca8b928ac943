//! Endpoint files, `${VAR}` expansion, `type:` resolution and `.so` plugins, end to end.

use std::path::PathBuf;

use colloquy_blackbox_tests::{cargo_artifact, colloquy, Server};
use serde_json::{json, Value};

fn in_memory_plugin_dir() -> (tempfile::TempDir, PathBuf) {
    let so = cargo_artifact("colloquy-plugin-in-memory", "cdylib");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("libcolloquy_plugin_in_memory.so");
    std::fs::copy(&so, &dest).unwrap();
    (dir, dest)
}

#[test]
fn startup_errors_name_what_is_wrong() {
    let cases = [
        (
            "tracker_store:\n  type: redis\n  password: ${NO_SUCH_VARIABLE_XYZ}\n",
            vec!["NO_SUCH_VARIABLE_XYZ", "endpoints.yml"],
        ),
        (
            "tracker_store:\n  type: mongoish\n",
            vec!["unknown type \"mongoish\"", "in_memory", "searched"],
        ),
        (
            "tracker_store:\n  type: rasa.core.tracker_store.MyStore\n",
            vec!["Python class"],
        ),
        (
            "event_broker:\n  url: localhost\n",
            vec!["event_broker", "`type` is required"],
        ),
        (
            "lock_store:\n  type: in_memory\n  bogus: 1\n",
            vec!["bogus"],
        ),
        ("- just\n- a list\n", vec!["mapping"]),
    ];
    for (yaml, needles) in cases {
        let err = match Server::builder().endpoints(yaml).try_start() {
            Ok(_) => panic!("started with {yaml}"),
            Err(e) => e,
        };
        for n in needles {
            assert!(err.contains(n), "{yaml}: `{n}` not in:\n{err}");
        }
    }
    let err = Server::builder()
        .arg("--endpoints")
        .arg("/no/such/endpoints.yml")
        .try_start()
        .err()
        .unwrap();
    assert!(err.contains("/no/such/endpoints.yml"), "{err}");
}

#[test]
fn variables_expand_with_defaults_and_literal_dollars() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let yaml = "event_broker:\n  type: file\n  path: \"${EVENT_DIR}/${EVENT_FILE:-events.log}\"\n";
    let s = Server::builder()
        .endpoints(yaml)
        .env("EVENT_DIR", dir.path().to_str().unwrap())
        .start();
    let (st, _) = s.post(
        "/conversations/v/tracker/events",
        &json!({"event": "slot", "name": "a", "value": "$$"}),
    );
    assert_eq!(st, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
}

#[test]
fn the_file_broker_gets_every_stored_event_in_order() {
    let s = Server::builder()
        .endpoints("event_broker:\n  type: file\n  path: broker.log\n")
        .start();
    s.post(
        "/conversations/b1/tracker/events",
        &json!([{"event": "slot", "name": "x", "value": 1}, {"event": "pause"}]),
    );
    s.post(
        "/conversations/b1/tracker/events",
        &json!({"event": "resume"}),
    );
    // A refused request publishes nothing.
    s.post_raw("/conversations/b1/tracker/events", "{\"event\":\"nope\"}");
    let text = std::fs::read_to_string(s.dir.path().join("broker.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "action",
            "session_started",
            "action",
            "slot",
            "pause",
            "resume"
        ]
    );
    assert!(lines.iter().all(|l| l["sender_id"] == "b1"));
    assert!(
        text.lines()
            .all(|l| l.starts_with("{\"sender_id\":\"b1\",\"event\":")),
        "{text}"
    );
    let (_, status) = s.get("/status");
    assert_eq!(status["events"]["published"], 6);
    assert_eq!(status["event_broker"]["type"], "file");
}

#[test]
fn a_store_plugin_loaded_from_a_file_behaves_like_the_built_in() {
    let (dir, so) = in_memory_plugin_dir();
    let (code, out, err) = colloquy(
        &["plugins", "--plugin-dir", dir.path().to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("in_memory_plugin")
            && out.contains("tracker-store,lock-store")
            && out.contains(so.to_str().unwrap()),
        "{out}"
    );
    // The same contract suite the built-in store passes (its unit test runs it in-process).
    let (code, out, err) = colloquy(
        &[
            "plugin-test",
            so.to_str().unwrap(),
            "--kind",
            "tracker-store",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 failed"), "{out}");
    let (code, out, _) = colloquy(
        &["plugin-test", so.to_str().unwrap(), "--kind", "lock-store"],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}");
    // A bad config is refused with the key named.
    let (code, _, err) = colloquy(
        &[
            "plugin-test",
            so.to_str().unwrap(),
            "--kind",
            "tracker-store",
            "--config",
            "{\"colour\": 1}",
        ],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("colour"), "{err}");
    // Selected by name through --plugin-dir, and by path.
    for type_name in ["in_memory_plugin", so.to_str().unwrap()] {
        let yaml =
            format!("tracker_store:\n  type: {type_name}\nlock_store:\n  type: {type_name}\n");
        let s = Server::builder()
            .arg("--plugin-dir")
            .arg(dir.path().to_str().unwrap())
            .endpoints(&yaml)
            .start();
        let (st, t) = s.post(
            "/conversations/p/tracker/events",
            &json!([{"event": "slot", "name": "x", "value": 1}]),
        );
        assert_eq!(st, 200, "{t}");
        let (_, t) = s.get("/conversations/p/tracker?include_events=ALL");
        assert_eq!(t["events"].as_array().unwrap().len(), 4);
        let (_, status) = s.get("/status");
        assert_eq!(status["tracker_store"]["type"], type_name);
        assert_eq!(status["tracker_store"]["health"]["ok"], true);
    }
}

#[test]
fn a_file_that_is_not_a_plugin_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, b"not an ELF file").unwrap();
    let yaml = format!("tracker_store:\n  type: {}\n", fake.display());
    let err = Server::builder()
        .endpoints(&yaml)
        .try_start()
        .err()
        .unwrap();
    assert!(
        err.contains("libfake.so") && err.contains("tracker_store"),
        "{err}"
    );
}
