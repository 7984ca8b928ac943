//! The configurable limits: body size, events per request, conversation-id length, events per
//! conversation, connections, and the timeouts against slow clients. Each refusal is a 4xx
//! with Rasa's error body and stores nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use colloquy_blackbox_tests::{assert_rasa_error, Server};
use serde_json::{json, Value};

fn slot(i: usize) -> Value {
    json!({"event": "slot", "name": "s", "value": i})
}

fn event_count(server: &Server, id: &str) -> usize {
    let (status, t) = server.get(&format!("/conversations/{id}/tracker?include_events=ALL"));
    assert_eq!(status, 200, "{t}");
    t["events"].as_array().unwrap().len()
}

#[test]
fn request_body_larger_than_the_limit_is_413_with_rasa_error_body() {
    let server = Server::builder()
        .arg("--max-body-bytes")
        .arg("1000")
        .start();
    let big = json!([{"event": "bot", "text": "x".repeat(2000)}]);
    let (status, body) = server.post("/conversations/big/tracker/events", &big);
    assert_rasa_error(status, &body, 413);
    assert_eq!(body["reason"], "PayloadTooLarge");
    let (status, body) = server.get("/conversations/big/story");
    assert_rasa_error(status, &body, 404); // nothing stored
                                           // The REST webhook reads its body within the same limit (http/dispatch.rs answers it
                                           // ahead of the router), and its other methods are the router's 405.
    let (status, body) = server.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "big", "message": "x".repeat(2000)}),
    );
    assert_rasa_error(status, &body, 413);
    assert_eq!(body["reason"], "PayloadTooLarge");
    let (status, body) = server.get("/webhooks/rest/webhook");
    assert_rasa_error(status, &body, 405);
    // Under the limit it works.
    let (status, _) = server.post(
        "/conversations/big/tracker/events",
        &json!({"event": "restart"}),
    );
    assert_eq!(status, 200);
}

#[test]
fn too_many_events_in_one_request_is_400() {
    let server = Server::builder()
        .arg("--max-events-per-request")
        .arg("5")
        .start();
    let six: Vec<Value> = (0..6).map(slot).collect();
    // (`/model/predict` has the same bound; it needs a model, see schemathesis.rs.)
    let (status, body) = server.post("/conversations/many/tracker/events", &json!(six));
    assert_rasa_error(status, &body, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Too many events"),
        "{body}"
    );
    let (status, body) = server.put("/conversations/many/tracker/events", &json!(six));
    assert_rasa_error(status, &body, 400);
    let (status, body) = server.get("/conversations/many/story");
    assert_rasa_error(status, &body, 404);
    let five: Vec<Value> = (0..5).map(slot).collect();
    let (status, _) = server.post("/conversations/many/tracker/events", &json!(five));
    assert_eq!(status, 200);
}

#[test]
fn conversation_id_longer_than_the_limit_is_400() {
    let server = Server::builder()
        .arg("--max-conversation-id-length")
        .arg("10")
        .start();
    let (status, body) = server.post(
        "/conversations/abcdefghijk/tracker/events",
        &json!({"event": "restart"}),
    );
    assert_rasa_error(status, &body, 400);
    assert_eq!(body["details"]["parameter"], "conversation_id");
    let (status, body) = server.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "abcdefghijk", "message": "hi"}),
    );
    assert_rasa_error(status, &body, 400);
    let (status, ids) = server.get("/conversations");
    assert_eq!(status, 200);
    assert_eq!(ids, json!([]));
    let (status, _) = server.post(
        "/conversations/abcdefghij/tracker/events",
        &json!({"event": "restart"}),
    );
    assert_eq!(status, 200);
}

#[test]
fn appends_beyond_the_events_per_conversation_limit_are_refused_and_nothing_is_stored() {
    let server = Server::builder()
        .arg("--max-events-per-conversation")
        .arg("10")
        .start();
    // A new conversation gets the three session-start events first: 3 + 4 = 7.
    let four: Vec<Value> = (0..4).map(slot).collect();
    let (status, _) = server.post("/conversations/full/tracker/events", &json!(four));
    assert_eq!(status, 200);
    assert_eq!(event_count(&server, "full"), 7);
    let three: Vec<Value> = (10..13).map(slot).collect();
    let (status, _) = server.post("/conversations/full/tracker/events", &json!(three));
    assert_eq!(status, 200);
    assert_eq!(event_count(&server, "full"), 10);
    // One more: refused, nothing stored, the log intact.
    let (status, body) = server.post("/conversations/full/tracker/events", &slot(99));
    assert_rasa_error(status, &body, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--max-events-per-conversation"),
        "{body}"
    );
    assert_eq!(event_count(&server, "full"), 10);
    let (_, t) = server.get("/conversations/full/tracker?include_events=ALL");
    assert_eq!(t["events"][9]["value"], 12);
    // Replacing with more than the limit is refused too; with fewer it works.
    let eleven: Vec<Value> = (0..11).map(slot).collect();
    let (status, body) = server.put("/conversations/full/tracker/events", &json!(eleven));
    assert_rasa_error(status, &body, 400);
    assert_eq!(event_count(&server, "full"), 10);
    let two: Vec<Value> = (0..2).map(slot).collect();
    let (status, _) = server.put("/conversations/full/tracker/events", &json!(two));
    assert_eq!(status, 200);
    assert_eq!(event_count(&server, "full"), 2);
    let (status, _) = server.get("/status");
    assert_eq!(status, 200);
}

#[test]
fn the_flags_are_validated() {
    for flag in [
        "--max-connections",
        "--max-events-per-conversation",
        "--max-events-per-request",
        "--header-read-timeout",
        "--body-read-timeout",
    ] {
        let err = Server::builder()
            .arg(flag)
            .arg("0")
            .try_start()
            .err()
            .unwrap_or_else(|| panic!("{flag} 0 was accepted"));
        assert!(err.contains(flag), "{flag}: {err}");
    }
}

fn raw_get(port: u16, timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(b"GET /version HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

#[test]
fn connections_beyond_the_limit_wait_until_one_closes() {
    let server = Server::builder()
        .arg("--max-connections")
        .arg("2")
        .arg("--header-read-timeout")
        .arg("30")
        .start();
    assert!(raw_get(server.port, Duration::from_secs(5)).is_some());
    let a = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let b = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Both slots are held by idle connections: a third client is not served.
    assert!(
        raw_get(server.port, Duration::from_secs(1)).is_none(),
        "a third connection was served with --max-connections 2"
    );
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    let answer = raw_get(server.port, Duration::from_secs(5)).expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(b);
}

#[test]
fn a_client_that_does_not_finish_its_request_head_is_disconnected() {
    let server = Server::builder()
        .arg("--max-connections")
        .arg("1")
        .arg("--header-read-timeout")
        .arg("2")
        .start();
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.write_all(b"GET /version HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "the slow client was not disconnected ({waited:?})"
    );
    // Its slot is free again: the only connection slot serves the next client.
    let answer = raw_get(server.port, Duration::from_secs(5)).expect("served after the timeout");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_client_that_stalls_its_body_gets_408_with_rasa_error_body() {
    let server = Server::builder()
        .arg("--body-read-timeout")
        .arg("1")
        .start();
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(
        b"POST /conversations/slow/tracker/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[{\"event\":",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the response's JSON body is complete (or the server closes).
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.ends_with(b"}") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_rasa_error(408, &body, 408);
    let (status, body) = server.get("/conversations/slow/story");
    assert_rasa_error(status, &body, 404);
}
