//! `nlu:` in the endpoints YAML: messages parsed by a remote Rasa NLU server (a fake one here,
//! recording what it was asked), and the empty result when it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use colloquy_blackbox_tests::bots::{hello_bot, train};
use colloquy_blackbox_tests::{cargo_artifact, first_event, Server};
use serde_json::{json, Value};

/// Answers every request with `greet`/`ask_hours` depending on the text; records the
/// request line and body.
/// (request line, JSON body) of every call.
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

fn fake_nlu() -> (u16, Calls) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let text = body["text"].as_str().unwrap_or("").to_string();
            log.lock()
                .unwrap()
                .push((request_line.trim().to_string(), body));
            let intent = if text.contains("open") {
                "ask_hours"
            } else {
                "greet"
            };
            let answer = if text.contains("broken") {
                // Offsets that are not integers: a stored event could not be read back.
                json!({"text": text, "intent": {"name": "greet", "confidence": 0.9}, "entities": [{"entity": "drink", "value": "x", "start": 0.5, "end": 2}]})
            } else {
                json!({"text": text, "intent": {"name": intent, "confidence": 0.97}, "entities": [], "intent_ranking": [{"name": intent, "confidence": 0.97}]})
            }
            .to_string();
            let mut s = stream;
            let _ = s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len()).as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn messages_are_parsed_by_the_configured_nlu_server() {
    let so = cargo_artifact("colloquy-plugin-http-nlu", "cdylib");
    let model = train(&hello_bot());
    let (port, seen) = fake_nlu();
    let yaml = format!("nlu:\n  url: http://127.0.0.1:{port}\n  token: s3cret\n");
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .arg("--plugin-dir")
        .arg(so.parent().unwrap().to_str().unwrap())
        .endpoints(&yaml)
        .start();
    let (_, r) = s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "n", "message": "are you open, friend?"}),
    );
    assert_eq!(
        r[0]["text"], "We are open every day from 7am to 7pm.",
        "{r}"
    );
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].0.starts_with("POST /model/parse?token=s3cret"),
        "{}",
        calls[0].0
    );
    assert_eq!(calls[0].1["token"], "s3cret");
    // The shortcut never leaves the host.
    s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "n", "message": "/greet"}),
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    // /model/parse goes through the connector too.
    let (_, p) = s.post("/model/parse", &json!({"text": "hello there"}));
    assert_eq!(p["intent"]["name"], "greet");
    // An answer that could not be stored and read back counts as a failed parse: the turn
    // goes on with the empty result and the conversation stays readable.
    let (st, _) = s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "b", "message": "a broken answer"}),
    );
    assert_eq!(st, 200);
    let (st, t) = s.get("/conversations/b/tracker?include_events=ALL");
    assert_eq!(st, 200, "{t}");
    let user = first_event(&t, "user");
    assert_eq!(user["parse_data"]["intent"]["name"], Value::Null, "{user}");
}

#[test]
fn an_unreachable_nlu_server_gives_an_empty_parse_and_the_turn_goes_on() {
    let so = cargo_artifact("colloquy-plugin-http-nlu", "cdylib");
    let model = train(&hello_bot());
    let yaml = "nlu:\n  url: http://127.0.0.1:9\n  timeout: 2\n";
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .arg("--plugin-dir")
        .arg(so.parent().unwrap().to_str().unwrap())
        .endpoints(yaml)
        .start();
    let (st, _) = s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "e", "message": "hello"}),
    );
    assert_eq!(st, 200);
    let (_, t) = s.get("/conversations/e/tracker?include_events=ALL");
    let user = first_event(&t, "user");
    assert_eq!(user["text"], "hello");
    assert_eq!(user["parse_data"]["intent"]["name"], Value::Null);
    // With no intent, the core fallback answers (and reverts the message), as in Rasa.
    assert!(
        t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "action_default_fallback"),
        "{t}"
    );
}
