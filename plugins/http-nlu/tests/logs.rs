//! Log output of the HTTP NLU connector, in its own test binary: the captured subscriber is
//! thread-local, and tracing's per-callsite caches make such captures unreliable next to
//! other tests running in parallel in the same process.

mod common;

use colloquy_plugin_api::sdk::NluConnectorPlugin;
use colloquy_plugin_http_nlu::HttpNlu;
use common::{unreachable_url, FakeServer, Reply};
use serde_json::{json, Value};

fn nlu(config: Value) -> HttpNlu {
    HttpNlu::from_config_json(&config.to_string()).expect("valid config")
}

fn msg(text: &str) -> Value {
    json!({"text": text, "message_id": "m-1", "sender_id": "alice"})
}

/// A failure is a warning that names the server but never the token (current-thread runtime:
/// the captured subscriber is thread-local).
#[tokio::test]
async fn failures_are_warned_without_the_token() {
    let logs = common::Logs::default();
    let _guard = logs.capture();
    let server = FakeServer::start(|_| Reply::status(503)).await;
    let n = nlu(json!({"url": server.url("/nlu"), "token": "s3cret"}));
    n.parse(msg("hi")).await.unwrap();
    let down = nlu(json!({"url": unreachable_url().await, "token": "s3cret", "model": "p/m"}));
    down.parse(msg("hi")).await.unwrap();
    let text = logs.text();
    assert_eq!(text.matches("WARN").count(), 2, "{text}");
    assert!(text.contains("503"), "{text}");
    assert!(text.contains("/nlu/model/parse"), "{text}");
    assert!(!text.contains("s3cret"), "token leaked: {text}");
}
