//! Plugin authors' path, black box: a plugin built as a separate cargo project (the SQLite
//! example, a `colloquy new-plugin` crate, fixtures) dropped into a plugins folder of the real
//! binary; a plugin built against another plugin-API version; a plugin that panics or hangs.
//!
//! SLOW ON A COLD CACHE. These tests run `cargo build` on standalone crates:
//! - `target/examples` (shared by the SQLite example, the generated crate and the panicking
//!   fixture): ~3 min the first time (abi_stable, tokio, bundled SQLite), seconds afterwards;
//! - `target/fixtures/abi-mismatch` (a copy of plugin-api with another version, so its own
//!   target dir): ~3 min the first time, seconds afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use colloquy_blackbox_tests::{assert_rasa_error, colloquy, colloquy_bin, Server};
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Builds a standalone crate (`cargo build --manifest-path`) into `target_dir` and returns
/// its cdylib. A missing `Cargo.lock` is seeded from the workspace's, so that dependency
/// versions, and therefore the cached builds in `target_dir`, are shared.
fn build_standalone(crate_dir: &Path, target_dir: &Path) -> PathBuf {
    if !crate_dir.join("Cargo.lock").exists() {
        std::fs::copy(root().join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    }
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(crate_dir)
        .arg("build")
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--message-format=json-render-diagnostics")
        .env("CARGO_TARGET_DIR", target_dir);
    // Variables cargo sets for this test binary would make the nested build look different.
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_CFG_")
            || k == "CARGO_MANIFEST_DIR"
            || k == "CARGO_CRATE_NAME"
            || k == "OUT_DIR"
        {
            cmd.env_remove(k);
        }
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build in {} failed",
        crate_dir.display()
    );
    let mut found = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == "cdylib"))
        {
            found = msg["filenames"].as_array().and_then(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .find(|f| f.ends_with(".so"))
                    .map(PathBuf::from)
            });
        }
    }
    found.unwrap_or_else(|| panic!("no cdylib built in {}", crate_dir.display()))
}

/// A fresh plugins folder holding a copy of `so`.
fn plugins_dir_with(so: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(so.file_name().unwrap());
    std::fs::copy(so, &dest).unwrap();
    (dir, dest)
}

fn events_of(tracker: &Value) -> Vec<Value> {
    tracker["events"].as_array().cloned().unwrap_or_default()
}

/// The value of the last `slot` event named `name` (no domain is loaded, so `slots` is empty).
fn last_slot(tracker: &Value, name: &str) -> Value {
    events_of(tracker)
        .iter()
        .rev()
        .find(|e| e["event"] == "slot" && e["name"] == name)
        .map(|e| e["value"].clone())
        .unwrap_or(Value::Null)
}

