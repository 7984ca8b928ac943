//! The HTTP model source against a model server written here (127.0.0.1, hand-written
//! HTTP/1.1): request headers, each status path, pull-once, the size limit, the `filename`
//! header, failures and the failure streak in `health`.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use colloquy_plugin_api::sdk::{self, ModelSourcePlugin};
use colloquy_plugin_api::ErrorKind;
use colloquy_plugin_http_model_source::HttpModelSource;
use common::{unreachable_url, FakeServer, Reply};
use serde_json::{json, Value};

const ARCHIVE: &[u8] = b"\x1f\x8b pretend this is a model archive";

fn source(config: Value) -> HttpModelSource {
    HttpModelSource::from_config_json(&config.to_string()).expect("valid config")
}

fn request(current: Option<&str>, dest: &Path) -> Value {
    json!({"current_fingerprint": current, "dest_dir": dest.to_str().unwrap()})
}

/// Files in `dir` (names), sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn new_model_is_downloaded_with_all_request_headers() {
    let server = FakeServer::start(|_| {
        Reply::status(200)
            .header("ETag", "\"v2\"")
            .header("filename", "model.tar.gz")
            .body(ARCHIVE)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(json!({
        "url": server.url("/models/latest.tar.gz"),
        "wait_time_between_pulls": 7,
        "token": "s3cret token",
        "params": {"tag": "prod", "n": 3},
        "headers": {"X-Custom": "yes", "X-Number": 42},
        "basic_auth": {"username": "alice", "password": "pw"},
    }));
    let answer = src.fetch(request(Some("v1"), dir.path())).await.unwrap();

    let r = server.last();
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), "/models/latest.tar.gz");
    assert_eq!(r.header("if-none-match"), Some("v1"));
    assert_eq!(r.header("x-custom"), Some("yes"));
    assert_eq!(r.header("x-number"), Some("42"));
    // alice:pw
    assert_eq!(r.header("authorization"), Some("Basic YWxpY2U6cHc="));
    assert_eq!(
        r.query(),
        vec![
            ("n".to_string(), "3".to_string()),
            ("tag".to_string(), "prod".to_string()),
            ("token".to_string(), "s3cret token".to_string()),
        ]
    );

    assert_eq!(answer["status"], "new");
    assert_eq!(answer["fingerprint"], "v2", "ETag without its quotes");
    assert_eq!(answer["next_poll_ms"], 7000);
    let path = Path::new(answer["path"].as_str().unwrap());
    assert_eq!(path.parent(), Some(dir.path()));
    assert_eq!(std::fs::read(path).unwrap(), ARCHIVE);
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("model-") && name.ends_with(".tar.gz"),
        "{name}"
    );
    assert_eq!(
        files_in(dir.path()),
        vec![name.to_string()],
        "no partial file left"
    );

    let health = src.health().await.unwrap();
    assert_eq!(health["ok"], true);
    assert_eq!(health["pulls"], 1);
    assert_eq!(health["downloads"], 1);
    assert_eq!(health["failures"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_name_and_no_fingerprint_yet() {
    let server =
        FakeServer::start(|_| Reply::status(200).header("ETag", "abc").body(ARCHIVE)).await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(json!({"url": server.url("/m"), "token": "t", "token_name": "api_key"}));
    let answer = src.fetch(request(None, dir.path())).await.unwrap();
    let r = server.last();
    assert_eq!(
        r.header("if-none-match"),
        None,
        "no fingerprint: no If-None-Match"
    );
    assert_eq!(r.query_value("api_key").as_deref(), Some("t"));
    assert_eq!(r.query_value("token"), None);
    assert_eq!(r.header("authorization"), None);
    assert_eq!(answer["status"], "new");
    assert_eq!(answer["fingerprint"], "abc");
    assert_eq!(answer["next_poll_ms"], 100_000, "default: 100 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_headers_override_if_none_match() {
    let server = FakeServer::start(|_| Reply::status(304)).await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(json!({"url": server.url("/m"), "headers": {"If-None-Match": "forced"}}));
    src.fetch(request(Some("v1"), dir.path())).await.unwrap();
    assert_eq!(server.last().header("if-none-match"), Some("forced"));
}

#[tokio::test(flavor = "multi_thread")]
async fn same_etag_is_not_downloaded_again() {
    // A server that ignores If-None-Match and always answers 200 (Rasa #3372).
    for etag in ["v1", "\"v1\"", "W/\"v1\""] {
        let server =
            FakeServer::start(move |_| Reply::status(200).header("ETag", etag).body(ARCHIVE)).await;
        let dir = tempfile::tempdir().unwrap();
        let src = source(json!({"url": server.url("/m")}));
        let answer = src.fetch(request(Some("v1"), dir.path())).await.unwrap();
        assert_eq!(
            answer,
            json!({"status": "unchanged", "next_poll_ms": 100_000}),
            "{etag}"
        );
        assert!(files_in(dir.path()).is_empty(), "{etag}: nothing written");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ok_without_etag_is_ignored() {
    let server = FakeServer::start(|_| Reply::status(200).body(ARCHIVE)).await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(json!({"url": server.url("/m"), "wait_time_between_pulls": 1}));
    let answer = src.fetch(request(None, dir.path())).await.unwrap();
    assert_eq!(answer, json!({"status": "unchanged", "next_poll_ms": 1000}));
    assert!(files_in(dir.path()).is_empty());
    assert_eq!(src.health().await.unwrap()["ok"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_content_not_modified_and_not_found_keep_the_model() {
    for status in [204, 304, 404] {
        let server = FakeServer::start(move |_| {
            let reply = Reply::status(status).header("ETag", "other");
            if status == 404 {
                reply.body("no model")
            } else {
                reply
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let src = source(json!({"url": server.url("/m")}));
        let answer = src.fetch(request(Some("v1"), dir.path())).await.unwrap();
        assert_eq!(
            answer,
            json!({"status": "unchanged", "next_poll_ms": 100_000}),
            "{status}"
        );
        assert!(files_in(dir.path()).is_empty(), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_once_answers_null_next_poll() {
    for wait in [json!(null), json!(0), json!("0")] {
        let server =
            FakeServer::start(|_| Reply::status(200).header("ETag", "v9").body(ARCHIVE)).await;
        let dir = tempfile::tempdir().unwrap();
        let src = source(json!({"url": server.url("/m"), "wait_time_between_pulls": wait}));
        let answer = src.fetch(request(None, dir.path())).await.unwrap();
        assert_eq!(answer["status"], "new", "{wait}");
        assert!(
            answer.get("next_poll_ms").is_some_and(Value::is_null),
            "{wait}: {answer}"
        );
        let answer = src.fetch(request(Some("v9"), dir.path())).await.unwrap();
        assert_eq!(answer, json!({"status": "unchanged", "next_poll_ms": null}));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_and_other_statuses_fail_with_backend() {
    for status in [500, 503, 401] {
        let server = FakeServer::start(move |_| Reply::status(status).body("boom")).await;
        let dir = tempfile::tempdir().unwrap();
        let src = source(json!({"url": server.url("/m"), "token": "s3cret"}));
        let err = src
            .fetch(request(Some("v1"), dir.path()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BACKEND, "{status}: {err}");
        assert!(err.message.contains(&status.to_string()), "{err}");
        assert!(!err.message.contains("s3cret"), "token leaked: {err}");
        assert!(files_in(dir.path()).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_a_connection_error_and_health_tracks_the_streak() {
    let dir = tempfile::tempdir().unwrap();
    let url = unreachable_url().await;
    let src = source(json!({"url": format!("{url}m"), "token": "s3cret", "timeout": 5}));
    for n in 1..=3u64 {
        let err = src.fetch(request(None, dir.path())).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::CONNECTION, "{err}");
        assert!(err.kind.is_transient());
        assert!(!err.message.contains("s3cret"), "token leaked: {err}");
        let health = src.health().await.unwrap();
        assert_eq!(health["ok"], false);
        assert_eq!(health["failures"], n);
        assert!(health["last_error"].as_str().is_some());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recovers_after_a_failure_streak() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let server = FakeServer::start(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::status(502)
        } else {
            Reply::status(200).header("ETag", "v2").body(ARCHIVE)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(json!({"url": server.url("/m")}));
    assert!(src.fetch(request(None, dir.path())).await.is_err());
    assert!(src.fetch(request(None, dir.path())).await.is_err());
    assert_eq!(src.health().await.unwrap()["ok"], false);
    let answer = src.fetch(request(None, dir.path())).await.unwrap();
    assert_eq!(answer["status"], "new");
    let health = src.health().await.unwrap();
    assert_eq!(health["ok"], true);
    assert_eq!(health["failures"], 2);
    assert_eq!(health["pulls"], 3);
    assert_eq!(health["last_error"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_server_times_out() {
    let server = FakeServer::start(|_| {
        Reply::status(200)
            .header("ETag", "v2")
            .body(ARCHIVE)
            .delay(Duration::from_secs(3))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(json!({"url": server.url("/m"), "timeout": 0.3}));
    let err = src.fetch(request(None, dir.path())).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::TIMEOUT, "{err}");
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn size_limit_is_enforced_with_and_without_content_length() {
    let big = vec![7u8; 4096];
    for announced in [true, false] {
        let body = big.clone();
        let server = FakeServer::start(move |_| {
            let reply = Reply::status(200).header("ETag", "huge").body(body.clone());
            if announced {
                reply
            } else {
                reply.without_length()
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let src = source(json!({"url": server.url("/m"), "max_size_bytes": 1000}));
        let err = src.fetch(request(None, dir.path())).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::BACKEND, "{err}");
        assert!(err.message.contains("max_size_bytes"), "{err}");
        assert!(
            files_in(dir.path()).is_empty(),
            "announced={announced}: the partial file is removed: {:?}",
            files_in(dir.path())
        );
    }
    // Exactly at the limit is fine, also without Content-Length.
    let server = FakeServer::start(|_| {
        Reply::status(200)
            .header("ETag", "fits")
            .body(vec![1u8; 1000])
            .without_length()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(json!({"url": server.url("/m"), "max_size_bytes": "1000"}));
    let answer = src.fetch(request(None, dir.path())).await.unwrap();
    assert_eq!(answer["status"], "new");
    assert_eq!(
        std::fs::read(answer["path"].as_str().unwrap())
            .unwrap()
            .len(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn filename_header_is_never_a_path() {
    for filename in [
        "../../x",
        "/tmp/colloquy-evil-model.tar.gz",
        "..",
        "a/b.tar.gz",
    ] {
        let server = FakeServer::start(move |_| {
            Reply::status(200)
                .header("ETag", "v3")
                .header("filename", filename)
                .header(
                    "Content-Disposition",
                    &format!("attachment; filename=\"{filename}\""),
                )
                .body(ARCHIVE)
        })
        .await;
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("a").join("b");
        std::fs::create_dir_all(&dest).unwrap();
        let src = source(json!({"url": server.url("/m")}));
        let answer = src.fetch(request(None, &dest)).await.unwrap();
        let path = Path::new(answer["path"].as_str().unwrap());
        assert_eq!(path.parent(), Some(dest.as_path()), "{filename}");
        assert!(!path.to_str().unwrap().contains(".."), "{filename}");
        assert_eq!(files_in(&dest).len(), 1, "{filename}");
        assert!(!root.path().join("x").exists(), "{filename}");
        assert_eq!(files_in(&root.path().join("a")), vec!["b".to_string()]);
        assert_eq!(files_in(root.path()), vec!["a".to_string()]);
    }
    assert!(!Path::new("/tmp/colloquy-evil-model.tar.gz").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn dest_dir_is_created_and_downloads_do_not_collide() {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let server = FakeServer::start(move |_| {
        let i = c.fetch_add(1, Ordering::SeqCst);
        Reply::status(200)
            .header("ETag", &format!("v{i}"))
            .body(format!("model {i}"))
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("new").join("dir");
    let src = source(json!({"url": server.url("/m")}));
    let a = src.fetch(request(None, &dest)).await.unwrap();
    let b = src.fetch(request(Some("v0"), &dest)).await.unwrap();
    assert_ne!(a["path"], b["path"]);
    assert_eq!(
        std::fs::read_to_string(a["path"].as_str().unwrap()).unwrap(),
        "model 0"
    );
    assert_eq!(
        std::fs::read_to_string(b["path"].as_str().unwrap()).unwrap(),
        "model 1"
    );
    assert_eq!(b["fingerprint"], "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_invalid_input() {
    let src = source(json!({"url": "http://127.0.0.1:9/m"}));
    for req in [
        json!({}),
        json!({"dest_dir": 3}),
        json!({"dest_dir": "/tmp", "current_fingerprint": 5}),
    ] {
        let err = src.fetch(req.clone()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{req}");
    }
}

#[test]
fn config_errors_name_the_key() {
    for (config, key) in [
        (json!({}), "url"),
        (json!({"url": "http://h/m", "tokn": "x"}), "tokn"),
        (
            json!({"url": "http://h/m", "cafile": "/nonexistent/ca.pem"}),
            "cafile",
        ),
    ] {
        let err = HttpModelSource::from_config_json(&config.to_string())
            .err()
            .expect("refused");
        assert_eq!(err.kind, ErrorKind::CONFIG);
        assert!(err.message.contains(key), "{config}: {err}");
    }
}

/// Through the ABI object, as the host calls it (`model_source_box`), and through the
/// exported root module (the constructor the loader calls).
#[tokio::test(flavor = "multi_thread")]
async fn through_the_abi_box() {
    let server =
        FakeServer::start(|_| Reply::status(200).header("ETag", "\"v5\"").body(ARCHIVE)).await;
    let dir = tempfile::tempdir().unwrap();
    let boxed = sdk::model_source_box(
        source(json!({"url": server.url("/m"), "wait_time_between_pulls": null})),
        None,
    );
    let answer = boxed
        .fetch(request(None, dir.path()).to_string().into())
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(answer.as_str()).unwrap();
    assert_eq!(answer["status"], "new");
    assert_eq!(answer["fingerprint"], "v5");
    assert!(answer["next_poll_ms"].is_null());
    let health: Value = serde_json::from_str(boxed.health().await.unwrap().as_str()).unwrap();
    assert_eq!(health["ok"], true);

    let module = colloquy_plugin_http_model_source::colloquy_plugin_root_module();
    assert_eq!(module.name()().as_str(), "http");
    assert!(module.new_model_source().is_some());
    assert!(module.new_nlu_connector().is_none());
}

/// The host drops the fetch future at its call timeout in the middle of a download: the
/// partial file does not stay behind. A stalled body also hits the plugin's own `timeout`.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_or_stalled_downloads_leave_no_partial_file() {
    let server = FakeServer::start(|_| {
        Reply::status(200)
            .header("ETag", "v2")
            .body(vec![3u8; 100_000])
            .stall_after(10_000)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(json!({"url": server.url("/m")}));
    let fetch = src.fetch(request(None, dir.path()));
    assert!(tokio::time::timeout(Duration::from_millis(500), fetch)
        .await
        .is_err());
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );

    let src = source(json!({"url": server.url("/m"), "timeout": 0.5}));
    let err = src.fetch(request(None, dir.path())).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::TIMEOUT, "{err}");
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}
