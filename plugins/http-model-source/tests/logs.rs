//! Log output of the HTTP model source, in its own test binary: the captured subscriber is
//! thread-local, and tracing's per-callsite caches make such captures unreliable next to
//! other tests running in parallel in the same process.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use colloquy_plugin_api::sdk::ModelSourcePlugin;
use colloquy_plugin_http_model_source::HttpModelSource;
use common::{FakeServer, Reply};
use serde_json::{json, Value};

const ARCHIVE: &[u8] = b"\x1f\x8b pretend this is a model archive";

fn source(config: Value) -> HttpModelSource {
    HttpModelSource::from_config_json(&config.to_string()).expect("valid config")
}

fn request(current: Option<&str>, dest: &Path) -> Value {
    json!({"current_fingerprint": current, "dest_dir": dest.to_str().unwrap()})
}

/// A 200 without ETag is a warning; a failure streak is warned once and its end noted; the
/// token never appears (current-thread runtime: the captured subscriber is thread-local).
#[tokio::test]
async fn warnings_once_per_streak_and_without_the_token() {
    let logs = common::Logs::default();
    let _guard = logs.capture();
    let dir = tempfile::tempdir().unwrap();

    let server = FakeServer::start(|_| Reply::status(200).body(ARCHIVE)).await;
    let src = source(json!({"url": server.url("/m"), "token": "s3cret"}));
    src.fetch(request(None, dir.path())).await.unwrap();
    assert!(logs.text().contains("without an ETag"), "{}", logs.text());

    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let server = FakeServer::start(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) < 3 {
            Reply::status(500)
        } else {
            Reply::status(304)
        }
    })
    .await;
    let src = source(json!({"url": server.url("/m"), "token": "s3cret"}));
    for _ in 0..3 {
        src.fetch(request(None, dir.path())).await.unwrap_err();
    }
    src.fetch(request(None, dir.path())).await.unwrap();
    let text = logs.text();
    assert_eq!(text.matches("model pull failed").count(), 1, "{text}");
    assert!(text.contains("reachable again"), "{text}");
    assert!(!text.contains("s3cret"), "token leaked: {text}");
}
