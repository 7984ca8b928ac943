//! Channels, side effects and reminders; `colloquy shell` and `colloquy test nlu`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use colloquy_blackbox_tests::bots::{hello_bot, rasa_example, train};
use colloquy_blackbox_tests::capture::CaptureServer;
use colloquy_blackbox_tests::{colloquy_bin, Server};
use serde_json::{json, Value};

fn in_seconds(s: f64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + s;
    let secs = t.floor() as i64;
    let millis = ((t - t.floor()) * 1000.0) as u32;
    // ISO-8601 in UTC, as Python's isoformat() writes it.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, sec) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{sec:02}.{millis:03}+00:00")
}

fn events(s: &Server, id: &str) -> Vec<Value> {
    s.get(&format!("/conversations/{id}/tracker?include_events=ALL"))
        .1["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn callback_channel_side_effects_and_reminders() {
    let callback = CaptureServer::start();
    let model = train(&hello_bot());
    let credentials = format!("rest:\ncallback:\n  url: \"{}\"\n", callback.url());
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .arg("--credentials")
        .arg("credentials.yml")
        .file("credentials.yml", credentials.as_bytes())
        .start();
    // The callback webhook answers `success` and POSTs the bot's messages.
    let r = s
        .client
        .post(format!(
            "http://127.0.0.1:{}/webhooks/callback/webhook",
            s.port
        ))
        .json(&json!({"sender": "cb", "message": "/greet"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "success");
    let got = callback.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0]["recipient_id"], "cb");
    assert!(got[0]["text"].as_str().unwrap().starts_with("Hello!"));
    // Case 40: a posted bot event reaches the callback only with side effects asked for.
    s.post(
        "/conversations/cb/tracker/events",
        &json!({"event": "bot", "text": "quiet"}),
    );
    s.post(
        "/conversations/cb/tracker/events?execute_side_effects=true&output_channel=callback",
        &json!({"event": "bot", "text": "loud"}),
    );
    let got = callback.wait_for(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1], json!({"recipient_id": "cb", "text": "loud"}));
    // A reminder fires as an external intent and its answer goes to the callback.
    let reminder = json!({"event": "reminder", "intent": "ask_hours", "date_time": in_seconds(1.0), "name": "r1", "kill_on_user_msg": false});
    s.post(
        "/conversations/rem/tracker/events?execute_side_effects=true",
        &reminder,
    );
    let got = callback.wait_for(3, Duration::from_secs(15));
    assert_eq!(
        got.last().unwrap()["text"],
        "We are open every day from 7am to 7pm.",
        "{got:?}"
    );
    let evs = events(&s, "rem");
    let external = evs.iter().find(|e| e["event"] == "user").unwrap();
    assert_eq!(external["text"], "EXTERNAL: ask_hours");
    assert_eq!(external["metadata"]["is_external"], true);
    // kill_on_user_msg: a user message after the reminder drops it; cancel_reminder cancels.
    let kill = json!({"event": "reminder", "intent": "ask_hours", "date_time": in_seconds(1.5), "name": "r2", "kill_on_user_msg": true});
    s.post(
        "/conversations/kill/tracker/events?execute_side_effects=true",
        &kill,
    );
    s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "kill", "message": "/greet"}),
    );
    let cancel = json!({"event": "reminder", "intent": "ask_hours", "date_time": in_seconds(1.5), "name": "r3", "kill_on_user_msg": false});
    s.post(
        "/conversations/cancel/tracker/events?execute_side_effects=true",
        &cancel,
    );
    s.post(
        "/conversations/cancel/tracker/events?execute_side_effects=true",
        &json!({"event": "cancel_reminder", "name": "r3"}),
    );
    std::thread::sleep(Duration::from_millis(3000));
    assert!(!events(&s, "kill")
        .iter()
        .any(|e| e["text"] == "EXTERNAL: ask_hours"));
    assert!(!events(&s, "cancel").iter().any(|e| e["event"] == "user"));
    assert_eq!(callback.received.lock().unwrap().len(), 3);
}

#[test]
fn unsupported_channels_are_refused_at_start() {
    let err = Server::builder()
        .arg("--credentials")
        .arg("credentials.yml")
        .file("credentials.yml", b"facebook:\n  verify: x\n")
        .try_start()
        .err()
        .unwrap();
    assert!(
        err.contains("facebook") && err.contains("rest, callback"),
        "{err}"
    );
    // Only the listed channels are served.
    let s = Server::builder()
        .arg("--credentials")
        .arg("credentials.yml")
        .file(
            "credentials.yml",
            b"callback:\n  url: http://127.0.0.1:9/x\n",
        )
        .start();
    assert_eq!(
        s.client
            .get(format!("http://127.0.0.1:{}/webhooks/rest/", s.port))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        s.client
            .get(format!("http://127.0.0.1:{}/webhooks/callback/", s.port))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn shell_chats_with_a_model() {
    let model = train(&hello_bot());
    let mut child = Command::new(colloquy_bin())
        .args(["shell", "-m", model.path().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/greet\n/ask_hours\n/stop\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("bot> Hello!") && text.contains("bot> We are open every day"),
        "{text}"
    );
}

#[test]
fn test_nlu_cross_validates() {
    let dir = tempfile::tempdir().unwrap();
    let data = rasa_example("moodbot").join("data");
    let out = Command::new(colloquy_bin())
        .current_dir(dir.path())
        .args(["test", "nlu", "--cross-validation", "--folds", "3", "--nlu"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("results/intent_report.json")).unwrap(),
    )
    .unwrap();
    assert!(
        report["intent_evaluation"]["accuracy"].as_f64().unwrap() > 0.5,
        "{report}"
    );
    assert!(
        report["intent_evaluation"]["report"]["greet"]["f1-score"].is_number()
            || report["intent_evaluation"]["report"]["greet"].is_object()
    );
}