fn sqlite3(db: &Path, sql: &str) -> Option<String> {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().ok()?;
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The worked example, built as a separate project: contract suite, then a conversation
/// through the host, a restart, the data found again, and the rows checked with SQL.
#[test]
fn sqlite_example_stores_conversations_across_restarts() {
    let so = build_standalone(
        &root().join("examples/sqlite-tracker-store"),
        &root().join("target/examples"),
    );
    let (plugins, so) = plugins_dir_with(&so);
    let data = tempfile::tempdir().unwrap();

    // The contract suite, through the real `.so`.
    let suite_db = data.path().join("suite.db");
    let config = json!({"path": suite_db}).to_string();
    let (code, out, err) = colloquy(
        &[
            "plugin-test",
            so.to_str().unwrap(),
            "--kind",
            "tracker-store",
            "--config",
            &config,
        ],
        data.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" 0 failed"), "{out}");
    // Unknown keys are refused by name.
    let (code, _, err) = colloquy(
        &[
            "plugin-test",
            so.to_str().unwrap(),
            "--kind",
            "tracker-store",
            "--config",
            r#"{"path": "x.db", "paht": "y.db"}"#,
        ],
        data.path(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("paht"), "{err}");

    let db = data.path().join("trackers.db");
    let yaml = format!("tracker_store:\n  type: sqlite\n  path: {}\n", db.display());
    let start = || {
        Server::builder()
            .arg("--plugin-dir")
            .arg(plugins.path().to_str().unwrap())
            .endpoints(&yaml)
            .start()
    };
    let mut s = start();
    let (st, body) = s.post(
        "/conversations/alice/tracker/events",
        &json!([
            {"event": "user", "text": "hello", "parse_data": {
                "intent": {"name": "greet", "confidence": 0.9}, "entities": [], "text": "hello"}},
            {"event": "action", "name": "utter_greet"},
            {"event": "bot", "text": "Hi, Alice!"},
            {"event": "slot", "name": "city", "value": "Rome"}
        ]),
    );
    assert_eq!(st, 200, "{body}");
    let (_, before) = s.get("/conversations/alice/tracker?include_events=ALL");
    let before = events_of(&before);
    assert!(before.len() >= 4, "{before:?}");
    let (_, status) = s.get("/status");
    assert_eq!(status["tracker_store"]["type"], "sqlite", "{status}");
    assert_eq!(status["tracker_store"]["health"]["ok"], true, "{status}");
    assert!(s.terminate().success(), "{}", s.stderr());
    drop(s);

    // A new process finds the conversation where the old one left it.
    let s = start();
    let (st, after) = s.get("/conversations/alice/tracker?include_events=ALL");
    assert_eq!(st, 200, "{after}");
    assert_eq!(events_of(&after), before);
    assert_eq!(last_slot(&after, "city"), "Rome", "{after}");
    let (_, keys) = s.get("/conversations");
    assert!(keys.as_array().unwrap().contains(&json!("alice")), "{keys}");
    let (st, _) = s.post(
        "/conversations/alice/tracker/events",
        &json!({"event": "slot", "name": "city", "value": "Paris"}),
    );
    assert_eq!(st, 200);
    let (_, t) = s.get("/conversations/alice/tracker?include_events=ALL");
    assert_eq!(events_of(&t).len(), before.len() + 1);
    assert_eq!(last_slot(&t, "city"), "Paris");

    // Rasa's SQL columns, queryable with SQL.
    let rows = sqlite3(
        &db,
        "SELECT type_name, coalesce(intent_name, ''), coalesce(action_name, ''), \
         timestamp IS NOT NULL, json_valid(data) FROM events WHERE sender_id = 'alice' ORDER BY id",
    );
    match rows {
        None => eprintln!("sqlite3 CLI not found: SQL rows not checked"),
        Some(rows) => {
            let rows: Vec<&str> = rows.lines().collect();
            assert_eq!(rows.len(), before.len() + 1, "{rows:?}");
            assert!(rows.contains(&"user|greet||1|1"), "{rows:?}");
            assert!(rows.contains(&"action||utter_greet|1|1"), "{rows:?}");
            assert!(rows.contains(&"bot|||1|1"), "{rows:?}");
            assert_eq!(*rows.last().unwrap(), "slot||city|1|1", "{rows:?}");
            let text = sqlite3(
                &db,
                "SELECT json_extract(data, '$.text') FROM events \
                 WHERE sender_id = 'alice' AND type_name = 'user'",
            )
            .unwrap();
            assert_eq!(text.trim(), "hello");
        }
    }

    // Replacing the events (PUT) starts a new epoch; the host reads the new log.
    let (st, body) = s.put(
        "/conversations/alice/tracker/events",
        &json!([{"event": "slot", "name": "city", "value": "Oslo"}]),
    );
    assert_eq!(st, 200, "{body}");
    let (_, t) = s.get("/conversations/alice/tracker?include_events=ALL");
    assert_eq!(last_slot(&t, "city"), "Oslo", "{t}");
    assert!(!t.to_string().contains("Rome"), "{t}");
    if let Some(n) = sqlite3(&db, "SELECT count(*) FROM events WHERE sender_id = 'alice'") {
        assert_eq!(n.trim(), events_of(&t).len().to_string(), "{t}");
    }
}

/// `colloquy new-plugin tracker-store my_store` → `cargo build` → the `.so` passes the
/// contract suite and serves as `type: my_store`.
#[test]
fn a_generated_tracker_store_builds_and_passes_the_contract() {
    let work = tempfile::tempdir().unwrap();
    let (code, out, err) = colloquy(
        &[
            "new-plugin",
            "tracker-store",
            "my_store",
            "--dir",
            work.path().to_str().unwrap(),
        ],
        work.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cargo build --release"), "{out}");
    let crate_dir = work.path().join("my_store");
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    assert!(readme.contains("type: my_store"), "{readme}");
    // Generating again never overwrites.
    let (code, _, err) = colloquy(
        &[
            "new-plugin",
            "tracker-store",
            "my_store",
            "--dir",
            work.path().to_str().unwrap(),
        ],
        work.path(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = colloquy(&["new-plugin", "tracker-store", "My-Store"], work.path());
    assert_ne!(code, 0);
    assert!(err.contains("[a-z]"), "{err}");

    let so = build_standalone(&crate_dir, &root().join("target/examples"));
    assert!(so.ends_with("libcolloquy_plugin_my_store.so"), "{so:?}");
    let (plugins, so) = plugins_dir_with(&so);
    let (code, out, err) = colloquy(
        &[
            "plugin-test",
            so.to_str().unwrap(),
            "--kind",
            "tracker-store",
        ],
        work.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" 0 failed"), "{out}");

    let s = Server::builder()
        .arg("--plugin-dir")
        .arg(plugins.path().to_str().unwrap())
        .endpoints("tracker_store:\n  type: my_store\n  verbose: true\n")
        .start();
    let (st, _) = s.post(
        "/conversations/bob/tracker/events",
        &json!({"event": "slot", "name": "x", "value": 1}),
    );
    assert_eq!(st, 200);
    let (_, t) = s.get("/conversations/bob/tracker");
    assert_eq!(last_slot(&t, "x"), 1, "{t}");
    let (_, status) = s.get("/status");
    assert_eq!(status["tracker_store"]["type"], "my_store", "{status}");
}

/// Writes `content` to `path` unless it is already there (keeps cargo's cache warm).
fn write_if_changed(path: &Path, content: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(content) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            write_if_changed(&dest, &std::fs::read(entry.path()).unwrap());
        }
    }
}

/// plugin-api's manifest made standalone (its `x.workspace = true` keys resolved from the
/// workspace manifest) with another version.
fn standalone_plugin_api_manifest(version: &str) -> String {
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let manifest = std::fs::read_to_string(root().join("plugin-api/Cargo.toml")).unwrap();
    let mut out = String::new();
    let mut versioned = false;
    for line in manifest.lines() {
        if !versioned && line.starts_with("version = ") {
            out.push_str(&format!("version = \"{version}\"\n"));
            versioned = true;
        } else if let Some(key) = line.strip_suffix(".workspace = true") {
            let resolved = workspace
                .lines()
                .find(|l| {
                    l.strip_prefix(key)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                })
                .unwrap_or_else(|| panic!("{key} not in the workspace manifest"));
            out.push_str(resolved);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(versioned && !out.contains(".workspace"), "{out}");
    out.push_str("\n[workspace]\n");
    out
}

/// The version of this repository's plugin-api, and the next minor one after it.
fn plugin_api_versions() -> (String, String) {
    let manifest = std::fs::read_to_string(root().join("plugin-api/Cargo.toml")).unwrap();
    let ours = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("plugin-api/Cargo.toml has a version")
        .to_string();
    let mut parts = ours.split('.').map(|p| p.parse::<u64>().unwrap());
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    (ours, format!("{major}.{}.0", minor + 1))
}

/// A plugin built against the next minor plugin API (a copy of plugin-api with its version
/// bumped) is refused, naming both versions and the file; the same plugin built against this
/// repository's plugin-api loads.
#[test]
fn a_plugin_built_against_another_plugin_api_version_is_refused() {
    let (ours, other) = plugin_api_versions();
    let work = root().join("target/fixtures/abi-mismatch");
    let api = work.join("plugin-api");
    copy_tree(&root().join("plugin-api/src"), &api.join("src"));
    write_if_changed(
        &api.join("Cargo.toml"),
        standalone_plugin_api_manifest(&other).as_bytes(),
    );
    let fixture = root().join("tests/fixtures/abi-mismatch-plugin");
    let plugin = work.join("plugin");
    copy_tree(&fixture.join("src"), &plugin.join("src"));
    let manifest = std::fs::read_to_string(fixture.join("Cargo.toml"))
        .unwrap()
        .replace("\"../../../plugin-api\"", "\"../plugin-api\"");
    assert!(manifest.contains("\"../plugin-api\""));
    write_if_changed(&plugin.join("Cargo.toml"), manifest.as_bytes());
    let mismatched = build_standalone(&plugin, &work.join("target"));
    let (plugins, mismatched) = plugins_dir_with(&mismatched);

    let expect_refusal = |text: &str| {
        for needle in [other.as_str(), ours.as_str(), mismatched.to_str().unwrap()] {
            assert!(text.contains(needle), "`{needle}` not in:\n{text}");
        }
    };
    // By name, through the search path.
    let err = Server::builder()
        .arg("--plugin-dir")
        .arg(plugins.path().to_str().unwrap())
        .endpoints("tracker_store:\n  type: mismatched\n")
        .try_start()
        .err()
        .expect("a mismatched plugin must not start");
    expect_refusal(&err);
    // By path.
    let yaml = format!("tracker_store:\n  type: {}\n", mismatched.display());
    let err = Server::builder()
        .endpoints(&yaml)
        .try_start()
        .err()
        .expect("a mismatched plugin must not start");
    expect_refusal(&err);
    let (_, out, _) = colloquy(
        &["plugins", "--plugin-dir", plugins.path().to_str().unwrap()],
        plugins.path(),
    );
    assert!(out.contains("rejected:"), "{out}");
    expect_refusal(&out);

    // The control: the same source against this repository's plugin-api loads.
    let good = build_standalone(&fixture, &root().join("target/examples"));
    let (plugins, _) = plugins_dir_with(&good);
    let s = Server::builder()
        .arg("--plugin-dir")
        .arg(plugins.path().to_str().unwrap())
        .endpoints("tracker_store:\n  type: mismatched\n")
        .start();
    let (st, _) = s.get("/conversations/c/tracker");
    assert_eq!(st, 200);
}

/// A plugin whose `load` panics fails that request only (500, Rasa's error body); a call
/// that never returns is cut off by `--plugin-timeout`; the server keeps serving.
#[test]
fn a_panicking_or_hanging_plugin_fails_the_call_not_the_server() {
    let so = build_standalone(
        &root().join("tests/fixtures/panicking-store"),
        &root().join("target/examples"),
    );
    let (plugins, _) = plugins_dir_with(&so);
    let _ = colloquy_bin();
    let s = Server::builder()
        .arg("--plugin-dir")
        .arg(plugins.path().to_str().unwrap())
        .arg("--plugin-timeout")
        .arg("2")
        .endpoints("tracker_store:\n  type: panicking\n")
        .start();

    for _ in 0..3 {
        let (st, body) = s.get("/conversations/panic-1/tracker");
        assert_rasa_error(st, &body, 500);
        assert!(
            body["message"].as_str().unwrap_or("").contains("panic"),
            "{body}"
        );
        let (st, _) = s.get("/version");
        assert_eq!(st, 200);
    }
    let (st, body) = s.post(
        "/conversations/panic-2/tracker/events",
        &json!({"event": "slot", "name": "x", "value": 1}),
    );
    assert_rasa_error(st, &body, 500);
    // Other conversations work.
    let (st, _) = s.post(
        "/conversations/fine/tracker/events",
        &json!({"event": "slot", "name": "x", "value": 1}),
    );
    assert_eq!(st, 200);
    let (st, t) = s.get("/conversations/fine/tracker");
    assert_eq!(st, 200);
    assert_eq!(last_slot(&t, "x"), 1, "{t}");

    // A call that never returns: bounded by --plugin-timeout (2 s).
    let started = Instant::now();
    let (st, body) = s.get("/conversations/hang-1/tracker");
    let took = started.elapsed();
    assert_rasa_error(st, &body, 503);
    assert!(
        took >= Duration::from_millis(1_900) && took < Duration::from_secs(15),
        "answered after {took:?}"
    );
    assert!(
        body["message"].as_str().unwrap_or("").contains("2000 ms"),
        "{body}"
    );
    let (st, _) = s.get("/version");
    assert_eq!(st, 200);
    let (st, t) = s.get("/conversations/fine/tracker");
    assert_eq!(st, 200, "{t}");
    let (_, status) = s.get("/status");
    assert_eq!(status["tracker_store"]["type"], "panicking", "{status}");
}
